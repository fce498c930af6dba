//! What a probe is aimed at: an address, probed as is, or a name, resolved before every
//! probe by the [`crate::checker`]. Only the type: no resolution, no probing here (kept
//! apart so the prober, which builds one from its URL, and the checker, which resolves it,
//! do not import each other).

use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// What to probe.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// An address, probed as is.
    Addr(SocketAddr),
    /// A name, resolved before every probe.
    Name { host: String, port: u16 },
}

impl Target {
    /// `host` as an address when it is an IP literal, as a name otherwise.
    pub fn new(host: &str, port: u16) -> Target {
        match host.parse::<IpAddr>() {
            Ok(ip) => Target::Addr(SocketAddr::new(ip, port)),
            Err(_) => Target::Name {
                host: host.to_string(),
                port,
            },
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Addr(a) => write!(f, "{a}"),
            Target::Name { host, port } => write!(f, "{host}:{port}"),
        }
    }
}
