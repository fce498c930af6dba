//! The definition file exactly as written: which fields are present, with their values
//! and where they stand. Field names are camelCase like Kubernetes objects.
//!
//! [`read`] walks the positioned YAML tree of [`crate::tree`] and collects every unknown
//! field and every value of the wrong type (`port: abc`, `machines: cp1`) as a
//! [`Problem`], instead of stopping at the first as serde's `deny_unknown_fields` would.
//! A field with a problem is left out (`None`), so validation still checks the rest.
//!
//! Nothing here has a default and no value is interpreted: defaults and rules belong to
//! [`crate::validate`]. A field written with an empty value (`port:`) counts as absent.

use crate::problem::{Pos, Problem};
use crate::tree::{At, Node};

/// A value as written, with where it was written. `pos` is `None` for values that did not
/// come from a file (Konvoy-style flags).
#[derive(Clone, Debug, PartialEq)]
pub struct S<T> {
    pub value: T,
    pub pos: Option<Pos>,
    /// The value's text as written, for messages.
    pub raw: String,
}

impl File {
    /// Was `path` (or a section containing it) written with the wrong shape?
    pub fn is_broken(&self, path: &str) -> bool {
        self.broken.iter().any(|b| {
            b.is_empty()
                || path == b
                || path
                    .strip_prefix(b.as_str())
                    .is_some_and(|rest| rest.starts_with(['.', '[']))
        })
    }
}

impl<T: ToString> S<T> {
    /// A value without a position (from a flag).
    pub fn new(value: T) -> Self {
        S {
            raw: value.to_string(),
            value,
            pos: None,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct File {
    /// Field paths whose value had the wrong shape (`""` for the whole file). Validation
    /// does not also report them, or anything inside them, as missing.
    pub broken: std::collections::BTreeSet<String>,
    /// Where the document starts: problems about a field missing with its whole section
    /// point here, so that every problem from a file has a line and column.
    pub pos: Option<Pos>,
    /// Cluster name (used in election keys and rendered artifacts).
    pub cluster: Option<S<String>>,
    pub endpoint: Option<EndpointIn>,
    /// `external-lb`, `virtual-ip` or `single-node`; inferred when absent.
    pub mode: Option<S<String>>,
    pub control_plane: Option<ControlPlaneIn>,
    pub health_check: Option<HealthCheckIn>,
    /// `virtualIP` in the file.
    pub virtual_ip: Option<VirtualIpIn>,
    pub etcd: Option<EtcdIn>,
    pub load_balancer: Option<LoadBalancerIn>,
    /// `nodeLocal` in the file: the node-local load balancer every node may run.
    pub node_local: Option<NodeLocalIn>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct EndpointIn {
    /// Where the `endpoint:` key stands (for "is required" problems inside it).
    pub pos: Option<Pos>,
    pub host: Option<S<String>>,
    pub port: Option<S<i64>>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ControlPlaneIn {
    pub pos: Option<Pos>,
    pub replicas: Option<S<i64>>,
    /// How many items the machines list has, readable or not (for the count rule).
    pub machines_listed: usize,
    /// `stacked` (default) or `external`.
    pub etcd: Option<S<String>>,
    /// The list and where it stands; each machine carries its own position.
    pub machines: Option<S<Vec<MachineIn>>>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct MachineIn {
    /// Where the list item starts.
    pub pos: Option<Pos>,
    pub name: Option<S<String>>,
    /// `10.0.0.11` or `10.0.0.11/24`.
    pub address: Option<S<String>>,
    pub api_server_port: Option<S<i64>>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct HealthCheckIn {
    pub pos: Option<Pos>,
    pub protocol: Option<S<String>>,
    pub path: Option<S<String>>,
    pub interval: Option<S<String>>,
    pub timeout: Option<S<String>>,
    pub rise: Option<S<i64>>,
    pub fall: Option<S<i64>>,
    pub ca_file: Option<S<String>>,
    pub cert_file: Option<S<String>>,
    pub key_file: Option<S<String>>,
    pub unauthorized: Option<S<String>>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct VirtualIpIn {
    pub pos: Option<Pos>,
    pub interface: Option<S<String>>,
    /// An interface was written, even if with the wrong type: it still selects VIP mode.
    pub interface_written: bool,
    /// Prefix length the VIP is added with (default /32 or /128).
    pub prefix_length: Option<S<i64>>,
    /// `leaseTTL` in the file.
    pub lease_ttl: Option<S<String>>,
    pub election: Option<S<String>>,
    pub admin: Option<S<String>>,
    pub admin_token_file: Option<S<String>>,
    pub metrics: Option<S<String>>,
    /// `loadBalance: true`: the holder also runs the load balancer (issue 11).
    pub load_balance: Option<S<bool>>,
    /// `lbPort`: where that load balancer listens on every machine.
    pub lb_port: Option<S<i64>>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct EtcdIn {
    pub pos: Option<Pos>,
    pub endpoints: Option<S<Vec<S<String>>>>,
    pub ca_file: Option<S<String>>,
    pub cert_file: Option<S<String>>,
    pub key_file: Option<S<String>>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct LoadBalancerIn {
    pub pos: Option<Pos>,
    pub listen: Option<S<String>>,
    pub admin: Option<S<String>>,
    pub admin_token_file: Option<S<String>>,
    pub metrics: Option<S<String>>,
    pub max_connections: Option<S<i64>>,
    pub drain_timeout: Option<S<String>>,
    pub connect_timeout: Option<S<String>>,
    pub discovery: Option<DiscoveryIn>,
}

/// `loadBalancer.discovery` as written.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DiscoveryIn {
    pub pos: Option<Pos>,
    pub sources: Option<S<Vec<S<String>>>>,
    pub kubeconfig: Option<S<String>>,
    pub cache_dir: Option<S<String>>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeLocalIn {
    pub pos: Option<Pos>,
    pub enabled: Option<S<bool>>,
    pub listen: Option<S<String>>,
    pub admin: Option<S<String>>,
}

/// The fields each section knows, in the order the docs list them. Also used for the
/// "did you mean" hint.
pub const TOP: &[&str] = &[
    "cluster",
    "mode",
    "endpoint",
    "controlPlane",
    "healthCheck",
    "virtualIP",
    "etcd",
    "loadBalancer",
    "nodeLocal",
];
const ENDPOINT: &[&str] = &["host", "port"];
const CONTROL_PLANE: &[&str] = &["replicas", "etcd", "machines"];
const MACHINE: &[&str] = &["name", "address", "apiServerPort"];
const HEALTH: &[&str] = &[
    "protocol",
    "path",
    "interval",
    "timeout",
    "rise",
    "fall",
    "caFile",
    "certFile",
    "keyFile",
    "unauthorized",
];
const VIP: &[&str] = &[
    "interface",
    "prefixLength",
    "leaseTTL",
    "election",
    "admin",
    "adminTokenFile",
    "metrics",
    "loadBalance",
    "lbPort",
];
const NODE_LOCAL: &[&str] = &["enabled", "listen", "admin"];
const ETCD: &[&str] = &["endpoints", "caFile", "certFile", "keyFile"];
const LB: &[&str] = &[
    "listen",
    "admin",
    "adminTokenFile",
    "metrics",
    "maxConnections",
    "drainTimeout",
    "connectTimeout",
    "discovery",
];
const DISCOVERY: &[&str] = &["sources", "kubeconfig", "cacheDir"];

/// Reads the tree into a [`File`], pushing every shape problem (unknown field, wrong
/// type) onto `problems`. Returns what could be read.
pub fn read(root: &At, problems: &mut Vec<Problem>) -> File {
    let mut r = Reader {
        problems,
        broken: Default::default(),
    };
    let mut f = read_fields(root, &mut r);
    f.broken = std::mem::take(&mut r.broken);
    f
}

fn read_fields(root: &At, r: &mut Reader<'_>) -> File {
    let mut f = File::default();
    let top = match &root.node {
        Node::Null => {
            r.broken.insert(String::new());
            r.problems.push(
                Problem::error("(file)", "", "is empty").hint(
                    "a definition needs at least endpoint.host and controlPlane; see examples/",
                ),
            );
            return f;
        }
        Node::Map(_) => {
            f.pos = root.pos;
            root
        }
        other => {
            r.broken.insert(String::new());
            r.problems.push(
                Problem::error(
                    "(file)",
                    short(&root.raw),
                    format!(
                        "must be a mapping of fields ({}), not {}",
                        TOP.join(", "),
                        other.kind()
                    ),
                )
                .at(root.pos)
                .hint("see examples/ for annotated definitions of every mode"),
            );
            return f;
        }
    };
    let Some(fields) = r.fields(top, "", TOP) else {
        return f;
    };
    f.cluster = fields.get("cluster").and_then(|v| r.string(v, "cluster"));
    f.mode = fields.get("mode").and_then(|v| r.string(v, "mode"));
    if let Some((k, v)) = fields.entry("endpoint") {
        if let Some(m) = r.fields(v, "endpoint", ENDPOINT) {
            f.endpoint = Some(EndpointIn {
                pos: k.pos,
                host: m.get("host").and_then(|v| r.string(v, "endpoint.host")),
                port: m.get("port").and_then(|v| r.int(v, "endpoint.port")),
            });
        }
    }
    if let Some((k, v)) = fields.entry("controlPlane") {
        if let Some(m) = r.fields(v, "controlPlane", CONTROL_PLANE) {
            let list = m
                .get("machines")
                .and_then(|v| r.list(v, "controlPlane.machines"));
            let machines_listed = list.map_or(0, |(items, _)| items.len());
            let machines = list.map(|(items, at)| S {
                value: items
                    .iter()
                    .enumerate()
                    .filter_map(|(i, item)| r.machine(item, i))
                    .collect(),
                pos: at.pos,
                raw: format!("{} machines", items.len()),
            });
            f.control_plane = Some(ControlPlaneIn {
                pos: k.pos,
                replicas: m
                    .get("replicas")
                    .and_then(|v| r.int(v, "controlPlane.replicas")),
                machines_listed,
                etcd: m.get("etcd").and_then(|v| r.string(v, "controlPlane.etcd")),
                machines,
            });
        }
    }
    if let Some((k, v)) = fields.entry("healthCheck") {
        if let Some(m) = r.fields(v, "healthCheck", HEALTH) {
            let mut s = |name: &str| {
                m.get(name)
                    .and_then(|v| r.string(v, &format!("healthCheck.{name}")))
            };
            let mut h = HealthCheckIn {
                pos: k.pos,
                protocol: s("protocol"),
                path: s("path"),
                interval: s("interval"),
                timeout: s("timeout"),
                ca_file: s("caFile"),
                cert_file: s("certFile"),
                key_file: s("keyFile"),
                unauthorized: s("unauthorized"),
                ..Default::default()
            };
            h.rise = m.get("rise").and_then(|v| r.int(v, "healthCheck.rise"));
            h.fall = m.get("fall").and_then(|v| r.int(v, "healthCheck.fall"));
            f.health_check = Some(h);
        }
    }
    if let Some((k, v)) = fields.entry("virtualIP") {
        if let Some(m) = r.fields(v, "virtualIP", VIP) {
            f.virtual_ip = Some(VirtualIpIn {
                pos: k.pos,
                interface_written: m.get("interface").is_some(),
                interface: m
                    .get("interface")
                    .and_then(|v| r.string(v, "virtualIP.interface")),
                prefix_length: m
                    .get("prefixLength")
                    .and_then(|v| r.int(v, "virtualIP.prefixLength")),
                lease_ttl: m
                    .get("leaseTTL")
                    .and_then(|v| r.string(v, "virtualIP.leaseTTL")),
                election: m
                    .get("election")
                    .and_then(|v| r.string(v, "virtualIP.election")),
                admin: m.get("admin").and_then(|v| r.string(v, "virtualIP.admin")),
                admin_token_file: m
                    .get("adminTokenFile")
                    .and_then(|v| r.string(v, "virtualIP.adminTokenFile")),
                metrics: m
                    .get("metrics")
                    .and_then(|v| r.string(v, "virtualIP.metrics")),
                load_balance: m
                    .get("loadBalance")
                    .and_then(|v| r.bool(v, "virtualIP.loadBalance")),
                lb_port: m.get("lbPort").and_then(|v| r.int(v, "virtualIP.lbPort")),
            });
        }
    }
    if let Some((k, v)) = fields.entry("etcd") {
        if let Some(m) = r.fields(v, "etcd", ETCD) {
            let endpoints = m
                .get("endpoints")
                .and_then(|v| r.list(v, "etcd.endpoints"))
                .map(|(items, at)| S {
                    value: items
                        .iter()
                        .enumerate()
                        .filter_map(|(i, item)| r.string(item, &format!("etcd.endpoints[{i}]")))
                        .collect(),
                    pos: at.pos,
                    raw: String::new(),
                });
            f.etcd = Some(EtcdIn {
                pos: k.pos,
                endpoints,
                ca_file: m.get("caFile").and_then(|v| r.string(v, "etcd.caFile")),
                cert_file: m.get("certFile").and_then(|v| r.string(v, "etcd.certFile")),
                key_file: m.get("keyFile").and_then(|v| r.string(v, "etcd.keyFile")),
            });
        }
    }
    if let Some((k, v)) = fields.entry("loadBalancer") {
        if let Some(m) = r.fields(v, "loadBalancer", LB) {
            f.load_balancer = Some(LoadBalancerIn {
                pos: k.pos,
                listen: m
                    .get("listen")
                    .and_then(|v| r.string(v, "loadBalancer.listen")),
                admin: m
                    .get("admin")
                    .and_then(|v| r.string(v, "loadBalancer.admin")),
                admin_token_file: m
                    .get("adminTokenFile")
                    .and_then(|v| r.string(v, "loadBalancer.adminTokenFile")),
                metrics: m
                    .get("metrics")
                    .and_then(|v| r.string(v, "loadBalancer.metrics")),
                max_connections: m
                    .get("maxConnections")
                    .and_then(|v| r.int(v, "loadBalancer.maxConnections")),
                drain_timeout: m
                    .get("drainTimeout")
                    .and_then(|v| r.string(v, "loadBalancer.drainTimeout")),
                connect_timeout: m
                    .get("connectTimeout")
                    .and_then(|v| r.string(v, "loadBalancer.connectTimeout")),
                discovery: m.entry("discovery").and_then(|(k, v)| r.discovery(k, v)),
            });
        }
    }
    if let Some((k, v)) = fields.entry("nodeLocal") {
        if let Some(m) = r.fields(v, "nodeLocal", NODE_LOCAL) {
            f.node_local = Some(NodeLocalIn {
                pos: k.pos,
                enabled: m
                    .get("enabled")
                    .and_then(|v| r.boolean(v, "nodeLocal.enabled")),
                listen: m
                    .get("listen")
                    .and_then(|v| r.string(v, "nodeLocal.listen")),
                admin: m.get("admin").and_then(|v| r.string(v, "nodeLocal.admin")),
            });
        }
    }
    f
}

/// A mapping's known fields, looked up by name.
struct Fields<'t> {
    entries: Vec<(&'t At, &'t At)>,
}

impl<'t> Fields<'t> {
    /// The value of a field; an empty value (`port:`) counts as absent.
    fn get(&self, name: &str) -> Option<&'t At> {
        self.entry(name).map(|(_, v)| v)
    }

    fn entry(&self, name: &str) -> Option<(&'t At, &'t At)> {
        self.entries
            .iter()
            .find(|(k, v)| k.raw == name && v.node != Node::Null)
            .copied()
    }
}

struct Reader<'p> {
    problems: &'p mut Vec<Problem>,
    broken: std::collections::BTreeSet<String>,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Long values are cut for messages: a message must fit on a screen.
pub(crate) fn short(s: &str) -> String {
    const MAX: usize = 60;
    let one_line = s.replace('\n', "\\n");
    if one_line.chars().count() <= MAX {
        one_line
    } else {
        let cut: String = one_line.chars().take(MAX).collect();
        format!("{cut}…")
    }
}

impl Reader<'_> {
    fn fields<'t>(&mut self, at: &'t At, path: &str, known: &[&str]) -> Option<Fields<'t>> {
        let Node::Map(entries) = &at.node else {
            self.wrong_type(at, path, &format!("a mapping with {}", known.join(", ")));
            return None;
        };
        let mut out = Vec::new();
        for (k, v) in entries {
            if known.contains(&k.raw.as_str()) {
                out.push((k, v));
            } else {
                let hint = match did_you_mean(&k.raw, known) {
                    Some(s) => format!("did you mean `{s}`? Known fields: {}", known.join(", ")),
                    None => format!("known fields: {}", known.join(", ")),
                };
                let where_ = if path.is_empty() {
                    "the definition".to_string()
                } else {
                    format!("`{path}`")
                };
                self.problems.push(
                    Problem::error(
                        join(path, &k.raw),
                        "",
                        format!("is not a field of {where_}"),
                    )
                    .at(k.pos)
                    .hint(hint),
                );
            }
        }
        Some(Fields { entries: out })
    }

    fn wrong_type(&mut self, at: &At, path: &str, expected: &str) {
        self.broken.insert(path.to_string());
        let hint = match (&at.node, expected) {
            (Node::Str(s), "a whole number") if s.trim().parse::<i64>().is_ok() => {
                Some("write the number without quotes".to_string())
            }
            (Node::Bool(_), "text") => Some(format!("quote it: \"{}\"", at.raw)),
            (Node::Str(_), e) if e.starts_with("a mapping") => {
                Some("write the fields indented on the lines below".to_string())
            }
            _ => None,
        };
        let value = if at.raw.is_empty() {
            String::new()
        } else {
            short(&at.raw)
        };
        let mut p = Problem::error(
            path,
            value,
            format!("must be {expected}, not {}", at.node.kind()),
        )
        .at(at.pos);
        if let Some(h) = hint {
            p = p.hint(h);
        }
        self.problems.push(p);
    }

    fn string(&mut self, at: &At, path: &str) -> Option<S<String>> {
        match &at.node {
            Node::Null => None,
            // Numbers are accepted as text (`cluster: 1`): what was written is the text.
            Node::Str(_) | Node::Int(_) | Node::Float(_) => Some(S {
                value: at.raw.clone(),
                pos: at.pos,
                raw: at.raw.clone(),
            }),
            _ => {
                self.wrong_type(at, path, "text");
                None
            }
        }
    }

    fn bool(&mut self, at: &At, path: &str) -> Option<S<bool>> {
        match &at.node {
            Node::Null => None,
            Node::Bool(b) => Some(S {
                value: *b,
                pos: at.pos,
                raw: at.raw.clone(),
            }),
            _ => {
                self.wrong_type(at, path, "true or false");
                None
            }
        }
    }

    fn int(&mut self, at: &At, path: &str) -> Option<S<i64>> {
        match &at.node {
            Node::Null => None,
            Node::Int(i) => Some(S {
                value: *i,
                pos: at.pos,
                raw: at.raw.clone(),
            }),
            // A whole number past 64 bits reaches here as a float: say what it is.
            Node::Float(_) if is_whole_number_text(&at.raw) => {
                self.broken.insert(path.to_string());
                self.problems.push(
                    Problem::error(path, short(&at.raw), "is too large")
                        .at(at.pos)
                        .hint("see the field's range in docs/definition.md"),
                );
                None
            }
            _ => {
                self.wrong_type(at, path, "a whole number");
                None
            }
        }
    }

    fn boolean(&mut self, at: &At, path: &str) -> Option<S<bool>> {
        match &at.node {
            Node::Bool(b) => Some(S {
                value: *b,
                pos: at.pos,
                raw: at.raw.clone(),
            }),
            _ => {
                self.wrong_type(at, path, "true or false");
                None
            }
        }
    }

    fn list<'t>(&mut self, at: &'t At, path: &str) -> Option<(&'t [At], &'t At)> {
        match &at.node {
            Node::Seq(items) => Some((items, at)),
            _ => {
                self.wrong_type(at, path, "a list");
                None
            }
        }
    }

    fn discovery(&mut self, k: &At, at: &At) -> Option<DiscoveryIn> {
        const PATH: &str = "loadBalancer.discovery";
        let m = self.fields(at, PATH, DISCOVERY)?;
        let sources = m
            .get("sources")
            .and_then(|v| self.list(v, "loadBalancer.discovery.sources"))
            .map(|(items, at)| S {
                value: items
                    .iter()
                    .enumerate()
                    .filter_map(|(i, item)| {
                        self.string(item, &format!("loadBalancer.discovery.sources[{i}]"))
                    })
                    .collect(),
                pos: at.pos,
                raw: String::new(),
            });
        Some(DiscoveryIn {
            pos: k.pos,
            sources,
            kubeconfig: m
                .get("kubeconfig")
                .and_then(|v| self.string(v, "loadBalancer.discovery.kubeconfig")),
            cache_dir: m
                .get("cacheDir")
                .and_then(|v| self.string(v, "loadBalancer.discovery.cacheDir")),
        })
    }

    fn machine(&mut self, at: &At, i: usize) -> Option<MachineIn> {
        let path = format!("controlPlane.machines[{i}]");
        let m = self.fields(at, &path, MACHINE)?;
        Some(MachineIn {
            pos: at.pos,
            name: m
                .get("name")
                .and_then(|v| self.string(v, &format!("{path}.name"))),
            address: m
                .get("address")
                .and_then(|v| self.string(v, &format!("{path}.address"))),
            api_server_port: m
                .get("apiServerPort")
                .and_then(|v| self.int(v, &format!("{path}.apiServerPort"))),
        })
    }
}

/// `123`, `-123`, `+123`: digits only, so a float node with this text is an integer too
/// large for 64 bits.
fn is_whole_number_text(raw: &str) -> bool {
    let digits = raw.trim().trim_start_matches(['-', '+']);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// The known field closest to a mistyped one (case-insensitive equality, or at most two
/// edits), for the hint.
pub fn did_you_mean<'k>(typed: &str, known: &[&'k str]) -> Option<&'k str> {
    let lower = typed.to_ascii_lowercase();
    known
        .iter()
        .map(|k| (edit_distance(&lower, &k.to_ascii_lowercase()), *k))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree;

    fn read_str(text: &str) -> (File, Vec<Problem>) {
        let mut ps = Vec::new();
        let f = read(&tree::parse(text).unwrap(), &mut ps);
        ps.sort_by_key(|p| p.pos);
        (f, ps)
    }

    #[test]
    fn collects_every_unknown_field_and_wrong_type_at_once() {
        let (f, ps) = read_str(
            "cluster: a\nendpont: {}\nendpoint:\n  host: x\n  port: abc\ncontrolPlane:\n  replicas: \"3\"\n  machines: cp1\n",
        );
        let got: Vec<String> = ps.iter().map(|p| p.render(Some("f"))).collect();
        assert_eq!(
            got,
            vec![
                "f:2:1: error: endpont: is not a field of the definition\n  hint: did you mean `endpoint`? Known fields: cluster, mode, endpoint, controlPlane, healthCheck, virtualIP, etcd, loadBalancer, nodeLocal",
                "f:5:9: error: endpoint.port = abc: must be a whole number, not text",
                "f:7:13: error: controlPlane.replicas = 3: must be a whole number, not text\n  hint: write the number without quotes",
                "f:8:13: error: controlPlane.machines = cp1: must be a list, not text",
            ]
        );
        assert_eq!(f.endpoint.unwrap().host.unwrap().value, "x");
    }

    #[test]
    fn empty_values_count_as_absent() {
        let (f, ps) = read_str("endpoint:\n  host:\n  port:\n");
        assert!(ps.is_empty(), "{ps:?}");
        let e = f.endpoint.unwrap();
        assert!(e.host.is_none() && e.port.is_none());
    }

    #[test]
    fn a_scalar_document_is_not_a_definition() {
        let (_, ps) = read_str("just text\n");
        assert_eq!(ps[0].rule, "must be a mapping of fields (cluster, mode, endpoint, controlPlane, healthCheck, virtualIP, etcd, loadBalancer, nodeLocal), not text");
        let (_, ps) = read_str("");
        assert_eq!(ps[0].rule, "is empty");
    }

    #[test]
    fn did_you_mean_finds_close_names_only() {
        assert_eq!(did_you_mean("replica", CONTROL_PLANE), Some("replicas"));
        assert_eq!(
            did_you_mean("apiserverport", MACHINE),
            Some("apiServerPort")
        );
        assert_eq!(did_you_mean("zzzzzz", MACHINE), None);
    }
}
