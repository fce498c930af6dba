//! The long chaos run (`bench/chaos.sh`): the same seeded schedule of overlapping faults
//! against `cpe vip` and then keepalived on the same testbed shape, each judged by the
//! checker. Prints, per agent: availability (share of client requests that succeeded), the
//! client-seen outage per fault kind (p50/p90/max), and every rule the run broke with the
//! history around it. Histories are written to `--out DIR` (`<agent>-<seed>.json`;
//! `<agent>-kube-<seed>.json` with `--api kube`), every log of the run (agents, API servers,
//! etcd members) to `<agent>[-kube]-<seed>-logs/` beside it.
//!
//! keepalived is judged by the same rules for comparison: its two-holder and outage
//! findings are figures here, not failures (VRRP has no quorum: a partitioned master
//! stays master). Exit status 1 if the cpe run broke a rule.
//!
//! Usage: chaos_bench --cpe PATH [--minutes 30] [--seed N] [--agents cpe,keepalived]
//!                    [--out DIR] [--kinds a,b,..|all|v1|v2] [--skip-seconds S] [--print-schedule]
//!                    [--machines 3|5] [--load-balance | --front-lb] [--api cpe|kube]
//!
//! `--kinds v1` draws from the first 14 kinds (no replacements): the kinds seed 769871270
//! was run with, so its schedule is replayed; `--kinds v2` the 16 before clock steps were
//! injected (what `all` drew until then). `--machines 5` runs five control-plane
//! machines; `--load-balance` runs `cpe vip --load-balance --discover etcd` (the VIP's
//! agent forwards to every machine's API server, learned from etcd's member list as a
//! Cluster API machine would run it, so machine replacements run in that mode too).
//! keepalived ignores `--load-balance`.
//!
//! `--front-lb` puts a load balancer on a host of its own (`lb`) in front of the machines
//! and sends the client's requests and watch stream to it instead of the VIP; the agents
//! still run on the machines and are judged as ever. For cpe it is `cpe lb --discover etcd`
//! (every machine's API server as seeds, then etcd's member list: it follows machine
//! replacements) beside plain `cpe vip`; for keepalived it is HAProxy with the static list
//! of the original machines (machine replacements are skipped there). Not with
//! `--load-balance` (a load balancer behind the VIP on every machine, another topology),
//! nor with `--api kube` (its bounds assume the stand-in, which does not use etcd).
//!
//! `--api kube` runs a real kube-apiserver 1.20 on every machine instead of the stand-in
//! `cpe test-apiserver` (`--api cpe`, the default): `CPE_KUBE_APISERVER`, else the cache of
//! `scripts/kube-apiserver.sh`. The watch stream is then a real ConfigMap watch with a writer
//! (`chaos::kube_watch`), and `api-unready` cuts the server from its etcd member.
//!
//! `--judge FILE` re-judges a recorded history with the current checker and exits.
//! `--print-schedule` prints the seed's schedule (run-relative times) and exits.
//! `--skip-seconds S` replays the seed's schedule from second S (see `chaos::Config::skip`).

use anyhow::{bail, Context, Result};
use cpe_testkit::chaos::{self, Config, FaultKind};
use cpe_testkit::vip::{AgentKind, FrontLb};
use std::path::PathBuf;
use std::time::Duration;

fn main() -> Result<()> {
    let mut cpe: Option<PathBuf> = None;
    let mut minutes = 30.0f64;
    let mut seed: Option<u64> = None;
    let mut agents = vec!["cpe".to_string(), "keepalived".to_string()];
    let mut out = PathBuf::from("bench/out/chaos");
    let mut kinds: Option<Vec<FaultKind>> = None;
    let mut skip = 0.0f64;
    let mut print_schedule = false;
    let mut machines = 3usize;
    let mut load_balance = false;
    let mut front_lb = false;
    let mut kube = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--cpe" => cpe = Some(val()?.into()),
            "--minutes" => minutes = val()?.parse().context("--minutes: a number")?,
            "--seed" => seed = Some(val()?.parse().context("--seed: a number")?),
            "--agents" => agents = val()?.split(',').map(String::from).collect(),
            "--out" => out = val()?.into(),
            "--judge" => {
                // Re-judge a recorded history with the current checker.
                let h = chaos::read_history(std::path::Path::new(&val()?))?;
                let r = chaos::check(&h, &chaos::Bounds::default());
                println!("{}", r.figures());
                println!("violations: {}", r.violations.len());
                for v in &r.violations {
                    println!("[{}] {}", v.rule, v.message.lines().next().unwrap_or(""));
                }
                return Ok(());
            }
            "--skip-seconds" => skip = val()?.parse().context("--skip-seconds: a number")?,
            "--print-schedule" => print_schedule = true,
            "--kinds" => {
                kinds = Some(
                    FaultKind::parse_list(&val()?).map_err(|e| anyhow::anyhow!("--kinds: {e}"))?,
                )
            }
            "--machines" => {
                let v = val()?;
                machines = match v.as_str() {
                    "3" => 3,
                    "5" => 5,
                    _ => bail!("--machines {v}: 3 or 5 (an etcd member on each: an odd number)"),
                }
            }
            "--load-balance" => load_balance = true,
            "--front-lb" => front_lb = true,
            "--api" => {
                let v = val()?;
                kube = match v.as_str() {
                    "cpe" => false,
                    "kube" => true,
                    _ => bail!(
                        "--api {v}: cpe (the stand-in `cpe test-apiserver`) or kube (a real \
                         kube-apiserver)"
                    ),
                }
            }
            _ => bail!("unknown argument {a:?} (see the doc comment of examples/chaos_bench.rs)"),
        }
    }
    if load_balance && front_lb {
        bail!(
            "--load-balance and --front-lb exclude each other: --load-balance runs a load \
             balancer behind the VIP on every machine (cpe vip --load-balance), --front-lb one \
             cpe lb on a host of its own in front of the machines; give one"
        );
    }
    if front_lb && kube {
        bail!(
            "--front-lb with --api kube is not supported: the bounds the checker judges a front \
             load balancer by assume the stand-in API server (--api cpe), which does not use \
             etcd; give --front-lb with --api cpe, or --api kube without --front-lb"
        );
    }
    let cpe = cpe.context("--cpe PATH (the cpe binary) is required")?;
    let seed = seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    if print_schedule {
        // The seed's schedule (run-relative times, before any `--skip-seconds` shift):
        // to find the stretch to replay around a fault a long run's history names.
        let mut params = chaos::Params::new(Duration::from_secs_f64(minutes * 60.0));
        if let Some(k) = &kinds {
            params.kinds = k.clone();
        }
        for f in chaos::generate(seed, &params) {
            let step = match f.kind {
                FaultKind::ClockStep => format!("  {:+} s", FaultKind::clock_step_secs(f.variant)),
                _ => String::new(),
            };
            println!(
                "#{:<4} {:>9.3}s {:>6} ms  {:<18} {:?}{step}",
                f.id,
                f.start_ms as f64 / 1000.0,
                f.duration_ms,
                f.kind.name(),
                f.role
            );
        }
        return Ok(());
    }
    let kube_apiserver = kube.then(cpe_testkit::kube::apiserver::kube_apiserver_bin);
    std::fs::create_dir_all(&out)?;
    println!(
        "# chaos: seed {seed}, {minutes} min per agent, agents {agents:?}, {machines} machines{}, API server {}, kinds {}",
        if load_balance {
            ", cpe vip --load-balance"
        } else if front_lb {
            ", a load balancer in front (cpe lb for cpe, HAProxy for keepalived)"
        } else {
            ""
        },
        kube_apiserver.as_ref().map_or("cpe test-apiserver (stand-in)".to_string(), |p| format!("kube-apiserver {}", p.display())),
        kinds.as_ref().map_or("all".to_string(), |k| k.iter().map(|k| k.name()).collect::<Vec<_>>().join(","))
    );
    let mut cpe_broke = false;
    // Histories of runs on real API servers sit beside the stand-in's: `cpe-kube-<seed>.json`.
    let api_tag = if kube { "-kube" } else { "" };
    for agent in &agents {
        let kind = match agent.as_str() {
            "cpe" => AgentKind::Cpe {
                bin: cpe.clone(),
                lease_ttl: "2s".into(),
                // The VIP that also load-balances to every machine's API server, which
                // its load balancer learns from etcd's member list (no --backend list).
                extra: if load_balance {
                    vec!["--load-balance".into(), "--discover".into(), "etcd".into()]
                } else {
                    vec![]
                },
            },
            "keepalived" => AgentKind::Keepalived,
            other => bail!("--agents: unknown agent {other:?} (cpe, keepalived)"),
        };
        // In front of cpe vip: cpe lb; in front of keepalived: HAProxy, as kubeadm's
        // external-LB recipes put it (a static server list).
        let front = front_lb.then(|| match &kind {
            AgentKind::Keepalived => FrontLb::Haproxy,
            AgentKind::Cpe { .. } => FrontLb::Cpe(cpe.clone()),
        });
        // Histories and logs are named by what ran: `cpe-front-lb-SEED.json`,
        // `cpe-kube-SEED.json` (the two exclude each other).
        let label = if front_lb {
            format!("{agent}-front-lb")
        } else {
            format!("{agent}{api_tag}")
        };
        let cfg = Config {
            seed,
            length: Duration::from_secs_f64(minutes * 60.0),
            cpe: cpe.clone(),
            kube_apiserver: kube_apiserver.clone(),
            agent: kind,
            kinds: kinds.clone(),
            history: Some(out.join(format!("{label}-{seed}.json"))),
            tag: "chaosb".into(),
            skip: Duration::from_secs_f64(skip),
            machines,
            // The evidence for whatever the checker finds (agents' decisions, etcd's
            // elections): bench/out/chaos/<label>-<seed>-logs/.
            logs: Some(out.join(format!("{label}-{seed}-logs"))),
            front,
        };
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        println!("\n## {agent} (load average before: {})", load.trim());
        let r = chaos::run(&cfg)?;
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        println!("{}", r.report.figures());
        let skipped = r.history.faults.iter().filter(|f| f.skipped).count();
        println!(
            "faults run {}, skipped {skipped} (target part busy or injection failed); \
             load average after: {}",
            r.history.faults.len() - skipped,
            load.trim()
        );
        let mut rules: Vec<&str> = r.report.violations.iter().map(|v| v.rule).collect();
        rules.sort();
        rules.dedup();
        let counts: Vec<String> = rules
            .iter()
            .map(|rule| {
                let n = r
                    .report
                    .violations
                    .iter()
                    .filter(|v| v.rule == *rule)
                    .count();
                format!("{rule}: {n}")
            })
            .collect();
        println!(
            "violations: {} {counts:?}; history {}",
            r.report.violations.len(),
            r.history_path.display()
        );
        if !r.report.violations.is_empty() {
            println!("{}", chaos::explain(&r.history, &r.report, 3_000));
            cpe_broke |= agent == "cpe";
        }
    }
    if cpe_broke {
        std::process::exit(1);
    }
    Ok(())
}
