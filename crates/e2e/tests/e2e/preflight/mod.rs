//! End-to-end tests of `cpe preflight` and `cpe check`, run as the binary against real
//! conditions: ports held by real processes, real interfaces in network namespaces, a
//! second namespace holding the VIP (so it answers ARP for it), an unreachable TEST-NET
//! address, a real etcd with and without TLS, and the stand-in API server with a
//! certificate that lacks the endpoint name.
//!
//! Every test needs root (namespaces); without it, it fails with a clear message. Each test
//! builds its own namespaces (`cpe_testkit::Net`, a distinct subnet each) and removes them
//! on drop, even when it fails.
//!
//! - this file: the helpers (running `cpe` in a namespace, as `nobody`, reading the JSON
//!   report, a single-member etcd, a VIP definition).
//! - `local`: `--local` on the machine itself: ports held by real processes, usage
//!   errors, the VIP interface, ARP/NDP and capabilities.
//! - `remote`: from another machine: reachability, ports, the VIP, an external load
//!   balancer's name.
//! - `etcd`: etcd with and without TLS and client certificates.
//! - `check`: `cpe check`: `/readyz` and the names in the API servers' certificates.

mod check;
mod etcd;
mod local;
mod remote;

use cpe_testkit::{Child, Host};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cpe_e2e::cpe_bin;

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
        .command(cpe_bin())
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
            cpe_bin(),
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
