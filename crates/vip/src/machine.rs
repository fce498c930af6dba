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
//! - Every renewal that moves the deadline extends the lifetime (`ExtendAddress`).
//! - The address is added, extended or put back only while at least
//!   [`Config::min_lifetime`] (1 s, the shortest lifetime the kernel takes) of lease is
//!   left. With less, a holder waits for the next renewal to add it: it never re-adds an
//!   address whose lifetime ran out while the lease is not known to be alive.
//! - A takeover probe answered by the previous holder (its MAC, published with its
//!   election value) is not a stranger: the node stays elected and probes again once the
//!   previous holder's lifetime must have ended (at most a lease TTL after the election),
//!   instead of refusing the address and backing off.

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
                let ok = t.to == HealthState::Up;
                self.healthy = ok;
                self.health = Some(t);
                if !ok {
                    match self.role {
                        Role::Holder | Role::Acquiring | Role::Suspended => {
                            self.drop_all(now, Reason::HealthFailed, &mut out)
                        }
                        Role::Candidate => self.leave_election(now, Reason::HealthFailed, &mut out),
                        Role::Waiting => {
                            // A grant in flight is revoked when it arrives.
                        }
                        Role::Stopped => {}
                    }
                }
            }
            Input::LeaseGranted { id, ttl, sent_at } => {
                self.granting = false;
                if !self.healthy || self.lease.is_some() {
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
                    if alive && self.healthy {
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
                        None if alive && self.healthy => {
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
        let may_try = self.next_attempt.is_none_or(|t| now >= t);
        match self.role {
            Role::Waiting if self.healthy && may_try => {
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
            Role::Suspended if self.healthy && self.lease.is_some_and(|l| now < l.deadline) => {
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
        self.role = to;
        self.last_transition = Some(t.clone());
        out.transition = Some(t);
    }
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
                let input = match r.below(16) {
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
                    assert!(m.healthy(), "seed {seed}: unhealthy holder after {input:?}");
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
