//! The VIP agent behind `cpe vip`: the holder's pure state machine (inputs: time,
//! health, lease events; outputs: actions) and the driver that feeds it and performs its
//! actions through `cpe-election` (etcd) and `cpe-net` (netlink, raw packets).
//!
//! # Layout
//!
//! - [`machine`]: the decisions, pure; every rule of the issue is a test there.
//! - [`settings`]: what the agent runs with ([`Settings`], [`HealthCheck`]), plain data.
//! - [`agent`]: the driver (clock, sockets, etcd, netlink): feeds the machine, performs
//!   its actions in order.
//! - `tasks.rs`: the driver's background tasks (health checker, lease keep-alive,
//!   interface poll, etcd leader query, etcd-leadership check), each reporting back.
//! - [`members`]: the etcd endpoints kept current from etcd's member list (the pure
//!   rule and its task).
//! - [`etcd_leader`]: whether the holder hands etcd leadership away, and to whom, and
//!   when (pure).
//! - [`status`]: the `/status` JSON and the `cpe status` table.
//! - [`metrics`] serves `/metrics`.
//!
//! It does not parse flags or files: the CLI resolves them into [`Settings`].

pub mod agent;
pub mod etcd_leader;
pub mod guard;
pub mod machine;
pub mod members;
pub mod metrics;
pub mod settings;
pub mod status;
mod tasks;

pub use agent::{run, AgentError};
pub use settings::{HealthCheck, Settings};
