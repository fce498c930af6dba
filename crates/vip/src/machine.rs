//! The holder's decisions as a pure state machine: inputs are time, health and lease,
//! election, probe and interface events; outputs are actions for the driver, in order.
//! It never reads the clock, opens a socket or talks to etcd, so every rule below is
//! covered by plain `#[test]`s (`machine/tests.rs`). Its vocabulary — [`Config`], [`Role`],
//! [`Reason`], [`Input`], [`Action`], [`Output`] — is `machine/vocabulary.rs`; the rules
//! are here.
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
use std::time::Duration;
use tokio::time::Instant;

mod vocabulary;
pub use vocabulary::*;

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
mod tests;
