//! Is a backend up?
//!
//! Two halves, kept apart: probes (I/O: an HTTPS/HTTP `GET` of the health path or a TCP
//! connect, each bounded by a timeout, each returning a typed observation) and the pure
//! state machine that turns observations into ordered backend states (rise/fall, passive
//! signals, operator maintenance). The state machine never probes and never reads the
//! clock: `now` is an input.
//!
//! # Layout
//!
//! - [`probe`]: [`Prober`], built from a [`cpe_config::HealthCheck`] or from a URL, and the
//!   [`Observation`] one probe returns (ready, not ready with the status, alive but
//!   unauthorized, or failed with a typed reason), with its latency.
//! - [`state`]: [`State`] (ordered: maintenance < down < suspect < draining < recovering
//!   < up), the [`Health`] of one backend, and the [`Transition`]s it reports, which
//!   display as `10.0.0.2:6443 RECOVERING->UP (probe)`.
//!
//! # What it does not do
//!
//! It does not schedule probes, hold locks or decide which backend gets a connection:
//! those belong to the driver (`cpe-lb`, `cpe-vip`).

pub mod probe;
pub mod state;

pub use probe::TlsFiles;
pub use probe::{Failure, NoVerification, Observation, Outcome, ProbeError, Prober};
pub use state::{Cause, Event, Health, Rules, State, Step, Transition};
