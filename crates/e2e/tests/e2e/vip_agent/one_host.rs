//! One `cpe vip` agent on a host with its own etcd and a peer on the bridge: it holds,
//! announces and repairs the VIP, keeps it while its health fails and nobody else is healthy
//! (fail open), hands over on SIGTERM, leaves
//! the address to the guard after SIGKILL and refuses a VIP a foreign host answers for;
//! a definition file drives it as flags do; an IPv6 VIP is added without DAD and announced
//! with neighbour advertisements.

use super::*;
use cpe_testkit::{require_programs, require_root, Net};

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
        .exec(cpe_bin(), &["status", "--admin", "127.0.0.1:9631"])
        .unwrap();
    assert!(table.contains("holder (etcd)  a"), "{table}");

    // The holder's /metrics, scraped from the peer machine as Prometheus would, on the
    // metrics-only listener: every agent metric the docs name is there with the holder's
    // values (the lease is renewed, so some of it remains); /status is not served there.
    let scrape = format!("http://{}:9632/metrics", net.addr(11));
    wait_for("a lease renewal", Duration::from_secs(5), || {
        b.exec("curl", &["-sf", &scrape]).is_ok_and(|m| {
            m.contains("cpe_vip_lease_renewal_seconds_count")
                && !m.contains("cpe_vip_lease_renewal_seconds_count 0")
        })
    });
    let metrics = b.exec("curl", &["-sf", &scrape]).expect("curl /metrics");
    let status_code = b
        .exec(
            "curl",
            &[
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                &scrape.replace("/metrics", "/status"),
            ],
        )
        .unwrap();
    assert_eq!(
        status_code.trim(),
        "404",
        "/status is for the admin listener only"
    );
    for want in [
        "cpe_vip_holder 1",
        "cpe_vip_healthy 1",
        "cpe_vip_etcd_reachable 1",
        "cpe_vip_lease_last_renewal_seconds ",
        "cpe_vip_lease_remaining_seconds ",
        "cpe_vip_announcements_total ",
        "cpe_vip_transitions_total{to=\"holder\"",
        "cpe_vip_etcd_leader_moves_total 0",
        "cpe_build_info{",
        "process_resident_memory_bytes ",
        "process_open_fds ",
    ] {
        assert!(
            metrics.contains(want),
            "{want} missing from /metrics:\n{metrics}"
        );
    }
    let remaining: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("cpe_vip_lease_remaining_seconds "))
        .and_then(|v| v.trim().parse().ok())
        .expect("lease_remaining_seconds value");
    assert!(
        remaining > 0.0,
        "the holder's lease has time left: {remaining}\n{metrics}"
    );

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

    // The health check fails (connection refused on its port). No other candidate is
    // healthy (there is none): the VIP stays and the agent says so (fail open, issue 11);
    // handing over to a healthy candidate is `two_agents`'.
    a.exec(
        "nft",
        &["add table inet vipag; add chain inet vipag out { type filter hook output priority 0; }; add rule inet vipag out tcp dport 2381 reject with tcp reset"],
    )
    .unwrap();
    let failing = wait_for("the health check to fail", Duration::from_secs(5), || {
        status(&a)["healthy"] == false
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        a.has_addr(vip).unwrap(),
        "the only candidate dropped the VIP"
    );
    let s = status(&a);
    eprintln!("health failing for {failing:?} + 2 s: VIP kept (fail open)");
    assert_eq!(s["role"], "holder", "{s:#}");
    assert_eq!(s["fail_open"], true, "{s:#}");
    let metrics = a
        .exec("curl", &["-sf", "http://127.0.0.1:9631/metrics"])
        .unwrap();
    assert!(metrics.contains("cpe_vip_fail_open 1"), "{metrics}");
    a.exec("nft", &["delete table inet vipag"]).unwrap();
    wait_for(
        "fail open to end after health recovers",
        Duration::from_secs(5),
        || status(&a)["fail_open"] == false && a.has_addr(vip).unwrap(),
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
            a.exec(
                cpe_bin(),
                &["status", "--admin", "127.0.0.1:9631", "-o", "json"],
            )
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
        .spawn("cpe vip", &dir.path().join("agent.log"), cpe_bin(), &args)
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
        .spawn("cpe vip", &dir.path().join("agent.log"), cpe_bin(), &args)
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
