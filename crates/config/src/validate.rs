//! From [`crate::input::File`] to [`crate::model::Endpoint`]: every rule of the product
//! brief, checked without touching the host. All problems are collected; the definition
//! is accepted only when none of them is an error.

use crate::duration;
use crate::input::{self, S};
use crate::model::*;
use crate::problem::{Pos, Problem, Severity};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Files larger than this are refused before parsing (a definition is a few KiB).
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// A valid definition and the warnings it carries.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub endpoint: Endpoint,
    pub warnings: Vec<Problem>,
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
    /// The YAML could not be read into the definition's shape (syntax, wrong type, unknown field).
    #[error("{}", .0.render(None))]
    Parse(Problem),
    /// The definition was read; it breaks one or more rules.
    #[error("{} problem(s) in the definition", .0.len())]
    Invalid(Vec<Problem>),
}

impl LoadError {
    /// Every problem, for printing (I/O errors become one problem without a position).
    pub fn problems(&self) -> Vec<Problem> {
        match self {
            LoadError::Parse(p) => vec![p.clone()],
            LoadError::Invalid(ps) => ps.clone(),
            other => vec![Problem::error("file", "", other.to_string())],
        }
    }
}

/// Reads and validates a definition file.
pub fn load_file(path: &Path) -> Result<Loaded, LoadError> {
    let name = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|source| LoadError::Io {
        path: name.clone(),
        source,
    })?;
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
    let text = String::from_utf8(bytes).map_err(|_| LoadError::NotText { path: name.clone() })?;
    if text.contains('\0') {
        return Err(LoadError::NotText { path: name });
    }
    load_str(&text)
}

/// Parses and validates a definition given as text.
pub fn load_str(text: &str) -> Result<Loaded, LoadError> {
    let file: Result<input::File, Problem> = serde_saphyr::from_str(text).map_err(|e| {
        let pos = e.location().map(|l| Pos {
            line: l.line(),
            column: l.column(),
        });
        Problem::error("file", "", format!("not a valid definition: {e}"))
            .at(pos)
            .hint("see examples/ for annotated definitions of every mode")
    });
    let file = file.map_err(LoadError::Parse)?;
    resolve(&file)
}

fn pos<T>(s: &S<T>) -> Option<Pos> {
    let l = s.referenced;
    (l.line() > 0).then(|| Pos {
        line: l.line(),
        column: l.column(),
    })
}

/// Collects problems while resolving.
#[derive(Default)]
struct Check {
    problems: Vec<Problem>,
}

impl Check {
    fn push(&mut self, p: Problem) {
        self.problems.push(p);
    }

    fn port(&mut self, field: &str, v: &Option<S<i64>>, default: u16) -> u16 {
        match v {
            None => default,
            Some(s) if (1..=65535).contains(&s.value) => s.value as u16,
            Some(s) => {
                self.push(
                    Problem::error(
                        field,
                        s.value.to_string(),
                        "a port must be between 1 and 65535",
                    )
                    .at(pos(s)),
                );
                default
            }
        }
    }

    fn duration(&mut self, field: &str, v: &Option<S<String>>, default: Duration) -> Duration {
        match v {
            None => default,
            Some(s) => match duration::parse(&s.value) {
                Ok(d) if !d.is_zero() => d,
                Ok(_) => {
                    self.push(
                        Problem::error(field, &s.value, "must be longer than zero").at(pos(s)),
                    );
                    default
                }
                Err(rule) => {
                    self.push(Problem::error(field, &s.value, rule).at(pos(s)));
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
                self.push(
                    Problem::error(field, s.value.to_string(), "must be between 1 and 1000")
                        .at(pos(s)),
                );
                default
            }
        }
    }

    fn socket(&mut self, field: &str, v: &Option<S<String>>, default: &str) -> SocketAddr {
        match v {
            None => default.parse().expect("default socket address"),
            Some(s) => s.value.parse().unwrap_or_else(|_| {
                self.push(
                    Problem::error(
                        field,
                        &s.value,
                        "must be an IP address and port, e.g. 0.0.0.0:6443 or [::]:6443",
                    )
                    .at(pos(s)),
                );
                default.parse().expect("default socket address")
            }),
        }
    }

    fn path(v: &Option<S<String>>) -> Option<PathBuf> {
        v.as_ref().map(|s| PathBuf::from(&s.value))
    }
}

/// Is `name` an RFC 1123 DNS name (a trailing dot allowed)?
pub fn is_dns_name(name: &str) -> bool {
    let n = name.strip_suffix('.').unwrap_or(name);
    if n.is_empty() || n.len() > 253 {
        return false;
    }
    n.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    })
}

/// Parses `10.0.0.11` or `10.0.0.11/24`.
pub fn parse_address(text: &str) -> Result<(IpAddr, Option<u8>), String> {
    match text.split_once('/') {
        None => text
            .parse::<IpAddr>()
            .map(|a| (a, None))
            .map_err(|_| format!("`{text}` is not an IP address")),
        Some((a, p)) => {
            let addr: IpAddr = a
                .parse()
                .map_err(|_| format!("`{a}` is not an IP address"))?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let len: u8 = p
                .parse()
                .ok()
                .filter(|l| *l <= max)
                .ok_or_else(|| format!("prefix length `{p}` must be 0 to {max}"))?;
            Ok((addr, Some(len)))
        }
    }
}

fn resolve(f: &input::File) -> Result<Loaded, LoadError> {
    let mut c = Check::default();

    let cluster = match &f.cluster {
        Some(s) if is_dns_name(&s.value) && !s.value.ends_with('.') => s.value.clone(),
        Some(s) => {
            c.push(
                Problem::error(
                    "cluster",
                    &s.value,
                    "a cluster name must be an RFC 1123 name (a-z, 0-9, -)",
                )
                .at(pos(s)),
            );
            String::new()
        }
        None => "kubernetes".to_string(),
    };

    // Endpoint host and port.
    let ep = f.endpoint.as_ref();
    let host = match ep.and_then(|e| e.host.as_ref()) {
        None => {
            c.push(Problem::error("endpoint.host", "", "is required").hint(
                "the load balancer's address or DNS name, the virtual IP, or the single machine's address",
            ));
            Host::Dns(String::new())
        }
        Some(s) => match s.value.parse::<IpAddr>() {
            Ok(ip) => Host::Ip(ip),
            Err(_) if is_dns_name(&s.value) => Host::Dns(s.value.clone()),
            Err(_) => {
                c.push(
                    Problem::error(
                        "endpoint.host",
                        &s.value,
                        "must be an IP address or an RFC 1123 DNS name",
                    )
                    .at(pos(s)),
                );
                Host::Dns(s.value.clone())
            }
        },
    };
    let port = c.port(
        "endpoint.port",
        &ep.and_then(|e| e.port.clone()),
        DEFAULT_PORT,
    );

    // Control plane.
    let cp = f.control_plane.as_ref();
    let replicas = match cp.and_then(|c| c.replicas.as_ref()) {
        None => DEFAULT_REPLICAS,
        Some(s) if s.value > 0 && s.value <= 1000 => s.value as u32,
        Some(s) => {
            c.push(
                Problem::error(
                    "controlPlane.replicas",
                    s.value.to_string(),
                    "must be greater than 0",
                )
                .at(pos(s)),
            );
            DEFAULT_REPLICAS
        }
    };
    let etcd_topology = match cp.and_then(|c| c.etcd.as_ref()) {
        None => EtcdTopology::Stacked,
        Some(s) if s.value == "stacked" => EtcdTopology::Stacked,
        Some(s) if s.value == "external" => EtcdTopology::External,
        Some(s) => {
            c.push(
                Problem::error(
                    "controlPlane.etcd",
                    &s.value,
                    "must be `stacked` or `external`",
                )
                .at(pos(s)),
            );
            EtcdTopology::Stacked
        }
    };

    let mut machines = Vec::new();
    if let Some(ms) = cp.and_then(|c| c.machines.as_ref()) {
        for (i, m) in ms.value.iter().enumerate() {
            let field = format!("controlPlane.machines[{i}]");
            let name = match &m.name {
                Some(s) if is_dns_name(&s.value) => s.value.clone(),
                Some(s) => {
                    c.push(
                        Problem::error(
                            format!("{field}.name"),
                            &s.value,
                            "must be an RFC 1123 name",
                        )
                        .at(pos(s)),
                    );
                    continue;
                }
                None => {
                    c.push(Problem::error(format!("{field}.name"), "", "is required").at(pos(ms)));
                    continue;
                }
            };
            let (address, prefix_len) = match &m.address {
                Some(s) => match parse_address(&s.value) {
                    Ok(a) => a,
                    Err(rule) => {
                        c.push(
                            Problem::error(format!("{field}.address"), &s.value, rule).at(pos(s)),
                        );
                        continue;
                    }
                },
                None => {
                    c.push(
                        Problem::error(format!("{field}.address"), "", "is required").at(pos(ms)),
                    );
                    continue;
                }
            };
            let api_server_port =
                c.port(&format!("{field}.apiServerPort"), &m.api_server_port, port);
            machines.push(Machine {
                name,
                address,
                prefix_len,
                api_server_port,
            });
        }
    }

    // Mode: as written, else inferred as Konvoy infers it.
    let vip_in = f.virtual_ip.as_ref();
    let mode = match &f.mode {
        Some(s) => match s.value.as_str() {
            "external-lb" => Mode::ExternalLb,
            "virtual-ip" => Mode::VirtualIp,
            "single-node" => Mode::SingleNode,
            other => {
                c.push(
                    Problem::error(
                        "mode",
                        other,
                        "must be one of external-lb, virtual-ip, single-node",
                    )
                    .at(pos(s)),
                );
                Mode::ExternalLb
            }
        },
        None if vip_in.and_then(|v| v.interface.as_ref()).is_some() => Mode::VirtualIp,
        None if replicas == 1 => Mode::SingleNode,
        None => Mode::ExternalLb,
    };

    // Health check.
    let hc_in = f.health_check.as_ref();
    let d = HealthCheck::default();
    let health = HealthCheck {
        protocol: match hc_in.and_then(|h| h.protocol.as_ref()) {
            None => d.protocol,
            Some(s) => match s.value.as_str() {
                "https" => Protocol::Https,
                "http" => Protocol::Http,
                "tcp" => Protocol::Tcp,
                _ => {
                    c.push(
                        Problem::error(
                            "healthCheck.protocol",
                            &s.value,
                            "must be https, http or tcp",
                        )
                        .at(pos(s)),
                    );
                    d.protocol
                }
            },
        },
        path: match hc_in.and_then(|h| h.path.as_ref()) {
            None => d.path.clone(),
            Some(s) if s.value.starts_with('/') => s.value.clone(),
            Some(s) => {
                c.push(
                    Problem::error("healthCheck.path", &s.value, "must start with /").at(pos(s)),
                );
                d.path.clone()
            }
        },
        interval: c.duration(
            "healthCheck.interval",
            &hc_in.and_then(|h| h.interval.clone()),
            d.interval,
        ),
        timeout: c.duration(
            "healthCheck.timeout",
            &hc_in.and_then(|h| h.timeout.clone()),
            d.timeout,
        ),
        rise: c.count(
            "healthCheck.rise",
            &hc_in.and_then(|h| h.rise.clone()),
            d.rise,
        ),
        fall: c.count(
            "healthCheck.fall",
            &hc_in.and_then(|h| h.fall.clone()),
            d.fall,
        ),
        ca_file: hc_in.and_then(|h| Check::path(&h.ca_file)),
        cert_file: hc_in.and_then(|h| Check::path(&h.cert_file)),
        key_file: hc_in.and_then(|h| Check::path(&h.key_file)),
        unauthorized: match hc_in.and_then(|h| h.unauthorized.as_ref()) {
            None => d.unauthorized,
            Some(s) if s.value == "alive" => Unauthorized::Alive,
            Some(s) if s.value == "down" => Unauthorized::Down,
            Some(s) => {
                c.push(
                    Problem::error(
                        "healthCheck.unauthorized",
                        &s.value,
                        "must be `alive` or `down`",
                    )
                    .at(pos(s)),
                );
                d.unauthorized
            }
        },
    };

    // etcd.
    let etcd = f.etcd.as_ref().map(|e| Etcd {
        endpoints: e
            .endpoints
            .as_ref()
            .map(|l| l.value.iter().map(|s| s.value.clone()).collect())
            .unwrap_or_default(),
        ca_file: Check::path(&e.ca_file),
        cert_file: Check::path(&e.cert_file),
        key_file: Check::path(&e.key_file),
    });

    // Virtual IP.
    let vip = if mode == Mode::VirtualIp {
        let address = match &host {
            Host::Ip(ip) => Some(*ip),
            Host::Dns(n) => {
                c.push(
                    Problem::error(
                        "endpoint.host",
                        n,
                        "in virtual-ip mode the endpoint host must be an IP address",
                    )
                    .at(ep.and_then(|e| e.host.as_ref()).and_then(pos)),
                );
                None
            }
        };
        let interface = match vip_in.and_then(|v| v.interface.as_ref()) {
            Some(s) if !s.value.is_empty() => s.value.clone(),
            _ => {
                c.push(
                    Problem::error("virtualIP.interface", "", "is required in virtual-ip mode")
                        .hint("the interface that carries the machines' addresses, e.g. eth0"),
                );
                String::new()
            }
        };
        let lease_ttl = c.duration(
            "virtualIP.leaseTTL",
            &vip_in.and_then(|v| v.lease_ttl.clone()),
            Duration::from_secs(2),
        );
        let election = vip_in
            .and_then(|v| v.election.as_ref())
            .map(|s| s.value.clone())
            .unwrap_or_else(|| format!("/cpe/vip/{cluster}"));
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
                    c.push(
                        Problem::error(
                            "virtualIP.prefixLength",
                            s.value.to_string(),
                            format!("must be 0 to {max}"),
                        )
                        .at(pos(s)),
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
        address.map(|address| VirtualIp {
            address,
            prefix_len,
            interface,
            lease_ttl,
            election,
            admin,
        })
    } else {
        None
    };

    // Load balancer.
    let load_balancer = if mode == Mode::ExternalLb {
        let lb = f.load_balancer.as_ref();
        let default_listen = format!("0.0.0.0:{port}");
        let mut out = LoadBalancer::with_listen(default_listen.parse().expect("valid"));
        out.listen = c.socket(
            "loadBalancer.listen",
            &lb.and_then(|l| l.listen.clone()),
            &default_listen,
        );
        out.admin = c.socket(
            "loadBalancer.admin",
            &lb.and_then(|l| l.admin.clone()),
            DEFAULT_LB_ADMIN,
        );
        if let Some(s) = lb.and_then(|l| l.max_connections.as_ref()) {
            if s.value > 0 {
                out.max_connections = s.value as usize;
            } else {
                c.push(
                    Problem::error(
                        "loadBalancer.maxConnections",
                        s.value.to_string(),
                        "must be greater than 0",
                    )
                    .at(pos(s)),
                );
            }
        }
        out.drain_timeout = c.duration(
            "loadBalancer.drainTimeout",
            &lb.and_then(|l| l.drain_timeout.clone()),
            out.drain_timeout,
        );
        out.connect_timeout = c.duration(
            "loadBalancer.connectTimeout",
            &lb.and_then(|l| l.connect_timeout.clone()),
            out.connect_timeout,
        );
        Some(out)
    } else {
        None
    };

    let endpoint = Endpoint {
        cluster,
        host,
        port,
        mode,
        replicas,
        etcd_topology,
        machines,
        health,
        vip,
        etcd,
        load_balancer,
    };

    crate::validate::rules(&endpoint, &mut c.problems);

    let (errors, warnings): (Vec<_>, Vec<_>) = c
        .problems
        .into_iter()
        .partition(|p| p.severity == Severity::Error);
    if errors.is_empty() {
        Ok(Loaded { endpoint, warnings })
    } else {
        let mut all = errors;
        all.extend(warnings);
        Err(LoadError::Invalid(all))
    }
}

/// The cross-field rules of the product brief, on a resolved definition. Used both for
/// files and for definitions built from Konvoy-style flags.
pub fn rules(e: &Endpoint, out: &mut Vec<Problem>) {
    if e.replicas % 2 == 0 && e.etcd_topology == EtcdTopology::Stacked {
        out.push(
            Problem::error(
                "controlPlane.replicas",
                e.replicas.to_string(),
                "cannot be an even number when etcd is stacked",
            )
            .hint("an even number adds no failure tolerance: use 3, 5 or 7"),
        );
    }
    if e.replicas == 1 {
        out.push(
            Problem::warning(
                "controlPlane.replicas",
                "1",
                "a single-node control plane is not for production",
            )
            .hint(
                "it tolerates no failure and cannot be upgraded in place (machines are replaced)",
            ),
        );
    }
    if e.replicas > 7 {
        out.push(Problem::warning(
            "controlPlane.replicas",
            e.replicas.to_string(),
            "more than 7 members make every etcd write slower",
        ));
    }
    if e.machines.len() < e.replicas as usize {
        out.push(Problem::error(
            "controlPlane.machines",
            e.machines.len().to_string(),
            format!("lists fewer machines than the {} replicas", e.replicas),
        ));
    }
    for (i, m) in e.machines.iter().enumerate() {
        if e.machines[..i].iter().any(|o| o.name == m.name) {
            out.push(Problem::error(
                format!("controlPlane.machines[{i}].name"),
                &m.name,
                "is a duplicate",
            ));
        }
        if e.machines[..i].iter().any(|o| o.address == m.address) {
            out.push(Problem::error(
                format!("controlPlane.machines[{i}].address"),
                m.address.to_string(),
                "is a duplicate",
            ));
        }
    }
    if let Some(v) = &e.vip {
        if let Some(i) = e.machines.iter().position(|m| m.address == v.address) {
            out.push(Problem::error(
                "endpoint.host",
                v.address.to_string(),
                format!(
                    "the virtual IP is the address of machine `{}`",
                    e.machines[i].name
                ),
            ));
        }
    }
    if matches!(e.mode, Mode::VirtualIp | Mode::SingleNode) {
        for (i, m) in e.machines.iter().enumerate() {
            if m.api_server_port != e.port {
                out.push(Problem::error(
                    format!("controlPlane.machines[{i}].apiServerPort"),
                    m.api_server_port.to_string(),
                    format!("must equal the endpoint port {} in {} mode", e.port, e.mode),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const THREE: &str = "cluster: prod\nendpoint:\n  host: lb.example.com\ncontrolPlane:\n  machines:\n    - {name: cp1, address: 10.0.0.11}\n    - {name: cp2, address: 10.0.0.12}\n    - {name: cp3, address: 10.0.0.13}\n";

    #[test]
    fn three_machines_behind_an_external_lb() {
        let l = load_str(THREE).unwrap();
        assert_eq!(l.endpoint.mode, Mode::ExternalLb);
        assert_eq!(l.endpoint.port, 6443);
        assert_eq!(l.endpoint.failures_tolerated(), 1);
        assert_eq!(l.endpoint.quorum(), 2);
        assert!(l.warnings.is_empty());
    }

    #[test]
    fn unknown_field_is_an_error_with_a_position() {
        let e = load_str("cluster: a\nendpont: {}\n").unwrap_err();
        let p = &e.problems()[0];
        assert!(p.rule.contains("endpont"), "{p:?}");
        assert_eq!(p.pos.map(|p| p.line), Some(2));
    }

    #[test]
    fn bad_port_is_reported_with_line_and_column() {
        let e = load_str(&THREE.replace("lb.example.com", "lb.example.com\n  port: 70000"))
            .unwrap_err();
        let ps = e.problems();
        let p = ps.iter().find(|p| p.field == "endpoint.port").unwrap();
        assert_eq!(p.value, "70000");
        assert_eq!(p.pos, Some(Pos { line: 4, column: 9 }));
    }
}
