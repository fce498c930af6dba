//! `cpe lb --discover etcd` in front of the machines follows etcd's membership through a
//! rolling replacement that removes **every member its `--etcd` flags named**, end to end
//! as root: three machines as namespaces on one bridge, each with a real etcd member; a
//! host `lb` with `cpe lb --backend` every machine `--discover etcd --etcd` every member.
//! No API server runs: the test reads the backend set from the LB's `/status`, which is
//! what discovery decides (the backends are down, which does not matter to it).
//!
//! Cluster API's replacement, three times: a new machine joins (etcd `member add`), the
//! old one leaves (leadership moved off, `member remove`, namespace deleted). Then a
//! fourth machine joins. The LB must list exactly the three new machines after the third
//! replacement, and the fourth after it joined: by then no member the flags named is
//! left, so it can only learn them by asking the members the list names (before the fix,
//! its etcd client kept asking the removed members, failed, and kept the old set).
//!
//! Needs root, `etcd`, `etcdctl`, `curl`, `ip`; fails (never skips) without.

use cpe_testkit::{require_programs, require_root, Child, EtcdCluster, Host, Net};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const ADMIN: &str = "127.0.0.1:9630";

fn backends(lb: &Host) -> BTreeSet<String> {
    let Ok(text) = lb.exec(
        "curl",
        &["-sf", "-m", "2", &format!("http://{ADMIN}/status")],
    ) else {
        return BTreeSet::new();
    };
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    v["backends"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b["name"].as_str().map(String::from))
        .collect()
}

fn set(hosts: &[&Host]) -> BTreeSet<String> {
    hosts.iter().map(|h| format!("{}:6443", h.addr)).collect()
}

fn wait_set(lb: &Host, want: &BTreeSet<String>, what: &str, log: &Child) {
    let t0 = Instant::now();
    loop {
        let got = backends(lb);
        if &got == want {
            println!("[lb-etcd] {what}: {:?} after {:?}", want, t0.elapsed());
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "{what}: the LB lists {got:?}, expected {want:?}; its log:\n{}",
            log.tail(40)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn cpe_lb_follows_etcd_members_after_every_original_member_is_gone() {
    require_root();
    require_programs(&["etcd", "etcdctl", "curl", "ip"]);
    let dir = tempfile::Builder::new()
        .prefix("lbetcd-")
        .tempdir()
        .unwrap();
    let net = Net::new("lbetcd").unwrap();
    let originals: Vec<Host> = (1..=3)
        .map(|i| net.add_host(&format!("cp{i}"), 10 + i as u8).unwrap())
        .collect();
    let lb = net.add_host("lb", 60).unwrap();
    let mut etcd = EtcdCluster::start(&originals, dir.path()).unwrap();
    etcd.wait_healthy(Duration::from_secs(30)).unwrap();

    let mut args: Vec<String> = vec![
        "lb".into(),
        "--listen".into(),
        format!("{}:6443", lb.addr),
        "--admin".into(),
        ADMIN.into(),
    ];
    for h in &originals {
        args.extend(["--backend".into(), format!("{}:6443", h.addr)]);
    }
    args.extend([
        "--discover".into(),
        "etcd".into(),
        "--etcd".into(),
        etcd.endpoints(),
        "--discovery-etcd-interval".into(),
        "200ms".into(),
        "--health-check".into(),
        "tcp".into(),
        "--cache-dir".into(),
        dir.path().join("cache").to_string_lossy().into_owned(),
    ]);
    let log = dir.path().join("lb.log");
    let lb_proc = lb.spawn("cpe lb", &log, cpe_e2e::cpe_bin(), &args).unwrap();
    let refs: Vec<&Host> = originals.iter().collect();
    wait_set(&lb, &set(&refs), "the three machines", &lb_proc);

    let mut now: Vec<Host> = originals.clone();
    for (k, old) in originals.iter().enumerate() {
        let new = net.add_host(&format!("cp{}", 4 + k), 14 + k as u8).unwrap();
        etcd.add(&new).unwrap();
        let i = etcd.index_of(old).unwrap();
        etcd.move_leader_off(i).unwrap();
        etcd.remove(i).unwrap();
        net.remove_host(old).unwrap();
        now.retain(|h| h.ns != old.ns);
        now.push(new);
        let refs: Vec<&Host> = now.iter().collect();
        wait_set(
            &lb,
            &set(&refs),
            &format!("{} replaced by {}", old.name, now[2].name),
            &lb_proc,
        );
    }
    // No member the flags named is left: the LB must still follow.
    let late = net.add_host("cp7", 17).unwrap();
    etcd.add(&late).unwrap();
    now.push(late);
    let refs: Vec<&Host> = now.iter().collect();
    wait_set(&lb, &set(&refs), "cp7 joined", &lb_proc);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("the member list changed; asking its members from now on"),
        "{text}"
    );
}
