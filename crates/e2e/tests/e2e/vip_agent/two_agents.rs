//! Two `cpe vip` agents on one bridge, one etcd: the VIP moves to the other machine when the
//! holder's health check fails and on the holder's SIGTERM, and a watcher sampling both
//! machines never sees it on both at once.

use super::*;
use cpe_testkit::{require_programs, require_root, Net};

/// Samples both hosts until `stop`; returns the samples that saw the VIP on both.
fn watch_pair(
    a: Host,
    c: Host,
    vip: Ipv4Addr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<(usize, Vec<Duration>)> {
    std::thread::spawn(move || {
        let t0 = Instant::now();
        let (mut n, mut both) = (0, vec![]);
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let (x, y) = (a.has_addr(vip).unwrap(), c.has_addr(vip).unwrap());
            n += 1;
            if x && y {
                both.push(t0.elapsed());
            }
        }
        (n, both)
    })
}

#[test]
fn two_agents_hand_over_on_health_failure_and_sigterm() {
    require_root();
    require_programs(&["etcd", "etcdctl", "nft", "ip"]);
    let dir = tempfile::tempdir().unwrap();
    let net = Net::new("vipho").unwrap();
    let a = net.add_host("a", 11).unwrap();
    let c = net.add_host("c", 13).unwrap();
    let vip = net.addr(100);
    let ea = a.addr;
    let _etcd = one_member_etcd(
        &a,
        dir.path(),
        &format!("http://127.0.0.1:2379,http://{ea}:2379,http://127.0.0.1:2381,http://{ea}:2381"),
        &format!("http://{ea}:2379"),
    );
    let agent = |h: &Host, etcd: &str, health: &str, log: &str| {
        let args: Vec<String> = [
            "vip",
            "--vip",
            &format!("{vip}/24"),
            "--interface",
            "eth0",
            "--node",
            &h.name,
            "--etcd",
            etcd,
            "--health-url",
            health,
            "--admin",
            "127.0.0.1:9631",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        h.spawn("cpe vip", &dir.path().join(log), cpe_bin(), &args)
            .unwrap()
    };
    let mut agent_a = agent(
        &a,
        "http://127.0.0.1:2379",
        "http://127.0.0.1:2381/health",
        "a.log",
    );
    wait_for("a to hold the VIP", Duration::from_secs(10), || {
        a.has_addr(vip).unwrap()
    });
    // c's "API server" is its own admin listener: healthy as long as c runs, and not
    // cut off with etcd when c is partitioned below.
    let mut agent_c = agent(
        &c,
        &format!("http://{ea}:2379"),
        "tcp://127.0.0.1:9631",
        "c.log",
    );
    wait_for("c to campaign", Duration::from_secs(10), || {
        try_status(&c)["role"] == "candidate"
    });
    assert_eq!(status(&c)["holder"], "a");

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = watch_pair(a.clone(), c.clone(), vip, stop.clone());

    // a's health check fails (its own API server "dies"): c takes over.
    a.exec(
        "nft",
        &["add table inet vipho; add chain inet vipho out { type filter hook output priority 0; }; add rule inet vipho out ip daddr 127.0.0.1 tcp dport 2381 reject with tcp reset"],
    )
    .unwrap();
    let t = wait_for("c to take the VIP", Duration::from_secs(5), || {
        c.has_addr(vip).unwrap()
    });
    eprintln!("health failure on the holder -> VIP on the other machine: {t:?}");
    assert!(!a.has_addr(vip).unwrap());
    wait_for("etcd to name c", Duration::from_secs(3), || {
        try_status(&a)["holder"] == "c"
    });

    // a recovers and waits behind c. c is cut off from etcd (which runs on a): it drops
    // the VIP at its lease deadline without hearing from anyone; a takes over once etcd
    // expires c's lease.
    a.exec("nft", &["delete table inet vipho"]).unwrap();
    wait_for("a to campaign again", Duration::from_secs(5), || {
        try_status(&a)["role"] == "candidate"
    });
    c.partition_from(&[a.addr]).unwrap();
    let t0 = Instant::now();
    wait_for(
        "c to drop the VIP at its deadline",
        Duration::from_secs(5),
        || !c.has_addr(vip).unwrap(),
    );
    let dropped = t0.elapsed();
    wait_for("a to take the VIP", Duration::from_secs(6), || {
        a.has_addr(vip).unwrap()
    });
    eprintln!(
        "holder partitioned from etcd -> it dropped the VIP after {dropped:?}, the other machine held it after {:?}",
        t0.elapsed()
    );
    let log = std::fs::read_to_string(agent_c.log_path()).unwrap();
    assert!(
        log.contains("HOLDER->SUSPENDED (lease not renewed before its deadline"),
        "{log}"
    );
    c.heal().unwrap();
    wait_for("c to campaign again", Duration::from_secs(10), || {
        try_status(&c)["role"] == "candidate"
    });

    // a is stopped (planned handover): c takes over at once.
    sigterm(&agent_a);
    let t = wait_for("c to take the VIP", Duration::from_secs(5), || {
        c.has_addr(vip).unwrap()
    });
    eprintln!("SIGTERM on the holder -> VIP on the other machine: {t:?}");
    wait_for("a to exit", Duration::from_secs(5), || {
        !agent_a.is_running()
    });
    assert!(!a.has_addr(vip).unwrap());
    sigterm(&agent_c);
    wait_for("c to exit", Duration::from_secs(5), || {
        !agent_c.is_running()
    });
    assert!(!c.has_addr(vip).unwrap());

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (samples, both) = watcher.join().unwrap();
    assert!(samples > 10, "the watcher barely ran ({samples} samples)");
    assert!(both.is_empty(), "both machines held the VIP at {both:?}");
}
