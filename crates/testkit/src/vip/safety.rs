//! The issue-11 runs that are not one failure of the holder: every API server overloaded
//! at once (fail open, then recovery of one), and planned moves (`cpe status --resign`,
//! `--prefer NODE`). Like `scenarios`, it injects, measures and repairs; it asserts
//! nothing (the tests judge the [`SafetyOutcome`], the bench prints it). Only for `cpe vip`
//! (keepalived has neither rule).

use super::{AgentKind, Testbed};
use crate::observe::HolderChange;
use anyhow::{bail, Context, Result};
use std::time::{Duration, Instant};

/// The runs of this module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SafetyRun {
    /// Every API server's `/readyz` turns 503 while it keeps serving (the two others first,
    /// then the holder's, 1 s later); 3 s watched; then one other machine's recovers.
    Overload,
    /// `cpe status --resign --hold-off 5s` on the holder.
    Resign,
    /// `cpe status --prefer NODE` on the holder, NODE the machine that joined the election
    /// last (so the candidate queued ahead of it must step aside).
    Prefer,
}

impl SafetyRun {
    pub const ALL: [SafetyRun; 3] = [SafetyRun::Overload, SafetyRun::Resign, SafetyRun::Prefer];

    pub fn name(self) -> &'static str {
        match self {
            SafetyRun::Overload => "overload",
            SafetyRun::Resign => "resign",
            SafetyRun::Prefer => "prefer",
        }
    }
}

/// What one run measured. Times from the action (overload: from the recovery).
#[derive(Debug, Clone)]
pub struct SafetyOutcome {
    pub run: SafetyRun,
    pub from: String,
    /// Where the VIP settled (None: nowhere, or two).
    pub to: Option<String>,
    /// `--prefer`: the node asked for; overload: the node that recovered.
    pub wanted: Option<String>,
    /// Overload: holder changes while every API server failed (0: it stayed).
    pub changes_while_overloaded: usize,
    /// Overload: requests to `VIP:6443/version` while every API server failed, and how many
    /// were answered (the endpoint keeps answering although `/readyz` says 503).
    pub overloaded_requests: usize,
    pub overloaded_answered: usize,
    /// Overload: the holder's `/status` said `fail_open: true` while every API server failed.
    pub fail_open_reported: bool,
    /// From the action (overload: the recovery) until the VIP was on another machine.
    pub moved_after: Option<Duration>,
    /// Longest time without a successful `/readyz` answer, from the action to settled
    /// (overload: from the recovery to the first `/readyz` 200 through the VIP; every
    /// answer was 503 before it).
    pub outage: Option<Duration>,
    pub requests: usize,
    pub failed: usize,
    pub failures: Vec<String>,
    /// Sweeps that saw two holders, from the action until the run ended.
    pub doubles: Vec<HolderChange>,
    /// What `cpe status` printed (planned moves).
    pub said: String,
}

impl SafetyOutcome {
    /// One line for logs and the bench.
    pub fn line(&self) -> String {
        let s = |d: Option<Duration>| d.map_or("-".into(), |d| format!("{:.3}s", d.as_secs_f64()));
        let mut l = format!(
            "{:<9} {} -> {} moved after {} outage {} failed {}/{} two holders {}",
            self.run.name(),
            self.from,
            self.to.as_deref().unwrap_or("?"),
            s(self.moved_after),
            s(self.outage),
            self.failed,
            self.requests,
            if self.doubles.is_empty() { "no" } else { "YES" }
        );
        if self.run == SafetyRun::Overload {
            l += &format!(
                "; while all failed: {} holder changes, {}/{} /version answered through the VIP, fail_open in /status: {}",
                self.changes_while_overloaded,
                self.overloaded_answered,
                self.overloaded_requests,
                self.fail_open_reported
            );
        }
        l
    }
}

const ADMIN: &str = "127.0.0.1:7445";

impl Testbed {
    /// Runs one of this module's runs and repairs afterwards.
    pub fn run_safety(&mut self, run: SafetyRun) -> Result<SafetyOutcome> {
        let AgentKind::Cpe { bin, .. } = self.agent.clone() else {
            bail!("{} needs cpe vip", run.name());
        };
        let holder = self.wait_stable(Duration::from_secs(60))?;
        let from = self.machines[holder].host.name.clone();
        let others: Vec<usize> = (0..self.machines.len()).filter(|i| *i != holder).collect();
        let mut out = SafetyOutcome {
            run,
            from: from.clone(),
            to: None,
            wanted: None,
            changes_while_overloaded: 0,
            overloaded_requests: 0,
            overloaded_answered: 0,
            fail_open_reported: false,
            moved_after: None,
            outage: None,
            requests: 0,
            failed: 0,
            failures: Vec::new(),
            doubles: Vec::new(),
            said: String::new(),
        };
        let t_start = self.now();
        let t_action;
        match run {
            SafetyRun::Overload => {
                for &i in &others {
                    self.make_unready(i)?;
                }
                std::thread::sleep(Duration::from_secs(1));
                self.make_unready(holder)?;
                let t_all = self.now();
                // 3 s of everyone failing: the VIP must stay and keep answering.
                let until = Instant::now() + Duration::from_secs(3);
                let url = format!("https://{}:6443/version", self.vip);
                while Instant::now() < until {
                    out.overloaded_requests += 1;
                    if self.client.exec("curl", &["-sfk", "-m", "1", &url]).is_ok() {
                        out.overloaded_answered += 1;
                    }
                    if !out.fail_open_reported {
                        out.fail_open_reported = self.machines[holder]
                            .host
                            .exec(
                                "curl",
                                &["-sf", "-m", "1", &format!("http://{ADMIN}/status")],
                            )
                            .is_ok_and(|s| s.contains("\"fail_open\": true"));
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                out.changes_while_overloaded = self.watch.changes(t_all, self.now()).len();
                let r = others[0];
                out.wanted = Some(self.machines[r].host.name.clone());
                t_action = self.now();
                self.make_ready(r)?;
            }
            SafetyRun::Resign | SafetyRun::Prefer => {
                let mut args = vec!["status".to_string(), "--admin".into(), ADMIN.into()];
                if run == SafetyRun::Resign {
                    args.extend(["--resign".into(), "--hold-off".into(), "5s".into()]);
                } else {
                    // The candidate queued last (per the holder's /status), so that the
                    // one ahead of it must step aside.
                    let status = self.machines[holder].host.exec(
                        "curl",
                        &["-sf", "-m", "1", &format!("http://{ADMIN}/status")],
                    )?;
                    let v: serde_json::Value = serde_json::from_str(&status)?;
                    let name = v["peers"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|p| p["healthy"].as_bool() == Some(true))
                        .max_by_key(|p| p["position"].as_u64())
                        .and_then(|p| p["node"].as_str())
                        .filter(|n| *n != from)
                        .map(str::to_string)
                        .context("no other healthy candidate in the holder's /status")?;
                    args.extend(["--prefer".into(), name.clone()]);
                    out.wanted = Some(name);
                }
                t_action = self.now();
                let mut cmd = self.machines[holder].host.command(&bin);
                cmd.args(&args);
                let o = cmd.output().context("running cpe status")?;
                out.said = format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                );
                if !o.status.success() {
                    bail!("cpe status {}: {}", args.join(" "), out.said);
                }
            }
        }
        // Settle: one holder other than the old one, the client answered.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let now = self.now();
            if self.holder().is_some_and(|h| h != holder) && self.prober.requests().last_ok(5, now)
            {
                break;
            }
            if Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_secs(1));
        let t_end = self.now();
        out.to = self.holder().map(|h| self.machines[h].host.name.clone());
        out.moved_after = self
            .watch
            .holders()
            .iter()
            .find(|c| c.t >= t_action && c.holders.iter().any(|h| *h != from))
            .map(|c| c.t - t_action);
        let reqs = self.prober.requests();
        out.outage = match run {
            // Every `/readyz` answered 503 until the VIP reached the recovered machine:
            // the outage is until the first answer after the recovery.
            SafetyRun::Overload => reqs
                .0
                .iter()
                .find(|r| r.ok && r.start >= t_action)
                .map(|r| r.end - t_action),
            _ => reqs.outage(t_action, t_end),
        };
        out.requests = reqs.count(t_action, t_end);
        let failed = reqs.failed(t_action, t_end);
        out.failed = failed.len();
        out.failures = failed
            .iter()
            .take(5)
            .map(|r| format!("{:.3}s: {}", r.start.as_secs_f64(), r.detail))
            .collect();
        out.doubles = self.watch.doubles(t_start, t_end);
        eprintln!("[vip] {}", out.line());
        if run == SafetyRun::Resign {
            // Let the hold-off pass before the next run.
            std::thread::sleep(Duration::from_secs(5));
        }
        self.repair()
            .with_context(|| format!("repairing after {}", run.name()))?;
        Ok(out)
    }
}
