//! `cpe vip` on one host, for real: a network namespace with the agent and its own etcd,
//! a peer namespace on the same bridge that watches the wire, and the kernel doing the
//! rest. What it proves: the VIP is added and announced (gratuitous ARP seen by tcpdump on
//! the peer, the peer reaches the VIP), put back when someone deletes it, dropped when the
//! health check fails and taken again when it passes, removed and its lease revoked on
//! SIGTERM, removed by the guard process when the agent is SIGKILLed, and refused,
//! naming the MAC, when a foreign host already answers for it.
//! The multi-host failover scenarios live in the end-to-end suite (`vip_e2e.rs`).
//!
//! Needs root, `etcd`, `etcdctl`, `nft`, `tcpdump` and `ping`; fails (never skips) without.
//!
//! - this file: the helpers (a one-member etcd, tcpdump on a peer, `cpe status`, starting
//!   and stopping the agent).
//! - `one_host`: one agent: hold, announce, repair, health, SIGTERM, guard, a foreign
//!   holder; a definition file; an IPv6 VIP.
//! - `two_agents`: two agents handing the VIP over on a health failure and on SIGTERM.

mod one_host;
mod two_agents;

use cpe_e2e::cpe_bin;
use cpe_testkit::{Child, Host};
use serde_json::Value;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    while !f() {
        assert!(
            t0.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    t0.elapsed()
}

/// `/status`, or Null while the agent is not answering yet.
/// A one-member etcd on `host`, its peer port on loopback; returns once it answers on
/// 127.0.0.1:2379 (every test here talks to that listener at least).
fn one_member_etcd(host: &Host, dir: &Path, listen_client_urls: &str, advertise: &str) -> Child {
    let data = dir.join("etcd");
    let args: Vec<String> = [
        "--name",
        "a",
        "--data-dir",
        &data.to_string_lossy(),
        "--listen-client-urls",
        listen_client_urls,
        "--advertise-client-urls",
        advertise,
        "--listen-peer-urls",
        "http://127.0.0.1:2380",
        "--initial-advertise-peer-urls",
        "http://127.0.0.1:2380",
        "--initial-cluster",
        "a=http://127.0.0.1:2380",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let etcd = host
        .spawn("etcd", &dir.join("etcd.log"), "etcd", &args)
        .unwrap();
    wait_for("etcd", Duration::from_secs(20), || {
        host.exec(
            "etcdctl",
            &["--endpoints", "http://127.0.0.1:2379", "endpoint", "health"],
        )
        .is_ok()
    });
    etcd
}

/// tcpdump on `host`'s eth0 for `filter` (line-buffered into tcpdump.log), given half a
/// second to start listening before anything it should see is sent.
fn capture(host: &Host, dir: &Path, filter: &str) -> Child {
    let args: Vec<String> = ["-l", "-n", "-i", "eth0", filter]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let c = host
        .spawn("tcpdump", &dir.join("tcpdump.log"), "tcpdump", &args)
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    c
}

/// Waits up to 3 s until `capture`'s log holds `needle` at least `count` times.
fn wait_for_lines(capture: &Child, needle: &str, count: usize, what: &str) {
    wait_for(what, Duration::from_secs(3), || {
        std::fs::read_to_string(capture.log_path())
            .unwrap_or_default()
            .matches(needle)
            .count()
            >= count
    });
}

fn try_status(host: &Host) -> Value {
    host.exec(
        cpe_bin(),
        &["status", "--admin", "127.0.0.1:9631", "-o", "json"],
    )
    .ok()
    .and_then(|o| serde_json::from_str(&o).ok())
    .unwrap_or(Value::Null)
}

fn status(host: &Host) -> Value {
    let out = host
        .exec(
            cpe_bin(),
            &["status", "--admin", "127.0.0.1:9631", "-o", "json"],
        )
        .expect("cpe status");
    serde_json::from_str(&out).expect("status JSON")
}

fn start_agent(host: &Host, vip: Ipv4Addr, dir: &Path, log: &str) -> Child {
    let args: Vec<String> = [
        "vip",
        "--vip",
        &format!("{vip}/24"),
        "--interface",
        "eth0",
        "--node",
        &host.name,
        "--etcd",
        "http://127.0.0.1:2379",
        // etcd's own /health on a second listener, so that a firewall rule on that port
        // fails the health check without cutting the agent off etcd.
        "--health-url",
        "http://127.0.0.1:2381/health",
        "--admin",
        "127.0.0.1:9631",
        // /metrics and the probes on every address, as for an in-cluster Prometheus.
        "--metrics",
        "0.0.0.0:9632",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    host.spawn("cpe vip", &dir.join(log), cpe_bin(), &args)
        .expect("start cpe vip")
}

fn sigterm(c: &Child) {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &c.pid().to_string()])
        .status();
}
