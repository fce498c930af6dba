//! `cpe preflight --local` on the machine itself: the control-plane ports held by real
//! processes (named with their pid), usage errors (exit 2), the VIP mode's interface, ARP
//! probe and capabilities, and the IPv6 VIP's neighbour discovery.

use super::*;
use cpe_testkit::{require_programs, require_root, Net};

#[test]
fn local_ports_held_by_real_processes_are_named() {
    require_root();
    require_programs(&["etcd", "ip"]);
    let net = Net::new("pfp").unwrap();
    let cp1 = net.add_host("cp1", 11).unwrap();
    let dir = tempdir();
    let def = write(
        dir.path(),
        "endpoint.yaml",
        &format!(
            "cluster: pf\nendpoint:\n  host: lb.example.com\ncontrolPlane:\n  replicas: 3\n  machines:\n    - {{name: cp1, address: {}}}\n    - {{name: cp2, address: 10.1.0.2}}\n    - {{name: cp3, address: 10.1.0.3}}\n",
            cp1.addr
        ),
    );
    let def = def.to_str().unwrap();

    // A free machine passes everything.
    let (code, r, out) = cpe(&cp1, &local_json(def, "cp1"));
    assert_eq!(code, 0, "{out}");
    for port in [6443, 2379, 2380, 10250, 10257, 10259] {
        assert_eq!(status(&r, "cp1", &format!("port.{port}")), "pass", "{out}");
    }
    assert_eq!(status(&r, "cp1", "node.address"), "pass", "{out}");

    // A real etcd holding the API server port on loopback only (the all-addresses bind
    // must still see it) and its peer port on 10250.
    let mut holder = etcd_holding(&cp1, dir.path(), "127.0.0.1:6443", "127.0.0.1:10250");
    let (code, r, out) = cpe(&cp1, &local_json(def, "cp1"));
    assert_eq!(code, 1, "{out}");
    let c = find(&r, "cp1", "port.6443");
    assert_eq!(c["status"], "fail", "{out}");
    let want = format!("held by pid {} (etcd)", holder.pid());
    assert!(
        c["reason"].as_str().unwrap().contains(&want),
        "{want} not in {c}"
    );
    assert!(
        c["fix"].as_str().unwrap().contains("API server port"),
        "{c}"
    );
    assert!(
        find(&r, "cp1", "port.10250")["reason"]
            .as_str()
            .unwrap()
            .contains(&want),
        "{out}"
    );
    assert_eq!(status(&r, "cp1", "port.10257"), "pass", "{out}");
    assert_eq!(r["summary"]["failed"], 2, "{out}");
    assert_eq!(r["exitCode"], 1);

    // The table says the same to a person, with the summary line.
    let (code, _, out) = cpe(&cp1, &["preflight", "-f", def, "--local", "--node", "cp1"]);
    assert_eq!(code, 1);
    assert!(
        out.contains("FAIL  port 6443 (API server / endpoint) free"),
        "{out}"
    );
    assert!(out.contains(&want), "{out}");
    assert!(out.contains("5 passed, 0 warnings, 2 failed"), "{out}");

    // --external-etcd leaves 2379/2380 alone.
    let (_, r, out) = cpe(
        &cp1,
        &[
            "preflight",
            "-f",
            def,
            "--local",
            "--node",
            "cp1",
            "--external-etcd",
            "-o",
            "json",
        ],
    );
    assert!(!has(&r, "port.2379") && !has(&r, "port.2380"), "{out}");
    assert!(has(&r, "port.10259"), "{out}");

    // Run on the wrong machine: the machine's address is not here.
    let (code, r, out) = cpe(&cp1, &local_json(def, "cp2"));
    assert_eq!(code, 1, "{out}");
    assert_eq!(status(&r, "cp2", "node.address"), "fail", "{out}");

    // Not root: the port is still found in use, but the holder (root's etcd) cannot be
    // named, and the reason says so instead of guessing.
    let (code, r, out) = cpe_as_nobody(&cp1, dir.path(), &local_json(def, "cp1"));
    assert_eq!(code, 1, "{out}");
    let c = find(&r, "cp1", "port.6443");
    assert_eq!(c["status"], "fail", "{out}");
    assert!(
        c["reason"].as_str().unwrap().contains("does not say"),
        "{c}"
    );

    holder.kill();
    let (code, _, out) = cpe(&cp1, &["preflight", "-f", def, "--local", "--node", "cp1"]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn usage_errors_exit_2() {
    // No namespace needed: these fail before any check runs.
    let dir = tempdir();
    let def = write(
        dir.path(),
        "e.yaml",
        "endpoint:\n  host: lb.example.com\ncontrolPlane:\n  replicas: 3\n  machines:\n    - {name: cp1, address: 10.0.0.11}\n    - {name: cp2, address: 10.0.0.12}\n    - {name: cp3, address: 10.0.0.13}\n",
    );
    let def = def.to_str().unwrap();
    let run = |args: &[&str]| {
        let o = std::process::Command::new(cpe_bin())
            .args(args)
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, err) = run(&["preflight", "-f", def, "--local"]);
    assert_eq!(code, Some(2), "{err}");
    let (code, err) = run(&["preflight", "-f", def, "--local", "--node", "cp9"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("cp9") && err.contains("cp1, cp2, cp3"),
        "{err}"
    );
    let (code, err) = run(&["preflight", "-f", def, "--timeout", "soon"]);
    assert_eq!(code, Some(2), "{err}");
    let (code, err) = run(&["check", "-f", def, "--ca", "/nonexistent/ca.crt"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--ca /nonexistent/ca.crt"), "{err}");
    // An invalid definition is reported with its field, exit 1.
    let bad = write(
        dir.path(),
        "bad.yaml",
        "endpoint:\n  host: lb.example.com\n  port: 70000\n",
    );
    let (code, err) = run(&["preflight", "-f", bad.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("endpoint.port"), "{err}");
}

#[test]
fn local_vip_mode_interface_arp_and_capabilities() {
    require_root();
    require_programs(&["ip", "setpriv"]);
    let net = Net::new("pfv").unwrap();
    let cp1 = net.add_host("cp1", 11).unwrap();
    let cp2 = net.add_host("cp2", 12).unwrap();
    let squatter = net.add_host("sq", 50).unwrap();
    let dir = tempdir();
    let vip = net.addr(100).to_string();
    let def = write(
        dir.path(),
        "vip.yaml",
        &vip_definition(&cp1, &cp2, &vip, "eth0"),
    );
    let def = def.to_str().unwrap();
    let local = local_json(def, "cp1");

    // A clean link: interface present, up, in the VIP's subnet, nobody answers for the VIP,
    // and root has both capabilities.
    let (code, r, out) = cpe(&cp1, &local);
    assert_eq!(code, 0, "{out}");
    for id in [
        "vip.interface",
        "vip.interface.up",
        "vip.interface.subnet",
        "vip.dad",
        "vip.capabilities",
    ] {
        assert_eq!(status(&r, "cp1", id), "pass", "{id}: {out}");
    }

    // Another host takes the VIP: it now answers ARP for it, with its own MAC.
    squatter
        .exec("ip", &["addr", "add", &format!("{vip}/24"), "dev", "eth0"])
        .unwrap();
    let (code, r, out) = cpe(&cp1, &local);
    assert_eq!(code, 1, "{out}");
    let c = find(&r, "cp1", "vip.dad");
    assert_eq!(c["status"], "fail", "{out}");
    let mac = squatter.mac().unwrap().to_ascii_lowercase();
    assert!(
        c["reason"].as_str().unwrap().contains(&mac),
        "{mac} not in {c}"
    );
    squatter
        .exec("ip", &["addr", "del", &format!("{vip}/24"), "dev", "eth0"])
        .unwrap();

    // An interface that is down and on another subnet.
    // (A veth pair inside cp1, left down: the dummy module is not always there.)
    cp1.exec(
        "ip",
        &["link", "add", "vx0", "type", "veth", "peer", "name", "vx1"],
    )
    .unwrap();
    cp1.exec("ip", &["addr", "add", "192.168.77.1/24", "dev", "vx0"])
        .unwrap();
    let def_dummy = write(
        dir.path(),
        "dummy.yaml",
        &vip_definition(&cp1, &cp2, &vip, "vx0"),
    );
    let (code, r, out) = cpe(
        &cp1,
        &[
            "preflight",
            "-f",
            def_dummy.to_str().unwrap(),
            "--local",
            "--node",
            "cp1",
            "-o",
            "json",
        ],
    );
    assert_eq!(code, 1, "{out}");
    assert_eq!(status(&r, "cp1", "vip.interface"), "pass", "{out}");
    assert_eq!(status(&r, "cp1", "vip.interface.up"), "fail", "{out}");
    let c = find(&r, "cp1", "vip.interface.subnet");
    assert_eq!(c["status"], "fail", "{out}");
    assert!(
        c["reason"].as_str().unwrap().contains("192.168.77.1/24"),
        "{c}"
    );

    // An interface that does not exist.
    let def_none = write(
        dir.path(),
        "none.yaml",
        &vip_definition(&cp1, &cp2, &vip, "eth9"),
    );
    let (code, r, out) = cpe(
        &cp1,
        &[
            "preflight",
            "-f",
            def_none.to_str().unwrap(),
            "--local",
            "--node",
            "cp1",
            "-o",
            "json",
        ],
    );
    assert_eq!(code, 1, "{out}");
    let c = find(&r, "cp1", "vip.interface");
    assert_eq!(c["status"], "fail");
    assert!(
        c["reason"].as_str().unwrap().contains("eth0"),
        "lists what exists: {c}"
    );
    assert!(!has(&r, "vip.dad"), "{out}");

    // Not root: the capabilities are missing from this process (a warning: the agent can
    // still be given them), and the ARP probe cannot be made without CAP_NET_RAW.
    let (_, r, out) = cpe_as_nobody(&cp1, dir.path(), &local);
    assert_eq!(status(&r, "cp1", "vip.capabilities"), "warn", "{out}");
    let c = find(&r, "cp1", "vip.dad");
    assert_eq!(c["status"], "warn", "{out}");
    assert!(c["reason"].as_str().unwrap().contains("not checked"), "{c}");

    // Without NET_ADMIN and NET_RAW in the bounding set (a container without them).
    let out = cp1
        .command("setpriv")
        .args(["--bounding-set", "-net_admin,-net_raw", "--", cpe_bin()])
        .args(local)
        .output()
        .unwrap();
    let r: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let c = find(&r, "cp1", "vip.capabilities");
    assert_eq!(c["status"], "fail", "{c}");
    assert!(
        c["reason"]
            .as_str()
            .unwrap()
            .contains("CAP_NET_ADMIN and CAP_NET_RAW"),
        "{c}"
    );
}

#[test]
fn local_vip_ipv6_neighbour_discovery() {
    require_root();
    require_programs(&["ip"]);
    let net = Net::new("pf6").unwrap();
    let cp1 = net.add_host("cp1", 11).unwrap();
    let squatter = net.add_host("sq", 50).unwrap();
    // A ULA subnet unique to this net (from its IPv4 /24), `nodad` so the addresses are
    // usable at once rather than tentative for a second.
    let o = net.addr(0).octets();
    let p6 = format!("fd{:02x}:{:02x}{:02x}::", o[1], o[2], 6);
    let (a1, vip) = (format!("{p6}11"), format!("{p6}100"));
    cp1.exec(
        "ip",
        &["addr", "add", &format!("{a1}/64"), "dev", "eth0", "nodad"],
    )
    .unwrap();
    let dir = tempdir();
    let def = write(
        dir.path(),
        "vip6.yaml",
        &format!(
            "cluster: pf\nendpoint:\n  host: \"{vip}\"\nvirtualIP:\n  interface: eth0\ncontrolPlane:\n  replicas: 1\n  machines:\n    - {{name: cp1, address: \"{a1}\"}}\nmode: virtual-ip\n"
        ),
    );
    let def = def.to_str().unwrap();
    let local = local_json(def, "cp1");
    let (_, r, out) = cpe(&cp1, &local);
    assert_eq!(status(&r, "cp1", "node.address"), "pass", "{out}");
    assert_eq!(status(&r, "cp1", "vip.interface.subnet"), "pass", "{out}");
    let c = find(&r, "cp1", "vip.dad");
    assert_eq!(c["status"], "pass", "{out}");
    assert!(c["title"].as_str().unwrap().contains("NDP"), "{c}");

    // Another host holds the IPv6 VIP: it answers the neighbour solicitation.
    squatter
        .exec(
            "ip",
            &["addr", "add", &format!("{vip}/64"), "dev", "eth0", "nodad"],
        )
        .unwrap();
    let (code, r, out) = cpe(&cp1, &local);
    assert_eq!(code, 1, "{out}");
    let c = find(&r, "cp1", "vip.dad");
    assert_eq!(c["status"], "fail", "{out}");
    let mac = squatter.mac().unwrap().to_ascii_lowercase();
    assert!(
        c["reason"].as_str().unwrap().contains(&mac),
        "{mac} not in {c}"
    );
}
