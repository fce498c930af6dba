//! End-to-end tests of `cpe preflight` and `cpe check`, run as the binary against real
//! conditions: ports held by real processes, real interfaces in network namespaces, a
//! second namespace holding the VIP (so it answers ARP for it), an unreachable TEST-NET
//! address, a real etcd with and without TLS, and the stand-in API server with a
//! certificate that lacks the endpoint name.
//!
//! Every test needs root (namespaces); without it, it fails with a clear message. Each test
//! builds its own namespaces (`cpe_testkit::Net`, a distinct subnet each) and removes them
//! on drop, even when it fails.

use cpe_testkit::{require_programs, require_root, Child, Host, Net};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const CPE: &str = env!("CARGO_BIN_EXE_cpe");

/// `cpe preflight -f DEF --local --node NODE -o json`.
fn local_json<'a>(def: &'a str, node: &'a str) -> [&'a str; 8] {
    [
        "preflight",
        "-f",
        def,
        "--local",
        "--node",
        node,
        "-o",
        "json",
    ]
}

/// Runs `cpe ARGS` inside `host`; returns the exit code, the parsed JSON (when `-o json`
/// was given) and the raw output.
fn cpe(host: &Host, args: &[&str]) -> (i32, Value, String) {
    let out = host
        .command(CPE)
        .args(args)
        .output()
        .expect("run cpe inside the namespace");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (
        out.status.code().unwrap_or(-1),
        json,
        format!("{stdout}\n--- stderr ---\n{stderr}"),
    )
}

/// The check with `id` under the target whose name starts with `target`.
fn find<'a>(report: &'a Value, target: &str, id: &str) -> &'a Value {
    report["targets"]
        .as_array()
        .and_then(|ts| {
            ts.iter()
                .filter(|t| t["name"].as_str().unwrap_or("").starts_with(target))
                .flat_map(|t| t["checks"].as_array().into_iter().flatten())
                .find(|c| c["id"] == id)
        })
        .unwrap_or_else(|| panic!("no check {id} under {target} in {report:#}"))
}

fn status<'a>(report: &'a Value, target: &str, id: &str) -> &'a str {
    find(report, target, id)["status"].as_str().unwrap_or("")
}

fn has(report: &Value, id: &str) -> bool {
    report["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|t| t["checks"].as_array().into_iter().flatten())
        .any(|c| c["id"] == id)
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("cpe-pf-")
        .tempdir()
        .unwrap()
}

/// Runs `cpe ARGS` inside `host` as user `nobody` (no capabilities, cannot read other
/// users' `/proc/PID/fd`), with the definition directory made readable.
fn cpe_as_nobody(host: &Host, dir: &Path, args: &[&str]) -> (i32, Value, String) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = host
        .command("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
            CPE,
        ])
        .args(args)
        .output()
        .expect("run cpe as nobody");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    let all = format!(
        "{stdout}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), json, all)
}

/// Waits until `addr` accepts TCP connections from inside `host`.
fn wait_listening(host: &Host, addr: &str, what: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let ok = host
            .command("bash")
            .args([
                "-c",
                &format!("exec 3<>/dev/tcp/{}", addr.replace(':', "/")),
            ])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if ok {
            return;
        }
        assert!(
            what.is_running(),
            "{} exited:\n{}",
            what.label(),
            what.tail(30)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{addr} never listened:\n{}", what.tail(30));
}

/// A single-member etcd inside `host` on non-default ports, plain or with TLS.
/// With `client_auth`, clients must present a certificate from the PKI's CA.
fn etcd(host: &Host, dir: &Path, client_port: u16, tls: Option<&Path>, client_auth: bool) -> Child {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let a = host.addr;
    let mut args: Vec<String> = vec![
        "--name".into(),
        "pf".into(),
        "--data-dir".into(),
        dir.join(format!("etcd-{client_port}"))
            .display()
            .to_string(),
        "--listen-client-urls".into(),
        format!("{scheme}://{a}:{client_port}"),
        "--advertise-client-urls".into(),
        format!("{scheme}://{a}:{client_port}"),
        "--listen-peer-urls".into(),
        format!("http://127.0.0.1:{}", client_port + 1),
        "--initial-advertise-peer-urls".into(),
        format!("http://127.0.0.1:{}", client_port + 1),
        "--initial-cluster".into(),
        format!("pf=http://127.0.0.1:{}", client_port + 1),
    ];
    if let Some(pki) = tls {
        for (flag, file) in [("--cert-file", "server.crt"), ("--key-file", "server.key")] {
            args.push(flag.into());
            args.push(pki.join(file).display().to_string());
        }
        if client_auth {
            args.push("--trusted-ca-file".into());
            args.push(pki.join("ca.crt").display().to_string());
            args.push("--client-cert-auth".into());
        }
    }
    let mut child = host
        .spawn(
            "etcd",
            &dir.join(format!("etcd-{client_port}.log")),
            "etcd",
            &args,
        )
        .unwrap();
    wait_listening(host, &format!("{a}:{client_port}"), &mut child);
    child
}

fn vip_definition(cp1: &Host, cp2: &Host, vip: &str, interface: &str) -> String {
    format!(
        "cluster: pf\nendpoint:\n  host: {vip}\n  port: 6443\nvirtualIP:\n  interface: {interface}\n\
         controlPlane:\n  replicas: 3\n  machines:\n    - {{name: cp1, address: {}}}\n    - {{name: cp2, address: {}}}\n    - {{name: cp3, address: 192.0.2.10}}\n",
        cp1.addr, cp2.addr
    )
}

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

/// etcd listening for clients on `client` and for peers on `peer`: a real process holding
/// two ports.
fn etcd_holding(host: &Host, dir: &Path, client: &str, peer: &str) -> Child {
    let args: Vec<String> = [
        "--name",
        "holder",
        "--data-dir",
        &dir.join("etcd-holder").display().to_string(),
        "--listen-client-urls",
        &format!("http://{client}"),
        "--advertise-client-urls",
        &format!("http://{client}"),
        "--listen-peer-urls",
        &format!("http://{peer}"),
        "--initial-advertise-peer-urls",
        &format!("http://{peer}"),
        "--initial-cluster",
        &format!("holder=http://{peer}"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut c = host
        .spawn("etcd-holder", &dir.join("etcd-holder.log"), "etcd", &args)
        .unwrap();
    wait_listening(host, client, &mut c);
    c
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
        let o = std::process::Command::new(CPE).args(args).output().unwrap();
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
        .args(["--bounding-set", "-net_admin,-net_raw", "--", CPE])
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
    // address): the port is taken, by the right thing.
    let lb_def = write(
        dir.path(),
        "lb-host.yaml",
        &(std::fs::read_to_string(def).unwrap()
            + "loadBalancer:\n  listen: 0.0.0.0:6443\n  admin: 0.0.0.0:9630\n"),
    );
    let mut cpe_lb = lb
        .spawn(
            "cpe-lb",
            &dir.path().join("cpe-lb.log"),
            CPE,
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

/// An etcd PKI shaped like kubeadm's: a CA, a server certificate for `ip` with both the
/// serverAuth and clientAuth usages (etcd 3.4's own HTTP gateway dials etcd with the server
/// certificate, so with client-certificate auth on it must be usable as a client too; the
/// stand-in API server's test PKI issues serverAuth-only certificates), and a client
/// certificate. Files: ca.crt, server.crt, server.key, client.crt, client.key.
fn etcd_pki(dir: &Path, ip: &str) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose as Eku, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    std::fs::create_dir_all(dir).unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "pf etcd-ca");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    std::fs::write(dir.join("ca.crt"), ca_cert.pem()).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    for (name, names, usages) in [
        (
            "server",
            vec![ip.to_string(), "127.0.0.1".to_string()],
            vec![Eku::ServerAuth, Eku::ClientAuth],
        ),
        ("client", vec![], vec![Eku::ClientAuth]),
    ] {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(names).unwrap();
        p.distinguished_name
            .push(DnType::CommonName, format!("pf etcd {name}"));
        p.extended_key_usages = usages;
        let cert = p.signed_by(&key, &issuer).unwrap();
        std::fs::write(dir.join(format!("{name}.crt")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
    }
}

#[test]
fn local_etcd_with_and_without_tls() {
    require_root();
    require_programs(&["etcd", "ip"]);
    let net = Net::new("pfe").unwrap();
    let cp1 = net.add_host("cp1", 11).unwrap();
    let e1 = net.add_host("etcd1", 21).unwrap();
    let dir = tempdir();
    let pki = dir.path().join("pki");
    cpe_apiserver::Pki::generate(&[e1.addr.to_string()])
        .unwrap()
        .write_to(&pki)
        .unwrap();
    let other = dir.path().join("other");
    cpe_apiserver::Pki::generate(&[e1.addr.to_string()])
        .unwrap()
        .write_to(&other)
        .unwrap();

    // `tls`: the CA to verify etcd with; the client certificate comes from `client`.
    let definition_with = |endpoints: &str, tls: Option<&Path>, client: Option<&Path>| {
        let mut s = format!(
            "cluster: pf\nendpoint:\n  host: lb.example.com\ncontrolPlane:\n  replicas: 3\n  etcd: external\n  machines:\n    - {{name: cp1, address: {}}}\n    - {{name: cp2, address: 10.1.0.2}}\n    - {{name: cp3, address: 10.1.0.3}}\netcd:\n  endpoints: [\"{endpoints}\"]\n",
            cp1.addr
        );
        if let Some(d) = tls {
            s += &format!("  caFile: {}\n", d.join("ca.crt").display());
        }
        if let Some(c) = client {
            s += &format!(
                "  certFile: {}\n  keyFile: {}\n",
                c.join("client.crt").display(),
                c.join("client.key").display()
            );
        }
        s
    };
    let definition = |endpoints: &str, tls: Option<&Path>| {
        definition_with(endpoints, tls, tls.map(|_| pki.as_path()))
    };
    let run = |name: &str, text: String| {
        let p = write(dir.path(), name, &text);
        cpe(
            &cp1,
            &[
                "preflight",
                "-f",
                p.to_str().unwrap(),
                "--local",
                "--node",
                "cp1",
                "-o",
                "json",
                // Generous: a loaded CI machine must not turn a slow handshake into a failure.
                "--timeout",
                "5s",
            ],
        )
    };

    // Plain HTTP etcd answers.
    let mut plain = etcd(&e1, dir.path(), 12379, None, false);
    let url = format!("http://{}:12379", e1.addr);
    let (code, r, out) = run("plain.yaml", definition(&url, None));
    assert_eq!(code, 0, "{out}");
    let c = find(&r, "etcd", "etcd.status");
    assert_eq!(c["status"], "pass", "{out}");
    assert!(c["reason"].as_str().unwrap().contains("etcd 3."), "{c}");
    // etcd is external: its ports are not checked on the machine.
    assert!(!has(&r, "port.2379"), "{out}");
    plain.kill();
    let (code, r, out) = run("plain.yaml", definition(&url, None));
    assert_eq!(code, 1, "{out}");
    assert!(
        find(&r, "etcd", "etcd.status")["reason"]
            .as_str()
            .unwrap()
            .contains("refused"),
        "{out}"
    );

    // TLS etcd, verified against the test CA, with the client certificate sent.
    let _tls = etcd(&e1, dir.path(), 22379, Some(&pki), false);
    let url = format!("https://{}:22379", e1.addr);
    let (code, r, out) = run("tls.yaml", definition(&url, Some(&pki)));
    assert_eq!(code, 0, "{out}");
    assert_eq!(status(&r, "etcd", "etcd.status"), "pass", "{out}");

    // The wrong CA: etcd's certificate is not trusted.
    let (code, r, out) = run("wrongca.yaml", definition(&url, Some(&other)));
    assert_eq!(code, 1, "{out}");
    let c = find(&r, "etcd", "etcd.status");
    assert!(c["reason"].as_str().unwrap().contains("TLS"), "{c}");

    // etcd as kubeadm runs it: client-certificate auth on. The right client certificate
    // passes; none, or one from another CA, is refused by etcd.
    let kpki = dir.path().join("etcd-pki");
    etcd_pki(&kpki, &e1.addr.to_string());
    let _strict = etcd(&e1, dir.path(), 32379, Some(&kpki), true);
    let strict = format!("https://{}:32379", e1.addr);
    let (code, r, out) = run(
        "strict.yaml",
        definition_with(&strict, Some(&kpki), Some(&kpki)),
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(status(&r, "etcd", "etcd.status"), "pass", "{out}");
    for (name, client) in [("nocert.yaml", None), ("foreign.yaml", Some(pki.as_path()))] {
        let (code, r, out) = run(name, definition_with(&strict, Some(&kpki), client));
        assert_eq!(code, 1, "{out}");
        let c = find(&r, "etcd", "etcd.status");
        assert_eq!(c["status"], "fail", "{out}");
        // Refused at the TLS layer, and said so (not "nothing listens").
        assert!(c["reason"].as_str().unwrap().contains("TLS"), "{name}: {c}");
        assert!(
            c["fix"].as_str().unwrap().contains("etcd.certFile"),
            "{name}: {c}"
        );
    }

    // Plain HTTP to the TLS port.
    let (code, r, out) = run(
        "mismatch.yaml",
        definition(&url.replace("https", "http"), None),
    );
    assert_eq!(code, 1, "{out}");
    assert_eq!(status(&r, "etcd", "etcd.status"), "fail", "{out}");
}

/// A stand-in API server (`cpe test-apiserver`) inside `host` on all addresses, port 6443,
/// with the given certificate.
fn apiserver(host: &Host, dir: &Path, cert_dir: &Path, ca: &Path, extra: &[&str]) -> Child {
    let mut args: Vec<String> = [
        "test-apiserver",
        "--listen",
        "0.0.0.0:6443",
        "--name",
        &host.name,
        "--cert",
        &cert_dir.join("server.crt").display().to_string(),
        "--key",
        &cert_dir.join("server.key").display().to_string(),
        "--client-ca",
        &ca.display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    let mut c = host
        .spawn(
            &format!("apiserver-{}", host.name),
            &dir.join(format!("apiserver-{}.log", host.name)),
            CPE,
            &args,
        )
        .unwrap();
    wait_listening(host, &format!("{}:6443", host.addr), &mut c);
    c
}

fn write_cert(dir: &Path, ck: &cpe_apiserver::CertKey) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("server.crt"), &ck.cert_pem).unwrap();
    std::fs::write(dir.join("server.key"), &ck.key_pem).unwrap();
    dir.to_path_buf()
}

#[test]
fn check_readyz_and_certificate_names() {
    require_root();
    require_programs(&["ip"]);
    let net = Net::new("pfc").unwrap();
    let admin = net.add_host("admin", 5).unwrap();
    let cp1 = net.add_host("cp1", 11).unwrap();
    let cp2 = net.add_host("cp2", 12).unwrap();
    let cp3 = net.add_host("cp3", 13).unwrap();
    let dir = tempdir();
    let vip = net.addr(100).to_string();

    // One cluster CA. cp1 and cp3 carry the VIP among their names; cp2's certificate was
    // made without it (the classic misconfiguration: certSANs forgotten on one machine).
    let pki = cpe_apiserver::Pki::generate(&[vip.clone(), cp1.addr.to_string()]).unwrap();
    let pki_dir = dir.path().join("pki");
    pki.write_to(&pki_dir).unwrap();
    let ca = pki_dir.join("ca.crt");
    let cp2_dir = write_cert(
        &dir.path().join("cp2"),
        &pki.issue_server(&["cp2".to_string(), cp2.addr.to_string()])
            .unwrap(),
    );
    let cp3_dir = write_cert(
        &dir.path().join("cp3"),
        &pki.issue_server(&[vip.clone(), cp3.addr.to_string()])
            .unwrap(),
    );
    let _a1 = apiserver(&cp1, dir.path(), &pki_dir, &ca, &[]);
    let _a2 = apiserver(&cp2, dir.path(), &cp2_dir, &ca, &[]);
    // cp3 is up but not ready: /readyz answers 503.
    let _a3 = apiserver(&cp3, dir.path(), &cp3_dir, &ca, &["--not-ready"]);
    // cp1 holds the VIP, as the VIP agent would.
    cp1.exec("ip", &["addr", "add", &format!("{vip}/32"), "dev", "eth0"])
        .unwrap();

    let def = write(
        dir.path(),
        "vip.yaml",
        &format!(
            "cluster: pf\nendpoint:\n  host: {vip}\nvirtualIP:\n  interface: eth0\ncontrolPlane:\n  replicas: 3\n  machines:\n    - {{name: cp1, address: {}}}\n    - {{name: cp2, address: {}}}\n    - {{name: cp3, address: {}}}\n",
            cp1.addr, cp2.addr, cp3.addr
        ),
    );
    let def = def.to_str().unwrap();
    let client = |f: &str| pki_dir.join(f).display().to_string();
    let (cert, key) = (client("client.crt"), client("client.key"));
    let ca_s = ca.display().to_string();
    let creds = ["--ca", &ca_s, "--cert", &cert, "--key", &key];
    let (_, _, table) = cpe(&admin, &[&["check", "-f", def][..], &creds].concat());
    println!("{table}");
    let (code, r, out) = cpe(
        &admin,
        &[&["check", "-f", def, "-o", "json"][..], &creds].concat(),
    );
    assert_eq!(code, 1, "{out}");
    assert_eq!(status(&r, "endpoint", "endpoint.readyz"), "pass", "{out}");
    assert_eq!(
        status(&r, "endpoint", "endpoint.certificate"),
        "pass",
        "{out}"
    );
    assert_eq!(status(&r, "cp1", "machine.readyz"), "pass", "{out}");
    assert_eq!(status(&r, "cp1", "machine.certificate"), "pass", "{out}");
    assert_eq!(status(&r, "cp2", "machine.readyz"), "pass", "{out}");
    let c = find(&r, "cp2", "machine.certificate");
    assert_eq!(c["status"], "fail", "{out}");
    let reason = c["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("{vip} is not among its names")),
        "{reason}"
    );
    assert!(reason.contains("cp2"), "lists the names it has: {reason}");
    assert!(c["fix"].as_str().unwrap().contains("certSANs"), "{c}");
    let c = find(&r, "cp3", "machine.readyz");
    assert_eq!(c["status"], "fail", "{out}");
    assert!(c["reason"].as_str().unwrap().contains("503"), "{c}");
    assert_eq!(status(&r, "cp3", "machine.certificate"), "pass", "{out}");
    assert_eq!(r["summary"]["failed"], 2, "{out}");

    // Another cluster's CA: every certificate is reported as not signed by it.
    let other = dir.path().join("other");
    cpe_apiserver::Pki::generate(&["x.test"])
        .unwrap()
        .write_to(&other)
        .unwrap();
    let other_ca = other.join("ca.crt").display().to_string();
    let (code, r, out) = cpe(
        &admin,
        &["check", "-f", def, "--ca", &other_ca, "-o", "json"],
    );
    assert_eq!(code, 1, "{out}");
    let c = find(&r, "endpoint", "endpoint.certificate");
    assert!(
        c["reason"]
            .as_str()
            .unwrap()
            .contains("not signed by the given CA"),
        "{c}"
    );

    // The VIP is dropped (no holder): the endpoint no longer answers.
    cp1.exec("ip", &["addr", "del", &format!("{vip}/32"), "dev", "eth0"])
        .unwrap();
    let (code, r, out) = cpe(
        &admin,
        &["check", "-f", def, "--timeout", "1s", "-o", "json"],
    );
    assert_eq!(code, 1, "{out}");
    assert_eq!(status(&r, "endpoint", "endpoint.readyz"), "fail", "{out}");
    // The table form has the summary line.
    let (_, _, out) = cpe(&admin, &["check", "-f", def, "--timeout", "1s"]);
    assert!(out.contains("FAIL  10."), "{out}");
    assert!(out.contains("failed"), "{out}");
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
