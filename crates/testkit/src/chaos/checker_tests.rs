//! The checker fed synthetic histories: a clean one passes, each injected fault of the
//! system under test fails with the rule and message that name it.

use super::*;
use crate::chaos::history::*;
use crate::chaos::schedule::{FaultKind, Role};

/// 60 s, cp1 holding, a request every 20 ms (10 ms each) all answered by cp1, one watch.
fn clean() -> History {
    let mut h = History {
        seed: 7,
        agent: "cpe".into(),
        from: 0,
        to: 60_000,
        sample_interval: 10,
        samples: 6_000,
        ..History::default()
    };
    for (i, n) in ["cp1", "cp2", "cp3"].iter().enumerate() {
        h.machines.push(MachineInfo {
            name: n.to_string(),
            mac: format!("02:00:00:00:00:0{i}"),
        });
    }
    h.holders.push(HolderSample {
        t: 0,
        holders: vec!["cp1".into()],
    });
    h.claims.push(Claim {
        t: 5,
        mac: "02:00:00:00:00:00".into(),
        host: Some("cp1".into()),
    });
    h.requests = (0..3_000)
        .map(|i| ClientRequest {
            start: i * 20,
            end: i * 20 + 10,
            ok: true,
            detail: "200".into(),
            backend: Some("cp1".into()),
        })
        .collect();
    h.watches.push(WatchEvent {
        t: 50,
        what: WatchWhat::Start {
            backend: Some("cp1".into()),
        },
    });
    h
}

/// Requests starting in `[from, to)` fail.
fn fail(h: &mut History, from: Ms, to: Ms) {
    for r in h
        .requests
        .iter_mut()
        .filter(|r| r.start >= from && r.start < to)
    {
        r.ok = false;
        r.detail = "connect: Connection refused".into();
    }
}

fn fault(id: usize, kind: FaultKind, start: Ms, end: Ms) -> FaultRecord {
    FaultRecord {
        id,
        kind,
        role: Role::Holder,
        target: Some("cp1".into()),
        start,
        end,
        note: String::new(),
        skipped: false,
    }
}

fn rules(r: &Report) -> Vec<&'static str> {
    r.violations.iter().map(|v| v.rule).collect()
}

#[test]
fn a_clean_history_passes_with_full_availability() {
    let r = check(&clean(), &Bounds::default());
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    assert_eq!(r.availability(), 100.0);
}

#[test]
fn injected_double_holder_fails_as_two_holders() {
    let mut h = clean();
    h.holders.push(HolderSample {
        t: 30_000,
        holders: vec!["cp1".into(), "cp2".into()],
    });
    h.holders.push(HolderSample {
        t: 30_010,
        holders: vec!["cp2".into()],
    });
    let r = check(&h, &Bounds::default());
    assert_eq!(rules(&r), ["one holder"]);
    assert!(
        r.violations[0]
            .message
            .contains("two holders at 30.000s: cp1, cp2"),
        "{}",
        r.violations[0].message
    );
    let text = explain(&h, &r, 2_000);
    assert!(text.contains("seed 7"), "{text}");
    assert!(text.contains("holders [\"cp1\", \"cp2\"]"), "{text}");
}

#[test]
fn a_claim_from_a_machine_not_holding_the_vip_fails_as_second_claimant() {
    let mut h = clean();
    h.claims.push(Claim {
        t: 20_000,
        mac: "02:00:00:00:00:01".into(),
        host: Some("cp2".into()),
    });
    let r = check(&h, &Bounds::default());
    assert_eq!(rules(&r), ["one claimant"]);
    assert!(r.violations[0].message.contains("from cp2"));
}

#[test]
fn a_claim_just_before_its_sender_is_seen_holding_and_nobody_else_holds_passes() {
    // From the 30-minute run (seed 769871270, 193.5 s): the claim came 435 ms before the
    // starved watch thread saw cp2 holding; nobody else held the VIP.
    let mut h = clean();
    h.holders.push(HolderSample {
        t: 19_000,
        holders: vec![],
    });
    h.holders.push(HolderSample {
        t: 20_435,
        holders: vec!["cp2".into()],
    });
    h.requests.retain(|r| r.start < 18_990 || r.start > 20_440);
    h.faults
        .push(fault(0, FaultKind::AgentKill, 18_990, 21_000));
    h.claims.push(Claim {
        t: 20_000,
        mac: "02:00:00:00:00:01".into(),
        host: Some("cp2".into()),
    });
    let r = check(&h, &Bounds::default());
    assert!(r.violations.is_empty(), "{:?}", r.violations);
}

#[test]
fn unexplained_outage_fails_and_an_explained_one_passes() {
    let mut h = clean();
    fail(&mut h, 20_000, 23_000);
    let r = check(&h, &Bounds::default());
    assert_eq!(rules(&r), ["explained outages"]);
    assert!(
        r.violations[0]
            .message
            .starts_with("unexplained outage of 3020 ms from 19.990s"),
        "{}",
        r.violations[0].message
    );
    assert!(r.availability() < 100.0);

    // The same outage while the holder's API server was killed: explained, within bound.
    h.faults.push(fault(0, FaultKind::ApiKill, 19_995, 22_000));
    let r = check(&h, &Bounds::default());
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    assert_eq!(r.faults[0].outage, 3_020);
    // A fault that started after the outage was already visible does not explain it.
    h.faults[0].start = 21_500;
    assert_eq!(rules(&check(&h, &Bounds::default())), ["explained outages"]);
}

#[test]
fn an_outage_longer_than_its_fault_kind_allows_fails_as_unbounded() {
    let mut h = clean();
    fail(&mut h, 10_000, 19_000);
    h.faults.push(fault(0, FaultKind::ApiKill, 9_990, 30_000));
    let r = check(&h, &Bounds::default());
    assert_eq!(rules(&r), ["bounded outages"]);
    assert!(
        r.violations[0]
            .message
            .contains("api-kill #0 alone: 6000 ms"),
        "{}",
        r.violations[0].message
    );
    // Two faults together (they may take etcd's quorum): bounded by their ends only.
    h.faults
        .push(fault(1, FaultKind::EtcdLeaderKill, 9_000, 17_000));
    assert!(check(&h, &Bounds::default()).violations.is_empty());
}

#[test]
fn a_fault_starting_during_an_outage_may_prolong_it_up_to_its_own_bound_only() {
    // The 30-minute run's first overrun, shape of: an etcd leader kill (41.4-48.3 s),
    // the outage from 45.5 s, then a delay on the holder from 52.6 s (its own allowance:
    // 5 s after its end); the outage ends at 54.7 s.
    let mut h = clean();
    fail(&mut h, 45_500, 54_700);
    h.faults
        .push(fault(8, FaultKind::EtcdLeaderKill, 41_400, 48_300));
    let r = check(&h, &Bounds::default());
    assert_eq!(rules(&r), ["bounded outages"], "{:?}", r.violations);
    h.faults.push(fault(10, FaultKind::Delay, 52_600, 58_000));
    let r = check(&h, &Bounds::default());
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    // A later fault with a bound of its own that has passed does not excuse it: a link
    // cut from 50 s allows until 58 s; the outage lasting to 59.5 s fails, naming both.
    let mut h = clean();
    fail(&mut h, 45_500, 59_500);
    h.faults
        .push(fault(8, FaultKind::EtcdLeaderKill, 41_400, 48_300));
    h.faults.push(fault(9, FaultKind::LinkCut, 50_000, 51_000));
    let r = check(&h, &Bounds::default());
    assert_eq!(rules(&r), ["bounded outages"], "{:?}", r.violations);
    let m = &r.violations[0].message;
    assert!(
        m.contains("etcd-leader-kill #8 alone") && m.contains("prolonged by link-cut #9"),
        "{m}"
    );
}

#[test]
fn a_watch_that_ended_and_never_resumed_fails_as_lost() {
    let mut h = clean();
    h.watches.push(WatchEvent {
        t: 10_000,
        what: WatchWhat::End {
            reason: "EOF".into(),
        },
    });
    let r = check(&h, &Bounds::default());
    assert_eq!(rules(&r), ["watches resumed"]);
    assert!(r.violations[0].message.starts_with("lost watch"));
    h.watches.push(WatchEvent {
        t: 10_300,
        what: WatchWhat::Start {
            backend: Some("cp2".into()),
        },
    });
    assert!(check(&h, &Bounds::default()).violations.is_empty());
}

#[test]
fn leftovers_crashes_and_growth_fail_as_leaks() {
    let mut h = clean();
    h.end.vip_left_on.push("cp3".into());
    h.end.nft_left.push("cp1: inet cpe_partition".into());
    h.crashes.push(Crash {
        t: 12_000,
        process: "agent cp2".into(),
        status: "exit status: 101".into(),
        log_tail: "thread 'main' panicked".into(),
    });
    for (t, fds) in [(0, 10), (10_000, 12), (50_000, 90)] {
        h.resources.push(ResourceSample {
            t,
            process: "agent cp1".into(),
            pid: 42,
            fds,
            rss_kib: 9_000,
            threads: 6,
        });
    }
    let r = check(&h, &Bounds::default());
    let mut got = rules(&r);
    got.sort();
    assert_eq!(
        got,
        [
            "no crash",
            "no leak",
            "nothing left behind",
            "nothing left behind"
        ]
    );
    let all: String = r
        .violations
        .iter()
        .map(|v| v.message.clone() + "\n")
        .collect();
    assert!(all.contains("leaks fds: 12"), "{all}");
    assert!(all.contains("the VIP is still on cp3"), "{all}");
}

#[test]
fn fds_are_judged_at_samples_with_no_fault_on_the_machine() {
    // The load-balancing holder's link throttled: connections in progress at its last
    // sample (126 fds), none at the quiet ones. Not a leak.
    let mut h = clean();
    let sample = |t, fds| ResourceSample {
        t,
        process: "agent cp1".into(),
        pid: 42,
        fds,
        rss_kib: 9_000,
        threads: 6,
    };
    for (t, fds) in [(0, 30), (10_000, 32), (20_000, 33), (30_000, 126)] {
        h.resources.push(sample(t, fds));
    }
    h.faults.push(fault(4, FaultKind::Delay, 28_000, 33_000));
    assert!(
        check(&h, &Bounds::default()).violations.is_empty(),
        "{:?}",
        check(&h, &Bounds::default()).violations
    );
    // The same growth at a quiet sample is a leak; a fault on another machine does not
    // make the sample noisy.
    h.resources.push(sample(40_000, 126));
    h.faults[0].target = Some("cp2".into());
    let r = check(&h, &Bounds::default());
    assert_eq!(rules(&r), ["no leak"], "{:?}", r.violations);
    assert!(
        r.violations[0].message.contains("32 at 10.000s"),
        "{:?}",
        r.violations
    );
}

#[test]
fn figures_give_per_kind_percentiles_of_faults_alone() {
    let mut h = clean();
    fail(&mut h, 20_000, 21_000);
    h.faults
        .push(fault(0, FaultKind::AgentKill, 19_995, 25_000));
    h.faults.push(fault(1, FaultKind::Delay, 40_000, 42_000));
    let r = check(&h, &Bounds::default());
    let p = r.outage_percentiles(true);
    assert_eq!(p[&FaultKind::AgentKill].3, 1_020);
    assert_eq!(p[&FaultKind::Delay].0, 1);
    assert!(r.figures().contains("agent-kill"));
}

/// `clean()` with the client going through a load balancer in front of the machines.
fn fronted() -> History {
    History {
        front_lb: Some("cpe lb".into()),
        ..clean()
    }
}

#[test]
fn through_a_front_lb_the_vip_bounds_hold_unchanged_and_off_path_kinds_explain_nothing() {
    // Through the VIP: the published table (docs/chaos.md, rule 4).
    use FaultKind::*;
    for (k, want) in [
        (ApiKill, Allowance::Within(6_000)),
        (ApiTerm, Allowance::Within(6_000)),
        (ApiUnready, Allowance::Within(6_000)),
        (AgentTerm, Allowance::Within(6_000)),
        (AgentRestart, Allowance::Within(6_000)),
        (AgentKill, Allowance::Within(8_000)),
        (LinkCut, Allowance::Within(8_000)),
        (MachineReplace, Allowance::Within(8_000)),
        (Partition, Allowance::Within(10_000)),
        (PartitionOneWay, Allowance::Within(10_000)),
        (EtcdLeaderKill, Allowance::Within(10_000)),
        (CpuStarve, Allowance::Within(10_000)),
        (EtcdReplace, Allowance::Within(10_000)),
        (LinkFlap, Allowance::UntilEnd),
        (PacketLoss, Allowance::UntilEnd),
        (Delay, Allowance::UntilEnd),
        (ClockStep, Allowance::OffPath),
    ] {
        assert_eq!(allowance(k, false), want, "{k:?}");
    }
    // What the front LB routes around: tighter than a VIP move; what it never sees: off
    // the path; what degrades the path itself: until the fault ends.
    assert_eq!(
        allowance(FaultKind::ApiKill, true),
        Allowance::Within(4_000)
    );
    assert_eq!(
        allowance(FaultKind::LinkCut, true),
        Allowance::Within(6_000)
    );
    assert_eq!(allowance(FaultKind::Delay, true), Allowance::UntilEnd);
    for k in [
        FaultKind::AgentKill,
        FaultKind::AgentTerm,
        FaultKind::AgentRestart,
        FaultKind::CpuStarve,
        FaultKind::Partition,
        FaultKind::PartitionOneWay,
        FaultKind::EtcdLeaderKill,
        FaultKind::ClockStep,
    ] {
        assert_eq!(allowance(k, true), Allowance::OffPath, "{k:?}");
        assert!(!explains(k, true), "{k:?}");
    }
    // A clock step is off the path through the VIP too: one rule for both modes.
    assert_eq!(allowance(FaultKind::ClockStep, false), Allowance::OffPath);
    assert!(!explains(FaultKind::ClockStep, false));
    assert!(explains(FaultKind::AgentKill, false));
}

#[test]
fn through_a_front_lb_an_outage_during_an_agent_kill_is_unexplained() {
    // The VIP's holder losing its agent costs a client of the VIP a move (8 s allowed);
    // a client of the front LB nothing at all.
    let mut h = clean();
    fail(&mut h, 20_000, 22_000);
    h.faults
        .push(fault(3, FaultKind::AgentKill, 19_900, 25_000));
    assert!(check(&h, &Bounds::default()).violations.is_empty());
    let mut h = History {
        front_lb: Some("cpe lb".into()),
        ..h
    };
    let r = check(&h, &Bounds::default());
    assert_eq!(rules(&r), ["explained outages"], "{:?}", r.violations);
    assert!(
        r.violations[0]
            .message
            .contains("no fault on the client's path in progress (agent-kill #3 not on it: the client goes through cpe lb)"),
        "{}",
        r.violations[0].message
    );
    // An API server killed meanwhile explains it, alone: with its own bound (4 s from its
    // start), not the lenient "several faults together" one.
    h.faults.push(fault(4, FaultKind::ApiKill, 19_950, 30_000));
    assert!(check(&h, &Bounds::default()).violations.is_empty());
    fail(&mut h, 22_000, 24_500);
    let r = check(&h, &Bounds::default());
    assert_eq!(rules(&r), ["bounded outages"], "{:?}", r.violations);
    assert!(
        r.violations[0]
            .message
            .contains("api-kill #4 alone: 4000 ms"),
        "{}",
        r.violations[0].message
    );
    // Through the VIP the same history is two faults together, within 5 s of their end.
    h.front_lb = None;
    assert!(check(&h, &Bounds::default()).violations.is_empty());
}

#[test]
fn an_off_path_fault_starting_during_an_outage_does_not_prolong_it() {
    let mut h = fronted();
    fail(&mut h, 20_000, 26_000);
    h.faults.push(fault(1, FaultKind::ApiKill, 19_900, 21_000));
    // Started during the outage: allowed until 31 s through the VIP; through the LB it
    // changes nothing, so the outage (to 26 s) outlasts the api-kill's 4 s.
    h.faults
        .push(fault(2, FaultKind::Partition, 22_000, 30_000));
    let r = check(&h, &Bounds::default());
    assert_eq!(rules(&r), ["bounded outages"], "{:?}", r.violations);
    assert!(
        !r.violations[0].message.contains("prolonged"),
        "{}",
        r.violations[0].message
    );
}

#[test]
fn the_front_lb_is_judged_for_leaks_only_while_no_machine_has_a_fault() {
    let mut h = fronted();
    let sample = |t, fds| ResourceSample {
        t,
        process: "front cpe lb".into(),
        pid: 77,
        fds,
        rss_kib: 12_000,
        threads: 3,
    };
    // A link cut on cp2: connections to it in progress (90 fds) at that sample only.
    for (t, fds) in [(0, 20), (10_000, 22), (20_000, 90), (30_000, 24)] {
        h.resources.push(sample(t, fds));
    }
    h.faults.push(FaultRecord {
        target: Some("cp2".into()),
        ..fault(1, FaultKind::LinkCut, 18_000, 21_000)
    });
    let r = check(&h, &Bounds::default());
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    // Growth that stays at a quiet sample is a leak.
    h.resources.push(sample(40_000, 95));
    let r = check(&h, &Bounds::default());
    assert_eq!(rules(&r), ["no leak"], "{:?}", r.violations);
    assert!(r.violations[0]
        .message
        .contains("front cpe lb (pid 77) leaks fds: 22"));
    assert_eq!(machine_of("agent cp2 (vrrp)"), Some("cp2"));
    assert_eq!(machine_of("front cpe lb"), None);
}

#[test]
fn a_front_lb_that_did_not_exit_0_is_left_behind() {
    let mut h = fronted();
    h.end
        .front_lb
        .push("cpe lb did not exit 0 on SIGTERM: None".into());
    let r = check(&h, &Bounds::default());
    assert_eq!(rules(&r), ["nothing left behind"]);
    assert!(
        r.violations[0]
            .message
            .contains("the front load balancer: cpe lb did not exit 0"),
        "{}",
        r.violations[0].message
    );
}

#[test]
fn a_clock_step_explains_no_outage() {
    // The real-time clock stepped 30 s while requests fail: the step may not explain it.
    let mut h = clean();
    fail(&mut h, 20_000, 23_000);
    h.faults
        .push(fault(0, FaultKind::ClockStep, 19_995, 25_000));
    let r = check(&h, &Bounds::default());
    assert_eq!(rules(&r), ["explained outages"]);
    assert!(
        r.violations[0].message.contains(
            "(clock-step #0 not on it: the client goes through the VIP; a step of the \
             real-time clock is on no path)"
        ),
        "{}",
        r.violations[0].message
    );
    // The same rule through a front LB.
    h.front_lb = Some("cpe lb".into());
    let r = check(&h, &Bounds::default());
    assert_eq!(rules(&r), ["explained outages"], "{:?}", r.violations);
    h.front_lb = None;
    // Beside a fault that explains the outage, it neither helps nor hurts; and a clock
    // step that starts during an outage does not prolong its allowance.
    h.faults.push(fault(1, FaultKind::ApiKill, 19_995, 21_000));
    assert!(check(&h, &Bounds::default()).violations.is_empty());
    let mut h = clean();
    fail(&mut h, 20_000, 30_000);
    h.faults.push(fault(0, FaultKind::ApiKill, 19_995, 21_000));
    h.faults
        .push(fault(1, FaultKind::ClockStep, 22_000, 40_000));
    let r = check(&h, &Bounds::default());
    assert_eq!(rules(&r), ["bounded outages"]);
    assert!(
        !r.violations[0].message.contains("clock-step"),
        "{}",
        r.violations[0].message
    );
}
