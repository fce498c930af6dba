//! The defaults a definition gets for what it does not write, and the bounds some rules
//! use. Only constants: applying them is the rules' job ([`crate::rules`]).

use std::time::Duration;

/// The largest replica count accepted (far past any sensible etcd cluster; it only keeps
/// arithmetic honest).
pub const MAX_REPLICAS: i64 = 1000;

/// etcd's client port: in VIP mode without `etcd.endpoints`, every machine's
/// `https://ADDRESS:2379` is used (by `cpe vip`, its own machine first).
pub const ETCD_CLIENT_PORT: u16 = 2379;
/// kubeadm's etcd CA, the default for the VIP election's TLS.
pub const KUBEADM_ETCD_CA: &str = "/etc/kubernetes/pki/etcd/ca.crt";
/// kubeadm's etcd health-check client certificate (a client of etcd with no other rights).
pub const KUBEADM_ETCD_CERT: &str = "/etc/kubernetes/pki/etcd/healthcheck-client.crt";
pub const KUBEADM_ETCD_KEY: &str = "/etc/kubernetes/pki/etcd/healthcheck-client.key";
/// Default VIP lease TTL (etcd TTLs are whole seconds; its minimum is about 2 s).
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(2);
/// The shortest lease TTL accepted: etcd grants no shorter lease with its default timing,
/// and the agent times its loss of the VIP by the TTL it asked for.
pub const MIN_LEASE_TTL: Duration = Duration::from_secs(2);
/// Default cluster name (kubeadm's).
pub const DEFAULT_CLUSTER: &str = "kubernetes";
/// Health-check intervals below this are refused: a probe storm, not a health check.
pub const MIN_HEALTH_INTERVAL: Duration = Duration::from_millis(10);
