//! The holder's decisions as a pure state machine: inputs are time, health and lease,
//! election, probe and interface events; outputs are actions for the driver, in order.
//! It never reads the clock, opens a socket or talks to etcd, so every rule below is
//! covered by plain `#[test]`s.
//!
//! # The rules (issue #4, points 3-6)
//!
//! - Campaign only while healthy, and only with a lease: `Waiting → Candidate` needs a
//!   passing health check and a granted lease. Unhealthy while campaigning: cancel the
//!   campaign and revoke the lease (which deletes our key at once).
//! - The lease deadline is counted from when the last successful renewal was *sent*:
//!   `deadline = sent_at + TTL − margin`. etcd restarts its TTL when its leader handles the
//!   request, which is after we sent it, so our deadline is never later than etcd's expiry.
//!   When `now ≥ deadline` the lease is treated as lost, whether or not etcd is reachable.
//! - The VIP is added only after the election is won with a lease that is still
//!   certainly alive, and only after a probe found no foreign host answering for it.
//! - Dropping is always `RemoveAddress, RevokeLease`, in that order, so the address is
//!   gone before any other machine can be elected. Announcements stop in the same step:
//!   they are `Announce` actions this machine schedules only while holding, and leaving
//!   `Holder` clears the schedule, so no announcement follows the removal.
//! - A holder puts the address back and announces again when it disappears from the
//!   interface or when the link comes back up.
//!
//! # The kernel's part (issue #16)
//!
//! - The address is added with a lifetime that ends no later than the lease deadline:
//!   `AddAddress { until }` and `ExtendAddress { until }` carry the deadline, and the
//!   driver turns it into the longest whole-second lifetime ending by then. The kernel
//!   removes the address when it runs out, so a frozen, starved or killed agent loses it
//!   at the deadline without running an instruction.
//! - Every renewal that moves the deadline extends the lifetime (`ExtendAddress`). The
//!   kernel's whole seconds, rounded down, would make the address end up to a second
//!   before the deadline (1 s after a renewal at TTL 2 s, against a deadline at 1.5 s):
//!   once the deadline is just over a second away, the lifetime is topped up to end near
//!   the deadline itself, so stalled renewals (an etcd election) cost the address no
//!   earlier than the lease requires (issue #11, item 5: what does help).
//! - The address is added, extended or put back only while at least
//!   [`Config::min_lifetime`] (1 s, the shortest lifetime the kernel takes) of lease is
//!   left. With less, a holder waits for the next renewal to add it: it never re-adds an
//!   address whose lifetime ran out while the lease is not known to be alive.
//! - A takeover probe answered by the previous holder (its MAC, published with its
//!   election value) is not a stranger: the node stays elected and probes again once the
//!   previous holder's lifetime must have ended (at most a lease TTL after the election),
//!   instead of refusing the address and backing off.
//!
//! # Fail open, and planned moves (issue #11)
//!
//! - Each agent publishes its health beside the election ([`crate::peers`]); the driver
//!   reads every agent's back with the election's queue and feeds it as [`Input::Peers`].
//!   A view older than [`Config::peers_fresh`] is no view.
//! - An unhealthy node stays in the election (and a holder keeps the VIP) only while a
//!   fresh view shows no other healthy candidate: *fail open*. Without a fresh view it
//!   behaves as before (unhealthy: out). A node that is not healthy joins the election only
//!   when a fresh view shows nobody in it (nobody holds, nobody campaigns), so the first
//!   one still takes the VIP when every API server fails.
//! - None of this adds a way onto the interface: the address is still added only by
//!   `Acquiring → Holder` with a lease whose deadline has not passed, and removed at the
//!   deadline whatever the health. Fail open only changes *who* campaigns and *when a
//!   holder resigns*, never the deadline rule, so "never two holders" holds as before.
//! - A handover ([`Input::Handover`]: `cpe status --resign` / `--prefer`) publishes its
//!   target ([`Action::PublishPreference`]); candidates queued ahead of that target step
//!   aside (leave and join again at the end); the holder drops, in the usual order, once
//!   the target is healthy and next in the queue, so etcd elects exactly that node. After
//!   `--resign` it stays out of the election for the hold-off.

use crate::peers::PeerInfo;
use cpe_health::{State as HealthState, Transition as HealthTransition};
use std::fmt;
use std::time::Duration;
use tokio::time::Instant;

/// Timing knobs. [`Config::new`] derives sane values from the lease TTL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Taken off the TTL when computing the holder's deadline: covers clock-rate
    /// differences and the time to drop the address.
    pub safety_margin: Duration,
    /// Delays after takeover at which the address is announced (first one immediately).
    pub announce_burst: Vec<Duration>,
    /// Announcement refresh once the burst is over.
    pub announce_refresh: Duration,
    /// First and longest wait before retrying a failed grant or campaign.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// How long to stay out of the election after a foreign host was found on the VIP.
    pub foreign_backoff: Duration,
    /// The shortest address lifetime: with less lease left, the address is not added,
    /// extended or put back (the kernel takes whole seconds, at least one).
    pub min_lifetime: Duration,
    /// How old a view of the other agents' health may be and still count.
    pub peers_fresh: Duration,
    /// How long `--resign` waits for a healthy candidate before giving up.
    pub resign_timeout: Duration,
    /// The lifetime top-up ([`Machine`]'s `top_up`) happens while the deadline is between
    /// `min_lifetime + top_up_slack` and that plus `top_up_window` away (wider than the
    /// driver's 50 ms tick; the slack covers the time until the driver's netlink call).
    pub top_up_window: Duration,
    pub top_up_slack: Duration,
}

impl Config {
    pub fn new(lease_ttl: Duration) -> Self {
        Config {
            safety_margin: (lease_ttl / 4).min(Duration::from_millis(500)),
            announce_burst: vec![
                Duration::ZERO,
                Duration::from_millis(200),
                Duration::from_millis(600),
                Duration::from_millis(1400),
            ],
            announce_refresh: Duration::from_secs(10),
            backoff_min: Duration::from_millis(200),
            backoff_max: Duration::from_secs(5),
            foreign_backoff: Duration::from_secs(5),
            min_lifetime: Duration::from_secs(1),
            peers_fresh: Duration::from_secs(1),
            resign_timeout: Duration::from_secs(10),
            top_up_window: Duration::from_millis(100),
            top_up_slack: Duration::from_millis(20),
        }
    }
}

/// Where this node stands, in the order a node climbs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Not campaigning: unhealthy, no lease yet (etcd unreachable?), or backing off.
    Waiting,
    /// Healthy, lease held, campaign in flight: elected as soon as the holder goes.
    Candidate,
    /// Was holder; the lease deadline passed without a renewal, so the VIP is dropped, but
    /// the lease (and with it the election key) is kept: if a renewal succeeds after all
    /// (etcd was electing a leader), this node still leads and takes the VIP back at once.
    Suspended,
    /// Elected; probing that no foreign host answers for the address before adding it.
    Acquiring,
    /// Holds the VIP: address on the interface, announced.
    Holder,
    /// Shut down; nothing held.
    Stopped,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Waiting => "waiting",
            Role::Candidate => "candidate",
            Role::Suspended => "suspended",
            Role::Acquiring => "acquiring",
            Role::Holder => "holder",
            Role::Stopped => "stopped",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str().to_uppercase())
    }
}

/// Why the role changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// Healthy and a lease was granted: campaigning.
    Campaigning,
    /// The campaign returned: this node leads.
    Elected,
    /// The probe found nobody else on the address: it is ours now.
    Acquired,
    HealthFailed,
    /// No renewal succeeded in time (cannot reach the etcd majority?).
    LeaseDeadline,
    /// etcd says the lease no longer exists.
    LeaseGone,
    /// A host outside the cluster answers for the VIP (its MAC).
    ForeignHolder(String),
    /// Elected, but the lease or health was no longer good enough to take the address.
    ElectedTooLate,
    /// A renewal succeeded after the deadline had passed: still elected, take the VIP back.
    Resumed,
    /// A campaign request failed (an etcd member went away): a fresh lease, a new campaign.
    CampaignFailed,
    /// etcd names another leader while this node holds: our key is gone.
    LeaderElsewhere,
    /// Handed over to this node: it is healthy and next in the election (a planned move,
    /// or this node is unhealthy and that one is not).
    YieldTo(String),
    /// Left the queue to join again behind the node the holder hands over to.
    StepAside(String),
    Shutdown,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Campaigning => f.write_str("healthy with a lease: campaigning"),
            Reason::Elected => f.write_str("elected"),
            Reason::Acquired => f.write_str("elected and no other host answers for the address"),
            Reason::HealthFailed => f.write_str("health check failed"),
            Reason::LeaseDeadline => {
                f.write_str("lease not renewed before its deadline (etcd majority unreachable?)")
            }
            Reason::LeaseGone => f.write_str("etcd says the lease is gone"),
            Reason::ForeignHolder(mac) => write!(
                f,
                "a host outside the cluster answers for the address (MAC {mac}): refusing it"
            ),
            Reason::ElectedTooLate => {
                f.write_str("elected, but the lease or health check had already lapsed")
            }
            Reason::Resumed => f.write_str(
                "the lease was renewed after all (etcd answered again): still elected, taking the address back",
            ),
            Reason::CampaignFailed => {
                f.write_str("campaign failed: starting over with a fresh lease")
            }
            Reason::LeaderElsewhere => {
                f.write_str("etcd names another leader (our election key is gone)")
            }
            Reason::YieldTo(n) => {
                write!(f, "handed the VIP over to {n}, a healthy candidate")
            }
            Reason::StepAside(n) => write!(
                f,
                "stepped aside in the election so that {n} is elected next (the holder hands over to it)"
            ),
            Reason::Shutdown => f.write_str("shutting down"),
        }
    }
}

impl Reason {
    /// A short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Reason::Campaigning => "campaigning",
            Reason::Elected => "elected",
            Reason::Acquired => "acquired",
            Reason::HealthFailed => "health_failed",
            Reason::LeaseDeadline => "lease_deadline",
            Reason::LeaseGone => "lease_gone",
            Reason::ForeignHolder(_) => "foreign_holder",
            Reason::ElectedTooLate => "elected_too_late",
            Reason::Resumed => "resumed",
            Reason::CampaignFailed => "campaign_failed",
            Reason::LeaderElsewhere => "leader_elsewhere",
            Reason::YieldTo(_) => "handed_over",
            Reason::StepAside(_) => "step_aside",
            Reason::Shutdown => "shutdown",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub at: Instant,
    pub from: Role,
    pub to: Role,
    pub reason: Reason,
}

/// What the driver observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Time passed (the driver ticks every few tens of milliseconds).
    Tick,
    /// The health checker's state changed (rise/fall already applied), with its cause and
    /// what was seen: healthy when it is now `UP`.
    Health(HealthTransition),
    LeaseGranted {
        id: i64,
        ttl: Duration,
        sent_at: Instant,
    },
    LeaseGrantFailed {
        error: String,
    },
    /// A keep-alive sent at `sent_at` succeeded.
    LeaseRenewed {
        id: i64,
        ttl: Duration,
        sent_at: Instant,
    },
    /// A keep-alive answered that the lease does not exist.
    LeaseGone {
        id: i64,
    },
    /// The campaign with this lease returned: elected.
    Elected {
        lease: i64,
    },
    CampaignFailed {
        lease: i64,
        error: String,
    },
    /// etcd named the leader's lease (`None`: nobody leads) for a question sent at `sent_at`.
    LeaderSeen {
        lease: Option<i64>,
        sent_at: Instant,
    },
    /// The probe for a foreign host answering for the address finished (`Some`: the MAC
    /// of a host outside the cluster that answered).
    ProbeDone {
        foreign_mac: Option<String>,
    },
    /// The probe was answered by the previous holder (its MAC is the one it published
    /// with its election value): its address lifetime has not run out yet.
    PreviousHolderAnswers {
        node: String,
        mac: String,
    },
    /// Whether the VIP is on the interface now.
    Address {
        present: bool,
    },
    /// Whether the interface is up (operationally) now.
    Link {
        up: bool,
    },
    /// The other agents' health and the election's queue, as just read.
    Peers(PeerInfo),
    /// The operator asks the holder to hand the VIP over: to `to` once it is healthy and
    /// campaigning (`--prefer`), or to the healthiest candidate (`to: None`, `--resign`),
    /// then to stay out of the election for `hold_off`.
    Handover {
        to: Option<String>,
        hold_off: Option<Duration>,
    },
    Shutdown,
}

/// What the driver must do, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    GrantLease,
    Campaign {
        lease: i64,
    },
    CancelCampaign,
    /// Ask the segment whether anyone answers for the address.
    Probe,
    /// Put the address on the interface with a lifetime ending no later than `until` (the
    /// lease deadline); the driver adds nothing when less than a second is left by then.
    AddAddress {
        until: Instant,
    },
    /// Extend the address's lifetime to end no later than `until` (a renewal moved the
    /// deadline). The kernel re-creates the address if it is gone.
    ExtendAddress {
        until: Instant,
    },
    /// One announcement (gratuitous ARP / unsolicited NA).
    Announce,
    RemoveAddress,
    RevokeLease {
        id: i64,
    },
    /// Publish (under this node's lease) the node the holder hands over to, so that the
    /// candidates queued ahead of it step aside.
    PublishPreference {
        to: String,
    },
    /// Everything is released; the process may exit.
    Exit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseState {
    pub id: i64,
    pub ttl: Duration,
    /// The moment after which the lease may be gone.
    pub deadline: Instant,
}

#[derive(Debug, Clone)]
pub struct Machine {
    cfg: Config,
    role: Role,
    healthy: bool,
    /// The health checker's last transition (`None`: not checked yet).
    health: Option<HealthTransition>,
    lease: Option<LeaseState>,
    granting: bool,
    campaigning: bool,
    /// Earliest time for the next grant or campaign attempt (backoff).
    next_attempt: Option<Instant>,
    backoff: Duration,
    /// Why the node is waiting, when it is not just unhealthy.
    waiting_for: Option<String>,
    /// When the holder became one.
    holder_since: Option<Instant>,
    /// When the current election was won (leader answers asked before it are stale).
    elected_at: Option<Instant>,
    announce_idx: usize,
    burst_start: Instant,
    next_announce: Option<Instant>,
    link_up: bool,
    last_transition: Option<Transition>,
    foreign_mac: Option<String>,
    /// A holder that wants the address but had less than [`Config::min_lifetime`] of lease
    /// left: it adds the address at the next renewal.
    address_pending: bool,
    /// When an acquiring node probes again after the previous holder answered.
    reprobe_at: Option<Instant>,
    /// The last view of the other agents, and when it was read.
    peers: Option<(Instant, PeerInfo)>,
    /// A handover the operator asked the holder for.
    handover: Option<Handover>,
    /// The preference published for the current handover.
    published_preference: Option<String>,
    /// No campaigning before this (after `--resign`).
    hold_off_until: Option<Instant>,
    /// When the kernel removes the address as last added or extended (its whole-second
    /// lifetime from that moment), while holder.
    address_expires: Option<Instant>,
}

/// A planned move in progress (only while holder).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handover {
    /// `None`: the healthiest candidate (`--resign`).
    pub to: Option<String>,
    pub hold_off: Option<Duration>,
    pub since: Instant,
}

/// The result of one input.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    pub actions: Vec<Action>,
    pub transition: Option<Transition>,
}

impl Machine {
    /// A machine that starts waiting (unhealthy until told otherwise) at `now`.
    pub fn new(cfg: Config, now: Instant) -> Self {
        let backoff = cfg.backoff_min;
        Machine {
            cfg,
            role: Role::Waiting,
            healthy: false,
            health: None,
            lease: None,
            granting: false,
            campaigning: false,
            next_attempt: None,
            backoff,
            waiting_for: None,
            holder_since: None,
            elected_at: None,
            announce_idx: 0,
            burst_start: now,
            next_announce: None,
            link_up: true,
            last_transition: None,
            foreign_mac: None,
            address_pending: false,
            reprobe_at: None,
            peers: None,
            handover: None,
            published_preference: None,
            hold_off_until: None,
            address_expires: None,
        }
    }

    pub fn role(&self) -> Role {
        self.role
    }
    pub fn healthy(&self) -> bool {
        self.healthy
    }
    /// The health checker's last transition, with its cause (`None`: not checked yet).
    pub fn health(&self) -> Option<&HealthTransition> {
        self.health.as_ref()
    }
    pub fn lease(&self) -> Option<LeaseState> {
        self.lease
    }
    pub fn holder_since(&self) -> Option<Instant> {
        self.holder_since
    }
    pub fn last_transition(&self) -> Option<&Transition> {
        self.last_transition.as_ref()
    }
    /// What a waiting node waits for, for `/status` (`None` when not waiting or only
    /// unhealthy).
    pub fn waiting_for(&self) -> Option<&str> {
        self.waiting_for.as_deref()
    }
    pub fn foreign_mac(&self) -> Option<&str> {
        self.foreign_mac.as_deref()
    }
    /// Holding the VIP although unhealthy, because no other candidate is healthy.
    pub fn fail_open(&self) -> bool {
        !self.healthy && self.role == Role::Holder
    }
    /// The handover in progress, if any.
    pub fn handover(&self) -> Option<&Handover> {
        self.handover.as_ref()
    }
    /// Out of the election until then (after `--resign`).
    pub fn hold_off_until(&self) -> Option<Instant> {
        self.hold_off_until
    }

    /// The view of the other agents, if read recently enough to count.
    fn fresh_peers(&self, now: Instant) -> Option<&PeerInfo> {
        self.peers
            .as_ref()
            .filter(|(at, _)| now.saturating_duration_since(*at) < self.cfg.peers_fresh)
            .map(|(_, p)| p)
    }

    /// Another candidate is healthy — or we cannot tell (no fresh view), which counts as
    /// yes: without evidence, an unhealthy node behaves as it always did.
    fn others_healthy(&self, now: Instant) -> bool {
        self.fresh_peers(now)
            .is_none_or(|p| p.healthy_others().next().is_some())
    }

    /// May this node stay in the election (and a holder keep the VIP)? Healthy, or checked,
    /// unhealthy, and nobody else healthy (fail open).
    fn may_hold(&self, now: Instant) -> bool {
        self.healthy || (self.health.is_some() && !self.others_healthy(now))
    }

    /// May this node join the election? Healthy, or checked and nobody is in it at all.
    fn may_join(&self, now: Instant) -> bool {
        self.healthy || (self.health.is_some() && self.fresh_peers(now).is_some_and(|p| p.empty()))
    }

    /// Feeds one input observed at `now`.
    pub fn handle(&mut self, now: Instant, input: Input) -> Output {
        let mut out = Output::default();
        if self.role == Role::Stopped {
            return out;
        }
        // A lease past its deadline is dropped before anything else is considered.
        self.check_deadline(now, &mut out);
        match input {
            Input::Tick => {}
            Input::Health(t) => {
                // Whether a node that turned unhealthy leaves (or keeps the VIP, failing
                // open) is decided in `poll`, right below, for every input alike. A grant
                // in flight for a node that may not join is revoked when it arrives.
                self.healthy = t.to == HealthState::Up;
                self.health = Some(t);
            }
            Input::LeaseGranted { id, ttl, sent_at } => {
                self.granting = false;
                if !self.may_join(now) || self.lease.is_some() {
                    out.actions.push(Action::RevokeLease { id });
                } else {
                    self.lease = Some(LeaseState {
                        id,
                        ttl,
                        deadline: sent_at + ttl.saturating_sub(self.cfg.safety_margin),
                    });
                    self.backoff = self.cfg.backoff_min;
                    self.next_attempt = None;
                    self.waiting_for = None;
                }
            }
            Input::LeaseGrantFailed { error } => {
                self.granting = false;
                self.waiting_for = Some(format!("etcd: {error}"));
                self.back_off(now);
            }
            Input::LeaseRenewed { id, ttl, sent_at } => {
                if let Some(l) = self.lease.as_mut().filter(|l| l.id == id) {
                    // A renewal sent before the lease was already past its deadline
                    // cannot revive it here: the deadline check on every input below
                    // has dropped such a lease already.
                    let d = sent_at + ttl.saturating_sub(self.cfg.safety_margin);
                    let moved = d > l.deadline;
                    if moved {
                        l.deadline = d;
                    }
                    l.ttl = ttl;
                    // The kernel's lifetime follows the deadline; a holder that could not
                    // add the address (too little lease left) adds it now.
                    if self.role == Role::Holder && self.address_pending {
                        if self.link_up {
                            self.put_address(now, &mut out);
                        }
                    } else if self.role == Role::Holder && moved {
                        if let Some(until) = self.addable(now) {
                            self.address_expires = Some(lifetime_end(now, until));
                            out.actions.push(Action::ExtendAddress { until });
                        }
                    }
                }
            }
            Input::LeaseGone { id } => {
                if self.lease.is_some_and(|l| l.id == id) {
                    match self.role {
                        Role::Holder | Role::Acquiring | Role::Suspended => {
                            self.drop_all(now, Reason::LeaseGone, &mut out)
                        }
                        Role::Candidate => self.leave_election(now, Reason::LeaseGone, &mut out),
                        _ => self.lease = None,
                    }
                    self.lease = None;
                }
            }
            Input::Elected { lease } => {
                let ours = self.lease.is_some_and(|l| l.id == lease);
                if ours && self.role == Role::Candidate {
                    self.campaigning = false;
                    let alive = self.lease.is_some_and(|l| now < l.deadline);
                    if alive && self.may_hold(now) {
                        self.elected_at = Some(now);
                        self.set_role(now, Role::Acquiring, Reason::Elected, &mut out);
                        out.actions.push(Action::Probe);
                    } else {
                        self.leave_election(now, Reason::ElectedTooLate, &mut out);
                    }
                } else if !ours {
                    // A campaign with a lease we no longer hold: make sure it is gone.
                    out.actions.push(Action::RevokeLease { id: lease });
                }
            }
            Input::CampaignFailed { lease, error } => {
                if self.lease.is_some_and(|l| l.id == lease) && self.role == Role::Candidate {
                    // Never campaign again with the same lease: the abandoned request may
                    // still be pending on an unreachable member, and when it is finally
                    // cancelled there, etcd deletes the key it made — which a new
                    // campaign with the same lease would have reused (the key is named
                    // after the lease). A fresh lease means a fresh key.
                    self.campaigning = false;
                    self.leave_election(now, Reason::CampaignFailed, &mut out);
                    self.waiting_for = Some(format!("campaign: {error}"));
                    // A fixed short delay, not the growing back-off: campaigns restart
                    // whenever an etcd member fails, and a candidate must be back in
                    // the election before the holder's lease can expire.
                    self.next_attempt = Some(now + self.cfg.backoff_min);
                }
            }
            Input::LeaderSeen { lease, sent_at } => {
                // etcd's answer to "who leads", asked at `sent_at` (a linearizable read).
                // Once elected our key has the lowest revision until it is deleted, so
                // any other answer to a question asked after our election means our key
                // is gone and someone else may be elected: drop now.
                let ours = self.lease.map(|l| l.id);
                let asked_after = self.elected_at.is_some_and(|e| sent_at > e);
                if matches!(self.role, Role::Holder | Role::Acquiring | Role::Suspended)
                    && asked_after
                    && lease != ours
                {
                    self.drop_all(now, Reason::LeaderElsewhere, &mut out);
                }
            }
            Input::ProbeDone { foreign_mac } => {
                if self.role == Role::Acquiring {
                    let alive = self.lease.is_some_and(|l| now < l.deadline);
                    match foreign_mac {
                        Some(mac) => {
                            self.foreign_mac = Some(mac.clone());
                            self.leave_election(now, Reason::ForeignHolder(mac.clone()), &mut out);
                            self.next_attempt = Some(now + self.cfg.foreign_backoff);
                            self.waiting_for =
                                Some(format!("the address is held by a foreign host (MAC {mac})"));
                        }
                        None if alive && self.may_hold(now) => {
                            self.foreign_mac = None;
                            self.waiting_for = None;
                            self.set_role(now, Role::Holder, Reason::Acquired, &mut out);
                            self.holder_since = Some(now);
                            self.put_address(now, &mut out);
                        }
                        None => self.leave_election(now, Reason::ElectedTooLate, &mut out),
                    }
                }
            }
            Input::PreviousHolderAnswers { node, mac } => {
                if self.role == Role::Acquiring {
                    // Still elected: its lease ended before ours won, and its address
                    // lifetime ends no later than its lease deadline, so the address goes
                    // at most a TTL after our election (an address added with a lifetime
                    // renewed at the very moment its lease was revoked). Probe again
                    // then; an older agent without lifetimes is probed every TTL.
                    let ttl = self.lease.map_or(Duration::ZERO, |l| l.ttl);
                    let bound = self.elected_at.map_or(now, |e| e + ttl);
                    let at = if bound > now + self.cfg.backoff_min {
                        bound
                    } else {
                        now + ttl.max(self.cfg.backoff_min)
                    };
                    self.reprobe_at = Some(at);
                    self.waiting_for = Some(format!(
                        "{node} ({mac}) still answers for the VIP: waiting for its address lifetime to end"
                    ));
                }
            }
            Input::Address { present } => {
                if self.role == Role::Holder && !present && self.link_up {
                    self.put_address(now, &mut out);
                }
            }
            Input::Link { up } => {
                let was = self.link_up;
                self.link_up = up;
                if self.role == Role::Holder && up && !was {
                    self.put_address(now, &mut out);
                }
            }
            Input::Peers(p) => self.peers = Some((now, p)),
            Input::Handover { to, hold_off } => {
                if self.role == Role::Holder {
                    self.handover = Some(Handover {
                        to,
                        hold_off,
                        since: now,
                    });
                }
            }
            Input::Shutdown => {
                let from = self.role;
                match self.role {
                    Role::Holder | Role::Acquiring | Role::Suspended => {
                        self.drop_all(now, Reason::Shutdown, &mut out)
                    }
                    Role::Candidate => self.leave_election(now, Reason::Shutdown, &mut out),
                    _ => {
                        if let Some(l) = self.lease.take() {
                            out.actions.push(Action::RevokeLease { id: l.id });
                        }
                    }
                }
                self.role = from;
                self.set_role(now, Role::Stopped, Reason::Shutdown, &mut out);
                out.actions.push(Action::Exit);
                return out;
            }
        }
        self.poll(now, &mut out);
        out
    }

    /// Time-driven decisions, run after every input.
    fn poll(&mut self, now: Instant, out: &mut Output) {
        self.check_deadline(now, out);
        // An unhealthy node leaves unless it fails open (nobody else healthy).
        if matches!(
            self.role,
            Role::Holder | Role::Acquiring | Role::Suspended | Role::Candidate
        ) && !self.may_hold(now)
        {
            let reason = match self
                .fresh_peers(now)
                .and_then(|p| p.healthy_others().next())
            {
                // A holder hands over to a healthy candidate; a candidate just leaves.
                Some(c) if self.role != Role::Candidate => Reason::YieldTo(c.node.clone()),
                _ => Reason::HealthFailed,
            };
            if self.role == Role::Candidate {
                self.leave_election(now, reason, out);
            } else {
                self.drop_all(now, reason, out);
            }
        }
        if self.role == Role::Holder {
            self.poll_handover(now, out);
        }
        if self.role == Role::Candidate {
            let aside = match (self.fresh_peers(now), self.lease) {
                (Some(p), Some(l)) => p.should_step_aside(l.id).map(str::to_string),
                _ => None,
            };
            if let Some(to) = aside {
                self.leave_election(now, Reason::StepAside(to), out);
                self.next_attempt = None;
                self.waiting_for = None;
            }
        }
        let may_try = self.next_attempt.is_none_or(|t| now >= t)
            && self.hold_off_until.is_none_or(|t| now >= t);
        match self.role {
            Role::Waiting if self.may_join(now) && may_try => {
                if let Some(l) = self.lease {
                    self.campaigning = true;
                    self.next_attempt = None;
                    self.set_role(now, Role::Candidate, Reason::Campaigning, out);
                    out.actions.push(Action::Campaign { lease: l.id });
                } else if !self.granting {
                    self.granting = true;
                    out.actions.push(Action::GrantLease);
                }
            }
            Role::Suspended
                if self.may_hold(now) && self.lease.is_some_and(|l| now < l.deadline) =>
            {
                self.waiting_for = None;
                self.set_role(now, Role::Acquiring, Reason::Resumed, out);
                out.actions.push(Action::Probe);
            }
            Role::Candidate if !self.campaigning && may_try => {
                if let Some(l) = self.lease {
                    self.campaigning = true;
                    self.next_attempt = None;
                    out.actions.push(Action::Campaign { lease: l.id });
                }
            }
            Role::Acquiring if self.reprobe_at.is_some_and(|t| now >= t) => {
                self.reprobe_at = None;
                out.actions.push(Action::Probe);
            }
            Role::Holder => {
                self.top_up(now, out);
                if let Some(t) = self.next_announce {
                    if now >= t && self.link_up {
                        out.actions.push(Action::Announce);
                        self.announce_idx += 1;
                        self.next_announce =
                            Some(match self.cfg.announce_burst.get(self.announce_idx) {
                                Some(d) => self.burst_start + *d,
                                None => now + self.cfg.announce_refresh,
                            });
                    }
                }
            }
            _ => {}
        }
    }

    /// The kernel takes whole-second lifetimes, rounded down, so an address extended at a
    /// renewal ends up to a second before the lease deadline (at TTL 2 s: 1 s after the
    /// renewal, against a deadline at 1.5 s). When renewals stall (an etcd election),
    /// the address would go that much before it must. So, once, when the deadline is just
    /// over a second away, the lifetime is set to end within [`Config::top_up_window`] of
    /// the deadline itself (never after it: the same `ExtendAddress { until: deadline }`).
    fn top_up(&mut self, now: Instant, out: &mut Output) {
        let (Some(exp), Some(l)) = (self.address_expires, self.lease) else {
            return;
        };
        if self.address_pending || !self.link_up {
            return;
        }
        let left = l.deadline.saturating_duration_since(now);
        let from = self.cfg.min_lifetime + self.cfg.top_up_slack;
        if left < from || left >= from + self.cfg.top_up_window {
            return;
        }
        let new = lifetime_end(now, l.deadline);
        if new > exp + self.cfg.top_up_window {
            self.address_expires = Some(new);
            out.actions
                .push(Action::ExtendAddress { until: l.deadline });
        }
    }

    /// A holder with a handover to do: publish the target, and drop once the target is
    /// healthy and next in the election (so etcd elects exactly it).
    fn poll_handover(&mut self, now: Instant, out: &mut Output) {
        let Some(h) = self.handover.clone() else {
            return;
        };
        let target = h.to.clone().or_else(|| {
            self.fresh_peers(now)
                .and_then(|p| p.healthy_others().next())
                .map(|c| c.node.clone())
        });
        let Some(target) = target else {
            if now.saturating_duration_since(h.since) >= self.cfg.resign_timeout {
                self.handover = None;
                self.waiting_for =
                    Some("resign: no healthy candidate came forward; keeping the VIP".to_string());
            }
            return;
        };
        if self.published_preference.as_deref() != Some(target.as_str()) {
            self.published_preference = Some(target.clone());
            out.actions
                .push(Action::PublishPreference { to: target.clone() });
        }
        let next_is_target = self
            .fresh_peers(now)
            .and_then(|p| p.next_after_me())
            .is_some_and(|c| c.node == target && c.healthy);
        if next_is_target {
            self.drop_all(now, Reason::YieldTo(target), out);
            if let Some(d) = h.hold_off {
                self.hold_off_until = Some(now + d);
                self.waiting_for = Some(format!("resigned: not campaigning for {d:?}"));
            }
        }
    }

    /// The deadline first: nothing may act on a lease that may be gone.
    fn check_deadline(&mut self, now: Instant, out: &mut Output) {
        let Some(l) = self.lease else { return };
        if now < l.deadline {
            return;
        }
        match self.role {
            // Already dropped; waiting for etcd to say whether the lease lives.
            Role::Suspended => return,
            Role::Holder | Role::Acquiring => {
                // The address goes now, in the fixed order; the lease is kept (nobody can
                // be elected while it lives, and a late renewal proves we still lead).
                if self.role == Role::Holder {
                    out.actions.push(Action::RemoveAddress);
                }
                self.next_announce = None;
                self.holder_since = None;
                self.set_role(now, Role::Suspended, Reason::LeaseDeadline, out);
                self.waiting_for = Some(
                    "lease not renewed in time: VIP dropped, lease kept until etcd answers".into(),
                );
                return;
            }
            Role::Candidate => self.leave_election(now, Reason::LeaseDeadline, out),
            _ => {
                out.actions.push(Action::RevokeLease { id: l.id });
                self.lease = None;
            }
        }
        self.waiting_for = Some("lease lapsed: etcd majority unreachable?".into());
        self.back_off(now);
    }

    /// The lease deadline, when at least [`Config::min_lifetime`] of it is left: the end
    /// of a lifetime the address may be given now.
    fn addable(&self, now: Instant) -> Option<Instant> {
        self.lease
            .map(|l| l.deadline)
            .filter(|d| d.saturating_duration_since(now) >= self.cfg.min_lifetime)
    }

    /// A holder (re)puts the address and announces it, if the lease leaves it a lifetime;
    /// otherwise the next renewal does.
    fn put_address(&mut self, now: Instant, out: &mut Output) {
        match self.addable(now) {
            Some(until) => {
                self.address_pending = false;
                self.address_expires = Some(lifetime_end(now, until));
                out.actions.push(Action::AddAddress { until });
                self.start_burst(now, out);
            }
            None => {
                // No announcing an address that is not there.
                self.address_pending = true;
                self.next_announce = None;
            }
        }
    }

    fn start_burst(&mut self, now: Instant, out: &mut Output) {
        // The first announcement goes out at once, with the address.
        out.actions.push(Action::Announce);
        self.announce_idx = 1;
        self.burst_start = now;
        self.next_announce = Some(match self.cfg.announce_burst.get(1) {
            Some(d) => now + *d,
            None => now + self.cfg.announce_refresh,
        });
    }

    /// The fixed drop order: remove the address, release the lease. No announcement is
    /// scheduled any more (`next_announce` cleared here, and only a holder announces).
    fn drop_all(&mut self, now: Instant, reason: Reason, out: &mut Output) {
        if self.role == Role::Holder {
            out.actions.push(Action::RemoveAddress);
        }
        self.next_announce = None;
        self.holder_since = None;
        self.elected_at = None;
        if let Some(l) = self.lease.take() {
            out.actions.push(Action::RevokeLease { id: l.id });
        }
        self.campaigning = false;
        self.set_role(now, Role::Waiting, reason, out);
    }

    /// A candidate leaves the election: cancel the campaign and revoke the lease (which
    /// also deletes a key the cancelled campaign might have left).
    fn leave_election(&mut self, now: Instant, reason: Reason, out: &mut Output) {
        if self.campaigning {
            out.actions.push(Action::CancelCampaign);
            self.campaigning = false;
        }
        if self.role == Role::Acquiring || self.role == Role::Holder {
            return self.drop_all(now, reason, out);
        }
        if let Some(l) = self.lease.take() {
            out.actions.push(Action::RevokeLease { id: l.id });
        }
        self.set_role(now, Role::Waiting, reason, out);
    }

    fn back_off(&mut self, now: Instant) {
        self.next_attempt = Some(now + self.backoff);
        self.backoff = (self.backoff * 2).min(self.cfg.backoff_max);
    }

    fn set_role(&mut self, now: Instant, to: Role, reason: Reason, out: &mut Output) {
        if self.role == to {
            return;
        }
        let t = Transition {
            at: now,
            from: self.role,
            to,
            reason,
        };
        if to != Role::Holder {
            self.address_pending = false;
        }
        if to != Role::Acquiring {
            self.reprobe_at = None;
        }
        if to != Role::Holder {
            self.handover = None;
            self.published_preference = None;
            self.address_expires = None;
        }
        self.role = to;
        self.last_transition = Some(t.clone());
        out.transition = Some(t);
    }
}

/// When the kernel removes an address given the longest whole-second lifetime ending by
/// `until`, set at `now` (what `cpe_net::Lifetime::within` gives the driver).
fn lifetime_end(now: Instant, until: Instant) -> Instant {
    now + Duration::from_secs(until.saturating_duration_since(now).as_secs())
}

#[cfg(test)]
mod tests {
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
}
