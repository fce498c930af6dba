//! The `/status` document (`"kind": "lb"`) and the table `cpe status` prints from it.
//! The table is rendered from the JSON only, so `cpe status` needs nothing but the
//! admin listener's answer.

use crate::Shared;
use serde_json::{json, Value};
use std::fmt::Write;
use std::sync::atomic::Ordering;

pub(crate) fn document(s: &Shared) -> Value {
    let members = s.members.load();
    let board = s.board.lock().unwrap_or_else(|e| e.into_inner());
    let backend = |b: &crate::backend::Backend, removed: bool| {
        let h = b.health();
        let change = h.last_change();
        json!({
            "name": b.name,
            "origin": board.origins_of(&b.name),
            "address": b.addr().map(|a| a.to_string()),
            "state": if removed { "removed".to_string() } else { b.state().as_str().to_string() },
            "for_seconds": (h.since().elapsed().as_millis() as f64 / 1000.0),
            "reason": change.map(|t| t.to_string()),
            "cause": change.map(|t| t.cause.as_str()),
            "last_check": h.last_outcome().map(|o| o.to_string()),
            "last_check_ms": (b.last_check_us.load(Ordering::Relaxed) as f64 / 1000.0),
            "tcp_alive": b.tcp_alive(),
            "active_connections": b.active.get(),
            "connects": b.connects.get(),
            "connect_failures": b.failures.get(),
        })
    };
    let backends: Vec<Value> = members.iter().map(|b| backend(b, false)).collect();
    let removed: Vec<Value> = s
        .retired
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|b| backend(b, true))
        .collect();
    let config = s.config();
    json!({
        "kind": "lb",
        "listen": s.listen.to_string(),
        "admin": s.admin.map(|a| a.to_string()),
        "uptime_seconds": s.started.elapsed().as_secs(),
        "active_connections": s.metrics.active.get(),
        "max_connections": config.max_connections,
        "accepted_connections": s.metrics.accepted.get(),
        "rejected_connections": s.metrics.rejected.get(),
        "no_backend_connections": s.metrics.no_backend.get(),
        "fallback": s.fallback.load(Ordering::Relaxed),
        "spliced_bytes": crate::forward::spliced_bytes(),
        "health_check": {
            "protocol": config.health.protocol,
            "path": config.health.path,
            "interval_ms": config.health.interval.as_millis() as u64,
            "timeout_ms": config.health.timeout.as_millis() as u64,
            "rise": config.health.rise,
            "fall": config.health.fall,
        },
        "last_reload_error": *s.last_reload_error.lock().unwrap_or_else(|e| e.into_inner()),
        "set_changed_unix": board.changed.0,
        "set_changed_seconds_ago": board.changed.1.elapsed().as_millis() as f64 / 1000.0,
        "discovery": board.json(),
        "backends": backends,
        "removed": removed,
    })
}

fn duration(secs: f64) -> String {
    let s = secs as u64;
    match s {
        0..=59 => format!("{secs:.1}s"),
        60..=3599 => format!("{}m{}s", s / 60, s % 60),
        _ => format!("{}h{}m", s / 3600, (s % 3600) / 60),
    }
}

/// Renders the `/status` JSON as the table `cpe status` prints.
pub fn table(status: &Value) -> String {
    let mut out = String::new();
    let str_of = |v: &Value, k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("-").to_string();
    let num = |v: &Value, k: &str| v.get(k).and_then(|x| x.as_i64()).unwrap_or(0);
    let _ = writeln!(
        out,
        "cpe lb on {} (admin {}): {} connections open (limit {}), {} rejected at the limit, {} with no backend",
        str_of(status, "listen"),
        str_of(status, "admin"),
        num(status, "active_connections"),
        num(status, "max_connections"),
        num(status, "rejected_connections"),
        num(status, "no_backend_connections"),
    );
    if let Some(hc) = status.get("health_check") {
        let _ = writeln!(
            out,
            "health check: {} {} every {}ms, timeout {}ms, rise {}, fall {}",
            str_of(hc, "protocol"),
            str_of(hc, "path"),
            num(hc, "interval_ms"),
            num(hc, "timeout_ms"),
            num(hc, "rise"),
            num(hc, "fall"),
        );
    }
    if status.get("fallback").and_then(|f| f.as_bool()) == Some(true) {
        let _ = writeln!(out, "{}", fallback_warning(status));
    }
    if let Some(e) = status.get("last_reload_error").and_then(|e| e.as_str()) {
        let _ = writeln!(
            out,
            "WARNING: last reload failed, running on the previous definition: {e}"
        );
    }
    discovery_lines(&mut out, status);
    let mut rows: Vec<[String; 8]> = vec![[
        "BACKEND".into(),
        "ORIGIN".into(),
        "STATE".into(),
        "FOR".into(),
        "CONNS".into(),
        "TOTAL/FAILED".into(),
        "LAST CHECK".into(),
        "LAST CHANGE".into(),
    ]];
    let empty = Vec::new();
    let list = |k: &str| {
        status
            .get(k)
            .and_then(|b| b.as_array())
            .unwrap_or(&empty)
            .clone()
    };
    for b in list("backends").iter().chain(list("removed").iter()) {
        let check = match b.get("last_check").and_then(|c| c.as_str()) {
            Some(c) => format!(
                "{c} ({:.1}ms)",
                b.get("last_check_ms")
                    .and_then(|x| x.as_f64())
                    .unwrap_or(0.0)
            ),
            None => "-".into(),
        };
        let reason = str_of(b, "reason");
        // The backend's name is in the first column already.
        let name = str_of(b, "name");
        let reason = reason
            .strip_prefix(&format!("{name} "))
            .unwrap_or(&reason)
            .to_string();
        let origin = b
            .get("origin")
            .and_then(|o| o.as_array())
            .map(|o| {
                o.iter()
                    .filter_map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .filter(|o| !o.is_empty())
            .unwrap_or_else(|| "-".into());
        rows.push([
            name,
            origin,
            str_of(b, "state").to_uppercase(),
            duration(b.get("for_seconds").and_then(|x| x.as_f64()).unwrap_or(0.0)),
            num(b, "active_connections").to_string(),
            format!("{}/{}", num(b, "connects"), num(b, "connect_failures")),
            check,
            reason,
        ]);
    }
    let mut widths = [0usize; 8];
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r.iter()) {
            *w = (*w).max(c.chars().count());
        }
    }
    for r in &rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(c);
            } else {
                let _ = write!(line, "{c:<w$}  ", w = widths[i]);
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

/// When the set last changed, and each discovery source's state and fault.
fn discovery_lines(out: &mut String, status: &Value) {
    let secs = |v: &Value, k: &str| v.get(k).and_then(|x| x.as_f64());
    if let Some(ago) = secs(status, "set_changed_seconds_ago") {
        let _ = writeln!(out, "backend set last changed {} ago", duration(ago));
    }
    let Some(d) = status.get("discovery").filter(|d| !d.is_null()) else {
        return;
    };
    let s = |v: &Value, k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
    for src in d
        .get("sources")
        .and_then(|x| x.as_array())
        .into_iter()
        .flatten()
    {
        let name = s(src, "source").unwrap_or_default();
        let last = match secs(src, "last_success_seconds_ago") {
            Some(a) => format!("last success {} ago", duration(a)),
            None => "no success yet".into(),
        };
        let via = match (s(src, "api"), s(src, "via")) {
            (Some(api), Some(via)) => format!(", {api} via {via}"),
            (Some(api), None) => format!(", {api}"),
            _ => String::new(),
        };
        match (s(src, "state").as_deref(), s(src, "fault")) {
            (Some("failing"), Some(f)) => {
                let _ = writeln!(
                    out,
                    "WARNING: discovery {name} failing, keeping the last good set: {f} ({last}{via})"
                );
            }
            (state, _) => {
                let _ = writeln!(
                    out,
                    "discovery {name}: {} ({last}{via})",
                    state.unwrap_or("-")
                );
            }
        }
    }
    if let Some(c) = d.get("cache") {
        match (s(c, "state").as_deref(), s(c, "error")) {
            (Some("error"), Some(e)) => {
                let _ = writeln!(out, "WARNING: backend cache: {e}");
            }
            (state, _) => {
                let _ = writeln!(
                    out,
                    "backend cache {}: {}",
                    s(c, "path").unwrap_or_default(),
                    state.unwrap_or("-")
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_is_shown_with_origins_and_faults() {
        let v = json!({
            "kind": "lb", "listen": "127.0.0.1:6443", "set_changed_seconds_ago": 75.0,
            "discovery": {
                "sources": [
                    {"source": "kubernetes", "state": "failing", "fault": "forbidden (HTTP 403): no", "last_success_seconds_ago": 3.0, "api": "v1 Endpoints", "via": "10.0.0.2:6443"},
                    {"source": "etcd", "state": "ok", "fault": null, "last_success_seconds_ago": 1.0, "api": "etcd member list", "via": null}
                ],
                "cache": {"path": "/var/lib/cpe/lb-6443.json", "state": "written", "error": null}
            },
            "backends": [
                {"name": "10.0.0.2:6443", "origin": ["kubernetes", "etcd"], "state": "up", "for_seconds": 1.0}
            ],
            "removed": []
        });
        let t = table(&v);
        assert!(t.contains("backend set last changed 1m15s ago"), "{t}");
        assert!(t.contains("WARNING: discovery kubernetes failing, keeping the last good set: forbidden (HTTP 403): no (last success 3.0s ago, v1 Endpoints via 10.0.0.2:6443)"), "{t}");
        assert!(
            t.contains("discovery etcd: ok (last success 1.0s ago, etcd member list)"),
            "{t}"
        );
        assert!(
            t.contains("backend cache /var/lib/cpe/lb-6443.json: written"),
            "{t}"
        );
        let row = t.lines().find(|l| l.starts_with("10.0.0.2:6443")).unwrap();
        assert!(
            row.contains("kubernetes,etcd") && row.contains("UP"),
            "{row}"
        );
    }

    #[test]
    fn table_shows_each_backend_with_its_reason() {
        let v = json!({
            "kind": "lb", "listen": "127.0.0.1:6443", "admin": "127.0.0.1:9630",
            "active_connections": 3, "max_connections": 20000, "rejected_connections": 0,
            "no_backend_connections": 0, "fallback": false, "last_reload_error": null,
            "health_check": {"protocol": "https", "path": "/readyz", "interval_ms": 250, "timeout_ms": 500, "rise": 2, "fall": 2},
            "backends": [
                {"name": "10.0.0.2:6443", "state": "up", "for_seconds": 12.5, "reason": "10.0.0.2:6443 RECOVERING->UP (probe: 2 passes)",
                 "last_check": "ready", "last_check_ms": 1.25, "active_connections": 3, "connects": 10, "connect_failures": 1},
                {"name": "10.0.0.3:6443", "state": "draining", "for_seconds": 0.5, "reason": "10.0.0.3:6443 UP->DRAINING (probe: not ready (HTTP 503))",
                 "last_check": "not ready (HTTP 503)", "last_check_ms": 2.0, "active_connections": 0, "connects": 4, "connect_failures": 0}
            ],
            "removed": []
        });
        let t = table(&v);
        assert!(t.contains("cpe lb on 127.0.0.1:6443"), "{t}");
        let up = t.lines().find(|l| l.starts_with("10.0.0.2:6443")).unwrap();
        assert!(
            up.contains("UP") && up.contains("12.5s") && up.contains("10/1"),
            "{up}"
        );
        assert!(up.ends_with("RECOVERING->UP (probe: 2 passes)"), "{up}");
        let dr = t.lines().find(|l| l.starts_with("10.0.0.3:6443")).unwrap();
        assert!(
            dr.contains("DRAINING") && dr.contains("not ready (HTTP 503)"),
            "{dr}"
        );
        assert!(!t.contains("WARNING"));
    }
}

/// What the fallback means for new connections, from the backends in the document: the
/// ones not in maintenance that still accept TCP take them (as `select::pick` does); with
/// none, they are closed.
fn fallback_warning(status: &Value) -> String {
    let backends: Vec<&Value> = status
        .get("backends")
        .and_then(|b| b.as_array())
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    fn state(b: &Value) -> &str {
        b.get("state").and_then(|s| s.as_str()).unwrap_or("")
    }
    let takers: Vec<&str> = backends
        .iter()
        .filter(|b| {
            b.get("tcp_alive").and_then(|t| t.as_bool()) == Some(true) && state(b) != "maintenance"
        })
        .filter_map(|b| b.get("name").and_then(|n| n.as_str()))
        .collect();
    if !takers.is_empty() {
        return format!(
            "WARNING: no backend passes its health check; new connections go to the ones that still accept TCP: {}",
            takers.join(", ")
        );
    }
    if !backends.is_empty() && backends.iter().all(|b| state(b) == "maintenance") {
        "WARNING: every backend is in maintenance: new connections are closed (cpe status --maintenance BACKEND=off takes one out)".into()
    } else {
        "WARNING: no backend passes its health check and none outside maintenance accepts TCP: new connections are closed".into()
    }
}

#[cfg(test)]
mod fallback_tests {
    use super::*;

    fn doc(backends: &[(&str, &str, bool)]) -> Value {
        json!({
            "fallback": true,
            "backends": backends.iter().map(|(n, s, tcp)| json!({"name": n, "state": s, "tcp_alive": tcp})).collect::<Vec<_>>(),
        })
    }

    /// Issue 14, item 5: with every backend in maintenance nothing takes connections;
    /// the table must not say they go to backends "that still accept TCP".
    #[test]
    fn the_warning_says_where_new_connections_go() {
        let all_maint = table(&doc(&[
            ("a:1", "maintenance", true),
            ("b:1", "maintenance", true),
        ]));
        assert!(
            all_maint.contains("every backend is in maintenance: new connections are closed"),
            "{all_maint}"
        );
        assert!(!all_maint.contains("go to"), "{all_maint}");
        let some = table(&doc(&[("a:1", "down", true), ("b:1", "maintenance", true)]));
        assert!(
            some.contains("new connections go to the ones that still accept TCP: a:1"),
            "{some}"
        );
        let none = table(&doc(&[
            ("a:1", "down", false),
            ("b:1", "maintenance", true),
        ]));
        assert!(none.contains("new connections are closed"), "{none}");
    }
}
