//! Runs the VIP failure scenarios several times against `cpe vip` and/or keepalived on the
//! same testbed shape and prints, per scenario and agent, the client-seen outage (median and
//! worst), failed requests, and whether two holders were ever seen. `bench/vip.sh` calls it.
//!
//! Usage: vip_bench --cpe PATH [--agents cpe,keepalived] [--runs N] [--scenarios a,b,..]
//!                  [--lease-ttl 2s] [--api cpe|python] [--json FILE] [--cpe-arg ARG]...
//!
//! `--agents keepalived-haproxy` runs kubeadm's recipe (HAProxy on every machine on :8443,
//! keepalived tracking it, the client on VIP:8443); compare it with `--agents cpe-lb`
//! (`cpe vip --load-balance`; the same as `--agents cpe --cpe-arg --load-balance`).
//! Scenarios may repeat (`--scenarios readyz-503,readyz-503`): each is run in turn.
//! `--safety overload,resign,prefer` also runs the issue-11 runs (`cpe vip` only: fail
//! open under overload, `cpe status --resign` / `--prefer`) after the scenarios of each
//! run and prints one line per run; `--scenarios none` runs only those.
//!
//! `--cpe-arg` (repeatable) appends an argument to every `cpe vip`, e.g.
//! `--cpe-arg --etcd-move-leader --cpe-arg off`.

use anyhow::{bail, Context, Result};
use cpe_testkit::vip::{AgentKind, ApiKind, Outcome, SafetyRun, Scenario, Testbed};
use std::io::Write;
use std::path::PathBuf;

fn main() -> Result<()> {
    let mut cpe: Option<PathBuf> = None;
    let mut agents = vec!["cpe".to_string(), "keepalived".to_string()];
    let mut runs = 3usize;
    let mut scenarios: Vec<Scenario> = Scenario::ALL.to_vec();
    let mut lease_ttl = "2s".to_string();
    let mut api = "cpe".to_string();
    let mut json: Option<PathBuf> = None;
    let mut cpe_args: Vec<String> = Vec::new();
    let mut safety: Vec<SafetyRun> = Vec::new();
    let mut safety_lines: Vec<String> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--cpe" => cpe = Some(val()?.into()),
            "--agents" => agents = val()?.split(',').map(String::from).collect(),
            "--runs" => runs = val()?.parse().context("--runs: a number")?,
            "--safety" => {
                safety = val()?
                    .split(',')
                    .map(|s| {
                        SafetyRun::ALL
                            .into_iter()
                            .find(|r| r.name() == s)
                            .with_context(|| format!("--safety: unknown run {s:?}"))
                    })
                    .collect::<Result<_>>()?
            }
            "--scenarios" => {
                let v = val()?;
                scenarios = v
                    .split(',')
                    .filter(|s| *s != "none")
                    .map(|s| {
                        Scenario::from_name(s)
                            .with_context(|| format!("--scenarios: unknown scenario {s:?}"))
                    })
                    .collect::<Result<_>>()?
            }
            "--lease-ttl" => lease_ttl = val()?,
            "--api" => api = val()?,
            "--json" => json = Some(val()?.into()),
            "--cpe-arg" => cpe_args.push(val()?),
            _ => bail!("unknown argument {a:?} (see the doc comment of examples/vip_bench.rs)"),
        }
    }
    let cpe = cpe.context("--cpe PATH (the cpe binary) is required")?;
    let api = match api.as_str() {
        "cpe" => ApiKind::Cpe(cpe.clone()),
        "python" => ApiKind::Python,
        other => bail!("--api: {other:?} is not cpe or python"),
    };
    let mut json_out = json.map(std::fs::File::create).transpose()?;
    let mut all: Vec<Outcome> = Vec::new();
    let mut labels: Vec<String> = Vec::new();
    for agent in &agents {
        let kind = match agent.as_str() {
            "cpe" | "cpe-lb" => {
                let mut extra = cpe_args.clone();
                if agent == "cpe-lb" && !extra.iter().any(|a| a == "--load-balance") {
                    extra.push("--load-balance".into());
                }
                AgentKind::Cpe {
                    bin: cpe.clone(),
                    lease_ttl: lease_ttl.clone(),
                    extra,
                }
            }
            "keepalived" | "keepalived-haproxy" => AgentKind::Keepalived,
            other => {
                bail!("--agents: {other:?} is not cpe, cpe-lb, keepalived or keepalived-haproxy")
            }
        };
        // Outcomes carry the agent's label (`cpe-lb` for `cpe` with `--load-balance`).
        let label = match &kind {
            AgentKind::Cpe { .. } => kind.name().to_string(),
            AgentKind::Keepalived => agent.clone(),
        };
        if !labels.contains(&label) {
            labels.push(label);
        }
        for run in 1..=runs {
            eprintln!("[bench] {agent} run {run}/{runs}");
            let mut tb = if agent == "keepalived-haproxy" {
                // kubeadm's recipe: HAProxy on every machine on :8443, keepalived tracking it.
                Testbed::start_keepalived_haproxy("vipb", api.clone(), 8443)?
            } else {
                Testbed::start("vipb", api.clone(), kind.clone())?
            };
            for &s in &scenarios {
                match tb.run(s) {
                    Ok(o) => {
                        if let Some(f) = json_out.as_mut() {
                            writeln!(f, "{}", o.json())?;
                        }
                        all.push(o);
                    }
                    Err(e) => {
                        eprintln!("[bench] {agent} {} run {run}: {e:#}", s.name());
                        break;
                    }
                }
            }
            if agent.starts_with("cpe") {
                for &r in &safety {
                    match tb.run_safety(r) {
                        Ok(o) => safety_lines.push(o.line()),
                        Err(e) => {
                            eprintln!("[bench] {agent} {} run {run}: {e:#}", r.name());
                            break;
                        }
                    }
                }
            }
        }
    }
    if !safety_lines.is_empty() {
        println!("\nissue-11 runs (cpe vip, lease TTL {lease_ttl}):");
        for l in &safety_lines {
            println!("  {l}");
        }
    }
    println!();
    println!(
        "{:<20} {:<10} {:>4} {:>12} {:>11} {:>8} {:>11} {:>12} {:>10} {:>9}",
        "scenario",
        "agent",
        "runs",
        "outage med",
        "outage max",
        "failed",
        "slowest",
        "two holders",
        "neighbour",
        "healthy"
    );
    let mut table: Vec<Scenario> = Vec::new();
    for &s in &scenarios {
        if !table.contains(&s) {
            table.push(s);
        }
    }
    for &s in &table {
        for agent in &labels {
            let os: Vec<&Outcome> = all
                .iter()
                .filter(|o| o.scenario == s && o.agent == agent)
                .collect();
            if os.is_empty() {
                continue;
            }
            let mut outs: Vec<f64> = os
                .iter()
                .map(|o| o.outage.map(|d| d.as_secs_f64()).unwrap_or(f64::INFINITY))
                .collect();
            outs.sort_by(|a, b| a.partial_cmp(b).unwrap());
            let med = outs[outs.len() / 2];
            let max = outs[outs.len() - 1];
            let failed: usize = os.iter().map(|o| o.failed).sum();
            let reqs: usize = os.iter().map(|o| o.requests).sum();
            let slowest = os
                .iter()
                .map(|o| o.slowest.as_secs_f64())
                .fold(0.0, f64::max);
            let doubles = os.iter().filter(|o| !o.doubles.is_empty()).count();
            let doubles_repair = os.iter().filter(|o| !o.doubles_repair.is_empty()).count();
            let neigh = os.iter().filter(|o| o.neighbour_follows).count();
            let healthy = os.iter().filter(|o| o.settled_on_healthy).count();
            println!(
                "{:<20} {:<10} {:>4} {:>11.3}s {:>10.3}s {:>8} {:>10.3}s {:>12} {:>10} {:>9}",
                s.name(),
                agent,
                os.len(),
                med,
                max,
                format!("{failed}/{reqs}"),
                slowest,
                match (doubles, doubles_repair) {
                    (0, 0) => "no".to_string(),
                    (0, r) => format!("repair {r}/{}", os.len()),
                    (d, _) => format!("YES {d}/{}", os.len()),
                },
                format!("{neigh}/{}", os.len()),
                format!("{healthy}/{}", os.len()),
            );
            let per_run: Vec<String> = os
                .iter()
                .map(|o| {
                    let v = o
                        .outage
                        .map(|d| format!("{:.2}", d.as_secs_f64()))
                        .unwrap_or("-".into());
                    if o.holder_led_etcd == Some(true) {
                        format!("{v}*")
                    } else {
                        v
                    }
                })
                .collect();
            println!(
                "{:<20} {:<10} outage per run (* = the holder was also the etcd leader): {}",
                "",
                agent,
                per_run.join(" ")
            );
            if os.iter().any(|o| !o.expected_move) {
                let left: Vec<&str> = os
                    .iter()
                    .map(|o| if o.released.is_some() { "yes" } else { "no" })
                    .collect();
                println!(
                    "{:<20} {:<10} VIP left the holder per run (not expected to move): {}",
                    "",
                    agent,
                    left.join(" ")
                );
            }
            if s == Scenario::LinkCut {
                let ch: Vec<String> = os
                    .iter()
                    .map(|o| format!("{:?}", o.changes_after_restore.unwrap_or(0)))
                    .collect();
                println!(
                    "{:<20} {:<10} holder changes after link back: {}",
                    "",
                    agent,
                    ch.join(" ")
                );
            }
        }
    }
    Ok(())
}
