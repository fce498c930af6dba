//! From [`crate::input::File`] to [`crate::model::Endpoint`]: every rule of the product
//! brief, checked without touching the host. All problems are collected, each pointing at
//! the line and column of the value it is about (cross-field rules included: an even
//! replica count points at `replicas`, a duplicate address at the second address); the
//! definition is accepted only when none of them is an error.
//!
//! What needs the host (does the interface exist, is the port free, is the VIP unused,
//! is the VIP in the interface's subnet when the addresses carry no prefix length) is
//! `cpe preflight`'s job, not this module's.

use crate::duration;
use crate::input::{self, short, S};
use crate::model::*;
use crate::problem::{Pos, Problem, Severity};
use crate::tree;
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Files larger than this are refused before parsing (a definition is a few KiB).
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// The largest replica count accepted (far past any sensible etcd cluster; it only keeps
/// arithmetic honest).
pub const MAX_REPLICAS: i64 = 1000;

/// etcd's client port: in VIP mode without `etcd.endpoints`, every machine's
/// `https://ADDRESS:2379` is used (by `cpe vip`, its own machine first).
pub const ETCD_CLIENT_PORT: u16 = 2379;
/// kubeadm's etcd CA, the default for the VIP election's TLS.
pub const KUBEADM_ETCD_CA: &str = "/etc/kubernetes/pki/etcd/ca.crt";
/// kubeadm's etcd health-check client certificate (a client of etcd with no other rights).
pub const KUBEADM_ETCD_CERT: &str = "/etc/kubernetes/pki/etcd/healthcheck-client.crt";
pub const KUBEADM_ETCD_KEY: &str = "/etc/kubernetes/pki/etcd/healthcheck-client.key";
/// Default VIP lease TTL (etcd TTLs are whole seconds; its minimum is about 2 s).
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(2);
/// Default cluster name (kubeadm's).
pub const DEFAULT_CLUSTER: &str = "kubernetes";
/// Health-check intervals below this are refused: a probe storm, not a health check.
pub const MIN_HEALTH_INTERVAL: Duration = Duration::from_millis(10);

/// A valid definition and the warnings it carries.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub endpoint: Endpoint,
    pub warnings: Vec<Problem>,
}

/// Everything found in a definition, valid or not: what `cpe plan` prints.
#[derive(Debug, Clone, Default)]
pub struct Checked {
    /// The resolved definition when there is no error.
    pub endpoint: Option<Endpoint>,
    /// Errors and warnings, in file order (problems without a position last).
    pub problems: Vec<Problem>,
    /// `mode` was not written: it was inferred as Konvoy infers it.
    pub mode_inferred: bool,
}

impl Checked {
    pub fn errors(&self) -> usize {
        self.problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
            .count()
    }

    pub fn warnings(&self) -> usize {
        self.problems.len() - self.errors()
    }

    pub fn into_result(self) -> Result<Loaded, LoadError> {
        match self.endpoint {
            Some(endpoint) if self.problems.iter().all(|p| p.severity != Severity::Error) => {
                Ok(Loaded {
                    endpoint,
                    warnings: self.problems,
                })
            }
            _ => Err(LoadError::Invalid(self.problems)),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: cannot read: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {size} bytes is larger than the {max} bytes a definition may have")]
    TooLarge { path: String, size: u64, max: u64 },
    #[error("{path}: is not UTF-8 text (a binary file?)")]
    NotText { path: String },
    /// The YAML could not be parsed at all (syntax).
    #[error("{}", .0.render(None))]
    Parse(Problem),
    /// The definition was read; it breaks one or more rules (wrong types and unknown
    /// fields included).
    #[error("{} problem(s) in the definition:\n{}", .0.len(), render_all(.0))]
    Invalid(Vec<Problem>),
}

fn render_all(ps: &[Problem]) -> String {
    ps.iter()
        .map(|p| p.render(None))
        .collect::<Vec<_>>()
        .join("\n")
}

impl LoadError {
    /// Every problem, for printing (I/O errors become one problem without a position).
    pub fn problems(&self) -> Vec<Problem> {
        match self {
            LoadError::Parse(p) => vec![p.clone()],
            LoadError::Invalid(ps) => ps.clone(),
            LoadError::Io { source, .. } => {
                vec![Problem::error(
                    "(file)",
                    "",
                    format!("cannot be read: {source}"),
                )]
            }
            LoadError::TooLarge { size, max, .. } => vec![Problem::error(
                "(file)",
                format!("{size} bytes"),
                format!("is larger than the {max} bytes a definition may have"),
            )
            .hint("a definition is a few KiB of YAML: is this the right file?")],
            LoadError::NotText { .. } => {
                vec![
                    Problem::error("(file)", "", "is not UTF-8 text (a binary file?)")
                        .hint("a definition is a YAML text file: is this the right file?"),
                ]
            }
        }
    }
}

/// Reads and validates a definition file.
pub fn load_file(path: &Path) -> Result<Loaded, LoadError> {
    let text = read_file(path)?;
    load_str(&text)
}

/// Reads a definition file as text, refusing what cannot be one (too large, binary).
pub fn read_file(path: &Path) -> Result<String, LoadError> {
    let name = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|source| LoadError::Io {
        path: name.clone(),
        source,
    })?;
    if meta.is_dir() {
        return Err(LoadError::Io {
            path: name,
            source: std::io::Error::other("is a directory"),
        });
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(LoadError::TooLarge {
            path: name,
            size: meta.len(),
            max: MAX_FILE_BYTES,
        });
    }
    let bytes = std::fs::read(path).map_err(|source| LoadError::Io {
        path: name.clone(),
        source,
    })?;
    // Also guards against a file that grew between the two calls, or a device.
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(LoadError::TooLarge {
            path: name,
            size: bytes.len() as u64,
            max: MAX_FILE_BYTES,
        });
    }
    let text = String::from_utf8(bytes).map_err(|_| LoadError::NotText { path: name.clone() })?;
    if text.contains('\0') {
        return Err(LoadError::NotText { path: name });
    }
    Ok(text)
}

/// Parses and validates a definition given as text.
pub fn load_str(text: &str) -> Result<Loaded, LoadError> {
    match tree::parse(text) {
        Err(p) => Err(LoadError::Parse(p)),
        Ok(t) => check_tree(&t).into_result(),
    }
}

/// Parses and checks a definition, returning every problem (a syntax error is the only
/// one reported alone, since nothing after it can be read).
pub fn check_str(text: &str) -> Checked {
    match tree::parse(text) {
        Err(p) => Checked {
            problems: vec![p],
            ..Default::default()
        },
        Ok(t) => check_tree(&t),
    }
}

fn check_tree(t: &tree::At) -> Checked {
    let mut problems = Vec::new();
    let file = input::read(t, &mut problems);
    let mut checked = check(&file);
    problems.append(&mut checked.problems);
    checked.problems = problems;
    if checked.errors() > 0 {
        checked.endpoint = None;
    }
    sort(&mut checked.problems);
    checked
}

/// File order; problems without a position (flags, whole-file) last, in the order found.
fn sort(ps: &mut [Problem]) {
    ps.sort_by_key(|p| (p.pos.is_none(), p.pos));
}

/// Checks a definition already read (from a file or built from flags).
pub fn check(f: &input::File) -> Checked {
    let mut c = Check::default();
    let endpoint = resolve(f, &mut c);
    let mut problems = c.problems;
    sort(&mut problems);
    let ok = problems.iter().all(|p| p.severity != Severity::Error);
    Checked {
        endpoint: endpoint.filter(|_| ok),
        problems,
        mode_inferred: f.mode.is_none(),
    }
}

/// Collects problems while resolving.
#[derive(Default)]
struct Check {
    problems: Vec<Problem>,
}

impl Check {
    fn error(&mut self, field: impl Into<String>, s: &S<impl Sized>, rule: impl Into<String>) {
        self.problems
            .push(Problem::error(field, short(&s.raw), rule).at(s.pos));
    }

    fn push(&mut self, p: Problem) {
        self.problems.push(p);
    }

    fn port(&mut self, field: &str, v: &Option<S<i64>>, default: u16) -> Option<u16> {
        match v {
            None => Some(default),
            Some(s) if (1..=65535).contains(&s.value) => Some(s.value as u16),
            Some(s) => {
                self.error(field, s, "must be between 1 and 65535");
                None
            }
        }
    }

    fn duration(
        &mut self,
        field: &str,
        v: &Option<S<String>>,
        default: Duration,
        min: Duration,
    ) -> Duration {
        match v {
            None => default,
            Some(s) => match duration::parse(&s.value) {
                Ok(d) if d.is_zero() => {
                    self.error(field, s, "must be longer than zero");
                    default
                }
                Ok(d) if d < min => {
                    self.error(
                        field,
                        s,
                        format!("must be at least {}", duration::format(min)),
                    );
                    default
                }
                Ok(d) => d,
                Err(rule) => {
                    self.error(field, s, rule);
                    default
                }
            },
        }
    }

    fn count(&mut self, field: &str, v: &Option<S<i64>>, default: u32) -> u32 {
        match v {
            None => default,
            Some(s) if (1..=1000).contains(&s.value) => s.value as u32,
            Some(s) => {
                self.error(field, s, "must be between 1 and 1000");
                default
            }
        }
    }

    fn socket(&mut self, field: &str, v: &Option<S<String>>, default: &str) -> SocketAddr {
        let fallback: SocketAddr = default.parse().expect("default socket address");
        match v {
            None => fallback,
            Some(s) => s.value.parse().unwrap_or_else(|_| {
                self.push(
                    Problem::error(
                        field,
                        short(&s.raw),
                        "must be an IP address and port, e.g. 127.0.0.1:9630 or [::1]:9630",
                    )
                    .at(s.pos),
                );
                fallback
            }),
        }
    }

    fn path(&mut self, field: &str, v: &Option<S<String>>) -> Option<PathBuf> {
        let s = v.as_ref()?;
        if s.value.trim().is_empty() || s.value.contains('\0') {
            self.error(field, s, "must be a file path");
            return None;
        }
        Some(PathBuf::from(&s.value))
    }

    /// A certificate and its key come together.
    fn pair(&mut self, section: &str, cert: &Option<S<String>>, key: &Option<S<String>>) {
        match (cert, key) {
            (Some(c), None) => self.push(
                Problem::error(
                    format!("{section}.certFile"),
                    short(&c.raw),
                    format!("needs {section}.keyFile too"),
                )
                .at(c.pos)
                .hint("a client certificate is used with its private key"),
            ),
            (None, Some(k)) => self.push(
                Problem::error(
                    format!("{section}.keyFile"),
                    short(&k.raw),
                    format!("needs {section}.certFile too"),
                )
                .at(k.pos)
                .hint("a client certificate is used with its private key"),
            ),
            _ => {}
        }
    }
}

/// Is `name` an RFC 1123 DNS name (a trailing dot allowed)? The last label may not be all
/// digits, so that `10.0.0.300` is not taken for a name.
pub fn is_dns_name(name: &str) -> bool {
    let n = name.strip_suffix('.').unwrap_or(name);
    if n.is_empty() || n.len() > 253 {
        return false;
    }
    let labels_ok = n.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    });
    labels_ok
        && !n
            .rsplit('.')
            .next()
            .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
}

/// A Kubernetes object name: a lowercase RFC 1123 subdomain (no trailing dot).
pub fn is_object_name(name: &str) -> bool {
    !name.ends_with('.')
        && !name.bytes().any(|b| b.is_ascii_uppercase())
        && (is_dns_name(name) || (!name.is_empty() && name.bytes().all(|b| b.is_ascii_digit())))
}

/// A Linux interface name: 1 to 15 bytes, no `/`, `:` or whitespace, not `.` or `..`.
pub fn is_interface_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
}

/// Parses `10.0.0.11` or `10.0.0.11/24`.
pub fn parse_address(text: &str) -> Result<(IpAddr, Option<u8>), String> {
    match text.split_once('/') {
        None => text.parse::<IpAddr>().map(|a| (a, None)).map_err(|_| {
            "must be an IP address, optionally with a prefix length (10.0.0.11 or 10.0.0.11/24)"
                .to_string()
        }),
        Some((a, p)) => {
            let addr: IpAddr = a.parse().map_err(|_| {
                "must be an IP address, optionally with a prefix length (10.0.0.11 or 10.0.0.11/24)"
                    .to_string()
            })?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let len: u8 = p
                .parse()
                .ok()
                .filter(|l| *l <= max)
                .ok_or_else(|| format!("has prefix length /{p}, which must be 0 to {max}"))?;
            Ok((addr, Some(len)))
        }
    }
}

/// Unicast: not unspecified (`0.0.0.0`, `::`), multicast or the IPv4 broadcast address.
fn is_unicast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => !a.is_unspecified() && !a.is_multicast() && !a.is_broadcast(),
        IpAddr::V6(a) => !a.is_unspecified() && !a.is_multicast(),
    }
}

/// Is `ip` the network or broadcast address of `net` (IPv4 subnets larger than /31)?
fn network_or_broadcast(ip: IpAddr, net: &IpNet) -> Option<&'static str> {
    match net {
        IpNet::V4(n) if n.prefix_len() < 31 => {
            if IpAddr::V4(n.network()) == ip {
                Some("network")
            } else if IpAddr::V4(n.broadcast()) == ip {
                Some("broadcast")
            } else {
                None
            }
        }
        _ => None,
    }
}

fn family(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() {
        "IPv4"
    } else {
        "IPv6"
    }
}

/// Where each machine stands, for cross-field problems.
struct MachineAt<'a> {
    index: usize,
    input: &'a input::MachineIn,
    machine: Machine,
}

fn resolve(f: &input::File, c: &mut Check) -> Option<Endpoint> {
    let cluster = match &f.cluster {
        None => DEFAULT_CLUSTER.to_string(),
        Some(s) if is_object_name(&s.value) && s.value.len() <= 63 => s.value.clone(),
        Some(s) => {
            c.push(
                Problem::error(
                    "cluster",
                    short(&s.raw),
                    "must be a lowercase RFC 1123 name of at most 63 characters (a-z, 0-9, '-', '.')",
                )
                .at(s.pos)
                .hint("it names the Cluster object and the election key, e.g. prod-eu1"),
            );
            DEFAULT_CLUSTER.to_string()
        }
    };

    // Endpoint host and port.
    let ep = f.endpoint.as_ref();
    let host_in = ep.and_then(|e| e.host.as_ref());
    let host = match host_in {
        None if f.is_broken("endpoint.host") => None,
        None => {
            c.push(
                Problem::error("endpoint.host", "", "is required")
                    .at(ep.and_then(|e| e.pos).or(f.pos))
                    .hint("the load balancer's address or DNS name, the virtual IP, or the single machine's address"),
            );
            None
        }
        Some(s) => check_host(c, s),
    };
    let port = c.port(
        "endpoint.port",
        &ep.and_then(|e| e.port.clone()),
        DEFAULT_PORT,
    );

    // Control plane.
    let cp = f.control_plane.as_ref();
    let replicas_in = cp.and_then(|c| c.replicas.as_ref());
    let replicas: Option<u32> = match replicas_in {
        None if f.is_broken("controlPlane.replicas") || f.is_broken("controlPlane") => None,
        // The brief calls replicas required; Konvoy's flag defaults to 3. A definition
        // without it is accepted with Konvoy's default, and told to say so.
        None => {
            c.push(
                Problem::warning(
                    "controlPlane.replicas",
                    "",
                    format!("is not given: {DEFAULT_REPLICAS} is assumed (Konvoy's --control-plane-replicas default)"),
                )
                .at(cp.and_then(|c| c.pos).or(f.pos))
                .hint("write the number of control-plane machines: 3, 5 or 7 (1 for a test cluster)"),
            );
            Some(DEFAULT_REPLICAS)
        }
        Some(s) if s.value < 1 => {
            c.push(
                Problem::error("controlPlane.replicas", &s.raw, "must be greater than 0")
                    .at(s.pos)
                    .hint("3, 5 or 7 machines tolerate 1, 2 or 3 failures"),
            );
            None
        }
        Some(s) if s.value > MAX_REPLICAS => {
            c.error(
                "controlPlane.replicas",
                s,
                format!("must be at most {MAX_REPLICAS}"),
            );
            None
        }
        Some(s) => Some(s.value as u32),
    };
    let etcd_topology = match cp.and_then(|c| c.etcd.as_ref()) {
        None => EtcdTopology::Stacked,
        Some(s) if s.value == "stacked" => EtcdTopology::Stacked,
        Some(s) if s.value == "external" => EtcdTopology::External,
        Some(s) => {
            c.error("controlPlane.etcd", s, "must be `stacked` or `external`");
            EtcdTopology::Stacked
        }
    };
    if let (Some(n), Some(s)) = (replicas, replicas_in) {
        replica_rules(c, n, s, etcd_topology);
    }

    // Machines, each on its own; then duplicates and the count.
    let machines_in = cp.and_then(|c| c.machines.as_ref());
    let machines = machines_in
        .map(|ms| check_machines(c, &ms.value, port.unwrap_or(DEFAULT_PORT)))
        .unwrap_or_default();
    if let (Some(n), false) = (replicas, f.is_broken("controlPlane.machines")) {
        let listed = cp.map_or(0, |c| c.machines_listed);
        if listed < n as usize {
            let mut p = Problem::error(
                "controlPlane.machines",
                listed.to_string(),
                format!(
                    "lists {listed} machine{}, fewer than the {n} replicas",
                    if listed == 1 { "" } else { "s" }
                ),
            )
            .hint("list every control-plane machine with its name and address; machines beyond the replicas are spares");
            p.pos = machines_in
                .and_then(|m| m.pos)
                .or(replicas_in.and_then(|r| r.pos))
                .or(cp.and_then(|c| c.pos))
                .or(f.pos);
            c.push(p);
        }
    }

    // Mode: as written, else inferred as Konvoy infers it.
    let vip_in = f.virtual_ip.as_ref();
    let interface_in = vip_in.and_then(|v| v.interface.as_ref());
    let interface_written = vip_in.is_some_and(|v| v.interface_written);
    let mode = match &f.mode {
        Some(s) => match s.value.as_str() {
            "external-lb" => Some(Mode::ExternalLb),
            "virtual-ip" => Some(Mode::VirtualIp),
            "single-node" => Some(Mode::SingleNode),
            _ => {
                c.push(
                    Problem::error("mode", short(&s.raw), "must be one of external-lb, virtual-ip, single-node")
                        .at(s.pos)
                        .hint("or leave it out: a virtualIP.interface means virtual-ip, 1 replica means single-node, anything else external-lb"),
                );
                None
            }
        },
        None if interface_written => Some(Mode::VirtualIp),
        None if replicas == Some(1) => Some(Mode::SingleNode),
        None => Some(Mode::ExternalLb),
    };
    if let (Some(m), Some(s)) = (mode, &f.mode) {
        if m == Mode::SingleNode {
            if let Some(n) = replicas.filter(|n| *n != 1) {
                c.push(
                    Problem::error("mode", &s.raw, format!("needs exactly 1 replica, not {n}"))
                        .at(s.pos)
                        .hint("set controlPlane.replicas to 1, or use external-lb or virtual-ip"),
                );
            }
        }
        if m != Mode::VirtualIp {
            if let Some(i) = interface_in {
                c.push(
                    Problem::error(
                        "virtualIP.interface",
                        short(&i.raw),
                        format!("is only used in virtual-ip mode, but mode is {m}"),
                    )
                    .at(i.pos)
                    .hint("remove `mode` to let the interface select virtual-ip mode, or remove the interface"),
                );
            }
        }
    }
    if let Some(m) = mode {
        if m != Mode::VirtualIp && !interface_written {
            if let Some(v) = vip_in {
                c.push(
                    Problem::warning("virtualIP", "", format!("is ignored in {m} mode"))
                        .at(v.pos)
                        .hint("a virtualIP.interface selects virtual-ip mode"),
                );
            }
        }
        if m != Mode::ExternalLb {
            if let Some(l) = &f.load_balancer {
                c.push(
                    Problem::warning("loadBalancer", "", format!("is ignored in {m} mode"))
                        .at(l.pos),
                );
            }
        }
    }

    // The endpoint port is also each machine's API server port (the source document's
    // known limitation) except behind an external load balancer.
    if let (Some(m @ (Mode::VirtualIp | Mode::SingleNode)), Some(p)) = (mode, port) {
        for ma in &machines {
            if let Some(s) = &ma.input.api_server_port {
                if ma.machine.api_server_port != p {
                    c.push(
                        Problem::error(
                            format!("controlPlane.machines[{}].apiServerPort", ma.index),
                            &s.raw,
                            format!("must equal the endpoint port {p} in {m} mode"),
                        )
                        .at(s.pos)
                        .hint("the endpoint port is also the API server port on each machine; only an external load balancer may listen on another port"),
                    );
                }
            }
        }
    }

    if mode == Some(Mode::SingleNode) {
        if let (Some(Host::Ip(ip)), Some(s), Some(first)) = (&host, host_in, machines.first()) {
            if *ip != first.machine.address {
                c.push(
                    Problem::error(
                        "endpoint.host",
                        &s.raw,
                        format!(
                            "must be the address of machine `{}` ({}) in single-node mode",
                            first.machine.name, first.machine.address
                        ),
                    )
                    .at(s.pos)
                    .hint("a single-node control plane is its own endpoint: no load balancer, no virtual IP"),
                );
            }
        }
    }

    let health = check_health(c, f.health_check.as_ref());

    let vip = if mode == Some(Mode::VirtualIp) {
        check_vip(c, vip_in, &host, host_in, &machines, &cluster, f)
    } else {
        None
    };

    let etcd = check_etcd(c, f.etcd.as_ref(), mode);

    let load_balancer = if mode == Some(Mode::ExternalLb) {
        check_lb(c, f.load_balancer.as_ref(), port.unwrap_or(DEFAULT_PORT))
    } else {
        None
    };

    let (host, port, mode, replicas) = (host?, port?, mode?, replicas?);
    if mode == Mode::VirtualIp && vip.is_none() {
        return None;
    }
    Some(Endpoint {
        cluster,
        host,
        port,
        mode,
        replicas,
        etcd_topology,
        machines: machines.into_iter().map(|m| m.machine).collect(),
        health,
        vip,
        etcd,
        load_balancer,
    })
}

fn check_host(c: &mut Check, s: &S<String>) -> Option<Host> {
    let v = s.value.as_str();
    if let Ok(ip) = v.parse::<IpAddr>() {
        if is_unicast(ip) {
            return Some(Host::Ip(ip));
        }
        c.push(
            Problem::error("endpoint.host", &s.raw, "must be a unicast address")
                .at(s.pos)
                .hint(
                    "not 0.0.0.0, ::, a multicast or the broadcast address: clients connect to it",
                ),
        );
        return None;
    }
    if is_dns_name(v) {
        return Some(Host::Dns(v.to_string()));
    }
    let hint =
        if v.starts_with('[') && v.ends_with(']') && v[1..v.len() - 1].parse::<IpAddr>().is_ok() {
            "write an IPv6 address without brackets".to_string()
        } else if v.contains("://") {
            "write only the host, without a scheme or path".to_string()
        } else if v.rsplit_once(':').is_some_and(|(h, p)| {
            p.parse::<u16>().is_ok() && (is_dns_name(h) || h.parse::<IpAddr>().is_ok())
        }) {
            "write the port in endpoint.port, not in the host".to_string()
        } else {
            "a DNS name has labels of a-z, 0-9 and '-' separated by dots, e.g. lb.example.com"
                .to_string()
        };
    c.push(
        Problem::error(
            "endpoint.host",
            short(&s.raw),
            "must be an IP address or an RFC 1123 DNS name",
        )
        .at(s.pos)
        .hint(hint),
    );
    None
}

fn replica_rules(c: &mut Check, n: u32, s: &S<i64>, topology: EtcdTopology) {
    if n.is_multiple_of(2) && topology == EtcdTopology::Stacked {
        c.push(
            Problem::error(
                "controlPlane.replicas",
                &s.raw,
                "cannot be an even number when etcd is stacked",
            )
            .at(s.pos)
            .hint(format!(
                "{n} machines tolerate {} failure{} like {}: use {} or {}",
                (n - 1) / 2,
                if (n - 1) / 2 == 1 { "" } else { "s" },
                n - 1,
                n - 1,
                n + 1
            )),
        );
    }
    if n == 1 {
        c.push(
            Problem::warning(
                "controlPlane.replicas",
                &s.raw,
                "a single-node control plane is not for production",
            )
            .at(s.pos)
            .hint("it tolerates no failure: when the machine is down, so is the cluster"),
        );
        c.push(
            Problem::warning(
                "controlPlane.replicas",
                &s.raw,
                "a single-node control plane cannot be upgraded in place",
            )
            .at(s.pos)
            .hint("machines are replaced, not upgraded, and there is no second machine to take over; use 3 replicas to be able to upgrade"),
        );
    }
    if n > 7 && topology == EtcdTopology::Stacked {
        c.push(
            Problem::warning(
                "controlPlane.replicas",
                &s.raw,
                "more than 7 etcd members make every write slower",
            )
            .at(s.pos)
            .hint("every write waits for a quorum; 7 machines already tolerate 3 failures"),
        );
    }
}

fn check_machines<'a>(
    c: &mut Check,
    list: &'a [input::MachineIn],
    port: u16,
) -> Vec<MachineAt<'a>> {
    let mut out: Vec<MachineAt<'a>> = Vec::new();
    // Indexes into `out`, so that a 1 MiB file of machines is checked in linear time.
    let mut by_name: std::collections::HashMap<String, usize> = Default::default();
    let mut by_address: std::collections::HashMap<IpAddr, usize> = Default::default();
    for (i, m) in list.iter().enumerate() {
        let field = format!("controlPlane.machines[{i}]");
        let name = match &m.name {
            Some(s) if is_object_name(&s.value) => Some(s.value.clone()),
            Some(s) => {
                c.push(
                    Problem::error(
                        format!("{field}.name"),
                        short(&s.raw),
                        "must be a lowercase RFC 1123 name (a-z, 0-9, '-', '.')",
                    )
                    .at(s.pos)
                    .hint("the machine's node name, e.g. cp1"),
                );
                None
            }
            None => {
                c.push(Problem::error(format!("{field}.name"), "", "is required").at(m.pos));
                None
            }
        };
        let address = match &m.address {
            Some(s) => match parse_address(&s.value) {
                Ok((ip, _)) if !is_unicast(ip) => {
                    c.error(format!("{field}.address"), s, "must be a unicast address");
                    None
                }
                Ok((ip, Some(len))) => {
                    let net = IpNet::new(ip, len).expect("length checked").trunc();
                    match network_or_broadcast(ip, &net) {
                        Some(which) => {
                            c.error(
                                format!("{field}.address"),
                                s,
                                format!("is the {which} address of {net}, not a machine's"),
                            );
                            None
                        }
                        None => Some((ip, Some(len))),
                    }
                }
                Ok(a) => Some(a),
                Err(rule) => {
                    let mut p =
                        Problem::error(format!("{field}.address"), short(&s.raw), rule).at(s.pos);
                    if is_dns_name(&s.value) {
                        p = p.hint("a DNS name is not accepted here: cpe matches machines, backends and the virtual IP's subnet by address");
                    }
                    c.push(p);
                    None
                }
            },
            None => {
                c.push(Problem::error(format!("{field}.address"), "", "is required").at(m.pos));
                None
            }
        };
        let api_server_port = c.port(&format!("{field}.apiServerPort"), &m.api_server_port, port);

        // Duplicates are reported on the later one, naming the earlier.
        if let (Some(n), Some(s)) = (&name, &m.name) {
            if let Some(o) = by_name.get(n).map(|&k| &out[k]) {
                c.push(
                    Problem::error(
                        format!("{field}.name"),
                        &s.raw,
                        format!(
                            "is already the name of controlPlane.machines[{}]{}",
                            o.index,
                            line_of(o.input.name.as_ref().and_then(|s| s.pos))
                        ),
                    )
                    .at(s.pos)
                    .hint("every machine needs its own name"),
                );
            }
        }
        if let (Some((ip, _)), Some(s)) = (&address, &m.address) {
            if let Some(o) = by_address.get(ip).map(|&k| &out[k]) {
                c.push(
                    Problem::error(
                        format!("{field}.address"),
                        &s.raw,
                        format!(
                            "is already the address of controlPlane.machines[{}] (`{}`){}",
                            o.index,
                            o.machine.name,
                            line_of(o.input.address.as_ref().and_then(|s| s.pos))
                        ),
                    )
                    .at(s.pos)
                    .hint("every machine needs its own address"),
                );
            }
        }
        if let (Some(name), Some((address, prefix_len)), Some(api_server_port)) =
            (name, address, api_server_port)
        {
            by_name.entry(name.clone()).or_insert(out.len());
            by_address.entry(address).or_insert(out.len());
            out.push(MachineAt {
                index: i,
                input: m,
                machine: Machine {
                    name,
                    address,
                    prefix_len,
                    api_server_port,
                },
            });
        }
    }
    out
}

fn line_of(pos: Option<Pos>) -> String {
    pos.map(|p| format!(" on line {}", p.line))
        .unwrap_or_default()
}

fn check_health(c: &mut Check, hc: Option<&input::HealthCheckIn>) -> HealthCheck {
    let d = HealthCheck::default();
    let Some(h) = hc else {
        return d;
    };
    c.pair("healthCheck", &h.cert_file, &h.key_file);
    let health = HealthCheck {
        protocol: match &h.protocol {
            None => d.protocol,
            Some(s) => match s.value.as_str() {
                "https" => Protocol::Https,
                "http" => Protocol::Http,
                "tcp" => Protocol::Tcp,
                _ => {
                    c.error("healthCheck.protocol", s, "must be https, http or tcp");
                    d.protocol
                }
            },
        },
        path: match &h.path {
            None => d.path.clone(),
            Some(s)
                if s.value.starts_with('/')
                    && !s.value.chars().any(|c| c.is_whitespace() || c.is_control()) =>
            {
                s.value.clone()
            }
            Some(s) => {
                c.push(
                    Problem::error(
                        "healthCheck.path",
                        short(&s.raw),
                        "must start with / and contain no spaces",
                    )
                    .at(s.pos)
                    .hint("e.g. /readyz (the API server's readiness)"),
                );
                d.path.clone()
            }
        },
        interval: c.duration(
            "healthCheck.interval",
            &h.interval,
            d.interval,
            MIN_HEALTH_INTERVAL,
        ),
        timeout: c.duration(
            "healthCheck.timeout",
            &h.timeout,
            d.timeout,
            Duration::from_millis(1),
        ),
        rise: c.count("healthCheck.rise", &h.rise, d.rise),
        fall: c.count("healthCheck.fall", &h.fall, d.fall),
        ca_file: c.path("healthCheck.caFile", &h.ca_file),
        cert_file: c.path("healthCheck.certFile", &h.cert_file),
        key_file: c.path("healthCheck.keyFile", &h.key_file),
        unauthorized: match &h.unauthorized {
            None => d.unauthorized,
            Some(s) if s.value == "alive" => Unauthorized::Alive,
            Some(s) if s.value == "down" => Unauthorized::Down,
            Some(s) => {
                c.error("healthCheck.unauthorized", s, "must be `alive` or `down`");
                d.unauthorized
            }
        },
    };
    health
}

fn check_vip(
    c: &mut Check,
    vip_in: Option<&input::VirtualIpIn>,
    host: &Option<Host>,
    host_in: Option<&S<String>>,
    machines: &[MachineAt<'_>],
    cluster: &str,
    f: &input::File,
) -> Option<VirtualIp> {
    let host_pos = host_in.and_then(|s| s.pos);
    let host_raw = host_in.map(|s| short(&s.raw)).unwrap_or_default();
    let address = match host {
        Some(Host::Ip(ip)) => Some(*ip),
        Some(Host::Dns(_)) => {
            c.push(
                Problem::error(
                    "endpoint.host",
                    &host_raw,
                    "must be an IP address (the virtual IP) in virtual-ip mode, not a DNS name",
                )
                .at(host_pos)
                .hint("a free address in the control-plane machines' subnet, e.g. 10.0.0.10"),
            );
            None
        }
        None => None,
    };
    if let Some(vip) = address {
        if let Some(m) = machines.iter().find(|m| m.machine.address == vip) {
            c.push(
                Problem::error(
                    "endpoint.host",
                    &host_raw,
                    format!("is the address of machine `{}`: the virtual IP must be a free address", m.machine.name),
                )
                .at(host_pos)
                .hint("pick an unused address in the machines' subnet; the VIP moves between machines, a machine's own address cannot"),
            );
        }
        // One problem per subnet (or family), naming every machine in it: three machines
        // on one /24 give one message, not three.
        let mut groups: Vec<(String, String, Vec<&Machine>)> = Vec::new();
        for m in machines {
            let ma = m.machine.address;
            let found = if ma.is_ipv4() != vip.is_ipv4() {
                Some((
                    format!("is an {} address, but", family(vip)),
                    family(ma).to_string(),
                ))
            } else if let Some(len) = m.machine.prefix_len {
                let net = IpNet::new(ma, len).expect("length checked").trunc();
                if !net.contains(&vip) {
                    Some(("is outside the subnet".to_string(), net.to_string()))
                } else {
                    network_or_broadcast(vip, &net).map(|which| {
                        (
                            format!("is the {which} address of the subnet"),
                            net.to_string(),
                        )
                    })
                }
            } else {
                None // no subnet written: preflight checks the interface's subnet
            };
            if let Some((what, net)) = found {
                match groups.iter_mut().find(|g| g.0 == what && g.1 == net) {
                    Some(g) => g.2.push(&m.machine),
                    None => groups.push((what, net, vec![&m.machine])),
                }
            }
        }
        for (what, net, ms) in groups {
            let names = ms
                .iter()
                .map(|m| match m.prefix_len {
                    Some(l) => format!("`{}` ({}/{l})", m.name, m.address),
                    None => format!("`{}` ({})", m.name, m.address),
                })
                .collect::<Vec<_>>()
                .join(", ");
            let machines_word = if ms.len() == 1 { "machine" } else { "machines" };
            #[allow(clippy::collapsible_else_if)]
            let rule = if what.ends_with("but") {
                if ms.len() == 1 {
                    format!("{what} machine {names} has an {net} address")
                } else {
                    format!("{what} machines {names} have {net} addresses")
                }
            } else {
                format!("{what} {net} of {machines_word} {names}")
            };
            let hint = if what.contains("network") || what.contains("broadcast") {
                "pick a free host address in the subnet"
            } else if what.ends_with("but") {
                "the virtual IP lives in the machines' own network: use the same address family"
            } else {
                "the virtual IP must be a free address in the layer-2 network of every control-plane machine"
            };
            c.push(
                Problem::error("endpoint.host", &host_raw, rule)
                    .at(host_pos)
                    .hint(hint),
            );
        }
    }

    let interface = match vip_in.and_then(|v| v.interface.as_ref()) {
        Some(s) if is_interface_name(&s.value) => Some(s.value.clone()),
        Some(s) => {
            c.push(
                Problem::error(
                    "virtualIP.interface",
                    short(&s.raw),
                    "must be an interface name: 1 to 15 characters, no '/', ':' or whitespace",
                )
                .at(s.pos)
                .hint(
                    "the interface that carries the machines' addresses, e.g. eth0 (`ip -br addr`)",
                ),
            );
            None
        }
        None if f.is_broken("virtualIP.interface") => None,
        None => {
            c.push(
                Problem::error("virtualIP.interface", "", "is required in virtual-ip mode")
                    .at(vip_in.and_then(|v| v.pos).or(f.mode.as_ref().and_then(|m| m.pos)).or(f.pos))
                    .hint("the interface that carries the machines' addresses, e.g. eth0 (`ip -br addr`)"),
            );
            None
        }
    };
    let lease_ttl = match vip_in.and_then(|v| v.lease_ttl.as_ref()) {
        None => DEFAULT_LEASE_TTL,
        Some(s) => match duration::parse(&s.value) {
            Err(rule) => {
                c.error("virtualIP.leaseTTL", s, rule);
                DEFAULT_LEASE_TTL
            }
            Ok(d) if d.is_zero() || d.subsec_nanos() != 0 => {
                c.push(
                    Problem::error(
                        "virtualIP.leaseTTL",
                        short(&s.raw),
                        "must be a whole number of seconds, at least 1s",
                    )
                    .at(s.pos)
                    .hint("etcd lease TTLs are whole seconds; the default is 2s"),
                );
                DEFAULT_LEASE_TTL
            }
            Ok(d) => {
                if d < DEFAULT_LEASE_TTL {
                    c.push(
                        Problem::warning("virtualIP.leaseTTL", short(&s.raw), "is below etcd's minimum lease TTL (about 2s with default etcd timing): etcd grants a longer one")
                            .at(s.pos),
                    );
                }
                d
            }
        },
    };
    let election = match vip_in.and_then(|v| v.election.as_ref()) {
        None => format!("/cpe/vip/{cluster}"),
        Some(s)
            if s.value.starts_with('/')
                && !s.value.chars().any(|c| c.is_whitespace() || c.is_control()) =>
        {
            s.value.clone()
        }
        Some(s) => {
            c.error(
                "virtualIP.election",
                s,
                "must be an etcd key prefix starting with / and without spaces",
            );
            String::new()
        }
    };
    let admin = c.socket(
        "virtualIP.admin",
        &vip_in.and_then(|v| v.admin.clone()),
        DEFAULT_VIP_ADMIN,
    );
    let prefix_len = match (address, vip_in.and_then(|v| v.prefix_length.as_ref())) {
        (Some(a), Some(s)) => {
            let max = if a.is_ipv4() { 32 } else { 128 };
            if (0..=max).contains(&s.value) {
                s.value as u8
            } else {
                c.error(
                    "virtualIP.prefixLength",
                    s,
                    format!("must be 0 to {max} for an {} virtual IP", family(a)),
                );
                max as u8
            }
        }
        (Some(a), None) => {
            if a.is_ipv4() {
                32
            } else {
                128
            }
        }
        (None, _) => 32,
    };
    Some(VirtualIp {
        address: address?,
        prefix_len,
        interface: interface?,
        lease_ttl,
        election,
        admin,
    })
}

fn check_etcd(c: &mut Check, e: Option<&input::EtcdIn>, mode: Option<Mode>) -> Option<Etcd> {
    if let Some(e) = e {
        c.pair("etcd", &e.cert_file, &e.key_file);
    }
    let mut endpoints = Vec::new();
    match e.and_then(|e| e.endpoints.as_ref()) {
        Some(list) if list.value.is_empty() => c.push(
            Problem::error("etcd.endpoints", "", "must list at least one etcd endpoint")
                .at(list.pos)
                .hint("or leave it out: in virtual-ip mode every machine's https://ADDRESS:2379 is used"),
        ),
        Some(list) => {
            for (i, s) in list.value.iter().enumerate() {
                if is_etcd_url(&s.value) {
                    endpoints.push(s.value.clone());
                } else {
                    c.push(
                        Problem::error(
                            format!("etcd.endpoints[{i}]"),
                            short(&s.raw),
                            "must be an http:// or https:// URL with a host and a port",
                        )
                        .at(s.pos)
                        .hint("e.g. https://10.0.0.11:2379"),
                    );
                }
            }
        }
        None => {}
    }
    let files_given = e.is_some_and(|e| e.ca_file.is_some() || e.cert_file.is_some());
    let (mut ca_file, mut cert_file, mut key_file) = match e {
        Some(e) => (
            c.path("etcd.caFile", &e.ca_file),
            c.path("etcd.certFile", &e.cert_file),
            c.path("etcd.keyFile", &e.key_file),
        ),
        None => (None, None, None),
    };
    if mode != Some(Mode::VirtualIp) {
        return e.map(|_| Etcd {
            endpoints,
            ca_file,
            cert_file,
            key_file,
        });
    }
    // VIP mode: the election runs on the control plane's own (stacked) etcd by default,
    // with kubeadm's health-check client certificate. The endpoints stay empty, meaning
    // every machine's https://ADDRESS:2379: `cpe vip` puts its own machine's member first,
    // which a list fixed here could not.
    let https = endpoints.is_empty() || endpoints.iter().any(|u| u.starts_with("https://"));
    if !files_given && https {
        ca_file = Some(PathBuf::from(KUBEADM_ETCD_CA));
        cert_file = Some(PathBuf::from(KUBEADM_ETCD_CERT));
        key_file = Some(PathBuf::from(KUBEADM_ETCD_KEY));
    }
    Some(Etcd {
        endpoints,
        ca_file,
        cert_file,
        key_file,
    })
}

/// `http://HOST:PORT` or `https://HOST:PORT` (an optional trailing `/`).
pub fn is_etcd_url(u: &str) -> bool {
    let Some(rest) = u
        .strip_prefix("https://")
        .or_else(|| u.strip_prefix("http://"))
    else {
        return false;
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.parse::<SocketAddr>().is_ok() {
        return true;
    }
    match rest.rsplit_once(':') {
        Some((h, p)) => {
            p.parse::<u16>().is_ok_and(|p| p > 0)
                && (is_dns_name(h) || h.parse::<std::net::Ipv4Addr>().is_ok())
        }
        None => false,
    }
}

fn check_lb(c: &mut Check, lb: Option<&input::LoadBalancerIn>, port: u16) -> Option<LoadBalancer> {
    let default_listen = format!("0.0.0.0:{port}");
    let mut out = LoadBalancer::with_listen(default_listen.parse().expect("valid"));
    let Some(l) = lb else {
        return Some(out);
    };
    out.listen = c.socket("loadBalancer.listen", &l.listen, &default_listen);
    if let Some(s) = &l.listen {
        if out.listen.port() != port && s.value.parse::<SocketAddr>().is_ok() {
            c.push(
                Problem::warning(
                    "loadBalancer.listen",
                    &s.raw,
                    format!("listens on port {}, but clients use the endpoint port {port}", out.listen.port()),
                )
                .at(s.pos)
                .hint("fine when something in between forwards the endpoint port; otherwise listen on the endpoint port"),
            );
        }
    }
    out.admin = c.socket("loadBalancer.admin", &l.admin, DEFAULT_LB_ADMIN);
    if out.admin == out.listen {
        if let Some(s) = &l.admin {
            c.error(
                "loadBalancer.admin",
                s,
                "must differ from loadBalancer.listen",
            );
        }
    }
    if let Some(s) = &l.max_connections {
        if s.value > 0 && s.value <= 10_000_000 {
            out.max_connections = s.value as usize;
        } else {
            c.error(
                "loadBalancer.maxConnections",
                s,
                "must be between 1 and 10000000",
            );
        }
    }
    out.drain_timeout = c.duration(
        "loadBalancer.drainTimeout",
        &l.drain_timeout,
        out.drain_timeout,
        Duration::from_millis(1),
    );
    out.connect_timeout = c.duration(
        "loadBalancer.connectTimeout",
        &l.connect_timeout,
        out.connect_timeout,
        Duration::from_millis(1),
    );
    Some(out)
}
