//! The chaos runner: builds the VIP testbed (three machines, each an etcd member, an API
//! server — the stand-in, or a real kube-apiserver with `Config::kube_apiserver` — and the
//! agent; a client; with [`Config::front`], a load balancer on a host of its own that the
//! client goes through instead of the VIP), starts the chaos observers, performs the
//! schedule's faults at their times (resolving each fault's role to a machine when it
//! starts, skipping it when that machine already has a fault on the same part), notices
//! processes that exit unasked, samples the agents' (and the front LB's) resources, waits
//! without blocking for the repairs that take time (an API server restarted is ready
//! seconds later: the fault ends when it is), then repairs, stops the agents and then the
//! front LB with SIGTERM, records what was left, and hands the [`History`] to the checker.
//!
//! It asserts nothing: [`run`] returns the history and the checker's report; the test and
//! the bench decide. Faults use external tools (`ip`, `nft`, `tc`, `etcdctl`, cgroupfs),
//! which is fine in tests; the agents under test call none.

use super::checker::{self, Bounds, Report};
use super::history::*;
use super::inject::{end_fault, inject};
use super::observers::{self, Recorder};
use super::schedule::{self, Fault, FaultKind, Params, Rng, Role};
use crate::vip::{AgentKind, ApiKind, FrontLb, ReadyzWait, Testbed};
use anyhow::{Context, Result};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What to run.
#[derive(Debug, Clone)]
pub struct Config {
    pub seed: u64,
    pub length: Duration,
    /// The `cpe` binary (for `cpe test-apiserver`).
    pub cpe: PathBuf,
    /// Run this kube-apiserver binary on the machines instead of the stand-in (`None`).
    pub kube_apiserver: Option<PathBuf>,
    pub agent: AgentKind,
    /// Kinds to draw from (default: all).
    pub kinds: Option<Vec<FaultKind>>,
    /// Where to write the history (default: `history-<seed>.json` in the testbed's dir,
    /// which is deleted at the end unless `CPE_TESTKIT_KEEP` is set).
    pub history: Option<PathBuf>,
    /// Namespace name prefix.
    pub tag: String,
    /// Replay only the faults of the seed's schedule that start at or after this offset
    /// (the schedule drawn for `skip + length`), moved to start 3 s into the run: a long
    /// run's violation at minute 17 is replayed in a short run.
    pub skip: Duration,
    /// Control-plane machines: 3 or 5.
    pub machines: usize,
    /// Copy every log of the run (agents, API servers, etcd members, ARP capture) into this
    /// directory at the end: the evidence for a violation found in a long run.
    pub logs: Option<PathBuf>,
    /// A load balancer in front of the machines on a host of its own: the client sends to
    /// it instead of the VIP (the agents still run and are judged). `None`: the VIP.
    pub front: Option<FrontLb>,
}

/// A run's result.
#[derive(Debug)]
pub struct Run {
    pub history: History,
    pub report: Report,
    pub history_path: PathBuf,
}

/// The part of a machine a fault occupies; two faults never share one.
fn part(kind: FaultKind) -> &'static str {
    match kind {
        FaultKind::ApiKill | FaultKind::ApiTerm | FaultKind::ApiUnready => "api",
        FaultKind::AgentKill
        | FaultKind::AgentTerm
        | FaultKind::AgentRestart
        | FaultKind::CpuStarve => "agent",
        FaultKind::LinkCut | FaultKind::LinkFlap => "link",
        FaultKind::Partition | FaultKind::PartitionOneWay => "nft",
        FaultKind::PacketLoss | FaultKind::Delay => "qdisc",
        FaultKind::EtcdLeaderKill | FaultKind::EtcdReplace => "etcd",
        // Every part: a replacement is skipped while anything else happens to the machine.
        FaultKind::MachineReplace => "machine",
        // The host's one real-time clock: no machine's part.
        FaultKind::ClockStep => "clock",
    }
}

/// A fault in progress.
pub(super) struct Active {
    pub(super) fault: Fault,
    /// Index into `History::faults`.
    pub(super) rec: usize,
    pub(super) machine: usize,
    /// etcd member index (EtcdLeaderKill).
    pub(super) member: usize,
    /// LinkFlap: next toggle and whether the link is down now.
    pub(super) flap: Option<(Instant, bool, Rng)>,
    /// CpuStarve: the cgroup the agent was moved into.
    pub(super) cgroup: Option<PathBuf>,
    /// MachineReplace: the machine that joined.
    pub(super) new_machine: Option<MachineInfo>,
    /// A /readyz measurement in progress (what it measures, for the note): the API server
    /// failing after the injection, ready again after the repair.
    pub(super) wait: Option<(&'static str, ReadyzWait)>,
    /// The repair was done and the fault ends when `wait` does.
    pub(super) repairing: bool,
}

/// Runs the schedule for `cfg.seed` on a fresh testbed.
pub fn run(cfg: &Config) -> Result<Run> {
    let api = match &cfg.kube_apiserver {
        Some(bin) => ApiKind::Kube(bin.clone()),
        None => ApiKind::Cpe(cfg.cpe.clone()),
    };
    let mut tb = match &cfg.front {
        Some(f) => {
            Testbed::start_fronted(&cfg.tag, api, cfg.agent.clone(), cfg.machines, f.clone())?
        }
        None => Testbed::start_sized(&cfg.tag, api, cfg.agent.clone(), cfg.machines)?,
    };
    let epoch = Instant::now() - tb.now();
    let mut params = Params::new(cfg.skip + cfg.length);
    if let Some(k) = &cfg.kinds {
        params.kinds = k.clone();
    }
    let plan = schedule::window(
        schedule::generate(cfg.seed, &params),
        cfg.skip.as_millis() as u64,
    );
    eprintln!(
        "[chaos] seed {} ({}): {} faults over {:?}",
        cfg.seed,
        cfg.agent.name(),
        plan.len(),
        cfg.length
    );
    let members = observers::Members::default();
    *members.lock().unwrap() = etcd_members(&mut tb);
    let leader = observers::etcd_leader(&tb.client, members.clone(), epoch)?;
    let election = observers::election_queue(
        &tb.client,
        members.clone(),
        format!("/cpe/vip/{}", tb.vip),
        epoch,
    )?;
    let idle = Duration::from_secs(3);
    let (stream, kube_watch) = match tb.kube_token() {
        Some(token) => {
            let w = super::kube_watch::configmap_watch(&tb.client, tb.vip, token, idle, epoch)?;
            (w.stream, Some(w.writer))
        }
        None => (
            observers::watch_stream(&tb.client, tb.entry(), idle, epoch)?,
            None,
        ),
    };
    // Let the stream open before the window starts.
    std::thread::sleep(Duration::from_secs(1));
    let mut h = History {
        seed: cfg.seed,
        agent: cfg.agent.name().into(),
        front_lb: cfg.front.as_ref().map(|f| f.name().to_string()),
        api: if tb.kube_api() {
            "kube-apiserver"
        } else {
            "cpe test-apiserver"
        }
        .into(),
        from: tb.now().as_millis() as Ms,
        sample_interval: 10,
        machines: tb
            .machine_macs()
            .into_iter()
            .map(|(mac, name)| MachineInfo { name, mac })
            .collect(),
        ..History::default()
    };
    let t0 = Instant::now();
    let mut queue: std::collections::VecDeque<Fault> = plan.into();
    let mut active: Vec<Active> = Vec::new();
    let mut next_usage = Instant::now();
    let at = |t: u64| t0 + Duration::from_millis(t);
    loop {
        let now = Instant::now();
        // Ends first: a part freed at this instant can be taken by a start.
        let mut i = 0;
        while i < active.len() {
            let due = now >= at(active[i].fault.end_ms());
            if step(&mut tb, &mut active[i], &mut h, due) {
                let a = active.remove(i);
                h.faults[a.rec].end = tb.now().as_millis() as Ms;
            } else {
                i += 1;
            }
        }
        while queue.front().is_some_and(|f| now >= at(f.start_ms)) {
            let f = queue.pop_front().unwrap();
            start_fault(&mut tb, f, &mut active, &mut h);
            // A replacement changes the members the leader observer asks.
            *members.lock().unwrap() = etcd_members(&mut tb);
        }
        for a in active.iter_mut() {
            if let Some((next, down, rng)) = a.flap.as_mut() {
                if now >= *next {
                    let host = tb.machine_host(a.machine);
                    let _ = if *down {
                        host.link_up()
                    } else {
                        host.link_down()
                    };
                    *down = !*down;
                    *next = now + Duration::from_millis(rng.range(200, 800));
                }
            }
        }
        notice_exits(&mut tb, &active, &mut h);
        notice_front_exit(&mut tb, &mut h);
        if now >= next_usage {
            sample_usage(&mut tb, &mut h);
            next_usage = now + Duration::from_secs(5);
        }
        if queue.is_empty() && active.is_empty() && t0.elapsed() >= cfg.length {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    h.to = tb.now().as_millis() as Ms;
    h.election = election.snapshot();
    drop(election);
    if let Some(w) = kube_watch {
        let acks = w.snapshot();
        let ok = acks.iter().filter(|a| a.rv.is_some()).count();
        eprintln!(
            "[chaos] ConfigMap writer: {ok} writes acknowledged, {} failed",
            acks.len() - ok
        );
    }
    finish(&mut tb, &mut h, leader, stream)?;
    let report = checker::check(&h, &Bounds::default());
    let path = cfg
        .history
        .clone()
        .unwrap_or_else(|| tb.dir().join(format!("history-{}.json", cfg.seed)));
    write_history(&h, &path)?;
    eprintln!("[chaos] history written to {}", path.display());
    if let Some(dir) = &cfg.logs {
        copy_logs(tb.dir(), dir)?;
        eprintln!("[chaos] logs copied to {}", dir.display());
    }
    Ok(Run {
        history: h,
        report,
        history_path: path,
    })
}

/// Moves fault `a` on: finishes the /readyz measurement in progress (its result goes into
/// the note), repairs the fault once `due`, and returns whether it has ended (its repair
/// complete: an API server restarted must be ready, which takes seconds with a real one).
fn step(tb: &mut Testbed, a: &mut Active, h: &mut History, due: bool) -> bool {
    if let Some((what, w)) = a.wait.as_mut() {
        let what = *what;
        let r = match w.poll() {
            Some(r) => Some(r),
            // Its API server exited while starting: the fault ends; `notice_exits` records
            // the exit and starts another.
            None if a.repairing && !tb.api_running(a.machine) => Some(Err(anyhow::anyhow!(
                "the API server exited before it was ready"
            ))),
            // No failing answer yet when the repair is due (a real server's first /readyz
            // after the cut takes its 2 s etcd check): give that measurement up.
            None if due && !a.repairing => Some(Err(anyhow::anyhow!(
                "no failing answer yet when the fault ended"
            ))),
            None => None,
        };
        if let Some(r) = r {
            h.faults[a.rec].note += &match r {
                Ok((t, code)) => format!("; {what} after {} ms ({code})", t.as_millis()),
                Err(e) if a.repairing => format!("; repair failed: {e:#}"),
                Err(e) => format!("; {what}: {e:#}"),
            };
            a.wait = None;
        }
    }
    if a.repairing {
        return a.wait.is_none();
    }
    if !due {
        return false;
    }
    match end_fault(tb, a, h) {
        Ok(None) => true,
        Ok(Some(w)) => {
            a.wait = Some(("/readyz 200 again", w));
            a.repairing = true;
            false
        }
        Err(e) => {
            h.faults[a.rec].note += &format!("; repair failed: {e:#}");
            true
        }
    }
}

/// Copies the `*.log` and `*.txt` files of `from` (not the etcd data) into `to`.
fn copy_logs(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for e in std::fs::read_dir(from)?.flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "log" || x == "txt") {
            if let Some(name) = p.file_name() {
                std::fs::copy(&p, to.join(name))
                    .with_context(|| format!("copying {}", p.display()))?;
            }
        }
    }
    Ok(())
}

/// Writes `h` as JSON.
pub fn write_history(h: &History, path: &Path) -> Result<()> {
    let f = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    serde_json::to_writer(std::io::BufWriter::new(f), h)?;
    Ok(())
}

/// Reads a history written by [`write_history`].
pub fn read_history(path: &Path) -> Result<History> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    Ok(serde_json::from_reader(std::io::BufReader::new(f))?)
}

/// (machine name, member address) of every etcd member, for the leader observer.
fn etcd_members(tb: &mut Testbed) -> Vec<(String, Ipv4Addr)> {
    let n = tb.machine_count();
    let hosts: Vec<crate::Host> = (0..n).map(|i| tb.machine_host(i).clone()).collect();
    tb.etcd_mut()
        .members
        .iter()
        .map(|m| {
            let machine = hosts.iter().find(|h| h.ns == m.host.ns);
            (
                machine.map_or_else(|| m.name.clone(), |h| h.name.clone()),
                m.host.addr,
            )
        })
        .collect()
}

/// The index of the etcd member running on machine `m`.
pub(super) fn member_of(tb: &mut Testbed, m: usize) -> Option<usize> {
    let host = tb.machine_host(m).clone();
    tb.etcd_mut().index_of(&host)
}

fn resolve(tb: &mut Testbed, role: Role) -> Option<usize> {
    let n = tb.machine_count();
    match role {
        Role::Holder => Some(tb.holder_index().unwrap_or(0)),
        Role::Other(k) => {
            let holder = tb.holder_index();
            let others: Vec<usize> = (0..n).filter(|i| Some(*i) != holder).collect();
            others.get(k as usize % others.len().max(1)).copied()
        }
        Role::EtcdLeader => {
            let l = tb.etcd_mut().leader().ok()?;
            let ns = tb.etcd_mut().members[l].host.ns.clone();
            (0..n).find(|i| tb.machine_host(*i).ns == ns)
        }
    }
}

fn start_fault(tb: &mut Testbed, f: Fault, active: &mut Vec<Active>, h: &mut History) {
    let start = tb.now().as_millis() as Ms;
    let target = resolve(tb, f.role);
    let mut rec = FaultRecord {
        id: f.id,
        kind: f.kind,
        role: f.role,
        target: target.map(|i| tb.machine_host(i).name.clone()),
        start,
        end: start,
        note: String::new(),
        skipped: false,
    };
    let Some(m) = target else {
        rec.skipped = true;
        rec.note = "no target (no etcd leader found)".into();
        h.faults.push(rec);
        return;
    };
    let global = |k: FaultKind| k == FaultKind::ClockStep;
    let conflicts = |a: &Active| {
        a.machine == m
            && (part(a.fault.kind) == part(f.kind)
                || (f.kind == FaultKind::MachineReplace && !global(a.fault.kind)))
    };
    if let Some(busy) = active.iter().find(|a| conflicts(a)) {
        rec.skipped = true;
        rec.note = format!("{} busy with #{}", part(f.kind), busy.fault.id);
        h.faults.push(rec);
        return;
    }
    if matches!(f.kind, FaultKind::EtcdReplace | FaultKind::MachineReplace) {
        // As Cluster API's control plane controller: no member change while etcd is not
        // healthy (a member down or cut off); the replacement is recorded as skipped.
        let fixed_backends = matches!(tb.agent_kind(), AgentKind::Cpe { extra, .. }
            if extra.iter().any(|a| a == "--load-balance")
                && !extra.iter().any(|a| a == "--discover"));
        let static_front = matches!(tb.front_kind(), Some(FrontLb::Haproxy));
        let why = if fixed_backends && f.kind == FaultKind::MachineReplace {
            // A new machine's address would be in no other agent's --backend list.
            Some("load-balancing agents have fixed --backend lists".to_string())
        } else if static_front && f.kind == FaultKind::MachineReplace {
            // HAProxy's server list is the original machines: a new one is never in it.
            Some("HAProxy in front has a static server list".to_string())
        } else {
            tb.etcd_mut().wait_healthy(Duration::ZERO).err().map(|e| {
                // "etcd not healthy after 0ns: NAME: etcdctl ...": name the member.
                let e = format!("{e:#}");
                let member = e.split(": ").nth(1).unwrap_or("?").to_string();
                format!("etcd not healthy (member {member} fails `endpoint health`)")
            })
        };
        if let Some(why) = why {
            rec.skipped = true;
            rec.note = why;
            h.faults.push(rec);
            return;
        }
    }
    let mut a = Active {
        fault: f.clone(),
        rec: h.faults.len(),
        machine: m,
        member: 0,
        flap: None,
        cgroup: None,
        new_machine: None,
        wait: None,
        repairing: false,
    };
    match inject(tb, &mut a, &mut rec.note) {
        Ok(()) => {
            eprintln!(
                "[chaos] {:>8.3}s #{} {} on {} for {} ms {}",
                start as f64 / 1000.0,
                f.id,
                f.kind.name(),
                rec.target.as_deref().unwrap_or("?"),
                f.duration_ms,
                rec.note
            );
            h.faults.push(rec);
            if let Some(mi) = a.new_machine.take() {
                h.machines.push(mi);
            }
            active.push(a);
        }
        Err(e) => {
            rec.skipped = true;
            rec.note = format!("injection failed: {e:#}");
            if f.kind == FaultKind::ApiUnready {
                // The switch is a request whose answer may be what got lost (a lossy link
                // drops loopback packets too): the server may be unready although curl
                // failed. A skipped fault is never repaired, so undo it now.
                rec.note += &match tb.set_api_ready(m, true) {
                    Ok(()) => "; set ready again".to_string(),
                    Err(e) => format!("; setting it ready again failed too: {e:#}"),
                };
            }
            eprintln!("[chaos] #{} {} skipped: {}", f.id, f.kind.name(), rec.note);
            h.faults.push(rec);
        }
    }
}

/// Records agents, API servers and etcd members that exited while no fault of theirs was
/// in progress, and starts them again so the run goes on.
fn notice_exits(tb: &mut Testbed, active: &[Active], h: &mut History) {
    let busy = |m: usize, p: &str| {
        active
            .iter()
            .any(|a| a.machine == m && part(a.fault.kind) == p)
    };
    for m in 0..tb.machine_count() {
        let name = tb.machine_host(m).name.clone();
        let t = tb.now().as_millis() as Ms;
        if !busy(m, "agent") && !tb.agent_running(m) {
            let status = tb
                .agent_state(m)
                .and_then(|(_, s)| s)
                .map(|s| s.to_string())
                .unwrap_or_default();
            h.crashes.push(Crash {
                t,
                process: format!("agent {name}"),
                status,
                log_tail: tb.agent_log_tail(m, 15),
            });
            let _ = tb.restart_agent(m);
        }
        if !busy(m, "api") && !tb.api_running(m) {
            h.crashes.push(Crash {
                t,
                process: format!("api {name}"),
                status: "exited".into(),
                log_tail: tb.api_log_tail(m),
            });
            // Not waited for: a real one takes seconds to be ready.
            let _ = tb.begin_restart_api(m);
        }
        if !busy(m, "etcd") {
            let i = member_of(tb, m);
            let e = tb.etcd_mut();
            if let Some(i) = i {
                if !e.members[i].is_running() {
                    h.crashes.push(Crash {
                        t,
                        process: format!("etcd {name}"),
                        status: "exited".into(),
                        log_tail: e.members[i].tail(15),
                    });
                    let _ = e.restart(i);
                }
            }
        }
    }
}

fn sample_usage(tb: &mut Testbed, h: &mut History) {
    let t = tb.now().as_millis() as Ms;
    if let (Some(kind), Some(pid)) = (tb.front_kind(), tb.front_pid()) {
        let process = front_process(kind);
        if let Some((fds, rss_kib, threads)) = observers::proc_usage(pid) {
            h.resources.push(ResourceSample {
                t,
                process,
                pid,
                fds,
                rss_kib,
                threads,
            });
        }
    }
    for m in 0..tb.machine_count() {
        let name = tb.machine_host(m).name.clone();
        for (k, pid) in tb.agent_pids(m).into_iter().enumerate() {
            if let Some((fds, rss_kib, threads)) = observers::proc_usage(pid) {
                h.resources.push(ResourceSample {
                    t,
                    process: format!("agent {name}{}", if k > 0 { " (vrrp)" } else { "" }),
                    pid,
                    fds,
                    rss_kib,
                    threads,
                });
            }
        }
    }
}

/// How the front load balancer is named in crashes and resource samples (not `agent …`:
/// the checker judges it against faults on every machine, its backends).
fn front_process(kind: &FrontLb) -> String {
    format!("front {}", kind.name())
}

/// Records a front load balancer that exited unasked and starts a new one.
fn notice_front_exit(tb: &mut Testbed, h: &mut History) {
    if tb.front_running() != Some(false) {
        return;
    }
    let process = tb.front_kind().map(front_process).unwrap_or_default();
    let status = tb
        .stop_front(Duration::ZERO)
        .flatten()
        .map(|s| s.to_string())
        .unwrap_or_default();
    h.crashes.push(Crash {
        t: tb.now().as_millis() as Ms,
        process,
        status,
        log_tail: crate::child::tail_file(&tb.dir().join("lb.log"), 15),
    });
    if let Err(e) = tb.restart_front() {
        eprintln!("[chaos] the front load balancer did not restart: {e:#}");
    }
}

/// Stops the front load balancer gracefully (after the agents; `cpe lb`: SIGTERM,
/// HAProxy: SIGUSR1) and records what is wrong with its end: not exit 0, a panic in its
/// log, an nftables table left in its host.
fn finish_front(tb: &mut Testbed, h: &mut History) {
    let Some((name, sig)) = tb.front_kind().map(|k| (k.name(), k.stop_signal())) else {
        return;
    };
    let log = crate::child::tail_file(&tb.dir().join("lb.log"), 100_000);
    if let Some(l) = log.lines().find(|l| l.contains("panicked at")) {
        h.end.front_lb.push(format!("{name} panicked: {l}"));
    }
    // Its drain is 5 s (`--drain-timeout`); the client's requests are short.
    match tb.stop_front(Duration::from_secs(10)) {
        Some(Some(st)) if st.success() => {}
        st => h.end.front_lb.push(format!(
            "{name} did not exit 0 on {sig}: {:?}",
            st.flatten()
        )),
    }
    if let Some(host) = tb.front_host() {
        let tables = host.exec("nft", &["list", "tables"]).unwrap_or_default();
        for t in tables.lines().filter(|l| !l.trim().is_empty()) {
            h.end
                .front_lb
                .push(format!("{name}: nftables table left: {}", t.trim()));
        }
    }
}

/// Collects the observers' records, stops every agent with SIGTERM and records what is left.
fn finish(
    tb: &mut Testbed,
    h: &mut History,
    leader: Recorder<LeaderSample>,
    stream: Recorder<WatchEvent>,
) -> Result<()> {
    let (sweeps, _) = tb.watch().health();
    h.samples = sweeps;
    h.etcd_leader = leader.snapshot();
    drop(leader);
    h.watches = stream.snapshot();
    drop(stream);
    h.holders = tb
        .watch()
        .holders()
        .into_iter()
        .map(|c| HolderSample {
            t: c.t.as_millis() as Ms,
            holders: c.holders,
        })
        .collect();
    h.neighbour = tb
        .watch()
        .neighbour()
        .into_iter()
        .map(|n| NeighbourSample {
            t: n.t.as_millis() as Ms,
            mac: n.mac,
            host: n.host,
        })
        .collect();
    h.claims = tb
        .arp_claims()
        .into_iter()
        .map(|(t, mac, host)| Claim {
            t: t.as_millis() as Ms,
            mac,
            host,
        })
        .collect();
    h.requests = tb
        .requests()
        .0
        .into_iter()
        .map(|r| ClientRequest {
            start: r.start.as_millis() as Ms,
            end: r.end.as_millis() as Ms,
            ok: r.ok,
            detail: r.detail,
            backend: r.backend,
        })
        .collect();
    let vip = tb.vip;
    for m in 0..tb.machine_count() {
        let name = tb.machine_host(m).name.clone();
        let log = tb.agent_log_tail(m, 100_000);
        if let Some(l) = log.lines().find(|l| l.contains("panicked at")) {
            h.end.panics.push(format!("{name}: {l}"));
        }
        match tb.stop_agent(m, Duration::from_secs(10)) {
            Some(st) if st.success() => {}
            st => h.end.agent_exits.push(format!("{name}: {st:?}")),
        }
    }
    finish_front(tb, h);
    // The kernel may still be finishing a removal the agent asked for.
    std::thread::sleep(Duration::from_millis(200));
    for m in 0..tb.machine_count() {
        let host = tb.machine_host(m).clone();
        if host.has_addr(vip).unwrap_or(false) {
            h.end.vip_left_on.push(host.name.clone());
        }
        let tables = host.exec("nft", &["list", "tables"]).unwrap_or_default();
        for t in tables.lines().filter(|l| !l.trim().is_empty()) {
            h.end.nft_left.push(format!("{}: {}", host.name, t.trim()));
        }
        let q = host
            .exec("tc", &["qdisc", "show", "dev", "eth0"])
            .unwrap_or_default();
        for l in q
            .lines()
            .filter(|l| l.contains("netem") || l.contains("tbf"))
        {
            h.end.qdisc_left.push(format!("{}: {l}", host.name));
        }
    }
    Ok(())
}
