//! The definition file exactly as written. Field names are camelCase like Kubernetes
//! objects; unknown fields are errors; every scalar keeps its line and column so that
//! validation can point at it. Nothing here has a default: defaults are applied when
//! resolving into [`crate::model::Endpoint`].

use serde::Deserialize;
use serde_saphyr::Spanned;

/// A scalar as written, with where it was written.
pub type S<T> = Spanned<T>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct File {
    /// Cluster name (used in election keys and rendered artifacts).
    pub cluster: Option<S<String>>,
    pub endpoint: Option<EndpointIn>,
    /// `external-lb`, `virtual-ip` or `single-node`; inferred when absent.
    pub mode: Option<S<String>>,
    pub control_plane: Option<ControlPlaneIn>,
    pub health_check: Option<HealthCheckIn>,
    #[serde(rename = "virtualIP")]
    pub virtual_ip: Option<VirtualIpIn>,
    pub etcd: Option<EtcdIn>,
    pub load_balancer: Option<LoadBalancerIn>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EndpointIn {
    pub host: Option<S<String>>,
    pub port: Option<S<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ControlPlaneIn {
    pub replicas: Option<S<i64>>,
    /// `stacked` (default) or `external`.
    pub etcd: Option<S<String>>,
    pub machines: Option<S<Vec<MachineIn>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MachineIn {
    pub name: Option<S<String>>,
    /// `10.0.0.11` or `10.0.0.11/24`.
    pub address: Option<S<String>>,
    pub api_server_port: Option<S<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HealthCheckIn {
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VirtualIpIn {
    pub interface: Option<S<String>>,
    /// Prefix length the VIP is added with (default /32 or /128).
    pub prefix_length: Option<S<i64>>,
    #[serde(rename = "leaseTTL")]
    pub lease_ttl: Option<S<String>>,
    pub election: Option<S<String>>,
    pub admin: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EtcdIn {
    pub endpoints: Option<S<Vec<S<String>>>>,
    pub ca_file: Option<S<String>>,
    pub cert_file: Option<S<String>>,
    pub key_file: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LoadBalancerIn {
    pub listen: Option<S<String>>,
    pub admin: Option<S<String>>,
    pub max_connections: Option<S<i64>>,
    pub drain_timeout: Option<S<String>>,
    pub connect_timeout: Option<S<String>>,
}
