//! What a load balancer runs with: where it listens, its limits, how backends are checked,
//! and which backends exist. Built from the resolved definition ([`cpe_config::Endpoint`])
//! or from command-line flags; reloaded whole on SIGHUP.

use cpe_config::{Endpoint, HealthCheck, LoadBalancer, Mode};
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// One backend as written: an `IP:port` or a `name:port` resolved by the health checker
/// (a name that does not resolve is a backend that is down, not an error at start).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BackendSpec {
    pub host: String,
    pub port: u16,
}

impl BackendSpec {
    pub fn from_addr(addr: SocketAddr) -> BackendSpec {
        BackendSpec {
            host: addr.ip().to_string(),
            port: addr.port(),
        }
    }

    /// Parses `10.0.0.2:6443`, `[fd00::2]:6443` or `cp1.example.com:6443`.
    pub fn parse(text: &str) -> Result<BackendSpec, String> {
        if let Ok(a) = text.parse::<SocketAddr>() {
            if a.port() == 0 {
                return Err(format!("`{text}`: port 0 is not a backend port"));
            }
            return Ok(BackendSpec::from_addr(a));
        }
        let (host, port) = text
            .rsplit_once(':')
            .ok_or_else(|| format!("`{text}` is not HOST:PORT (e.g. 10.0.0.2:6443)"))?;
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("`{text}`: `{port}` is not a port (1-65535)"))?;
        if host.contains(':') || host.starts_with('[') {
            return Err(format!(
                "`{text}`: write an IPv6 backend as [ADDRESS]:PORT, e.g. [fd00::2]:6443"
            ));
        }
        if !cpe_config::validate::is_dns_name(host) {
            return Err(format!(
                "`{text}`: `{host}` is neither an IP address nor a DNS name"
            ));
        }
        Ok(BackendSpec {
            host: host.to_string(),
            port,
        })
    }

    /// The address when the host is an IP literal (no resolution needed).
    pub fn literal(&self) -> Option<SocketAddr> {
        self.host
            .parse::<std::net::IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, self.port))
    }
}

impl fmt::Display for BackendSpec {
    /// The backend's name in logs, metrics and `/status`: `10.0.0.2:6443`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.literal() {
            Some(a) => write!(f, "{a}"),
            None => write!(f, "{}:{}", self.host, self.port),
        }
    }
}

/// Everything a load balancer runs with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LbConfig {
    pub listen: SocketAddr,
    /// `None`: no admin listener.
    pub admin: Option<SocketAddr>,
    pub max_connections: usize,
    pub drain_timeout: Duration,
    pub connect_timeout: Duration,
    pub health: HealthCheck,
    pub backends: Vec<BackendSpec>,
    /// Threads accepting and forwarding, each with its own event loop and its own
    /// listening socket (`SO_REUSEPORT`). Default: one per CPU.
    pub workers: usize,
}

/// One worker per CPU the process may run on.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl LbConfig {
    /// Defaults for everything but where to listen and what to send to.
    pub fn new(listen: SocketAddr, backends: Vec<BackendSpec>) -> LbConfig {
        let lb = LoadBalancer::with_listen(listen);
        LbConfig {
            listen,
            admin: Some(lb.admin),
            max_connections: lb.max_connections,
            drain_timeout: lb.drain_timeout,
            connect_timeout: lb.connect_timeout,
            health: HealthCheck::default(),
            backends,
            workers: default_workers(),
        }
    }

    /// From a resolved definition in external-LB mode: every machine's API server is a
    /// backend (spares included: they get connections only once they answer).
    pub fn from_endpoint(ep: &Endpoint) -> Result<LbConfig, String> {
        let lb = match (&ep.load_balancer, ep.mode) {
            (Some(lb), Mode::ExternalLb) => lb,
            (_, mode) => {
                return Err(format!(
                    "mode is {mode}: `cpe lb` runs in external-lb mode only \
                     (set `mode: external-lb` and a `loadBalancer` section)"
                ))
            }
        };
        let mut backends: Vec<BackendSpec> = Vec::new();
        for m in &ep.machines {
            let b = BackendSpec::from_addr(m.api_server());
            if !backends.contains(&b) {
                backends.push(b);
            }
        }
        Ok(LbConfig {
            listen: lb.listen,
            admin: Some(lb.admin),
            max_connections: lb.max_connections,
            drain_timeout: lb.drain_timeout,
            connect_timeout: lb.connect_timeout,
            health: ep.health.clone(),
            backends,
            workers: default_workers(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_specs_parse_and_name_themselves() {
        let b = BackendSpec::parse("10.0.0.2:6443").unwrap();
        assert_eq!(b.to_string(), "10.0.0.2:6443");
        assert!(b.literal().is_some());
        let b = BackendSpec::parse("[fd00::2]:6443").unwrap();
        assert_eq!(b.to_string(), "[fd00::2]:6443");
        let b = BackendSpec::parse("cp1.example.com:6443").unwrap();
        assert_eq!(b.to_string(), "cp1.example.com:6443");
        assert!(b.literal().is_none());
        for bad in [
            "10.0.0.2",
            "10.0.0.2:0",
            "h:70000",
            "fd00::2:6443",
            "bad_name!:1",
            ":1",
        ] {
            assert!(BackendSpec::parse(bad).is_err(), "{bad}");
        }
    }
}
