//! Issue 14, item 5, what operators and scripts read (no root, loopback only):
//!
//! - `cpe preflight -o json` and `cpe check -o json` print a JSON document on stdout for
//!   an invalid definition;
//! - logs carry no ANSI colour codes when stderr is not a terminal (a journal);
//! - reloading an unchanged definition does not claim restart-only settings changed.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn cpe() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cpe"))
}

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

#[test]
fn preflight_and_check_print_json_for_an_invalid_definition() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.yaml");
    std::fs::write(&f, "cluster: x\nendpoint:\n  port: 0\n").unwrap();
    for cmd in ["preflight", "check"] {
        let out = cpe()
            .arg(cmd)
            .arg("-f")
            .arg(&f)
            .args(["-o", "json"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{cmd}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{cmd} -o json: stdout is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&out.stdout)
            )
        });
        assert_eq!(v["command"], cmd);
        assert_eq!(v["valid"], false);
        assert_eq!(v["exitCode"], 1);
        let problems = v["problems"].as_array().unwrap();
        assert!(!problems.is_empty());
        assert!(problems.iter().any(|p| p["severity"] == "error"), "{v:#}");
        // The table form is unchanged: problems on stderr, nothing on stdout.
        let out = cpe().arg(cmd).arg("-f").arg(&f).output().unwrap();
        assert!(out.stdout.is_empty());
        assert!(!out.stderr.is_empty());
    }
}

#[test]
fn logs_are_plain_and_an_unchanged_reload_needs_no_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (listen, admin, backend) = (free_addr(), free_addr(), free_addr());
    let f = dir.path().join("ep.yaml");
    std::fs::write(
        &f,
        format!(
            "cluster: e2e\nmode: external-lb\nendpoint:\n  host: 127.0.0.1\n  port: {}\n\
             controlPlane:\n  replicas: 1\n  etcd: external\n  machines:\n    - name: m0\n      \
             address: 127.0.0.1\n      apiServerPort: {}\nhealthCheck:\n  protocol: tcp\n\
             loadBalancer:\n  listen: {listen}\n  admin: {admin}\n",
            listen.port(),
            backend.port()
        ),
    )
    .unwrap();
    let mut child = cpe()
        .arg("lb")
        .arg("-f")
        .arg(&f)
        .env_remove("NO_COLOR")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut log = Vec::new();
    let wait_for = |what: &str, log: &mut Vec<String>| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) => {
                    let hit = l.contains(what);
                    log.push(l);
                    if hit {
                        return;
                    }
                }
                Err(_) => panic!("no `{what}` in the log:\n{}", log.join("\n")),
            }
        }
    };
    wait_for("load balancer ready", &mut log);
    let hup = Command::new("kill")
        .args(["-s", "HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    wait_for("reloaded", &mut log);
    std::thread::sleep(Duration::from_millis(300));
    while let Ok(l) = rx.try_recv() {
        log.push(l);
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = log.join("\n");
    assert!(
        !text.contains('\u{1b}'),
        "ANSI escape codes in a non-terminal log:\n{text:?}"
    );
    assert!(
        !text.contains("only after a restart"),
        "an unchanged reload claims restart-only changes:\n{text}"
    );
}
