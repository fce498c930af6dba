//! The properties every failover scenario must have, judged on its
//! [`Outcome`](cpe_testkit::vip::Outcome), shared by the suites that run the scenarios:
//! `vip_e2e` (the VIP only) and `vip_lb` (`cpe vip --load-balance`). What differs between
//! the modes is decided by the outcome itself (`expected_move`, `load_balancing`): with a
//! load balancer on every machine, the holder's own API server failing must cost no move.
//! It judges ([`check`]), and runs one scenario to judge it ([`run_judged`]).

use cpe_testkit::vip::{Outcome, Scenario, Testbed};
use std::time::Duration;

/// A request to a killed API server is refused at once and the load balancer retries it
/// elsewhere; only one already talking to it can fail. Started later than this after the
/// kill, it is not one of those.
const KILL_IN_FLIGHT: Duration = Duration::from_millis(100);

/// A `/readyz` 503 takes the backend out of rotation at the first check that sees it
/// (`DRAINING`, one check interval: 250 ms). Requests sent to it before that get the 503;
/// one started later than this (an interval, and the shared machine's stalls) is a failure
/// the load balancer should have avoided.
const READYZ_DETECT: Duration = Duration::from_millis(1000);

/// Runs scenario `s` on `tb` and judges it: its outcome and its violations (the timeline
/// printed when there are any). Panics, with the machines' logs, if it could not run.
pub fn run_judged(tb: &mut Testbed, s: Scenario) -> (Outcome, Vec<String>) {
    let o = tb.run(s).unwrap_or_else(|e| {
        panic!(
            "scenario {} could not run: {e:#}\n{}",
            s.name(),
            tb.logs(30)
        )
    });
    let bad = check(&o);
    if !bad.is_empty() {
        eprintln!("timeline of {}:\n  {}", s.name(), o.timeline.join("\n  "));
    }
    (o, bad)
}

/// Every property scenario `o` must have; returns the violations.
pub fn check(o: &Outcome) -> Vec<String> {
    let mut bad = Vec::new();
    let name = format!("{} ({})", o.scenario.name(), o.agent);
    if !o.settled_on_healthy {
        bad.push(format!(
            "{name}: VIP did not settle on one healthy machine: holders {:?}",
            o.settled_holders
        ));
    }
    if !o.doubles.is_empty() {
        bad.push(format!(
            "{name}: two holders at once: {:?}",
            &o.doubles[..o.doubles.len().min(3)]
        ));
    }
    // A rolling replacement moves the VIP several times on purpose.
    if o.scenario != Scenario::RollingReplacement && o.arp_claimers_after_takeover > 1 {
        bad.push(format!(
            "{name}: the client got ARP claims for the VIP from {} machines after the takeover",
            o.arp_claimers_after_takeover
        ));
    }
    if !o.neighbour_follows {
        bad.push(format!(
            "{name}: the client's neighbour entry did not follow: {}",
            o.neighbour_detail
        ));
    }
    // After a SIGKILL the address stays where the dead agent put it and the other agents
    // will not add it while that host answers for it (no two holders): staying there,
    // still served, is accepted; the repair then restarts the agent and checks one holder.
    if o.expected_move
        && !o.stayed_orphaned
        && o.takeover.is_none_or(|t| t > Duration::from_secs(10))
    {
        bad.push(format!(
            "{name}: VIP not moved within 10 s (takeover {:?})",
            o.takeover
        ));
    }
    if o.outage.is_none_or(|d| d > Duration::from_secs(15)) {
        bad.push(format!("{name}: client outage {:?} (bound 15 s)", o.outage));
    }
    // With a load balancer, the holder's API server failing takes a backend out of
    // rotation: no move at all, and only requests that were on that server fail.
    if o.load_balancing && o.scenario.hits_api_only() {
        if let Some(r) = o.released {
            bad.push(format!(
                "{name}: the VIP left {} {:.3}s after the failure (its load balancer had other backends)",
                o.from,
                r.as_secs_f64()
            ));
        }
        let (late_bound, what) = match o.scenario {
            Scenario::ApiserverKilled => (KILL_IN_FLIGHT, "the kill"),
            _ => (READYZ_DETECT, "the 503"),
        };
        let late: Vec<&Duration> = o.failed_after.iter().filter(|d| **d > late_bound).collect();
        if !late.is_empty() {
            bad.push(format!(
                "{name}: {} request(s) started more than {late_bound:?} after {what} failed \
                 (started after the failure: {late:?}): {:?}",
                late.len(),
                o.failures
            ));
        }
        if o.scenario == Scenario::ApiserverKilled && o.failed > o.in_flight_at_fault {
            bad.push(format!(
                "{name}: {} failed requests, more than the {} in flight at the kill: {:?}",
                o.failed, o.in_flight_at_fault, o.failures
            ));
        }
    }
    // A planned handover loses no request that starts before the handover or after the
    // move. A request that started while the address was moving (between the SIGTERM and
    // the takeover) may have its connection established with the old holder, and such a
    // connection cannot survive the move (connections are not shared between machines):
    // it may be reset. Every failure must be one of those.
    if o.scenario == Scenario::AgentSigterm && o.failed > 0 {
        let moved = o.takeover.unwrap_or_default();
        let outside: Vec<&Duration> = o.failed_after.iter().filter(|d| **d > moved).collect();
        if o.takeover.is_none() || !outside.is_empty() {
            bad.push(format!(
                "{name}: {} failed requests during a planned handover, not all started while \
                 the address moved (takeover {:?}, started after the SIGTERM: {:?}): {:?}",
                o.failed, o.takeover, o.failed_after, o.failures
            ));
        }
    }
    // The holder hands etcd leadership away (--etcd-move-leader, on by default), so a
    // lost holder never takes the etcd leader with it (which would add an election).
    let link_cut = matches!(o.scenario, Scenario::LinkCut | Scenario::LinkCutEtcdLeader);
    if link_cut && o.holder_led_etcd == Some(true) {
        bad.push(format!(
            "{name}: the VIP holder {} was also the etcd leader when its link was cut",
            o.from
        ));
    }
    if link_cut && o.changes_after_restore != Some(0) {
        bad.push(format!(
            "{name}: the VIP moved {:?} times after the link came back (flapping)",
            o.changes_after_restore
        ));
    }
    bad
}
