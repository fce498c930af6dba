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

use cpe_testkit::{require_programs, require_root, Child, Host, Net};
use serde_json::Value;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

const CPE: &str = env!("CARGO_BIN_EXE_cpe");

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
    host.exec(CPE, &["status", "--admin", "127.0.0.1:9631", "-o", "json"])
        .ok()
        .and_then(|o| serde_json::from_str(&o).ok())
        .unwrap_or(Value::Null)
}

fn status(host: &Host) -> Value {
    let out = host
        .exec(CPE, &["status", "--admin", "127.0.0.1:9631", "-o", "json"])
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
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    host.spawn("cpe vip", &dir.join(log), CPE, &args)
        .expect("start cpe vip")
}

fn sigterm(c: &Child) {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &c.pid().to_string()])
        .status();
}

#[test]
fn vip_agent_holds_announces_repairs_and_hands_over() {
    require_root();
    require_programs(&["etcd", "etcdctl", "nft", "tcpdump", "ping", "ip"]);
    let dir = tempfile::tempdir().unwrap();
    let net = Net::new("vipag").unwrap();
    let a = net.add_host("a", 11).unwrap();
    let b = net.add_host("b", 12).unwrap();
    let vip = net.addr(100);

    let _etcd = one_member_etcd(
        &a,
        dir.path(),
        "http://127.0.0.1:2379,http://127.0.0.1:2381",
        "http://127.0.0.1:2379",
    );

    // The peer listens for ARP before the agent starts.
    let tcpdump = capture(&b, dir.path(), "arp");

    let mut agent = start_agent(&a, vip, dir.path(), "agent.log");
    let took = wait_for("the VIP on a", Duration::from_secs(10), || {
        a.has_addr(vip).unwrap()
    });
    eprintln!("VIP held {took:?} after start");
    b.exec("ping", &["-c", "1", "-W", "2", &vip.to_string()])
        .expect("the peer reaches the VIP");
    let garp = format!("Request who-has {vip} tell {vip}");
    wait_for_lines(&tcpdump, &garp, 2, "two gratuitous ARPs on the peer");
    let s = status(&a);
    assert_eq!(s["kind"], "vip");
    assert_eq!(s["role"], "holder", "{s:#}");
    assert_eq!(s["holding"], true);
    assert_eq!(s["node"], "a");
    wait_for("etcd names a as holder", Duration::from_secs(3), || {
        try_status(&a)["holder"] == "a"
    });
    let table = a
        .exec(CPE, &["status", "--admin", "127.0.0.1:9631"])
        .unwrap();
    assert!(table.contains("holder (etcd)  a"), "{table}");

    // Someone deletes the address: it comes back.
    a.exec("ip", &["addr", "del", &format!("{vip}/24"), "dev", "eth0"])
        .unwrap();
    let back = wait_for("the VIP back on a", Duration::from_secs(3), || {
        a.has_addr(vip).unwrap()
    });
    eprintln!("deleted VIP restored after {back:?}");

    // The link flaps: once it is back up, the VIP is there and announced again.
    let garps = || {
        std::fs::read_to_string(tcpdump.log_path())
            .unwrap_or_default()
            .matches(&garp)
            .count()
    };
    std::thread::sleep(Duration::from_millis(1600)); // let the takeover burst finish
    let before = garps();
    a.exec("ip", &["link", "set", "eth0", "down"]).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    a.exec("ip", &["link", "set", "eth0", "up"]).unwrap();
    wait_for(
        "announcements after the link came back",
        Duration::from_secs(3),
        || garps() >= before + 2,
    );
    assert!(a.has_addr(vip).unwrap());
    assert_eq!(status(&a)["role"], "holder");

    // The health check fails (connection refused on its port): the VIP goes.
    a.exec(
        "nft",
        &["add table inet vipag; add chain inet vipag out { type filter hook output priority 0; }; add rule inet vipag out tcp dport 2381 reject with tcp reset"],
    )
    .unwrap();
    let gone = wait_for("the VIP to leave a", Duration::from_secs(5), || {
        !a.has_addr(vip).unwrap()
    });
    eprintln!("VIP dropped {gone:?} after the health check started failing");
    let s = status(&a);
    assert_eq!(s["role"], "waiting", "{s:#}");
    assert_eq!(s["healthy"], false);
    assert_eq!(s["last_transition"]["reason"], "health_failed", "{s:#}");
    a.exec("nft", &["delete table inet vipag"]).unwrap();
    wait_for(
        "the VIP back after health recovers",
        Duration::from_secs(5),
        || a.has_addr(vip).unwrap(),
    );

    // SIGTERM: address removed, lease revoked (nobody leads), clean exit.
    sigterm(&agent);
    let exited = wait_for("cpe vip to exit", Duration::from_secs(5), || {
        !agent.is_running()
    });
    eprintln!("exited {exited:?} after SIGTERM");
    assert!(
        !a.has_addr(vip).unwrap(),
        "VIP left on the interface after SIGTERM"
    );
    let keys = a
        .exec(
            "etcdctl",
            &[
                "--endpoints",
                "http://127.0.0.1:2379",
                "get",
                "--prefix",
                "/cpe/vip/",
                "--keys-only",
            ],
        )
        .unwrap();
    assert!(keys.trim().is_empty(), "election key left behind: {keys}");
    let log = std::fs::read_to_string(agent.log_path()).unwrap();
    assert!(log.contains("HOLDER->STOPPED (shutting down)"), "{log}");
    agent.kill();

    // SIGKILL: no in-process cleanup runs, the guard process removes the address.
    let mut agent = start_agent(&a, vip, dir.path(), "agent-kill.log");
    wait_for("the VIP on a again", Duration::from_secs(10), || {
        a.has_addr(vip).unwrap()
    });
    agent.kill();
    let gone = wait_for(
        "the guard to remove the VIP",
        Duration::from_secs(3),
        || !a.has_addr(vip).unwrap(),
    );
    eprintln!("VIP removed {gone:?} after the agent was SIGKILLed");

    // A foreign host answers for the VIP: refused, its MAC named, nothing added.
    b.exec("ip", &["addr", "add", &format!("{vip}/32"), "dev", "eth0"])
        .unwrap();
    let mut agent = start_agent(&a, vip, dir.path(), "agent2.log");
    let mac = b.mac().unwrap();
    wait_for(
        "the foreign MAC in /status",
        Duration::from_secs(10),
        || {
            a.exec(CPE, &["status", "--admin", "127.0.0.1:9631", "-o", "json"])
                .ok()
                .and_then(|o| serde_json::from_str::<Value>(&o).ok())
                .is_some_and(|s| s["foreign_mac"] == mac.as_str())
        },
    );
    assert!(!a.has_addr(vip).unwrap(), "took a VIP a foreign host holds");
    let s = status(&a);
    assert_ne!(s["role"], "holder");
    assert!(
        s["waiting_for"].as_str().unwrap_or("").contains(&mac),
        "{s:#}"
    );
    sigterm(&agent);
    wait_for("cpe vip to exit", Duration::from_secs(5), || {
        !agent.is_running()
    });
    assert!(!a.has_addr(vip).unwrap());
    agent.kill();
}

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
        h.spawn("cpe vip", &dir.path().join(log), CPE, &args)
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

#[test]
fn a_definition_file_drives_the_agent() {
    require_root();
    require_programs(&["etcd", "etcdctl", "ip", "curl"]);
    let dir = tempfile::tempdir().unwrap();
    let net = Net::new("vipdf").unwrap();
    let a = net.add_host("a", 11).unwrap();
    let vip = net.addr(100);
    // etcd also listens on this machine's API server port, standing in for the API server
    // the definition's health check probes (`http://ADDR:6443/health`).
    let _etcd = one_member_etcd(
        &a,
        dir.path(),
        &format!("http://127.0.0.1:2379,http://{}:6443", a.addr),
        "http://127.0.0.1:2379",
    );
    let def = dir.path().join("endpoint.yaml");
    std::fs::write(
        &def,
        format!(
            "cluster: filetest\nmode: virtual-ip\nendpoint:\n  host: {vip}\n  port: 6443\n\
             controlPlane:\n  replicas: 1\n  machines:\n    - {{name: a, address: {}/24}}\n\
             healthCheck:\n  protocol: http\n  path: /health\n\
             virtualIP:\n  interface: eth0\n  prefixLength: 24\n\
             etcd:\n  endpoints: [http://127.0.0.1:2379]\n",
            a.addr
        ),
    )
    .unwrap();
    let args: Vec<String> = ["vip", "-f", &def.to_string_lossy(), "--node", "a"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut agent = a
        .spawn("cpe vip", &dir.path().join("agent.log"), CPE, &args)
        .unwrap();
    wait_for("the VIP on a", Duration::from_secs(10), || {
        a.has_addr(vip).unwrap() || !agent.is_running()
    });
    assert!(agent.is_running(), "{}", agent.tail(20));
    let s = status(&a);
    assert_eq!(s["election"], "/cpe/vip/filetest");
    assert_eq!(s["vip"], format!("{vip}/24"));
    assert_eq!(
        s["health"]["target"],
        format!("http://{}:6443/health", a.addr)
    );
    assert_eq!(s["role"], "holder");
    let healthz = a
        .exec("curl", &["-sf", "http://127.0.0.1:9631/healthz"])
        .unwrap();
    assert_eq!(healthz, "ok\n");
    sigterm(&agent);
    wait_for("cpe vip to exit", Duration::from_secs(5), || {
        !agent.is_running()
    });
    assert!(!a.has_addr(vip).unwrap());
}

#[test]
fn an_ipv6_vip_is_added_without_dad_and_announced_with_na() {
    require_root();
    require_programs(&["etcd", "etcdctl", "ip", "tcpdump", "ping"]);
    let dir = tempfile::tempdir().unwrap();
    let net = Net::new("vip6").unwrap();
    let a = net.add_host("a", 11).unwrap();
    let b = net.add_host("b", 12).unwrap();
    // A ULA /64 derived from the net's IPv4 subnet, so parallel runs do not collide.
    let o = net.addr(0).octets();
    let prefix = format!("fd00:{:x}:{:x}", o[1], o[2]);
    for (h, last) in [(&a, 11), (&b, 12)] {
        h.exec(
            "ip",
            &[
                "addr",
                "add",
                &format!("{prefix}::{last}/64"),
                "dev",
                "eth0",
                "nodad",
            ],
        )
        .unwrap();
    }
    // As `ip` prints it (compressed).
    let vip = format!("{prefix}::100")
        .parse::<std::net::Ipv6Addr>()
        .unwrap()
        .to_string();
    let _etcd = one_member_etcd(
        &a,
        dir.path(),
        "http://127.0.0.1:2379",
        "http://127.0.0.1:2379",
    );
    let tcpdump = capture(&b, dir.path(), "icmp6");
    let args: Vec<String> = [
        "vip",
        "--vip",
        &vip,
        "--interface",
        "eth0",
        "--node",
        "a",
        "--etcd",
        "http://127.0.0.1:2379",
        "--health-url",
        "http://127.0.0.1:2379/health",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut agent = a
        .spawn("cpe vip", &dir.path().join("agent.log"), CPE, &args)
        .unwrap();
    let has6 = |h: &Host| {
        h.exec("ip", &["-6", "addr", "show", "dev", "eth0"])
            .unwrap()
            .contains(&format!("{vip}/128"))
    };
    wait_for("the IPv6 VIP on a", Duration::from_secs(10), || {
        has6(&a) || !agent.is_running()
    });
    assert!(has6(&a), "{}", agent.tail(30));
    // Added with IFA_F_NODAD: usable at once, never "tentative".
    let shown = a
        .exec("ip", &["-6", "addr", "show", "dev", "eth0"])
        .unwrap();
    let line = shown
        .lines()
        .find(|l| l.contains(&vip))
        .unwrap()
        .to_string();
    assert!(
        line.contains("nodad") && !line.contains("tentative"),
        "{line}"
    );
    b.exec("ping", &["-6", "-c", "1", "-W", "2", &vip])
        .expect("the peer reaches the IPv6 VIP");
    let na = format!("{vip} > ff02::1: ICMP6, neighbor advertisement, tgt is {vip}");
    wait_for_lines(&tcpdump, &na, 2, "unsolicited NAs on the peer");
    sigterm(&agent);
    wait_for("cpe vip to exit", Duration::from_secs(5), || {
        !agent.is_running()
    });
    assert!(!has6(&a), "IPv6 VIP left behind");
    agent.kill();
}
