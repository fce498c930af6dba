//! `cpe test-apiserver` as a process, driven by real clients: `kubectl` (version, get --raw,
//! a watch) against the generated CA, a certificate lacking the dialled name, and the
//! signal-driven shutdown sequence and readiness switch. Needs `kubectl` on PATH (the test
//! fails saying so when it is missing); needs no root.

use cpe_apiserver::client::{self, ClientError, Target};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `cpe test-apiserver` child, killed when dropped (also when a test fails).
struct Standin {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Standin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Standin {
    fn start(args: &[&str]) -> Standin {
        let mut child = Command::new(env!("CARGO_BIN_EXE_cpe"))
            .arg("test-apiserver")
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot start cpe test-apiserver");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let addr = line
            .split("://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no `listening on` line, got {line:?}"));
        Standin { child, addr }
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Waits for the process to exit, returning its exit code.
    fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let start = Instant::now();
        while start.elapsed() < within {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("cpe test-apiserver did not exit within {within:?}");
    }
}

fn kubectl(args: &[&str]) -> (bool, String, String) {
    let out = Command::new("kubectl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!("kubectl is needed by this test (the stand-in is tested with the real client) and could not run: {e}")
        });
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn file(dir: &Path, name: &str) -> String {
    dir.join(name).to_str().unwrap().to_string()
}

fn rt() -> tokio::runtime::Runtime {
    let _ = rustls::crypto::ring::default_provider().install_default();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn plain(addr: SocketAddr) -> Target {
    Target {
        addr,
        tls: None,
        timeout: Duration::from_secs(5),
    }
}

/// What `cpe test-apiserver --tls-dir` writes.
const PKI_FILES: [&str; 5] = [
    "ca.crt",
    "server.crt",
    "server.key",
    "client.crt",
    "client.key",
];

#[test]
fn kubectl_version_readyz_and_watch_against_the_generated_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let pki: PathBuf = tmp.path().join("pki");
    let s = Standin::start(&["--name", "cp1", "--tls-dir", pki.to_str().unwrap()]);
    for f in PKI_FILES {
        assert!(pki.join(f).is_file(), "{f} not generated");
    }
    let server = format!("https://{}", s.addr);
    let (ca, crt, key) = (
        file(&pki, "ca.crt"),
        file(&pki, "client.crt"),
        file(&pki, "client.key"),
    );

    // With the CA and the client certificate, as an admin.conf would.
    let (ok, out, err) = kubectl(&[
        "--server",
        &server,
        "--certificate-authority",
        &ca,
        "--client-certificate",
        &crt,
        "--client-key",
        &key,
        "version",
    ]);
    assert!(ok, "kubectl version failed: {err}");
    // Newer kubectl prints `Server Version: v1.31.0-...`, older ones a version.Info struct.
    assert!(
        out.contains("Server Version") && out.contains("v1.31.0-cpe-standin"),
        "{out}"
    );

    // By name (localhost is in the default names).
    let by_name = format!("https://localhost:{}", s.addr.port());
    let (ok, out, err) = kubectl(&[
        "--server",
        &by_name,
        "--certificate-authority",
        &ca,
        "--token",
        "unused",
        "get",
        "--raw",
        "/readyz",
    ]);
    assert!(ok, "kubectl get --raw /readyz failed: {err}");
    assert_eq!(out.trim(), "ok");

    // Without verification (the form used when only the endpoint matters).
    let (ok, out, err) = kubectl(&[
        "--server",
        &server,
        "--insecure-skip-tls-verify",
        "--token",
        "unused",
        "get",
        "--raw",
        "/readyz",
    ]);
    assert!(
        ok,
        "kubectl --insecure-skip-tls-verify get --raw /readyz failed: {err}"
    );
    assert_eq!(out.trim(), "ok");

    // A watch through kubectl (HTTP/2 stream): events keep coming until kubectl's timeout.
    let (_, out, _) = kubectl(&[
        "--server",
        &server,
        "--certificate-authority",
        &ca,
        "--token",
        "unused",
        "--request-timeout",
        "2s",
        "get",
        "--raw",
        "/api/v1/namespaces/default/pods?watch=true",
    ]);
    let events: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    assert!(events.len() >= 2, "too few watch events in 2 s: {out:?}");
    assert_eq!(
        events[0]["object"]["metadata"]["annotations"]["cpe.dev/backend"],
        "cp1"
    );
}

#[test]
fn kubectl_refuses_a_certificate_lacking_the_endpoint_name() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = tmp.path().join("pki");
    let s = Standin::start(&[
        "--tls-dir",
        pki.to_str().unwrap(),
        "--san",
        "cp1.example.test",
        "--san",
        "127.0.0.2",
    ]);
    let ca = file(&pki, "ca.crt");
    for (host, want) in [
        (
            "127.0.0.1".to_string(),
            "certificate is valid for 127.0.0.2, not 127.0.0.1",
        ),
        (
            "localhost".to_string(),
            "certificate is valid for cp1.example.test, not localhost",
        ),
    ] {
        let server = format!("https://{host}:{}", s.addr.port());
        let (ok, _, err) = kubectl(&[
            "--server",
            &server,
            "--certificate-authority",
            &ca,
            "--token",
            "unused",
            "version",
        ]);
        assert!(!ok, "kubectl accepted a certificate without {host}");
        assert!(
            err.contains(want),
            "unexpected kubectl error for {host}: {err}"
        );
    }
}

#[test]
fn sigterm_runs_the_shutdown_sequence_and_exits_0() {
    let mut s = Standin::start(&[
        "--plain-http",
        "--name",
        "cp2",
        "--shutdown-delay",
        "1500ms",
    ]);
    let target = plain(s.addr);
    let rt = rt();
    assert_eq!(
        rt.block_on(client::get(&target, "/readyz")).unwrap().status,
        200
    );
    s.signal("TERM");
    // Within the delay: /readyz 503, everything else still served on new connections.
    let mut saw_503 = false;
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(1000) {
        let r = rt
            .block_on(client::get(&target, "/readyz"))
            .expect("served during the delay");
        if r.status == 503 {
            saw_503 = true;
            let v = rt
                .block_on(client::get(&target, "/version"))
                .expect("served during the delay");
            assert_eq!(v.status, 200);
            assert_eq!(v.backend.as_deref(), Some("cp2"));
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(saw_503, "/readyz never turned 503 after SIGTERM");
    assert_eq!(s.wait_exit(Duration::from_secs(10)), Some(0));
    match rt.block_on(client::get(&target, "/readyz")) {
        Err(ClientError::Connect { .. }) => {}
        other => panic!("expected a refused connection after exit, got {other:?}"),
    }
}

#[test]
fn sigusr1_flips_readiness() {
    let s = Standin::start(&["--plain-http", "--not-ready"]);
    let target = plain(s.addr);
    let rt = rt();
    let status =
        |rt: &tokio::runtime::Runtime| rt.block_on(client::get(&target, "/readyz")).unwrap().status;
    assert_eq!(status(&rt), 503);
    for want in [200, 503, 200] {
        s.signal("USR1");
        let start = Instant::now();
        while status(&rt) != want {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "/readyz did not become {want}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn bad_flags_are_named() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_cpe"))
            .arg("test-apiserver")
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["--listen", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tls-dir"));
    let out = run(&[
        "--listen",
        "127.0.0.1:0",
        "--cert",
        "/nonexistent/c.pem",
        "--key",
        "/nonexistent/k.pem",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--cert") && err.contains("/nonexistent/c.pem"),
        "{err}"
    );
    let out = run(&["--cert", "c.pem"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "--cert without --key is a usage error"
    );
    let out = run(&["--plain-http", "--shutdown-delay", "soon"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&[
        "--tls-dir",
        "/tmp/x",
        "--san",
        "not a name!",
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a name!"));
}

#[test]
fn standins_started_together_on_one_directory_share_one_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = tmp.path().join("shared");
    let dir = pki.to_str().unwrap().to_string();
    // Started at the same moment: the directory is generated once, atomically.
    let mut children: Vec<Standin> = std::thread::scope(|s| {
        let handles: Vec<_> = ["cp1", "cp2", "cp3"]
            .into_iter()
            .map(|name| {
                let dir = dir.clone();
                s.spawn(move || Standin::start(&["--name", name, "--tls-dir", &dir]))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ca = std::fs::read_to_string(pki.join("ca.crt")).unwrap();
    let rt = rt();
    for (s, name) in children.iter_mut().zip(["cp1", "cp2", "cp3"]) {
        let target = Target {
            addr: s.addr,
            tls: Some((
                cpe_apiserver::tls::client_config(&ca, None, &[]).unwrap(),
                cpe_apiserver::tls::server_name("localhost").unwrap(),
            )),
            timeout: Duration::from_secs(5),
        };
        let r = rt
            .block_on(client::get(&target, "/debug/whoami"))
            .unwrap_or_else(|e| panic!("{name} does not verify against the shared CA: {e}"));
        assert_eq!(r.backend.as_deref(), Some(name));
    }
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        1,
        "temporary directories left: {leftovers:?}"
    );
}

#[test]
fn pki_only_writes_the_directory_and_exits() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = tmp.path().join("a/b/pki");
    let out = Command::new(env!("CARGO_BIN_EXE_cpe"))
        .args([
            "test-apiserver",
            "--pki-only",
            "--tls-dir",
            pki.to_str().unwrap(),
        ])
        .args(["--san", "cp1.example.test", "--san", "10.77.0.11"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in PKI_FILES {
        assert!(pki.join(f).is_file(), "{f} missing");
    }
}
