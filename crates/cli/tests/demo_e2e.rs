//! `cpe demo --quick` end to end: the binary runs three stand-in API servers and the load
//! balancer on loopback, sends traffic, stops one server gracefully and kills another. The
//! test asserts that it exits 0, prints the summary, that the load balancer took each
//! failed server out and put it back, that every backend served requests, and that no
//! request failed except those in flight on the killed server. A signal mid-demo (SIGTERM,
//! SIGHUP, SIGINT) ends it early with nothing left on disk, and a symlink planted where
//! the demo once put its files is not followed. Needs no root.

use std::process::Command;
use std::time::{Duration, Instant};

fn field(line: &str, key: &str) -> u64 {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

#[test]
fn quick_demo_runs_and_only_requests_in_flight_on_the_killed_server_fail() {
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_cpe"))
        .args(["demo", "--quick", "--view", "plain"])
        .output()
        .expect("cannot run cpe demo");
    let took = start.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert_eq!(out.status.code(), Some(0), "cpe demo failed: {stderr}");
    assert!(
        took < Duration::from_secs(60),
        "the quick demo took {took:?}"
    );
    assert!(stdout.contains("Summary ("), "no summary");

    let result = stdout
        .lines()
        .find(|l| l.starts_with("demo result: "))
        .expect("no `demo result:` line");
    let requests = field(result, "requests");
    let failed = field(result, "failed");
    let in_flight = field(result, "in_flight_on_killed");
    let other = field(result, "other_failures");
    assert!(
        requests >= 200,
        "too little traffic to show anything: {result}"
    );
    assert_eq!(
        other, 0,
        "requests failed that the endpoint should have hidden: {result}\n{stdout}"
    );
    assert_eq!(failed, in_flight, "{result}");

    // Every backend served traffic.
    let per = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("per backend"))
        .expect("no per-backend line");
    for name in ["cp1", "cp2", "cp3"] {
        let n: u64 = per
            .split(',')
            .find_map(|p| {
                p.trim()
                    .trim_start_matches("per backend")
                    .trim()
                    .strip_prefix(&format!("{name} "))
            })
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no count for {name} in {per:?}"));
        assert!(n > 0, "{name} served nothing: {per}");
    }

    // The load balancer reacted to each step.
    let steps: Vec<&str> = stdout.lines().filter(|l| l.contains("  -> ")).collect();
    let find = |what: &str| {
        steps
            .iter()
            .find(|l| l.contains(what))
            .unwrap_or_else(|| panic!("no step {what:?} in {steps:?}"))
            .to_string()
    };
    assert_eq!(steps.len(), 4, "{steps:?}");
    assert!(find("gracefully").contains("out of rotation after"));
    assert!(find("kill ").contains("out of rotation after"));
    for restart in steps.iter().filter(|l| l.contains("restart ")) {
        assert!(restart.contains("back in rotation after"), "{restart}");
    }
}

#[test]
fn demo_rejects_a_bad_pace() {
    let out = Command::new(env!("CARGO_BIN_EXE_cpe"))
        .args(["demo", "--pace", "fast"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--pace"));
}

/// SIGTERM, SIGHUP or SIGINT mid-demo: the demo stops early, prints its summary and removes
/// its private directory, which is new for the run (mode 0700) and holds the CA alone (the
/// keys stay in memory). A symlink planted at the path the demo once used, predictable from
/// its pid (`$TMPDIR/cpe-demo-<pid>`), is neither followed nor removed.
#[test]
fn a_signal_mid_demo_leaves_no_files_and_a_planted_symlink_is_not_followed() {
    use std::io::BufRead;
    use std::os::unix::fs::PermissionsExt;
    use std::process::Stdio;

    for sig in ["TERM", "HUP", "INT"] {
        let tmp = tempfile::tempdir().unwrap();
        let trap = tmp.path().join("trap");
        std::fs::create_dir(&trap).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_cpe"))
            .args(["demo", "--quick", "--view", "plain"])
            .env("TMPDIR", tmp.path())
            .stdout(Stdio::piped())
            .spawn()
            .expect("cannot run cpe demo");
        // Planted as soon as the pid is known, long before the demo has its certificates.
        let planted = tmp.path().join(format!("cpe-demo-{}", child.id()));
        std::os::unix::fs::symlink(&trap, &planted).unwrap();

        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line.clone());
            }
        });
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        let ca = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("SIG{sig}: no start line ({e}); got {seen:?}"));
            if let Some(rest) = line.split("--cacert ").nth(1) {
                break std::path::PathBuf::from(rest.split_whitespace().next().unwrap());
            }
            seen.push(line);
        };
        let dir = ca.parent().unwrap().to_path_buf();
        assert_eq!(dir.parent(), Some(tmp.path()), "SIG{sig}: {dir:?}");
        assert_ne!(dir, planted, "SIG{sig}: the demo used the predictable path");
        let meta = std::fs::symlink_metadata(&dir).unwrap();
        assert!(meta.is_dir(), "SIG{sig}: {dir:?} is not a directory");
        assert_eq!(
            meta.permissions().mode() & 0o777,
            0o700,
            "SIG{sig}: {dir:?}"
        );
        let files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(files, ["ca.crt"], "SIG{sig}: only the CA on disk");

        // Traffic flows for a moment, then the signal.
        std::thread::sleep(Duration::from_millis(700));
        let killed = Command::new("kill")
            .args([format!("-{sig}"), child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("SIG{sig}: cpe demo did not exit within 30 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        reader.join().unwrap();
        let rest: Vec<String> = rx.try_iter().collect();
        assert_eq!(status.code(), Some(0), "SIG{sig}: {rest:?}");
        assert!(
            rest.iter()
                .any(|l| l.contains(&format!("interrupted by SIG{sig}"))),
            "SIG{sig}: {rest:?}"
        );
        assert!(rest.iter().any(|l| l.contains("Summary (")), "SIG{sig}");

        assert!(!dir.exists(), "SIG{sig}: {dir:?} left behind");
        assert!(std::fs::symlink_metadata(&planted)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(
            std::fs::read_dir(&trap).unwrap().count(),
            0,
            "SIG{sig}: written through the planted symlink"
        );
        let mut left: Vec<String> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                planted.file_name().unwrap().to_string_lossy().into_owned(),
                "trap".into()
            ],
            "SIG{sig}"
        );
    }
}
