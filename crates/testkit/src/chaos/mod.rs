//! Chaos runs with a checker (issue 15, `docs/chaos.md`): a seeded schedule of
//! overlapping faults performed on the VIP testbed for minutes, everything observed recorded
//! in a [`History`], and a checker that judges the whole history afterwards: never two
//! holders, never a second ARP claimant, every outage explained by a fault in progress and
//! within its kind's bound, every watch stream resumed, nothing crashed, leaked or left
//! behind.
//!
//! What it does not do: assert (the test and `bench/chaos.sh` decide what to do with the
//! [`Report`]) or step the host's real-time clock (it is shared by every process on the
//! machine; see `docs/chaos.md` for why the agent is immune and how that is checked).
//! Replacing an etcd member or a whole machine are fault kinds like the others.
//!
//! # Layout
//!
//! - [`schedule`]: the pure schedule: seed → faults (kind, role, start, duration).
//! - [`history`]: the recorded history (serde, one JSON file per run).
//! - [`bounds`]: the numbers the rules use, and what each fault kind may cost the client
//!   through the VIP or through a load balancer in front of the machines.
//! - [`checker`]: the pure rules over a history, its figures, and the window printed
//!   around a violation.
//! - [`runner`]: the I/O: testbed, the schedule played, observers, teardown checks.
//! - `inject`: each fault's injection and repair.
//! - [`observers`]: the etcd-leader poller, the client watch stream, /proc readings.
//! - [`kube_watch`]: the client watch stream with a real kube-apiserver (a ConfigMap
//!   watched, and written every 500 ms).

pub mod bounds;
pub mod checker;
pub mod history;
mod inject;
pub mod kube_watch;
pub mod observers;
pub mod runner;
pub mod schedule;

pub use checker::{check, explain, Bounds, Report, Violation};
pub use history::History;
pub use runner::{read_history, run, write_history, Config, Run};
pub use schedule::{generate, Fault, FaultKind, Params, Role};
