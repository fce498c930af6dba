//! The control-plane endpoint definition.
//!
//! This crate turns an `endpoint.yaml` (or the equivalent Konvoy-style flags) into an
//! [`Endpoint`]: the one resolved, validated model that every other part of cpe reads
//! (`cpe lb`, `cpe vip`, `cpe preflight`, `cpe render`).
//!
//! # Entry points
//!
//! - [`load_file`] / [`load_str`]: for commands that need a valid definition (`cpe lb`,
//!   `cpe vip`, `cpe preflight`): the [`Endpoint`] and its warnings, or every problem.
//! - [`check_str`] / [`KonvoyFlags::check`]: for `cpe plan`: every problem, valid or not,
//!   and the endpoint when there is no error.
//!
//! # Layout
//!
//! - [`tree`]: the YAML parsed (by serde-saphyr) into a tree of positioned nodes.
//! - [`input`]: the fields of the file exactly as written, read from the tree; every
//!   unknown field and wrong type is collected, each value keeps its line and column.
//! - [`load`]: reading a definition file (bounded; non-regular files refused) and the
//!   result types ([`Loaded`], [`Checked`], [`LoadError`]).
//! - [`rules`]: the rules, one submodule per section, checked without touching the host;
//!   every problem is collected, none stops the others from being found. [`defaults`]:
//!   what a definition gets for what it does not write. [`validate`] re-exports all three
//!   under the path the rest of cpe uses.
//! - [`flags`]: the flags of `cpe lb` and `cpe vip` as typed, checked by the same rules
//!   as the file's fields and laid over a definition; [`plan`]: what one node runs,
//!   resolved ([`VipPlan`], [`LbPlan`]).
//! - [`node_local`]: the node-local preset of `cpe lb` (`--node-local`, `nodeLocal:`).
//! - [`tls`]: [`TlsFiles`], the CA / client certificate / key paths every TLS client of
//!   cpe takes.
//! - [`model`]: the resolved definition ([`Endpoint`]) with defaults applied and the mode
//!   inferred.
//! - [`problem`]: a problem found in a definition: where, which field, which value,
//!   which rule, and a hint.
//! - [`duration`]: `250ms` / `2s` / `1m` durations as written in the file.
//! - [`konvoy`]: the same definition from Konvoy-style flags instead of a file.
//!
//! # What it does not do
//!
//! No I/O beyond reading the one file it is given: no DNS, no interfaces, no sockets.
//! Whether an interface exists or a port is free is host state, checked by
//! `cpe-preflight`. Constructors never silently "fix" a definition: a value is either
//! accepted as written or reported.

// A `Problem` is the error type and is meant to be rich (field, value, rule, hint).
#![allow(clippy::result_large_err)]

pub mod defaults;
pub mod duration;
pub mod flags;
pub mod input;
pub mod konvoy;
pub mod load;
pub mod model;
pub mod node_local;
pub mod plan;
pub mod problem;
pub mod rules;
pub mod tls;
pub mod tree;
pub mod validate;
pub mod vip_lb;

pub use flags::{LbFlags, VipFlags};
pub use konvoy::KonvoyFlags;
pub use load::{
    check_str, load_file, load_str, read_file, read_file_or_stream, Checked, LoadError, Loaded,
};
pub use model::*;
pub use plan::{HealthTarget, LbPlan, PlanError, Resolved, VipPlan};
pub use problem::{Problem, Severity};
pub use rules::discovery::{Discovery, DiscoveryFlags, Source as DiscoverySource};
pub use rules::lb::{parse_backend, Backend, BackendError};
pub use tls::TlsFiles;
