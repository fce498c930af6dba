//! The bed of the end-to-end suites whose VIP agents run from one definition that lists
//! **no machines** (`vip_membership`, `vip_lb_discovery`): machines as namespaces on one
//! bridge, each with a real etcd member (started by the test, when it wants), the stand-in
//! API server (`cpe test-apiserver`) on `:6443`, and `cpe vip -f DEFINITION` under a
//! generated node name (`NODE_NAME`, as the static pod sets it) from its own etcd member;
//! a watcher samples the VIP's holder every 10 ms.
//!
//! It starts, stops and reads things; it judges nothing (the suites do).

#![allow(dead_code)] // each suite uses what it needs

use cpe_testkit::observe::Watch;
use cpe_testkit::{Child, EtcdCluster, Host, Net};
use serde_json::Value;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Every agent's admin listener (inside its own namespace).
pub const ADMIN: &str = "127.0.0.1:7446";

pub fn cpe() -> &'static str {
    cpe_e2e::cpe_bin()
}

/// Polls `f` every 20 ms until it holds; panics naming `what` after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    while !f() {
        assert!(
            t0.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    t0.elapsed()
}

/// A machine name as Cluster API generates them: `PREFIX-` and five random characters.
pub fn generated_name(prefix: &str, salt: u32) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
        ^ std::process::id()
        ^ salt.wrapping_mul(2654435761);
    let alphabet = b"bcdfghjklmnpqrstvwxz2456789";
    let suffix: String = (0..5)
        .map(|i| alphabet[((n >> (i * 5)) as usize) % alphabet.len()] as char)
        .collect();
    format!("{prefix}-{suffix}")
}

/// The one definition every machine runs from: no `controlPlane.machines`; `extra` is
/// added to the `virtualIP` section (e.g. `"  loadBalance: true\n"`).
pub fn definition(dir: &Path, cluster: &str, vip: Ipv4Addr, extra: &str) -> PathBuf {
    let text = format!(
        "cluster: {cluster}\nendpoint:\n  host: {vip}\n  port: 6443\nvirtualIP:\n  interface: eth0\n  leaseTTL: 2s\n  admin: {ADMIN}\n{extra}controlPlane:\n  replicas: 3\n"
    );
    let p = dir.join("endpoint.yaml");
    std::fs::write(&p, text).unwrap();
    p
}

pub struct Machine {
    pub host: Host,
    pub node: String,
    pub api: Option<Child>,
    pub agent: Option<Child>,
}

pub struct Bed {
    pub epoch: Instant,
    pub watch: Watch,
    pub machines: Vec<Machine>,
    pub etcd: Option<EtcdCluster>,
    pub vip: Ipv4Addr,
    pub definition: PathBuf,
    pub client: Host,
    pub net: Net,
    pub dir: tempfile::TempDir,
}

impl Bed {
    /// Three machines `cp1..cp3` (named `PREFIX-xxxxx` as nodes) and a client on a fresh
    /// net `tag`; nothing started. `extra` goes to the definition's `virtualIP` section.
    pub fn new(tag: &str, cluster: &str, node_prefix: &str, extra: &str) -> Bed {
        let dir = tempfile::Builder::new()
            .prefix(&format!("{tag}-"))
            .tempdir()
            .unwrap();
        let net = Net::new(tag).unwrap();
        let hosts: Vec<Host> = (1..=3)
            .map(|i| net.add_host(&format!("cp{i}"), 10 + i as u8).unwrap())
            .collect();
        let client = net.add_host("client", 50).unwrap();
        let vip = net.addr(100);
        let epoch = Instant::now();
        let watch = Watch::start(&hosts, &client, vip, Duration::from_millis(10), epoch).unwrap();
        let definition = definition(dir.path(), cluster, vip, extra);
        let machines = hosts
            .iter()
            .enumerate()
            .map(|(i, h)| Machine {
                host: h.clone(),
                node: generated_name(node_prefix, i as u32),
                api: None,
                agent: None,
            })
            .collect();
        Bed {
            epoch,
            watch,
            machines,
            etcd: None,
            vip,
            definition,
            client,
            net,
            dir,
        }
    }

    pub fn hosts(&self) -> Vec<Host> {
        self.machines.iter().map(|m| m.host.clone()).collect()
    }

    pub fn log(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }

    pub fn start_api(&mut self, i: usize) {
        let h = self.machines[i].host.clone();
        let args: Vec<String> = [
            "test-apiserver",
            "--listen",
            "0.0.0.0:6443",
            "--name",
            &h.name,
            "--tls-dir",
            &self.dir.path().join("pki").to_string_lossy(),
            "--san",
            "127.0.0.1",
            "--san",
            &self.vip.to_string(),
            "--san",
            &h.addr.to_string(),
        ]
        .map(String::from)
        .to_vec();
        let log = self.log(&format!("api-{}", h.name));
        self.machines[i].api = Some(
            h.spawn(&format!("api {}", h.name), &log, cpe(), &args)
                .unwrap(),
        );
    }

    pub fn wait_api(&self, i: usize) -> Duration {
        let h = &self.machines[i].host;
        wait_for(
            &format!("API server on {}", h.name),
            Duration::from_secs(30),
            || {
                h.exec(
                    "curl",
                    &["-sfk", "-m", "1", "https://127.0.0.1:6443/readyz"],
                )
                .is_ok()
            },
        )
    }

    /// `cpe vip -f DEFINITION --etcd http://127.0.0.1:2379 EXTRA...` with `NODE_NAME` set
    /// (no `--node`): the agent starts from its own member (the testkit's etcd is plain
    /// HTTP; the definition's default is kubeadm's `https://127.0.0.1:2379`).
    pub fn start_agent(&mut self, i: usize, extra: &[String]) {
        let m = &self.machines[i];
        let mut cmd = m.host.command(cpe());
        cmd.env("NODE_NAME", &m.node)
            .args([
                "vip",
                "-f",
                &self.definition.to_string_lossy(),
                "--etcd",
                "http://127.0.0.1:2379",
            ])
            .args(extra);
        let log = self.log(&format!("agent-{}", m.host.name));
        let c = Child::spawn(&format!("cpe vip {}", m.node), cmd, &log).unwrap();
        self.machines[i].agent = Some(c);
    }

    /// `cpe status -o json` of machine `i`'s agent (`null` when it does not answer).
    pub fn status(&self, i: usize) -> Value {
        self.machines[i]
            .host
            .exec(cpe(), &["status", "--admin", ADMIN, "-o", "json"])
            .ok()
            .and_then(|o| serde_json::from_str(&o).ok())
            .unwrap_or(Value::Null)
    }

    /// The machine holding the VIP now, if exactly one does.
    pub fn holder(&self) -> Option<usize> {
        let cur = self.watch.current();
        if cur.len() != 1 {
            return None;
        }
        self.machines.iter().position(|m| m.host.name == cur[0])
    }

    pub fn agent_log(&self, i: usize) -> String {
        std::fs::read_to_string(self.log(&format!("agent-{}", self.machines[i].host.name)))
            .unwrap_or_default()
    }

    pub fn now(&self) -> Duration {
        self.epoch.elapsed()
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for m in &self.machines {
                let p = self.dir.path().join(format!("agent-{}.log", m.host.name));
                eprintln!(
                    "--- agent {} ({}) ---\n{}",
                    m.host.name,
                    m.node,
                    cpe_testkit::child::tail_file(&p, 40)
                );
            }
        }
        // Agents first (they hold the VIP), then API servers; etcd and the net drop after.
        for m in &mut self.machines {
            if let Some(mut a) = m.agent.take() {
                a.terminate(Duration::from_secs(5));
            }
            if let Some(mut a) = m.api.take() {
                a.kill();
            }
        }
    }
}
