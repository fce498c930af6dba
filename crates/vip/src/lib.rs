//! The VIP agent behind `cpe vip`: the holder's pure state machine (inputs: time,
//! health, lease events; outputs: actions) and the driver that feeds it and performs its
//! actions through `cpe-election` (etcd) and `cpe-net` (netlink, raw packets).
//!
//! # Layout
//!
//! - [`machine`]: the decisions, pure; every rule of the issue is a test there.
//! - [`agent`]: the driver (clock, sockets, etcd, health probes, the interface poll).
//! - [`etcd_leader`]: whether the holder hands etcd leadership away, and to whom (pure).
//! - [`status`]: the `/status` JSON and the `cpe status` table.
//! - [`metrics`] serves `/metrics`.
//!
//! It does not parse flags or files: the CLI resolves them into [`agent::Settings`].

pub mod agent;
pub mod etcd_leader;
pub mod guard;
pub mod machine;
pub mod metrics;
pub mod status;

pub use agent::{run, AgentError, HealthCheck, Settings};
