//! `cpe lb --discover kubernetes` on loopback, against stand-in API servers
//! (`cpe test-apiserver`, TLS from one generated CA, a bearer token on the discovery
//! paths) that serve the `kubernetes` EndpointSlices/Endpoints and switch faults:
//!
//! - the backend set follows the EndpointSlices without SIGHUP (added backends get
//!   checked and come up, removed ones leave), and the set is cached on disk;
//! - each fault (403, an empty answer, garbage, connections dropped, a stalled watch)
//!   leaves the backends as they are and shows in `/status` and the metrics; the 1.20
//!   shape (no v1 slices: core/v1 Endpoints) is used throughout;
//! - a restart with every seed gone reaches the API through the cached set and serves;
//!   a bad cache file is reported, not fatal.
//!
//! Loopback only (no root). Timings are printed, never asserted tightly.

mod common;

use common::{cpe, free_addr};
use cpe_testkit::Child;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const TOKEN: &str = "discolb-test-token";

fn wait_port(addr: SocketAddr, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "{what} never listened on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Bed {
    dir: tempfile::TempDir,
    tls: PathBuf,
    kubeconfig: PathBuf,
    cache: PathBuf,
}

impl Bed {
    fn new() -> Bed {
        let dir = tempfile::tempdir().unwrap();
        let tls = dir.path().join("pki");
        let ok = cpe()
            .args(["test-apiserver", "--pki-only", "--tls-dir"])
            .arg(&tls)
            .status()
            .unwrap()
            .success();
        assert!(ok, "PKI generated");
        let kubeconfig = dir.path().join("kubeconfig");
        // The server named here is not where discovery connects (it goes through the
        // backends); its host is the name the certificates are verified for.
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\ncurrent-context: lb\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:6443\n    certificate-authority: {}\ncontexts:\n- name: lb\n  context:\n    cluster: c\n    user: cpe-lb\nusers:\n- name: cpe-lb\n  user:\n    token: {TOKEN}\n",
                tls.join("ca.crt").display()
            ),
        )
        .unwrap();
        let cache = dir.path().join("cache");
        Bed {
            dir,
            tls,
            kubeconfig,
            cache,
        }
    }

    fn apiserver(&self, name: &str, addr: SocketAddr, set: &[SocketAddr], old: bool) -> Child {
        let mut c = cpe();
        c.args([
            "test-apiserver",
            "--listen",
            &addr.to_string(),
            "--name",
            name,
        ])
        .arg("--tls-dir")
        .arg(&self.tls)
        .args(["--token", TOKEN, "--shutdown-delay", "500ms"]);
        for a in set {
            c.args(["--endpoint", &a.to_string()]);
        }
        if old {
            c.arg("--no-v1-slices");
        }
        let child = Child::spawn(name, c, &self.dir.path().join(format!("{name}.log"))).unwrap();
        wait_port(addr, name);
        child
    }

    /// `cpe lb --discover kubernetes` seeded with `seeds`; returns it, its listen and
    /// admin addresses.
    fn lb(&self, seeds: &[SocketAddr], log: &str) -> (Child, SocketAddr, SocketAddr) {
        let listen = free_addr();
        let admin = free_addr();
        let mut c = cpe();
        c.args([
            "lb",
            "--listen",
            &listen.to_string(),
            "--admin",
            &admin.to_string(),
        ]);
        for s in seeds {
            c.args(["--backend", &s.to_string()]);
        }
        c.args(["--discover", "kubernetes", "--kubeconfig"])
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&self.cache)
            .arg("--ca-file")
            .arg(self.tls.join("ca.crt"))
            .args([
                "--discovery-watch-timeout",
                "2s",
                "--health-interval",
                "100ms",
            ]);
        let lb = Child::spawn("lb", c, &self.dir.path().join(log)).unwrap();
        wait_port(admin, "cpe lb admin");
        (lb, listen, admin)
    }

    /// `POST path` with `body` to a stand-in (curl, verifying with the test CA).
    fn post(&self, addr: SocketAddr, path: &str, body: &str) {
        let out = Command::new("curl")
            .args(["-sS", "--fail", "--max-time", "5", "--cacert"])
            .arg(self.tls.join("ca.crt"))
            .args(["--data-binary", body, &format!("https://{addr}{path}")])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "POST {path} {body} to {addr}: {out:?}"
        );
    }

    fn post_all(&self, servers: &[SocketAddr], path: &str, body: &str) {
        for s in servers {
            self.post(*s, path, body);
        }
    }
}

fn set_text(set: &[SocketAddr]) -> String {
    set.iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn status(admin: SocketAddr) -> serde_json::Value {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let body = rt
        .block_on(cpe_admin::get(admin, "/status", Duration::from_secs(2)))
        .expect("admin /status");
    serde_json::from_str(&body).unwrap()
}

fn metrics(admin: SocketAddr) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(cpe_admin::get(admin, "/metrics", Duration::from_secs(2)))
        .expect("admin /metrics")
}

fn backends(s: &serde_json::Value) -> BTreeSet<String> {
    s["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap().to_string())
        .collect()
}

fn names(set: &[SocketAddr]) -> BTreeSet<String> {
    set.iter().map(|a| a.to_string()).collect()
}

fn source(s: &serde_json::Value) -> serde_json::Value {
    s["discovery"]["sources"][0].clone()
}

/// Polls `/status` until `pred` holds (at most 20 s); returns the status and the time.
fn wait(
    admin: SocketAddr,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> (serde_json::Value, Duration) {
    let t0 = Instant::now();
    loop {
        let s = status(admin);
        if pred(&s) {
            return (s, t0.elapsed());
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}: {s:#}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn origins(s: &serde_json::Value, name: &str) -> Vec<String> {
    s["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == name)
        .map(|b| {
            b["origin"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o.as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_set_follows_the_endpointslices_without_sighup() {
    let bed = Bed::new();
    let (a, b, c) = (free_addr(), free_addr(), free_addr());
    let servers = [a, b, c];
    let _sa = bed.apiserver("a", a, &[a, b], false);
    let _sb = bed.apiserver("b", b, &[a, b], false);
    let _sc = bed.apiserver("c", c, &[a, b], false);
    let (_lb, _listen, admin) = bed.lb(&[a], "lb.log");

    let (s, took) = wait(admin, "the discovered set {a, b}", |s| {
        backends(s) == names(&[a, b])
    });
    println!("discovered set applied {took:?} after the admin listener came up");
    assert_eq!(origins(&s, &b.to_string()), ["kubernetes"], "{s:#}");
    let src = source(&s);
    assert_eq!(src["state"], "ok", "{src:#}");
    assert_eq!(src["api"], "discovery.k8s.io/v1 EndpointSlice", "{src:#}");

    // A rolling replacement: c joins, a leaves; no SIGHUP, no file.
    bed.post_all(&servers, "/debug/endpoints", &set_text(&[b, c]));
    let (s, took) = wait(admin, "the set {b, c}, c up", |s| {
        backends(s) == names(&[b, c])
            && s["backends"]
                .as_array()
                .unwrap()
                .iter()
                .all(|x| x["state"] == "up")
    });
    println!("set change followed and the new backend up after {took:?}");
    assert!(s["set_changed_seconds_ago"].as_f64().unwrap() < 20.0);
    let m = metrics(admin);
    assert!(m.contains("cpe_lb_discovery_set_changes_total"), "{m}");
    assert!(
        m.contains("cpe_lb_discovery_state{source=\"kubernetes\",state=\"ok\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("cpe_lb_discovery_last_success_timestamp_seconds{source=\"kubernetes\"}"),
        "{m}"
    );

    // The cache holds the new set.
    let (_, took) = wait(admin, "the cache written", |s| {
        s["discovery"]["cache"]["state"] == "written"
    });
    let cached =
        std::fs::read_to_string(bed.cache.join(format!("lb-{}.json", _listen.port()))).unwrap();
    assert!(
        cached.contains(&b.to_string())
            && cached.contains(&c.to_string())
            && !cached.contains(&a.to_string()),
        "{cached}"
    );
    println!("cache written within {took:?}");

    // `cpe status` shows the origin column and the source.
    let out = cpe()
        .args(["status", "--admin", &admin.to_string()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("ORIGIN") && text.contains("kubernetes"),
        "{text}"
    );
    assert!(text.contains("discovery kubernetes: ok"), "{text}");
}

#[test]
fn faults_leave_the_backends_unchanged_and_show_in_status() {
    let bed = Bed::new();
    let (a, b) = (free_addr(), free_addr());
    let servers = [a, b];
    // The 1.20 shape: no v1 slices, core/v1 Endpoints.
    let _sa = bed.apiserver("a", a, &[a, b], true);
    let _sb = bed.apiserver("b", b, &[a, b], true);
    let (_lb, _listen, admin) = bed.lb(&[a], "lb.log");
    let (s, _) = wait(admin, "the discovered set {a, b}", |s| {
        backends(s) == names(&[a, b])
    });
    assert_eq!(source(&s)["api"], "v1 Endpoints", "{s:#}");
    let want = names(&[a, b]);

    for (fault, shown) in [
        ("forbidden", "forbidden (HTTP 403)"),
        ("empty", "empty answer"),
        ("garbage", "unparsable answer"),
        ("unreachable", "unreachable"),
        ("stall", "watch stalled"),
    ] {
        bed.post_all(&servers, "/debug/discovery-fault", fault);
        let (s, took) = wait(admin, &format!("the {fault} fault in /status"), |s| {
            source(s)["last_fault"]
                .as_str()
                .is_some_and(|f| f.starts_with(shown))
        });
        println!(
            "{fault}: shown after {took:?}: {}",
            source(&s)["last_fault"]
        );
        assert_eq!(backends(&s), want, "{fault} changed the backends: {s:#}");
        if fault != "stall" {
            // Still failing a while later, still the same backends.
            std::thread::sleep(Duration::from_millis(700));
            let s = status(admin);
            assert_eq!(source(&s)["state"], "failing", "{fault}: {s:#}");
            assert_eq!(backends(&s), want, "{fault}: {s:#}");
            let m = metrics(admin);
            assert!(
                m.contains("cpe_lb_discovery_state{source=\"kubernetes\",state=\"failing\"} 1"),
                "{m}"
            );
            let out = cpe()
                .args(["status", "--admin", &admin.to_string()])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                text.contains("WARNING: discovery kubernetes failing, keeping the last good set"),
                "{text}"
            );
        }
        bed.post_all(&servers, "/debug/discovery-fault", "none");
        // Clear the last fault's marker by waiting for a fresh success.
        wait(admin, "discovery ok again", |s| source(s)["state"] == "ok");
    }
    let m = metrics(admin);
    for reason in ["forbidden", "empty", "unparsable", "unreachable", "stalled"] {
        assert!(
            m.contains(&format!(
                "cpe_lb_discovery_faults_total{{source=\"kubernetes\",reason=\"{reason}\"}}"
            )),
            "{reason}: {m}"
        );
    }
    // After all that, a real change is still followed.
    bed.post_all(&servers, "/debug/endpoints", &set_text(&[b]));
    wait(admin, "the set {b}", |s| backends(s) == names(&[b]));
}

fn version_through(listen: SocketAddr, tls: &Path) -> Result<String, String> {
    let out = Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "3", "--cacert"])
        .arg(tls.join("ca.crt"))
        .arg(format!("https://{listen}/version"))
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn a_restart_with_every_seed_gone_serves_from_the_cache() {
    let bed = Bed::new();
    let (a, b) = (free_addr(), free_addr());
    let _sa = bed.apiserver("a", a, &[a, b], false);
    let _sb = bed.apiserver("b", b, &[a, b], false);
    // First run: learn {a, b} and cache it. The listen port names the cache file, so the
    // second run listens on the same port.
    let gone = free_addr();
    let (mut lb, listen, admin) = bed.lb(&[a], "lb1.log");
    wait(admin, "the cache written with {a, b}", |s| {
        backends(s) == names(&[a, b]) && s["discovery"]["cache"]["state"] == "written"
    });
    lb.terminate(Duration::from_secs(5));

    // Second run: the seed is an address nobody listens on; only the cache knows a and b.
    let t0 = Instant::now();
    let admin2 = free_addr();
    let mut c = cpe();
    c.args([
        "lb",
        "--listen",
        &listen.to_string(),
        "--admin",
        &admin2.to_string(),
        "--backend",
        &gone.to_string(),
    ])
    .args(["--discover", "kubernetes", "--kubeconfig"])
    .arg(&bed.kubeconfig)
    .arg("--cache-dir")
    .arg(&bed.cache)
    .arg("--ca-file")
    .arg(bed.tls.join("ca.crt"))
    .args([
        "--discovery-watch-timeout",
        "2s",
        "--health-interval",
        "100ms",
    ]);
    let _lb2 = Child::spawn("lb2", c, &bed.dir.path().join("lb2.log")).unwrap();
    wait_port(admin2, "cpe lb admin");
    let s = status(admin2);
    assert_eq!(s["discovery"]["cache"]["state"], "loaded", "{s:#}");
    assert!(backends(&s).contains(&a.to_string()), "{s:#}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let answer = loop {
        match version_through(listen, &bed.tls) {
            Ok(v) => break v,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "never served: {e}; {:#}",
                    status(admin2)
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    assert!(answer.contains("gitVersion"), "{answer}");
    println!(
        "served through the cached set {:?} after start",
        t0.elapsed()
    );
    let (s, took) = wait(admin2, "the discovered set {a, b}", |s| {
        backends(s) == names(&[a, b])
    });
    assert_eq!(origins(&s, &a.to_string()), ["kubernetes"], "{s:#}");
    println!("the API answered through the cached backends {took:?} later");
}

#[test]
fn a_bad_cache_file_is_reported_not_fatal() {
    let bed = Bed::new();
    let a = free_addr();
    let _sa = bed.apiserver("a", a, &[a], false);
    std::fs::create_dir_all(&bed.cache).unwrap();
    let listen = free_addr();
    std::fs::write(
        bed.cache.join(format!("lb-{}.json", listen.port())),
        "{not json",
    )
    .unwrap();
    let admin = free_addr();
    let mut c = cpe();
    c.args([
        "lb",
        "--listen",
        &listen.to_string(),
        "--admin",
        &admin.to_string(),
        "--backend",
        &a.to_string(),
    ])
    .args(["--discover", "kubernetes", "--kubeconfig"])
    .arg(&bed.kubeconfig)
    .arg("--cache-dir")
    .arg(&bed.cache)
    .arg("--ca-file")
    .arg(bed.tls.join("ca.crt"));
    let _lb = Child::spawn("lb", c, &bed.dir.path().join("lb.log")).unwrap();
    wait_port(admin, "cpe lb admin");
    let s = status(admin);
    let cache = &s["discovery"]["cache"];
    assert!(
        cache["state"] == "error" || cache["state"] == "written",
        "{s:#}"
    );
    let (s, _) = wait(admin, "discovery ok", |s| source(s)["state"] == "ok");
    assert_eq!(backends(&s), names(&[a]));
    let log = std::fs::read_to_string(bed.dir.path().join("lb.log")).unwrap();
    assert!(
        log.contains("the backend cache is not used") && log.contains("not a cache file"),
        "{log}"
    );
}

#[test]
fn discovery_flags_are_checked() {
    let out = cpe()
        .args([
            "lb",
            "--listen",
            "127.0.0.1:0",
            "--backend",
            "127.0.0.1:1",
            "--discover",
            "kubernetes",
        ])
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--kubeconfig: is required with --discover kubernetes"),
        "{err}"
    );

    let out = cpe()
        .args([
            "lb",
            "--listen",
            "127.0.0.1:0",
            "--backend",
            "127.0.0.1:1",
            "--discover",
            "etcd",
            "--etcd",
            "10.0.0.1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--etcd: `10.0.0.1`") || err.contains("--etcd"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let k = dir.path().join("k");
    std::fs::write(&k, "apiVersion: v1\nclusters: []\n").unwrap();
    let out = cpe()
        .args([
            "lb",
            "--listen",
            "127.0.0.1:0",
            "--backend",
            "127.0.0.1:1",
            "--admin",
            "off",
            "--discover",
            "kubernetes",
            "--kubeconfig",
        ])
        .arg(&k)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "a bad kubeconfig is a file problem"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--kubeconfig") && err.contains("current-context"),
        "{err}"
    );
}
