//! The kernel enforces the lease (issue #16): three machines (namespaces on one bridge,
//! a real three-member etcd, `cpe test-apiserver` and `cpe vip` on each) and a client,
//! and the holder's agent made unable to act: frozen (SIGSTOP) while its API server dies,
//! killed together with its guard (SIGKILL to the whole process group), or starved of CPU
//! (a cgroup with a 1% CPU quota) while its API server dies. In each the address the
//! frozen agent added must go by itself at its lifetime's end (no later than the lease
//! deadline), another machine must take the VIP within a lease TTL and a second, and two
//! machines must never hold it at once. Times are printed; the bounds are generous.
//!
//! Self-contained on cpe_testkit's public API (net, etcd, processes, the holder watcher); a
//! test binary of its own, like `vip_e2e.rs`, since it measures times.
//! Needs root, `etcd`, `etcdctl`, `curl`, `ip`; fails (never skips) without.

use cpe_testkit::observe::Watch;
use cpe_testkit::{require_programs, require_root, Child, EtcdCluster, Host, Net};
use serde_json::Value;
use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const TTL: Duration = Duration::from_secs(2);
const ADMIN: &str = "127.0.0.1:7445";
/// The issue's bound for the next holder: a lease TTL and a second.
const ISSUE_BOUND: Duration = Duration::from_secs(3);

struct Bed {
    watch: Watch,
    agents: Vec<Option<Child>>,
    apis: Vec<Option<Child>>,
    etcd: EtcdCluster,
    hosts: Vec<Host>,
    vip: Ipv4Addr,
    epoch: Instant,
    _client: Host,
    _net: Net,
    dir: tempfile::TempDir,
}

impl Bed {
    fn start() -> Bed {
        require_root();
        require_programs(&["ip", "etcd", "etcdctl", "curl"]);
        let dir = tempfile::Builder::new().prefix("viplt-").tempdir().unwrap();
        let net = Net::new("viplt").unwrap();
        let hosts: Vec<Host> = (1..=3)
            .map(|i| net.add_host(&format!("cp{i}"), 10 + i as u8).unwrap())
            .collect();
        let client = net.add_host("client", 50).unwrap();
        let vip = net.addr(100);
        let etcd = EtcdCluster::start(&hosts, dir.path()).unwrap();
        etcd.wait_healthy(Duration::from_secs(30)).unwrap();
        let epoch = Instant::now();
        let watch = Watch::start(&hosts, &client, vip, Duration::from_millis(10), epoch).unwrap();
        let mut bed = Bed {
            watch,
            agents: (0..3).map(|_| None).collect(),
            apis: (0..3).map(|_| None).collect(),
            etcd,
            hosts,
            vip,
            epoch,
            _client: client,
            _net: net,
            dir,
        };
        // The first API server makes the shared test PKI; the others reuse it.
        for i in 0..3 {
            bed.start_api(i);
        }
        for i in 0..3 {
            bed.start_agent(i);
        }
        bed
    }

    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    fn log(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }

    fn start_api(&mut self, i: usize) {
        let h = &self.hosts[i];
        let mut args: Vec<String> = [
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
        ]
        .map(String::from)
        .to_vec();
        args.extend(["--san".to_string(), h.addr.to_string()]);
        let c = h
            .spawn(
                &format!("api {}", h.name),
                &self.log(&format!("api-{}", h.name)),
                cpe(),
                &args,
            )
            .unwrap();
        self.apis[i] = Some(c);
        wait_for(
            &format!("API server on {}", h.name),
            Duration::from_secs(20),
            || {
                h.exec(
                    "curl",
                    &["-sfk", "-m", "1", "https://127.0.0.1:6443/readyz"],
                )
                .is_ok()
            },
        );
    }

    /// `cpe vip` in a process group of its own (its guard, which it starts, joins it), so
    /// that the whole group can be killed at once as a cgroup or pod kill would.
    fn start_agent(&mut self, i: usize) {
        let h = &self.hosts[i];
        let own = format!("http://{}:2379", h.addr);
        let mut eps: Vec<String> = self.etcd.endpoints().split(',').map(String::from).collect();
        eps.sort_by_key(|e| *e != own);
        let mut cmd = h.command(cpe());
        cmd.args([
            "vip",
            "--vip",
            &format!("{}/24", self.vip),
            "--interface",
            "eth0",
            "--node",
            &h.name,
            "--etcd",
            &eps.join(","),
            "--health-url",
            "https://127.0.0.1:6443/readyz",
            "--lease-ttl",
            "2s",
            "--admin",
            ADMIN,
        ])
        .process_group(0);
        let log = self.log(&format!("agent-{}", h.name));
        self.agents[i] = Some(Child::spawn(&format!("cpe vip {}", h.name), cmd, &log).unwrap());
    }

    /// The single holder, once it has held for a second.
    fn stable_holder(&self) -> usize {
        wait_for("one steady holder", Duration::from_secs(60), || {
            let cur = self.watch.current();
            let since = self.watch.holders().last().map(|c| c.t).unwrap_or_default();
            cur.len() == 1 && self.now() - since > Duration::from_secs(1)
        });
        let name = &self.watch.current()[0];
        self.hosts.iter().position(|h| h.name == *name).unwrap()
    }

    /// When (since the epoch) a machine other than `old` first held the VIP after `t0`.
    fn takeover(&self, old: usize, t0: Duration) -> Option<Duration> {
        self.watch
            .holders()
            .iter()
            .find(|c| c.t >= t0 && c.holders.iter().any(|h| *h != self.hosts[old].name))
            .map(|c| c.t)
    }

    /// When `old` stopped holding the VIP after `t0`.
    fn released(&self, old: usize, t0: Duration) -> Option<Duration> {
        self.watch
            .holders()
            .iter()
            .find(|c| c.t >= t0 && !c.holders.contains(&self.hosts[old].name))
            .map(|c| c.t)
    }

    fn status(&self, i: usize) -> Value {
        self.hosts[i]
            .exec(cpe(), &["status", "--admin", ADMIN, "-o", "json"])
            .ok()
            .and_then(|o| serde_json::from_str(&o).ok())
            .unwrap_or(Value::Null)
    }

    fn agent_log(&self, i: usize) -> String {
        std::fs::read_to_string(self.log(&format!("agent-{}", self.hosts[i].name)))
            .unwrap_or_default()
    }

    /// The common checks: the VIP left `old` and went to exactly one other machine within
    /// `bound` of `t0`, and nobody ever saw two holders. Returns (released, takeover) in
    /// seconds after `t0`.
    fn check_moved(&self, what: &str, old: usize, t0: Duration, bound: Duration) -> (f64, f64) {
        wait_for(
            &format!("{what}: another holder"),
            Duration::from_secs(15),
            || self.takeover(old, t0).is_some(),
        );
        let released = self.released(old, t0).unwrap() - t0;
        let took = self.takeover(old, t0).unwrap() - t0;
        let doubles = self.watch.doubles(t0, self.now());
        assert!(
            doubles.is_empty(),
            "{what}: two holders at once: {doubles:?}"
        );
        assert!(
            took <= bound,
            "{what}: the next holder took {took:?} (bound: {bound:?})\n{}",
            self.timeline(t0)
        );
        (released.as_secs_f64(), took.as_secs_f64())
    }

    fn timeline(&self, t0: Duration) -> String {
        self.watch
            .holders()
            .iter()
            .filter(|c| c.t + Duration::from_secs(1) >= t0)
            .map(|c| format!("{:8.3}s {:?}\n", c.t.as_secs_f64(), c.holders))
            .collect()
    }
}

/// `kill -SIG -- TARGET` (a negative target is a process group).
fn signal(target: i64, sig: &str) {
    let st = std::process::Command::new("kill")
        .args([&format!("-{sig}"), "--", &target.to_string()])
        .status()
        .unwrap();
    assert!(st.success(), "kill -{sig} {target}");
}

/// The `cpe` binary (found or built by cpe-e2e).
fn cpe() -> &'static str {
    cpe_e2e::cpe_bin()
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(
            t0.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The processes left in a process group.
fn group_members(pgid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp ...: comm may hold spaces, so split after ')'.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.get(2).and_then(|p| p.parse::<u32>().ok()) == Some(pgid) && f[0] != "Z" {
            out.push(pid);
        }
    }
    out
}

/// A cgroup (v1 `cpu` controller, or v2 `cpu.max` when the v2 hierarchy has it) capping
/// processes at `quota_us` of CPU time per `period_us`; removed (the processes moved back
/// to the root) on drop.
struct Starved {
    dir: PathBuf,
    root_procs: PathBuf,
    pids: Vec<u32>,
}

impl Starved {
    fn new(name: &str, pids: &[u32], quota_us: u32, period_us: u32) -> Starved {
        let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers");
        let (base, v2) = if std::fs::read_to_string(v2).is_ok_and(|c| c.contains("cpu")) {
            (PathBuf::from("/sys/fs/cgroup"), true)
        } else {
            (PathBuf::from("/sys/fs/cgroup/cpu"), false)
        };
        if v2 {
            // Children get the cpu controller only when the root hands it down (systemd
            // usually has); best effort, the write below says if it did not.
            let _ = std::fs::write(base.join("cgroup.subtree_control"), "+cpu");
        }
        let dir = base.join(name);
        std::fs::create_dir_all(&dir).expect("cgroup (needs a writable cpu controller)");
        if v2 {
            std::fs::write(dir.join("cpu.max"), format!("{quota_us} {period_us}")).unwrap();
        } else {
            std::fs::write(dir.join("cpu.cfs_period_us"), period_us.to_string()).unwrap();
            std::fs::write(dir.join("cpu.cfs_quota_us"), quota_us.to_string()).unwrap();
        }
        for p in pids {
            std::fs::write(dir.join("cgroup.procs"), p.to_string()).unwrap();
        }
        Starved {
            dir,
            root_procs: base.join("cgroup.procs"),
            pids: pids.to_vec(),
        }
    }
}

impl Drop for Starved {
    fn drop(&mut self) {
        for p in &self.pids {
            let _ = std::fs::write(&self.root_procs, p.to_string());
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

#[test]
fn a_frozen_killed_or_starved_holder_loses_the_vip_at_its_lease_deadline() {
    let mut bed = Bed::start();
    let mut figures = Vec::new();

    // (a) The holder's agent frozen for 8 s while its API server dies.
    let h = bed.stable_holder();
    let t0 = bed.now();
    bed.apis[h].as_mut().unwrap().kill();
    let pid = i64::from(bed.agents[h].as_ref().unwrap().pid());
    signal(pid, "STOP");
    let (released, took) = bed.check_moved("frozen agent", h, t0, ISSUE_BOUND);
    let frozen_log = bed.agent_log(h).len();
    std::thread::sleep(Duration::from_secs(8).saturating_sub(bed.now() - t0));
    signal(pid, "CONT");
    let t_resume = bed.now();
    std::thread::sleep(Duration::from_secs(3));
    let held_again = bed
        .watch
        .holders()
        .iter()
        .any(|c| c.t >= t_resume && c.holders.contains(&bed.hosts[h].name));
    assert!(
        !held_again,
        "the resumed agent put the VIP back\n{}",
        bed.timeline(t0)
    );
    assert!(bed.watch.doubles(t0, bed.now()).is_empty());
    let st = bed.status(h);
    assert_ne!(st["role"], "holder", "{st:#}");
    assert_eq!(st["holding"], false, "{st:#}");
    let after = bed.agent_log(h)[frozen_log..].to_string();
    eprintln!("resumed agent:\n{after}");
    figures.push(format!(
        "frozen agent (SIGSTOP 8 s, API server killed): address gone from {} after {released:.3} s, next holder after {took:.3} s",
        bed.hosts[h].name
    ));
    bed.start_api(h);

    // (b) Agent and guard SIGKILLed together (the whole process group).
    let h = bed.stable_holder();
    let pgid = bed.agents[h].as_ref().unwrap().pid();
    assert!(
        group_members(pgid).len() >= 2,
        "the agent and its guard share a process group: {:?}",
        group_members(pgid)
    );
    let t0 = bed.now();
    signal(-i64::from(pgid), "KILL");
    let (released, took) = bed.check_moved("agent and guard killed", h, t0, ISSUE_BOUND);
    assert!(group_members(pgid).is_empty(), "the guard survived");
    // The deadline is at most a TTL after the kill: nothing left on the old holder.
    std::thread::sleep((TTL + Duration::from_millis(500)).saturating_sub(bed.now() - t0));
    assert!(
        !bed.hosts[h].has_addr(bed.vip).unwrap(),
        "address left behind"
    );
    figures.push(format!(
        "agent + guard SIGKILLed: address gone from {} after {released:.3} s (the kernel), next holder after {took:.3} s",
        bed.hosts[h].name
    ));
    bed.agents[h].as_mut().unwrap().kill();
    bed.start_agent(h);

    // (c) The holder's agent starved while its API server dies: 1% of a CPU (1 ms every
    // 100 ms), then 0.1% (1 ms a second), where the agent can barely run at all. There a
    // renewal may still go out after the fault while the driver gets no CPU to extend the
    // address: the kernel removes it at the old deadline, but the lease lives a TTL after
    // that renewal, so the next holder may come up to a TTL later (a looser bound).
    let starved_bound = TTL * 2 + Duration::from_secs(1);
    for (quota, period, label, bound) in [
        (1000, 100_000, "1%", ISSUE_BOUND),
        (1000, 1_000_000, "0.1%", starved_bound),
    ] {
        let h = bed.stable_holder();
        let pgid = bed.agents[h].as_ref().unwrap().pid();
        let starved = Starved::new(
            &format!("cpe-viplt-{}", std::process::id()),
            &group_members(pgid),
            quota,
            period,
        );
        let t0 = bed.now();
        bed.apis[h].as_mut().unwrap().kill();
        let what = format!("agent starved at {label} of a CPU");
        let (released, took) = bed.check_moved(&what, h, t0, bound);
        std::thread::sleep(Duration::from_secs(5));
        assert!(bed.watch.doubles(t0, bed.now()).is_empty());
        let t_took = t0 + Duration::from_secs_f64(took);
        let held_again = bed
            .watch
            .holders()
            .iter()
            .any(|c| c.t >= t_took && c.holders.contains(&bed.hosts[h].name));
        assert!(
            !held_again,
            "{what}: put the VIP back\n{}",
            bed.timeline(t0)
        );
        drop(starved);
        figures.push(format!(
            "{what}, API server killed: address gone from {} after {released:.3} s, next holder after {took:.3} s",
            bed.hosts[h].name
        ));
        bed.start_api(h);
    }
    for f in &figures {
        eprintln!("[lifetime] {f}");
    }
}
