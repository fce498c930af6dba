//! What the probes observed, as plain data. The probes in [`crate::probe`] produce these;
//! the decisions in [`crate::decide`] consume them. Nothing here does I/O, so a unit test
//! can state any host condition (a port held by `kube-apiserver`, an interface without
//! carrier, etcd with no leader) in one line.

use std::net::IpAddr;

/// A process that holds a socket, as `/proc` tells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    /// `/proc/PID/comm` (the kernel's 15-character name).
    pub name: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {} ({})", self.pid, self.name)
    }
}

/// Binding a listening socket on all addresses, as kubeadm's preflight does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bind {
    Free,
    /// `EADDRINUSE`. `holders` is empty when `/proc` does not tell (another namespace,
    /// no permission to read other processes' descriptors).
    InUse {
        holders: Vec<Holder>,
    },
    /// `EACCES`: a port below 1024 without `CAP_NET_BIND_SERVICE`.
    Denied,
    Error(String),
}

/// The link state the kernel reports in `/sys/class/net/IF/operstate`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OperState {
    Up,
    Down,
    /// Dummy, loopback and some virtual interfaces never report carrier: treated as up
    /// when the interface is administratively up.
    Unknown,
    /// Dormant, lower-layer-down, testing, not present.
    Other,
}

/// One interface of this machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    /// `IFF_UP`: `ip link set IF up` was done.
    pub admin_up: bool,
    pub oper: OperState,
    /// Addresses with their prefix lengths.
    pub addrs: Vec<(IpAddr, u8)>,
}

/// The interfaces of this machine (all of them: the VIP interface is looked up by name,
/// the machine's own address anywhere).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Interfaces(pub Vec<Interface>);

impl Interfaces {
    pub fn get(&self, name: &str) -> Option<&Interface> {
        self.0.iter().find(|i| i.name == name)
    }

    /// The interface carrying `addr`, if any.
    pub fn with_addr(&self, addr: IpAddr) -> Option<&Interface> {
        self.0
            .iter()
            .find(|i| i.addrs.iter().any(|(a, _)| *a == addr))
    }
}

/// Whether an address of the VIP interface has a subnet that holds the VIP: the rule
/// `cpe vip` applies before adding the address (same family, not a host route, not
/// link-local, not the VIP itself). Worked out where the interfaces are read
/// ([`crate::probe::iface::vip_subnet`]), so the decision needs no network crate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VipSubnet {
    /// This address of the interface, with its prefix length, has a subnet holding the VIP.
    CoveredBy(IpAddr, u8),
    /// No address of the interface does (or the interface is missing).
    NotCovered,
}

/// The process's capability sets (from `/proc/self/status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caps {
    pub effective: u64,
    /// What this process and its children can ever get (a container without
    /// `NET_ADMIN` lacks it here, even as root).
    pub bounding: u64,
}

pub const CAP_NET_ADMIN: u32 = 12;
pub const CAP_NET_RAW: u32 = 13;

impl Caps {
    pub fn has_effective(&self, cap: u32) -> bool {
        self.effective & (1 << cap) != 0
    }
    pub fn in_bounding(&self, cap: u32) -> bool {
        self.bounding & (1 << cap) != 0
    }
}

/// Is anyone on the link answering for the VIP (ARP for IPv4, NDP for IPv6)?
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dad {
    /// Probes went out and no one answered.
    Silent,
    /// Someone answered: the VIP is in use on this link.
    Answered { mac: String },
    /// The probe could not be made (no raw socket, tool missing); says why.
    NotChecked(String),
}

/// One TCP connect attempt with a timeout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Connect {
    /// Something accepted the connection: a listener is there.
    Accepted,
    /// The host answered with a reset: it is up, and nothing listens on the port.
    Refused,
    /// No answer within the timeout: host down, address unused, or a firewall drops it.
    Timeout,
    /// The kernel gave up at once or after ARP failed (`EHOSTUNREACH`, `ENETUNREACH`).
    Unreachable(String),
    Error(String),
}

/// etcd's `/v3/maintenance/status` over its JSON gateway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EtcdStatus {
    Ok {
        version: String,
        /// Member id of the leader as this member sees it; `None` or 0 means no leader.
        leader: Option<String>,
    },
    Connect(Connect),
    /// The TLS handshake failed (unknown CA, client certificate refused, plain HTTP port).
    Tls(String),
    /// An HTTP answer that is not a status (a 4xx/5xx, not JSON).
    Http {
        status: u16,
        body: String,
    },
    /// Files given for the CA, certificate or key could not be used.
    Credentials(String),
}

/// An HTTPS `GET` of the health path (`/readyz`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Http {
    Status { code: u16, body: String },
    Connect(Connect),
    Tls(String),
    Other(String),
}

/// The certificate an API server presented.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerCert {
    /// The DNS names among its subject alternative names.
    pub dns_names: Vec<String>,
    /// Whether the certificate is valid for the endpoint host (DNS name or IP SAN),
    /// as a client checks it.
    pub names_endpoint: bool,
    /// `None` without a CA to verify against; otherwise the chain check's result.
    pub chain: Option<Result<(), String>>,
}
