//! The `/status` document (JSON, field names stable: `cpe status`, the end-to-end tests
//! and operators' scripts read them) and its table for `cpe status`. See docs/vip.md for
//! every field.
//!
//! Also the election value's format ([`ElectionValue`]: node name and MAC, old plain names
//! still read), since `holder` shows the name it carries.
//!
//! It reads the driver's snapshots only: it decides nothing and asks nobody.

use crate::machine::{Role, Transition};
use crate::metrics::Metrics;
use crate::settings::Settings;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Who leads the election, as etcd last said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// Not asked yet.
    NotAsked,
    /// Nobody leads.
    Nobody,
    /// The node that leads (the value it campaigned with).
    Node(String),
    /// etcd could not say: the error, as text.
    Unknown(String),
}

/// What a node campaigns with: its name and the MAC its VIP answers from, so that a
/// candidate whose takeover probe is answered by that MAC knows it is the previous holder
/// (waiting for its address lifetime to end), not a stranger. On the wire it is JSON,
/// `{"node":"cp1","mac":"02:00:00:00:00:01"}`; an older agent's plain node name is read
/// as a name without a MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElectionValue {
    pub node: String,
    pub mac: Option<String>,
}

impl ElectionValue {
    pub fn encode(&self) -> String {
        json!({ "node": self.node, "mac": self.mac }).to_string()
    }

    pub fn parse(value: &str) -> ElectionValue {
        let parsed = value
            .trim_start()
            .starts_with('{')
            .then(|| serde_json::from_str::<Value>(value).ok())
            .flatten();
        match parsed
            .as_ref()
            .and_then(|v| Some((v.get("node")?.as_str()?, v)))
        {
            Some((node, v)) => ElectionValue {
                node: node.to_string(),
                mac: v.get("mac").and_then(|m| m.as_str()).map(str::to_string),
            },
            None => ElectionValue {
                node: value.to_string(),
                mac: None,
            },
        }
    }
}

/// What the driver publishes after every step.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub node: String,
    pub vip: String,
    pub interface: String,
    pub election: String,
    pub lease_ttl: Duration,
    pub etcd_endpoints: Vec<String>,
    pub health_target: String,
    pub role: Role,
    pub holding: bool,
    pub since: SystemTime,
    /// Who leads per etcd.
    pub holder: Holder,
    pub last_transition: Option<(Transition, SystemTime)>,
    /// Lease id, TTL, time left before the holder's deadline.
    pub lease: Option<(i64, Duration, Duration)>,
    pub healthy: bool,
    pub health_detail: String,
    pub waiting_for: Option<String>,
    pub foreign_mac: Option<String>,
    pub transitions: u64,
    /// etcd leadership transfers done by this agent, and the last check's outcome.
    pub etcd_leader_moves: u64,
    pub etcd_leader: Option<String>,
    /// Holding the VIP although unhealthy: no other candidate is healthy.
    pub fail_open: bool,
    /// Every agent's published health and place in the election.
    pub peers: Vec<PeerRow>,
    /// Why `peers` could not be read last time.
    pub peers_error: Option<String>,
    /// The handover in progress (`cpe status --resign` / `--prefer`), in words.
    pub handover: Option<String>,
    /// Time left out of the election after `--resign`.
    pub hold_off_left: Option<Duration>,
}

/// One agent as `/status` shows it: its published health and its place in the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRow {
    pub node: String,
    pub state: String,
    pub healthy: bool,
    pub since_unix_ms: u64,
    pub reason: String,
    /// Place in the election's queue (0 leads); `None`: not campaigning.
    pub position: Option<usize>,
}

impl PeerRow {
    /// The rows of one view: every agent that published its health, and any candidate
    /// that did not (an older agent), in name order.
    pub fn from_view(v: &crate::peers::PeerInfo) -> Vec<PeerRow> {
        let mut rows: Vec<PeerRow> = v
            .health
            .iter()
            .map(|p| PeerRow {
                node: p.node.clone(),
                state: p.state.clone(),
                healthy: p.healthy,
                since_unix_ms: p.since_unix_ms,
                reason: p.reason.clone(),
                position: v.queue.iter().position(|c| c.node == p.node),
            })
            .collect();
        for (i, c) in v.queue.iter().enumerate() {
            if !rows.iter().any(|r| r.node == c.node) {
                rows.push(PeerRow {
                    node: c.node.clone(),
                    state: "unpublished".into(),
                    healthy: false,
                    since_unix_ms: 0,
                    reason: String::new(),
                    position: Some(i),
                });
            }
        }
        rows.sort_by(|a, b| a.node.cmp(&b.node));
        rows
    }
}

impl Snapshot {
    pub fn initial(s: &Settings) -> Self {
        Snapshot {
            node: s.node.clone(),
            vip: format!("{}/{}", s.vip, s.prefix_len),
            interface: s.interface.clone(),
            election: s.election.clone(),
            lease_ttl: s.lease_ttl,
            etcd_endpoints: s.etcd.endpoints(),
            health_target: s.health.target.clone(),
            role: Role::Waiting,
            holding: false,
            since: SystemTime::now(),
            holder: Holder::NotAsked,
            last_transition: None,
            lease: None,
            healthy: false,
            health_detail: "not checked yet".into(),
            waiting_for: None,
            foreign_mac: None,
            transitions: 0,
            etcd_leader_moves: 0,
            etcd_leader: None,
            fail_open: false,
            peers: Vec::new(),
            peers_error: None,
            handover: None,
            hold_off_left: None,
        }
    }

    pub fn to_json(&self) -> Value {
        let (holder, holder_error) = match &self.holder {
            Holder::Node(h) => (json!(h), Value::Null),
            Holder::Nobody => (Value::Null, Value::Null),
            Holder::Unknown(e) => (Value::Null, json!(e)),
            Holder::NotAsked => (Value::Null, json!("not asked yet")),
        };
        json!({
            "kind": "vip",
            "node": self.node,
            "vip": self.vip,
            "interface": self.interface,
            "election": self.election,
            "role": self.role.as_str(),
            "holding": self.holding,
            "holder": holder,
            "holder_error": holder_error,
            "since": rfc3339(self.since),
            "since_unix_ms": unix_ms(self.since),
            "last_transition": self.last_transition.as_ref().map(|(t, at)| json!({
                "from": t.from.as_str(),
                "to": t.to.as_str(),
                "reason": t.reason.label(),
                "detail": t.reason.to_string(),
                "at": rfc3339(*at),
                "at_unix_ms": unix_ms(*at),
            })),
            "transitions": self.transitions,
            "lease_ttl_ms": self.lease_ttl.as_millis() as u64,
            "lease": self.lease.map(|(id, ttl, left)| json!({
                "id": format!("{id:x}"),
                "ttl_ms": ttl.as_millis() as u64,
                "deadline_in_ms": left.as_millis() as u64,
            })),
            "healthy": self.healthy,
            "health": { "target": self.health_target, "detail": self.health_detail },
            "waiting_for": self.waiting_for,
            "foreign_mac": self.foreign_mac,
            "etcd_endpoints": self.etcd_endpoints,
            "etcd_leader_moves": self.etcd_leader_moves,
            "etcd_leader": self.etcd_leader,
            "fail_open": self.fail_open,
            "peers": self.peers.iter().map(|p| json!({
                "node": p.node,
                "state": p.state,
                "healthy": p.healthy,
                "since_unix_ms": p.since_unix_ms,
                "reason": p.reason,
                "position": p.position,
            })).collect::<Vec<_>>(),
            "peers_error": self.peers_error,
            "handover": self.handover,
            "hold_off_ms": self.hold_off_left.map(|d| d.as_millis() as u64),
        })
    }
}

/// The latest snapshot, shared between the driver and the admin handler.
#[derive(Clone)]
pub struct StatusCell(Arc<Mutex<(Snapshot, std::time::Instant)>>);

impl StatusCell {
    pub fn new(s: Snapshot) -> Self {
        StatusCell(Arc::new(Mutex::new((s, std::time::Instant::now()))))
    }
    pub fn get(&self) -> Snapshot {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).0.clone()
    }
    pub fn set(&self, s: Snapshot) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = (s, std::time::Instant::now());
    }
    /// How long since the driver last published.
    pub fn age(&self) -> Duration {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).1.elapsed()
    }
}

/// `/status` and `/metrics` for `cpe_admin::serve`. With load balancing (`lb`), `/status`
/// carries the load balancer's own document under `load_balancer` (the same one `cpe
/// lb`'s `/status` gives: every backend with its origin, state, reason, connections, and
/// the discovery board), and `/metrics` its `cpe_lb_*` metrics after the agent's.
pub fn handler(
    status: StatusCell,
    metrics: Arc<Metrics>,
    lb: Option<cpe_lb::LbHandle>,
) -> cpe_admin::Handler {
    Arc::new(move |path| match path {
        "/status" => {
            let mut v = status.get().to_json();
            if let (Some(h), Some(o)) = (&lb, v.as_object_mut()) {
                o.insert("load_balancer".into(), h.status());
            }
            Some(cpe_admin::Response::json(
                serde_json::to_string_pretty(&v).unwrap_or_default() + "\n",
            ))
        }
        "/metrics" => Some(cpe_admin::Response::metrics(match &lb {
            None => metrics.encode(),
            Some(h) => join_metrics(&metrics.encode(), &h.metrics_text()),
        })),
        // Liveness: the driver publishes on every 50 ms tick; a loop stuck for 5 s is dead.
        "/healthz" => Some(match status.age() {
            a if a < Duration::from_secs(5) => cpe_admin::Response::text("ok\n".into()),
            a => cpe_admin::Response {
                status: 503,
                content_type: "text/plain; charset=utf-8",
                body: format!("the agent loop has not run for {a:?}\n"),
            },
        }),
        _ => None,
    })
}

/// Two OpenMetrics texts as one: the first one's `# EOF` dropped (it must end the whole).
fn join_metrics(first: &str, second: &str) -> String {
    let head = first.trim_end().strip_suffix("# EOF").unwrap_or(first);
    let mut out = head.trim_end().to_string();
    out.push('\n');
    out.push_str(second);
    out
}

/// Renders the `/status` JSON as the table `cpe status` prints; with load balancing, the
/// load balancer's backend table (`cpe lb`'s) after it.
pub fn table(v: &Value) -> String {
    let mut out = vip_rows(v);
    if let Some(lb) = v.get("load_balancer").filter(|l| l.is_object()) {
        out.push('\n');
        out.push_str(&cpe_lb::status::table(lb));
    }
    out
}

fn vip_rows(v: &Value) -> String {
    let s = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("-").to_string();
    let b = |k: &str| v.get(k).and_then(|x| x.as_bool()).unwrap_or(false);
    let holder = match (
        v.get("holder").and_then(|h| h.as_str()),
        v.get("holder_error").and_then(|e| e.as_str()),
    ) {
        (Some(h), _) => h.to_string(),
        (None, Some(e)) => format!("unknown ({e})"),
        (None, None) => "nobody".to_string(),
    };
    let mut rows: Vec<(&str, String)> = vec![
        ("VIP", format!("{} on {}", s("vip"), s("interface"))),
        ("node", s("node")),
        (
            "role",
            format!(
                "{}{}",
                s("role"),
                if b("holding") { " (holds the VIP)" } else { "" }
            ),
        ),
        ("holder (etcd)", holder),
        ("since", s("since")),
    ];
    if let Some(t) = v.get("last_transition").filter(|t| !t.is_null()) {
        let g = |k: &str| t.get(k).and_then(|x| x.as_str()).unwrap_or("-").to_string();
        rows.push((
            "last change",
            format!(
                "{} -> {} at {}: {}",
                g("from"),
                g("to"),
                g("at"),
                g("detail")
            ),
        ));
    }
    let health = v.get("health");
    rows.push((
        "health",
        format!(
            "{} ({}: {})",
            if b("healthy") { "passing" } else { "failing" },
            health
                .and_then(|h| h.get("target"))
                .and_then(|x| x.as_str())
                .unwrap_or("-"),
            health
                .and_then(|h| h.get("detail"))
                .and_then(|x| x.as_str())
                .unwrap_or("-"),
        ),
    ));
    let ttl = v.get("lease_ttl_ms").and_then(|x| x.as_u64()).unwrap_or(0);
    rows.push((
        "lease",
        match v.get("lease").filter(|l| !l.is_null()) {
            Some(l) => format!(
                "{} (TTL {} ms, deadline in {} ms)",
                l.get("id").and_then(|x| x.as_str()).unwrap_or("-"),
                l.get("ttl_ms").and_then(|x| x.as_u64()).unwrap_or(0),
                l.get("deadline_in_ms")
                    .and_then(|x| x.as_u64())
                    .unwrap_or(0)
            ),
            None => format!("none (TTL {ttl} ms when granted)"),
        },
    ));
    if b("fail_open") {
        rows.push((
            "FAIL OPEN",
            "holding the VIP although its health check fails: no other candidate is healthy"
                .to_string(),
        ));
    }
    if let Some(w) = v.get("waiting_for").and_then(|x| x.as_str()) {
        rows.push(("waiting for", w.to_string()));
    }
    if let Some(h) = v.get("handover").and_then(|x| x.as_str()) {
        rows.push(("handover", h.to_string()));
    }
    if let Some(ms) = v.get("hold_off_ms").and_then(|x| x.as_u64()) {
        rows.push(("hold-off", format!("not campaigning for {ms} ms more")));
    }
    if let Some(peers) = v
        .get("peers")
        .and_then(|x| x.as_array())
        .filter(|p| !p.is_empty())
    {
        let text: Vec<String> = peers
            .iter()
            .map(|p| {
                let g = |k: &str| p.get(k).and_then(|x| x.as_str()).unwrap_or("-");
                let place = match p.get("position").and_then(|x| x.as_u64()) {
                    Some(0) => "leads".to_string(),
                    Some(n) => format!("candidate #{n}"),
                    None => "not campaigning".to_string(),
                };
                format!("{} {} ({place})", g("node"), g("state"))
            })
            .collect();
        rows.push(("agents", text.join(", ")));
    }
    rows.push((
        "transitions",
        v.get("transitions")
            .map(|x| x.to_string())
            .unwrap_or_default(),
    ));
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (k, val) in rows {
        out.push_str(&format!("{k:<width$}  {val}\n"));
    }
    out
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `2026-11-22T00:10:00.123Z` without a date crate.
pub fn rfc3339(t: SystemTime) -> String {
    let ms = unix_ms(t);
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let sod = secs % 86_400;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn election_values_carry_node_and_mac_and_old_plain_names_still_read() {
        let v = ElectionValue {
            node: "cp1".into(),
            mac: Some("02:00:00:00:00:01".into()),
        };
        assert_eq!(ElectionValue::parse(&v.encode()), v);
        assert_eq!(v.encode(), r#"{"mac":"02:00:00:00:00:01","node":"cp1"}"#);
        // An older agent campaigned with its plain node name.
        assert_eq!(
            ElectionValue::parse("cp2"),
            ElectionValue {
                node: "cp2".into(),
                mac: None
            }
        );
        // JSON that is not ours is a name as it stands.
        assert_eq!(ElectionValue::parse(r#"{"x":1}"#).node, r#"{"x":1}"#);
    }

    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_795_305_600_123); // 2026-11-22
        assert_eq!(rfc3339(t), "2026-11-22T00:00:00.123Z");
        let t = UNIX_EPOCH + Duration::from_secs(951_786_061); // 2000-02-29 01:01:01
        assert_eq!(rfc3339(t), "2000-02-29T01:01:01.000Z");
    }

    #[test]
    fn table_says_who_holds_since_when_and_why() {
        let v = json!({
            "kind": "vip", "node": "cp2", "vip": "10.77.0.100/32", "interface": "eth0",
            "role": "holder", "holding": true, "holder": "cp2", "holder_error": null,
            "since": "2026-11-22T00:10:00.000Z",
            "last_transition": {"from": "acquiring", "to": "holder", "reason": "acquired",
                "detail": "elected and no other host answers for the address",
                "at": "2026-11-22T00:10:00.000Z"},
            "transitions": 3, "lease_ttl_ms": 2000,
            "lease": {"id": "41f2", "ttl_ms": 2000, "deadline_in_ms": 1200},
            "healthy": true, "health": {"target": "https://127.0.0.1:6443/readyz", "detail": "UP"},
            "waiting_for": null,
        });
        let t = table(&v);
        assert!(t.contains("VIP            10.77.0.100/32 on eth0"), "{t}");
        assert!(t.contains("role           holder (holds the VIP)"), "{t}");
        assert!(t.contains("holder (etcd)  cp2"), "{t}");
        assert!(
            t.contains("last change    acquiring -> holder at 2026-11-22T00:10:00.000Z: elected"),
            "{t}"
        );
        let mut v = v;
        v["holder"] = Value::Null;
        v["holder_error"] = json!("etcd unreachable: x");
        assert!(table(&v).contains("unknown (etcd unreachable: x)"));
    }

    #[test]
    fn with_load_balancing_the_table_ends_with_the_backends() {
        let mut v = json!({"kind": "vip", "node": "cp1", "healthy": true});
        assert!(!table(&v).contains("BACKEND"), "no load balancer, no table");
        v["load_balancer"] = json!({
            "kind": "lb", "listen": "0.0.0.0:6444",
            "set_changed_seconds_ago": 1.5,
            "discovery": {"sources": [{"source": "etcd", "state": "ok", "backends": ["10.0.0.12:6443"]}],
                          "cache": {"path": "/var/lib/cpe/vip-lb-6444.json", "state": "written"}},
            "backends": [{"name": "10.0.0.12:6443", "origin": ["etcd"], "state": "up",
                          "for_seconds": 3.0, "active_connections": 2, "connects": 9,
                          "connect_failures": 0, "reason": "10.0.0.12:6443 RECOVERING->UP (probe: 2 passes)"}],
            "removed": [{"name": "10.0.0.11:6443", "origin": ["etcd"], "state": "removed",
                         "for_seconds": 0.5, "active_connections": 1, "connects": 4,
                         "connect_failures": 0}],
        });
        let t = table(&v);
        let vip_rows = t.find("node").unwrap();
        let backends = t.find("BACKEND").expect("the backend table");
        assert!(vip_rows < backends, "{t}");
        assert!(t.contains("10.0.0.12:6443  etcd"), "{t}");
        assert!(t.contains("REMOVED"), "{t}");
        assert!(t.contains("discovery etcd: ok"), "{t}");
    }

    #[test]
    fn metrics_of_agent_and_load_balancer_end_with_one_eof() {
        let m = join_metrics("a 1\n# EOF\n", "b 2\n# EOF\n");
        assert_eq!(m, "a 1\nb 2\n# EOF\n");
        assert_eq!(m.matches("# EOF").count(), 1);
    }
}
