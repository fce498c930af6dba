//! What a load balancer runs with: cpe-config's resolved [`cpe_config::LbPlan`] (where it
//! listens, its limits, how backends are checked, which backends exist — a definition
//! and/or flags, already checked: nothing is re-validated here) plus what only the
//! running process decides, the number of workers. Reloaded whole on SIGHUP.

use cpe_config::{Endpoint, HealthCheck, LbPlan, LoadBalancer, PlanError};
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};

/// One backend as written: an `IP:port` or a `name:port` resolved by the health checker
/// (a name that does not resolve is a backend that is down, not an error at start). The
/// definition's own type: one idea, one type. (`Backend` in this crate is a running one.)
pub use cpe_config::Backend as BackendSpec;

/// Everything a load balancer runs with: the plan, and the workers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LbConfig {
    pub plan: LbPlan,
    /// Threads accepting and forwarding, each with its own event loop and its own
    /// listening socket (`SO_REUSEPORT`). Default: one per CPU.
    pub workers: usize,
}

/// The plan's fields read as the config's own (`config.listen`, `config.backends`).
impl Deref for LbConfig {
    type Target = LbPlan;
    fn deref(&self) -> &LbPlan {
        &self.plan
    }
}

impl DerefMut for LbConfig {
    fn deref_mut(&mut self) -> &mut LbPlan {
        &mut self.plan
    }
}

/// Workers of the node-local preset (`cpe lb --node-local`): a node's own components
/// make a few requests a second over a few dozen long-lived connections, which one
/// event loop carries with room to spare, and a node's load balancer should not grow a
/// thread per CPU on a 64-core worker. (Memory is not why: `bench/node-local.sh`
/// measured the same 9.3 MiB with one worker and with two.) `--workers` overrides it.
pub const NODE_LOCAL_WORKERS: usize = 1;

/// One worker per CPU the process may run on.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl LbConfig {
    /// Defaults for everything but where to listen and what to send to.
    pub fn new(listen: SocketAddr, backends: Vec<BackendSpec>) -> LbConfig {
        let lb = LoadBalancer::with_listen(listen);
        LbConfig::from_plan(&LbPlan {
            listen,
            admin: Some(lb.admin),
            admin_token_file: None,
            metrics: None,
            max_connections: lb.max_connections,
            drain_timeout: lb.drain_timeout,
            connect_timeout: lb.connect_timeout,
            health: HealthCheck::default(),
            backends,
            listen_also: Vec::new(),
            node_local: false,
            discovery: None,
        })
    }

    /// From a resolved plan, as it is, with one worker per CPU; the node-local preset
    /// runs one ([`NODE_LOCAL_WORKERS`]).
    pub fn from_plan(plan: &LbPlan) -> LbConfig {
        LbConfig {
            plan: plan.clone(),
            workers: if plan.node_local {
                NODE_LOCAL_WORKERS
            } else {
                default_workers()
            },
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
