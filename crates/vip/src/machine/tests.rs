//! The state machine's rules, one `#[test]` each, and random walks that check the
//! safety properties after every step.

use super::*;
use Action::*;

const TTL: Duration = Duration::from_secs(2);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The health checker's transition to UP (`true`) or DOWN (`false`).
fn health(up: bool) -> Input {
    let (from, to) = match up {
        true => (HealthState::Recovering, HealthState::Up),
        false => (HealthState::Up, HealthState::Down),
    };
    Input::Health(HealthTransition {
        backend: "https://127.0.0.1:6443/readyz".into(),
        from,
        to,
        cause: cpe_health::Cause::Probe,
        detail: String::new(),
        at: Instant::now(),
    })
}

/// A machine with a fixed origin; `at(ms, input)` feeds inputs at t0 + ms.
struct H {
    m: Machine,
    t0: Instant,
}

impl H {
    fn new() -> Self {
        let t0 = Instant::now();
        H {
            m: Machine::new(Config::new(TTL), t0),
            t0,
        }
    }
    fn t(&self, n: u64) -> Instant {
        self.t0 + ms(n)
    }
    fn at(&mut self, n: u64, i: Input) -> Output {
        let now = self.t(n);
        self.m.handle(now, i)
    }
    /// Healthy, lease 7 granted (sent at `n`), campaigning.
    fn candidate(&mut self, n: u64) {
        assert_eq!(self.at(n, health(true)).actions, vec![GrantLease]);
        let sent_at = self.t(n);
        let o = self.at(
            n,
            Input::LeaseGranted {
                id: 7,
                ttl: TTL,
                sent_at,
            },
        );
        assert_eq!(o.actions, vec![Campaign { lease: 7 }]);
        assert_eq!(self.m.role(), Role::Candidate);
    }
    /// Candidate, elected and acquired at `n`.
    fn holder(&mut self, n: u64) {
        self.candidate(n);
        assert_eq!(self.at(n, Input::Elected { lease: 7 }).actions, vec![Probe]);
        assert_eq!(self.m.role(), Role::Acquiring);
        let o = self.at(n, Input::ProbeDone { foreign_mac: None });
        let until = self.t(n + 1500);
        assert_eq!(o.actions, vec![AddAddress { until }, Announce]);
        assert_eq!(self.m.role(), Role::Holder);
    }
    /// Marks the node unhealthy without the input's consequences (for a state check).
    fn healthy_off(&mut self) {
        self.m.healthy = false;
    }
    fn renew(&mut self, sent: u64, received: u64) -> Output {
        let sent_at = self.t(sent);
        self.at(
            received,
            Input::LeaseRenewed {
                id: 7,
                ttl: TTL,
                sent_at,
            },
        )
    }
}

const DROP: [Action; 2] = [RemoveAddress, RevokeLease { id: 7 }];

/// Whether an action puts the address on the interface or extends its lifetime.
fn is_add(a: &Action) -> bool {
    matches!(a, AddAddress { .. } | ExtendAddress { .. })
}

#[test]
fn unhealthy_node_asks_for_nothing() {
    let mut h = H::new();
    for n in [0, 100, 5000] {
        assert!(h.at(n, Input::Tick).actions.is_empty());
    }
    assert!(h.at(6000, health(false)).actions.is_empty());
    assert_eq!(h.m.role(), Role::Waiting);
}

/// The checker's transition is kept with its cause and detail (for `/status`), and
/// only its end state decides: any state but UP is unhealthy.
#[test]
fn health_is_the_checkers_transition_with_its_reason() {
    let mut h = H::new();
    assert!(h.m.health().is_none(), "not checked yet");
    let mut t = match health(true) {
        Input::Health(t) => t,
        _ => unreachable!(),
    };
    t.from = HealthState::Down;
    t.to = HealthState::Draining;
    t.detail = "not ready (HTTP 503)".into();
    assert!(h.at(0, Input::Health(t.clone())).actions.is_empty());
    assert!(!h.m.healthy());
    assert_eq!(h.m.health(), Some(&t));
    assert_eq!(h.at(10, health(true)).actions, vec![GrantLease]);
    assert!(h.m.healthy());
    assert_eq!(h.m.health().map(|t| t.to), Some(HealthState::Up));
}

#[test]
fn healthy_node_gets_a_lease_then_campaigns() {
    let mut h = H::new();
    let o = h.at(0, health(true));
    assert_eq!(o.actions, vec![GrantLease]);
    // No second grant while one is in flight.
    assert!(h.at(50, Input::Tick).actions.is_empty());
    let o = h.at(
        80,
        Input::LeaseGranted {
            id: 7,
            ttl: TTL,
            sent_at: h.t(60),
        },
    );
    assert_eq!(o.actions, vec![Campaign { lease: 7 }]);
    let t = o.transition.unwrap();
    assert_eq!(
        (t.from, t.to, t.reason),
        (Role::Waiting, Role::Candidate, Reason::Campaigning)
    );
    // Deadline counted from the grant's send time, minus the margin.
    assert_eq!(h.m.lease().unwrap().deadline, h.t(60) + ms(1500));
    assert!(
        h.at(100, Input::Tick).actions.is_empty(),
        "one campaign at a time"
    );
}

#[test]
fn a_lease_granted_after_health_failed_is_revoked() {
    let mut h = H::new();
    h.at(0, health(true));
    h.at(10, health(false));
    let o = h.at(
        20,
        Input::LeaseGranted {
            id: 9,
            ttl: TTL,
            sent_at: h.t(0),
        },
    );
    assert_eq!(o.actions, vec![RevokeLease { id: 9 }]);
    assert_eq!(h.m.role(), Role::Waiting);
    assert!(h.m.lease().is_none());
}

#[test]
fn elected_probes_then_adds_and_announces() {
    let mut h = H::new();
    h.candidate(0);
    let o = h.at(100, Input::Elected { lease: 7 });
    assert_eq!(o.actions, vec![Probe]);
    assert_eq!(o.transition.unwrap().reason, Reason::Elected);
    let o = h.at(200, Input::ProbeDone { foreign_mac: None });
    // With a lifetime ending at the lease deadline (granted at 0: 1500).
    assert_eq!(o.actions, vec![AddAddress { until: h.t(1500) }, Announce]);
    let t = o.transition.unwrap();
    assert_eq!(
        (t.from, t.to, t.reason),
        (Role::Acquiring, Role::Holder, Reason::Acquired)
    );
    assert_eq!(h.m.holder_since(), Some(h.t(200)));
}

#[test]
fn a_foreign_host_on_the_address_is_refused_and_named() {
    let mut h = H::new();
    h.candidate(0);
    h.at(100, Input::Elected { lease: 7 });
    let o = h.at(
        200,
        Input::ProbeDone {
            foreign_mac: Some("02:00:00:00:00:99".into()),
        },
    );
    assert_eq!(o.actions, vec![RevokeLease { id: 7 }], "never AddAddress");
    assert_eq!(
        o.transition.unwrap().reason,
        Reason::ForeignHolder("02:00:00:00:00:99".into())
    );
    assert_eq!(h.m.role(), Role::Waiting);
    assert!(h.m.waiting_for().unwrap().contains("02:00:00:00:00:99"));
    // Out of the election for the foreign back-off, then tries again.
    assert!(h.at(5199, Input::Tick).actions.is_empty());
    assert_eq!(h.at(5200, Input::Tick).actions, vec![GrantLease]);
}

#[test]
fn holder_drops_in_the_fixed_order_when_health_fails() {
    let mut h = H::new();
    h.holder(0);
    let o = h.at(300, health(false));
    assert_eq!(o.actions, DROP.to_vec());
    let t = o.transition.unwrap();
    assert_eq!(
        (t.from, t.to, t.reason),
        (Role::Holder, Role::Waiting, Reason::HealthFailed)
    );
    assert!(
        h.at(400, Input::Tick).actions.is_empty(),
        "no campaign while unhealthy"
    );
    // Healthy again: a fresh lease and campaign.
    assert_eq!(h.at(900, health(true)).actions, vec![GrantLease]);
}

#[test]
fn candidate_cancels_its_campaign_and_lease_when_health_fails() {
    let mut h = H::new();
    h.candidate(0);
    let o = h.at(100, health(false));
    assert_eq!(o.actions, vec![CancelCampaign, RevokeLease { id: 7 }]);
    assert_eq!(h.m.role(), Role::Waiting);
    // A campaign result racing the cancel does not make it holder.
    let o = h.at(110, Input::Elected { lease: 7 });
    assert_eq!(o.actions, vec![RevokeLease { id: 7 }]);
    assert_eq!(h.m.role(), Role::Waiting);
}

#[test]
fn acquiring_node_that_turns_unhealthy_never_adds_the_address() {
    let mut h = H::new();
    h.candidate(0);
    h.at(100, Input::Elected { lease: 7 });
    let o = h.at(120, health(false));
    assert_eq!(o.actions, vec![RevokeLease { id: 7 }]);
    assert!(h
        .at(150, Input::ProbeDone { foreign_mac: None })
        .actions
        .is_empty());
}

#[test]
fn holder_drops_at_the_deadline_without_hearing_from_anyone() {
    let mut h = H::new();
    h.holder(0); // lease granted, sent at 0: deadline 1500
    h.renew(500, 520); // deadline 2000
    assert!(!h.at(1999, Input::Tick).actions.contains(&RemoveAddress));
    assert_eq!(h.m.role(), Role::Holder);
    let o = h.at(2000, Input::Tick);
    // The address goes in the fixed order; the lease is kept (not revoked).
    assert_eq!(o.actions, vec![RemoveAddress]);
    let t = o.transition.unwrap();
    assert_eq!(
        (t.from, t.to, t.reason),
        (Role::Holder, Role::Suspended, Reason::LeaseDeadline)
    );
    assert!(h.m.lease().is_some());
    // Nothing more while etcd stays silent: no announcing, no re-adding, no campaign.
    for n in [2100, 3000, 9000] {
        assert!(h.at(n, Input::Tick).actions.is_empty());
    }
    assert!(h
        .at(9100, Input::Address { present: false })
        .actions
        .is_empty());
}

#[test]
fn a_suspended_holder_takes_the_vip_back_when_a_renewal_succeeds() {
    let mut h = H::new();
    h.holder(0); // deadline 1500
    h.at(1500, Input::Tick);
    assert_eq!(h.m.role(), Role::Suspended);
    // etcd answers again (a new etcd leader extended the lease): still elected.
    let o = h.renew(2600, 2620);
    assert_eq!(o.actions, vec![Probe]);
    assert_eq!(o.transition.unwrap().reason, Reason::Resumed);
    let o = h.at(2680, Input::ProbeDone { foreign_mac: None });
    assert_eq!(o.actions, vec![AddAddress { until: h.t(4100) }, Announce]);
    assert_eq!(h.m.role(), Role::Holder);
    // A renewal sent long ago (before the deadline) but answered late does not count
    // more than its send time: deadline 1000 + 1500 = 2500 < now.
    let mut h = H::new();
    h.holder(0);
    h.at(1500, Input::Tick);
    assert!(h.renew(1000, 2600).actions.is_empty());
    assert_eq!(h.m.role(), Role::Suspended);
}

#[test]
fn a_suspended_holder_gives_the_lease_up_when_etcd_or_health_say_so() {
    // etcd: the lease is gone -> a fresh one.
    let mut h = H::new();
    h.holder(0);
    h.at(1500, Input::Tick);
    let o = h.at(2600, Input::LeaseGone { id: 7 });
    assert_eq!(o.actions, vec![RevokeLease { id: 7 }, GrantLease]);
    assert_eq!(o.transition.unwrap().reason, Reason::LeaseGone);
    // etcd names another leader -> revoke, and (healthy) a fresh lease.
    let mut h = H::new();
    h.holder(0);
    h.at(1500, Input::Tick);
    let sent_at = h.t(2500);
    let o = h.at(
        2600,
        Input::LeaderSeen {
            lease: Some(9),
            sent_at,
        },
    );
    assert_eq!(o.actions, vec![RevokeLease { id: 7 }, GrantLease]);
    // Health fails -> revoke; shutdown -> revoke, exit.
    let mut h = H::new();
    h.holder(0);
    h.at(1500, Input::Tick);
    assert_eq!(
        h.at(2000, health(false)).actions,
        vec![RevokeLease { id: 7 }]
    );
    let mut h = H::new();
    h.holder(0);
    h.at(1500, Input::Tick);
    assert_eq!(
        h.at(2000, Input::Shutdown).actions,
        vec![RevokeLease { id: 7 }, Exit]
    );
    // Unhealthy while suspended never resumes.
    let mut h = H::new();
    h.holder(0);
    h.at(1500, Input::Tick);
    h.healthy_off();
    assert!(!h.renew(2600, 2620).actions.contains(&Probe));
}

#[test]
fn the_deadline_counts_from_the_send_not_the_answer() {
    let mut h = H::new();
    h.holder(0);
    // Sent at 500, answered (slowly) at 1400: deadline 500 + 2000 - 500 = 2000.
    h.renew(500, 1400);
    assert_eq!(h.m.lease().unwrap().deadline, h.t(2000));
    // An older renewal answered late never moves the deadline back.
    h.renew(300, 1450);
    assert_eq!(h.m.lease().unwrap().deadline, h.t(2000));
    // A renewal of another lease does not count.
    let sent_at = h.t(1500);
    h.at(
        1500,
        Input::LeaseRenewed {
            id: 8,
            ttl: TTL,
            sent_at,
        },
    );
    assert_eq!(h.m.lease().unwrap().deadline, h.t(2000));
}

#[test]
fn a_renewal_arriving_after_the_deadline_drops_first_then_resumes() {
    let mut h = H::new();
    h.holder(0); // deadline 1500
                 // Sent at 1000 (before the deadline), answered at 1600: the address goes at the
                 // deadline check, then the renewal proves the lease alive until 2500: probe again.
    let o = h.renew(1000, 1600);
    assert_eq!(o.actions, vec![RemoveAddress, Probe]);
    assert_eq!(h.m.role(), Role::Acquiring);
}

#[test]
fn candidate_leaves_the_election_at_the_deadline() {
    let mut h = H::new();
    h.candidate(0);
    let o = h.at(1500, Input::Tick);
    assert_eq!(o.actions, vec![CancelCampaign, RevokeLease { id: 7 }]);
    assert_eq!(o.transition.unwrap().reason, Reason::LeaseDeadline);
}

#[test]
fn elected_too_late_takes_nothing() {
    let mut h = H::new();
    h.candidate(0);
    // The campaign answer arrives after the deadline passed.
    let o = h.at(1600, Input::Elected { lease: 7 });
    assert!(!o.actions.contains(&Probe) && !o.actions.iter().any(is_add));
    assert_eq!(h.m.role(), Role::Waiting);
    // The probe answer arrives after the deadline: nothing is added; the node is
    // suspended (lease kept) until etcd answers.
    let mut h = H::new();
    h.candidate(0);
    h.at(100, Input::Elected { lease: 7 });
    let o = h.at(1500, Input::ProbeDone { foreign_mac: None });
    assert!(o.actions.is_empty(), "{:?}", o.actions);
    assert_eq!(o.transition.unwrap().reason, Reason::LeaseDeadline);
    assert_eq!(h.m.role(), Role::Suspended);
}

#[test]
fn lease_gone_drops_the_holder() {
    let mut h = H::new();
    h.holder(0);
    let o = h.at(300, Input::LeaseGone { id: 7 });
    // Still healthy: a new lease is asked for straight away, after the drop.
    assert_eq!(o.actions, [&DROP[..], &[GrantLease]].concat());
    assert_eq!(o.transition.unwrap().reason, Reason::LeaseGone);
    // A stale "gone" for an old lease changes nothing.
    let mut h = H::new();
    h.holder(0);
    assert!(!h
        .at(300, Input::LeaseGone { id: 3 })
        .actions
        .contains(&RemoveAddress));
    assert_eq!(h.m.role(), Role::Holder);
}

#[test]
fn announcements_burst_at_takeover_then_refresh() {
    let mut h = H::new();
    h.holder(0); // announced at 0
    let mut at = vec![];
    for n in (10..=25_000).step_by(10) {
        if n % 400 == 0 {
            h.renew(n, n);
        }
        if h.at(n, Input::Tick).actions.contains(&Announce) {
            at.push(n);
        }
    }
    assert_eq!(at, vec![200, 600, 1400, 11_400, 21_400]);
}

#[test]
fn a_removed_address_is_put_back_and_announced() {
    let mut h = H::new();
    h.holder(0);
    assert!(h
        .at(100, Input::Address { present: true })
        .actions
        .is_empty());
    let o = h.at(150, Input::Address { present: false });
    assert_eq!(o.actions, vec![AddAddress { until: h.t(1500) }, Announce]);
    assert_eq!(h.m.role(), Role::Holder);
    // Not a holder: an absent address is none of its business.
    let mut h = H::new();
    h.candidate(0);
    assert!(h
        .at(100, Input::Address { present: false })
        .actions
        .is_empty());
}

#[test]
fn link_flap_re_adds_and_re_announces() {
    let mut h = H::new();
    h.holder(0);
    assert!(h.at(100, Input::Link { up: false }).actions.is_empty());
    // No announcing into a down link, nor re-adding.
    assert!(h.at(200, Input::Tick).actions.is_empty());
    assert!(h
        .at(250, Input::Address { present: false })
        .actions
        .is_empty());
    let o = h.at(300, Input::Link { up: true });
    assert_eq!(o.actions, vec![AddAddress { until: h.t(1500) }, Announce]);
    // The burst restarts from the link coming back.
    assert!(h.at(499, Input::Tick).actions.is_empty());
    assert_eq!(h.at(500, Input::Tick).actions, vec![Announce]);
    // Up again while up: nothing.
    assert!(h.at(510, Input::Link { up: true }).actions.is_empty());
}

#[test]
fn shutdown_releases_everything_in_order_then_ignores_input() {
    let mut h = H::new();
    h.holder(0);
    let o = h.at(100, Input::Shutdown);
    assert_eq!(o.actions, [&DROP[..], &[Exit]].concat());
    assert_eq!(h.m.role(), Role::Stopped);
    let t = o.transition.unwrap();
    assert_eq!(
        (t.from, t.to, t.reason),
        (Role::Holder, Role::Stopped, Reason::Shutdown)
    );
    assert!(h.at(200, health(true)).actions.is_empty());
    assert!(h
        .at(200, Input::Address { present: false })
        .actions
        .is_empty());

    let mut h = H::new();
    h.candidate(0);
    let o = h.at(100, Input::Shutdown);
    assert_eq!(o.actions, vec![CancelCampaign, RevokeLease { id: 7 }, Exit]);

    let mut h = H::new();
    assert_eq!(h.at(0, Input::Shutdown).actions, vec![Exit]);

    let mut h = H::new();
    h.candidate(0);
    h.at(100, Input::Elected { lease: 7 });
    assert_eq!(
        h.at(110, Input::Shutdown).actions,
        vec![RevokeLease { id: 7 }, Exit]
    );
}

#[test]
fn grant_failures_back_off_exponentially_up_to_the_cap() {
    let mut h = H::new();
    h.at(0, health(true));
    let mut n = 0;
    let mut grants = vec![];
    let mut pending = true;
    while n < 30_000 {
        if pending {
            h.at(
                n,
                Input::LeaseGrantFailed {
                    error: "etcd unreachable".into(),
                },
            );
            pending = false;
        }
        n += 10;
        if h.at(n, Input::Tick).actions == vec![GrantLease] {
            grants.push(n);
            pending = true;
        }
    }
    let gaps: Vec<u64> = grants.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(grants[0], 200);
    assert_eq!(&gaps[..5], &[400, 800, 1600, 3200, 5000]);
    assert!(gaps[5..].iter().all(|g| *g == 5000));
    assert!(h.m.waiting_for().unwrap().contains("etcd unreachable"));
    // A granted lease resets the back-off.
    let sent_at = h.t(n);
    h.at(
        n,
        Input::LeaseGranted {
            id: 7,
            ttl: TTL,
            sent_at,
        },
    );
    assert_eq!(h.m.role(), Role::Candidate);
    assert_eq!(h.m.waiting_for(), None);
}

#[test]
fn a_failed_campaign_starts_over_with_a_fresh_lease_without_growing_delay() {
    let mut h = H::new();
    h.candidate(0);
    for (k, id) in (0..5u64).zip(7..) {
        let n = 100 + k * 300;
        let o = h.at(
            n,
            Input::CampaignFailed {
                lease: id,
                error: "member failed".into(),
            },
        );
        assert_eq!(
            o.actions,
            vec![RevokeLease { id }],
            "never the same lease again"
        );
        let t = o.transition.unwrap();
        assert_eq!(
            (t.from, t.to, t.reason),
            (Role::Candidate, Role::Waiting, Reason::CampaignFailed)
        );
        assert!(h.at(n + 199, Input::Tick).actions.is_empty());
        assert_eq!(
            h.at(n + 200, Input::Tick).actions,
            vec![GrantLease],
            "attempt {k}"
        );
        let id = id + 1;
        let sent_at = h.t(n + 200);
        let o = h.at(
            n + 210,
            Input::LeaseGranted {
                id,
                ttl: TTL,
                sent_at,
            },
        );
        assert_eq!(o.actions, vec![Campaign { lease: id }]);
    }
    // A failure report for a lease already given up changes nothing.
    assert!(h
        .at(
            2000,
            Input::CampaignFailed {
                lease: 7,
                error: "late".into()
            }
        )
        .actions
        .is_empty());
    assert_eq!(h.m.role(), Role::Candidate);
}

#[test]
fn holder_drops_when_etcd_names_another_leader() {
    let mut h = H::new();
    h.candidate(0);
    h.at(100, Input::Elected { lease: 7 });
    h.at(150, Input::ProbeDone { foreign_mac: None });
    // Asked after the election: we lead. Asked before it: stale, ignored.
    assert!(!h
        .at(
            200,
            Input::LeaderSeen {
                lease: Some(7),
                sent_at: h.t(180)
            }
        )
        .actions
        .contains(&RemoveAddress));
    assert!(!h
        .at(
            210,
            Input::LeaderSeen {
                lease: Some(3),
                sent_at: h.t(90)
            }
        )
        .actions
        .contains(&RemoveAddress));
    assert_eq!(h.m.role(), Role::Holder);
    let o = h.at(
        300,
        Input::LeaderSeen {
            lease: Some(9),
            sent_at: h.t(250),
        },
    );
    assert_eq!(&o.actions[..2], &DROP);
    assert_eq!(o.transition.unwrap().reason, Reason::LeaderElsewhere);
    // Nobody leading while we hold means the same.
    let mut h = H::new();
    h.holder(0);
    let o = h.at(
        300,
        Input::LeaderSeen {
            lease: None,
            sent_at: h.t(250),
        },
    );
    assert_eq!(&o.actions[..2], &DROP);
    // A candidate does not care who leads.
    let mut h = H::new();
    h.candidate(0);
    assert!(h
        .at(
            300,
            Input::LeaderSeen {
                lease: Some(9),
                sent_at: h.t(250)
            }
        )
        .actions
        .is_empty());
}

#[test]
fn the_address_lifetime_follows_the_lease_deadline() {
    let mut h = H::new();
    h.holder(0); // added until 1500
    let o = h.renew(500, 520);
    // (Then the takeover burst's due announcement.)
    assert_eq!(o.actions[0], ExtendAddress { until: h.t(2000) });
    assert!(!o.actions[1..].iter().any(is_add));
    // A renewal that does not move the deadline extends nothing.
    assert!(!h.renew(300, 600).actions.iter().any(is_add));
    // A candidate's renewals touch no address.
    let mut c = H::new();
    c.candidate(0);
    assert!(c.renew(500, 520).actions.is_empty());
    // Frozen from here on: the kernel removes the address by 2000 at the latest, and
    // the agent, when it runs again, removes it too and never puts it back.
    let o = h.at(9000, Input::Tick);
    assert_eq!(o.actions, vec![RemoveAddress]);
    assert_eq!(h.m.role(), Role::Suspended);
    assert!(h
        .at(9050, Input::Address { present: false })
        .actions
        .is_empty());
    // A renewal sent before the freeze, answered after it, proves nothing.
    assert!(!h.renew(1900, 9100).actions.iter().any(is_add));
}

#[test]
fn with_under_a_second_of_lease_left_the_next_renewal_adds_the_address() {
    let mut h = H::new();
    h.candidate(0); // deadline 1500
    h.at(100, Input::Elected { lease: 7 });
    // The probe ends with 900 ms left: holder, but no lifetime fits yet.
    let o = h.at(600, Input::ProbeDone { foreign_mac: None });
    assert!(o.actions.is_empty(), "{:?}", o.actions);
    assert_eq!(h.m.role(), Role::Holder);
    assert!(
        h.at(650, Input::Tick).actions.is_empty(),
        "nothing announced"
    );
    let o = h.renew(550, 620);
    assert_eq!(o.actions, vec![AddAddress { until: h.t(2050) }, Announce]);
}

#[test]
fn a_vanished_address_is_put_back_only_with_a_second_of_lease_left() {
    let mut h = H::new();
    h.holder(0); // deadline 1500
                 // Gone with 900 ms of lease left (its lifetime ran out before a renewal came):
                 // not put back now, nor announced.
    assert!(h
        .at(600, Input::Address { present: false })
        .actions
        .is_empty());
    assert!(!h.at(1400, Input::Tick).actions.contains(&Announce));
    // The next renewal proves the lease alive: the address comes back.
    let o = h.renew(1000, 1010);
    assert_eq!(o.actions, vec![AddAddress { until: h.t(2500) }, Announce]);
    // The link coming back with too little lease left adds nothing either.
    h.at(1100, Input::Link { up: false });
    assert!(h.at(1600, Input::Link { up: true }).actions.is_empty());
    assert_eq!(
        h.renew(1500, 1520).actions,
        vec![AddAddress { until: h.t(3000) }, Announce]
    );
}

#[test]
fn the_previous_holder_answering_is_waited_for_not_refused() {
    let mut h = H::new();
    h.candidate(0);
    h.at(100, Input::Elected { lease: 7 });
    let o = h.at(
        300,
        Input::PreviousHolderAnswers {
            node: "n1".into(),
            mac: "02:00:00:00:00:02".into(),
        },
    );
    assert!(o.actions.is_empty() && o.transition.is_none(), "{o:?}");
    assert_eq!(h.m.role(), Role::Acquiring, "still elected");
    assert_eq!(
        h.m.waiting_for(),
        Some("n1 (02:00:00:00:00:02) still answers for the VIP: waiting for its address lifetime to end")
    );
    assert_eq!(h.m.foreign_mac(), None, "not a stranger");
    // Probed again a lease TTL after the election (100 + 2000), the lease kept alive.
    for n in (400..2100).step_by(400) {
        h.renew(n, n);
        assert!(!h.at(n + 10, Input::Tick).actions.contains(&Probe));
    }
    assert!(h.at(2099, Input::Tick).actions.is_empty());
    assert_eq!(h.at(2100, Input::Tick).actions, vec![Probe]);
    let o = h.at(2200, Input::ProbeDone { foreign_mac: None });
    assert!(o.actions.contains(&AddAddress { until: h.t(3500) }));
    assert_eq!(h.m.waiting_for(), None);
    // Not elected (or no longer): the answer changes nothing.
    let mut h = H::new();
    h.candidate(0);
    let o = h.at(
        300,
        Input::PreviousHolderAnswers {
            node: "n1".into(),
            mac: "02:00:00:00:00:02".into(),
        },
    );
    assert!(o.actions.is_empty());
    assert!(h.at(2500, Input::Tick).actions.iter().all(|a| *a != Probe));
}

/// Renewals stall (an etcd election): the address's whole-second lifetime is topped
/// up once, just over a second before the deadline, so that it ends near the deadline
/// (1.4 s after the last renewal at TTL 2 s) instead of a second after the renewal.
#[test]
fn the_lifetime_is_topped_up_to_end_near_the_deadline_when_renewals_stall() {
    let mut h = H::new();
    h.holder(0); // deadline 1500; the kernel's lifetime: 1 s, so gone at 1000
    let ext = |o: &Output| {
        o.actions
            .iter()
            .filter(|a| is_add(a))
            .cloned()
            .collect::<Vec<_>>()
    };
    for n in (50..=350).step_by(50) {
        assert!(ext(&h.at(n, Input::Tick)).is_empty(), "at {n}");
    }
    // 1.1 s before the deadline: a 1 s lifetime now ends at 1400, before 1500.
    assert_eq!(
        ext(&h.at(400, Input::Tick)),
        vec![ExtendAddress { until: h.t(1500) }]
    );
    for n in [450, 500] {
        assert!(ext(&h.at(n, Input::Tick)).is_empty(), "once only (at {n})");
    }
    // Renewals resume: the usual extension, then the top-up of the next period.
    assert_eq!(
        ext(&h.renew(600, 610)),
        vec![ExtendAddress { until: h.t(2100) }]
    );
    assert!(ext(&h.at(950, Input::Tick)).is_empty());
    assert_eq!(
        ext(&h.at(1000, Input::Tick)),
        vec![ExtendAddress { until: h.t(2100) }]
    );
    // Never with less than a second left, never past the deadline: the deadline
    // still drops the address.
    assert!(ext(&h.at(1200, Input::Tick)).is_empty());
    assert_eq!(h.at(2100, Input::Tick).actions, vec![RemoveAddress]);
}

/// The view of the election: (node, lease, healthy, me), oldest first.
fn peers(queue: &[(&str, i64, bool, bool)], prefer: Option<&str>) -> Input {
    Input::Peers(PeerInfo {
        queue: queue
            .iter()
            .map(|(n, l, h, me)| crate::peers::Candidate {
                node: n.to_string(),
                lease: *l,
                healthy: *h,
                me: *me,
            })
            .collect(),
        prefer: prefer.map(str::to_string),
        health: Vec::new(),
    })
}

#[test]
fn an_unhealthy_holder_keeps_the_vip_while_no_other_candidate_is_healthy() {
    let mut h = H::new();
    h.holder(0);
    let view = [("cp1", 7, true, true), ("cp2", 8, false, false)];
    h.at(100, peers(&view, None));
    let o = h.at(200, health(false));
    assert!(
        !o.actions.contains(&RemoveAddress),
        "fail open: {:?}",
        o.actions
    );
    assert_eq!(h.m.role(), Role::Holder);
    assert!(h.m.fail_open());
    // The lease rules are unchanged: renewals extend the address, the deadline holds.
    h.at(450, peers(&view, None));
    assert!(h.renew(500, 520).actions.iter().any(is_add));
    // Another candidate turns healthy: hand over at once.
    let o = h.at(
        600,
        peers(&[("cp1", 7, false, true), ("cp2", 8, true, false)], None),
    );
    assert_eq!(o.actions, DROP);
    assert_eq!(o.transition.unwrap().reason, Reason::YieldTo("cp2".into()));
    assert!(!h.m.fail_open());
    // Unhealthy, with a healthy candidate: it does not come back.
    h.at(650, peers(&[("cp2", 8, true, false)], None));
    assert!(h.at(700, Input::Tick).actions.is_empty());
}

#[test]
fn without_a_fresh_view_an_unhealthy_holder_drops_as_before() {
    let mut h = H::new();
    h.holder(0);
    h.at(100, peers(&[("cp1", 7, true, true)], None));
    // The view is 1.1 s old: no evidence that nobody else is healthy.
    h.renew(900, 910);
    let o = h.at(1200, health(false));
    assert_eq!(o.actions, DROP);
    assert_eq!(o.transition.unwrap().reason, Reason::HealthFailed);
    // Failing open, then the view goes stale (etcd unreadable): drop.
    let mut h = H::new();
    h.holder(0);
    h.at(100, peers(&[("cp1", 7, true, true)], None));
    assert!(!h.at(150, health(false)).actions.contains(&RemoveAddress));
    assert!(!h.at(1050, Input::Tick).actions.contains(&RemoveAddress));
    assert_eq!(h.at(1100, Input::Tick).actions, DROP);
}

#[test]
fn when_nobody_is_healthy_and_nobody_holds_the_first_node_still_takes_the_vip() {
    let mut h = H::new();
    // Not checked yet: an empty election is no reason to campaign.
    assert!(h.at(0, peers(&[], None)).actions.is_empty());
    // Checked and unhealthy, without a view: stay out.
    let mut h = H::new();
    assert!(h.at(10, health(false)).actions.is_empty());
    // Checked and unhealthy, somebody holds: stay out.
    assert!(h
        .at(20, peers(&[("cp2", 8, false, false)], None))
        .actions
        .is_empty());
    // Nobody holds, nobody campaigns: join.
    assert_eq!(h.at(30, peers(&[], None)).actions, vec![GrantLease]);
    let o = h.at(
        40,
        Input::LeaseGranted {
            id: 7,
            ttl: TTL,
            sent_at: h.t(30),
        },
    );
    assert_eq!(o.actions, vec![Campaign { lease: 7 }]);
    h.at(50, peers(&[("cp1", 7, false, true)], None));
    assert_eq!(h.at(60, Input::Elected { lease: 7 }).actions, vec![Probe]);
    let o = h.at(70, Input::ProbeDone { foreign_mac: None });
    assert_eq!(o.actions, vec![AddAddress { until: h.t(1530) }, Announce]);
    assert!(h.m.fail_open());
}

#[test]
fn an_unhealthy_node_elected_while_another_is_healthy_takes_nothing() {
    let mut h = H::new();
    h.candidate(0);
    h.at(
        10,
        peers(&[("cp1", 7, true, true), ("cp2", 8, true, false)], None),
    );
    // Turning unhealthy with a healthy candidate behind: leave the election.
    let o = h.at(20, health(false));
    assert_eq!(o.actions, vec![CancelCampaign, RevokeLease { id: 7 }]);
    assert_eq!(o.transition.unwrap().reason, Reason::HealthFailed);
}

#[test]
fn a_handover_waits_until_its_target_is_next_then_drops() {
    let mut h = H::new();
    h.holder(0);
    let behind = [
        ("cp1", 7, true, true),
        ("cp2", 8, true, false),
        ("cp3", 9, true, false),
    ];
    h.at(50, peers(&behind, None));
    let o = h.at(
        100,
        Input::Handover {
            to: Some("cp3".into()),
            hold_off: None,
        },
    );
    assert_eq!(o.actions, vec![PublishPreference { to: "cp3".into() }]);
    assert!(h.at(150, peers(&behind, Some("cp3"))).actions.is_empty());
    let next = [
        ("cp1", 7, true, true),
        ("cp3", 9, true, false),
        ("cp2", 10, true, false),
    ];
    let o = h.at(200, peers(&next, Some("cp3")));
    // No hold-off with --prefer: back in the election at once, behind cp3.
    assert_eq!(o.actions, [&DROP[..], &[GrantLease]].concat());
    assert_eq!(o.transition.unwrap().reason, Reason::YieldTo("cp3".into()));
}

#[test]
fn resign_hands_over_to_the_first_healthy_candidate_then_holds_off() {
    let mut h = H::new();
    h.holder(0);
    let view = [
        ("cp1", 7, true, true),
        ("cp2", 8, false, false),
        ("cp3", 9, true, false),
    ];
    h.at(50, peers(&view, None));
    let o = h.at(
        100,
        Input::Handover {
            to: None,
            hold_off: Some(Duration::from_secs(30)),
        },
    );
    // cp2 is unhealthy: the target is cp3, which is not next yet.
    assert_eq!(o.actions, vec![PublishPreference { to: "cp3".into() }]);
    let o = h.at(
        200,
        peers(
            &[
                ("cp1", 7, true, true),
                ("cp3", 9, true, false),
                ("cp2", 10, false, false),
            ],
            Some("cp3"),
        ),
    );
    assert_eq!(o.actions, DROP);
    assert!(h.at(1000, Input::Tick).actions.is_empty(), "held off");
    assert!(h.at(30_100, Input::Tick).actions.is_empty());
    assert_eq!(h.at(30_200, Input::Tick).actions, vec![GrantLease]);
    // With no healthy candidate, resign gives up after the timeout and keeps the VIP.
    let mut h = H::new();
    h.holder(0);
    h.at(50, peers(&[("cp1", 7, true, true)], None));
    let o = h.at(
        100,
        Input::Handover {
            to: None,
            hold_off: Some(Duration::from_secs(30)),
        },
    );
    assert!(o.actions.is_empty());
    h.renew(500, 510);
    h.at(600, peers(&[("cp1", 7, true, true)], None));
    assert!(h.m.handover().is_some());
    h.renew(1000, 1010);
    h.at(1100, peers(&[("cp1", 7, true, true)], None));
    // (the timeout is 10 s; shorten the walk by moving the request's start)
    h.m.handover.as_mut().unwrap().since = h.t(1100) - Duration::from_secs(10);
    assert!(h
        .at(1150, peers(&[("cp1", 7, true, true)], None))
        .actions
        .is_empty());
    assert!(h.m.handover().is_none());
    assert_eq!(h.m.role(), Role::Holder);
}

#[test]
fn a_candidate_ahead_of_the_preferred_node_steps_aside_and_joins_again() {
    let mut h = H::new();
    h.candidate(0);
    let view = [
        ("cp1", 1, true, false),
        ("me", 7, true, true),
        ("cp3", 9, true, false),
    ];
    let o = h.at(100, peers(&view, Some("cp3")));
    assert_eq!(
        o.actions,
        vec![CancelCampaign, RevokeLease { id: 7 }, GrantLease]
    );
    assert_eq!(
        o.transition.unwrap().reason,
        Reason::StepAside("cp3".into())
    );
}

/// A tiny deterministic generator so the random walk below needs no crate.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Random walks through every input in every state, checking the safety properties
/// after each step: the address is on the interface only while this node is holder
/// with a lease whose deadline has not passed and a passing health check; drops come in
/// the fixed order; AddAddress never comes without a lease.
#[test]
fn random_walks_never_hold_the_address_without_a_live_lease() {
    for seed in 1..=3000u64 {
        let mut r = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let t0 = Instant::now();
        let mut m = Machine::new(Config::new(TTL), t0);
        let mut now_ms = 0u64;
        let mut address = false;
        // When the kernel removes the address (its lifetime's end).
        let mut address_until = t0;
        let mut next_id = 1i64;
        let mut granted: Vec<i64> = vec![];
        let mut probes_pending = false;
        for _ in 0..300 {
            now_ms += r.below(400);
            let now = t0 + ms(now_ms);
            let lease_id = m
                .lease()
                .map(|l| l.id)
                .or(granted.last().copied())
                .unwrap_or(0);
            if address && now >= address_until {
                address = false; // the kernel: the lifetime ran out
            }
            let input = match r.below(18) {
                17 => Input::Handover {
                    to: (r.below(2) == 0).then(|| "n2".to_string()),
                    hold_off: (r.below(2) == 0).then(|| ms(r.below(3000))),
                },
                16 => {
                    let mut queue = Vec::new();
                    for (i, node) in ["n0", "n2", "n3"].iter().enumerate() {
                        if r.below(2) == 0 {
                            let me = i == 0;
                            queue.push(crate::peers::Candidate {
                                node: node.to_string(),
                                lease: if me { lease_id } else { 100 + i as i64 },
                                healthy: r.below(2) == 0,
                                me,
                            });
                        }
                    }
                    if r.below(3) == 0 {
                        queue.reverse();
                    }
                    Input::Peers(PeerInfo {
                        queue,
                        prefer: (r.below(3) == 0).then(|| "n3".to_string()),
                        health: Vec::new(),
                    })
                }
                15 => Input::PreviousHolderAnswers {
                    node: "n1".into(),
                    mac: "02:00:00:00:00:02".into(),
                },
                14 => Input::LeaderSeen {
                    lease: (r.below(3) != 0).then_some(lease_id),
                    sent_at: now - ms(r.below(500).min(now_ms)),
                },
                0 | 1 => Input::Tick,
                2 => health(r.below(3) != 0),
                3 => {
                    next_id += 1;
                    granted.push(next_id);
                    Input::LeaseGranted {
                        id: next_id,
                        ttl: TTL,
                        sent_at: now - ms(r.below(300).min(now_ms)),
                    }
                }
                4 => Input::LeaseGrantFailed { error: "x".into() },
                5 | 6 => Input::LeaseRenewed {
                    id: lease_id,
                    ttl: TTL,
                    sent_at: now - ms(r.below(1500).min(now_ms)),
                },
                7 => Input::LeaseGone { id: lease_id },
                8 => Input::Elected { lease: lease_id },
                9 => Input::CampaignFailed {
                    lease: lease_id,
                    error: "x".into(),
                },
                10 => Input::ProbeDone {
                    foreign_mac: (r.below(5) == 0).then(|| "02:00:00:00:00:01".into()),
                },
                11 => Input::Address {
                    present: address && r.below(4) != 0,
                },
                12 => Input::Link {
                    up: r.below(3) != 0,
                },
                _ => {
                    if r.below(20) == 0 {
                        Input::Shutdown
                    } else {
                        Input::Tick
                    }
                }
            };
            if matches!(input, Input::Address { present: false }) {
                address = false; // someone deleted it
            }
            let o = m.handle(now, input.clone());
            // Fixed drop order inside one output, and no announcement after the
            // address is removed.
            let pos = |a: &Action| o.actions.iter().position(|x| x == a);
            if let Some(rm) = pos(&RemoveAddress) {
                assert!(
                    !o.actions[rm..].contains(&Announce),
                    "seed {seed}: announced after removing: {:?}",
                    o.actions
                );
                if let Some(rv) = o
                    .actions
                    .iter()
                    .position(|a| matches!(a, RevokeLease { .. }))
                {
                    assert!(rm < rv, "seed {seed}: {:?}", o.actions);
                }
            }
            if o.actions.contains(&Announce) {
                assert_eq!(
                    m.role(),
                    Role::Holder,
                    "seed {seed}: announced while not holding"
                );
            }
            for a in &o.actions {
                match a {
                    AddAddress { until } | ExtendAddress { until } => {
                        // The address never outlives the lease: its lifetime ends at
                        // the deadline at the latest, and it is (re)added only with
                        // at least a second of lease left, never after the deadline.
                        let l = m.lease().unwrap_or_else(|| {
                            panic!("seed {seed}: {a:?} without a lease after {input:?}")
                        });
                        assert!(
                            *until <= l.deadline,
                            "seed {seed}: lifetime past the deadline: {a:?}, {l:?}"
                        );
                        assert!(
                            *until >= now + Duration::from_secs(1),
                            "seed {seed}: {a:?} with under a second of lease left at {now_ms} ms"
                        );
                        address = true;
                        address_until = *until;
                    }
                    RemoveAddress => address = false,
                    Probe => probes_pending = true,
                    _ => {}
                }
            }
            if address {
                let l = m.lease().unwrap_or_else(|| {
                    panic!("seed {seed}: address without lease after {input:?}")
                });
                assert!(
                    address_until <= l.deadline,
                    "seed {seed}: the address outlives the lease after {input:?}"
                );
                assert!(
                    now < l.deadline,
                    "seed {seed}: address past the deadline after {input:?}"
                );
                assert_eq!(m.role(), Role::Holder, "seed {seed}: after {input:?}");
                // Unhealthy only when failing open: a fresh view shows no other
                // healthy candidate.
                assert!(
                    m.healthy() || !m.others_healthy(now),
                    "seed {seed}: unhealthy holder with a healthy candidate after {input:?}"
                );
            }
            if m.role() == Role::Stopped {
                assert!(!address, "seed {seed}: stopped with the address");
                assert_eq!(o.actions.last(), Some(&Exit));
                break;
            }
        }
        let _ = probes_pending;
    }
}
