//! A load balancer in front of the machines, on a host of its own (`lb`) on the testbed's
//! bridge: the external-LB topology, with the VIP agents still running on the machines.
//! The client's prober (and the chaos runner's watch stream) then go to `LB:6443` instead
//! of the VIP.
//!
//! Two kinds: `cpe lb` with every machine's API server as seeds and `--discover etcd`
//! (so it follows machine replacements through etcd's member list), or HAProxy with a
//! static list of the machines as they were at the start (the usual recipe; it cannot
//! follow a replacement). Here: the command lines, starting, restarting and stopping it,
//! its pid and log. It knows nothing of either program's internals, and judges nothing.

use super::Testbed;
use crate::{Child, Host};
use anyhow::{bail, Result};
use nix::sys::signal::Signal;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

/// Which load balancer runs in front of the machines.
#[derive(Debug, Clone)]
pub enum FrontLb {
    /// `cpe lb` from this binary, backends discovered from etcd's member list.
    Cpe(PathBuf),
    /// HAProxy with a static list of the original machines (the comparison).
    Haproxy,
}

impl FrontLb {
    /// `cpe lb` or `haproxy`, as histories and reports name it.
    pub fn name(&self) -> &'static str {
        match self {
            FrontLb::Cpe(_) => "cpe lb",
            FrontLb::Haproxy => "haproxy",
        }
    }

    /// The signal that stops it gracefully (stop accepting, let connections finish, exit
    /// 0): SIGTERM for `cpe lb`; SIGUSR1 for HAProxy, whose SIGTERM is its hard stop.
    pub fn stop_signal(&self) -> Signal {
        match self {
            FrontLb::Cpe(_) => Signal::SIGTERM,
            FrontLb::Haproxy => Signal::SIGUSR1,
        }
    }
}

/// The front load balancer of a testbed.
#[derive(Debug)]
pub(super) struct Front {
    pub(super) kind: FrontLb,
    pub(super) host: Host,
    pub(super) child: Option<Child>,
}

/// The `lb` host's last address byte on the bridge (machines are .11–.30, the client .50,
/// the VIP .100).
pub(super) const LB_HOST: u8 = 60;
const PORT: u16 = 6443;
/// `cpe lb`'s admin listener, inside the `lb` host.
const ADMIN: &str = "127.0.0.1:9630";

impl Testbed {
    /// The address the client sends to: the front load balancer's, else the VIP.
    pub fn entry(&self) -> Ipv4Addr {
        self.front.as_ref().map_or(self.vip, |f| f.host.addr)
    }

    /// The front load balancer's kind, if there is one.
    pub fn front_kind(&self) -> Option<&FrontLb> {
        self.front.as_ref().map(|f| &f.kind)
    }

    /// The `lb` host, if there is a front load balancer.
    pub fn front_host(&self) -> Option<&Host> {
        self.front.as_ref().map(|f| &f.host)
    }

    /// Starts the front load balancer (the machines' API servers and etcd are up) and
    /// waits until it accepts connections on `LB:6443`.
    pub(super) fn start_front(&mut self) -> Result<()> {
        let Some(f) = self.front.as_ref() else {
            return Ok(());
        };
        let (kind, host) = (f.kind.clone(), f.host.clone());
        let log = self.dir().join("lb.log");
        let mut child = match &kind {
            FrontLb::Cpe(bin) => {
                let mut args: Vec<String> = vec![
                    "lb".into(),
                    "--listen".into(),
                    format!("{}:{PORT}", host.addr),
                    "--admin".into(),
                    ADMIN.into(),
                ];
                // Seeds: every machine's API server now; afterwards etcd's member list.
                for m in &self.machines {
                    args.extend(["--backend".into(), format!("{}:{PORT}", m.host.addr)]);
                }
                let cache = self.dir().join("cache-lb");
                args.extend([
                    "--discover".into(),
                    "etcd".into(),
                    "--etcd".into(),
                    self.etcd.endpoints(),
                    "--cache-dir".into(),
                    cache.to_string_lossy().into_owned(),
                    // The stand-in's /readyz over HTTPS, verified with its test CA; the
                    // defaults' timing (250 ms, fall 2, rise 2), written out.
                    "--health-check".into(),
                    "https".into(),
                    "--health-path".into(),
                    "/readyz".into(),
                    "--ca-file".into(),
                    self.dir().join("pki/ca.crt").to_string_lossy().into_owned(),
                    "--health-interval".into(),
                    "250ms".into(),
                    "--fall".into(),
                    "2".into(),
                    "--rise".into(),
                    "2".into(),
                    // As the in-agent load balancer: a SIGTERMed LB is done in 5 s.
                    "--drain-timeout".into(),
                    "5s".into(),
                ]);
                host.spawn("cpe lb", &log, bin, &args)?
            }
            FrontLb::Haproxy => {
                // TCP mode, HTTPS /readyz checks every 250 ms (fall 2, rise 2) like cpe
                // lb's, the machines as they were at the start: a restart after a crash
                // reads the same file.
                let backends: Vec<String> = self
                    .machines
                    .iter()
                    .map(|m| format!("{}:{PORT}", m.host.addr))
                    .collect();
                let conf =
                    crate::kube::replace::haproxy_conf(&format!("{}:{PORT}", host.addr), &backends);
                let path = self.dir().join("haproxy-front.cfg");
                if !path.exists() {
                    std::fs::write(&path, conf)?;
                }
                let args = [
                    "-f".into(),
                    path.to_string_lossy().into_owned(),
                    "-db".into(),
                ];
                host.spawn("haproxy", &log, "haproxy", &args)?
            }
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        let url = format!("https://{}:{PORT}/readyz", host.addr);
        while host.exec("curl", &["-sfk", "-m", "1", &url]).is_err() {
            if !child.is_running() || Instant::now() > deadline {
                bail!(
                    "{} in front did not answer {url}: {}",
                    kind.name(),
                    child.tail(30)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if let Some(f) = self.front.as_mut() {
            f.child = Some(child);
        }
        Ok(())
    }

    /// Whether the front load balancer runs (`None`: there is none).
    pub fn front_running(&mut self) -> Option<bool> {
        let f = self.front.as_mut()?;
        Some(f.child.as_mut().is_some_and(|c| c.is_running()))
    }

    /// The front load balancer's pid.
    pub fn front_pid(&self) -> Option<u32> {
        self.front.as_ref()?.child.as_ref().map(|c| c.pid())
    }

    /// Its log, last `n` lines.
    pub fn front_log_tail(&self, n: usize) -> String {
        self.front
            .as_ref()
            .and_then(|f| f.child.as_ref())
            .map(|c| c.tail(n))
            .unwrap_or_default()
    }

    /// Stops the front load balancer (its [`FrontLb::stop_signal`], SIGKILL after
    /// `grace`) and returns how it exited: `None` if there is none, `Some(None)` if it had
    /// to be killed.
    pub fn stop_front(&mut self, grace: Duration) -> Option<Option<ExitStatus>> {
        let f = self.front.as_mut()?;
        let mut c = f.child.take()?;
        if let Some(st) = c.try_status() {
            return Some(Some(st));
        }
        c.signal(f.kind.stop_signal());
        let st = c.wait_timeout(grace);
        if st.is_none() {
            c.kill();
        }
        Some(st)
    }

    /// Starts a new front load balancer after the old one exited (it is reaped first).
    pub fn restart_front(&mut self) -> Result<()> {
        self.stop_front(Duration::from_secs(5));
        self.start_front()
    }
}
