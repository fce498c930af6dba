//! The VIP testbed: three control-plane machines and a client on one bridge, and the failure
//! scenarios of `docs/vip-failover.md`, run against `cpe vip` or keepalived.
//!
//! Each machine is a namespace with an etcd member, a stand-in API server on `:6443` and the
//! VIP agent; the client namespace runs the [`Prober`] against `VIP:6443`, and a [`Watch`]
//! samples every machine's addresses and the client's neighbour entry. A scenario waits for a
//! steady state (one holder, the client answered), injects one failure into the holder (or
//! the etcd leader), waits for the VIP to settle, measures, then repairs everything and waits
//! for a steady state again, so scenarios run one after another on one testbed.
//!
//! This module measures and reports; it asserts nothing. The tests (`vip_e2e.rs`) assert
//! the properties on the [`Outcome`]s; the benchmark (`bench/vip.sh`, through the
//! `vip_bench` example) prints their figures. It knows the command lines of `cpe vip`,
//! `cpe test-apiserver` and keepalived, nothing of their internals.

use crate::observe::{HolderChange, Prober, Requests, Target, Watch};
use crate::{Child, EtcdCluster, Host, Net};
use anyhow::{bail, Context, Result};
use nix::sys::signal::Signal;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Which stand-in API server runs on each machine.
#[derive(Debug, Clone)]
pub enum ApiKind {
    /// `cpe test-apiserver` from this binary (HTTPS).
    Cpe(PathBuf),
    /// `python3 -m http.server` serving a directory with a `readyz` file (HTTP); only for
    /// trying the harness before the stand-in exists.
    Python,
}

/// Which VIP agent runs on each machine.
#[derive(Debug, Clone)]
pub enum AgentKind {
    /// `cpe vip` from this binary, with this lease TTL (e.g. "2s") and extra arguments
    /// (e.g. `--etcd-move-leader off`).
    Cpe {
        bin: PathBuf,
        lease_ttl: String,
        extra: Vec<String>,
    },
    /// keepalived (VRRP) with a `vrrp_script` on the local /readyz; see [`keepalived_conf`].
    Keepalived,
}

impl AgentKind {
    pub fn name(&self) -> &'static str {
        match self {
            AgentKind::Cpe { .. } => "cpe",
            AgentKind::Keepalived => "keepalived",
        }
    }
}

/// The failures, one at a time, always injected into the VIP holder unless said otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// The holder's API server process is SIGKILLed.
    ApiserverKilled,
    /// The holder's API server keeps running but `/readyz` answers 503.
    Readyz503,
    /// The holder's switch port goes down; after the VIP moved it comes back up.
    LinkCut,
    /// As `LinkCut`, but the etcd leader is first moved onto the holder's member
    /// (`etcdctl move-leader`) and the cut comes 6 s later: the worst case for stacked
    /// etcd, unless the agent hands leadership away in the meantime (`cpe vip` does).
    LinkCutEtcdLeader,
    /// The holder's agent is SIGKILLed.
    AgentSigkill,
    /// The holder's agent gets SIGTERM (planned handover).
    AgentSigterm,
    /// The holder is cut off (IP) from the other machines, not from the client.
    Partition,
    /// The etcd leader (wherever the VIP is) is SIGKILLed.
    EtcdLeaderKilled,
    /// Every machine replaced in turn (agent stopped, etcd member removed, new machine with
    /// a new address added) while the client keeps sending.
    RollingReplacement,
}

impl Scenario {
    pub const ALL: [Scenario; 9] = [
        Scenario::ApiserverKilled,
        Scenario::Readyz503,
        Scenario::LinkCut,
        Scenario::LinkCutEtcdLeader,
        Scenario::AgentSigkill,
        Scenario::AgentSigterm,
        Scenario::Partition,
        Scenario::EtcdLeaderKilled,
        Scenario::RollingReplacement,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::ApiserverKilled => "apiserver-killed",
            Scenario::Readyz503 => "readyz-503",
            Scenario::LinkCut => "link-cut",
            Scenario::LinkCutEtcdLeader => "link-cut-etcd-leader",
            Scenario::AgentSigkill => "agent-sigkill",
            Scenario::AgentSigterm => "agent-sigterm",
            Scenario::Partition => "partition",
            Scenario::EtcdLeaderKilled => "etcd-leader-killed",
            Scenario::RollingReplacement => "rolling-replacement",
        }
    }

    pub fn from_name(s: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|x| x.name() == s)
    }

    /// Whether the VIP is expected to leave the machine the failure hit.
    pub fn moves(self) -> bool {
        !matches!(
            self,
            Scenario::EtcdLeaderKilled | Scenario::RollingReplacement
        )
    }
}

/// What one scenario run measured. Times are seconds.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub agent: &'static str,
    pub scenario: Scenario,
    /// The holder when the failure was injected.
    pub from: String,
    /// Whether the holder's etcd member was the etcd leader then (losing both at once costs
    /// an etcd election on top of the lease TTL). None if it could not be told.
    pub holder_led_etcd: Option<bool>,
    /// The holders once it settled (before repair). One, on a healthy machine, is the goal.
    pub settled_holders: Vec<String>,
    /// Whether the settled holder is a machine the failure did not hit (or, after an
    /// agent's SIGKILL, the old holder still serving: see `stayed_orphaned`).
    pub settled_on_healthy: bool,
    /// Agent SIGKILL only: the VIP stayed on the machine whose agent was killed (its address
    /// orphaned there, still served by its API server) until the agent was restarted.
    pub stayed_orphaned: bool,
    /// From the failure to the VIP first appearing on another machine (None: never).
    pub takeover: Option<Duration>,
    /// Longest time without a successful request from the failure until settled (None:
    /// nothing succeeded).
    pub outage: Option<Duration>,
    pub requests: usize,
    pub failed: usize,
    /// The first few failures (start time and error), for the report.
    pub failures: Vec<String>,
    pub slowest: Duration,
    /// Sweeps that saw two holders, from the failure until the measurement ended.
    pub doubles: Vec<HolderChange>,
    /// Sweeps that saw two holders while the testbed was being repaired afterwards (a
    /// restarted agent, a healed partition, keepalived preempting back).
    pub doubles_repair: Vec<HolderChange>,
    /// ARP claims for the VIP the client received (gratuitous requests and replies), from
    /// the failure to settle: (time, MAC, host owning it).
    pub arp_claims: Vec<(Duration, String, Option<String>)>,
    /// Distinct MACs that claimed the VIP to the client after the takeover until settled:
    /// more than one means the client saw two machines answer for it.
    pub arp_claimers_after_takeover: usize,
    /// Whether the client's neighbour entry pointed at the settled holder's MAC.
    pub neighbour_follows: bool,
    pub neighbour_detail: String,
    /// Link cut only: holder changes after the link came back (0 = no flapping), and the
    /// outage the client saw then.
    pub changes_after_restore: Option<usize>,
    pub restore_outage: Option<Duration>,
    /// Holder and neighbour changes, for printing.
    pub timeline: Vec<String>,
}

impl Outcome {
    /// One line for logs and the bench.
    pub fn line(&self) -> String {
        let s = |d: Option<Duration>| {
            d.map(|d| format!("{:.3}s", d.as_secs_f64()))
                .unwrap_or("none".into())
        };
        let mut l = format!(
            "{:<10} {:<20} from {} to {:?}: takeover {}, outage {}, failed {}/{}, slowest {:.3}s, two holders: {}, neighbour follows: {}",
            self.agent,
            self.scenario.name(),
            if self.holder_led_etcd == Some(true) { format!("{} (etcd leader)", self.from) } else { self.from.clone() },
            self.settled_holders,
            s(self.takeover),
            s(self.outage),
            self.failed,
            self.requests,
            self.slowest.as_secs_f64(),
            if self.doubles.is_empty() { "no".to_string() } else { format!("YES ({} sweeps, first {:?})", self.doubles.len(), self.doubles[0]) },
            self.neighbour_follows,
        );
        l += &format!(
            ", ARP claimers after takeover: {}",
            self.arp_claimers_after_takeover
        );
        if self.stayed_orphaned {
            l += ", VIP stayed on the killed agent's machine";
        }
        if let Some(c) = self.changes_after_restore {
            l += &format!(
                ", changes after link back: {c} (outage then {})",
                s(self.restore_outage)
            );
        }
        l
    }

    /// The figures as JSON (for `bench/vip.sh`).
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "agent": self.agent,
            "scenario": self.scenario.name(),
            "from": self.from,
            "holder_led_etcd": self.holder_led_etcd,
            "settled": self.settled_holders,
            "settled_on_healthy": self.settled_on_healthy,
            "stayed_orphaned": self.stayed_orphaned,
            "takeover_s": self.takeover.map(|d| d.as_secs_f64()),
            "outage_s": self.outage.map(|d| d.as_secs_f64()),
            "requests": self.requests,
            "failed": self.failed,
            "failures": self.failures,
            "slowest_s": self.slowest.as_secs_f64(),
            "two_holders": !self.doubles.is_empty(),
            "two_holders_during_repair": !self.doubles_repair.is_empty(),
            "neighbour_follows": self.neighbour_follows,
            "arp_claimers_after_takeover": self.arp_claimers_after_takeover,
            "changes_after_restore": self.changes_after_restore,
            "restore_outage_s": self.restore_outage.map(|d| d.as_secs_f64()),
        })
    }
}

/// One control-plane machine.
#[derive(Debug)]
struct Machine {
    host: Host,
    /// keepalived priority rank (0 is highest); kept by its replacement.
    slot: usize,
    api: Option<Child>,
    agent: Option<Child>,
    /// What was done to it, so repair knows what to undo and "healthy" can be judged.
    unready: bool,
    link_cut: bool,
    partitioned: bool,
}

impl Machine {
    /// A machine with nothing started on it yet and no failure injected.
    fn fresh(host: Host, slot: usize) -> Machine {
        Machine {
            host,
            slot,
            api: None,
            agent: None,
            unready: false,
            link_cut: false,
            partitioned: false,
        }
    }
}

impl Machine {
    fn healthy(&mut self) -> bool {
        !self.unready
            && !self.link_cut
            && !self.partitioned
            && self.api.as_mut().is_some_and(|c| c.is_running())
            && self.agent.as_mut().is_some_and(|c| c.is_running())
    }
}

/// The testbed. Fields drop in order: observers, processes, etcd, namespaces, files.
#[derive(Debug)]
pub struct Testbed {
    watch: Watch,
    prober: Prober,
    /// tcpdump in the client namespace: the ARP traffic the client sees.
    arp: Child,
    /// Every machine's eth0 MAC ever seen, for naming ARP senders.
    macs: Vec<(String, String)>,
    machines: Vec<Machine>,
    etcd: EtcdCluster,
    pub client: Host,
    pub vip: Ipv4Addr,
    api: ApiKind,
    agent: AgentKind,
    epoch: Instant,
    epoch_wall: std::time::SystemTime,
    /// Next host number for replacements (cp4, cp5, ...).
    next_host: usize,
    net: Net,
    dir: tempfile::TempDir,
}

const API_PORT: u16 = 6443;
const ADMIN_PORT: u16 = 7445;

impl Testbed {
    /// Builds the net, etcd, API servers and agents, starts the observers, and waits for a
    /// steady state. `tag` prefixes the namespace names.
    pub fn start(tag: &str, api: ApiKind, agent: AgentKind) -> Result<Testbed> {
        crate::require_root();
        let mut progs = vec!["ip", "etcd", "etcdctl", "nft", "curl", "tcpdump"];
        match (&api, &agent) {
            (ApiKind::Python, _) => progs.push("python3"),
            (_, AgentKind::Keepalived) => progs.push("keepalived"),
            _ => {}
        }
        if matches!(agent, AgentKind::Keepalived) {
            progs.push("keepalived");
        }
        crate::require_programs(&progs);
        let dir = tempfile::Builder::new()
            .prefix(&format!("{tag}-"))
            .tempdir()?;
        let net = Net::new(tag)?;
        let hosts: Vec<Host> = (1..=3)
            .map(|i| net.add_host(&format!("cp{i}"), 10 + i as u8))
            .collect::<Result<_>>()?;
        let client = net.add_host("client", 50)?;
        let vip = net.addr(100);
        let etcd = EtcdCluster::start(&hosts, dir.path())?;
        let epoch = Instant::now();
        let epoch_wall = std::time::SystemTime::now();
        let arp = client.spawn(
            "tcpdump arp",
            &dir.path().join("client-arp.txt"),
            "tcpdump",
            &["-l", "-n", "-e", "-tt", "-i", "eth0", "arp"].map(String::from),
        )?;
        let mut macs = Vec::new();
        for h in &hosts {
            macs.push((h.mac()?, h.name.clone()));
        }
        let watch = Watch::start(&hosts, &client, vip, Duration::from_millis(10), epoch)?;
        let target = Target {
            addr: SocketAddr::new(vip.into(), API_PORT),
            https: matches!(api, ApiKind::Cpe(_)),
            path: "/readyz".into(),
        };
        let prober = Prober::start(
            &client,
            target,
            Duration::from_millis(20),
            Duration::from_secs(2),
            epoch,
        )?;
        let machines = hosts
            .into_iter()
            .enumerate()
            .map(|(slot, host)| Machine::fresh(host, slot))
            .collect();
        let mut tb = Testbed {
            watch,
            prober,
            arp,
            macs,
            machines,
            etcd,
            client,
            vip,
            api,
            agent,
            epoch,
            epoch_wall,
            next_host: 4,
            net,
            dir,
        };
        // The first API server generates the shared test PKI; start the others after it.
        tb.start_api(0)?;
        tb.wait_api_ready(0)?;
        for i in 1..tb.machines.len() {
            tb.start_api(i)?;
        }
        for i in 0..tb.machines.len() {
            tb.wait_api_ready(i)?;
            tb.start_agent(i)?;
        }
        tb.wait_stable(Duration::from_secs(60))?;
        Ok(tb)
    }

    /// Seconds since the testbed started (the observers' clock).
    pub fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// Where logs and configs live.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Every request the client made so far.
    pub fn requests(&self) -> Requests {
        self.prober.requests()
    }

    /// The holder watcher.
    pub fn watch(&self) -> &Watch {
        &self.watch
    }

    fn log(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }

    fn start_api(&mut self, i: usize) -> Result<()> {
        let m = &self.machines[i];
        let name = m.host.name.clone();
        let log = self.log(&format!("api-{name}"));
        let child = match &self.api {
            ApiKind::Python => {
                let root = self.dir.path().join(format!("www-{name}"));
                std::fs::create_dir_all(&root)?;
                std::fs::write(root.join("readyz"), "ok")?;
                let args: Vec<String> = [
                    "-m",
                    "http.server",
                    &API_PORT.to_string(),
                    "--bind",
                    "0.0.0.0",
                    "--directory",
                ]
                .iter()
                .map(|s| s.to_string())
                .chain([root.to_string_lossy().into_owned()])
                .collect();
                m.host
                    .spawn(&format!("api {name}"), &log, "python3", &args)?
            }
            ApiKind::Cpe(bin) => {
                // One test PKI for all machines: the first server generates it (the caller
                // waits for it before starting the others), the others reuse it.
                let mut args = vec![
                    "test-apiserver".to_string(),
                    "--listen".into(),
                    format!("0.0.0.0:{API_PORT}"),
                    "--name".into(),
                    name.clone(),
                    "--tls-dir".into(),
                    self.dir.path().join("pki").to_string_lossy().into_owned(),
                    // Long enough that a SIGTERMed stand-in is still serving when an agent
                    // reacts to its 503; the scenarios kill it with SIGKILL anyway.
                    "--shutdown-delay".into(),
                    "2s".into(),
                ];
                let mut sans = vec![
                    "localhost".to_string(),
                    "127.0.0.1".into(),
                    self.vip.to_string(),
                ];
                sans.extend((11..=30).map(|l| self.net.addr(l).to_string()));
                for s in sans {
                    args.push("--san".into());
                    args.push(s);
                }
                m.host.spawn(&format!("api {name}"), &log, bin, &args)?
            }
        };
        let m = &mut self.machines[i];
        m.api = Some(child);
        m.unready = false;
        Ok(())
    }

    fn api_url(&self) -> String {
        match self.api {
            ApiKind::Python => format!("http://127.0.0.1:{API_PORT}/readyz"),
            ApiKind::Cpe(_) => format!("https://127.0.0.1:{API_PORT}/readyz"),
        }
    }

    fn wait_api_ready(&mut self, i: usize) -> Result<()> {
        let url = self.api_url();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if self.machines[i]
                .host
                .exec("curl", &["-sfk", "-m", "1", &url])
                .is_ok()
            {
                return Ok(());
            }
            let m = &mut self.machines[i];
            if Instant::now() > deadline || !m.api.as_mut().is_some_and(|c| c.is_running()) {
                bail!(
                    "API server on {} not ready: {}",
                    m.host.name,
                    m.api.as_ref().map(|c| c.tail(20)).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Makes /readyz answer 503 (Python: 404) while the server keeps running.
    fn make_unready(&mut self, i: usize) -> Result<()> {
        self.set_ready(i, false)
    }

    fn make_ready(&mut self, i: usize) -> Result<()> {
        self.set_ready(i, true)
    }

    fn set_ready(&mut self, i: usize, ready: bool) -> Result<()> {
        let name = self.machines[i].host.name.clone();
        let marker = self.dir.path().join(format!("www-{name}/readyz"));
        match &self.api {
            ApiKind::Python if ready => std::fs::write(marker, "ok")?,
            ApiKind::Python => std::fs::remove_file(marker)?,
            ApiKind::Cpe(_) => {
                // The stand-in's own switch (`POST /debug/ready`), from inside the machine.
                self.machines[i]
                    .host
                    .exec(
                        "curl",
                        &[
                            "-sfk",
                            "-m",
                            "1",
                            "-X",
                            "POST",
                            "--data",
                            if ready { "true" } else { "false" },
                            &format!("https://127.0.0.1:{API_PORT}/debug/ready"),
                        ],
                    )
                    .with_context(|| format!("setting /readyz on {name} to ready={ready}"))?;
            }
        }
        self.machines[i].unready = !ready;
        Ok(())
    }

    fn start_agent(&mut self, i: usize) -> Result<()> {
        let url = self.api_url();
        // This machine's own member first, as `cpe vip --etcd` asks.
        let own = format!("http://{}:2379", self.machines[i].host.addr);
        let mut eps: Vec<String> = self.etcd.endpoints().split(',').map(String::from).collect();
        eps.sort_by_key(|e| *e != own);
        let eps = eps.join(",");
        let vip = self.vip;
        let m = &self.machines[i];
        let name = m.host.name.clone();
        let log = self.log(&format!("agent-{name}"));
        let child = match &self.agent {
            AgentKind::Cpe {
                bin,
                lease_ttl,
                extra,
            } => {
                let mut args: Vec<String> = vec![
                    "vip".into(),
                    "--vip".into(),
                    format!("{vip}/24"),
                    "--interface".into(),
                    "eth0".into(),
                    "--node".into(),
                    name.clone(),
                    "--etcd".into(),
                    eps,
                    "--health-url".into(),
                    url,
                    "--lease-ttl".into(),
                    lease_ttl.clone(),
                    "--admin".into(),
                    format!("127.0.0.1:{ADMIN_PORT}"),
                ];
                args.extend(extra.iter().cloned());
                m.host.spawn(&format!("cpe vip {name}"), &log, bin, &args)?
            }
            AgentKind::Keepalived => {
                let d = self.dir.path();
                let conf = d.join(format!("keepalived-{name}.conf"));
                std::fs::write(
                    &conf,
                    keepalived_conf(&name, vip, 24, 200 - 50 * m.slot as u32, &url),
                )?;
                let p = |s: &str| {
                    d.join(format!("keepalived-{name}.{s}.pid"))
                        .to_string_lossy()
                        .into_owned()
                };
                let args: Vec<String> = vec![
                    "-n".into(),
                    "-l".into(),
                    "-D".into(),
                    "-P".into(),
                    "-f".into(),
                    conf.to_string_lossy().into_owned(),
                    "-p".into(),
                    p("main"),
                    "-r".into(),
                    p("vrrp"),
                    "-c".into(),
                    p("check"),
                ];
                m.host
                    .spawn(&format!("keepalived {name}"), &log, "keepalived", &args)?
            }
        };
        self.machines[i].agent = Some(child);
        Ok(())
    }

    /// Kills the agent of machine `i` with `sig` (keepalived: its VRRP child too, which is
    /// the process holding the state).
    fn signal_agent(&mut self, i: usize, sig: Signal) {
        let name = self.machines[i].host.name.clone();
        if matches!(self.agent, AgentKind::Keepalived) && sig == Signal::SIGKILL {
            let pidfile = self.dir.path().join(format!("keepalived-{name}.vrrp.pid"));
            if let Some(pid) = std::fs::read_to_string(pidfile)
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok())
            {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        if let Some(a) = self.machines[i].agent.as_ref() {
            a.signal(sig);
        }
    }

    /// The index of the single current holder, if exactly one.
    fn holder(&self) -> Option<usize> {
        let h = self.watch.current();
        if h.len() != 1 {
            return None;
        }
        self.machines.iter().position(|m| m.host.name == h[0])
    }

    /// Waits until exactly one machine has held the VIP for a while (cpe: 2 s; keepalived:
    /// until the highest-priority machine holds it, since it preempts) and the client's last
    /// requests succeeded. Returns the holder.
    pub fn wait_stable(&mut self, timeout: Duration) -> Result<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            let now = self.now();
            let since = self.watch.holders().last().map(|c| c.t).unwrap_or_default();
            if let Some(h) = self.holder() {
                let settled = match self.agent {
                    AgentKind::Cpe { .. } => now - since >= Duration::from_secs(2),
                    AgentKind::Keepalived => {
                        let top = self.machines.iter().map(|m| m.slot).min();
                        Some(self.machines[h].slot) == top && now - since >= Duration::from_secs(1)
                    }
                };
                if settled && self.prober.requests().last_ok(10, now) {
                    return Ok(h);
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "no steady state after {timeout:?}: holders {:?}, last requests {:?}\n{}",
                    self.watch.current(),
                    self.prober
                        .requests()
                        .0
                        .iter()
                        .rev()
                        .take(3)
                        .collect::<Vec<_>>(),
                    self.logs(25)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// ARP claims for the VIP seen by the client so far: (time, MAC, host).
    pub fn arp_claims(&self) -> Vec<(Duration, String, Option<String>)> {
        let text =
            std::fs::read_to_string(self.dir.path().join("client-arp.txt")).unwrap_or_default();
        let base = self
            .epoch_wall
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        let vip = self.vip.to_string();
        let _ = &self.arp;
        text.lines()
            .filter_map(|l| {
                let (mac, t) = parse_arp_claim(l, &vip)?;
                let host = self
                    .macs
                    .iter()
                    .find(|(m, _)| *m == mac)
                    .map(|(_, n)| n.clone());
                Some((Duration::from_secs_f64((t - base).max(0.0)), mac, host))
            })
            .collect()
    }

    /// The tails of every log (etcd, API servers, agents).
    pub fn logs(&self, lines: usize) -> String {
        let mut out = String::new();
        let mut entries: Vec<_> = std::fs::read_dir(self.dir.path())
            .map(|r| {
                r.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|e| e == "log"))
                    .collect()
            })
            .unwrap_or_else(|_| Vec::new());
        entries.sort();
        for p in entries {
            out += &format!(
                "--- {} ---\n{}\n",
                p.file_name().unwrap_or_default().to_string_lossy(),
                crate::child::tail_file(&p, lines)
            );
        }
        out
    }

    /// Undoes every injected failure and waits for a steady state.
    pub fn repair(&mut self) -> Result<usize> {
        for i in 0..self.machines.len() {
            let m = &mut self.machines[i];
            if m.partitioned {
                m.host.heal()?;
                m.partitioned = false;
            }
            if m.link_cut {
                m.host.link_up()?;
                m.link_cut = false;
            }
        }
        for i in 0..self.etcd.members.len() {
            if !self.etcd.members[i].is_running() {
                self.etcd.restart(i)?;
            }
        }
        for i in 0..self.machines.len() {
            if !self.machines[i]
                .api
                .as_mut()
                .is_some_and(|c| c.is_running())
            {
                self.start_api(i)?;
                self.wait_api_ready(i)?;
            } else if self.machines[i].unready {
                self.make_ready(i)?;
            }
            if !self.machines[i]
                .agent
                .as_mut()
                .is_some_and(|c| c.is_running())
            {
                // Reap it (SIGTERM may still be finishing) before starting a new one.
                if let Some(mut old) = self.machines[i].agent.take() {
                    old.terminate(Duration::from_secs(5));
                }
                self.start_agent(i)?;
            }
        }
        self.etcd.wait_healthy(Duration::from_secs(30))?;
        self.wait_stable(Duration::from_secs(60))
    }

    /// Runs one scenario and repairs afterwards.
    pub fn run(&mut self, s: Scenario) -> Result<Outcome> {
        let holder = self.wait_stable(Duration::from_secs(60))?;
        let from = self.machines[holder].host.name.clone();
        if s == Scenario::LinkCutEtcdLeader {
            let idx = self
                .etcd
                .index_of(&self.machines[holder].host)
                .context("the holder has no etcd member")?;
            self.etcd.move_leader_to(idx)?;
            eprintln!(
                "[vip] etcd leadership moved onto the holder {from}; cutting its link in 6 s"
            );
            std::thread::sleep(Duration::from_secs(6));
        }
        let holder_led_etcd = self
            .etcd
            .leader()
            .ok()
            .map(|l| self.etcd.members[l].host.name == from);
        std::thread::sleep(Duration::from_millis(300));
        let t_fault = self.now();
        let mut hit = vec![holder];
        match s {
            Scenario::ApiserverKilled => {
                if let Some(a) = self.machines[holder].api.as_mut() {
                    a.kill();
                }
            }
            Scenario::Readyz503 => self.make_unready(holder)?,
            Scenario::LinkCut | Scenario::LinkCutEtcdLeader => {
                self.machines[holder].host.link_down()?;
                self.machines[holder].link_cut = true;
            }
            Scenario::AgentSigkill => self.signal_agent(holder, Signal::SIGKILL),
            Scenario::AgentSigterm => self.signal_agent(holder, Signal::SIGTERM),
            Scenario::Partition => {
                let peers: Vec<Ipv4Addr> = self
                    .machines
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != holder)
                    .map(|(_, m)| m.host.addr)
                    .collect();
                self.machines[holder].host.partition_from(&peers)?;
                self.machines[holder].partitioned = true;
            }
            Scenario::EtcdLeaderKilled => {
                let l = self.etcd.leader()?;
                let lhost = self.etcd.members[l].host.name.clone();
                hit.clear();
                eprintln!("[vip] etcd leader is on {lhost} (VIP on {from})");
                self.etcd.kill(l);
            }
            Scenario::RollingReplacement => {
                hit.clear();
                for i in 0..self.machines.len() {
                    self.replace(i)?;
                }
            }
        }
        if s == Scenario::EtcdLeaderKilled {
            // Its effect comes late: an etcd election, then maybe a lease that could not be
            // renewed in time. Give it that long before judging the steady state.
            std::thread::sleep(Duration::from_secs(6));
        }
        // Settle: the VIP on one machine the failure did not hit, the client answered.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ok_holder = self.settled_ok(s, holder, &hit, t_fault);
            let now = self.now();
            if ok_holder
                && self.prober.requests().last_ok(5, now)
                && now - t_fault > Duration::from_millis(500)
            {
                break;
            }
            if Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Watch for a second holder or a move back.
        std::thread::sleep(Duration::from_secs(1));
        let t_settled = self.now();
        let settled_holders = self.watch.current();
        let settled_idx = self.holder();
        let settled_on_healthy = self.settled_ok(s, holder, &hit, t_fault);
        let stayed_orphaned = s == Scenario::AgentSigkill && settled_idx == Some(holder);
        let mut changes_after_restore = None;
        let mut restore_outage = None;
        if matches!(s, Scenario::LinkCut | Scenario::LinkCutEtcdLeader) {
            self.machines[holder].host.link_up()?;
            self.machines[holder].link_cut = false;
            let t_up = self.now();
            std::thread::sleep(Duration::from_secs(8));
            let t = self.now();
            changes_after_restore = Some(self.watch.changes(t_up, t).len());
            restore_outage = self.prober.requests().outage(t_up, t);
        }
        let t_end = self.now();
        let reqs = self.prober.requests();
        let outage = reqs.outage(t_fault, t_settled);
        let failed: Vec<String> = reqs
            .failed(t_fault, t_end)
            .iter()
            .take(5)
            .map(|r| format!("{:.3}s: {}", r.start.as_secs_f64(), r.detail))
            .collect();
        let failed_n = reqs.failed(t_fault, t_end).len();
        let takeover = self
            .watch
            .holders()
            .iter()
            .find(|c| c.t >= t_fault && c.holders.iter().any(|h| *h != from))
            .map(|c| c.t - t_fault);
        // The neighbour entry at settle time, against the settled holder's MAC.
        let neigh = self.watch.neighbour();
        let last_neigh = neigh.iter().rev().find(|c| c.t <= t_settled);
        let (neighbour_follows, neighbour_detail) = match (settled_idx, last_neigh) {
            (Some(h), Some(n)) => {
                let mac = self.machines[h].host.mac()?;
                (
                    n.mac == mac,
                    format!(
                        "client -> {} ({:?}), holder {} has {mac}",
                        n.mac, n.host, self.machines[h].host.name
                    ),
                )
            }
            (h, n) => (false, format!("holder {h:?}, neighbour entry {n:?}")),
        };
        let arp_claims: Vec<_> = self
            .arp_claims()
            .into_iter()
            .filter(|(t, _, _)| *t >= t_fault && *t <= t_settled)
            .collect();
        let arp_claimers_after_takeover = {
            let from_t = takeover.map(|d| t_fault + d).unwrap_or(t_fault);
            let mut m: Vec<&String> = arp_claims
                .iter()
                .filter(|(t, _, _)| *t > from_t)
                .map(|(_, m, _)| m)
                .collect();
            m.sort();
            m.dedup();
            m.len()
        };
        let mut timeline: Vec<String> = self
            .watch
            .holders()
            .iter()
            .filter(|c| c.t + Duration::from_millis(500) >= t_fault)
            .map(|c| format!("{:8.3}s holders {:?}", c.t.as_secs_f64(), c.holders))
            .collect();
        timeline.extend(
            neigh
                .iter()
                .filter(|c| c.t + Duration::from_millis(500) >= t_fault)
                .map(|c| {
                    format!(
                        "{:8.3}s client neighbour -> {} {:?}",
                        c.t.as_secs_f64(),
                        c.mac,
                        c.host
                    )
                }),
        );
        timeline.extend(arp_claims.iter().map(|(t, m, h)| {
            format!(
                "{:8.3}s client got ARP: VIP is-at {m} {h:?}",
                t.as_secs_f64()
            )
        }));
        timeline.push(format!("{:8.3}s failure injected", t_fault.as_secs_f64()));
        timeline.push(format!("{:8.3}s settled", t_settled.as_secs_f64()));
        timeline.sort();
        let repaired = self.repair();
        let t_repaired = self.now();
        let doubles = self.watch.doubles(t_fault, t_end);
        let doubles_repair = self.watch.doubles(t_end, t_repaired);
        let out = Outcome {
            agent: self.agent.name(),
            scenario: s,
            from,
            holder_led_etcd,
            settled_holders,
            settled_on_healthy,
            stayed_orphaned,
            takeover,
            outage,
            requests: reqs.count(t_fault, t_end),
            failed: failed_n,
            failures: failed,
            slowest: reqs.slowest(t_fault, t_end),
            doubles,
            doubles_repair,
            arp_claims,
            arp_claimers_after_takeover,
            neighbour_follows,
            neighbour_detail,
            changes_after_restore,
            restore_outage,
            timeline,
        };
        eprintln!("[vip] {}", out.line());
        repaired.with_context(|| format!("repairing after {}", s.name()))?;
        Ok(out)
    }

    /// Whether the VIP is where it may settle after scenario `s` hit `hit`: one holder,
    /// healthy and not hit. After an agent's SIGKILL the address it added stays on its
    /// interface (nobody is left to remove it) while its API server still answers; an agent
    /// that refuses to take over a VIP another host still answers for (no two holders)
    /// leaves it there, so that also counts, once a lease TTL and more have passed.
    fn settled_ok(&mut self, s: Scenario, old: usize, hit: &[usize], t_fault: Duration) -> bool {
        let Some(h) = self.holder() else { return false };
        if !hit.contains(&h) && self.machines[h].healthy() {
            return true;
        }
        s == Scenario::AgentSigkill
            && h == old
            && self.now() - t_fault > Duration::from_secs(5)
            && self.machines[h]
                .api
                .as_mut()
                .is_some_and(|c| c.is_running())
    }

    /// Replaces machine `i`: stops its agent and then its API server (SIGTERM), removes its etcd
    /// member, deletes the host, then adds a new host with a new address, etcd member, API
    /// server and agent, and waits for a steady state.
    fn replace(&mut self, i: usize) -> Result<()> {
        let old = self.machines[i].host.clone();
        if let Some(mut a) = self.machines[i].agent.take() {
            a.terminate(Duration::from_secs(10));
        }
        // Drained, as the kubelet stops a static pod: /readyz 503 for the shutdown delay
        // while requests are still served, then the listener closes.
        if let Some(mut a) = self.machines[i].api.take() {
            a.terminate(Duration::from_secs(10));
        }
        let idx = self
            .etcd
            .index_of(&old)
            .context("replaced machine has no etcd member")?;
        self.etcd.move_leader_off(idx)?;
        self.etcd.remove(idx)?;
        self.watch.remove_host(&old.name);
        self.net.remove_host(&old)?;
        let n = self.next_host;
        self.next_host += 1;
        let host = self.net.add_host(&format!("cp{n}"), 10 + n as u8)?;
        self.watch.add_host(&host)?;
        self.macs.push((host.mac()?, host.name.clone()));
        self.etcd.add(&host)?;
        let slot = self.machines[i].slot;
        self.machines[i] = Machine::fresh(host, slot);
        self.start_api(i)?;
        self.wait_api_ready(i)?;
        self.start_agent(i)?;
        eprintln!(
            "[vip] replaced {} by {}",
            old.name, self.machines[i].host.name
        );
        self.wait_stable(Duration::from_secs(60))?;
        Ok(())
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "[vip] test failed; logs in {}:\n{}",
                self.dir.path().display(),
                self.logs(30)
            );
        }
        if std::env::var_os("CPE_TESTKIT_KEEP").is_some() {
            let p = self.dir.path().to_path_buf();
            eprintln!("[vip] keeping {}", p.display());
            std::mem::forget(std::mem::replace(
                &mut self.dir,
                tempfile::tempdir().expect("tempdir"),
            ));
        }
    }
}

/// One tcpdump line (`-n -e -tt`) claiming `vip` for a MAC: a reply `VIP is-at MAC`, or a
/// gratuitous request `who-has VIP tell VIP` (the claimant is the Ethernet source). Returns
/// the MAC and the Unix time.
pub fn parse_arp_claim(line: &str, vip: &str) -> Option<(String, f64)> {
    let mut words = line.split_whitespace();
    let t: f64 = words.next()?.parse().ok()?;
    let src = words.next()?.to_lowercase();
    let is_at = format!("Reply {vip} is-at ");
    if let Some(i) = line.find(&is_at) {
        let mac = line[i + is_at.len()..]
            .split([',', ' '])
            .next()?
            .to_lowercase();
        return Some((mac, t));
    }
    if line.contains(&format!("Request who-has {vip} tell {vip},"))
        || line.contains(&format!(
            "Request who-has {vip} (ff:ff:ff:ff:ff:ff) tell {vip},"
        ))
    {
        return Some((src, t));
    }
    None
}

/// The keepalived configuration used as the peer: VRRP with `advert_int 1`, priorities
/// 200/150/100 (preemption on, keepalived's default, as in the kubeadm HA recipe), and a
/// `vrrp_script` that curls the local /readyz every second, `fall 2`, `rise 2`, no weight (a
/// failing check puts the instance in FAULT, which gives the VIP up at once).
pub fn keepalived_conf(
    name: &str,
    vip: Ipv4Addr,
    prefix: u8,
    priority: u32,
    readyz: &str,
) -> String {
    format!(
        r#"global_defs {{
  router_id {name}
  script_user root
  enable_script_security
  vrrp_garp_master_delay 0
}}
vrrp_script chk_apiserver {{
  script "/usr/bin/curl -sfk -m 1 {readyz}"
  interval 1
  timeout 1
  fall 2
  rise 2
}}
vrrp_instance VI_1 {{
  state BACKUP
  interface eth0
  virtual_router_id 51
  priority {priority}
  advert_int 1
  virtual_ipaddress {{
    {vip}/{prefix} dev eth0
  }}
  track_script {{
    chk_apiserver
  }}
}}
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arp_claims_are_replies_and_gratuitous_requests_for_the_vip_only() {
        let vip = "10.1.2.100";
        let reply = "1700000000.250000 aa:bb:cc:00:00:02 > 11:22:33:44:55:66, ethertype ARP (0x0806), length 42: Reply 10.1.2.100 is-at aa:bb:cc:00:00:02, length 28";
        let garp = "1700000000.5 AA:BB:CC:00:00:03 > ff:ff:ff:ff:ff:ff, ethertype ARP (0x0806), length 42: Request who-has 10.1.2.100 tell 10.1.2.100, length 28";
        let ask = "1700000000.6 11:22:33:44:55:66 > ff:ff:ff:ff:ff:ff, ethertype ARP (0x0806), length 42: Request who-has 10.1.2.100 tell 10.1.2.50, length 28";
        let other = "1700000000.7 aa:bb:cc:00:00:02 > 11:22:33:44:55:66, ethertype ARP (0x0806), length 42: Reply 10.1.2.11 is-at aa:bb:cc:00:00:02, length 28";
        assert_eq!(
            parse_arp_claim(reply, vip),
            Some(("aa:bb:cc:00:00:02".into(), 1700000000.25))
        );
        assert_eq!(
            parse_arp_claim(garp, vip),
            Some(("aa:bb:cc:00:00:03".into(), 1700000000.5))
        );
        assert_eq!(parse_arp_claim(ask, vip), None);
        assert_eq!(parse_arp_claim(other, vip), None);
        assert_eq!(parse_arp_claim("tcpdump: listening on eth0", vip), None);
    }
}
