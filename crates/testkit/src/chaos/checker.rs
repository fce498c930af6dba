//! The checker: judges a recorded [`History`] as a whole, after the run. Pure: no clock, no
//! I/O; the runner and the tests feed it histories, real or synthetic.
//!
//! Rules (bounds in [`Bounds`], published in `docs/chaos.md`):
//! - **one holder**: no sample with two machines carrying the VIP;
//! - **one claimant**: no gratuitous ARP for the VIP from a machine while another one held
//!   it (± `claim_slack`), none from a machine that held it nowhere near (± 2 s), and the
//!   client's neighbour entry only ever names a known machine;
//! - **explained outages**: an *outage* is a gap longer than `outage_min` between two
//!   consecutive successful client requests; a fault *explains* it if the fault started
//!   before the outage became visible (`last success + outage_min`) and had not ended more
//!   than `grace` before the outage began;
//! - **bounded outages**: explained by one fault whose kind can be routed around, the outage
//!   ends within the kind's failover bound of the fault's start (or within `grace` of its
//!   end, whichever is earlier); explained by several (they may together take etcd's quorum),
//!   it ends within `grace` of the last of them ending; a fault that starts while the
//!   outage runs may prolong it up to its own allowance (as if alone) from its start;
//!   with the client going through a load balancer in front of the machines
//!   (`History::front_lb`), each kind's allowance is what it costs there ([`allowance`]):
//!   the agents, partitions between the machines and etcd elections are off the client's
//!   path and explain no outage; a step of the real-time clock is off every path (it
//!   must not matter): it explains and prolongs nothing in either mode ([`explains`]);
//! - **watches resumed**: every watch stream that ended was followed by a new one within
//!   `watch_resume`;
//! - **no crash, no leak**: no process exited unasked; every agent's (and the front load
//!   balancer's) fds, threads and RSS grew within bounds between its first sample after
//!   `warmup` and its last, both taken with no fault on its machine (the front LB: on any
//!   machine, its backends); after the
//!   run no VIP, nft table or netem qdisc is left, every agent (and the front LB) exited 0
//!   on SIGTERM, and no agent or front LB log holds a panic.
//!
//! It also computes the figures: availability (share of requests that succeeded) and the
//! client-seen outage of each fault (the longest gap between successes from its start to
//! `grace` after its end), by kind.

pub use super::bounds::{allowance, explains, Allowance, Bounds};
use super::history::{History, Ms, WatchWhat};
use super::schedule::FaultKind;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One broken rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub t: Ms,
    pub rule: &'static str,
    pub message: String,
}

/// The client-seen outage of one fault.
#[derive(Debug, Clone)]
pub struct FaultOutage {
    pub id: usize,
    pub kind: FaultKind,
    pub outage: Ms,
    /// No other fault was in progress from its start to `grace` after its end.
    pub alone: bool,
}

/// The verdict and the figures.
#[derive(Debug, Clone)]
pub struct Report {
    pub seed: u64,
    pub violations: Vec<Violation>,
    pub requests: usize,
    pub succeeded: usize,
    pub faults: Vec<FaultOutage>,
}

impl Report {
    /// Share of requests that succeeded, in percent.
    pub fn availability(&self) -> f64 {
        if self.requests == 0 {
            return 0.0;
        }
        100.0 * self.succeeded as f64 / self.requests as f64
    }

    /// Per kind: (faults, p50, p90, max) of the client-seen outage in ms, over the faults
    /// that ran alone (`alone`) or over all of them.
    pub fn outage_percentiles(&self, alone: bool) -> BTreeMap<FaultKind, (usize, Ms, Ms, Ms)> {
        let mut by: BTreeMap<FaultKind, Vec<Ms>> = BTreeMap::new();
        for f in self.faults.iter().filter(|f| f.alone || !alone) {
            by.entry(f.kind).or_default().push(f.outage);
        }
        by.into_iter()
            .map(|(k, mut v)| {
                v.sort();
                let pct = |p: usize| v[((v.len() - 1) * p) / 100];
                (k, (v.len(), pct(50), pct(90), *v.last().unwrap_or(&0)))
            })
            .collect()
    }

    /// The figures as text: availability and the table of outages by kind.
    pub fn figures(&self) -> String {
        let mut s = format!(
            "availability {:.3}% ({} of {} requests succeeded), {} faults\n\
             client-seen outage per fault (ms), faults alone | all faults:\n\
             {:<18} {:>5} {:>7} {:>7} {:>7} | {:>5} {:>7} {:>7}\n",
            self.availability(),
            self.succeeded,
            self.requests,
            self.faults.len(),
            "kind",
            "n",
            "p50",
            "p90",
            "max",
            "n",
            "p50",
            "max"
        );
        let alone = self.outage_percentiles(true);
        for (k, (n, p50, _, max)) in self.outage_percentiles(false) {
            let (an, a50, a90, amax) = alone.get(&k).copied().unwrap_or((0, 0, 0, 0));
            let _ = writeln!(
                s,
                "{:<18} {an:>5} {a50:>7} {a90:>7} {amax:>7} | {n:>5} {p50:>7} {max:>7}",
                k.name()
            );
        }
        s
    }
}

/// Judges `h` under `b`.
pub fn check(h: &History, b: &Bounds) -> Report {
    let mut v = Vec::new();
    holders(h, &mut v);
    claims(h, b, &mut v);
    outages(h, b, &mut v);
    watches(h, b, &mut v);
    crashes_and_leaks(h, b, &mut v);
    v.sort_by_key(|x| x.t);
    let in_window: Vec<_> = h
        .requests
        .iter()
        .filter(|r| r.start >= h.from && r.start <= h.to)
        .collect();
    Report {
        seed: h.seed,
        violations: v,
        requests: in_window.len(),
        succeeded: in_window.iter().filter(|r| r.ok).count(),
        faults: fault_outages(h, b),
    }
}

fn holders(h: &History, v: &mut Vec<Violation>) {
    let mut in_double = false;
    for s in &h.holders {
        let double = s.holders.len() >= 2;
        if double && !in_double && s.t >= h.from && s.t <= h.to {
            v.push(Violation {
                t: s.t,
                rule: "one holder",
                message: format!(
                    "two holders at {}: {} carry the VIP at once",
                    secs(s.t),
                    s.holders.join(", ")
                ),
            });
        }
        in_double = double;
    }
}

/// Holders at any sample in `[from, to]` (the one in force at `from` included).
fn holders_between(h: &History, from: Ms, to: Ms) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let before = h.holders.iter().rev().find(|s| s.t <= from);
    for s in before
        .into_iter()
        .chain(h.holders.iter().filter(|s| s.t > from && s.t <= to))
    {
        out.extend(s.holders.iter().cloned());
    }
    out.sort();
    out.dedup();
    out
}

fn claims(h: &History, b: &Bounds, v: &mut Vec<Violation>) {
    for c in h.claims.iter().filter(|c| c.t >= h.from && c.t <= h.to) {
        let around = holders_between(h, c.t.saturating_sub(b.claim_slack), c.t + b.claim_slack);
        match &c.host {
            None => v.push(Violation {
                t: c.t,
                rule: "one claimant",
                message: format!(
                    "gratuitous ARP for the VIP at {} from {}, a MAC of no machine",
                    secs(c.t),
                    c.mac
                ),
            }),
            // A claim from a machine that is not seen holding within the slack: a second
            // claimant if another machine held the VIP then, or if the claimant held it
            // nowhere near (2 s). Alone and about to be seen holding, it is sampling
            // latency (the watch thread starved on a loaded machine), not a second claimant.
            Some(host)
                if !around.contains(host)
                    && (around.iter().any(|x| x != host)
                        || !holders_between(h, c.t.saturating_sub(2_000), c.t + 2_000)
                            .contains(host)) =>
            {
                v.push(Violation {
                    t: c.t,
                    rule: "one claimant",
                    message: format!(
                        "gratuitous ARP for the VIP at {} from {host} ({}), which did not hold it \
                     (holders within ±{} ms: {around:?}): the client's neighbour cache would \
                     follow a second claimant",
                        secs(c.t),
                        c.mac,
                        b.claim_slack
                    ),
                })
            }
            Some(_) => {}
        }
    }
    let macs: Vec<&str> = h.machines.iter().map(|m| m.mac.as_str()).collect();
    for n in h.neighbour.iter().filter(|n| n.t >= h.from && n.t <= h.to) {
        if !n.mac.is_empty() && !macs.contains(&n.mac.as_str()) {
            v.push(Violation {
                t: n.t,
                rule: "one claimant",
                message: format!(
                    "the client's neighbour entry for the VIP points to {} at {}, a MAC of no machine",
                    n.mac,
                    secs(n.t)
                ),
            });
        }
    }
}

/// Gaps longer than `min` between consecutive successful completions in the window:
/// (last success before, first success after). A gap still open at `to` ends at `to`.
pub fn outage_gaps(h: &History, min: Ms) -> Vec<(Ms, Ms)> {
    let mut ends: Vec<Ms> = h
        .requests
        .iter()
        .filter(|r| r.ok && r.end >= h.from && r.end <= h.to)
        .map(|r| r.end)
        .collect();
    ends.sort();
    let mut out = Vec::new();
    let mut prev = h.from;
    for e in ends.into_iter().chain([h.to]) {
        if e.saturating_sub(prev) > min {
            out.push((prev, e));
        }
        prev = prev.max(e);
    }
    out
}

fn outages(h: &History, b: &Bounds, v: &mut Vec<Violation>) {
    let front = h.front_lb.is_some();
    for (a, e) in outage_gaps(h, b.outage_min) {
        let in_progress: Vec<_> = h
            .faults
            .iter()
            .filter(|f| !f.skipped && f.start <= a + b.outage_min && f.end + b.grace >= a)
            .collect();
        let explaining: Vec<_> = in_progress
            .iter()
            .copied()
            .filter(|f| explains(f.kind, front))
            .collect();
        let len = e - a;
        if explaining.is_empty() {
            let off: Vec<String> = in_progress
                .iter()
                .map(|f| format!("{} #{}", f.kind.name(), f.id))
                .collect();
            let clock = if in_progress.iter().any(|f| f.kind == FaultKind::ClockStep) {
                "; a step of the real-time clock is on no path"
            } else {
                ""
            };
            let why = match (off.is_empty(), &h.front_lb) {
                (true, _) => "no fault in progress".to_string(),
                (false, lb) => format!(
                    "no fault on the client's path in progress ({} not on it: the client goes \
                     through {}{clock})",
                    off.join(", "),
                    lb.as_deref().unwrap_or("the VIP")
                ),
            };
            v.push(Violation {
                t: a,
                rule: "explained outages",
                message: format!(
                    "unexplained outage of {} ms from {} to {}: {why} (or ended \
                     less than {} ms before)",
                    len,
                    secs(a),
                    secs(e),
                    b.grace
                ),
            });
            continue;
        }
        let (allowed, why) = match explaining.as_slice() {
            [f] => match allowance(f.kind, front) {
                Allowance::Within(x) => (
                    (f.start + x).min(f.end + b.grace),
                    format!(
                        "{} #{} alone: {} ms after its start or {} ms after its end",
                        f.kind.name(),
                        f.id,
                        x,
                        b.grace
                    ),
                ),
                _ => (
                    f.end + b.grace,
                    format!("{} #{}: {} ms after its end", f.kind.name(), f.id, b.grace),
                ),
            },
            many => (
                many.iter().map(|f| f.end + b.grace).max().unwrap_or(0),
                format!(
                    "{} faults together ({}): {} ms after the last one ends",
                    many.len(),
                    many.iter()
                        .map(|f| format!("{} #{}", f.kind.name(), f.id))
                        .collect::<Vec<_>>()
                        .join(", "),
                    b.grace
                ),
            ),
        };
        // A fault that starts while the outage runs (a partition of the machine taking
        // over, say) can prolong it: each such fault has its own allowance from its start,
        // as if it were alone; the outage may last until the latest allowance.
        let (mut allowed, mut why) = (allowed, why);
        for f in h
            .faults
            .iter()
            .filter(|f| !f.skipped && f.start > a + b.outage_min && f.start < e)
        {
            let own = match allowance(f.kind, front) {
                Allowance::Within(x) => (f.start + x).min(f.end + b.grace),
                Allowance::UntilEnd => f.end + b.grace,
                Allowance::OffPath => continue,
            };
            if own > allowed {
                allowed = own;
                why += &format!(
                    "; prolonged by {} #{}, which started during it at {}",
                    f.kind.name(),
                    f.id,
                    secs(f.start)
                );
            }
        }
        if e > allowed {
            v.push(Violation {
                t: a,
                rule: "bounded outages",
                message: format!(
                    "outage of {} ms from {} to {} outlasts its bound ({}), which ended at {}",
                    len,
                    secs(a),
                    secs(e),
                    why,
                    secs(allowed)
                ),
            });
        }
    }
}

fn watches(h: &History, b: &Bounds, v: &mut Vec<Violation>) {
    for (i, w) in h.watches.iter().enumerate() {
        let WatchWhat::End { reason } = &w.what else {
            continue;
        };
        if w.t > h.to.saturating_sub(b.watch_resume) {
            continue;
        }
        let resumed = h.watches[i + 1..].iter().find(|x| {
            matches!(x.what, WatchWhat::Start { .. }) && x.t >= w.t && x.t <= w.t + b.watch_resume
        });
        if resumed.is_none() {
            v.push(Violation {
                t: w.t,
                rule: "watches resumed",
                message: format!(
                    "lost watch: the client's watch stream ended at {} ({reason}) and no new \
                     stream started within {} ms",
                    secs(w.t),
                    b.watch_resume
                ),
            });
        }
    }
}

fn crashes_and_leaks(h: &History, b: &Bounds, v: &mut Vec<Violation>) {
    for c in &h.crashes {
        v.push(Violation {
            t: c.t,
            rule: "no crash",
            message: format!(
                "{} exited unasked at {} ({}); its log ends:\n{}",
                c.process,
                secs(c.t),
                c.status,
                c.log_tail
            ),
        });
    }
    let mut by_pid: BTreeMap<(String, u32), Vec<&super::history::ResourceSample>> = BTreeMap::new();
    for r in &h.resources {
        by_pid
            .entry((r.process.clone(), r.pid))
            .or_default()
            .push(r);
    }
    for ((process, pid), rs) in by_pid {
        // Judged at samples taken while no fault was on the process's machine (nor had
        // ended less than 2 s before): a holder whose link is throttled has connections in
        // progress, not leaked; a leak keeps growing through the quiet samples too.
        let machine = machine_of(&process);
        let quiet = |t: Ms| {
            !h.faults.iter().any(|f| {
                !f.skipped
                    && (machine.is_none() || f.target.as_deref() == machine)
                    && t + 2_000 >= f.start
                    && t <= f.end + 2_000
            })
        };
        let t0 = rs[0].t;
        let mut judged = rs.iter().filter(|r| r.t >= t0 + b.warmup && quiet(r.t));
        let Some(first) = judged.next() else {
            continue;
        };
        let last = judged.next_back().unwrap_or(first);
        let grew = |what: &str, a: u64, z: u64, max: u64| {
            (z > a + max).then(|| {
                format!(
                    "{process} (pid {pid}) leaks {what}: {a} at {} → {z} at {} (more than +{max})",
                    secs(first.t),
                    secs(last.t)
                )
            })
        };
        for m in [
            grew("fds", first.fds, last.fds, b.fd_growth),
            grew("threads", first.threads, last.threads, b.thread_growth),
            grew("RSS KiB", first.rss_kib, last.rss_kib, b.rss_growth_kib),
        ]
        .into_iter()
        .flatten()
        {
            v.push(Violation {
                t: last.t,
                rule: "no leak",
                message: m,
            });
        }
    }
    let e = &h.end;
    for (what, list) in [
        ("the VIP is still on", &e.vip_left_on),
        ("nftables table left behind:", &e.nft_left),
        ("netem qdisc left behind:", &e.qdisc_left),
        ("agent did not exit 0 on SIGTERM:", &e.agent_exits),
        ("agent panicked:", &e.panics),
        ("the front load balancer:", &e.front_lb),
    ] {
        for item in list {
            v.push(Violation {
                t: h.to,
                rule: "nothing left behind",
                message: format!("after the run, {what} {item}"),
            });
        }
    }
}

/// The machine a resource-sampled process runs on (`agent cp2`, `agent cp2 (vrrp)`), or
/// `None` for the front load balancer (`front cpe lb`), whose backends are every machine:
/// its samples are judged only while no machine has a fault.
pub fn machine_of(process: &str) -> Option<&str> {
    process
        .strip_prefix("agent ")
        .map(|m| m.trim_end_matches(" (vrrp)"))
}

/// Every fault's client-seen outage (longest success gap in `[start, end + grace]`).
fn fault_outages(h: &History, b: &Bounds) -> Vec<FaultOutage> {
    let mut ok: Vec<Ms> = h.requests.iter().filter(|r| r.ok).map(|r| r.end).collect();
    ok.sort();
    h.faults
        .iter()
        .filter(|f| !f.skipped)
        .map(|f| {
            let (from, to) = (f.start, (f.end + b.grace).min(h.to.max(f.end)));
            let mut prev = ok
                .iter()
                .rev()
                .find(|&&t| t < from)
                .copied()
                .unwrap_or(from);
            let mut worst = 0;
            for &t in ok.iter().filter(|&&t| t >= from && t <= to).chain([&to]) {
                worst = worst.max(t.saturating_sub(prev));
                prev = prev.max(t);
            }
            let alone = !h.faults.iter().any(|g| {
                g.id != f.id
                    && !g.skipped
                    && g.start <= f.end + b.grace
                    && g.end + b.grace >= f.start
            });
            FaultOutage {
                id: f.id,
                kind: f.kind,
                outage: worst,
                alone,
            }
        })
        .collect()
}

fn secs(t: Ms) -> String {
    format!("{}.{:03}s", t / 1000, t % 1000)
}

/// The report for a failing run: the seed, each violation, and the history around it.
pub fn explain(h: &History, r: &Report, span: Ms) -> String {
    let mut s = format!(
        "chaos run with seed {} ({}) broke {} rule(s); replay: CPE_CHAOS_SEED={}\n",
        r.seed,
        h.agent,
        r.violations.len(),
        r.seed
    );
    for x in r.violations.iter().take(5) {
        let _ = writeln!(s, "\n[{}] {}\n{}", x.rule, x.message, window(h, x.t, span));
    }
    if r.violations.len() > 5 {
        let _ = writeln!(s, "... and {} more", r.violations.len() - 5);
    }
    s
}

/// Everything the history holds in `[t - span, t + span]`, in time order, one line each;
/// requests are summed per 500 ms (successes, and failures by result) instead of listed.
pub fn window(h: &History, t: Ms, span: Ms) -> String {
    let (a, z) = (t.saturating_sub(span), t + span);
    let inw = |x: Ms| x >= a && x <= z;
    let mut lines: Vec<(Ms, String)> = Vec::new();
    if let Some(s) = h.holders.iter().rev().find(|s| s.t < a) {
        lines.push((a, format!("holders (since {}): {:?}", secs(s.t), s.holders)));
    }
    for s in h.holders.iter().filter(|s| inw(s.t)) {
        lines.push((s.t, format!("holders {:?}", s.holders)));
    }
    for n in h.neighbour.iter().filter(|n| inw(n.t)) {
        lines.push((n.t, format!("client neighbour → {} {:?}", n.mac, n.host)));
    }
    for c in h.claims.iter().filter(|c| inw(c.t)) {
        lines.push((c.t, format!("ARP claim from {} {:?}", c.mac, c.host)));
    }
    for l in h.etcd_leader.iter().filter(|l| inw(l.t)) {
        lines.push((l.t, format!("etcd leader {:?}", l.leader)));
    }
    for q in h.election.iter().filter(|q| inw(q.t)) {
        lines.push((q.t, format!("election queue {:?}", q.queue)));
    }
    for w in h.watches.iter().filter(|w| inw(w.t)) {
        lines.push((w.t, format!("watch {:?}", w.what)));
    }
    for f in &h.faults {
        if f.start <= z && f.end >= a {
            let who = f.target.as_deref().unwrap_or("-");
            if inw(f.start) || f.start < a {
                lines.push((
                    f.start,
                    format!(
                        "fault #{} {} on {who} starts ({})",
                        f.id,
                        f.kind.name(),
                        f.note
                    ),
                ));
            }
            if inw(f.end) {
                lines.push((
                    f.end,
                    format!("fault #{} {} on {who} ends", f.id, f.kind.name()),
                ));
            }
        }
    }
    // Requests, by the 500 ms in which they ended: successes counted, failures counted by
    // their result.
    let mut bucket: BTreeMap<Ms, (usize, BTreeMap<String, usize>)> = BTreeMap::new();
    for r in h.requests.iter().filter(|r| inw(r.end)) {
        let e = bucket.entry(r.end / 500 * 500).or_default();
        if r.ok {
            e.0 += 1;
        } else {
            *e.1.entry(r.detail.clone()).or_default() += 1;
        }
    }
    for (b, (n, failed)) in bucket {
        let mut l = format!("requests ending in the next 500 ms: {n} ok");
        for (detail, k) in failed {
            let _ = write!(l, ", {k} failed ({detail})");
        }
        lines.push((b, l));
    }
    lines.sort_by_key(|l| l.0);
    let mut s = String::new();
    for (t, l) in lines.iter().take(200) {
        let _ = writeln!(s, "  {:>10}  {l}", secs(*t));
    }
    if lines.len() > 200 {
        let _ = writeln!(s, "  ... {} more lines", lines.len() - 200);
    }
    s
}

#[cfg(test)]
#[path = "checker_tests.rs"]
mod tests;
