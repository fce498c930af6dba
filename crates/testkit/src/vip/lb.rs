//! The load-balancing VIP on the testbed (`cpe vip --load-balance`, issue 11): what its
//! tests need beyond the failover scenarios — one machine's API server killed and
//! restarted without touching the agent, which API server answered each of a series of
//! fresh connections (`/debug/whoami` of the stand-in), and a [`RulesWatch`] that samples
//! every machine's nftables rule set (`nft -j list ruleset`, the tool is fine in tests)
//! and judges it against the holder watcher: the redirect exists on at most one machine
//! and only on one that held the VIP around that instant.
//!
//! It measures and reports; the tests (`crates/e2e/tests/vip_lb.rs`) assert.

use super::Testbed;
use crate::observe::Watch;
use crate::Host;
use anyhow::Result;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

impl Testbed {
    /// Number of control-plane machines.
    pub fn machine_count(&self) -> usize {
        self.machines.len()
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

    /// Starts machine `i`'s API server again and waits until it answers.
    pub fn restart_api(&mut self, i: usize) -> Result<()> {
        self.start_api(i)?;
        self.wait_api_ready(i)
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
    /// VIP at any instant within `slack` of the sweep (the watchers sample apart).
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
