//! The kube testbed ([`KubeBed`]): control-plane machines as network namespaces, each with
//! a real etcd member (Debian `etcd-server`, plain HTTP) and a real kube-apiserver 1.20
//! advertising its own non-loopback address, plus a `client` host (kubectl, probers) and an
//! `lb` host for a load balancer, all on one bridge. The cluster has one test CA, static
//! tokens for an admin and for the discovery ServiceAccount, RBAC; kubeconfigs are written
//! on request.
//!
//! Machines come and go as Cluster API replaces them: [`KubeBed::add_machine`] (new name,
//! new address: `etcdctl member add`, then etcd and the API server start) and
//! [`KubeBed::remove_machine`] (etcd leadership moved off it, `member remove`, the API
//! server SIGTERMed; the host unplugged once the server has gone through its shutdown). Single
//! API servers can be SIGTERMed, SIGKILLed and restarted.
//!
//! It does not run a controller-manager, a scheduler or kubelets: the API server alone is
//! what `cpe lb --discover kubernetes` and `cpe vip` talk to. It never looks up the `cpe`
//! binary; the kube-apiserver binary comes from [`apiserver::kube_apiserver_bin`].

pub mod apiserver;
pub mod pki;
pub mod rbac;
pub mod replace;
pub mod watch;

use crate::{EtcdCluster, Host, Net};
use anyhow::{bail, Context, Result};
pub use apiserver::{ApiOptions, ApiServer, API_PORT, READY_TIMEOUT};
use pki::KubePki;
pub use pki::User;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// One control-plane machine: its host and its API server (None while stopped).
#[derive(Debug)]
pub struct Machine {
    pub host: Host,
    pub api: Option<ApiServer>,
}

/// The testbed. Fields drop in order: API servers, etcd, namespaces, files.
#[derive(Debug)]
pub struct KubeBed {
    machines: Vec<Machine>,
    /// Removed machines whose API server is still shutting down, with their SIGTERM time.
    leaving: Vec<(Machine, Instant)>,
    etcd: EtcdCluster,
    /// Where kubectl and the probers run.
    pub client: Host,
    /// A host for a load balancer; its address is in every serving certificate.
    pub lb: Host,
    /// An address for a virtual IP (no host has it); also in every certificate.
    pub vip: Ipv4Addr,
    pki: KubePki,
    bin: PathBuf,
    opts: ApiOptions,
    next_last: u8,
    net: Net,
    dir: tempfile::TempDir,
}

/// How long a SIGTERMed API server may take to exit after its shutdown delay. A server
/// with a watch open (a client's) closes it only when its HTTP server's 60 s shutdown
/// timeout ends: 63 s after SIGTERM with a 3 s delay is what it takes then.
const EXIT_GRACE: Duration = Duration::from_secs(90);

impl KubeBed {
    /// Builds the net, etcd (one member per machine), the PKI, and starts one API server per
    /// machine named in `names` (all at once), waiting until every one is ready and listed
    /// in the `kubernetes` Endpoints. Prints how long the API servers took to start.
    pub fn start(tag: &str, names: &[&str], opts: ApiOptions) -> Result<KubeBed> {
        crate::require_root();
        crate::require_programs(&["ip", "etcd", "etcdctl", "curl", "kubectl"]);
        let bin = apiserver::kube_apiserver_bin();
        let dir = tempfile::Builder::new()
            .prefix(&format!("{tag}-"))
            .tempdir()?;
        let net = Net::new(tag)?;
        let hosts: Vec<Host> = names
            .iter()
            .enumerate()
            .map(|(i, n)| net.add_host(n, 11 + i as u8))
            .collect::<Result<_>>()?;
        let client = net.add_host("client", 200)?;
        let lb = net.add_host("lb", 201)?;
        let vip = net.addr(250);
        let etcd = EtcdCluster::start(&hosts, dir.path())?;
        let pki = KubePki::create(&dir.path().join("pki"), &[lb.addr, vip, client.addr])?;
        let mut bed = KubeBed {
            machines: hosts
                .into_iter()
                .map(|host| Machine { host, api: None })
                .collect(),
            leaving: Vec::new(),
            etcd,
            client,
            lb,
            vip,
            pki,
            bin,
            opts,
            next_last: 11 + names.len() as u8,
            net,
            dir,
        };
        for n in names {
            bed.start_api(n)?;
        }
        // Polled in turn, so each start is timed on its own.
        let mut waiting: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let deadline = Instant::now() + READY_TIMEOUT;
        while !waiting.is_empty() {
            let mut still = Vec::new();
            for n in waiting {
                let m = bed.machine_mut(&n)?;
                let host = m.host.clone();
                let api = m.api.as_mut().context("API server just started")?;
                match apiserver::wait_ready(api, &host, Duration::ZERO) {
                    Ok(t) => eprintln!(
                        "kube testbed: kube-apiserver on {n} ready {:.1}s after its start",
                        t.as_secs_f64()
                    ),
                    Err(e) if Instant::now() > deadline || !api.child.is_running() => {
                        return Err(e)
                    }
                    Err(_) => still.push(n),
                }
            }
            waiting = still;
            std::thread::sleep(Duration::from_millis(100));
        }
        let want = bed.addrs();
        if !want.is_empty() {
            bed.wait_endpoints(&want, Duration::from_secs(60))?;
        }
        Ok(bed)
    }

    /// Adds a machine's host (next address) with nothing started on it: the first machine
    /// of a `kubeadm init`-like bootstrap (`KubeBed::start` with no names, then this, then
    /// [`KubeBed::start_first_etcd`] and [`KubeBed::start_api`] in any order).
    pub fn add_bare_machine(&mut self, name: &str) -> Result<Host> {
        let host = self.net.add_host(name, self.next_last)?;
        self.next_last += 1;
        self.machines.push(Machine {
            host: host.clone(),
            api: None,
        });
        Ok(host)
    }

    /// Starts the cluster's first etcd member on machine `name` (`--initial-cluster-state
    /// new`) and waits until it is healthy; the bed must have no etcd member yet.
    pub fn start_first_etcd(&mut self, name: &str) -> Result<()> {
        if !self.etcd.members.is_empty() {
            bail!("etcd already has members");
        }
        let host = self.machine(name)?.host.clone();
        self.etcd = EtcdCluster::start(&[host], self.dir.path())?;
        Ok(())
    }

    /// Whether machine `name`'s API server process is running.
    pub fn api_running(&mut self, name: &str) -> bool {
        self.machine_mut(name)
            .ok()
            .and_then(|m| m.api.as_mut())
            .is_some_and(|a| a.child.is_running())
    }

    /// Where logs, PKI and kubeconfigs live.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
    pub fn net(&self) -> &Net {
        &self.net
    }
    pub fn pki(&self) -> &KubePki {
        &self.pki
    }
    pub fn etcd(&mut self) -> &mut EtcdCluster {
        &mut self.etcd
    }

    /// The names of the current machines, in start order.
    pub fn names(&self) -> Vec<String> {
        self.machines.iter().map(|m| m.host.name.clone()).collect()
    }

    /// The addresses of the current machines, in start order.
    pub fn addrs(&self) -> Vec<Ipv4Addr> {
        self.machines.iter().map(|m| m.host.addr).collect()
    }

    pub fn machine(&self, name: &str) -> Result<&Machine> {
        self.machines
            .iter()
            .find(|m| m.host.name == name)
            .with_context(|| format!("no machine {name}"))
    }

    fn machine_mut(&mut self, name: &str) -> Result<&mut Machine> {
        self.machines
            .iter_mut()
            .find(|m| m.host.name == name)
            .with_context(|| format!("no machine {name}"))
    }

    /// `ADDR:6443` of a machine.
    pub fn api_addr(&self, name: &str) -> Result<String> {
        Ok(format!("{}:{API_PORT}", self.machine(name)?.host.addr))
    }

    /// When a machine's API server first answered `/readyz` 200, if it has.
    pub fn first_ready(&self, name: &str) -> Option<Instant> {
        self.machine(name).ok()?.api.as_ref()?.first_ready
    }

    /// Starts (or restarts) the API server of machine `name`; does not wait.
    pub fn start_api(&mut self, name: &str) -> Result<()> {
        let log = self.dir.path().join(format!("kube-apiserver-{name}.log"));
        let (bin, opts) = (self.bin.clone(), self.opts.clone());
        let host = self.machine(name)?.host.clone();
        let api = apiserver::start(&bin, &host, &self.pki, &opts, &log)?;
        self.machine_mut(name)?.api = Some(api);
        Ok(())
    }

    /// Waits for machine `name`'s API server's first `/readyz` 200; returns the time since
    /// its start.
    pub fn wait_ready(&mut self, name: &str) -> Result<Duration> {
        let m = self.machine_mut(name)?;
        let host = m.host.clone();
        let api = m
            .api
            .as_mut()
            .with_context(|| format!("no API server on {name}"))?;
        apiserver::wait_ready(api, &host, READY_TIMEOUT)
    }

    /// SIGTERMs machine `name`'s API server and waits until it exits (its shutdown delay
    /// plus up to 90 s, then SIGKILL). Returns how long it took.
    pub fn terminate_api(&mut self, name: &str) -> Result<Duration> {
        let t = Instant::now();
        self.sigterm_api(name)?;
        self.wait_api_exit(name)?;
        Ok(t.elapsed())
    }

    /// Sends SIGTERM to machine `name`'s API server and returns at once: it keeps serving
    /// through its shutdown delay with `/readyz` failing, then stops.
    pub fn sigterm_api(&self, name: &str) -> Result<()> {
        let api = self.machine(name)?.api.as_ref();
        api.with_context(|| format!("no API server on {name}"))?
            .child
            .signal(nix::sys::signal::Signal::SIGTERM);
        Ok(())
    }

    /// Waits until machine `name`'s API server has exited (its shutdown delay plus up to
    /// 90 s, then SIGKILL and an error).
    pub fn wait_api_exit(&mut self, name: &str) -> Result<()> {
        let grace = self.opts.shutdown_delay + EXIT_GRACE;
        let mut api = self
            .machine_mut(name)?
            .api
            .take()
            .with_context(|| format!("no API server on {name}"))?;
        if api.child.wait_timeout(grace).is_none() {
            api.child.kill();
            bail!("kube-apiserver on {name} did not exit within {grace:?} of SIGTERM");
        }
        Ok(())
    }

    /// SIGKILLs machine `name`'s API server.
    pub fn kill_api(&mut self, name: &str) -> Result<()> {
        if let Some(mut api) = self.machine_mut(name)?.api.take() {
            api.child.kill();
        }
        Ok(())
    }

    /// Adds a machine as Cluster API does: a new host `name` with the next unused address,
    /// `etcdctl member add` and its etcd member started (`existing`), then its API server,
    /// waited for until ready. Returns the API server's start-to-ready time.
    pub fn add_machine(&mut self, name: &str) -> Result<Duration> {
        self.reap_leaving(Duration::ZERO)?;
        let host = self.net.add_host(name, self.next_last)?;
        self.next_last += 1;
        self.etcd.add(&host)?;
        self.machines.push(Machine { host, api: None });
        self.start_api(name)?;
        self.wait_ready(name)
    }

    /// Removes machine `name` as Cluster API's control-plane controller does: etcd
    /// leadership moved off it if it leads, `member remove`, then the API server SIGTERMed
    /// (it keeps serving through `--shutdown-delay-duration` with `/readyz` failing). It
    /// returns then, as the next machine is provisioned while this one shuts down: the
    /// machine is *leaving* until its API server has exited, and only then is its host
    /// unplugged and deleted ([`KubeBed::finish_leaving`] waits for every one).
    pub fn remove_machine(&mut self, name: &str) -> Result<()> {
        self.reap_leaving(Duration::ZERO)?;
        let host = self.machine(name)?.host.clone();
        let i = self
            .etcd
            .index_of(&host)
            .with_context(|| format!("{name} has no etcd member"))?;
        self.etcd.move_leader_off(i)?;
        self.etcd.remove(i)?;
        if self.machine(name)?.api.is_some() {
            self.sigterm_api(name)?;
        }
        let pos = self.machines.iter().position(|m| m.host.name == name);
        let m = self.machines.remove(pos.context("machine vanished")?);
        self.leaving.push((m, Instant::now()));
        Ok(())
    }

    /// Waits until every leaving machine's API server has exited (its shutdown delay plus
    /// up to 90 s, then SIGKILL and an error) and deletes their hosts.
    pub fn finish_leaving(&mut self) -> Result<()> {
        self.reap_leaving(self.opts.shutdown_delay + EXIT_GRACE)
    }

    /// Deletes the hosts of leaving machines whose API server has exited, waiting up to
    /// `wait` for each.
    fn reap_leaving(&mut self, wait: Duration) -> Result<()> {
        let mut first_err = None;
        for (mut m, since) in std::mem::take(&mut self.leaving) {
            let exited = match m.api.as_mut() {
                None => true,
                Some(a) => a.child.wait_timeout(wait).is_some(),
            };
            if !exited && wait.is_zero() {
                self.leaving.push((m, since));
                continue;
            }
            if let Some(mut a) = m.api.take() {
                if !exited {
                    a.child.kill();
                    first_err.get_or_insert_with(|| {
                        anyhow::anyhow!(
                            "kube-apiserver on {} did not exit within {wait:?} of SIGTERM",
                            m.host.name
                        )
                    });
                }
            }
            eprintln!(
                "kube testbed: kube-apiserver on {} exited {:.1}s after SIGTERM",
                m.host.name,
                since.elapsed().as_secs_f64()
            );
            self.net.remove_host(&m.host)?;
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Writes a kubeconfig for `user` against `server` (`ADDR:PORT`) under the testbed's
    /// directory and returns its path.
    pub fn kubeconfig(&self, user: User, server: &str) -> Result<PathBuf> {
        let who = match user {
            User::Admin => "admin",
            User::Discovery => "discovery",
        };
        let path = self.dir.path().join(format!(
            "kubeconfig-{who}-{}",
            server.replace([':', '.'], "_")
        ));
        self.pki
            .write_kubeconfig(&path, &format!("https://{server}"), user)?;
        Ok(path)
    }

    /// Runs kubectl in the client host with `kubeconfig` (5 s request timeout).
    pub fn kubectl_with(&self, kubeconfig: &Path, args: &[&str]) -> Result<String> {
        kubectl(&self.client, self.dir.path(), kubeconfig, args, None)
    }

    /// Runs kubectl as admin against the first machine whose API server is ready.
    pub fn kubectl(&self, args: &[&str]) -> Result<String> {
        let server = self.admin_server()?;
        kubectl(
            &self.client,
            self.dir.path(),
            &self.kubeconfig(User::Admin, &server)?,
            args,
            None,
        )
    }

    /// `kubectl apply -f -` of `manifests` as admin.
    pub fn apply(&self, manifests: &str) -> Result<String> {
        let server = self.admin_server()?;
        let kc = self.kubeconfig(User::Admin, &server)?;
        kubectl(
            &self.client,
            self.dir.path(),
            &kc,
            &["apply", "--validate=false", "-f", "-"],
            Some(manifests),
        )
    }

    /// Applies the discovery identity's least-privilege RBAC ([`rbac::discovery_rbac`]).
    pub fn apply_discovery_rbac(&self) -> Result<()> {
        self.apply(&rbac::discovery_rbac()).map(|_| ())
    }

    fn admin_server(&self) -> Result<String> {
        self.machines
            .iter()
            .find(|m| m.api.as_ref().is_some_and(|a| a.first_ready.is_some()))
            .map(|m| format!("{}:{API_PORT}", m.host.addr))
            .context("no machine has a ready API server")
    }

    /// The addresses in the `kubernetes` Endpoints (port 6443), sorted.
    pub fn endpoints(&self) -> Result<Vec<Ipv4Addr>> {
        let text = self.kubectl(&[
            "get",
            "endpoints",
            "kubernetes",
            "-n",
            "default",
            "-o",
            "json",
        ])?;
        let v: serde_json::Value = serde_json::from_str(&text)?;
        let mut out: Vec<Ipv4Addr> = v["subsets"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s["addresses"].as_array().into_iter().flatten())
            .filter_map(|a| a["ip"].as_str()?.parse().ok())
            .collect();
        out.sort();
        Ok(out)
    }

    /// Waits until the `kubernetes` Endpoints list exactly `want`; returns how long it took.
    pub fn wait_endpoints(&self, want: &[Ipv4Addr], timeout: Duration) -> Result<Duration> {
        let mut want = want.to_vec();
        want.sort();
        let t = Instant::now();
        let mut last = Err(anyhow::anyhow!("not asked yet"));
        while t.elapsed() < timeout {
            last = self.endpoints();
            if last.as_ref().is_ok_and(|e| *e == want) {
                return Ok(t.elapsed());
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        bail!("the kubernetes Endpoints are {last:?} after {timeout:?}, want {want:?}")
    }

    /// The last `n` lines of every API server's and etcd member's log.
    pub fn logs(&self, n: usize) -> String {
        let mut out = String::new();
        for m in &self.machines {
            if let Some(a) = &m.api {
                out += &format!(
                    "--- kube-apiserver {} ---\n{}\n",
                    m.host.name,
                    a.child.tail(n)
                );
            }
        }
        for m in &self.etcd.members {
            out += &format!("--- etcd {} ---\n{}\n", m.name, m.tail(n));
        }
        out
    }
}

/// Runs kubectl inside `host` with `kubeconfig`, its cache under `dir`, optional stdin.
pub fn kubectl(
    host: &Host,
    dir: &Path,
    kubeconfig: &Path,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<String> {
    let mut c = host.command("kubectl");
    c.arg(format!("--kubeconfig={}", kubeconfig.display()))
        .arg(format!(
            "--cache-dir={}",
            dir.join("kubectl-cache").display()
        ))
        .arg("--request-timeout=5s")
        .args(args);
    match stdin {
        None => crate::net::run(c),
        Some(s) => crate::net::run_with_stdin(c, s),
    }
    .with_context(|| format!("kubectl {}", args.join(" ")))
}
