//! The VIP that also load-balances (`virtualIP.loadBalance: true`, `cpe vip
//! --load-balance`), resolved for one node: [`VipLbPlan`] — the VIP's port (redirected on
//! the holder), the load balancer's own port on every machine, its seed backends (every
//! listed machine's API server, or `--backend`) and where it discovers the others — and
//! [`VipPlan::lb_plan`], the `cpe lb` plan the agent runs in-process, checked with the
//! definition's `healthCheck` (or the `--health-*` flags).
//!
//! Where the backends come from (machines are replaced with new names and addresses by
//! Cluster API: nothing assumes a fixed list):
//! - `loadBalancer.discovery` / `--discover`, `--kubeconfig`, `--cache-dir`: `cpe lb`'s
//!   resolution ([`rules::discovery::overlay`]), with the `etcd` source on the agent's own
//!   etcd endpoints and TLS (the election's) and the API server at the endpoint port;
//! - with no machine list and no `--backend` and no source named: the `etcd` source is
//!   implied, seeded with this node's own API server (its address is found at start,
//!   [`VipLbPlan::seed_own`]); discovery then replaces the seed as soon as etcd answers;
//! - machines or `--backend` without a source: those, fixed (as before discovery).
//!
//! The flags are held to the file's rules: `--lb-port` to `virtualIP.lbPort`'s
//! ([`rules::vip::lb_port_rule`]), `--backend` to `cpe lb`'s. `--health-url` is refused in
//! this mode: the holder is healthy while its load balancer has a backend up, not while one
//! URL answers. Pure, like the rest of the crate.

use crate::flags::VipFlags;
use crate::input::S;
use crate::model::{Endpoint, LoadBalancer, DEFAULT_PORT, DEFAULT_VIP_LB_PORT};
use crate::plan::{HealthTarget, LbPlan, VipPlan};
use crate::problem::Problem;
use crate::rules::discovery::{Discovery, Source, VIP_LB_CACHE_PREFIX};
use crate::rules::{self, lb::Backend, Check};
use std::net::{IpAddr, SocketAddr};

/// What the load-balancing VIP runs on one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VipLbPlan {
    /// The VIP's port (the endpoint port): TCP to VIP:port goes to `lb_port` on the holder.
    pub port: u16,
    /// Where the load balancer listens, on every address of every machine.
    pub lb_port: u16,
    /// Every backend once, in the order given (with discovery: the seeds).
    pub backends: Vec<Backend>,
    /// This node's own API server (its address on the VIP interface in the VIP's subnet,
    /// at `port`) is a seed too: set when nothing else seeds discovery. The CLI adds it to
    /// `backends` once the address is known (netlink, at start).
    pub seed_own: bool,
    /// Where backends are learned at run time (`None`: `backends` only). Its `etcd` and
    /// `etcd_tls` are the agent's.
    pub discovery: Option<Discovery>,
}

/// How long the in-agent load balancer drains when the agent stops. Shorter than `cpe
/// lb`'s 30 s: by then the agent has removed the redirect and the address (the VIP has
/// moved), so a client's connection through the VIP is answered by the new holder (a
/// reset) whatever this one does; what is left are in-flight answers, and this machine's
/// own clients' connections (kept by conntrack). A 30 s drain only held the agent's exit
/// past a pod's default 30 s grace when a watch stream was open (found by the chaos
/// runs in load-balancing mode, `docs/chaos.md`).
pub const VIP_LB_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

impl VipPlan {
    /// The load balancer this node runs (`None` without load balancing): `cpe lb`'s
    /// defaults for limits and timeouts except the drain ([`VIP_LB_DRAIN`]), no admin
    /// listener of its own (the agent's `/status` shows it), listening on every address
    /// of the VIP's family.
    pub fn lb_plan(&self) -> Option<LbPlan> {
        let l = self.load_balance.as_ref()?;
        let any: IpAddr = match self.vip {
            IpAddr::V4(_) => [0, 0, 0, 0].into(),
            IpAddr::V6(_) => [0u16; 8].into(),
        };
        let listen = SocketAddr::new(any, l.lb_port);
        let d = LoadBalancer::with_listen(listen);
        let mut health = self.health_check.clone();
        health.ca_file = self.health_tls.ca.clone();
        health.cert_file = self.health_tls.cert.clone();
        health.key_file = self.health_tls.key.clone();
        Some(LbPlan {
            listen,
            admin: None,
            admin_token_file: None,
            metrics: None,
            max_connections: d.max_connections,
            drain_timeout: VIP_LB_DRAIN,
            connect_timeout: d.connect_timeout,
            health,
            backends: l.backends.clone(),
            discovery: l.discovery.clone(),
            listen_also: Vec::new(),
            node_local: false,
        })
    }
}

/// From a definition with `loadBalance: true`: every machine's API server.
pub(crate) fn from_definition(e: &Endpoint) -> Option<VipLbPlan> {
    let lb = e.vip.as_ref()?.load_balance.as_ref()?;
    Some(VipLbPlan {
        port: e.port,
        lb_port: lb.lb_port,
        backends: machine_backends(e),
        seed_own: false,
        discovery: lb.discovery.clone(),
    })
}

fn machine_backends(e: &Endpoint) -> Vec<Backend> {
    let mut backends: Vec<Backend> = Vec::new();
    for m in &e.machines {
        let b = Backend::from_addr(m.api_server());
        if !backends.contains(&b) {
            backends.push(b);
        }
    }
    backends
}

/// Lays `--load-balance`, `--backend`, `--lb-port` and the discovery flags over the plan
/// (after the etcd flags: the `etcd` source takes the plan's etcd).
pub(crate) fn overlay(f: &VipFlags, c: &mut Check, plan: &mut VipPlan, def: Option<&Endpoint>) {
    let backends = backends(c, &f.backends);
    if f.load_balance && plan.load_balance.is_none() {
        plan.load_balance = Some(VipLbPlan {
            port: def.map_or(DEFAULT_PORT, |e| e.port),
            lb_port: DEFAULT_VIP_LB_PORT,
            backends: def.map(machine_backends).unwrap_or_default(),
            seed_own: false,
            discovery: None,
        });
    }
    let Some(l) = plan.load_balance.as_mut() else {
        let needs = "needs --load-balance (or `virtualIP.loadBalance: true` in the definition)";
        if let Some(b) = f.backends.first() {
            c.push(Problem::error("--backend", b, needs));
        }
        if let Some(p) = f.lb_port {
            c.push(Problem::error("--lb-port", p.to_string(), needs));
        }
        for (flag, given) in [
            ("--discover", f.discovery.discover.first().cloned()),
            (
                "--kubeconfig",
                f.discovery
                    .kubeconfig
                    .as_ref()
                    .map(|p| p.display().to_string()),
            ),
            (
                "--cache-dir",
                f.discovery
                    .cache_dir
                    .as_ref()
                    .map(|p| p.display().to_string()),
            ),
        ] {
            if let Some(v) = given {
                c.push(Problem::error(flag, v, needs));
            }
        }
        return;
    };
    if !f.backends.is_empty() {
        l.backends = backends;
    }
    let external = def.is_some_and(|e| e.etcd_topology == crate::model::EtcdTopology::External);
    discovery(f, c, l, &plan.etcd, &plan.etcd_tls, external);
    if let Some(p) = f.lb_port {
        if let Some(port) = c.port("--lb-port", &Some(S::new(p)), DEFAULT_VIP_LB_PORT) {
            if rules::vip::lb_port_rule(
                c,
                "--lb-port",
                Some((p.to_string(), None)),
                port,
                Some(l.port),
                Some(plan.admin),
            ) {
                l.lb_port = port;
            }
        }
    }
    if let (Some(u), HealthTarget::Url(_)) = (&f.health_url, &plan.health) {
        c.push(
            Problem::error(
                "--health-url",
                u,
                "does not apply with load balancing: the holder is healthy while its load balancer has a backend up",
            )
            .hint("the backends are checked with the definition's healthCheck, or --health-interval/--health-timeout/--health-ca/--health-cert/--health-key"),
        );
    }
}

/// Where the in-agent load balancer learns its backends: the definition's
/// `loadBalancer.discovery` with the flags laid over by `cpe lb`'s rules; the `etcd`
/// source implied when nothing else gives a backend; this node's own API server seeding
/// discovery when there is no other seed.
fn discovery(
    f: &VipFlags,
    c: &mut Check,
    l: &mut VipLbPlan,
    etcd: &[String],
    etcd_tls: &crate::tls::TlsFiles,
    external_etcd: bool,
) {
    let agent = |mut d: Discovery| {
        d.etcd = etcd.to_vec();
        d.etcd_tls = etcd_tls.clone();
        d.api_port = l.port;
        d.cache_prefix = VIP_LB_CACHE_PREFIX;
        d
    };
    let base = agent(l.discovery.take().unwrap_or(Discovery {
        sources: Vec::new(),
        kubeconfig: None,
        etcd: Vec::new(),
        etcd_tls: Default::default(),
        cache_dir: rules::discovery::DEFAULT_CACHE_DIR.into(),
        cache_prefix: VIP_LB_CACHE_PREFIX,
        api_port: l.port,
    }));
    // The etcd flags are the agent's, already in `etcd`/`etcd_tls`.
    let mut flags = f.discovery.clone();
    flags.etcd.clear();
    flags.etcd_ca = None;
    flags.etcd_cert = None;
    flags.etcd_key = None;
    let nothing_else =
        l.backends.is_empty() && base.sources.is_empty() && flags.discover.is_empty();
    if nothing_else && !external_etcd {
        // No machine list, no --backend, no source: the agent's etcd knows the members,
        // and with stacked etcd each member's host runs an API server.
        flags.discover = vec![Source::Etcd.as_str().to_string()];
    }
    let d = rules::discovery::overlay(c, Some(base), &flags, l.port)
        .filter(|d| !d.sources.is_empty())
        .map(agent);
    if external_etcd {
        let rule = "is external: its members' hosts are not API servers, so the in-agent load balancer cannot learn its backends from etcd";
        let hint = "list controlPlane.machines, give --backend, or discover from the API: --discover kubernetes --kubeconfig FILE (or loadBalancer.discovery)";
        if d.as_ref().is_some_and(|d| d.has(Source::Etcd)) {
            c.push(
                Problem::error(
                    "controlPlane.etcd",
                    "external",
                    format!("{rule} (the etcd source is named)"),
                )
                .hint(hint),
            );
        } else if d.is_none() && l.backends.is_empty() {
            c.push(Problem::error("controlPlane.etcd", "external", rule).hint(hint));
        }
    }
    if d.is_some() && l.backends.is_empty() {
        l.seed_own = true;
    }
    if d.is_none()
        && l.backends.is_empty()
        && !c
            .problems
            .iter()
            .any(|p| p.severity == crate::Severity::Error)
    {
        // Only reachable if the agent had no etcd at all (its own rules say so first).
        c.push(
            Problem::error("--backend", "", "is required with load balancing when nothing can discover the backends (no controlPlane.machines, no --discover, no etcd)")
                .hint("repeat it once per API server, e.g. --backend 10.0.0.11:6443, or --discover etcd|kubernetes"),
        );
    }
    l.discovery = d;
}

fn backends(c: &mut Check, given: &[String]) -> Vec<Backend> {
    let mut out: Vec<Backend> = Vec::new();
    for text in given {
        match rules::lb::parse_backend(text) {
            Err(e) => c.push(Problem::error("--backend", text, e.to_string())),
            Ok(b) => match out.iter().position(|o| *o == b) {
                Some(first) => c.push(
                    Problem::error(
                        "--backend",
                        text,
                        format!(
                            "is already backend {} (--backend {})",
                            first + 1,
                            given[first]
                        ),
                    )
                    .hint("give every backend once"),
                ),
                None => out.push(b),
            },
        }
    }
    out
}
