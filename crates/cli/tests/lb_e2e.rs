//! `cpe lb` end to end, on loopback, with real processes and real clients:
//!
//! - three stand-in API servers (`cpe test-apiserver`, TLS from a generated CA) behind
//!   `cpe lb`; `kubectl version` and `kubectl get --raw /readyz` through it; one server
//!   stopped gracefully (its `/readyz` turns 503 for the shutdown delay) and another
//!   killed while a client sends requests on new connections: no failed request, except
//!   at most one in flight on the killed server at the instant it died;
//! - `etcdctl watch` through `cpe lb -f` against a real etcd keeps streaming while the
//!   backends change through SIGHUP reloads, including an invalid file;
//! - an operator puts a backend in maintenance with `cpe status --maintenance` and takes
//!   it out again: no new connection goes to it meanwhile.
//!
//! Loopback only: no namespaces, so no root needed. Timings are printed, not asserted
//! tightly (two shared cores).

use cpe_apiserver::client::{self, Target};
use cpe_testkit::Child;
use std::io::BufRead;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// Sends a signal by name (`TERM`, `HUP`) with kill(1).
fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args(["-s", sig, &child.pid().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -s {sig} {}", child.pid());
}

fn cpe() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cpe"))
}

/// A loopback address with a port nobody listens on right now.
fn free_addr(ip: &str) -> SocketAddr {
    let l = TcpListener::bind((ip, 0)).unwrap();
    l.local_addr().unwrap()
}

fn wait_port(addr: SocketAddr, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "{what} never listened on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn status(admin: SocketAddr) -> serde_json::Value {
    let body = cpe_admin::get(admin, "/status", Duration::from_secs(2))
        .await
        .expect("admin /status");
    serde_json::from_str(&body).unwrap()
}

fn state_in(status: &serde_json::Value, backend: SocketAddr) -> String {
    status["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == backend.to_string())
        .map(|b| b["state"].as_str().unwrap().to_string())
        .unwrap_or_else(|| "absent".into())
}

async fn wait_state(
    admin: SocketAddr,
    backend: SocketAddr,
    pred: impl Fn(&str) -> bool,
    what: &str,
) -> Duration {
    let start = Instant::now();
    loop {
        let s = status(admin).await;
        if pred(&state_in(&s, backend)) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "timed out waiting for {what}: {s:#}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn apiserver(name: &str, addr: SocketAddr, tls: &Path, logs: &Path) -> Child {
    let mut c = cpe();
    c.args([
        "test-apiserver",
        "--listen",
        &addr.to_string(),
        "--name",
        name,
    ])
    .arg("--tls-dir")
    .arg(tls)
    .args(["--shutdown-delay", "1500ms", "--shutdown-grace", "1s"]);
    let child = Child::spawn(name, c, &logs.join(format!("{name}.log"))).unwrap();
    wait_port(addr, name);
    child
}

/// An HTTPS client target for the endpoint at `listen`, verifying with the stand-ins' CA.
fn tls_target(listen: SocketAddr, tls: &Path) -> Target {
    let ca = std::fs::read_to_string(tls.join("ca.crt")).unwrap();
    Target {
        addr: listen,
        tls: Some((
            cpe_apiserver::tls::client_config(&ca, None, &[b"http/1.1"]).unwrap(),
            cpe_apiserver::tls::server_name("127.0.0.1").unwrap(),
        )),
        timeout: Duration::from_secs(5),
    }
}

/// Starts `cpe lb --listen --admin` on free loopback ports in front of `backends`
/// (certificates verified with `ca` when given); returns it with its two addresses.
fn start_lb(
    backends: &[SocketAddr],
    ca: Option<&Path>,
    logs: &Path,
) -> (Child, SocketAddr, SocketAddr) {
    let listen = free_addr("127.0.0.1");
    let admin = free_addr("127.0.0.1");
    let mut c = cpe();
    c.args([
        "lb",
        "--listen",
        &listen.to_string(),
        "--admin",
        &admin.to_string(),
    ]);
    for a in backends {
        c.args(["--backend", &a.to_string()]);
    }
    if let Some(ca) = ca {
        c.arg("--ca-file").arg(ca);
    }
    let lb = Child::spawn("lb", c, &logs.join("lb.log")).unwrap();
    (lb, listen, admin)
}

/// When each request ended and what it got.
type RequestLog = Vec<(Instant, Result<String, String>)>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_standins_stop_one_kill_one_no_failed_request() {
    cpe_testkit::require_programs(&["kubectl"]);
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("pki");
    let addrs = [
        free_addr("127.0.0.1"),
        free_addr("127.0.0.1"),
        free_addr("127.0.0.1"),
    ];
    // The first one generates the CA and certificates; the others reuse them.
    let mut s1 = apiserver("s1", addrs[0], &tls, dir.path());
    let mut s2 = apiserver("s2", addrs[1], &tls, dir.path());
    let _s3 = apiserver("s3", addrs[2], &tls, dir.path());

    let (mut lb, listen, admin) = start_lb(&addrs, Some(&tls.join("ca.crt")), dir.path());
    wait_port(admin, "cpe lb admin");
    for a in &addrs {
        wait_state(admin, *a, |s| s == "up", "every backend up").await;
    }

    // Real clients through the endpoint.
    let kubectl = |args: &[&str]| {
        let out = Command::new("kubectl")
            .arg(format!("--server=https://{listen}"))
            .arg(format!(
                "--certificate-authority={}",
                tls.join("ca.crt").display()
            ))
            .arg(format!(
                "--client-certificate={}",
                tls.join("client.crt").display()
            ))
            .arg(format!("--client-key={}", tls.join("client.key").display()))
            .arg("--kubeconfig=/dev/null")
            .stdin(Stdio::null())
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let v = kubectl(&["version", "-o", "json"]);
    assert!(v.contains("serverVersion"), "{v}");
    assert_eq!(kubectl(&["get", "--raw", "/readyz"]).trim(), "ok");
    let table = cpe()
        .args(["status", "--admin", &admin.to_string()])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout);
    assert_eq!(table.matches(" UP ").count(), 3, "{table}");

    // A client sending requests on new connections the whole time.
    let target = tls_target(listen, &tls);
    let stop = Arc::new(AtomicBool::new(false));
    let log: Arc<Mutex<RequestLog>> = Arc::default();
    let client = {
        let (stop, log) = (stop.clone(), log.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let r = match client::get(&target, "/version").await {
                    Ok(r) if r.status == 200 => Ok(r.backend.unwrap_or_default()),
                    Ok(r) => Err(format!("HTTP {}", r.status)),
                    Err(e) => Err(e.to_string()),
                };
                log.lock().unwrap().push((Instant::now(), r));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(800)).await;

    // s1: graceful stop. /readyz turns 503 for the shutdown delay, then it closes.
    signal(&s1, "TERM");
    let drained = wait_state(admin, addrs[0], |s| s != "up", "s1 out of rotation").await;
    eprintln!("s1 (SIGTERM) out of rotation after {drained:?}");
    assert!(
        s1.wait_timeout(Duration::from_secs(10)).is_some(),
        "s1 did not exit"
    );

    // s2: killed.
    let killed_at = Instant::now();
    s2.kill();
    let removed = wait_state(admin, addrs[1], |s| s != "up", "s2 out of rotation").await;
    eprintln!("s2 (SIGKILL) out of rotation after {removed:?}");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, Ordering::Relaxed);
    client.await.unwrap();

    let log = log.lock().unwrap().clone();
    let failed: Vec<_> = log.iter().filter(|(_, r)| r.is_err()).collect();
    let ok_after_kill = log
        .iter()
        .filter(|(t, r)| *t > killed_at && r.as_deref() == Ok("s3"))
        .count();
    eprintln!(
        "{} requests, {} failed: {:?}",
        log.len(),
        failed.len(),
        failed.iter().map(|(_, r)| r).collect::<Vec<_>>()
    );
    assert!(failed.len() <= 1, "failed requests: {failed:?}");
    for (t, r) in &failed {
        assert!(
            *t >= killed_at,
            "a request failed before any server was killed: {r:?}"
        );
    }
    assert!(
        ok_after_kill > 10,
        "s3 served {ok_after_kill} requests after the kill"
    );
    let metrics = cpe_admin::get(admin, "/metrics", Duration::from_secs(2))
        .await
        .unwrap();
    let drain_line = format!(
        "cpe_lb_backend_transitions_total{{backend=\"{}\",from=\"up\",to=\"draining\"}} 1",
        addrs[0]
    );
    assert!(
        metrics.contains(&drain_line),
        "s1 never drained on 503:\n{metrics}"
    );

    // SIGTERM: stops, exit 0.
    let st = lb
        .terminate(Duration::from_secs(10))
        .expect("cpe lb did not exit");
    assert!(st.success(), "cpe lb exit: {st:?}\n{}", lb.tail(20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_set_by_the_operator_takes_a_backend_out_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("pki");
    let addrs = [free_addr("127.0.0.1"), free_addr("127.0.0.1")];
    let _s1 = apiserver("s1", addrs[0], &tls, dir.path());
    let _s2 = apiserver("s2", addrs[1], &tls, dir.path());
    let (_lb, listen, admin) = start_lb(&addrs, None, dir.path());
    wait_port(admin, "cpe lb admin");
    for a in &addrs {
        wait_state(admin, *a, |s| s == "up", "every backend up").await;
    }
    let status_cmd = |arg: String| {
        cpe()
            .args([
                "status",
                "--admin",
                &admin.to_string(),
                "--maintenance",
                &arg,
            ])
            .output()
            .unwrap()
    };

    let out = status_cmd(format!("{}=on", addrs[0]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("maintenance on"));
    assert_eq!(state_in(&status(admin).await, addrs[0]), "maintenance");

    // New connections go only to s2 while s1 is in maintenance, checks notwithstanding.
    let target = tls_target(listen, &tls);
    for _ in 0..20 {
        let r = client::get(&target, "/debug/whoami")
            .await
            .expect("request through the LB");
        assert_eq!(
            r.backend.as_deref(),
            Some("s2"),
            "a new connection went to s1 in maintenance"
        );
    }
    tokio::time::sleep(Duration::from_millis(600)).await; // a few probe rounds: still out
    assert_eq!(state_in(&status(admin).await, addrs[0]), "maintenance");

    let out = status_cmd(format!("{}=off", addrs[0]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_state(admin, addrs[0], |s| s == "up", "s1 back after maintenance").await;

    // Bad input: a value that is not on/off is a usage error; an unknown backend is named.
    let out = status_cmd(format!("{}=maybe", addrs[0]));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("BACKEND=on"));
    let out = status_cmd("10.9.9.9:6443=on".into());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("10.9.9.9:6443"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn write_definition(path: &Path, listen: SocketAddr, admin: SocketAddr, machines: &[SocketAddr]) {
    let mut y = format!(
        "cluster: e2e\nmode: external-lb\nendpoint:\n  host: 127.0.0.1\n  port: {}\n\
         controlPlane:\n  replicas: 1\n  etcd: external\n  machines:\n",
        listen.port()
    );
    for (i, m) in machines.iter().enumerate() {
        y += &format!(
            "    - name: m{i}\n      address: {}\n      apiServerPort: {}\n",
            m.ip(),
            m.port()
        );
    }
    y += &format!(
        "healthCheck:\n  protocol: http\n  path: /health\n  interval: 100ms\n\
         loadBalancer:\n  listen: {listen}\n  admin: {admin}\n  drainTimeout: 60s\n"
    );
    std::fs::write(path, y).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_watch_keeps_streaming_while_backends_change() {
    cpe_testkit::require_programs(&["etcd", "etcdctl"]);
    let dir = tempfile::tempdir().unwrap();
    // One etcd, reachable on two loopback addresses: two backends of the same service.
    let a = free_addr("127.0.0.1");
    let b = SocketAddr::new("127.0.0.2".parse().unwrap(), a.port());
    let peer = free_addr("127.0.0.1");
    let mut etcd_cmd = Command::new("etcd");
    etcd_cmd
        .arg("--data-dir")
        .arg(dir.path().join("etcd"))
        .args([
            "--listen-client-urls",
            &format!("http://{a},http://{b}"),
            "--advertise-client-urls",
            &format!("http://{a}"),
            "--listen-peer-urls",
            &format!("http://{peer}"),
            "--initial-advertise-peer-urls",
            &format!("http://{peer}"),
            "--initial-cluster",
            &format!("default=http://{peer}"),
        ]);
    let _etcd = Child::spawn("etcd", etcd_cmd, &dir.path().join("etcd.log")).unwrap();
    wait_port(a, "etcd");
    let etcdctl = |args: &[&str]| {
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &a.to_string()])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "etcdctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", &a.to_string(), "endpoint", "health"])
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        assert!(Instant::now() < deadline, "etcd not healthy");
        std::thread::sleep(Duration::from_millis(100));
    }

    let listen = free_addr("127.0.0.1");
    let admin = free_addr("127.0.0.1");
    let file = dir.path().join("endpoint.yaml");
    write_definition(&file, listen, admin, &[a]);
    let mut c = cpe();
    c.args(["lb", "-f"]).arg(&file);
    let lb = Child::spawn("lb", c, &dir.path().join("lb.log")).unwrap();
    wait_port(admin, "cpe lb admin");
    wait_state(admin, a, |s| s == "up", "etcd backend up").await;

    // The watch, through the load balancer.
    let mut watch = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", &listen.to_string(), "watch", "cpe-key"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let out = watch.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let expect = |value: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) if l == value => return,
                Ok(_) => continue,
                Err(_) => panic!("the watch did not deliver {value}"),
            }
        }
    };
    // The watch may take a moment to register: put until it shows up.
    let mut seen = false;
    for i in 0..50 {
        etcdctl(&["put", "cpe-key", &format!("v0-{i}")]);
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
            if l == "PUT" {
                seen = true;
                break;
            }
        }
    }
    assert!(seen, "the watch through the LB never started");
    let hup = |what: &str| {
        signal(&lb, "HUP");
        eprintln!("SIGHUP: {what}");
    };

    // Add a backend.
    write_definition(&file, listen, admin, &[a, b]);
    hup("added 127.0.0.2");
    wait_state(admin, b, |s| s == "up", "second backend up").await;
    etcdctl(&["put", "cpe-key", "v1"]);
    expect("v1");

    // Remove the backend that carries the watch: no new connections to it, the watch
    // keeps streaming during the drain timeout.
    write_definition(&file, listen, admin, &[b]);
    hup("removed 127.0.0.1");
    wait_state(admin, a, |s| s == "absent", "first backend removed").await;
    let st = status(admin).await;
    assert_eq!(st["removed"][0]["name"], a.to_string(), "{st:#}");
    etcdctl(&["put", "cpe-key", "v2"]);
    expect("v2");

    // An invalid file: reported, the old definition kept, the watch untouched.
    std::fs::write(&file, "cluster: [unclosed\n").unwrap();
    hup("invalid file");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let st = status(admin).await;
        if st["last_reload_error"].is_string() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "invalid reload not reported: {st:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(state_in(&status(admin).await, b), "up");
    etcdctl(&["put", "cpe-key", "v3"]);
    expect("v3");
    // New clients through the LB still work.
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args([
            "--endpoints",
            &listen.to_string(),
            "get",
            "cpe-key",
            "--print-value-only",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "v3");
    let _ = watch.kill();
    let _ = watch.wait();
}
