//! The load-balancing VIP discovers its backends (issue 11, in-agent discovery), end to
//! end as root: three machines as namespaces, each with a real etcd member, the stand-in
//! API server (`cpe test-apiserver`) on `:6443` and `cpe vip --load-balance` from one
//! definition that lists **no machines**, with no `--backend`: each agent's load balancer
//! starts from its own API server and learns the others from the member list of its own
//! etcd (the `etcd` source, implied). A client sends an HTTPS request to `VIP:6443/readyz`
//! on a fresh connection every 20 ms; a watcher samples the VIP's holder every 10 ms.
//!
//! In order, on one bed:
//! 1. every agent's load balancer lists all three API servers (origin `etcd`, `UP`), and
//!    caches them in its own `vip-lb-6444.json`;
//! 2. Cluster API's rolling replacement of one machine: a new machine (generated name, new
//!    address) joins (etcd `member add`, API server, agent) → its API server becomes a
//!    backend of every load balancer, and the holder's sends it requests;
//! 3. an old machine (not the holder) leaves as Cluster API removes it (etcd leadership
//!    moved off, `member remove`, then the machine stopped) → its API server leaves every
//!    load balancer;
//!
//! with no agent restarted, the VIP never moved and never on two machines, and no failed
//! request beyond those in flight on the removed API server when it was stopped. Timings
//! are printed (`--nocapture`), bounded loosely (2 shared cores).
//!
//! Needs root, `etcd`, `etcdctl`, `curl`, `ip`; fails (never skips) without.

mod membership_bed;

use cpe_testkit::observe::{Prober, Target};
use cpe_testkit::{require_programs, require_root, EtcdCluster};
use membership_bed::{cpe, generated_name, wait_for, Bed, Machine, ADMIN};
use serde_json::Value;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What only this suite reads from the bed.
impl Bed {
    fn cache_dir(&self, i: usize) -> PathBuf {
        // Every namespace sees the same file system: one cache directory per machine.
        self.dir
            .path()
            .join(format!("cache-{}", self.machines[i].host.name))
    }

    /// `cpe vip -f DEFINITION` (load balancing, no machines, no `--backend`) with its own
    /// cache directory.
    fn start_lb_agent(&mut self, i: usize) {
        let cache = self.cache_dir(i).to_string_lossy().into_owned();
        self.start_agent(i, &["--cache-dir".to_string(), cache]);
    }

    /// The load balancer's backends of machine `i` that are `UP`, and all it lists (not
    /// the removed ones still draining).
    fn backends(&self, i: usize) -> (BTreeSet<String>, BTreeSet<String>) {
        let s = self.status(i);
        let list = s["load_balancer"]["backends"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let name = |b: &Value| b["name"].as_str().unwrap_or_default().to_string();
        let up = list
            .iter()
            .filter(|b| b["state"].as_str() == Some("up"))
            .map(name)
            .collect();
        (up, list.iter().map(name).collect())
    }

    fn api_addr(&self, i: usize) -> String {
        format!("{}:6443", self.machines[i].host.addr)
    }
}

#[test]
fn the_load_balancing_vip_follows_a_rolling_replacement_without_a_machine_list() {
    require_root();
    require_programs(&["ip", "etcd", "etcdctl", "curl"]);
    let mut bed = Bed::new("vdlb", "vdlb", "prod-cp", "  loadBalance: true\n");
    let hosts = bed.hosts();
    bed.etcd = Some(EtcdCluster::start(&hosts, bed.dir.path()).unwrap());
    for i in 0..3 {
        bed.start_api(i);
    }
    for i in 0..3 {
        bed.wait_api(i);
    }
    for i in 0..3 {
        bed.start_lb_agent(i);
    }

    // 1. Every load balancer finds all three API servers from etcd.
    let all: BTreeSet<String> = (0..3).map(|i| bed.api_addr(i)).collect();
    let t = wait_for(
        "every load balancer with the three API servers up",
        Duration::from_secs(60),
        || (0..3).all(|i| bed.backends(i).0 == all),
    );
    println!(
        "start: every in-agent load balancer has the 3 API servers up {:.2} s after the agents started (no machine list, no --backend)",
        t.as_secs_f64()
    );
    wait_for("one holder", Duration::from_secs(30), || {
        bed.holder().is_some()
    });
    let holder = bed.holder().unwrap();
    for i in 0..3 {
        let s = bed.status(i);
        let lb = &s["load_balancer"];
        for b in lb["backends"].as_array().unwrap() {
            let origin: Vec<&str> = b["origin"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|o| o.as_str())
                .collect();
            assert_eq!(origin, ["etcd"], "{b}");
            assert!(b["active_connections"].is_number(), "{b}");
            assert!(b["reason"].is_string(), "{b}");
        }
        let src = &lb["discovery"]["sources"][0];
        assert_eq!(src["source"], "etcd", "{lb}");
        assert_eq!(src["state"], "ok", "{lb}");
        let cache = bed.cache_dir(i).join("vip-lb-6444.json");
        assert_eq!(
            lb["discovery"]["cache"]["path"].as_str(),
            Some(cache.to_string_lossy().as_ref()),
            "{lb}"
        );
        let cached = std::fs::read_to_string(&cache).unwrap_or_default();
        for a in &all {
            assert!(cached.contains(a.as_str()), "{}: {cached}", cache.display());
        }
        // `cpe status` shows the backend table after the VIP's rows.
        let text = bed.machines[i]
            .host
            .exec(cpe(), &["status", "--admin", ADMIN])
            .unwrap();
        assert!(
            text.contains("BACKEND") && text.contains("discovery etcd: ok"),
            "{text}"
        );
        for a in &all {
            assert!(text.contains(a.as_str()), "{text}");
        }
    }
    let pids: Vec<u32> = bed
        .machines
        .iter()
        .map(|m| m.agent.as_ref().unwrap().pid())
        .collect();

    // The client from now on.
    let prober = Prober::start(
        &bed.client,
        Target {
            addr: SocketAddr::new(bed.vip.into(), 6443),
            https: true,
            path: "/readyz".into(),
        },
        Duration::from_millis(20),
        Duration::from_secs(2),
        bed.epoch,
    )
    .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let t_start = bed.now();

    // 2. A new machine joins: new name, new address, its etcd member added first.
    let h4 = bed.net.add_host("cp4", 14).unwrap();
    bed.watch.add_host(&h4).unwrap();
    bed.machines.push(Machine {
        host: h4.clone(),
        node: generated_name("prod-cp", 4),
        api: None,
        agent: None,
    });
    let t_add = Instant::now();
    bed.etcd.as_mut().unwrap().add(&h4).unwrap();
    let member_added = t_add.elapsed();
    bed.start_api(3);
    bed.wait_api(3);
    let api_ready = t_add.elapsed();
    bed.start_lb_agent(3);
    let new = bed.api_addr(3);
    wait_for(
        "the new API server up in every load balancer",
        Duration::from_secs(60),
        || (0..3).all(|i| bed.backends(i).0.contains(&new)),
    );
    let in_lb = t_add.elapsed();
    let h4_name = h4.name.clone();
    let t_served = wait_for(
        "the holder's load balancer sending requests to the new API server",
        Duration::from_secs(30),
        || {
            prober
                .requests()
                .0
                .iter()
                .any(|r| r.backend.as_deref() == Some(h4_name.as_str()))
        },
    );
    println!(
        "machine added ({}, {new}): etcd member added after {:.2} s, its API server ready at {:.2} s, UP in every load balancer at {:.2} s, first client request through the VIP to it {:.2} s later",
        bed.machines[3].node,
        member_added.as_secs_f64(),
        api_ready.as_secs_f64(),
        in_lb.as_secs_f64(),
        t_served.as_secs_f64()
    );

    // 3. An old machine leaves (not the holder), as Cluster API removes it.
    let gone = (0..3).find(|&i| i != holder).unwrap();
    let gone_addr = bed.api_addr(gone);
    let t_rm = Instant::now();
    {
        let etcd = bed.etcd.as_mut().unwrap();
        let idx = etcd.index_of(&bed.machines[gone].host).unwrap();
        etcd.move_leader_off(idx).unwrap();
        etcd.remove(idx).unwrap();
    }
    let member_removed = t_rm.elapsed();
    let left: Vec<usize> = (0..4).filter(|&i| i != gone).collect();
    wait_for(
        "the removed API server out of every other load balancer",
        Duration::from_secs(60),
        || {
            left.iter().all(|&i| {
                let (up, listed) = bed.backends(i);
                !listed.contains(&gone_addr) && up.len() == 3
            })
        },
    );
    let out_of_lb = t_rm.elapsed();
    // Then the machine goes: its agent, then its API server.
    if let Some(mut a) = bed.machines[gone].agent.take() {
        a.terminate(Duration::from_secs(5));
    }
    let t_kill0 = bed.now();
    if let Some(mut a) = bed.machines[gone].api.take() {
        a.kill();
    }
    let t_kill1 = bed.now();
    println!(
        "machine removed ({}, {gone_addr}): etcd member removed after {:.2} s, out of every other load balancer at {:.2} s",
        bed.machines[gone].node,
        member_removed.as_secs_f64(),
        out_of_lb.as_secs_f64()
    );
    std::thread::sleep(Duration::from_secs(3));
    let t_end = bed.now();
    drop(prober_stop(
        prober, t_start, t_end, t_kill0, t_kill1, &bed, gone,
    ));

    // No agent restarted, the VIP never moved and was never on two machines.
    for (i, pid) in pids.iter().enumerate().filter(|(i, _)| *i != gone) {
        let a = bed.machines[i].agent.as_mut().unwrap();
        assert!(a.is_running(), "agent {i} exited:\n{}", bed.agent_log(i));
        assert_eq!(a.pid(), *pid);
    }
    let moves = bed.watch.changes(t_start, t_end);
    assert!(moves.is_empty(), "the VIP moved: {moves:?}");
    assert_eq!(bed.holder(), Some(holder));
    let doubles = bed.watch.doubles(Duration::ZERO, bed.now());
    assert!(doubles.is_empty(), "two holders at once: {doubles:?}");
    let log = bed.agent_log(holder);
    assert!(log.contains("backend set changed by discovery"), "{log}");
    for &i in &left {
        assert!(
            !bed.agent_log(i).contains("panicked"),
            "{}",
            bed.agent_log(i)
        );
    }
}

/// Judges the client's requests over the replacement: none failed apart from those in
/// flight on the removed API server when it was stopped (the client cannot tell which
/// server a failed request was on, so: at most the requests in flight at that instant).
fn prober_stop(
    prober: Prober,
    from: Duration,
    to: Duration,
    kill0: Duration,
    kill1: Duration,
    bed: &Bed,
    gone: usize,
) -> Prober {
    let reqs = prober.requests();
    let failed = reqs.failed(from, to);
    let in_flight = reqs
        .0
        .iter()
        .filter(|r| r.start <= kill1 && r.end >= kill0)
        .count();
    let gone_name = &bed.machines[gone].host.name;
    let on_gone_after = reqs
        .0
        .iter()
        .filter(|r| r.start > kill1 && r.backend.as_deref() == Some(gone_name.as_str()))
        .count();
    let mut spread: std::collections::BTreeMap<String, usize> = Default::default();
    for r in reqs.0.iter().filter(|r| r.start >= from && r.end <= to) {
        *spread
            .entry(r.backend.clone().unwrap_or_else(|| "-".into()))
            .or_default() += 1;
    }
    println!(
        "client over the replacement: {} requests, {} failed (in flight when the removed API server was killed: {in_flight}), by API server: {spread:?}",
        reqs.count(from, to),
        failed.len()
    );
    assert!(
        failed.len() <= in_flight,
        "{} failed requests, more than the {in_flight} in flight at the kill: {:?}",
        failed.len(),
        failed.iter().take(5).collect::<Vec<_>>()
    );
    let before_kill: Vec<_> = failed.iter().filter(|r| r.end < kill0).collect();
    assert!(
        before_kill.is_empty(),
        "requests failed while machines were added and removed from etcd: {before_kill:?}"
    );
    assert_eq!(
        on_gone_after, 0,
        "requests answered by the removed machine after it was stopped"
    );
    prober
}
