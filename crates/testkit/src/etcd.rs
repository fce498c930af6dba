//! A real etcd cluster (Debian `etcd-server`), one member per host, started the way
//! `docs/testkit.md` describes: clients on `http://ADDR:2379` and `127.0.0.1:2379`, peers
//! on `:2380`. Health and leadership come from `etcdctl` run inside a member's host, as an
//! operator would see them. Members can be killed, restarted on their data, removed and
//! added (rolling replacement).
//!
//! It does not hide etcd: no client library, no retries beyond waiting for health.

use crate::{Child, Host};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// One member: its host, data directory and process (None while killed).
#[derive(Debug)]
pub struct EtcdMember {
    pub name: String,
    pub host: Host,
    data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    /// The `--initial-cluster` it was first started with, reused for restarts.
    initial_cluster: String,
    state: &'static str,
}

/// Three (or more) members; dropping it kills every member.
#[derive(Debug)]
pub struct EtcdCluster {
    /// Members in start order; removed members are taken out.
    pub members: Vec<EtcdMember>,
    dir: PathBuf,
}

impl EtcdMember {
    pub fn client_url(&self) -> String {
        format!("http://{}:2379", self.host.addr)
    }
    fn peer_url(&self) -> String {
        format!("http://{}:2380", self.host.addr)
    }
    /// Its data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
    /// Whether its process is running.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.is_running())
    }
    fn start(&mut self) -> Result<()> {
        let args: Vec<String> = [
            "--name",
            &self.name,
            "--data-dir",
            &self.data_dir.to_string_lossy(),
            "--listen-client-urls",
            &format!("{},http://127.0.0.1:2379", self.client_url()),
            "--advertise-client-urls",
            &self.client_url(),
            "--listen-peer-urls",
            &self.peer_url(),
            "--initial-advertise-peer-urls",
            &self.peer_url(),
            "--initial-cluster",
            &self.initial_cluster,
            "--initial-cluster-state",
            self.state,
            "--initial-cluster-token",
            "cpe-testkit",
            // Pre-vote, as etcd 3.5+ (what kubeadm runs) does by default; Debian's 3.4 does
            // not. Without it a member coming back from a cut link forces a needless leader
            // election, which the VIP holder pays for with a missed lease renewal.
            "--pre-vote",
            "--logger",
            "zap",
            "--log-outputs",
            "stderr",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let child = self
            .host
            .spawn(&format!("etcd {}", self.name), &self.log, "etcd", &args)?;
        self.child = Some(child);
        Ok(())
    }
    /// The last lines of its log.
    pub fn tail(&self, lines: usize) -> String {
        crate::child::tail_file(&self.log, lines)
    }
}

impl EtcdCluster {
    /// Starts one member per host (named after the host) under `dir` and waits until every
    /// member reports healthy.
    pub fn start(hosts: &[Host], dir: &Path) -> Result<EtcdCluster> {
        let initial = hosts
            .iter()
            .map(|h| format!("{}=http://{}:2380", h.name, h.addr))
            .collect::<Vec<_>>()
            .join(",");
        let mut members = Vec::new();
        for h in hosts {
            let mut m = EtcdMember {
                name: h.name.clone(),
                host: h.clone(),
                data_dir: dir.join(format!("etcd-{}", h.name)),
                log: dir.join(format!("etcd-{}.log", h.name)),
                child: None,
                initial_cluster: initial.clone(),
                state: "new",
            };
            m.start()?;
            members.push(m);
        }
        let c = EtcdCluster {
            members,
            dir: dir.to_path_buf(),
        };
        c.wait_healthy(Duration::from_secs(30))?;
        Ok(c)
    }

    /// Client URLs of the current members, comma separated (for `--etcd` and `etcdctl`).
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(|m| m.client_url())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Runs `etcdctl --endpoints=<members> ARGS` inside the host of the first running member.
    pub fn etcdctl(&mut self, args: &[&str]) -> Result<String> {
        let eps = self.endpoints();
        let host = self
            .members
            .iter_mut()
            .find_map(|m| m.is_running().then(|| m.host.clone()))
            .context("no etcd member is running")?;
        let mut c = host.command("etcdctl");
        c.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={eps}"))
            .args(["--dial-timeout=1s", "--command-timeout=2s"])
            .args(args);
        crate::net::run(c)
    }

    /// Like [`EtcdCluster::etcdctl`], retried for up to 20 s: etcd refuses membership changes
    /// ("unhealthy cluster") until every member has been connected for a few seconds, e.g.
    /// just after a restart.
    pub fn etcdctl_retry(&mut self, args: &[&str]) -> Result<String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match self.etcdctl(args) {
                Ok(o) => return Ok(o),
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(e) if format!("{e:#}").contains("not found") => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(500)),
            }
        }
    }

    /// Waits until every running member answers `endpoint health`.
    pub fn wait_healthy(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut all = true;
            let mut last = String::new();
            for m in &self.members {
                let mut c = m.host.command("etcdctl");
                c.env("ETCDCTL_API", "3").args([
                    &format!("--endpoints={}", m.client_url()),
                    "--dial-timeout=1s",
                    "--command-timeout=2s",
                    "endpoint",
                    "health",
                ]);
                if let Err(e) = crate::net::run(c) {
                    all = false;
                    last = format!("{}: {e:#}", m.name);
                    break;
                }
            }
            if all {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let logs: Vec<String> = self
                    .members
                    .iter()
                    .map(|m| format!("--- etcd {} ---\n{}", m.name, m.tail(15)))
                    .collect();
                bail!(
                    "etcd not healthy after {timeout:?}: {last}\n{}",
                    logs.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The index (in `members`) of the current leader, as `endpoint status` reports it.
    /// Members that do not answer are ignored.
    pub fn leader(&mut self) -> Result<usize> {
        let eps = self.endpoints();
        let host = self
            .members
            .iter_mut()
            .find_map(|m| m.is_running().then(|| m.host.clone()))
            .context("no etcd member is running")?;
        let (v, text) = endpoint_status(&host, &eps)?;
        for e in v.as_array().into_iter().flatten() {
            let st = &e["Status"];
            if st["leader"].is_number() && st["leader"] == st["header"]["member_id"] {
                let ep = e["Endpoint"].as_str().unwrap_or_default();
                if let Some(i) = self.members.iter().position(|m| m.client_url() == ep) {
                    return Ok(i);
                }
            }
        }
        bail!("no leader in endpoint status: {text}")
    }

    /// SIGKILLs member `i` (its data stays for [`EtcdCluster::restart`]).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            c.kill();
        }
    }

    /// Restarts a killed member on its data directory.
    pub fn restart(&mut self, i: usize) -> Result<()> {
        self.members[i].start()
    }

    /// If member `i` leads, hands leadership to another running member first
    /// (`etcdctl move-leader`), as Cluster API's control-plane controller does before it
    /// removes a member; the cluster then needs no election when `i` goes.
    pub fn move_leader_off(&mut self, i: usize) -> Result<()> {
        if self.leader()? != i {
            return Ok(());
        }
        let (v, _) = endpoint_status(&self.members[i].host, &self.endpoints())?;
        let target = v
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["Endpoint"].as_str() != Some(self.members[i].client_url().as_str()))
            .and_then(|e| e["Status"]["header"]["member_id"].as_u64())
            .context("no other member to hand leadership to")?;
        let mut c = self.members[i].host.command("etcdctl");
        c.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.members[i].client_url()))
            .args([
                "--dial-timeout=1s",
                "--command-timeout=5s",
                "move-leader",
                &format!("{target:x}"),
            ]);
        crate::net::run(c).context("etcdctl move-leader")?;
        Ok(())
    }

    /// Makes member `i` the leader (`etcdctl move-leader`, sent to the current leader).
    pub fn move_leader_to(&mut self, i: usize) -> Result<()> {
        let l = self.leader()?;
        if l == i {
            return Ok(());
        }
        let (v, _) = endpoint_status(&self.members[i].host, &self.members[i].client_url())?;
        let target = v[0]["Status"]["header"]["member_id"]
            .as_u64()
            .context("member status without its id")?;
        let mut c = self.members[l].host.command("etcdctl");
        c.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.members[l].client_url()))
            .args(["--dial-timeout=1s", "--command-timeout=5s"])
            .args(["move-leader", &format!("{target:x}")]);
        crate::net::run(c).context("etcdctl move-leader")?;
        Ok(())
    }

    /// Removes member `i` from the cluster (`etcdctl member remove`) and stops it.
    pub fn remove(&mut self, i: usize) -> Result<()> {
        let name = self.members[i].name.clone();
        let list = self.etcdctl(&["member", "list", "-w", "json"])?;
        let v: serde_json::Value = serde_json::from_str(&list)?;
        let id = v["members"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["name"].as_str() == Some(name.as_str()))
            .and_then(|m| m["ID"].as_u64())
            .with_context(|| format!("member {name} not in member list: {list}"))?;
        match self.etcdctl_retry(&["member", "remove", &format!("{id:x}")]) {
            Ok(_) => {}
            // An attempt that timed out on our side may have gone through.
            Err(e) if format!("{e:#}").contains("member not found") => {}
            Err(e) => return Err(e),
        }
        self.kill(i);
        self.members.remove(i);
        Ok(())
    }

    /// Adds a member on `host` (`etcdctl member add`, then starts it with
    /// `--initial-cluster-state existing`) and waits until the cluster is healthy.
    pub fn add(&mut self, host: &Host) -> Result<()> {
        let peer = format!("http://{}:2380", host.addr);
        self.etcdctl_retry(&["member", "add", &host.name, &format!("--peer-urls={peer}")])?;
        let mut initial: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url()))
            .collect();
        initial.push(format!("{}={peer}", host.name));
        let mut m = EtcdMember {
            name: host.name.clone(),
            host: host.clone(),
            data_dir: self.dir.join(format!("etcd-{}", host.name)),
            log: self.dir.join(format!("etcd-{}.log", host.name)),
            child: None,
            initial_cluster: initial.join(","),
            state: "existing",
        };
        m.start()?;
        self.members.push(m);
        self.wait_healthy(Duration::from_secs(30))
    }

    /// The position of the member running on `host`.
    pub fn index_of(&self, host: &Host) -> Option<usize> {
        self.members.iter().position(|m| m.host.ns == host.ns)
    }
}

/// `etcdctl endpoint status -w json` against `endpoints`, run inside `host`: the parsed
/// answer and its text. etcdctl exits non-zero when one member is down but still prints
/// the others, so the exit status is not looked at.
fn endpoint_status(host: &Host, endpoints: &str) -> Result<(serde_json::Value, String)> {
    let mut c = host.command("etcdctl");
    c.env("ETCDCTL_API", "3").args([
        &format!("--endpoints={endpoints}"),
        "--dial-timeout=1s",
        "--command-timeout=2s",
        "endpoint",
        "status",
        "-w",
        "json",
    ]);
    let text = String::from_utf8_lossy(&c.output()?.stdout).into_owned();
    let v = serde_json::from_str(text.trim())
        .with_context(|| format!("endpoint status output: {text}"))?;
    Ok((v, text))
}
