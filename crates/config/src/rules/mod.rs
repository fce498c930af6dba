//! From [`crate::input::File`] to [`crate::model::Endpoint`]: every rule of the product
//! brief, checked without touching the host. All problems are collected, each pointing at
//! the line and column of the value it is about (cross-field rules included: an even
//! replica count points at `replicas`, a duplicate address at the second address); the
//! definition is accepted only when none of them is an error.
//!
//! One submodule per section of the definition; this module holds the collector
//! ([`Check`]) with the field rules every section shares (port, duration, count, socket,
//! path) and the name/address predicates. What needs the host (does the interface exist,
//! is the port free, is the VIP unused) is `cpe preflight`'s job, not this module's.

use crate::defaults::*;
use crate::duration;
use crate::input::{self, short, S};
use crate::load::Checked;
use crate::model::*;
use crate::problem::{Pos, Problem, Severity};
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

pub mod discovery;
pub mod endpoint;
pub mod etcd;
pub mod health;
pub mod lb;
pub mod machines;
pub mod mode;
pub mod node_local;
pub mod vip;

pub use etcd::is_etcd_url;

/// An admin listener off loopback is reachable by others: they can read `/status` and
/// `/metrics`, and without a token change state, so the agents refuse to start then
/// ([`admin_needs_token`]). A warning in the definition (`cpe plan` shows it), naming the
/// token field when there is none.
pub(crate) fn admin_exposure(
    c: &mut Check,
    (field, written): (&str, &Option<S<String>>),
    token_field: &str,
    admin: SocketAddr,
    has_token: bool,
) {
    if admin.ip().is_loopback() {
        return;
    }
    let (raw, pos) = written
        .as_ref()
        .map(|s| (short(&s.raw), s.pos))
        .unwrap_or_else(|| (admin.to_string(), None));
    let p = if has_token {
        Problem::warning(
            field,
            raw,
            "is not a loopback address: whoever reaches it reads /status and /metrics (actions need the token)",
        )
        .hint("keep it on 127.0.0.1 unless a scraper elsewhere needs it, and firewall the port")
    } else {
        Problem::warning(
            field,
            raw,
            format!("is not a loopback address and {token_field} is not set: the agent will refuse to start (anyone who reaches it could change state)"),
        )
        .hint(format!("set {token_field} to a file holding a secret of 16+ characters, or listen on 127.0.0.1"))
    };
    c.push(p.at(pos));
}

/// The agents' rule: an admin listener off loopback needs a token (see
/// [`admin_exposure`]). `field` and `token_field` as the user wrote them (a flag or the
/// definition's field).
/// The metrics-only listener's address (`field`: `virtualIP.metrics`, `--metrics`...):
/// an IP and port that shares its port with none of `others` (the admin listener, the load
/// balancer's own listener) when either side is a wildcard or both name the same address.
/// `off` or `none` (flags) mean no listener.
pub(crate) fn metrics_listener(
    c: &mut Check,
    field: &str,
    v: &S<String>,
    others: &[(&str, Option<SocketAddr>)],
) -> Option<SocketAddr> {
    if matches!(v.value.as_str(), "off" | "none") {
        return None;
    }
    let Ok(addr) = v.value.parse::<SocketAddr>() else {
        c.error(
            field,
            v,
            "must be an IP address and port, e.g. 0.0.0.0:9632 or [::]:9632 (or off)",
        );
        return None;
    };
    for (name, other) in others {
        let Some(o) = other else { continue };
        let clash = o.port() == addr.port()
            && (o.ip() == addr.ip() || o.ip().is_unspecified() || addr.ip().is_unspecified());
        if clash {
            c.error(
                field,
                v,
                format!("must not share port {} with {name} ({o})", addr.port()),
            );
            return None;
        }
    }
    Some(addr)
}

pub(crate) fn admin_needs_token(
    c: &mut Check,
    field: &str,
    admin: SocketAddr,
    token_field: &str,
    has_token: bool,
) {
    if has_token || admin.ip().is_loopback() {
        return;
    }
    c.push(
        Problem::error(
            field,
            admin.to_string(),
            format!(
                "is not a loopback address, so state-changing admin requests need a token: set {token_field}"
            ),
        )
        .hint("a file holding a secret of 16+ characters (`cpe status --admin-token-file FILE` sends it), or listen on 127.0.0.1"),
    );
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

/// File order; problems without a position (flags, whole-file) last, in the order found.
pub(crate) fn sort(ps: &mut [Problem]) {
    ps.sort_by_key(|p| (p.pos.is_none(), p.pos));
}

/// Collects problems while resolving. The field rules here take the field's name, so
/// that a flag checked by the same rule is named as typed (`--health-interval`).
#[derive(Default)]
pub(crate) struct Check {
    pub(crate) problems: Vec<Problem>,
}

impl Check {
    pub(crate) fn error(
        &mut self,
        field: impl Into<String>,
        s: &S<impl Sized>,
        rule: impl Into<String>,
    ) {
        self.problems
            .push(Problem::error(field, short(&s.raw), rule).at(s.pos));
    }

    pub(crate) fn push(&mut self, p: Problem) {
        self.problems.push(p);
    }

    pub(crate) fn port(&mut self, field: &str, v: &Option<S<i64>>, default: u16) -> Option<u16> {
        match v {
            None => Some(default),
            Some(s) if (1..=65535).contains(&s.value) => Some(s.value as u16),
            Some(s) => {
                self.error(field, s, "must be between 1 and 65535");
                None
            }
        }
    }

    pub(crate) fn duration(
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
                    self.error(field, s, rule.to_string());
                    default
                }
            },
        }
    }

    pub(crate) fn count(&mut self, field: &str, v: &Option<S<i64>>, default: u32) -> u32 {
        match v {
            None => default,
            Some(s) if (1..=1000).contains(&s.value) => s.value as u32,
            Some(s) => {
                self.error(field, s, "must be between 1 and 1000");
                default
            }
        }
    }

    pub(crate) fn socket(
        &mut self,
        field: &str,
        v: &Option<S<String>>,
        default: &str,
    ) -> SocketAddr {
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

    pub(crate) fn path(&mut self, field: &str, v: &Option<S<String>>) -> Option<PathBuf> {
        let s = v.as_ref()?;
        if s.value.trim().is_empty() || s.value.contains('\0') {
            self.error(field, s, "must be a file path");
            return None;
        }
        Some(PathBuf::from(&s.value))
    }

    /// A certificate and its key come together.
    pub(crate) fn pair(
        &mut self,
        section: &str,
        cert: &Option<S<String>>,
        key: &Option<S<String>>,
    ) {
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

/// Why an address as written (`10.0.0.11/24`) is not one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("must be an IP address, optionally with a prefix length (10.0.0.11 or 10.0.0.11/24)")]
    NotAnAddress,
    #[error("has prefix length /{prefix}, which must be 0 to {max}")]
    Prefix { prefix: String, max: u8 },
}

/// Parses `10.0.0.11` or `10.0.0.11/24`.
pub fn parse_address(text: &str) -> Result<(IpAddr, Option<u8>), AddressError> {
    match text.split_once('/') {
        None => text
            .parse::<IpAddr>()
            .map(|a| (a, None))
            .map_err(|_| AddressError::NotAnAddress),
        Some((a, p)) => {
            let addr: IpAddr = a.parse().map_err(|_| AddressError::NotAnAddress)?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let len: u8 =
                p.parse()
                    .ok()
                    .filter(|l| *l <= max)
                    .ok_or_else(|| AddressError::Prefix {
                        prefix: p.to_string(),
                        max,
                    })?;
            Ok((addr, Some(len)))
        }
    }
}

/// Unicast: not unspecified (`0.0.0.0`, `::`), multicast or the IPv4 broadcast address.
pub(crate) fn is_unicast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => !a.is_unspecified() && !a.is_multicast() && !a.is_broadcast(),
        IpAddr::V6(a) => !a.is_unspecified() && !a.is_multicast(),
    }
}

/// Is `ip` the network or broadcast address of `net` (IPv4 subnets larger than /31)?
pub(crate) fn network_or_broadcast(ip: IpAddr, net: &IpNet) -> Option<&'static str> {
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

pub(crate) fn family(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() {
        "IPv4"
    } else {
        "IPv6"
    }
}

/// Where each machine stands, for cross-field problems.
pub(crate) struct MachineAt<'a> {
    pub(crate) index: usize,
    pub(crate) input: &'a input::MachineIn,
    pub(crate) machine: Machine,
}

/// The definition's sections in dependency order: the control plane first (the mode and
/// the VIP's subnet rules need the machines), then the mode, then the sections the mode
/// selects.
fn resolve(f: &input::File, c: &mut Check) -> Option<Endpoint> {
    let cluster = endpoint::check_cluster(c, f.cluster.as_ref());
    let ep = f.endpoint.as_ref();
    let host_in = ep.and_then(|e| e.host.as_ref());
    let host = endpoint::check_required_host(c, f, host_in);
    let port = c.port(
        "endpoint.port",
        &ep.and_then(|e| e.port.clone()),
        DEFAULT_PORT,
    );

    let cp = machines::check_control_plane(c, f, port.unwrap_or(DEFAULT_PORT));
    let mode = mode::check_mode(c, f, cp.replicas);
    machines::count_rule(c, f, cp.replicas, mode);
    if let Some(m) = mode {
        mode::cross_rules(c, m, port, &host, host_in, &cp.machines);
    }

    let health = health::check_health(c, f.health_check.as_ref());
    let vip = if mode == Some(Mode::VirtualIp) {
        let cluster = cluster.as_str();
        vip::check_vip(
            c,
            f.virtual_ip.as_ref(),
            &host,
            host_in,
            &cp.machines,
            cluster,
            f,
        )
    } else {
        None
    };
    let vip = vip.map(|mut v| {
        v.load_balance = vip::check_load_balance(c, f.virtual_ip.as_ref(), port, Some(v.admin));
        if let Some(lb) = &mut v.load_balance {
            // The in-agent load balancer's discovery: `loadBalancer.discovery` as for `cpe
            // lb`, its etcd source on the agent's own etcd (filled in per node).
            lb.discovery = discovery::check_file(c, f, &[], port.unwrap_or(DEFAULT_PORT), true);
        }
        v
    });
    let etcd = etcd::check_etcd(c, f.etcd.as_ref(), mode);
    if mode == Some(Mode::VirtualIp) {
        etcd::vip_needs_etcd(c, f, etcd.as_ref(), cp.topology, cp.machines.is_empty());
    }
    let mut load_balancer = if mode == Some(Mode::ExternalLb) {
        lb::check_lb(c, f.load_balancer.as_ref(), port.unwrap_or(DEFAULT_PORT))
    } else {
        None
    };
    if let Some(lb) = &mut load_balancer {
        let machines: Vec<SocketAddr> =
            cp.machines.iter().map(|m| m.machine.api_server()).collect();
        lb.discovery = discovery::check_file(c, f, &machines, port.unwrap_or(DEFAULT_PORT), false);
    }

    let node_local = node_local::check_node_local(c, f, mode, port);

    let (host, port, mode, replicas) = (host?, port?, mode?, cp.replicas?);
    if mode == Mode::VirtualIp && vip.is_none() {
        return None;
    }
    Some(Endpoint {
        cluster,
        host,
        port,
        mode,
        replicas,
        etcd_topology: cp.topology,
        machines: cp.machines.into_iter().map(|m| m.machine).collect(),
        health,
        vip,
        etcd,
        load_balancer,
        node_local,
    })
}
