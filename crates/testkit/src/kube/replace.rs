//! The rolling replacement as Cluster API does it, through a load balancer in the `lb`
//! host: for each original machine, a new machine with a new name and address joins
//! (etcd member add, API server started and waited for), then the original leaves (etcd
//! leadership moved, member removed, API server SIGTERMed through its shutdown delay),
//! until no original machine is left. Meanwhile the client sends `GET /version` through the
//! endpoint every 50 ms on fresh connections, and `kubectl get --raw /readyz` runs through
//! it in a loop.
//!
//! Also here: starting the load balancers it is run through, `cpe lb --discover kubernetes`
//! (seeded with one machine) and HAProxy with the static list of the original machines (it
//! cannot follow a replacement: the comparison shows what that costs).
//!
//! It measures and reports ([`Outcome`]); the e2e test and `bench/replace.sh` judge.

use super::pki::User;
use super::watch::{KubectlLoop, KubectlRun, LbStatus};
use super::{KubeBed, API_PORT};
use crate::observe::{Prober, Request, Target};
use crate::Child;
use anyhow::{bail, Result};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

/// The admin listener of the `cpe lb` started here (inside the `lb` host).
pub const LB_ADMIN: &str = "127.0.0.1:9630";

/// `cpe lb --listen LB:6443 --backend SEED... --discover kubernetes --kubeconfig FILE
/// --cache-dir DIR` in the `lb` host, with the discovery identity's kubeconfig (server: the
/// first seed) and the cluster CA for its checks; `extra` flags appended. Waits until its
/// admin listener answers.
pub fn start_cpe_lb(
    bed: &KubeBed,
    cpe: &Path,
    seeds: &[String],
    cache_dir: &Path,
    extra: &[&str],
    log_name: &str,
) -> Result<Child> {
    let kc = bed.kubeconfig(User::Discovery, &seeds[0])?;
    let mut args: Vec<String> = vec![
        "lb".into(),
        "--listen".into(),
        format!("{}:{API_PORT}", bed.lb.addr),
    ];
    for s in seeds {
        args.extend(["--backend".into(), s.clone()]);
    }
    args.extend([
        "--discover".into(),
        "kubernetes".into(),
        "--kubeconfig".into(),
        kc.to_string_lossy().into_owned(),
        "--cache-dir".into(),
        cache_dir.to_string_lossy().into_owned(),
        "--ca-file".into(),
        bed.pki().ca_path().to_string_lossy().into_owned(),
    ]);
    args.extend(extra.iter().map(|s| s.to_string()));
    let log = bed.dir().join(format!("{log_name}.log"));
    let mut child = bed.lb.spawn("cpe lb", &log, cpe, &args)?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if bed
            .lb
            .exec(
                "curl",
                &["-sf", "-m", "1", &format!("http://{LB_ADMIN}/status")],
            )
            .is_ok()
        {
            return Ok(child);
        }
        if !child.is_running() || Instant::now() > deadline {
            bail!("cpe lb did not come up: {}", child.tail(30));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The HAProxy configuration the tests put in front of API servers: TCP mode on `bind`,
/// a static list of `backends` (`ADDR:PORT`), HTTPS `/readyz` checks every 250 ms (fall 2,
/// rise 2) like cpe lb's defaults, leastconn.
pub fn haproxy_conf(bind: &str, backends: &[String]) -> String {
    let mut conf = format!(
        "global\n  maxconn 4000\n\
         defaults\n  mode tcp\n  timeout connect 1s\n  timeout client 60s\n  timeout server 60s\n\
         frontend fe\n  bind {bind}\n  default_backend be\n\
         backend be\n  balance leastconn\n  option httpchk GET /readyz\n  http-check expect status 200\n\
         \x20 default-server check check-ssl verify none inter 250ms fall 2 rise 2\n"
    );
    for (i, b) in backends.iter().enumerate() {
        conf += &format!("  server s{i} {b}\n");
    }
    conf
}

/// HAProxy in the `lb` host with a static list of `backends` ([`haproxy_conf`]).
pub fn start_haproxy(bed: &KubeBed, backends: &[String]) -> Result<Child> {
    let conf = haproxy_conf(&format!("{}:{API_PORT}", bed.lb.addr), backends);
    let path = bed.dir().join("haproxy.cfg");
    std::fs::write(&path, conf)?;
    let log = bed.dir().join("haproxy.log");
    let child = bed.lb.spawn(
        "haproxy",
        &log,
        "haproxy",
        &[
            "-f".into(),
            path.to_string_lossy().into_owned(),
            "-db".into(),
        ],
    )?;
    std::thread::sleep(Duration::from_secs(1));
    Ok(child)
}

/// One machine that joined during the replacement (times relative to its first `/readyz`
/// 200 where said).
#[derive(Debug, Clone)]
pub struct Joined {
    pub name: String,
    pub addr: String,
    /// API server start → first `/readyz` 200.
    pub start_to_ready: Duration,
    /// First `/readyz` 200 → listed in the LB's /status (negative never: None if not seen).
    pub ready_to_listed: Option<Duration>,
    pub ready_to_up: Option<Duration>,
    /// First `/readyz` 200 → first proxied connection to it.
    pub ready_to_proxied: Option<Duration>,
}

/// What the replacement measured.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub requests: Vec<Request>,
    pub kubectl: Vec<KubectlRun>,
    /// The same through the VIP ([`Options::vip`]; empty without).
    pub vip_requests: Vec<Request>,
    pub vip_kubectl: Vec<KubectlRun>,
    pub joined: Vec<Joined>,
    pub took: Duration,
    /// The LB's last /status document (cpe lb only).
    pub last_status: Option<serde_json::Value>,
}

impl Outcome {
    pub fn failed(&self) -> Vec<&Request> {
        self.requests.iter().filter(|r| !r.ok).collect()
    }
    pub fn kubectl_failed(&self) -> Vec<&KubectlRun> {
        self.kubectl.iter().filter(|r| !r.ok).collect()
    }
    /// A few lines of figures.
    pub fn summary(&self, label: &str) -> String {
        let ms = |d: Option<Duration>| {
            d.map(|d| format!("{:.0} ms", d.as_secs_f64() * 1000.0))
                .unwrap_or_else(|| "never".into())
        };
        let mut s = format!(
            "{label}: replacement of {} machines took {:.1} s; /version every 50 ms: {} requests, {} failed; \
             kubectl get --raw /readyz: {} runs, {} failed\n",
            self.joined.len(),
            self.took.as_secs_f64(),
            self.requests.len(),
            self.failed().len(),
            self.kubectl.len(),
            self.kubectl_failed().len(),
        );
        for j in &self.joined {
            s += &format!(
                "{label}:   {} ({}): start → readyz 200 {:.1} s; readyz 200 → listed {}, up {}, first proxied connection {}\n",
                j.name,
                j.addr,
                j.start_to_ready.as_secs_f64(),
                ms(j.ready_to_listed),
                ms(j.ready_to_up),
                ms(j.ready_to_proxied),
            );
        }
        if !self.vip_requests.is_empty() {
            s += &format!(
                "{label}: through the VIP: /version {} requests, {} failed; kubectl get --raw /readyz: {} runs, {} failed\n",
                self.vip_requests.len(),
                self.vip_requests.iter().filter(|r| !r.ok).count(),
                self.vip_kubectl.len(),
                self.vip_kubectl.iter().filter(|r| !r.ok).count(),
            );
            for r in self.vip_requests.iter().filter(|r| !r.ok).take(10) {
                s += &format!(
                    "{label}:   VIP: failed request at {:.2} s: {}\n",
                    r.start.as_secs_f64(),
                    r.detail
                );
            }
            for r in self.vip_kubectl.iter().filter(|r| !r.ok).take(5) {
                s += &format!(
                    "{label}:   VIP: failed kubectl at {:.2} s: {}\n",
                    r.start.as_secs_f64(),
                    r.output
                );
            }
        }
        for r in self.failed().iter().take(10) {
            s += &format!(
                "{label}:   failed request at {:.2} s: {}\n",
                r.start.as_secs_f64(),
                r.detail
            );
        }
        for r in self.kubectl_failed().iter().take(10) {
            s += &format!(
                "{label}:   failed kubectl at {:.2} s: {}\n",
                r.start.as_secs_f64(),
                r.output
            );
        }
        s
    }
}

/// A step of the replacement, for [`Options::hook`].
#[derive(Debug, Clone, Copy)]
pub enum Step<'a> {
    /// A new machine's API server is ready (and the LB proxies to it, with `admin`).
    Joined(&'a str),
    /// An old machine was removed (etcd member gone, API server SIGTERMed).
    Removed(&'a str),
}

/// What [`Options::hook`] is called with.
pub type Hook<'a> = dyn FnMut(&mut KubeBed, Step<'_>) -> Result<()> + 'a;

/// What else the replacement does.
pub struct Options<'a> {
    /// The cpe lb's admin listener in the `lb` host: wait for and time the first proxied
    /// connection to each new machine (without it, e.g. HAProxy, the old machine leaves
    /// 3 s after the new one is ready).
    pub admin: Option<SocketAddr>,
    /// A second endpoint (a virtual IP) probed the same way, with its own kubectl loop.
    pub vip: Option<SocketAddr>,
    /// Called at each step (start or stop a VIP agent on the machine).
    pub hook: Option<&'a mut Hook<'a>>,
    /// The observers' clock (shared with the caller's own observers).
    pub epoch: Instant,
}

impl std::fmt::Debug for Options<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("admin", &self.admin)
            .field("vip", &self.vip)
            .finish_non_exhaustive()
    }
}

impl Options<'_> {
    /// Through the LB only, its admin listener at `admin` if cpe lb.
    pub fn lb(admin: Option<SocketAddr>) -> Options<'static> {
        Options {
            admin,
            vip: None,
            hook: None,
            epoch: Instant::now(),
        }
    }
}

/// Replaces every current machine of `bed`, one by one, by a machine named from
/// `new_names`, through the endpoint `LB:6443` (and the VIP, see [`Options`]).
pub fn rolling_replacement(
    bed: &mut KubeBed,
    new_names: &[&str],
    mut opts: Options<'_>,
) -> Result<Outcome> {
    let originals = bed.names();
    if new_names.len() < originals.len() {
        bail!(
            "{} new names for {} machines",
            new_names.len(),
            originals.len()
        );
    }
    let endpoint = SocketAddr::new(bed.lb.addr.into(), API_PORT);
    let epoch = opts.epoch;
    let status = match opts.admin {
        Some(a) => Some(LbStatus::start(
            &bed.lb,
            a,
            Duration::from_millis(50),
            epoch,
        )?),
        None => None,
    };
    let observe = |addr: SocketAddr| -> Result<(Prober, KubectlLoop)> {
        let prober = Prober::start(
            &bed.client,
            Target {
                addr,
                https: true,
                path: "/version".into(),
            },
            Duration::from_millis(50),
            Duration::from_secs(5),
            epoch,
        )?;
        let kc = bed.kubeconfig(User::Admin, &addr.to_string())?;
        let kubectl = KubectlLoop::start(
            &bed.client,
            bed.dir().to_path_buf(),
            kc,
            Duration::from_millis(200),
            epoch,
        )?;
        Ok((prober, kubectl))
    };
    let lb = observe(endpoint)?;
    let vip = opts.vip.map(observe).transpose()?;
    std::thread::sleep(Duration::from_secs(1));
    let start = epoch.elapsed();
    let mut joined = Vec::new();
    for (old, new) in originals.iter().zip(new_names) {
        let start_to_ready = bed.add_machine(new)?;
        let ready = bed.first_ready(new).expect("ready after add_machine") - epoch;
        let addr = bed.api_addr(new)?;
        eprintln!(
            "replacement: {new} ({addr}) ready {:.1}s after its start",
            start_to_ready.as_secs_f64()
        );
        if let Some(st) = &status {
            let deadline = Instant::now() + Duration::from_secs(60);
            while st.backend(&addr).first_connect.is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        } else {
            std::thread::sleep(Duration::from_secs(3));
        }
        if let Some(h) = opts.hook.as_mut() {
            h(bed, Step::Joined(new))?;
        }
        let seen = status
            .as_ref()
            .map(|s| s.backend(&addr))
            .unwrap_or_default();
        let after = |t: Option<Duration>| t.map(|t| t.saturating_sub(ready));
        joined.push(Joined {
            name: new.to_string(),
            addr,
            start_to_ready,
            ready_to_listed: after(seen.listed),
            ready_to_up: after(seen.up),
            ready_to_proxied: after(seen.first_connect),
        });
        eprintln!("replacement: removing {old}");
        bed.remove_machine(old)?;
        if let Some(h) = opts.hook.as_mut() {
            h(bed, Step::Removed(old))?;
        }
    }
    // Every removed API server through its shutdown, then a moment for what the LB serves
    // and what the client sees to settle.
    bed.finish_leaving()?;
    std::thread::sleep(Duration::from_secs(2));
    let took = epoch.elapsed() - start;
    let last_status = status.as_ref().and_then(|s| s.last());
    let collect = |(p, k): (Prober, KubectlLoop)| {
        let runs = k.runs();
        drop(k);
        let requests = p.requests().0;
        drop(p);
        (requests, runs)
    };
    let (requests, kubectl) = collect(lb);
    let (vip_requests, vip_kubectl) = vip.map(collect).unwrap_or_default();
    Ok(Outcome {
        requests,
        kubectl,
        vip_requests,
        vip_kubectl,
        joined,
        took,
        last_status,
    })
}
