//! The `loadBalancer` section: listen and admin addresses, limits and timeouts.
//!
//! Pure: no host access. Problems are pushed on the shared [`super::Check`].

use super::*;

pub(crate) fn check_lb(
    c: &mut Check,
    lb: Option<&input::LoadBalancerIn>,
    port: u16,
) -> Option<LoadBalancer> {
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
    out.admin_token_file = c.path("loadBalancer.adminTokenFile", &l.admin_token_file);
    if let Some(m) = &l.metrics {
        out.metrics = metrics_listener(
            c,
            "loadBalancer.metrics",
            m,
            &[
                ("loadBalancer.listen", Some(out.listen)),
                ("loadBalancer.admin", Some(out.admin)),
            ],
        );
    }
    // (Equal to `listen` is already an error: one problem is enough.)
    if out.admin != out.listen {
        admin_exposure(
            c,
            ("loadBalancer.admin", &l.admin),
            "loadBalancer.adminTokenFile",
            out.admin,
            out.admin_token_file.is_some(),
        );
    }
    if let Some(s) = &l.max_connections {
        if let Some(n) = max_connections(c, "loadBalancer.maxConnections", s) {
            out.max_connections = n;
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

/// Connections at once: 1 to 10,000,000.
pub(crate) fn max_connections(c: &mut Check, field: &str, s: &S<i64>) -> Option<usize> {
    if s.value > 0 && s.value <= 10_000_000 {
        return Some(s.value as usize);
    }
    c.error(field, s, "must be between 1 and 10000000");
    None
}

/// One backend of `cpe lb` as written: `10.0.0.2:6443`, `[fd00::2]:6443` or
/// `cp1.example.com:6443` (a name is resolved by the health checker, not here).
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Backend {
    pub host: String,
    pub port: u16,
}

impl Backend {
    pub fn from_addr(addr: SocketAddr) -> Backend {
        Backend {
            host: addr.ip().to_string(),
            port: addr.port(),
        }
    }

    /// Parses `10.0.0.2:6443`, `[fd00::2]:6443` or `cp1.example.com:6443` (the rule
    /// `--backend` and `loadBalancer` entries are held to).
    pub fn parse(text: &str) -> Result<Backend, BackendError> {
        parse_backend(text)
    }

    /// The address when the host is an IP literal (no resolution needed).
    pub fn literal(&self) -> Option<SocketAddr> {
        self.host
            .parse::<std::net::IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, self.port))
    }
}

impl std::fmt::Display for Backend {
    /// The backend's name in logs, metrics and `/status`: `10.0.0.2:6443`,
    /// `[fd00::2]:6443`, `cp1.example.com:6443`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.literal() {
            Some(a) => write!(f, "{a}"),
            None => write!(f, "{}:{}", self.host, self.port),
        }
    }
}

/// Why a backend as written is not one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    #[error("`{0}`: port 0 is not a backend port")]
    PortZero(String),
    #[error("`{0}` is not HOST:PORT (e.g. 10.0.0.2:6443)")]
    NoPort(String),
    #[error("`{text}`: `{port}` is not a port (1-65535)")]
    Port { text: String, port: String },
    #[error("`{0}`: write an IPv6 backend as [ADDRESS]:PORT, e.g. [fd00::2]:6443")]
    Ipv6(String),
    #[error("`{text}`: `{host}` is neither an IP address nor a DNS name")]
    Host { text: String, host: String },
}

/// Parses `10.0.0.2:6443`, `[fd00::2]:6443` or `cp1.example.com:6443`.
pub fn parse_backend(text: &str) -> Result<Backend, BackendError> {
    if let Ok(a) = text.parse::<SocketAddr>() {
        if a.port() == 0 {
            return Err(BackendError::PortZero(text.to_string()));
        }
        return Ok(Backend::from_addr(a));
    }
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| BackendError::NoPort(text.to_string()))?;
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| BackendError::Port {
            text: text.to_string(),
            port: port.to_string(),
        })?;
    if host.contains(':') || host.starts_with('[') {
        return Err(BackendError::Ipv6(text.to_string()));
    }
    if !is_dns_name(host) {
        return Err(BackendError::Host {
            text: text.to_string(),
            host: host.to_string(),
        });
    }
    Ok(Backend {
        host: host.to_string(),
        port,
    })
}
