//! `cpe demo --quick` end to end: the binary runs three stand-in API servers and the load
//! balancer on loopback, sends traffic, stops one server gracefully and kills another. The
//! test asserts that it exits 0, prints the summary, that the load balancer took each
//! failed server out and put it back, that every backend served requests, and that no
//! request failed except those in flight on the killed server. Needs no root.

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
