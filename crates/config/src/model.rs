//! The resolved definition: defaults applied, mode inferred, every value checked.
//! This is what `cpe lb`, `cpe vip`, `cpe preflight` and `cpe render` consume; none of
//! them re-parses YAML or re-checks the rules.

use serde::Serialize;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// Default API server / endpoint port (the source document's default).
pub const DEFAULT_PORT: u16 = 6443;
/// Default number of control-plane machines (Konvoy's `--control-plane-replicas`).
pub const DEFAULT_REPLICAS: u32 = 3;
/// Default admin listener of `cpe lb`.
pub const DEFAULT_LB_ADMIN: &str = "127.0.0.1:9630";
/// Default admin listener of `cpe vip` (another port, so one host can run both).
pub const DEFAULT_VIP_ADMIN: &str = "127.0.0.1:9631";
/// Where the node-local load balancer listens (also on `[::1]`, same port): KubePrism's
/// port, free on a kubeadm node and needing no privilege.
pub const DEFAULT_NODE_LOCAL_LISTEN: &str = "127.0.0.1:7445";
/// Admin listener of the node-local load balancer (a third port: a control-plane machine
/// may run `cpe vip`, `cpe lb` and the node-local one together).
pub const DEFAULT_NODE_LOCAL_ADMIN: &str = "127.0.0.1:9632";

/// How the endpoint is kept answering (the three modes of the source document).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// An external L4 load balancer (`cpe lb` or another) in front of every machine.
    ExternalLb,
    /// A virtual IP held by one healthy control-plane machine (`cpe vip`).
    VirtualIp,
    /// The one machine is the endpoint. Not for production.
    SingleNode,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::ExternalLb => "external-lb",
            Mode::VirtualIp => "virtual-ip",
            Mode::SingleNode => "single-node",
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The endpoint host: an IP literal or a DNS name (RFC 1123, trailing dot allowed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Host {
    Ip(IpAddr),
    Dns(String),
}

impl std::fmt::Display for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Host::Ip(IpAddr::V6(a)) => write!(f, "[{a}]"),
            Host::Ip(a) => write!(f, "{a}"),
            Host::Dns(n) => f.write_str(n),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EtcdTopology {
    /// etcd runs on the control-plane machines (kubeadm's default): even replicas rejected.
    Stacked,
    /// etcd runs elsewhere.
    External,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Machine {
    pub name: String,
    pub address: IpAddr,
    /// Prefix length when the address was written as a CIDR (`10.0.0.11/24`).
    pub prefix_len: Option<u8>,
    /// The API server port on this machine (equals the endpoint port except behind an
    /// external load balancer listening elsewhere).
    pub api_server_port: u16,
}

impl Machine {
    pub fn api_server(&self) -> SocketAddr {
        SocketAddr::new(self.address, self.api_server_port)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Https,
    Http,
    Tcp,
}

/// What an HTTP 401/403 from the health path means (API servers with anonymous access
/// off answer 401 to `/readyz`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Unauthorized {
    /// The server answered, so it is alive; readiness unknown. Logged once.
    Alive,
    /// Treat as a failed check.
    Down,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HealthCheck {
    pub protocol: Protocol,
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive passes before a backend is up again.
    pub rise: u32,
    /// Consecutive failures before a backend is down.
    pub fall: u32,
    /// CA to verify the API server's certificate; `None` skips verification.
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub unauthorized: Unauthorized,
}

impl HealthCheck {
    /// The TLS files of the check.
    pub fn tls(&self) -> crate::TlsFiles {
        crate::TlsFiles::new(
            self.ca_file.clone(),
            self.cert_file.clone(),
            self.key_file.clone(),
        )
    }
}

impl Default for HealthCheck {
    /// Detects a dead API server in about a second: a refused connect fails at once, a
    /// hung one after `timeout`; two failures 250 ms apart take a backend out.
    fn default() -> Self {
        HealthCheck {
            protocol: Protocol::Https,
            path: "/readyz".into(),
            interval: Duration::from_millis(250),
            timeout: Duration::from_millis(500),
            rise: 2,
            fall: 2,
            ca_file: None,
            cert_file: None,
            key_file: None,
            unauthorized: Unauthorized::Alive,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VirtualIp {
    /// The VIP itself is the endpoint host (an IP literal in VIP mode).
    pub address: IpAddr,
    /// Prefix length to add the VIP with: `/32` (`/128`) unless written in the file.
    pub prefix_len: u8,
    /// The interface on every control-plane machine that carries the VIP.
    pub interface: String,
    /// etcd lease TTL (whole seconds; etcd's minimum is about 2 s).
    pub lease_ttl: Duration,
    /// etcd election name (key prefix); default `/cpe/vip/<cluster>`.
    pub election: String,
    pub admin: SocketAddr,
    /// The bearer token state-changing admin requests must carry (required when `admin`
    /// is not loopback).
    pub admin_token_file: Option<PathBuf>,
    /// A second listener with `/metrics` and the probes only (no `/status`, no actions),
    /// so Prometheus can scrape the node address while the admin listener stays on
    /// loopback. `None`: none.
    pub metrics: Option<SocketAddr>,
    /// `loadBalance: true`: the holder also load-balances (absent: the VIP only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_balance: Option<VipLoadBalance>,
}

/// The VIP that also load-balances: every machine runs the load balancer on `lb_port`;
/// the holder steers the VIP's endpoint port to it (nftables redirect).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VipLoadBalance {
    pub lb_port: u16,
    /// `loadBalancer.discovery` (the only part of `loadBalancer` read in virtual-ip
    /// mode): where the in-agent load balancer learns its backends. Its etcd endpoints and
    /// TLS are the agent's own (filled in by the node's plan, [`crate::vip_lb`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discovery: Option<crate::rules::discovery::Discovery>,
}

/// `virtualIP.lbPort` (and `--lb-port`) when not written.
pub const DEFAULT_VIP_LB_PORT: u16 = 6444;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Etcd {
    /// `http://` or `https://` client URLs. Empty in VIP mode: every machine's
    /// `https://ADDRESS:2379`.
    pub endpoints: Vec<String>,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

impl Etcd {
    /// The TLS files of the etcd client.
    pub fn tls(&self) -> crate::TlsFiles {
        crate::TlsFiles::new(
            self.ca_file.clone(),
            self.cert_file.clone(),
            self.key_file.clone(),
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LoadBalancer {
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    /// The bearer token `POST /maintenance/...` must carry (required when `admin` is not
    /// loopback).
    pub admin_token_file: Option<PathBuf>,
    /// The metrics-only listener (see [`VirtualIp::metrics`]).
    pub metrics: Option<SocketAddr>,
    /// Connections accepted at once; past it new ones are refused and counted.
    pub max_connections: usize,
    /// How long existing connections to a removed backend, or at SIGTERM, may continue.
    pub drain_timeout: Duration,
    /// Connect timeout to a backend before trying the next one.
    pub connect_timeout: Duration,
    /// `loadBalancer.discovery`: where the backends are learned from at run time.
    pub discovery: Option<crate::rules::discovery::Discovery>,
}

impl LoadBalancer {
    pub fn with_listen(listen: SocketAddr) -> Self {
        LoadBalancer {
            listen,
            admin: DEFAULT_LB_ADMIN.parse().expect("constant"),
            admin_token_file: None,
            metrics: None,
            max_connections: 20_000,
            drain_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(1),
            discovery: None,
        }
    }
}

/// The node-local load balancer (`nodeLocal` with `enabled: true`): every node's own
/// components (kubelet, kube-proxy, CNI agents) dial `https://localhost:<port>`, which
/// `cpe lb --node-local` forwards to the control plane's API servers. Loopback only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NodeLocal {
    /// A loopback address; the load balancer also listens on the other family's
    /// loopback (`[::1]` for `127.0.0.1`) at the same port.
    pub listen: SocketAddr,
    /// A loopback address.
    pub admin: SocketAddr,
}

/// A resolved, valid control-plane endpoint definition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    pub cluster: String,
    pub host: Host,
    pub port: u16,
    pub mode: Mode,
    pub replicas: u32,
    pub etcd_topology: EtcdTopology,
    pub machines: Vec<Machine>,
    pub health: HealthCheck,
    /// Present in VIP mode only.
    pub vip: Option<VirtualIp>,
    /// etcd for the VIP election (and preflight). Always present in VIP mode: when the
    /// file gives no `etcd.endpoints` the list is empty, meaning every machine's
    /// `https://ADDRESS:2379` (`cpe vip` puts its own machine first); when it gives no
    /// certificate files they are kubeadm's (`/etc/kubernetes/pki/etcd/ca.crt`,
    /// `healthcheck-client.crt`, `healthcheck-client.key`). Outside VIP mode: as written.
    pub etcd: Option<Etcd>,
    /// Present in external-LB mode only.
    pub load_balancer: Option<LoadBalancer>,
    /// Present when `nodeLocal.enabled` is true (any mode).
    pub node_local: Option<NodeLocal>,
}

impl Endpoint {
    /// Failures tolerated by etcd quorum: floor((n-1)/2).
    pub fn failures_tolerated(&self) -> u32 {
        self.replicas.saturating_sub(1) / 2
    }

    /// etcd quorum size: n/2 + 1.
    pub fn quorum(&self) -> u32 {
        self.replicas / 2 + 1
    }

    /// Machines beyond the replicas (replacements kept ready).
    pub fn spares(&self) -> usize {
        self.machines.len().saturating_sub(self.replicas as usize)
    }

    pub fn machine(&self, name: &str) -> Option<&Machine> {
        self.machines.iter().find(|m| m.name == name)
    }

    /// `host:port` as clients write it.
    pub fn url_authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}
