//! The flags of `cpe vip` and `cpe lb` as the user typed them ([`VipFlags`],
//! [`LbFlags`]): plain values, no clap. Each value is held to the same rule as the
//! definition field it stands for (the rule functions of [`crate::rules`], called with the
//! flag's name), so `--lease-ttl 1s` and `leaseTTL: 1s` get the same verdict, and a
//! problem names what the user actually wrote: the flag, or the file's field and line.
//!
//! With a definition (`-f`), the definition is checked whole first (its problems keep
//! their lines; its warnings are returned), then the flags are laid over the resolved
//! values, each one replacing what the file said. Without one (ad hoc), the flags are laid
//! over the defaults and the flags a definition would have given are required.
//!
//! Resolving into what one node runs is [`crate::plan`]; this module only defines the
//! flag values and the overlay rules. It parses no command line.

use crate::input::S;
use crate::model::{HealthCheck, Protocol, Unauthorized};
use crate::problem::Problem;
use crate::rules::{self, Check};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `cpe vip`'s flags as typed. `None`/empty: not given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VipFlags {
    /// `--node`: this machine's name (always required).
    pub node: String,
    /// `--vip ADDR[/PREFIX]` (ad hoc only).
    pub vip: Option<String>,
    /// `--interface` (ad hoc only).
    pub interface: Option<String>,
    /// `--etcd URL,...`: replaces the definition's endpoints.
    pub etcd: Vec<String>,
    pub etcd_ca: Option<PathBuf>,
    pub etcd_cert: Option<PathBuf>,
    pub etcd_key: Option<PathBuf>,
    /// `--health-url`: replaces the definition's health check target.
    pub health_url: Option<String>,
    pub health_ca: Option<PathBuf>,
    pub health_cert: Option<PathBuf>,
    pub health_key: Option<PathBuf>,
    /// `--health-interval` (at least 10 ms, like `healthCheck.interval`).
    pub health_interval: Option<String>,
    pub health_timeout: Option<String>,
    /// `--lease-ttl` (whole seconds, at least 2 s, like `virtualIP.leaseTTL`).
    pub lease_ttl: Option<String>,
    pub election: Option<String>,
    /// `--admin ADDR:PORT`.
    pub admin: Option<String>,
    /// `--admin-token-file FILE`: replaces `virtualIP.adminTokenFile`.
    pub admin_token_file: Option<PathBuf>,
    /// `--metrics ADDR:PORT` (or `off`): replaces `virtualIP.metrics`.
    pub metrics: Option<String>,
    /// `--load-balance`: the holder also load-balances (`virtualIP.loadBalance: true`).
    pub load_balance: bool,
    /// `--backend HOST:PORT`, repeatable: replaces the definition's machines as backends.
    pub backends: Vec<String>,
    /// `--lb-port`: replaces `virtualIP.lbPort`.
    pub lb_port: Option<i64>,
    /// `--discover`, `--kubeconfig`, `--cache-dir` of the in-agent load balancer, as `cpe
    /// lb` names them. Its etcd fields stay empty: the `etcd` source uses the agent's own
    /// `--etcd`/`--etcd-ca`/`--etcd-cert`/`--etcd-key`.
    pub discovery: crate::rules::discovery::DiscoveryFlags,
}

/// `cpe lb`'s flags as typed. `None`/empty: not given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LbFlags {
    /// `--node-local`: the node-local preset ([`crate::node_local`]).
    pub node_local: bool,
    /// `--listen ADDR:PORT` (ad hoc only).
    pub listen: Option<String>,
    /// `--backend HOST:PORT`, repeatable (ad hoc only); each at most once.
    pub backends: Vec<String>,
    /// `--admin ADDR:PORT`, or `off` for none.
    pub admin: Option<String>,
    /// `--admin-token-file FILE`: replaces `loadBalancer.adminTokenFile`.
    pub admin_token_file: Option<PathBuf>,
    /// `--metrics ADDR:PORT` (or `off`): replaces `loadBalancer.metrics`.
    pub metrics: Option<String>,
    /// `--health-check https|http|tcp`.
    pub health_check: Option<String>,
    pub health_path: Option<String>,
    pub health_interval: Option<String>,
    pub health_timeout: Option<String>,
    pub rise: Option<i64>,
    pub fall: Option<i64>,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// `--unauthorized alive|down`.
    pub unauthorized: Option<String>,
    pub max_connections: Option<i64>,
    pub drain_timeout: Option<String>,
    pub connect_timeout: Option<String>,
    /// `--discover`, `--kubeconfig`, `--etcd*`, `--cache-dir`.
    pub discovery: crate::rules::discovery::DiscoveryFlags,
}

/// A flag's value, without a position (it was not in a file).
pub(crate) fn given(v: &Option<String>) -> Option<S<String>> {
    v.clone().map(S::new)
}

pub(crate) fn given_path(v: &Option<PathBuf>) -> Option<S<String>> {
    v.as_ref().map(|p| S::new(p.to_string_lossy().into_owned()))
}

/// A path flag held to the file's path rule.
pub(crate) fn path(c: &mut Check, flag: &str, v: &Option<PathBuf>) -> Option<PathBuf> {
    c.path(flag, &given_path(v))
}

/// A certificate flag comes with its key flag.
pub(crate) fn pair(c: &mut Check, cert: (&str, &Option<PathBuf>), key: (&str, &Option<PathBuf>)) {
    let show = |p: &Path| p.display().to_string();
    match (cert.1, key.1) {
        (Some(p), None) => c.push(
            Problem::error(cert.0, show(p), format!("needs {} too", key.0))
                .hint("a client certificate is used with its private key"),
        ),
        (None, Some(p)) => c.push(
            Problem::error(key.0, show(p), format!("needs {} too", cert.0))
                .hint("a client certificate is used with its private key"),
        ),
        _ => {}
    }
}

/// A duration flag for the health interval and timeout, over `base`.
pub(crate) fn health_timing(
    c: &mut Check,
    base: &mut HealthCheck,
    interval: (&str, &Option<String>),
    timeout: (&str, &Option<String>),
) {
    base.interval = rules::health::interval(c, interval.0, &given(interval.1), base.interval);
    base.timeout = rules::health::timeout(c, timeout.0, &given(timeout.1), base.timeout);
}

impl LbFlags {
    /// Lays the health-check flags over `base` (the definition's `healthCheck`, or the
    /// defaults), each held to its field's rule.
    pub(crate) fn overlay_health(&self, c: &mut Check, base: &mut HealthCheck) {
        if let Some(s) = given(&self.health_check) {
            base.protocol = rules::health::protocol(c, "--health-check", &s);
        }
        if let Some(s) = given(&self.health_path) {
            base.path = rules::health::path(c, "--health-path", &s);
        }
        health_timing(
            c,
            base,
            ("--health-interval", &self.health_interval),
            ("--health-timeout", &self.health_timeout),
        );
        base.rise = c.count("--rise", &self.rise.map(S::new), base.rise);
        base.fall = c.count("--fall", &self.fall.map(S::new), base.fall);
        if self.ca_file.is_some() {
            base.ca_file = path(c, "--ca-file", &self.ca_file);
        }
        pair(
            c,
            ("--cert-file", &self.cert_file),
            ("--key-file", &self.key_file),
        );
        if self.cert_file.is_some() || self.key_file.is_some() {
            base.cert_file = path(c, "--cert-file", &self.cert_file);
            base.key_file = path(c, "--key-file", &self.key_file);
        }
        if let Some(s) = given(&self.unauthorized) {
            base.unauthorized = rules::health::unauthorized(c, "--unauthorized", &s);
        }
    }
}

/// What a protocol flag value is called (for mapping clap's enums onto the rule's text).
pub fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Https => "https",
        Protocol::Http => "http",
        Protocol::Tcp => "tcp",
    }
}

/// What an `--unauthorized` value is called.
pub fn unauthorized_name(u: Unauthorized) -> &'static str {
    match u {
        Unauthorized::Alive => "alive",
        Unauthorized::Down => "down",
    }
}

/// A duration flag with the file's "more than zero" rule (drain and connect timeouts).
pub(crate) fn positive_duration(
    c: &mut Check,
    flag: &str,
    v: &Option<String>,
    base: Duration,
) -> Duration {
    c.duration(flag, &given(v), base, Duration::from_millis(1))
}
