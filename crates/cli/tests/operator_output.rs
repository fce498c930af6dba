//! Issue 14, item 5, what operators and scripts read (no root, loopback only):
//!
//! - `cpe preflight -o json` and `cpe check -o json` print a JSON document on stdout for
//!   an invalid definition;
//! - logs carry no ANSI colour codes when stderr is not a terminal (a journal);
//! - reloading an unchanged definition does not claim restart-only settings changed;
//! - (issue 14, item 1) a definition path that has become a symlink to `/dev/zero` or a
//!   FIFO is refused on SIGHUP, the load balancer keeps its definition, its memory and its
//!   admin listener, and a SIGTERM afterwards is acted on at once (nothing blocked).

mod common;
use common::{cpe, free_addr};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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

/// A `cpe lb -f` on loopback with one (absent) backend, its stderr read line by line.
struct RunningLb {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    log: Vec<String>,
    file: std::path::PathBuf,
    admin: SocketAddr,
    _dir: tempfile::TempDir,
}

impl RunningLb {
    fn start() -> RunningLb {
        let dir = tempfile::tempdir().unwrap();
        let (listen, admin, backend) = (free_addr(), free_addr(), free_addr());
        let file = dir.path().join("ep.yaml");
        std::fs::write(
            &file,
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
            .arg(&file)
            .env_remove("NO_COLOR")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = std::sync::mpsc::channel::<String>();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut lb = RunningLb {
            child,
            lines,
            log: Vec::new(),
            file,
            admin,
            _dir: dir,
        };
        lb.wait_for("load balancer ready");
        lb
    }

    fn wait_for(&mut self, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    let hit = l.contains(what);
                    self.log.push(l);
                    if hit {
                        return;
                    }
                }
                Err(_) => panic!("no `{what}` in the log:\n{}", self.log.join("\n")),
            }
        }
    }

    fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .args(["-s", sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }
}

impl Drop for RunningLb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn logs_are_plain_and_an_unchanged_reload_needs_no_restart() {
    let mut lb = RunningLb::start();
    lb.signal("HUP");
    lb.wait_for("reloaded");
    std::thread::sleep(Duration::from_millis(300));
    while let Ok(l) = lb.lines.try_recv() {
        lb.log.push(l);
    }
    let log = std::mem::take(&mut lb.log);
    drop(lb);
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

/// `GET /status` on the admin listener answers within `timeout`.
fn status_answers(admin: SocketAddr, timeout: Duration) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&admin, timeout) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(timeout));
    let req = format!("GET /status HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    buf.starts_with(b"HTTP/1.1 200")
}

#[test]
fn a_definition_turned_into_dev_zero_or_a_fifo_is_refused_on_reload_and_nothing_blocks() {
    let mut lb = RunningLb::start();
    let before = lb.rss_kib();

    // `ln -sf /dev/zero ep.yaml; kill -HUP` grew a load balancer to 1.36 GB before.
    std::fs::remove_file(&lb.file).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &lb.file).unwrap();
    lb.signal("HUP");
    lb.wait_for("reload failed");
    assert!(
        lb.log.last().unwrap().contains("not a regular file"),
        "{}",
        lb.log.join("\n")
    );
    let after = lb.rss_kib();
    assert!(
        after < before + 50 * 1024,
        "RSS grew from {before} KiB to {after} KiB on a reload of /dev/zero"
    );
    assert!(status_answers(lb.admin, Duration::from_secs(2)));

    // A FIFO nobody writes to blocked the runtime that runs checks and signals before.
    std::fs::remove_file(&lb.file).unwrap();
    let st = Command::new("mkfifo").arg(&lb.file).status().unwrap();
    assert!(st.success());
    lb.signal("HUP");
    lb.wait_for("reload failed");
    assert!(status_answers(lb.admin, Duration::from_secs(2)));
    let t0 = Instant::now();
    lb.signal("TERM");
    loop {
        if let Some(st) = lb.child.try_wait().unwrap() {
            assert!(st.success(), "{st:?}");
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "SIGTERM not acted on after a FIFO reload:\n{}",
            lb.log.join("\n")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
