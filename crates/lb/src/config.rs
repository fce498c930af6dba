//! What a load balancer runs with: where it listens, its limits, how backends are checked,
//! and which backends exist. Built from cpe-config's resolved [`cpe_config::LbPlan`] (a
//! definition and/or flags, already checked: nothing is re-validated here); reloaded whole
//! on SIGHUP.

use cpe_config::{Endpoint, HealthCheck, LbPlan, LoadBalancer, PlanError};
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

    /// Parses `10.0.0.2:6443`, `[fd00::2]:6443` or `cp1.example.com:6443` (cpe-config's
    /// rule, the one `--backend` is held to).
    pub fn parse(text: &str) -> Result<BackendSpec, cpe_config::BackendError> {
        cpe_config::parse_backend(text).map(BackendSpec::from)
    }

    /// The address when the host is an IP literal (no resolution needed).
    pub fn literal(&self) -> Option<SocketAddr> {
        self.host
            .parse::<std::net::IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, self.port))
    }
}

impl From<cpe_config::Backend> for BackendSpec {
    fn from(b: cpe_config::Backend) -> BackendSpec {
        BackendSpec {
            host: b.host,
            port: b.port,
        }
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

    /// From a resolved plan, as it is.
    pub fn from_plan(plan: &LbPlan) -> LbConfig {
        LbConfig {
            listen: plan.listen,
            admin: plan.admin,
            max_connections: plan.max_connections,
            drain_timeout: plan.drain_timeout,
            connect_timeout: plan.connect_timeout,
            health: plan.health.clone(),
            backends: plan
                .backends
                .iter()
                .cloned()
                .map(BackendSpec::from)
                .collect(),
            workers: default_workers(),
        }
    }

    /// From a resolved definition in external-LB mode: every machine's API server is a
    /// backend (spares included: they get connections only once they answer).
    pub fn from_endpoint(ep: &Endpoint) -> Result<LbConfig, PlanError> {
        cpe_config::plan::lb_plan(ep).map(|p| LbConfig::from_plan(&p))
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
