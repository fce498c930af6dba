//! What one node runs, resolved: [`VipPlan`] for `cpe vip`, [`LbPlan`] for `cpe lb`.
//! Built from a definition, flags, or both ([`crate::flags`]); every value is checked by
//! the definition's rules and every default applied, so the agents take a plan as it is
//! and re-check nothing. The etcd endpoints are expanded for the node: its own member
//! first, by default every machine's `https://ADDRESS:2379` ([`etcd_endpoints`]).
//!
//! Pure: no host access (no interface, no socket, no DNS, no file read beyond
//! [`crate::load`]). Turning a plan into the agents' own settings (probers, etcd clients)
//! is the CLI's job.

use crate::defaults::DEFAULT_LEASE_TTL;
use crate::flags::{self, given, LbFlags, VipFlags};
use crate::input::S;
use crate::load::{self, LoadError, Loaded};
use crate::model::*;
use crate::problem::{Problem, Severity};
use crate::rules::{self, lb::Backend, Check};
use crate::tls::TlsFiles;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

mod etcd;
pub use etcd::{etcd_endpoints, etcd_for, OWN_ETCD_MEMBER};

/// What `cpe vip` runs on one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VipPlan {
    pub node: String,
    pub vip: IpAddr,
    pub prefix_len: u8,
    pub interface: String,
    /// etcd client URLs in the order to try them (this node's own member first).
    pub etcd: Vec<String>,
    pub etcd_tls: TlsFiles,
    pub election: String,
    pub lease_ttl: Duration,
    pub admin: SocketAddr,
    /// The bearer token file of state-changing admin requests (always set when `admin`
    /// is not loopback: the plan is refused otherwise).
    pub admin_token_file: Option<std::path::PathBuf>,
    /// The metrics-only listener (`/metrics` and the probes), if any.
    pub metrics: Option<SocketAddr>,
    pub health: HealthTarget,
    /// Protocol, path, interval, timeout, rise, fall and what 401/403 means (the
    /// definition's, or the defaults, with the flags laid over).
    pub health_check: HealthCheck,
    /// TLS of the health check (the definition's `healthCheck` files, or the
    /// `--health-*` files with `--health-url`).
    pub health_tls: TlsFiles,
    /// The VIP that also load-balances (`None`: the VIP only). See [`crate::vip_lb`].
    pub load_balance: Option<crate::vip_lb::VipLbPlan>,
}

/// What must pass for the node to hold the VIP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HealthTarget {
    /// `--health-url` (or the ad-hoc default, this machine's API server `/readyz`).
    Url(String),
    /// The definition's health check against this machine's API server.
    Machine(SocketAddr),
    /// The definition's health check against this machine's API server at the address it
    /// has on the VIP interface in the VIP's subnet, on this port: found at start (netlink,
    /// `cpe_net::own_address`), then [`HealthTarget::Machine`]. For a node the definition
    /// does not list (or a definition without machines).
    OwnAddress(u16),
}

impl HealthTarget {
    /// The target as a URL, for logs and `/status` (`https://10.0.0.11:6443/readyz`).
    pub fn describe(&self, hc: &HealthCheck) -> String {
        match self {
            HealthTarget::Url(u) => u.clone(),
            HealthTarget::Machine(a) if hc.protocol == Protocol::Tcp => format!("tcp://{a}"),
            HealthTarget::Machine(a) => {
                format!("{}://{a}{}", flags::protocol_name(hc.protocol), hc.path)
            }
            HealthTarget::OwnAddress(p) if hc.protocol == Protocol::Tcp => {
                format!("tcp://OWN-ADDRESS:{p}")
            }
            HealthTarget::OwnAddress(p) => {
                format!(
                    "{}://OWN-ADDRESS:{p}{}",
                    flags::protocol_name(hc.protocol),
                    hc.path
                )
            }
        }
    }
}

/// The health target without a definition: this machine's API server.
pub const DEFAULT_HEALTH_URL: &str = "https://127.0.0.1:6443/readyz";

/// What `cpe lb` runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LbPlan {
    pub listen: SocketAddr,
    /// `None`: no admin listener (`--admin off`).
    pub admin: Option<SocketAddr>,
    /// The bearer token file of `POST /maintenance/...` (always set when `admin` is not
    /// loopback: the plan is refused otherwise).
    pub admin_token_file: Option<std::path::PathBuf>,
    /// The metrics-only listener (`/metrics` and the probes), if any.
    pub metrics: Option<SocketAddr>,
    pub max_connections: usize,
    pub drain_timeout: Duration,
    pub connect_timeout: Duration,
    pub health: HealthCheck,
    /// Every backend once, in the order given (a definition's: every machine's API
    /// server, spares included). With discovery: the seed set at start.
    pub backends: Vec<Backend>,
    /// More addresses to listen on at `listen`'s port (the node-local load balancer: the
    /// other family's loopback). See [`crate::node_local`].
    pub listen_also: Vec<IpAddr>,
    /// The node-local preset (`--node-local`): loopback only, one worker.
    pub node_local: bool,
    /// Where backends are learned from at run time (`None`: the list above only).
    pub discovery: Option<rules::discovery::Discovery>,
}

/// A plan and the definition's warnings (to be printed: they are not errors).
#[derive(Clone, Debug)]
pub struct Resolved<P> {
    pub plan: P,
    pub warnings: Vec<Problem>,
}

/// Why there is no plan.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The definition cannot be read or breaks a rule (each problem with its line).
    #[error(transparent)]
    Load(Box<LoadError>),
    /// The flags break a rule, or do not fit the definition (each problem names a flag,
    /// or the definition's mode).
    #[error("{}", render(.0))]
    Invalid(Vec<Problem>),
}

fn render(ps: &[Problem]) -> String {
    ps.iter()
        .map(|p| p.render(None))
        .collect::<Vec<_>>()
        .join("\n")
}

impl From<LoadError> for PlanError {
    fn from(e: LoadError) -> PlanError {
        PlanError::Load(Box::new(e))
    }
}

impl PlanError {
    /// Every problem as printed: the definition's with `file:line:column:`, the flags'
    /// without (they are not in the file).
    pub fn render(&self, file: Option<&Path>) -> Vec<String> {
        let name = file.map(|f| f.display().to_string());
        match self {
            PlanError::Load(e) => e
                .problems()
                .iter()
                .map(|p| p.render(name.as_deref()))
                .collect(),
            PlanError::Invalid(ps) => ps.iter().map(|p| p.render(None)).collect(),
        }
    }
}

/// The problems, or `Ok` when none is an error.
fn finish<P>(
    c: Check,
    plan: Option<P>,
    mut warnings: Vec<Problem>,
) -> Result<Resolved<P>, PlanError> {
    let (errors, own): (Vec<Problem>, Vec<Problem>) = c
        .problems
        .into_iter()
        .partition(|p| p.severity == Severity::Error);
    // The plan's own warnings (a node the definition does not list) follow the file's.
    warnings.extend(own);
    match plan {
        Some(plan) if errors.is_empty() => Ok(Resolved { plan, warnings }),
        _ => Err(PlanError::Invalid(errors)),
    }
}

/// Reads the definition when one is given, then builds the plan over it.
fn resolve_with<P>(
    file: Option<&Path>,
    plan: impl FnOnce(&mut Check, Option<&Endpoint>) -> Option<P>,
) -> Result<Resolved<P>, PlanError> {
    let loaded: Option<Loaded> = file.map(load::load_file).transpose()?;
    let warnings = loaded
        .as_ref()
        .map(|l| l.warnings.clone())
        .unwrap_or_default();
    let mut c = Check::default();
    let p = plan(&mut c, loaded.as_ref().map(|l| &l.endpoint));
    finish(c, p, warnings)
}

/// Builds the plan over an already valid definition (or none).
fn plan_with<P>(
    def: Option<&Endpoint>,
    plan: impl FnOnce(&mut Check, Option<&Endpoint>) -> Option<P>,
) -> Result<P, PlanError> {
    let mut c = Check::default();
    let p = plan(&mut c, def);
    finish(c, p, Vec::new()).map(|r| r.plan)
}

impl VipFlags {
    /// Reads the definition when one is given (its warnings returned), then resolves.
    pub fn resolve(&self, file: Option<&Path>) -> Result<Resolved<VipPlan>, PlanError> {
        resolve_with(file, |c, def| self.plan(c, def))
    }

    /// The plan over an already valid definition, with the plan's own warnings (a node
    /// the definition does not list).
    pub fn resolve_over(&self, def: &Endpoint) -> Result<Resolved<VipPlan>, PlanError> {
        let mut c = Check::default();
        let p = self.plan(&mut c, Some(def));
        finish(c, p, Vec::new())
    }

    /// The plan from an already valid definition (or none) and these flags.
    pub fn plan_for(&self, def: Option<&Endpoint>) -> Result<VipPlan, PlanError> {
        plan_with(def, |c, def| self.plan(c, def))
    }

    fn plan(&self, c: &mut Check, def: Option<&Endpoint>) -> Option<VipPlan> {
        if self.node.trim().is_empty() {
            c.push(Problem::error("--node", "", "must be this machine's name"));
            return None;
        }
        let base = match def {
            Some(e) => self.over_definition(c, e),
            None => self.ad_hoc(c),
        };
        // The flags are checked even when the base failed: every problem at once.
        let ok = base.is_some();
        let mut plan = base.unwrap_or_else(|| self.placeholder());
        self.overlay(c, &mut plan, def.is_some());
        crate::vip_lb::overlay(self, c, &mut plan, def);
        if ok {
            let (field, token_field) = match (&self.admin, def) {
                (None, Some(_)) => (
                    "virtualIP.admin",
                    "virtualIP.adminTokenFile (or --admin-token-file)",
                ),
                _ => ("--admin", "--admin-token-file"),
            };
            rules::admin_needs_token(
                c,
                field,
                plan.admin,
                token_field,
                plan.admin_token_file.is_some(),
            );
        }
        ok.then_some(plan)
    }

    fn over_definition(&self, c: &mut Check, e: &Endpoint) -> Option<VipPlan> {
        let Some(v) = e.vip.as_ref().filter(|_| e.mode == Mode::VirtualIp) else {
            c.push(Problem::error(
                "mode",
                "",
                format!(
                    "the definition is in {} mode: cpe vip needs virtual-ip mode (virtualIP.interface set)",
                    e.mode
                ),
            ));
            return None;
        };
        // Machines come and go (Cluster API replaces them with new names and addresses):
        // a node the list does not name, or any node when there is no list, runs with its
        // own address, found on the VIP interface in the VIP's subnet when it starts.
        let machine = e.machine(&self.node);
        if machine.is_none() && !e.machines.is_empty() {
            let names: Vec<&str> = e.machines.iter().map(|m| m.name.as_str()).collect();
            c.push(
                Problem::warning(
                    "--node",
                    &self.node,
                    format!(
                        "is not a machine of the definition (machines: {}): accepted, with this machine's address on {} in the VIP's subnet",
                        names.join(", "),
                        v.interface
                    ),
                )
                .hint("machines come and go (Cluster API replaces them): nothing assumes a fixed list; leave controlPlane.machines out to say so"),
            );
        }
        let etcd = e.etcd.as_ref();
        Some(VipPlan {
            node: self.node.clone(),
            vip: v.address,
            prefix_len: v.prefix_len,
            interface: v.interface.clone(),
            etcd: etcd_endpoints(e, machine),
            etcd_tls: etcd.map(Etcd::tls).unwrap_or_default(),
            election: v.election.clone(),
            lease_ttl: v.lease_ttl,
            admin: v.admin,
            admin_token_file: v.admin_token_file.clone(),
            metrics: v.metrics,
            health: match machine {
                Some(m) => HealthTarget::Machine(m.api_server()),
                None => HealthTarget::OwnAddress(e.port),
            },
            health_check: e.health.clone(),
            health_tls: e.health.tls(),
            load_balance: crate::vip_lb::from_definition(e),
        })
    }

    /// Where the flags are laid when there is no base (only to check them).
    fn placeholder(&self) -> VipPlan {
        VipPlan {
            node: self.node.clone(),
            vip: IpAddr::from([0, 0, 0, 0]),
            prefix_len: 32,
            interface: String::new(),
            etcd: Vec::new(),
            etcd_tls: TlsFiles::default(),
            election: String::new(),
            lease_ttl: DEFAULT_LEASE_TTL,
            admin: DEFAULT_VIP_ADMIN.parse().expect("constant"),
            admin_token_file: None,
            metrics: None,
            health: HealthTarget::Url(DEFAULT_HEALTH_URL.into()),
            health_check: HealthCheck::default(),
            health_tls: TlsFiles::default(),
            load_balance: None,
        }
    }

    /// Without a definition: `--vip`, `--interface` and `--etcd` are required.
    fn ad_hoc(&self, c: &mut Check) -> Option<VipPlan> {
        let vip = match given(&self.vip) {
            None => {
                c.push(
                    Problem::error("--vip", "", "is required without -f")
                        .hint("ADDR[/PREFIX], e.g. --vip 10.0.0.10/24"),
                );
                None
            }
            Some(s) => vip_flag(c, &s),
        };
        let interface = match given(&self.interface) {
            None => {
                c.push(
                    Problem::error("--interface", "", "is required without -f")
                        .hint("the interface that carries the machines' addresses, e.g. eth0"),
                );
                None
            }
            Some(s) => rules::vip::interface(c, "--interface", &s),
        };
        if self.etcd.is_empty() {
            c.push(Problem::error("--etcd", "", "is required without -f").hint(
                "URL[,URL...], e.g. --etcd https://10.0.0.11:2379 (this machine's member first)",
            ));
        }
        let (vip, prefix_len) = vip?;
        Some(VipPlan {
            node: self.node.clone(),
            vip,
            prefix_len,
            interface: interface?,
            etcd: Vec::new(), // the flag is laid over
            etcd_tls: TlsFiles::default(),
            election: format!("/cpe/vip/{vip}"),
            lease_ttl: DEFAULT_LEASE_TTL,
            admin: DEFAULT_VIP_ADMIN.parse().expect("constant"),
            admin_token_file: None,
            metrics: None,
            health: HealthTarget::Url(DEFAULT_HEALTH_URL.into()),
            health_check: HealthCheck::default(),
            health_tls: TlsFiles::default(),
            load_balance: None,
        })
    }

    /// Each flag given replaces the definition's (or the default) value, held to the
    /// rule of the field it stands for.
    fn overlay(&self, c: &mut Check, plan: &mut VipPlan, with_definition: bool) {
        if !self.etcd.is_empty() {
            plan.etcd.clear();
            for u in &self.etcd {
                if rules::is_etcd_url(u) {
                    plan.etcd.push(u.clone());
                } else {
                    c.push(
                        Problem::error(
                            "--etcd",
                            u,
                            "must be an http:// or https:// URL with a host and a port",
                        )
                        .hint("e.g. https://10.0.0.11:2379"),
                    );
                }
            }
        }
        // Plain-http members use no TLS: the definition's files (kubeadm's by default)
        // would only make the agent wait for files it never reads.
        if !self.etcd.is_empty() && !plan.etcd.iter().any(|u| u.starts_with("https://")) {
            plan.etcd_tls = TlsFiles::default();
        }
        if self.etcd_ca.is_some() {
            plan.etcd_tls.ca = flags::path(c, "--etcd-ca", &self.etcd_ca);
        }
        flags::pair(
            c,
            ("--etcd-cert", &self.etcd_cert),
            ("--etcd-key", &self.etcd_key),
        );
        if self.etcd_cert.is_some() || self.etcd_key.is_some() {
            plan.etcd_tls.cert = flags::path(c, "--etcd-cert", &self.etcd_cert);
            plan.etcd_tls.key = flags::path(c, "--etcd-key", &self.etcd_key);
        }
        flags::pair(
            c,
            ("--health-cert", &self.health_cert),
            ("--health-key", &self.health_key),
        );
        // The --health-* files go with --health-url (and without a definition, with the
        // default URL); the definition's health check keeps its own files.
        if self.health_url.is_some() || !with_definition {
            plan.health_tls = TlsFiles {
                ca: flags::path(c, "--health-ca", &self.health_ca),
                cert: flags::path(c, "--health-cert", &self.health_cert),
                key: flags::path(c, "--health-key", &self.health_key),
            };
        }
        if let Some(u) = &self.health_url {
            plan.health = HealthTarget::Url(u.clone());
        }
        flags::health_timing(
            c,
            &mut plan.health_check,
            ("--health-interval", &self.health_interval),
            ("--health-timeout", &self.health_timeout),
        );
        if let Some(s) = given(&self.lease_ttl) {
            plan.lease_ttl = rules::vip::lease_ttl(c, "--lease-ttl", &s);
        }
        if let Some(s) = given(&self.election) {
            plan.election = rules::vip::election(c, "--election", &s);
        }
        if self.admin.is_some() {
            plan.admin = c.socket("--admin", &given(&self.admin), DEFAULT_VIP_ADMIN);
        }
        if self.admin_token_file.is_some() {
            plan.admin_token_file = flags::path(c, "--admin-token-file", &self.admin_token_file);
        }
        if let Some(m) = given(&self.metrics) {
            plan.metrics = rules::metrics_listener(
                c,
                "--metrics",
                &m,
                &[("the admin listener", Some(plan.admin))],
            );
        }
    }
}

/// `--vip ADDR[/PREFIX]`: a unicast, non-loopback address; the prefix for its family.
fn vip_flag(c: &mut Check, s: &S<String>) -> Option<(IpAddr, u8)> {
    let (ip, prefix) = match rules::parse_address(&s.value) {
        Ok(a) => a,
        Err(e) => {
            c.error("--vip", s, e.to_string());
            return None;
        }
    };
    if ip.is_loopback() || !rules::is_unicast(ip) {
        c.error(
            "--vip",
            s,
            "must be a unicast address on the machines' network",
        );
        return None;
    }
    Some((ip, prefix.unwrap_or_else(|| rules::vip::full_prefix(ip))))
}

impl LbFlags {
    /// Reads the definition when one is given (its warnings returned), then resolves.
    pub fn resolve(&self, file: Option<&Path>) -> Result<Resolved<LbPlan>, PlanError> {
        resolve_with(file, |c, def| self.plan(c, def))
    }

    /// The plan from an already valid definition (or none) and these flags.
    pub fn plan_for(&self, def: Option<&Endpoint>) -> Result<LbPlan, PlanError> {
        plan_with(def, |c, def| self.plan(c, def))
    }

    fn plan(&self, c: &mut Check, def: Option<&Endpoint>) -> Option<LbPlan> {
        let base = match def {
            _ if self.node_local => self.node_local_base(c, def),
            Some(e) => lb_from_definition(c, e),
            None => self.ad_hoc(c),
        };
        // The flags are checked even when the base failed: every problem at once.
        let ok = base.is_some();
        let mut plan = base.unwrap_or_else(|| {
            lb_plan_over(
                LoadBalancer::with_listen(([0, 0, 0, 0], DEFAULT_PORT).into()),
                HealthCheck::default(),
                Vec::new(),
            )
        });
        self.overlay_health(c, &mut plan.health);
        if let Some(a) = &self.admin {
            plan.admin = match a.as_str() {
                "off" | "none" => None,
                _ => Some(c.socket("--admin", &given(&self.admin), DEFAULT_LB_ADMIN)),
            };
        }
        if self.admin_token_file.is_some() {
            plan.admin_token_file = flags::path(c, "--admin-token-file", &self.admin_token_file);
        }
        // (The node-local preset allows loopback only: its own rule, below.)
        if let (Some(admin), true, false) = (plan.admin, ok, self.node_local) {
            let (field, token_field) = match (&self.admin, def) {
                (None, Some(_)) => (
                    "loadBalancer.admin",
                    "loadBalancer.adminTokenFile (or --admin-token-file)",
                ),
                _ => ("--admin", "--admin-token-file"),
            };
            rules::admin_needs_token(
                c,
                field,
                admin,
                token_field,
                plan.admin_token_file.is_some(),
            );
        }
        if plan.admin == Some(plan.listen) && self.admin.is_some() {
            c.push(Problem::error(
                "--admin",
                self.admin.clone().unwrap_or_default(),
                "must differ from the listening address",
            ));
        }
        if let Some(m) = given(&self.metrics) {
            plan.metrics = rules::metrics_listener(
                c,
                "--metrics",
                &m,
                &[
                    ("the listening address", Some(plan.listen)),
                    ("the admin listener", plan.admin),
                ],
            );
        }
        if let Some(n) = self.max_connections {
            if let Some(n) = rules::lb::max_connections(c, "--max-connections", &S::new(n)) {
                plan.max_connections = n;
            }
        }
        plan.drain_timeout = flags::positive_duration(
            c,
            "--drain-timeout",
            &self.drain_timeout,
            plan.drain_timeout,
        );
        plan.connect_timeout = flags::positive_duration(
            c,
            "--connect-timeout",
            &self.connect_timeout,
            plan.connect_timeout,
        );
        let api_port = plan
            .backends
            .first()
            .map_or(rules::discovery::DEFAULT_API_PORT, |b| b.port);
        plan.discovery = rules::discovery::overlay(
            c,
            plan.discovery.take(),
            &self.discovery_flags(def),
            api_port,
        );
        if self.node_local {
            self.node_local_rules(c, &mut plan, def);
        }
        ok.then_some(plan)
    }

    /// Without a definition: `--listen` and at least one `--backend`, each backend once.
    pub(crate) fn ad_hoc(&self, c: &mut Check) -> Option<LbPlan> {
        let listen = match given(&self.listen) {
            None => {
                c.push(
                    Problem::error("--listen", "", "is required without -f")
                        .hint("give a definition (-f endpoint.yaml) or --listen ADDR:PORT with --backend HOST:PORT"),
                );
                None
            }
            Some(s) => match s.value.parse::<SocketAddr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    c.error(
                        "--listen",
                        &s,
                        "must be an IP address and port, e.g. 0.0.0.0:6443",
                    );
                    None
                }
            },
        };
        if self.backends.is_empty() {
            c.push(
                Problem::error("--backend", "", "is required without -f")
                    .hint("repeat it once per API server, e.g. --backend 10.0.0.11:6443"),
            );
        }
        let mut backends: Vec<Backend> = Vec::new();
        for text in &self.backends {
            match rules::lb::parse_backend(text) {
                Err(e) => c.push(Problem::error("--backend", text, e.to_string())),
                Ok(b) => match backends.iter().position(|o| *o == b) {
                    // Like a machine listed twice in a file: maintenance would reach
                    // only the first while traffic still went to the second.
                    Some(first) => c.push(
                        Problem::error(
                            "--backend",
                            text,
                            format!(
                                "is already backend {} (--backend {})",
                                first + 1,
                                self.backends[first]
                            ),
                        )
                        .hint("give every backend once"),
                    ),
                    None => backends.push(b),
                },
            }
        }
        Some(lb_plan_over(
            LoadBalancer::with_listen(listen?),
            HealthCheck::default(),
            backends,
        ))
    }
}

/// From a definition in external-lb mode: every machine's API server is a backend (spares
/// included: they get connections only once they answer).
pub fn lb_plan(e: &Endpoint) -> Result<LbPlan, PlanError> {
    plan_with(Some(e), lb_from_definition_opt)
}

fn lb_from_definition_opt(c: &mut Check, e: Option<&Endpoint>) -> Option<LbPlan> {
    lb_from_definition(c, e?)
}

fn lb_from_definition(c: &mut Check, e: &Endpoint) -> Option<LbPlan> {
    let lb = match (&e.load_balancer, e.mode) {
        (Some(lb), Mode::ExternalLb) => lb,
        (_, mode) => {
            c.push(Problem::error(
                "mode",
                "",
                format!(
                    "mode is {mode}: `cpe lb` runs in external-lb mode only \
                     (set `mode: external-lb` and a `loadBalancer` section)"
                ),
            ));
            return None;
        }
    };
    let mut backends: Vec<Backend> = Vec::new();
    for m in &e.machines {
        let b = Backend::from_addr(m.api_server());
        if !backends.contains(&b) {
            backends.push(b);
        }
    }
    Some(lb_plan_over(lb.clone(), e.health.clone(), backends))
}

pub(crate) fn lb_plan_over(
    lb: LoadBalancer,
    health: HealthCheck,
    backends: Vec<Backend>,
) -> LbPlan {
    LbPlan {
        listen: lb.listen,
        admin: Some(lb.admin),
        admin_token_file: lb.admin_token_file,
        metrics: lb.metrics,
        max_connections: lb.max_connections,
        drain_timeout: lb.drain_timeout,
        connect_timeout: lb.connect_timeout,
        health,
        backends,
        listen_also: Vec::new(),
        node_local: false,
        discovery: lb.discovery,
    }
}
