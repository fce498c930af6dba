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
//! - [`validate`]: the rules, checked without touching the host; every problem is
//!   collected, none stops the others from being found.
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

pub mod duration;
pub mod input;
pub mod konvoy;
pub mod model;
pub mod problem;
pub mod tree;
pub mod validate;

pub use konvoy::KonvoyFlags;
pub use model::*;
pub use problem::{Problem, Severity};
pub use validate::{check_str, load_file, load_str, read_file, Checked, LoadError, Loaded};
