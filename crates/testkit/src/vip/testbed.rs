//! The VIP testbed ([`Testbed`]): three control-plane machines and a client on one
//! bridge, each machine with an etcd member, an API server on `:6443` (the stand-in or a real
//! kube-apiserver, see `kube_api`) and the VIP agent, and the observers on the client. Here: building it, starting, signalling and
//! restarting the processes of one machine, waiting for a steady state (one holder, the
//! client answered), reading what the client saw on the wire, and repairing every injected
//! failure. Injecting the failures and measuring them is the runner's (`scenarios`). A
//! load balancer in front of the machines, when asked for, is `front.rs`'s.

use super::arp_clock::{run_times, LineTimes};
use super::front::{Front, FrontLb, LB_HOST};
use super::text::{keepalived_conf, parse_arp_claim};
use super::{AgentKind, ApiKind};
use crate::observe::{Prober, Requests, Target, Watch};
use crate::{Child, EtcdCluster, Host, Net};
use anyhow::{bail, Context, Result};
use nix::sys::signal::Signal;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// One control-plane machine.
#[derive(Debug)]
pub(super) struct Machine {
    pub(super) host: Host,
    /// keepalived priority rank (0 is highest); kept by its replacement.
    pub(super) slot: usize,
    pub(super) api: Option<Child>,
    /// When its API server was started (for the start-to-ready time printed), and how
    /// long its log was then (the log is appended to across restarts).
    pub(super) api_started: Option<Instant>,
    pub(super) api_log_from: u64,
    pub(super) agent: Option<Child>,
    /// HAProxy, in the keepalived+HAProxy recipe only (see `lb.rs`).
    pub(super) haproxy: Option<Child>,
    /// What was done to it, so repair knows what to undo and "healthy" can be judged.
    pub(super) unready: bool,
    pub(super) link_cut: bool,
    pub(super) partitioned: bool,
    /// Its agent is stopped (SIGSTOP) until resumed.
    pub(super) frozen: bool,
}

impl Machine {
    /// A machine with nothing started on it yet and no failure injected.
    pub(super) fn fresh(host: Host, slot: usize) -> Machine {
        Machine {
            host,
            slot,
            api: None,
            api_started: None,
            api_log_from: 0,
            agent: None,
            haproxy: None,
            unready: false,
            link_cut: false,
            partitioned: false,
            frozen: false,
        }
    }
}

impl Machine {
    /// Whether it is a good place for the VIP. With a load balancer on every machine
    /// (`load_balancing`) its own API server does not matter: its load balancer sends to
    /// the others.
    pub(super) fn healthy(&mut self, load_balancing: bool) -> bool {
        let api_ok =
            load_balancing || (!self.unready && self.api.as_mut().is_some_and(|c| c.is_running()));
        api_ok
            && !self.link_cut
            && !self.partitioned
            && !self.frozen
            && self.agent.as_mut().is_some_and(|c| c.is_running())
    }
}

/// The testbed. Fields drop in order: observers, processes, etcd, namespaces, files.
#[derive(Debug)]
pub struct Testbed {
    pub(super) watch: Watch,
    pub(super) prober: Prober,
    /// tcpdump in the client namespace: the ARP traffic the client sees.
    arp: Child,
    /// When each of tcpdump's lines was first seen (for clock steps: `arp_clock`).
    arp_seen: LineTimes,
    /// Every machine's eth0 MAC ever seen, for naming ARP senders.
    pub(super) macs: Vec<(String, String)>,
    pub(super) machines: Vec<Machine>,
    pub(super) etcd: EtcdCluster,
    pub client: Host,
    pub vip: Ipv4Addr,
    pub(super) api: ApiKind,
    /// The test cluster's CA, keys and tokens, with a real kube-apiserver (`kube_api`).
    pub(super) pki: Option<crate::kube::pki::KubePki>,
    pub(super) agent: AgentKind,
    epoch: Instant,
    epoch_wall: std::time::SystemTime,
    /// Steps of the real-time clock made by [`Testbed::step_clock`]: (run time, seconds),
    /// to read tcpdump's wall-clock stamps across them; their sum is undone on drop.
    pub(super) clock_steps: Vec<(Duration, f64)>,
    /// Next host number for replacements (cp4, cp5, ...).
    pub(super) next_host: usize,
    /// keepalived+HAProxy (kubeadm's recipe): HAProxy's port on every machine, which the
    /// client targets on the VIP and keepalived tracks (see `lb.rs`).
    pub(super) haproxy_port: Option<u16>,
    /// A load balancer on a host of its own in front of the machines (`front.rs`): the
    /// client targets it instead of the VIP.
    pub(super) front: Option<Front>,
    pub(super) net: Net,
    dir: tempfile::TempDir,
}

const API_PORT: u16 = 6443;
const ADMIN_PORT: u16 = 7445;

impl Testbed {
    /// Builds the net, etcd, API servers and agents, starts the observers, and waits for a
    /// steady state. `tag` prefixes the namespace names.
    pub fn start(tag: &str, api: ApiKind, agent: AgentKind) -> Result<Testbed> {
        Testbed::start_with(tag, api, agent, None, 3, None)
    }

    /// As [`Testbed::start`] with `machines` control-plane machines (3 or 5: an etcd
    /// member on each).
    pub fn start_sized(
        tag: &str,
        api: ApiKind,
        agent: AgentKind,
        machines: usize,
    ) -> Result<Testbed> {
        anyhow::ensure!(
            machines == 3 || machines == 5,
            "machines: {machines}: a control plane here has 3 or 5 machines (an odd etcd cluster)"
        );
        Testbed::start_with(tag, api, agent, None, machines, None)
    }

    /// As [`Testbed::start_sized`] with a load balancer in front of the machines on a host
    /// of its own, `lb` (see `front.rs`): the client sends to `LB:6443`, not to the VIP;
    /// the agents still run on the machines.
    pub fn start_fronted(
        tag: &str,
        api: ApiKind,
        agent: AgentKind,
        machines: usize,
        front: FrontLb,
    ) -> Result<Testbed> {
        anyhow::ensure!(
            machines == 3 || machines == 5,
            "machines: {machines}: a control plane here has 3 or 5 machines (an odd etcd cluster)"
        );
        Testbed::start_with(tag, api, agent, None, machines, Some(front))
    }

    /// As [`Testbed::start`]; with `haproxy_port`, HAProxy runs on every machine there and
    /// the client targets `VIP:haproxy_port` (keepalived+HAProxy, see `lb.rs`).
    pub(super) fn start_with(
        tag: &str,
        api: ApiKind,
        agent: AgentKind,
        haproxy_port: Option<u16>,
        machines: usize,
        front: Option<FrontLb>,
    ) -> Result<Testbed> {
        // The checker's bounds through a front LB hold for an API server that does not use
        // etcd (the stand-in): a kube-apiserver's /readyz fails with its etcd member, so
        // etcd's faults would be on the client's path. Not tried with real ones.
        if let (Some(f), ApiKind::Kube(_)) = (&front, &api) {
            anyhow::bail!(
                "a front load balancer ({}) on real kube-apiservers (--front-lb with --api \
                 kube) is not supported: the bounds the checker judges the front LB by assume \
                 the stand-in API server, which does not use etcd; give --front-lb with --api \
                 cpe, or --api kube without --front-lb",
                f.name()
            );
        }
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
        if haproxy_port.is_some() || matches!(front, Some(FrontLb::Haproxy)) {
            progs.push("haproxy");
        }
        crate::require_programs(&progs);
        let dir = tempfile::Builder::new()
            .prefix(&format!("{tag}-"))
            .tempdir()?;
        let net = Net::new(tag)?;
        let hosts_n = machines;
        let hosts: Vec<Host> = (1..=machines)
            .map(|i| net.add_host(&format!("cp{i}"), 10 + i as u8))
            .collect::<Result<_>>()?;
        let client = net.add_host("client", 50)?;
        let front = match front {
            Some(kind) => Some(Front {
                kind,
                host: net.add_host("lb", LB_HOST)?,
                child: None,
            }),
            None => None,
        };
        let vip = net.addr(100);
        let etcd = EtcdCluster::start(&hosts, dir.path())?;
        let epoch = Instant::now();
        let epoch_wall = std::time::SystemTime::now();
        let arp = client.spawn(
            "tcpdump arp",
            &dir.path().join("client-arp.txt"),
            "tcpdump",
            &[
                "-l",
                "--immediate-mode",
                "-n",
                "-e",
                "-tt",
                "-i",
                "eth0",
                "arp",
            ]
            .map(String::from),
        )?;
        let arp_seen = LineTimes::start(dir.path().join("client-arp.txt"), epoch);
        let mut macs = Vec::new();
        for h in &hosts {
            macs.push((h.mac()?, h.name.clone()));
        }
        let watch = Watch::start(&hosts, &client, vip, Duration::from_millis(10), epoch)?;
        let entry = front.as_ref().map_or(vip, |f| f.host.addr);
        let target = Target {
            addr: SocketAddr::new(entry.into(), haproxy_port.unwrap_or(API_PORT)),
            https: !matches!(api, ApiKind::Python),
            path: "/readyz".into(),
        };
        let prober = Prober::start(
            &client,
            target,
            Duration::from_millis(20),
            Duration::from_secs(2),
            epoch,
        )?;
        let pki = match api {
            ApiKind::Kube(_) => Some(super::kube_api::create_pki(dir.path(), vip)?),
            _ => None,
        };
        let machines = hosts
            .into_iter()
            .enumerate()
            .map(|(slot, host)| Machine::fresh(host, slot))
            .collect();
        let mut tb = Testbed {
            watch,
            prober,
            arp,
            arp_seen,
            macs,
            machines,
            etcd,
            client,
            vip,
            api,
            pki,
            agent,
            epoch,
            epoch_wall,
            clock_steps: Vec::new(),
            next_host: hosts_n + 1,
            haproxy_port,
            front,
            net,
            dir,
        };
        // The stand-in's first server generates the shared test PKI: the others start after
        // it. kube-apiservers (PKI made above) start together, as kubelets start them.
        tb.start_api(0)?;
        if !tb.kube_api() {
            tb.wait_api_ready(0)?;
        }
        for i in 1..tb.machines.len() {
            tb.start_api(i)?;
        }
        for i in 0..tb.machines.len() {
            tb.wait_api_ready(i)?;
            tb.start_agent(i)?;
        }
        tb.start_front()?;
        tb.wait_stable(Duration::from_secs(60))?;
        Ok(tb)
    }

    /// Whether a load balancer runs behind the VIP on every machine: `cpe vip
    /// --load-balance`, or keepalived+HAProxy.
    pub fn load_balancing(&self) -> bool {
        self.haproxy_port.is_some() || self.agent.name() == "cpe-lb"
    }

    /// Seconds since the testbed started (the observers' clock).
    pub fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// The observers' epoch.
    pub(super) fn epoch(&self) -> Instant {
        self.epoch
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

    pub(super) fn start_api(&mut self, i: usize) -> Result<()> {
        let m = &self.machines[i];
        let name = m.host.name.clone();
        let log = self.log(&format!("api-{name}"));
        let log_from = std::fs::metadata(&log).map_or(0, |m| m.len());
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
            ApiKind::Kube(bin) => self.spawn_kube_api(i, bin)?,
        };
        let m = &mut self.machines[i];
        m.api = Some(child);
        m.api_started = Some(Instant::now());
        m.api_log_from = log_from;
        m.unready = false;
        Ok(())
    }

    /// The local /readyz (what the agents probe).
    pub(super) fn api_url(&self) -> String {
        match self.api {
            ApiKind::Python => format!("http://127.0.0.1:{API_PORT}/readyz"),
            ApiKind::Cpe(_) | ApiKind::Kube(_) => format!("https://127.0.0.1:{API_PORT}/readyz"),
        }
    }

    pub(super) fn wait_api_ready(&mut self, i: usize) -> Result<()> {
        let url = self.api_url();
        let deadline = Instant::now() + self.api_ready_timeout();
        loop {
            if self.machines[i]
                .host
                .exec("curl", &["-sfk", "-m", "1", &url])
                .is_ok()
            {
                if let (true, Some(t0)) = (self.kube_api(), self.machines[i].api_started) {
                    eprintln!(
                        "[vip] kube-apiserver on {} ready {:.1} s after its start",
                        self.machines[i].host.name,
                        t0.elapsed().as_secs_f64()
                    );
                }
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

    /// Makes /readyz fail while the server keeps running: 503 (Python: 404; a real
    /// kube-apiserver: cut from its etcd member, 500 or no answer, see `kube_api`).
    pub(super) fn make_unready(&mut self, i: usize) -> Result<()> {
        self.set_ready(i, false)
    }

    pub(super) fn make_ready(&mut self, i: usize) -> Result<()> {
        self.set_ready(i, true)
    }

    fn set_ready(&mut self, i: usize, ready: bool) -> Result<()> {
        let name = self.machines[i].host.name.clone();
        let marker = self.dir.path().join(format!("www-{name}/readyz"));
        match &self.api {
            ApiKind::Python if ready => std::fs::write(marker, "ok")?,
            ApiKind::Python => std::fs::remove_file(marker)?,
            ApiKind::Kube(_) => self.set_kube_ready(i, ready)?,
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

    pub(super) fn start_agent(&mut self, i: usize) -> Result<()> {
        let url = match self.haproxy_port {
            // keepalived tracks HAProxy (kubeadm's check_apiserver.sh), started first.
            Some(port) => {
                self.ensure_haproxy(i, port)?;
                format!("https://127.0.0.1:{port}/readyz")
            }
            None => self.api_url(),
        };
        // This machine's own member first, as `cpe vip --etcd` asks.
        // (A replaced member has an address of its own on the machine.)
        let own = self
            .etcd
            .index_of(&self.machines[i].host)
            .map(|k| self.etcd.members[k].client_url())
            .unwrap_or_else(|| format!("http://{}:2379", self.machines[i].host.addr));
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
                    "--lease-ttl".into(),
                    lease_ttl.clone(),
                    "--admin".into(),
                    format!("127.0.0.1:{ADMIN_PORT}"),
                ];
                // Load-balancing mode (issue 11): healthy while its load balancer has a
                // backend up (no health URL); every machine's API server a backend
                // unless the caller gave them or asked for discovery (`--discover`:
                // then each machine gets its own cache directory, since every namespace
                // sees the same file system).
                let lb = extra.iter().any(|a| a == "--load-balance");
                if !lb {
                    args.extend(["--health-url".into(), url]);
                    // The real server's certificate is verified (it names 127.0.0.1).
                    if let Some(pki) = &self.pki {
                        let ca = pki.ca_path().to_string_lossy().into_owned();
                        args.extend(["--health-ca".into(), ca]);
                    }
                }
                let discover = extra.iter().any(|a| a == "--discover");
                if lb && !discover && !extra.iter().any(|a| a == "--backend") {
                    for o in &self.machines {
                        args.extend(["--backend".into(), format!("{}:{API_PORT}", o.host.addr)]);
                    }
                }
                if lb && discover {
                    let cache = self.dir.path().join(format!("cache-{name}"));
                    args.extend(["--cache-dir".into(), cache.to_string_lossy().into_owned()]);
                }
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

    /// Sends `sig` to the agent of machine `i` (keepalived: for SIGKILL, SIGSTOP and SIGCONT
    /// its VRRP child too, which is the process holding the state).
    pub(super) fn signal_agent(&mut self, i: usize, sig: Signal) {
        let name = self.machines[i].host.name.clone();
        let vrrp_too = matches!(sig, Signal::SIGKILL | Signal::SIGSTOP | Signal::SIGCONT);
        if matches!(self.agent, AgentKind::Keepalived) && vrrp_too {
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
    pub(super) fn holder(&self) -> Option<usize> {
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
        let claims: Vec<_> = text
            .lines()
            .filter_map(|l| parse_arp_claim(l, &vip))
            .collect();
        let steps: Vec<_> = self
            .clock_steps
            .iter()
            .map(|(t, d)| (t.as_secs_f64(), *d))
            .collect();
        // Only lines that are claims count; `seen` is per line of the file.
        let seen = self.arp_seen.seen();
        let (mut rel, mut seen_claims) = (Vec::new(), Vec::new());
        for (i, l) in text.lines().enumerate() {
            if let Some((_, t)) = parse_arp_claim(l, &vip) {
                rel.push(t - base);
                if let Some(s) = seen.get(i) {
                    seen_claims.push(*s);
                }
            }
        }
        let times = run_times(rel, &seen_claims, &steps);
        claims
            .into_iter()
            .zip(times)
            .map(|((mac, _), t)| {
                let host = self
                    .macs
                    .iter()
                    .find(|(m, _)| *m == mac)
                    .map(|(_, n)| n.clone());
                (Duration::from_secs_f64(t.max(0.0)), mac, host)
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
            if self.machines[i].frozen {
                self.signal_agent(i, Signal::SIGCONT);
                self.machines[i].frozen = false;
            }
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
}

impl Drop for Testbed {
    fn drop(&mut self) {
        // A run that ends inside a clock step (an error, a panic) steps the clock back.
        let off: f64 = self.clock_steps.iter().map(|(_, d)| d).sum();
        if off != 0.0 {
            if let Err(e) = super::faults::step_realtime(-off) {
                eprintln!("[vip] could not step the real-time clock back by {off} s: {e:#}");
            }
        }
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
