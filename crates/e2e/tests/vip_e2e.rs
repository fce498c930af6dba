//! End-to-end failover of the built-in virtual IP (`cpe vip`), as root, on real hosts:
//! three control-plane machines as network namespaces on a bridge, each with a real etcd
//! member, the stand-in API server (`cpe test-apiserver`) and `cpe vip`, and a client that
//! sends an HTTPS request to `VIP:6443/readyz` every 20 ms while a watcher samples every
//! machine's addresses and the client's neighbour entry every 10 ms (`cpe_testkit::vip`).
//!
//! One testbed, the scenarios in sequence, each repaired before the next (the whole file
//! takes about two to three minutes). For each scenario the test asserts properties, not
//! tight timings: the VIP settles on a healthy machine other than the one hit (within 20 s),
//! two machines never hold it at once (interfaces), only the new holder claims it in the ARP
//! the client receives, the client's neighbour entry follows the new holder, a planned
//! handover (SIGTERM) fails no request, a machine whose link comes back does not take
//! the VIP back, and the holder whose link is cut was not the etcd leader (the agent hands
//! etcd leadership away while it holds). The measured outage of each scenario is printed (`--nocapture`); the
//! figures against keepalived come from `bench/vip.sh`.
//!
//! Without root it fails with a message saying so; it is never skipped. A test binary of
//! its own, so that no other test loads the machine while it measures outages.

use cpe_testkit::vip::{AgentKind, ApiKind, Outcome, Scenario, Testbed};
use std::path::PathBuf;
use std::time::Duration;

fn cpe() -> PathBuf {
    PathBuf::from(cpe_e2e::cpe_bin())
}

/// Every property a scenario must have; returns the violations.
fn check(o: &Outcome) -> Vec<String> {
    let mut bad = Vec::new();
    let name = o.scenario.name();
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
    if o.scenario.moves()
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
    // A planned handover loses no request that starts before the handover or after the
    // move. A request that started while the address was moving (between the SIGTERM and
    // the takeover) may have its connection established with the old holder, and such a
    // connection cannot survive the move (connections are not shared between machines):
    // it may be reset. Every failure must be one of those.
    if o.scenario == Scenario::AgentSigterm && o.failed > 0 {
        let injected = o
            .timeline
            .iter()
            .find_map(|l| l.trim().strip_suffix("s failure injected"))
            .and_then(|t| t.trim().parse::<f64>().ok());
        let moved = injected.zip(o.takeover).map(|(t, d)| t + d.as_secs_f64());
        let in_flight_at_the_move = |f: &String| {
            let start = f
                .split_once("s:")
                .and_then(|(t, _)| t.trim().parse::<f64>().ok());
            matches!((start, injected, moved), (Some(s), Some(i), Some(m)) if s >= i - 0.1 && s <= m)
        };
        if o.failed > o.failures.len() || !o.failures.iter().all(in_flight_at_the_move) {
            bad.push(format!(
                "{name}: {} failed requests during a planned handover, not all started while the address moved: {:?}",
                o.failed, o.failures
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

#[test]
fn vip_failover_scenarios() {
    cpe_testkit::require_root();
    let mut tb = Testbed::start(
        "vipe2e",
        ApiKind::Cpe(cpe()),
        AgentKind::Cpe {
            bin: cpe(),
            lease_ttl: "2s".into(),
            extra: vec![],
        },
    )
    .expect("testbed up: three machines with etcd, stand-in API server and cpe vip, one holder");
    let mut outcomes = Vec::new();
    let mut violations = Vec::new();
    for s in Scenario::ALL {
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
        violations.extend(bad);
        outcomes.push(o);
    }
    eprintln!("\nVIP failover, cpe vip, lease TTL 2 s (outage = longest time without a successful request):");
    for o in &outcomes {
        eprintln!("  {}", o.line());
    }
    if !violations.is_empty() {
        panic!(
            "{} violation(s):\n  {}\nlogs:\n{}",
            violations.len(),
            violations.join("\n  "),
            tb.logs(40)
        );
    }
}
