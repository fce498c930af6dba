//! The faults themselves, for the runner: injecting one on a machine of the testbed
//! ([`inject`]) and repairing it when it ends ([`end_fault`]), with external tools (`ip`,
//! `nft`, `tc`, `etcdctl`, cgroupfs), which is fine in tests; the agents under test call
//! none. It does not decide when, or on which machine: that is the runner's
//! (`chaos::runner`), from the schedule.

use super::history::*;
use super::runner::{member_of, Active};
use super::schedule::{FaultKind, Rng};
use crate::vip::{ReadyzWait, Testbed};
use anyhow::{Context, Result};
use nix::sys::signal::Signal;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn nft(host: &crate::Host, rules: &str) -> Result<()> {
    use std::io::Write;
    let mut c = host.command("nft");
    c.args(["-f", "-"]);
    let mut child = c
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(rules.as_bytes())?;
    let out = child.wait_with_output()?;
    anyhow::ensure!(
        out.status.success(),
        "nft: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// Adds a root qdisc on the host's eth0; `Ok(false)` if the kernel lacks that kind.
fn qdisc(host: &crate::Host, spec: &[String]) -> Result<bool> {
    let mut args = vec!["qdisc", "add", "dev", "eth0", "root"];
    args.extend(spec.iter().map(String::as_str));
    match host.exec("tc", &args) {
        Ok(_) => Ok(true),
        Err(e) if format!("{e:#}").contains("qdisc kind is unknown") => Ok(false),
        Err(e) => Err(e),
    }
}

fn peers(tb: &Testbed, m: usize) -> Vec<Ipv4Addr> {
    (0..tb.machine_count())
        .filter(|i| *i != m)
        .map(|i| tb.machine_host(i).addr)
        .collect()
}

pub(super) fn inject(tb: &mut Testbed, a: &mut Active, note: &mut String) -> Result<()> {
    let m = a.machine;
    let v = a.fault.variant;
    match a.fault.kind {
        FaultKind::ApiKill => tb.signal_api(m, Signal::SIGKILL),
        FaultKind::ApiTerm => tb.signal_api(m, Signal::SIGTERM),
        FaultKind::ApiUnready => {
            tb.set_api_ready(m, false)?;
            if tb.kube_api() {
                // Cut from its etcd member: how long until /readyz says so, in the note.
                *note = "cut from its etcd member (nftables)".into();
                a.wait = Some(("/readyz failing", tb.readyz_wait(m, false)));
            }
        }
        FaultKind::AgentKill => tb.signal_agent_of(m, Signal::SIGKILL),
        FaultKind::AgentTerm => tb.signal_agent_of(m, Signal::SIGTERM),
        FaultKind::AgentRestart => {
            if let Some(st) = tb.restart_agent(m)? {
                *note = format!("old agent exited: {st}");
            }
        }
        FaultKind::LinkCut => tb.machine_host(m).link_down()?,
        FaultKind::LinkFlap => {
            tb.machine_host(m).link_down()?;
            let mut rng = Rng::new(v as u64);
            let next = Instant::now() + Duration::from_millis(rng.range(200, 800));
            a.flap = Some((next, true, rng));
        }
        FaultKind::Partition => {
            let p = peers(tb, m);
            tb.machine_host(m).partition_from(&p)?;
        }
        FaultKind::PartitionOneWay => {
            let set = peers(tb, m)
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(", ");
            let (hook, field, dir) = if v.is_multiple_of(2) {
                ("input", "saddr", "from its peers dropped")
            } else {
                ("output", "daddr", "to its peers dropped")
            };
            *note = dir.into();
            nft(
                tb.machine_host(m),
                &format!(
                    "table inet cpe_chaos_oneway {{\n\
                     chain c {{ type filter hook {hook} priority -300; policy accept; \
                     ip {field} {{ {set} }} drop; }}\n}}\n"
                ),
            )?;
        }
        FaultKind::PacketLoss => {
            let pct = 20 + v % 21;
            let netem = ["netem", "loss", &format!("{pct}%")].map(String::from);
            *note = match qdisc(tb.machine_host(m), &netem)? {
                true => format!("netem loss {pct}%"),
                false => {
                    // No sch_netem in this kernel: nftables drops the same share at random,
                    // both ways.
                    nft(
                        tb.machine_host(m),
                        &format!(
                            "table inet cpe_chaos_loss {{\n\
                             chain i {{ type filter hook input priority -300; policy accept; \
                             numgen random mod 100 < {pct} drop; }}\n\
                             chain o {{ type filter hook output priority -300; policy accept; \
                             numgen random mod 100 < {pct} drop; }}\n}}\n"
                        ),
                    )?;
                    format!("loss {pct}% (nftables numgen: no netem in this kernel)")
                }
            };
        }
        FaultKind::Delay => {
            let d = 50 + v % 151;
            let netem = ["netem", "delay", &format!("{d}ms"), "20ms"].map(String::from);
            *note = match qdisc(tb.machine_host(m), &netem)? {
                true => format!("netem delay {d} ms ± 20 ms"),
                false => {
                    // No sch_netem: a congested link instead (a token bucket at 256 kbit/s
                    // queues bursts for up to `d` ms and drops beyond).
                    let tbf = [
                        "tbf",
                        "rate",
                        "256kbit",
                        "burst",
                        "4kb",
                        "latency",
                        &format!("{d}ms"),
                    ]
                    .map(String::from);
                    qdisc(tb.machine_host(m), &tbf)?;
                    format!("tbf 256 kbit/s, queue up to {d} ms (no netem in this kernel)")
                }
            };
        }
        FaultKind::EtcdLeaderKill => {
            let i = member_of(tb, m).context("no etcd member on the target")?;
            tb.etcd_mut().kill(i);
            a.member = i;
        }
        FaultKind::EtcdReplace => {
            let old = member_of(tb, m)
                .map(|i| tb.etcd_mut().members[i].name.clone())
                .unwrap_or_default();
            let (name, url) = tb.replace_etcd_member(m)?;
            *note = format!("member {old} removed; {name} added at {url}");
        }
        FaultKind::MachineReplace => {
            let old = tb.machine_host(m).name.clone();
            let (name, mac) = tb.replace_machine(m)?;
            *note = format!("{old} replaced by {name}");
            a.new_machine = Some(MachineInfo { name, mac });
        }
        FaultKind::ClockStep => {
            let d = FaultKind::clock_step_secs(v);
            tb.step_clock(d)?;
            *note = format!("CLOCK_REALTIME stepped {d:+} s (one clock: every machine)");
        }
        FaultKind::CpuStarve => {
            let pids = tb.agent_pids(m);
            let cg = starve(&tb.machine_host(m).name, &pids)?;
            *note = format!("{} at 2% of a CPU", cg.display());
            a.cgroup = Some(cg);
        }
    }
    Ok(())
}

/// Repairs fault `a`. Returns a poller when the repair completes later: an API server
/// (re)started, or a real one cut from its etcd member reconnected, is ready when its
/// /readyz answers 200.
pub(super) fn end_fault(
    tb: &mut Testbed,
    a: &Active,
    h: &mut History,
) -> Result<Option<ReadyzWait>> {
    let m = a.machine;
    match a.fault.kind {
        FaultKind::ApiKill | FaultKind::ApiTerm => return tb.begin_restart_api(m).map(Some),
        FaultKind::ApiUnready => {
            tb.set_api_ready(m, true)?;
            if tb.kube_api() {
                return Ok(Some(tb.readyz_wait(m, true)));
            }
        }
        FaultKind::AgentKill | FaultKind::AgentTerm => {
            let st = tb.restart_agent(m)?;
            if a.fault.kind == FaultKind::AgentTerm && !st.is_some_and(|s| s.success()) {
                h.crashes.push(Crash {
                    t: tb.now().as_millis() as Ms,
                    process: format!("agent {}", tb.machine_host(m).name),
                    status: format!("on SIGTERM: {st:?} (expected exit 0)"),
                    log_tail: String::new(),
                });
            }
        }
        FaultKind::AgentRestart | FaultKind::EtcdReplace => {}
        // A real kube-apiserver on the new machine is not ready yet (`replace_machine`).
        FaultKind::MachineReplace if tb.kube_api() => return Ok(Some(tb.readyz_wait(m, true))),
        FaultKind::MachineReplace => {}
        FaultKind::LinkCut | FaultKind::LinkFlap => tb.machine_host(m).link_up()?,
        FaultKind::Partition => tb.machine_host(m).heal()?,
        FaultKind::PartitionOneWay => {
            tb.machine_host(m)
                .exec("nft", &["delete", "table", "inet", "cpe_chaos_oneway"])?;
        }
        FaultKind::PacketLoss | FaultKind::Delay => {
            let host = tb.machine_host(m);
            if a.fault.kind == FaultKind::PacketLoss && !h.faults[a.rec].note.starts_with("netem") {
                host.exec("nft", &["delete", "table", "inet", "cpe_chaos_loss"])?;
            } else {
                host.exec("tc", &["qdisc", "del", "dev", "eth0", "root"])?;
            }
        }
        FaultKind::EtcdLeaderKill => tb.etcd_mut().restart(a.member)?,
        FaultKind::ClockStep => tb.step_clock(-FaultKind::clock_step_secs(a.fault.variant))?,
        FaultKind::CpuStarve => {
            if let Some(cg) = &a.cgroup {
                unstarve(cg)?;
            }
        }
    }
    Ok(None)
}

/// The cgroup-v1 `cpu` hierarchy or cgroup v2 with the cpu controller.
fn cpu_root() -> Result<(PathBuf, bool)> {
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers");
    if std::fs::read_to_string(v2).is_ok_and(|c| c.split_whitespace().any(|x| x == "cpu")) {
        return Ok(("/sys/fs/cgroup".into(), true));
    }
    let v1 = Path::new("/sys/fs/cgroup/cpu");
    if v1.join("cpu.cfs_quota_us").exists() {
        return Ok((v1.into(), false));
    }
    anyhow::bail!("no cgroup cpu controller (neither v2 cpu.max nor v1 cpu.cfs_quota_us)")
}

/// Moves `pids` into a new cgroup limited to 2% of one CPU.
fn starve(name: &str, pids: &[u32]) -> Result<PathBuf> {
    let (root, v2) = cpu_root()?;
    let cg = root.join(format!("cpe-chaos-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&cg).with_context(|| format!("creating {}", cg.display()))?;
    if v2 {
        std::fs::write(cg.join("cpu.max"), "2000 100000")?;
    } else {
        std::fs::write(cg.join("cpu.cfs_period_us"), "100000")?;
        std::fs::write(cg.join("cpu.cfs_quota_us"), "2000")?;
    }
    for p in pids {
        std::fs::write(cg.join("cgroup.procs"), p.to_string())
            .with_context(|| format!("moving pid {p} into {}", cg.display()))?;
    }
    Ok(cg)
}

/// Moves every process of `cg` back to the root and removes it.
fn unstarve(cg: &Path) -> Result<()> {
    let root = cg.parent().context("cgroup without parent")?;
    let procs = std::fs::read_to_string(cg.join("cgroup.procs")).unwrap_or_default();
    for p in procs.split_whitespace() {
        let _ = std::fs::write(root.join("cgroup.procs"), p);
    }
    std::fs::remove_dir(cg).with_context(|| format!("removing {}", cg.display()))
}
