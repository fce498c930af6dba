//! Checks around cluster creation: `cpe preflight` before (ports free, interface present,
//! VIP unused, etcd answering) and `cpe check` after (the endpoint answers, each API server
//! answers, the certificates name the endpoint host). Each check returns pass / warn /
//! fail with a reason and a fix.
//!
//! # Layout
//!
//! - [`facts`]: what was observed, as plain data (a port in use and by whom, an
//!   interface's state and addresses, an etcd status, a presented certificate).
//! - [`decide`]: the decisions, pure functions from facts to a [`Check`]; unit-tested
//!   branch by branch.
//! - [`probe`]: the I/O that gathers the facts (bind a port, read `/proc` and
//!   `getifaddrs`, an ARP probe, a TCP connect, an HTTPS request, a TLS handshake).
//! - [`run`]: which facts a run needs, gathered concurrently, handed to the decisions.
//! - [`report`]: the checks grouped per machine, the summary line, the table, the JSON,
//!   the exit code.
//!
//! # What it does not do
//!
//! It changes nothing on the host: no address added, no port held longer than the bind
//! test, no file written. It does not retry: a check says what the host and network do
//! now. It sends packets only to the machines, etcd endpoints and endpoint named in the
//! definition (and ARP probes on the VIP's link).

pub mod decide;
pub mod facts;
pub mod probe;
pub mod report;
pub mod run;

pub use report::{Check, Report, Status, Summary, Target};
