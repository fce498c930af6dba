//! The load-balancing VIP on the testbed (`cpe vip --load-balance`, issue 11): what its
//! tests need beyond the failover scenarios — one machine's API server killed and
//! restarted without touching the agent, which API server answered each of a series of
//! fresh connections (`/debug/whoami` of the stand-in), and a [`RulesWatch`] that samples
//! every machine's nftables rule set (`nft -j list ruleset`, the tool is fine in tests)
//! and judges it against the holder watcher: the redirect exists on at most one machine
//! and only on one that held the VIP around that instant.
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
        Testbed::start_with(tag, api, AgentKind::Keepalived, Some(port), 3)
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
        RulesWatch::start(hosts, every, self.epoch())
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

/// One sweep over the machines: which had the redirect (`table ... cpe` with a redirect
/// statement), between `start` and `end` (since the testbed's epoch).
#[derive(Debug, Clone)]
pub struct RulesSample {
    pub start: Duration,
    pub end: Duration,
    pub with_rules: Vec<String>,
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

impl RulesWatch {
    fn start(hosts: Vec<Host>, every: Duration, epoch: Instant) -> RulesWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, samples) = (stop.clone(), samples.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let start = epoch.elapsed();
                    let with_rules = hosts
                        .iter()
                        .filter(|h| {
                            h.exec("nft", &["-j", "list", "ruleset"])
                                .is_ok_and(|j| has_redirect(&j))
                        })
                        .map(|h| h.name.clone())
                        .collect();
                    let end = epoch.elapsed();
                    samples.lock().unwrap().push(RulesSample {
                        start,
                        end,
                        with_rules,
                    });
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

    /// Samples where the redirect was on two machines, or on one that did not hold the
    /// VIP at any instant within `slack` of the sweep (the watchers sample apart). A
    /// sample on a machine inside one of its `exempt` windows `(machine, from, to)` is
    /// left out (see `vip_lb`: a frozen agent cannot remove its rule).
    pub fn violations(
        &self,
        watch: &Watch,
        slack: Duration,
        exempt: &[(String, Duration, Duration)],
    ) -> Vec<String> {
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
        for mut s in self.samples() {
            s.with_rules.retain(|n| {
                !exempt
                    .iter()
                    .any(|(m, from, to)| m == n && s.end >= *from && s.start <= *to)
            });
            if s.with_rules.len() > 1 {
                bad.push(format!(
                    "{:.3}s: redirect on {:?} at once",
                    s.start.as_secs_f64(),
                    s.with_rules
                ));
            }
            for n in &s.with_rules {
                if !held(n, s.start.saturating_sub(slack), s.end + slack) {
                    bad.push(format!(
                        "{:.3}s: redirect on {n}, which did not hold the VIP",
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
    }
}
