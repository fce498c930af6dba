//! What the agent runs with: [`Settings`] and its [`HealthCheck`], resolved by the CLI
//! from a definition file or flags and handed over whole. Plain data, so that the driver
//! (`agent.rs`) and the status document (`status.rs`) both read it without importing
//! each other.
//!
//! It does not parse, default or validate anything: the CLI (through cpe-config) has.

use cpe_election::Client;
use cpe_health::{Prober, Rules, Target};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Everything the agent needs, resolved by the CLI from a definition file or flags.
#[derive(Debug, Clone)]
pub struct Settings {
    pub node: String,
    pub vip: IpAddr,
    pub prefix_len: u8,
    pub interface: String,
    pub election: String,
    pub lease_ttl: Duration,
    pub etcd: Client,
    pub health: HealthCheck,
    pub admin: Option<SocketAddr>,
    /// The admin listener's token (required by the plan off loopback; `cpe vip` has no
    /// state-changing route today, so it guards future ones).
    pub admin_token: Option<cpe_admin::Token>,
    /// How long the takeover probe waits for a foreign host to answer.
    pub probe_wait: Duration,
    /// While holding, hand etcd leadership to another member if this machine's leads.
    pub etcd_move_leader: bool,
    /// Keep the etcd endpoints current from etcd's member list, the first endpoint (this
    /// machine's own member) always kept first ([`crate::members`]).
    pub etcd_follow_members: bool,
}

/// What "healthy" means for this node.
#[derive(Debug, Clone)]
pub struct HealthCheck {
    pub prober: Prober,
    /// Probed address for a prober built from a definition (`None`: the URL's own).
    pub addr: Option<SocketAddr>,
    /// Shown in `/status` and logs.
    pub target: String,
    pub interval: Duration,
    pub rules: Rules,
}

impl HealthCheck {
    /// What the checker probes: the address given, else the URL's host and port (a name
    /// is resolved before every probe). `None` only for a prober built from a definition
    /// without an address, which the CLI never hands over.
    pub fn checker_target(&self) -> Option<Target> {
        match self.addr {
            Some(a) => Some(Target::Addr(a)),
            None => self.prober.url_target(),
        }
    }
}
