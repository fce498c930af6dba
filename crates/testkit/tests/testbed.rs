//! The testkit's own end-to-end checks (root): namespaces reach each other over the bridge,
//! a cut link and a partition really cut, the netlink sweeps see addresses and neighbours,
//! a three-member etcd cluster comes up and names a leader, and everything is gone after
//! drop.

use cpe_testkit::netlink::NlSocket;
use cpe_testkit::{require_programs, require_root, EtcdCluster, Net};
use std::time::Duration;

fn ping(from: &cpe_testkit::Host, to: std::net::Ipv4Addr) -> bool {
    from.exec("ping", &["-c", "1", "-W", "1", &to.to_string()])
        .is_ok()
}

fn namespaces() -> String {
    cpe_testkit::net::run({
        let mut c = std::process::Command::new("ip");
        c.args(["netns", "list"]);
        c
    })
    .unwrap()
}

#[test]
fn hosts_link_cut_partition_netlink_and_cleanup() {
    require_root();
    require_programs(&["ip", "ping", "nft"]);
    let prefix;
    {
        let net = Net::new("tkn").unwrap();
        prefix = net.prefix().to_string();
        let a = net.add_host("a", 11).unwrap();
        let b = net.add_host("b", 12).unwrap();
        let c = net.add_host("c", 13).unwrap();
        assert!(ping(&a, b.addr), "a reaches b over the bridge");

        b.link_down().unwrap();
        assert!(!ping(&a, b.addr), "a cut link cuts");
        b.link_up().unwrap();
        assert!(ping(&a, b.addr), "link back up");

        a.partition_from(&[b.addr]).unwrap();
        assert!(!ping(&a, b.addr), "partitioned from b");
        assert!(ping(&a, c.addr), "still reaches c");
        assert!(!ping(&b, a.addr), "both ways");
        a.heal().unwrap();
        assert!(ping(&a, b.addr), "healed");

        // One netlink socket per namespace, read from this thread.
        let mut s = NlSocket::open_in(&a.ns_path()).unwrap();
        assert!(s.ipv4_addrs().unwrap().contains(&a.addr));
        assert!(!s.ipv4_addrs().unwrap().contains(&b.addr));
        let n = s.ipv4_neighbours().unwrap();
        let nb = n
            .iter()
            .find(|n| n.dst == b.addr)
            .expect("a has a neighbour entry for b");
        assert_eq!(nb.mac, b.mac().unwrap());
        assert_eq!(a.neighbour(b.addr).unwrap().unwrap().0, b.mac().unwrap());
        assert!(a.has_addr(a.addr).unwrap() && !a.has_addr(b.addr).unwrap());

        net.remove_host(&c).unwrap();
        assert!(!namespaces().contains(&c.ns));
        assert!(namespaces().contains(&a.ns));
    }
    assert!(
        !namespaces().contains(&prefix),
        "every namespace deleted on drop"
    );
}

#[test]
fn etcd_cluster_of_three_elects_a_leader_and_survives_losing_it() {
    require_root();
    require_programs(&["ip", "etcd", "etcdctl"]);
    let dir = tempfile::tempdir().unwrap();
    let net = Net::new("tke").unwrap();
    let hosts: Vec<_> = (1..=3)
        .map(|i| net.add_host(&format!("e{i}"), 10 + i).unwrap())
        .collect();
    let mut etcd = EtcdCluster::start(&hosts, dir.path()).unwrap();
    let leader = etcd.leader().unwrap();
    etcd.etcdctl(&["put", "k", "v1"]).unwrap();
    etcd.kill(leader);
    // The two others elect a new leader and still take writes.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let new_leader = loop {
        if let Ok(l) = etcd.leader() {
            if l != leader {
                break l;
            }
        }
        assert!(std::time::Instant::now() < deadline, "no new leader");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_ne!(new_leader, leader);
    etcd.etcdctl(&["put", "k", "v2"]).unwrap();
    etcd.restart(leader).unwrap();
    etcd.wait_healthy(Duration::from_secs(20)).unwrap();
    // Rolling replacement of one member.
    let d = net.add_host("e4", 14).unwrap();
    etcd.remove(0).unwrap();
    etcd.add(&d).unwrap();
    assert!(etcd
        .etcdctl(&["get", "k", "--print-value-only"])
        .unwrap()
        .contains("v2"));
    assert_eq!(etcd.members.len(), 3);
}

/// The observers can fail: the watcher sees two holders when two hosts carry the VIP, the
/// client's neighbour entry follows a gratuitous ARP, and the prober counts failures while
/// nobody answers.
#[test]
fn observers_see_two_holders_neighbour_moves_and_outage() {
    use cpe_testkit::observe::{Prober, Target, Watch};
    require_root();
    require_programs(&["ip", "arping"]);
    let net = Net::new("tko").unwrap();
    let a = net.add_host("a", 11).unwrap();
    let b = net.add_host("b", 12).unwrap();
    let client = net.add_host("client", 50).unwrap();
    let vip = net.addr(100);
    let epoch = std::time::Instant::now();
    let watch = Watch::start(
        &[a.clone(), b.clone()],
        &client,
        vip,
        Duration::from_millis(10),
        epoch,
    )
    .unwrap();
    // A minimal HTTP server on :8080 in each host, from a thread that entered its namespace.
    let web = |h: &cpe_testkit::Host| {
        let ns = h.ns_path();
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            cpe_testkit::netlink::enter_netns(&ns).unwrap();
            let l = std::net::TcpListener::bind("0.0.0.0:8080").unwrap();
            for mut s in l.incoming().flatten() {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                );
            }
        });
    };
    web(&a);
    web(&b);
    // A client sending to VIP:8080 every 20 ms.
    let probe = || {
        Prober::start(
            &client,
            Target {
                addr: std::net::SocketAddr::new(vip.into(), 8080),
                https: false,
                path: "/ok".into(),
            },
            Duration::from_millis(20),
            Duration::from_millis(500),
            epoch,
        )
        .unwrap()
    };
    let prober = probe();
    std::thread::sleep(Duration::from_millis(500));
    let t0 = epoch.elapsed();
    let vip24 = format!("{vip}/24");
    a.exec("ip", &["addr", "add", &vip24, "dev", "eth0"])
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(watch.current(), vec!["a".to_string()]);
    assert_eq!(
        watch.neighbour().last().unwrap().mac,
        a.mac().unwrap(),
        "client sends to a"
    );
    b.exec("ip", &["addr", "add", &vip24, "dev", "eth0"])
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    a.exec("ip", &["addr", "del", &vip24, "dev", "eth0"])
        .unwrap();
    b.exec("arping", &["-U", "-c", "1", "-I", "eth0", &vip.to_string()])
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let t1 = epoch.elapsed();
    assert!(!watch.doubles(t0, t1).is_empty(), "two holders seen");
    assert_eq!(watch.current(), vec!["b".to_string()]);
    let n = watch.neighbour();
    assert_eq!(
        n.last().unwrap().mac,
        b.mac().unwrap(),
        "neighbour followed the gratuitous ARP: {n:?}"
    );
    assert_eq!(n.last().unwrap().host.as_deref(), Some("b"));
    drop(prober);
    // A fresh client: it is answered while b holds the VIP, and sees failures and an
    // outage once nobody does.
    let p2 = probe();
    std::thread::sleep(Duration::from_millis(400));
    let t2 = epoch.elapsed();
    b.exec("ip", &["addr", "del", &vip24, "dev", "eth0"])
        .unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    let t3 = epoch.elapsed();
    let r = p2.requests();
    assert!(r.last_ok(3, t2), "requests succeed while b holds the VIP");
    assert!(
        !r.failed(t2, t3).is_empty(),
        "requests fail once nobody holds it"
    );
    assert!(r.outage(t2, t3).unwrap() >= Duration::from_millis(900));
}
