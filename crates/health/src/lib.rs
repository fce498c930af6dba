//! Is a backend up?
//!
//! Three parts, kept apart: probes (I/O: an HTTPS/HTTP `GET` of the health path or a TCP
//! connect, each bounded by a timeout, each returning a typed observation); the pure
//! state machine that turns observations into ordered backend states (rise/fall, passive
//! signals, operator maintenance), which never probes and never reads the clock (`now`
//! is an input); and the checker that schedules probes and feeds their outcomes to it.
//!
//! # Layout
//!
//! - [`probe`]: [`Prober`], built from a [`cpe_config::HealthCheck`] or from a URL, and the
//!   [`Observation`] one probe returns (ready, not ready with the status, alive but
//!   unauthorized, or failed with a typed reason), with its latency.
//! - [`state`]: [`State`] (ordered: maintenance < down < suspect < draining < recovering
//!   < up), the [`Health`] of one backend, and the [`Transition`]s it reports, which
//!   display as `10.0.0.2:6443 RECOVERING->UP (probe)`.
//! - [`target`]: what a probe is aimed at (an address, or a name resolved per probe).
//! - [`checker`]: the one [`Checker`] both the load balancer (one per backend) and the
//!   VIP agent run: resolve the target, probe it every interval, feed the pure state
//!   machine, hand each [`Round`] (with its [`Transition`]) to the caller.
//!
//! # What it does not do
//!
//! It does not hold locks or decide which backend gets a connection, and it does not
//! log or count: the checker hands every round to its caller (`cpe-lb`, `cpe-vip`), which
//! also decides where the health lives ([`Observe`]).

pub mod checker;
pub mod probe;
pub mod state;
pub mod target;

pub use checker::{Check, Checker, Observe, Probe, ResolveError, Round, Target};

pub use probe::TlsFiles;
pub use probe::{Failure, NoVerification, Observation, Outcome, ProbeError, Prober};
pub use state::{Cause, Event, Health, Rules, State, Step, Transition};
