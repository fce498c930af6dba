//! The load-balancing VIP on the testbed (`cpe vip --load-balance`, issue 11): what its
//! tests need beyond the failover scenarios — one machine's API server killed and
//! restarted without touching the agent, which API server answered each of a series of
//! fresh connections (`/debug/whoami` of the stand-in), and a [`RulesWatch`] that samples
//! every machine's addresses and nftables rule set (`ip`, `nft -j list ruleset`: tools
//! are fine in tests) and judges it against the holder watcher: a redirect that *steers*
//! — one without the guard `fib daddr type local`, or a guarded one on a machine that has
//! the VIP — exists on at most one machine and only on one that held the VIP around that
//! instant. A guarded rule on a machine without the address is inert (the kernel skips
//! it) and is counted, not judged.
//!
//! The peer of the load-balancing mode is kubeadm's recipe, keepalived+HAProxy
//! ([`Testbed::start_keepalived_haproxy`]): HAProxy on every machine on another port than
//! 6443 ([`haproxy_conf`], `/readyz` checked over TLS, the same 250 ms / fall 2 / rise 2
//! as cpe's defaults), keepalived tracking HAProxy (its check script asks
//! `https://127.0.0.1:PORT/readyz` through HAProxy), the client sending to `VIP:PORT`.
//! HAProxy's backend list is the three first machines: no rolling replacement with it.
//!
//! It measures and reports; the tests (`crates/e2e/tests/vip_lb.rs`) assert.

use super::{AgentKind, ApiKind, Testbed};
use crate::observe::Watch;
use crate::Host;
use anyhow::Result;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

impl Testbed {
    /// keepalived+HAProxy (kubeadm's recipe) on the same testbed: HAProxy on `port` on
    /// every machine, keepalived tracking it, the client sending to `VIP:port`.
    pub fn start_keepalived_haproxy(tag: &str, api: ApiKind, port: u16) -> Result<Testbed> {
        Testbed::start_with(tag, api, AgentKind::Keepalived, Some(port), 3, None)
    }

    /// The agent's name in outcomes: `keepalived-haproxy` for the recipe.
    pub(super) fn agent_label(&self) -> &'static str {
        match (&self.agent, self.haproxy_port) {
            (AgentKind::Keepalived, Some(_)) => "keepalived-haproxy",
            (a, _) => a.name(),
        }
    }

    /// Starts HAProxy on machine `i` unless it runs (an agent restart keeps it).
    pub(super) fn ensure_haproxy(&mut self, i: usize, port: u16) -> Result<()> {
        if self.machines[i]
            .haproxy
            .as_mut()
            .is_some_and(|c| c.is_running())
        {
            return Ok(());
        }
        let name = self.machines[i].host.name.clone();
        let backends: Vec<(String, String)> = self
            .machines
            .iter()
            .map(|m| (m.host.name.clone(), format!("{}:6443", m.host.addr)))
            .collect();
        let conf = self.dir().join(format!("haproxy-{name}.cfg"));
        std::fs::write(&conf, haproxy_conf(port, &backends))?;
        let log = self.dir().join(format!("haproxy-{name}.log"));
        let args = [
            "-db".to_string(),
            "-f".into(),
            conf.to_string_lossy().into_owned(),
        ];
        let child =
            self.machines[i]
                .host
                .spawn(&format!("haproxy {name}"), &log, "haproxy", &args)?;
        self.machines[i].haproxy = Some(child);
        // Listening and the first checks done before keepalived asks through it.
        std::thread::sleep(Duration::from_millis(700));
        Ok(())
    }

    /// The name of machine `i` (`cp1`...).
    pub fn machine_name(&self, i: usize) -> String {
        self.machines[i].host.name.clone()
    }

    /// The single current holder (by the watcher), if exactly one.
    pub fn current_holder(&self) -> Option<usize> {
        self.holder()
    }

    /// SIGKILLs machine `i`'s API server (the agent keeps running).
    pub fn kill_api(&mut self, i: usize) {
        if let Some(a) = self.machines[i].api.as_mut() {
            a.kill();
        }
    }

    /// `n` requests from the client to `VIP:6443/debug/whoami`, each on a new connection:
    /// the name of the API server that answered each (an error text for a failure).
    pub fn whoami(&self, n: usize) -> Vec<String> {
        let url = format!("https://{}:6443/debug/whoami", self.vip);
        (0..n)
            .map(
                |_| match self.client.exec("curl", &["-sk", "-m", "2", &url]) {
                    Ok(s) => s.trim().to_string(),
                    Err(e) => format!("error: {e:#}"),
                },
            )
            .collect()
    }

    /// Starts sampling every machine's nftables rule set every `every`.
    pub fn rules_watch(&self, every: Duration) -> RulesWatch {
        let hosts: Vec<Host> = self.machines.iter().map(|m| m.host.clone()).collect();
        RulesWatch::start(hosts, self.vip.to_string(), every, self.epoch())
    }
}

/// HAProxy in front of the API servers as kubeadm's HA guide writes it (tcp mode,
/// round robin, `/readyz` over TLS without verification), with cpe's check timing and
/// connect timeout, and `option redispatch` so a refused connect is retried elsewhere
/// (cpe's load balancer does that too).
pub fn haproxy_conf(port: u16, backends: &[(String, String)]) -> String {
    let servers: String = backends
        .iter()
        .map(|(n, a)| format!("    server {n} {a} check verify none\n"))
        .collect();
    format!(
        r#"global
    maxconn 4000
defaults
    mode tcp
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    retries 1
    option redispatch
frontend apiserver
    bind *:{port}
    default_backend apiserverbackend
backend apiserverbackend
    option httpchk
    http-check connect ssl
    http-check send meth GET uri /readyz
    http-check expect status 200
    balance roundrobin
    default-server inter 250ms fall 2 rise 2
{servers}"#
    )
}

/// One sweep over the machines, between `start` and `end` (since the testbed's epoch):
/// which had the redirect (`table ... cpe` with a redirect statement), which of those had
/// a rule without the guard, and which had the VIP as an address (read just before their
/// rules: an address removed in between still counts as there, the stricter reading).
#[derive(Debug, Clone, Default)]
pub struct RulesSample {
    pub start: Duration,
    pub end: Duration,
    pub with_rules: Vec<String>,
    pub unguarded: Vec<String>,
    pub with_vip: Vec<String>,
}

impl RulesSample {
    /// The machines whose redirect steers: unguarded, or guarded where the VIP is local.
    pub fn steering(&self) -> Vec<String> {
        self.with_rules
            .iter()
            .filter(|n| self.unguarded.contains(n) || self.with_vip.contains(n))
            .cloned()
            .collect()
    }

    /// The machines with a guarded redirect but no VIP: the rule is there, inert.
    pub fn inert(&self) -> Vec<String> {
        self.with_rules
            .iter()
            .filter(|n| !self.steering().contains(n))
            .cloned()
            .collect()
    }
}

/// A thread sampling the rule sets until dropped.
#[derive(Debug)]
pub struct RulesWatch {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<RulesSample>>>,
    thread: Option<JoinHandle<()>>,
}

/// Whether `nft -j list ruleset` output holds cpe's redirect.
pub fn has_redirect(json: &str) -> bool {
    json.contains("\"name\": \"cpe\"") && json.contains("\"redirect\"")
}

/// Whether every redirect rule of table `cpe` in `nft -j list ruleset` output carries the
/// guard `fib daddr type local` before its redirect (true when there is none; an output
/// that does not parse counts as unguarded).
pub fn redirect_guarded(json: &str) -> bool {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(json) else {
        return false;
    };
    let items = v["nftables"].as_array().cloned().unwrap_or_default();
    items
        .iter()
        .filter_map(|i| i.get("rule"))
        .filter(|r| r["table"] == "cpe")
        .all(|r| {
            let exprs = r["expr"].as_array().cloned().unwrap_or_default();
            let Some(redirect) = exprs.iter().position(|e| e.get("redirect").is_some()) else {
                return true;
            };
            exprs[..redirect].iter().any(|e| {
                let m = &e["match"];
                m["op"] == "=="
                    && m["left"]["fib"]["result"] == "type"
                    && m["left"]["fib"]["flags"] == serde_json::json!(["daddr"])
                    && m["right"] == "local"
            })
        })
}

impl RulesWatch {
    fn start(hosts: Vec<Host>, vip: String, every: Duration, epoch: Instant) -> RulesWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, samples) = (stop.clone(), samples.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let mut s = RulesSample {
                        start: epoch.elapsed(),
                        ..RulesSample::default()
                    };
                    let to = format!("{vip}/32");
                    for h in &hosts {
                        let addr = h.exec("ip", &["-o", "addr", "show", "to", &to]);
                        if addr.is_ok_and(|a| !a.trim().is_empty()) {
                            s.with_vip.push(h.name.clone());
                        }
                        let Ok(j) = h.exec("nft", &["-j", "list", "ruleset"]) else {
                            continue;
                        };
                        if has_redirect(&j) {
                            s.with_rules.push(h.name.clone());
                            if !redirect_guarded(&j) {
                                s.unguarded.push(h.name.clone());
                            }
                        }
                    }
                    s.end = epoch.elapsed();
                    samples.lock().unwrap().push(s);
                    std::thread::sleep(every);
                }
            })
        };
        RulesWatch {
            stop,
            samples,
            thread: Some(thread),
        }
    }

    pub fn samples(&self) -> Vec<RulesSample> {
        self.samples.lock().unwrap().clone()
    }

    /// Samples where a steering redirect ([`RulesSample::steering`]) was on two machines,
    /// or on one that did not hold the VIP at any instant within `slack` of the sweep (the
    /// watchers sample apart). A guarded rule on a machine without the VIP is inert and
    /// not judged (a frozen agent cannot remove its rule, but the kernel removed its
    /// address); an unguarded one there is a violation.
    pub fn violations(&self, watch: &Watch, slack: Duration) -> Vec<String> {
        let changes = watch.holders();
        let held = |name: &str, from: Duration, to: Duration| {
            let before = changes.iter().rev().find(|c| c.t <= from);
            before.is_some_and(|c| c.holders.iter().any(|h| h == name))
                || changes
                    .iter()
                    .filter(|c| c.t > from && c.t <= to)
                    .any(|c| c.holders.iter().any(|h| h == name))
        };
        let mut bad = Vec::new();
        for s in self.samples() {
            let steering = s.steering();
            if steering.len() > 1 {
                bad.push(format!(
                    "{:.3}s: a steering redirect on {steering:?} at once (VIP on {:?}, \
                     unguarded on {:?})",
                    s.start.as_secs_f64(),
                    s.with_vip,
                    s.unguarded
                ));
            }
            for n in &steering {
                if !held(n, s.start.saturating_sub(slack), s.end + slack) {
                    let why = if s.unguarded.contains(n) {
                        "without the guard"
                    } else {
                        "guarded, with the VIP local"
                    };
                    bad.push(format!(
                        "{:.3}s: a steering redirect on {n} ({why}), which did not hold the VIP",
                        s.start.as_secs_f64()
                    ));
                }
            }
        }
        bad
    }
}

impl Drop for RulesWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_redirect_is_recognised_in_nft_json() {
        let with = r#"{"nftables": [{"metainfo": {}}, {"table": {"family": "ip", "name": "cpe", "handle": 1}}, {"rule": {"family": "ip", "table": "cpe", "chain": "output", "expr": [{"redirect": {"port": 6444}}]}}]}"#;
        assert!(has_redirect(with));
        assert!(!has_redirect(r#"{"nftables": [{"metainfo": {}}]}"#));
        // no guard before the redirect
        assert!(!redirect_guarded(with));
    }

    /// As `nft -j` 1.0.6 prints cpe's rule, and variants that are not the guard.
    #[test]
    fn the_guard_is_recognised_only_before_the_redirect() {
        let rule = |exprs: &str| {
            format!(
                r#"{{"nftables": [{{"table": {{"family": "ip", "name": "cpe"}}}}, {{"rule": {{"family": "ip", "table": "cpe", "chain": "output", "expr": [{{"match": {{"op": "==", "left": {{"payload": {{"protocol": "ip", "field": "daddr"}}}}, "right": "10.0.0.100"}}}}, {exprs}]}}}}]}}"#
            )
        };
        let guard = r#"{"match": {"op": "==", "left": {"fib": {"result": "type", "flags": ["daddr"]}}, "right": "local"}}"#;
        let redirect = r#"{"redirect": {"port": 6444}}"#;
        let guarded = rule(&format!("{guard}, {redirect}"));
        assert!(has_redirect(&guarded) && redirect_guarded(&guarded));
        assert!(!redirect_guarded(&rule(&format!("{redirect}, {guard}"))));
        assert!(!redirect_guarded(&rule(&format!(
            "{}, {redirect}",
            guard.replace("local", "unicast")
        ))));
        assert!(!redirect_guarded(&rule(&format!(
            "{}, {redirect}",
            guard.replace("daddr", "saddr")
        ))));
        assert!(!redirect_guarded("not json"));
        // a sample: guarded without the VIP is inert; unguarded, or with the VIP, steers
        let s = RulesSample {
            with_rules: vec!["cp1".into(), "cp2".into(), "cp3".into()],
            unguarded: vec!["cp3".into()],
            with_vip: vec!["cp2".into()],
            ..RulesSample::default()
        };
        assert_eq!(s.steering(), vec!["cp2".to_string(), "cp3".into()]);
        assert_eq!(s.inert(), vec!["cp1".to_string()]);
    }
}
