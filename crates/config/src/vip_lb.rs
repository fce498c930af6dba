//! The VIP that also load-balances (`virtualIP.loadBalance: true`, `cpe vip
//! --load-balance`), resolved for one node: [`VipLbPlan`] — the VIP's port (redirected on
//! the holder), the load balancer's own port on every machine, and its backends (every
//! machine's API server, or `--backend`) — and [`VipPlan::lb_plan`], the `cpe lb` plan the
//! agent runs in-process, checked with the definition's `healthCheck` (or the `--health-*`
//! flags).
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
use crate::rules::{self, lb::Backend, Check};
use std::net::{IpAddr, SocketAddr};

/// What the load-balancing VIP runs on one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VipLbPlan {
    /// The VIP's port (the endpoint port): TCP to VIP:port goes to `lb_port` on the holder.
    pub port: u16,
    /// Where the load balancer listens, on every address of every machine.
    pub lb_port: u16,
    /// Every backend once, in the order given.
    pub backends: Vec<Backend>,
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
            // The machines of the definition or --backend; discovery inside the agent is
            // not wired yet (docs/vip.md says so).
            discovery: None,
            listen_also: Vec::new(),
            node_local: false,
        })
    }
}

/// From a definition with `loadBalance: true`: every machine's API server.
pub(crate) fn from_definition(e: &Endpoint) -> Option<VipLbPlan> {
    let lb = e.vip.as_ref()?.load_balance?;
    Some(VipLbPlan {
        port: e.port,
        lb_port: lb.lb_port,
        backends: machine_backends(e),
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

/// Lays `--load-balance`, `--backend` and `--lb-port` over the plan.
pub(crate) fn overlay(f: &VipFlags, c: &mut Check, plan: &mut VipPlan, def: Option<&Endpoint>) {
    let backends = backends(c, &f.backends);
    if f.load_balance && plan.load_balance.is_none() {
        plan.load_balance = Some(VipLbPlan {
            port: def.map_or(DEFAULT_PORT, |e| e.port),
            lb_port: DEFAULT_VIP_LB_PORT,
            backends: def.map(machine_backends).unwrap_or_default(),
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
        return;
    };
    if !f.backends.is_empty() {
        l.backends = backends;
    }
    if l.backends.is_empty() && f.backends.is_empty() {
        // Without a machine list (a virtual-ip definition may leave it out) the in-agent
        // load balancer has nothing to start from: discovery is `cpe lb`'s, not wired
        // into `cpe vip` yet, so say so rather than start with no backend.
        let rule = match def {
            None => "is required with --load-balance without -f",
            Some(_) => "is required with load balancing when the definition lists no controlPlane.machines (the in-agent load balancer does not discover its backends yet)",
        };
        c.push(
            Problem::error("--backend", "", rule)
                .hint("repeat it once per API server, e.g. --backend 10.0.0.11:6443"),
        );
    }
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
