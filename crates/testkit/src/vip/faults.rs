//! The testbed's single steps, public for the chaos runner (`crate::chaos`): one process
//! of one machine killed, signalled, restarted; the API server made ready or not; what the
//! machines and the client observed so far. Each step does one thing and waits only for
//! what it must (a restarted API server ready); deciding what to do, and when, is the
//! caller's. The one-failure scenarios (`scenarios`) keep their own sequence.

use super::{AgentKind, ReadyzWait, Testbed};
use crate::{EtcdCluster, Host};
use anyhow::{Context, Result};
use nix::sys::signal::Signal;
use std::process::ExitStatus;
use std::time::Duration;

impl Testbed {
    /// How many control-plane machines there are.
    pub fn machine_count(&self) -> usize {
        self.machines.len()
    }

    /// Machine `i`'s host.
    pub fn machine_host(&self, i: usize) -> &Host {
        &self.machines[i].host
    }

    /// Every machine's (eth0 MAC, name) ever seen.
    pub fn machine_macs(&self) -> Vec<(String, String)> {
        self.macs.clone()
    }

    /// The index of the single current holder, if exactly one.
    pub fn holder_index(&self) -> Option<usize> {
        self.holder()
    }

    /// Which agent runs.
    pub fn agent_kind(&self) -> &AgentKind {
        &self.agent
    }

    /// The etcd cluster.
    pub fn etcd_mut(&mut self) -> &mut EtcdCluster {
        &mut self.etcd
    }

    /// Sends `sig` to machine `i`'s API server.
    pub fn signal_api(&mut self, i: usize, sig: Signal) {
        if let Some(a) = self.machines[i].api.as_ref() {
            a.signal(sig);
        }
    }

    /// Whether machine `i`'s API server runs.
    pub fn api_running(&mut self, i: usize) -> bool {
        self.machines[i]
            .api
            .as_mut()
            .is_some_and(|c| c.is_running())
    }

    /// Stops machine `i`'s API server if it still runs (SIGTERM, then SIGKILL after 3 s),
    /// starts a new one and waits until it is ready.
    pub fn restart_api(&mut self, i: usize) -> Result<()> {
        self.replace_api_process(i)?;
        self.wait_api_ready(i)
    }

    /// As [`Testbed::restart_api`] without the wait: returns a poller of the new server's
    /// /readyz (a real kube-apiserver takes 8–30 s to become ready; a SIGTERMed one still
    /// shutting down exits on the second SIGTERM).
    pub fn begin_restart_api(&mut self, i: usize) -> Result<ReadyzWait> {
        self.replace_api_process(i)?;
        Ok(self.readyz_wait(i, true))
    }

    fn replace_api_process(&mut self, i: usize) -> Result<()> {
        if let Some(mut old) = self.machines[i].api.take() {
            old.terminate(Duration::from_secs(3));
        }
        self.start_api(i)
    }

    /// Makes machine `i`'s /readyz fail (`false`) or pass (`true`) while its API server
    /// runs. The stand-in: its own switch (`POST /debug/ready`) from inside the machine, up
    /// to 5 s per try and two tries (on a machine this loaded, 1 s is sometimes not
    /// enough); /readyz follows at once. A real kube-apiserver: cut from its etcd member
    /// with nftables, or the cut lifted (`kube_api`); /readyz follows within seconds
    /// ([`Testbed::readyz_wait`] measures it).
    pub fn set_api_ready(&mut self, i: usize, ready: bool) -> Result<()> {
        if self.kube_api() {
            self.set_kube_ready(i, ready)?;
            self.machines[i].unready = !ready;
            return Ok(());
        }
        let body = if ready { "true" } else { "false" };
        let args = [
            "-sfk",
            "-m",
            "5",
            "-X",
            "POST",
            "--data",
            body,
            "https://127.0.0.1:6443/debug/ready",
        ];
        let host = &self.machines[i].host;
        host.exec("curl", &args)
            .or_else(|_| host.exec("curl", &args))
            .with_context(|| format!("setting /readyz on {} to ready={ready}", host.name))?;
        self.machines[i].unready = !ready;
        Ok(())
    }

    /// Sends `sig` to machine `i`'s agent (keepalived: its VRRP child too for
    /// SIGKILL/SIGSTOP/SIGCONT).
    pub fn signal_agent_of(&mut self, i: usize, sig: Signal) {
        self.signal_agent(i, sig);
    }

    /// Whether machine `i`'s agent runs.
    pub fn agent_running(&mut self, i: usize) -> bool {
        self.machines[i]
            .agent
            .as_mut()
            .is_some_and(|c| c.is_running())
    }

    /// Machine `i`'s agent's pid and exit status (if it exited).
    pub fn agent_state(&mut self, i: usize) -> Option<(u32, Option<ExitStatus>)> {
        let a = self.machines[i].agent.as_mut()?;
        Some((a.pid(), a.try_status()))
    }

    /// The pids of machine `i`'s agent processes (keepalived: its VRRP child too).
    pub fn agent_pids(&mut self, i: usize) -> Vec<u32> {
        let mut out: Vec<u32> = self.machines[i]
            .agent
            .as_ref()
            .map(|a| a.pid())
            .into_iter()
            .collect();
        if matches!(self.agent, AgentKind::Keepalived) {
            let name = &self.machines[i].host.name;
            let pidfile = self.dir().join(format!("keepalived-{name}.vrrp.pid"));
            if let Some(pid) = std::fs::read_to_string(pidfile)
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                out.push(pid);
            }
        }
        out
    }

    /// Why machine `i`'s API server stopped, from what it logged since its start: the last
    /// fatal error (Go's `fatal error:`/`panic:`, klog's `F` lines) with the lines around
    /// it, else the last 15 lines. (A Go crash ends its log with every goroutine's stack.)
    pub fn api_log_tail(&self, i: usize) -> String {
        let m = &self.machines[i];
        let Some(a) = m.api.as_ref() else {
            return String::new();
        };
        let bytes = std::fs::read(a.log_path()).unwrap_or_default();
        let from = (m.api_log_from as usize).min(bytes.len());
        fatal_excerpt(&String::from_utf8_lossy(&bytes[from..]))
    }

    /// Machine `i`'s agent log, last `n` lines.
    pub fn agent_log_tail(&self, i: usize, n: usize) -> String {
        self.machines[i]
            .agent
            .as_ref()
            .map(|a| a.tail(n))
            .unwrap_or_default()
    }

    /// Stops machine `i`'s agent if it runs (SIGTERM, SIGKILL after `grace`) and returns
    /// how it exited (None: it had to be killed, or there was none).
    pub fn stop_agent(&mut self, i: usize, grace: Duration) -> Option<ExitStatus> {
        let mut old = self.machines[i].agent.take()?;
        if let Some(st) = old.try_status() {
            return Some(st);
        }
        old.terminate(grace)
    }

    /// Stops machine `i`'s agent if it still runs and starts a new one.
    pub fn restart_agent(&mut self, i: usize) -> Result<Option<ExitStatus>> {
        let st = self.stop_agent(i, Duration::from_secs(5));
        self.start_agent(i)?;
        Ok(st)
    }

    /// Steps the host's real-time clock by `secs` (every process on the host sees it: it
    /// is one clock) and records the step, so the ARP capture's wall-clock stamps still
    /// read as run time; dropping the testbed steps back whatever is still stepped.
    pub fn step_clock(&mut self, secs: f64) -> Result<()> {
        let at = self.now();
        step_realtime(secs)?;
        self.clock_steps.push((at, secs));
        Ok(())
    }
}

/// `clock_settime(CLOCK_REALTIME, now + secs)`.
pub(super) fn step_realtime(secs: f64) -> Result<()> {
    use nix::time::{clock_gettime, clock_settime, ClockId};
    let now = clock_gettime(ClockId::CLOCK_REALTIME).context("reading CLOCK_REALTIME")?;
    let d = nix::sys::time::TimeSpec::from_duration(Duration::from_secs_f64(secs.abs()));
    let to = if secs >= 0.0 { now + d } else { now - d };
    clock_settime(ClockId::CLOCK_REALTIME, to)
        .with_context(|| format!("stepping CLOCK_REALTIME by {secs} s (needs CAP_SYS_TIME)"))
}

/// The last fatal error of a log (Go's `fatal error:`/`panic:`, klog's `F` lines) with two
/// lines before and nine after, else its last 15 lines.
fn fatal_excerpt(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let fatal = lines.iter().rposition(|l| {
        l.starts_with("fatal error")
            || l.starts_with("panic:")
            || (l.starts_with('F') && l[1..].starts_with(|c: char| c.is_ascii_digit()))
    });
    match fatal {
        Some(k) => lines[k.saturating_sub(2)..(k + 10).min(lines.len())].join("\n"),
        None => lines[lines.len().saturating_sub(15)..].join("\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::fatal_excerpt;

    #[test]
    fn a_crash_is_told_by_its_fatal_line_not_by_the_stack_dump_after_it() {
        let mut log = String::from("I1202 started\nI1202 cacher initialized\n");
        log += "unexpected fault address 0x0\nfatal error: fault\n";
        for g in 0..500 {
            log += &format!("goroutine {g} [running]:\nruntime.goexit()\n");
        }
        let x = fatal_excerpt(&log);
        assert!(x.starts_with(
            "I1202 cacher initialized\nunexpected fault address 0x0\nfatal error: fault"
        ));
        assert_eq!(x.lines().count(), 12);
        let x = fatal_excerpt("I1 a\nF1202 10:00 etcd unreachable\nI1 b\n");
        assert!(x.contains("F1202 10:00 etcd unreachable"));
        let quiet: String = (0..40).map(|i| format!("line {i}\n")).collect();
        assert_eq!(fatal_excerpt(&quiet).lines().next(), Some("line 25"));
        assert_eq!(
            fatal_excerpt("Flag --x deprecated\n"),
            "Flag --x deprecated"
        );
    }
}
