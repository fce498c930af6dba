//! Support for cpe's root-only end-to-end suites (`tests/`): where the `cpe` binary they
//! run is. The suites themselves are in `tests/e2e/` (the agent on one host, preflight and
//! check against real conditions), `tests/vip_e2e.rs` (the three-machine failover
//! scenarios) and `tests/vip_lifetime.rs` (a frozen, group-killed or starved holder), each
//! a test binary of its own so that nothing else runs beside them while they measure
//! outages.
//!
//! Cargo tells a package's tests where that package's binaries are
//! (`CARGO_BIN_EXE_<name>`), and only that package's: this crate is another one, so
//! [`cpe_bin`] finds `cpe` itself. It takes the profile directory this test executable was
//! built into (`target/<profile>/deps/<test>` → `target/<profile>`) and uses
//! `target/<profile>/cpe`, after running `cargo build -p cpe --bin cpe` for that profile
//! once per test process when the binary is missing or older than a source file it is
//! built from (under `crates/*/src` but testkit's and this crate's, a `Cargo.toml`,
//! `Cargo.lock`); cargo itself then decides what to rebuild. In a
//! `cargo test --workspace` the binary was just built for the cpe package's own tests and
//! no build runs; after `cargo test -p cpe-e2e` on a clean target the first test builds it.
//! `CPE_BIN=/path/to/cpe` overrides all of this (a binary built elsewhere).
//!
//! What it does not do: skip anything. A binary that cannot be found or built fails the
//! test that asked for it, saying why; a missing root fails through
//! `cpe_testkit::require_root`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::SystemTime;

/// The path of the `cpe` binary the suites run, built first when it is missing or stale.
/// Panics (failing the test) with the reason when there is none.
pub fn cpe_bin() -> &'static str {
    static BIN: OnceLock<Result<String, String>> = OnceLock::new();
    match BIN.get_or_init(locate) {
        Ok(p) => p,
        Err(e) => panic!("the end-to-end tests need the cpe binary: {e}"),
    }
}

/// The workspace this crate belongs to (`crates/e2e/../..`).
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn locate() -> Result<String, String> {
    if let Some(p) = std::env::var_os("CPE_BIN") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p.to_string_lossy().into_owned())
        } else {
            Err(format!("CPE_BIN={} is not a file", p.display()))
        };
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot tell this test's path: {e}"))?;
    // target/<profile>/deps/<test executable>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| format!("unexpected test executable path {}", exe.display()))?;
    let bin = profile_dir.join("cpe");
    if stale(&bin) {
        build(profile_dir)?;
    }
    if !bin.is_file() {
        return Err(format!("{} missing after building it", bin.display()));
    }
    Ok(bin.to_string_lossy().into_owned())
}

/// Whether `bin` is missing or older than any source file of the workspace.
fn stale(bin: &Path) -> bool {
    let Some(built) = bin.metadata().and_then(|m| m.modified()).ok() else {
        return true;
    };
    newest_source(&workspace()).is_some_and(|s| s > built)
}

/// The newest modification time among the workspace's `Cargo.toml`s, `Cargo.lock` and the
/// files under `crates/*/src` of the crates `cpe` is built from.
fn newest_source(root: &Path) -> Option<SystemTime> {
    let mut newest = None;
    let mut note = |p: &Path| {
        if let Ok(t) = p.metadata().and_then(|m| m.modified()) {
            newest = newest.max(Some(t));
        }
    };
    note(&root.join("Cargo.toml"));
    note(&root.join("Cargo.lock"));
    let crates = std::fs::read_dir(root.join("crates")).ok()?;
    let mut dirs = Vec::new();
    for c in crates.flatten() {
        // Test support, not linked into `cpe`: editing it leaves the binary as it is.
        if matches!(c.file_name().to_str(), Some("e2e" | "testkit")) {
            continue;
        }
        note(&c.path().join("Cargo.toml"));
        dirs.push(c.path().join("src"));
    }
    while let Some(d) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => dirs.push(p),
                Ok(_) => note(&p),
                Err(_) => {}
            }
        }
    }
    newest
}

/// `cargo build -p cpe --bin cpe` into the target directory holding `profile_dir`, for
/// the profile it is named after (`debug` is the dev profile).
fn build(profile_dir: &Path) -> Result<(), String> {
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("no profile in {}", profile_dir.display()))?;
    let target_dir = profile_dir
        .parent()
        .ok_or_else(|| format!("no target directory above {}", profile_dir.display()))?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(&cargo);
    // What cargo set for this test process describes this package, not the build: left in,
    // build scripts that watch those names (ring's does) would see them change, and the
    // next `cargo test` would rebuild them and everything above, and so on back and forth.
    for (key, _) in std::env::vars_os() {
        if key.to_str().is_some_and(set_by_cargo_for_tests) {
            cmd.env_remove(&key);
        }
    }
    cmd.current_dir(workspace())
        .args(["build", "-p", "cpe", "--bin", "cpe", "--target-dir"])
        .arg(target_dir);
    match profile {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    eprintln!("cpe-e2e: building the cpe binary: {cmd:?}");
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run {}: {e}", Path::new(&cargo).display()))?;
    if !status.success() {
        return Err(format!("`{cmd:?}` failed: {status}"));
    }
    Ok(())
}

/// The variables cargo sets when it runs a test executable (see "Environment variables
/// Cargo sets for crates"), as opposed to the ones a user sets to configure cargo.
fn set_by_cargo_for_tests(key: &str) -> bool {
    const PREFIXES: [&str; 4] = [
        "CARGO_PKG_",
        "CARGO_MANIFEST_",
        "CARGO_CRATE_",
        "CARGO_BIN_",
    ];
    const NAMES: [&str; 4] = [
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_TMPDIR",
        "CARGO_RUSTC_CURRENT_DIR",
        "OUT_DIR",
    ];
    PREFIXES.iter().any(|p| key.starts_with(p)) || NAMES.contains(&key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_source_is_found() {
        let t = newest_source(&workspace()).expect("the workspace has sources");
        let lib = workspace().join("crates/cli/src/main.rs");
        assert!(t >= lib.metadata().unwrap().modified().unwrap());
    }

    #[test]
    fn only_what_cargo_sets_for_tests_is_scrubbed() {
        assert!(set_by_cargo_for_tests("CARGO_MANIFEST_DIR"));
        assert!(set_by_cargo_for_tests("CARGO_PKG_NAME"));
        assert!(set_by_cargo_for_tests("OUT_DIR"));
        assert!(!set_by_cargo_for_tests("CARGO_HOME"));
        assert!(!set_by_cargo_for_tests("CARGO_TARGET_DIR"));
        assert!(!set_by_cargo_for_tests("CARGO_BUILD_JOBS"));
        assert!(!set_by_cargo_for_tests("RUSTFLAGS"));
    }
}
