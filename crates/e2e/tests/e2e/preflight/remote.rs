//! `cpe preflight` from another machine: the machines reachable, their ports free or
//! taken, the VIP unused, an unreachable TEST-NET address, and an external load balancer
//! found by name through the namespace's own `/etc/hosts`.

use super::*;
use cpe_testkit::{require_programs, require_root, Net};

#[test]
fn remote_reachability_ports_vip_and_test_net() {
    require_root();
    require_programs(&["etcd", "ip"]);
    let net = Net::new("pfr").unwrap();
    let admin = net.add_host("admin", 5).unwrap();
    let cp1 = net.add_host("cp1", 11).unwrap();
    let cp2 = net.add_host("cp2", 12).unwrap();
    let squatter = net.add_host("sq", 50).unwrap();
    // A default route to a gateway that does not exist: the SYN to the TEST-NET address
    // never leaves the admin host (ARP for the gateway goes unanswered), and the connect
    // can only end by our timeout.
    admin
        .exec(
            "ip",
            &["route", "add", "default", "via", &net.addr(1).to_string()],
        )
        .unwrap();
    let dir = tempdir();
    let vip = net.addr(100).to_string();
    let def = write(
        dir.path(),
        "vip.yaml",
        &vip_definition(&cp1, &cp2, &vip, "eth0"),
    );
    let def = def.to_str().unwrap();

    // cp1 already has something on the API server port (a real process on all addresses).
    let _holder = etcd_holding(&cp1, dir.path(), "0.0.0.0:6443", "127.0.0.1:16380");

    let started = Instant::now();
    let (code, r, out) = cpe(
        &admin,
        &["preflight", "-f", def, "--timeout", "1s", "-o", "json"],
    );
    let took = started.elapsed();
    assert_eq!(code, 1, "{out}");
    assert_eq!(status(&r, "cp1", "machine.reachable"), "pass", "{out}");
    assert_eq!(status(&r, "cp1", "machine.port.6443"), "fail", "{out}");
    assert_eq!(status(&r, "cp2", "machine.reachable"), "pass", "{out}");
    assert_eq!(status(&r, "cp2", "machine.port.6443"), "pass", "{out}");
    let c = find(&r, "cp3", "machine.reachable");
    assert_eq!(c["status"], "fail", "{out}");
    assert_eq!(status(&r, "cp3", "machine.port.6443"), "warn", "{out}");
    // Nobody holds the VIP yet.
    assert_eq!(status(&r, "endpoint", "vip.unused"), "pass", "{out}");
    // One attempt per target, all at once, bounded by the 1 s timeout.
    println!("remote preflight with an unreachable machine took {took:?}");
    assert!(took < Duration::from_secs(8), "took {took:?}: {out}");

    // Someone holds the VIP: a reset from it is an answer, so the VIP is in use.
    squatter
        .exec("ip", &["addr", "add", &format!("{vip}/24"), "dev", "eth0"])
        .unwrap();
    // The first run left the admin host's ARP entry for the VIP incomplete or failed; a
    // later run from a fresh machine would not have one.
    admin.exec("ip", &["neigh", "flush", "to", &vip]).unwrap();
    let (_, r, out) = cpe(
        &admin,
        &["preflight", "-f", def, "--timeout", "3s", "-o", "json"],
    );
    let c = find(&r, "endpoint", "vip.unused");
    assert_eq!(c["status"], "fail", "{out}");
    assert!(c["reason"].as_str().unwrap().contains("refused"), "{c}");
}

#[test]
fn remote_external_lb_resolves_and_port_free_or_taken() {
    require_root();
    require_programs(&["etcd", "ip"]);
    let net = Net::new("pfl").unwrap();
    let admin = net.add_host("admin", 5).unwrap();
    let lb = net.add_host("lb", 6).unwrap();
    let cp1 = net.add_host("cp1", 11).unwrap();
    let dir = tempdir();
    // `ip netns exec` bind-mounts /etc/netns/NS/hosts over /etc/hosts: the admin host alone
    // resolves the load balancer's name, and nothing is asked of any real DNS server.
    let etc = PathBuf::from("/etc/netns").join(&admin.ns);
    let _etc_guard = EtcNetns::create(
        &etc,
        &format!("127.0.0.1 localhost\n{} lb.pf.test\n", lb.addr),
    );
    let def = write(
        dir.path(),
        "lb.yaml",
        &format!(
            "cluster: pf\nendpoint:\n  host: lb.pf.test\ncontrolPlane:\n  replicas: 1\n  machines:\n    - {{name: cp1, address: {}}}\nmode: external-lb\n",
            cp1.addr
        ),
    );
    let def = def.to_str().unwrap();
    let (code, r, out) = cpe(&admin, &["preflight", "-f", def, "-o", "json"]);
    assert_eq!(code, 0, "{out}");
    let c = find(&r, "endpoint", "endpoint.resolves");
    assert_eq!(c["status"], "pass", "{out}");
    assert!(
        c["reason"].as_str().unwrap().contains(&lb.addr.to_string()),
        "{c}"
    );
    assert_eq!(status(&r, "endpoint", "endpoint.lb"), "pass", "{out}");

    // A real `cpe lb` already runs there (its admin listener reachable on the LB's
    // address, so with a token, as cpe requires off loopback): the port is taken, by the
    // right thing.
    let token = write(dir.path(), "admin.token", "preflight-e2e-admin-token\n");
    let lb_def = write(
        dir.path(),
        "lb-host.yaml",
        &(std::fs::read_to_string(def).unwrap()
            + &format!(
                "loadBalancer:\n  listen: 0.0.0.0:6443\n  admin: 0.0.0.0:9630\n  adminTokenFile: {}\n",
                token.display()
            )),
    );
    let mut cpe_lb = lb
        .spawn(
            "cpe-lb",
            &dir.path().join("cpe-lb.log"),
            cpe_bin(),
            &["lb".into(), "-f".into(), lb_def.display().to_string()],
        )
        .unwrap();
    wait_listening(&lb, &format!("{}:9630", lb.addr), &mut cpe_lb);
    let (code, r, out) = cpe(
        &admin,
        &["preflight", "-f", lb_def.to_str().unwrap(), "-o", "json"],
    );
    assert_eq!(code, 0, "{out}");
    let c = find(&r, "endpoint", "endpoint.lb");
    assert_eq!(c["status"], "pass", "{out}");
    assert!(
        c["reason"].as_str().unwrap().contains("cpe load balancer"),
        "{c}"
    );
    drop(cpe_lb);

    // Something that is not cpe lb listens on the endpoint port.
    let _other = etcd_holding(&lb, dir.path(), "0.0.0.0:6443", "127.0.0.1:16380");
    let (code, r, out) = cpe(&admin, &["preflight", "-f", def, "-o", "json"]);
    assert_eq!(code, 0, "a warning is not a failure: {out}");
    assert_eq!(status(&r, "endpoint", "endpoint.lb"), "warn", "{out}");

    // A name that does not resolve.
    let def2 = write(
        dir.path(),
        "lb2.yaml",
        &std::fs::read_to_string(def)
            .unwrap()
            .replace("lb.pf.test", "nolb.pf.test"),
    );
    let (code, r, out) = cpe(
        &admin,
        &["preflight", "-f", def2.to_str().unwrap(), "-o", "json"],
    );
    assert_eq!(code, 1, "{out}");
    assert_eq!(status(&r, "endpoint", "endpoint.resolves"), "fail", "{out}");
}

/// `/etc/netns/NS/{hosts,resolv.conf}` for one test namespace, removed on drop.
struct EtcNetns(PathBuf);

impl EtcNetns {
    fn create(dir: &Path, hosts: &str) -> EtcNetns {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("hosts"), hosts).unwrap();
        // The admin host's own loopback: nothing listens on 53 there, so an unknown name
        // fails at once instead of waiting for a resolver.
        std::fs::write(
            dir.join("resolv.conf"),
            "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n",
        )
        .unwrap();
        EtcNetns(dir.to_path_buf())
    }
}

impl Drop for EtcNetns {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
