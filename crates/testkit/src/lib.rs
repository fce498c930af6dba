//! Test support shared by the end-to-end tests and the benchmarks: hosts as network
//! namespaces on a bridge ([`Net`], [`Host`]), processes that are always cleaned up
//! ([`Child`]), a real three-member etcd cluster ([`EtcdCluster`]), and observers that
//! watch a virtual IP fail over from the outside ([`observe`]): a client that keeps sending
//! HTTPS requests to it, and a watcher that samples every host's addresses and the client's
//! neighbour table. [`vip`] builds the whole VIP testbed (three control-plane machines and a
//! client) and runs the failure scenarios against `cpe vip` or keepalived.
//!
//! It is not linked into the `cpe` binary, and it never finds binaries by itself: callers
//! pass the path of `cpe` (`cpe_e2e::cpe_bin()` in the e2e crate's tests,
//! `env!("CARGO_BIN_EXE_cpe")` in the cli crate's).
//!
//! Everything here needs root (namespaces, veth, nftables). [`require_root`] fails loudly
//! when it is missing: an end-to-end test must never pass by skipping.
//!
//! # Layout
//!
//! - [`net`]: namespaces, bridge, veth, link cut, nftables partitions, neighbour reads.
//! - [`child`]: a process run inside a namespace, killed on drop, output kept in a log file.
//! - [`etcd`]: three etcd members, one per host; health and leader lookup with `etcdctl`.
//! - [`netlink`]: raw rtnetlink dumps (addresses, neighbours) from sockets opened inside
//!   other namespaces, so one thread can sample every host at nearly the same instant.
//! - [`observe`]: the client prober and the holder watcher, and what they measured.
//! - [`kube`]: real kube-apiservers (1.20) on their own machines with etcd, a test CA,
//!   tokens, RBAC and kubeconfigs; machines added and removed as Cluster API does.
//! - [`chaos`]: long seeded runs of overlapping faults on the VIP testbed, a recorded
//!   history and the checker that judges it (`docs/chaos.md`).
//! - [`vip`]: the VIP testbed and its scenarios, shared by `crates/e2e/tests/vip_e2e.rs` and
//!   `bench/vip.sh`.

pub mod chaos;
pub mod child;
pub mod etcd;
pub mod kube;
pub mod net;
pub mod netlink;
pub mod observe;
pub mod vip;

pub use child::Child;
pub use etcd::EtcdCluster;
pub use net::{Host, Net};

/// Panics with a clear message unless the process runs as root. End-to-end tests call it
/// first: without root they cannot build namespaces, and they must fail, not skip.
pub fn require_root() {
    if !nix::unistd::geteuid().is_root() {
        panic!(
            "this end-to-end test needs root (network namespaces, veth, nftables, raw sockets); \
             run it as root, e.g. `sudo scripts/test.sh` — it is not skipped on purpose"
        );
    }
}

/// Panics with a clear message unless every named program is on `PATH`.
pub fn require_programs(names: &[&str]) {
    let missing: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| which(n).is_none())
        .collect();
    if !missing.is_empty() {
        panic!(
            "this end-to-end test needs {missing:?} on PATH; scripts/test.sh installs the \
             Debian packages that provide them"
        );
    }
}

/// The full path of a program on `PATH`, if any.
pub fn which(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}
