//! The health of one backend as a pure state machine: `now` and an [`Event`] in, the new
//! [`State`] and, when it changed, a [`Transition`] with its cause out. No clock, no I/O,
//! no locks: the driver owns those.
//!
//! States, ordered from least to most usable:
//!
//! - `MAINTENANCE`: set by the operator; probes are recorded but change nothing.
//! - `DOWN`: `fall` consecutive failed probes (or a confirmed connect failure).
//! - `SUSPECT`: a connect from the data path was refused or timed out. Out of rotation at
//!   once; the next probe decides: a pass puts it straight back `UP` (a lost SYN is not a
//!   dead server), a failure confirms `DOWN`.
//! - `DRAINING`: the server answers but says it is not ready (`/readyz` 503 during an API
//!   server's shutdown delay, 500 when etcd stalls). Taken out at the *first* such answer:
//!   an explicit "not ready" is not noise. Existing connections continue.
//! - `RECOVERING`: passing again, fewer than `rise` times in a row.
//! - `UP`: gets new connections.
//!
//! A backend starts `DOWN` (unchecked); its first probe decides at once (a pass is `UP`),
//! so a freshly started load balancer does not wait `rise` intervals.
//!
//! Beside the state, [`Health::tcp_alive`] says whether the backend still accepted a TCP
//! connection the last time anyone tried: the load balancer's last resort when every
//! backend fails its check (an etcd stall must not take the whole endpoint down).

use crate::probe::Outcome;
use cpe_config::Unauthorized;
use std::fmt;
use tokio::time::Instant;

/// Backend states, ordered from least to most usable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum State {
    Maintenance,
    Down,
    Suspect,
    Draining,
    Recovering,
    Up,
}

impl State {
    pub const ALL: [State; 6] = [
        State::Maintenance,
        State::Down,
        State::Suspect,
        State::Draining,
        State::Recovering,
        State::Up,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Maintenance => "maintenance",
            State::Down => "down",
            State::Suspect => "suspect",
            State::Draining => "draining",
            State::Recovering => "recovering",
            State::Up => "up",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str().to_ascii_uppercase())
    }
}

/// Rise, fall, and what a 401/403 means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rules {
    pub rise: u32,
    pub fall: u32,
    pub unauthorized: Unauthorized,
}

impl Rules {
    pub fn from_config(hc: &cpe_config::HealthCheck) -> Rules {
        Rules {
            rise: hc.rise.max(1),
            fall: hc.fall.max(1),
            unauthorized: hc.unauthorized,
        }
    }
}

/// What happened to a backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// An active probe's outcome.
    Probe(Outcome),
    /// The data path could not connect (refused or timed out): a passive signal.
    ConnectFailed(String),
    /// The operator put the backend in maintenance (`true`) or took it out (`false`).
    Maintenance(bool),
}

/// Why a state changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// The first probe after start.
    FirstCheck,
    /// Active probes.
    Probe,
    /// A failed connect on the data path.
    Connect,
    /// The operator.
    Operator,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::FirstCheck => "first check",
            Cause::Probe => "probe",
            Cause::Connect => "connect",
            Cause::Operator => "operator",
        }
    }
}

/// A change of state, for logs, metrics and `/status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub backend: String,
    pub from: State,
    pub to: State,
    pub cause: Cause,
    /// What was seen: `HTTP 503`, `connection refused`, `2 passes`...
    pub detail: String,
    pub at: Instant,
}

impl fmt::Display for Transition {
    /// `10.0.0.2:6443 RECOVERING->UP (probe: 2 passes)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.from == self.to {
            // Only the first check "changes" nothing: it decides the initial state.
            write!(f, "{} {} ({}", self.backend, self.to, self.cause.as_str())?;
        } else {
            write!(
                f,
                "{} {}->{} ({}",
                self.backend,
                self.from,
                self.to,
                self.cause.as_str()
            )?;
        }
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        f.write_str(")")
    }
}

/// What one event did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Step {
    pub transition: Option<Transition>,
    /// The first 401/403 this backend answered while that counts as alive: the driver
    /// logs it once (readiness is then unknown until credentials are given).
    pub first_unauthorized: bool,
}

/// The health of one backend.
#[derive(Clone, Debug)]
pub struct Health {
    name: String,
    state: State,
    /// Consecutive passes / failures in the current state (reset on every transition).
    passes: u32,
    fails: u32,
    checked: bool,
    tcp_alive: bool,
    since: Instant,
    last_change: Option<Transition>,
    last_outcome: Option<Outcome>,
    unauthorized_seen: bool,
}

/// How a probe outcome counts under the rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Pass,
    NotReady,
    Fail,
}

impl Health {
    pub fn new(name: impl Into<String>, now: Instant) -> Health {
        Health {
            name: name.into(),
            state: State::Down,
            passes: 0,
            fails: 0,
            checked: false,
            tcp_alive: false,
            since: now,
            last_change: None,
            last_outcome: None,
            unauthorized_seen: false,
        }
    }

    /// A backend added to a running set (a reload, discovery): it starts as RECOVERING
    /// and gets connections only after `rise` passing checks. (The first-check shortcut,
    /// one pass to UP, is for a load balancer that is starting and has nothing better.)
    /// No effect once the backend has been checked.
    pub fn added(&mut self, now: Instant) {
        if !self.checked {
            self.checked = true;
            self.state = State::Recovering;
            self.since = now;
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn state(&self) -> State {
        self.state
    }
    /// When the current state began.
    pub fn since(&self) -> Instant {
        self.since
    }
    /// The last change of state, with its cause (none yet: never checked).
    pub fn last_change(&self) -> Option<&Transition> {
        self.last_change.as_ref()
    }
    pub fn last_outcome(&self) -> Option<&Outcome> {
        self.last_outcome.as_ref()
    }
    /// Did it accept a TCP connection the last time anyone tried?
    pub fn tcp_alive(&self) -> bool {
        self.tcp_alive
    }
    pub fn checked(&self) -> bool {
        self.checked
    }
    /// Does it get new connections in normal operation?
    pub fn takes_new_connections(&self) -> bool {
        self.state == State::Up
    }

    /// Applies one event at `now`.
    pub fn observe(&mut self, rules: &Rules, now: Instant, event: Event) -> Step {
        let mut step = Step::default();
        let rise = rules.rise.max(1);
        let fall = rules.fall.max(1);
        let (to, cause, detail) = match event {
            Event::Maintenance(true) => (State::Maintenance, Cause::Operator, String::new()),
            Event::Maintenance(false) if self.state == State::Maintenance => {
                (State::Recovering, Cause::Operator, String::new())
            }
            Event::Maintenance(false) => return step,
            Event::ConnectFailed(why) => {
                self.tcp_alive = false;
                match self.state {
                    State::Up => (State::Suspect, Cause::Connect, why),
                    State::Recovering => (State::Down, Cause::Connect, why),
                    _ => return step,
                }
            }
            Event::Probe(outcome) => {
                self.tcp_alive = outcome.tcp_alive();
                let verdict = match &outcome {
                    Outcome::Ready => Verdict::Pass,
                    Outcome::Unauthorized { .. } => match rules.unauthorized {
                        Unauthorized::Alive => {
                            step.first_unauthorized = !self.unauthorized_seen;
                            self.unauthorized_seen = true;
                            Verdict::Pass
                        }
                        Unauthorized::Down => Verdict::Fail,
                    },
                    Outcome::NotReady { .. } => Verdict::NotReady,
                    Outcome::Failed(_) => Verdict::Fail,
                };
                let detail = outcome.to_string();
                self.last_outcome = Some(outcome);
                if self.state == State::Maintenance {
                    return step;
                }
                match verdict {
                    Verdict::Pass => {
                        self.fails = 0;
                        self.passes = self.passes.saturating_add(1);
                    }
                    Verdict::Fail => {
                        self.passes = 0;
                        self.fails = self.fails.saturating_add(1);
                    }
                    Verdict::NotReady => {
                        self.passes = 0;
                        self.fails = self.fails.saturating_add(1);
                    }
                }
                if !self.checked {
                    self.checked = true;
                    let to = match verdict {
                        Verdict::Pass => State::Up,
                        _ => State::Down,
                    };
                    (to, Cause::FirstCheck, detail)
                } else {
                    match (self.state, verdict) {
                        (State::Up, Verdict::Pass) => return step,
                        (State::Up, Verdict::NotReady) => (State::Draining, Cause::Probe, detail),
                        (State::Up, Verdict::Fail) if self.fails >= fall => {
                            (State::Down, Cause::Probe, self.fail_detail(detail))
                        }
                        (State::Up, Verdict::Fail) => return step,
                        (State::Suspect, Verdict::Pass) => (
                            State::Up,
                            Cause::Probe,
                            "connect failure not confirmed".into(),
                        ),
                        (State::Suspect, Verdict::NotReady) => {
                            (State::Draining, Cause::Probe, detail)
                        }
                        (State::Suspect, Verdict::Fail) => (State::Down, Cause::Probe, detail),
                        (State::Draining | State::Down, Verdict::Pass) if self.passes >= rise => {
                            (State::Up, Cause::Probe, self.pass_detail())
                        }
                        (State::Draining | State::Down, Verdict::Pass) => {
                            (State::Recovering, Cause::Probe, detail)
                        }
                        (State::Draining, Verdict::NotReady) => return step,
                        (State::Draining, Verdict::Fail) if self.fails >= fall => {
                            (State::Down, Cause::Probe, self.fail_detail(detail))
                        }
                        (State::Draining, Verdict::Fail) => return step,
                        (State::Recovering, Verdict::Pass) if self.passes >= rise => {
                            (State::Up, Cause::Probe, self.pass_detail())
                        }
                        (State::Recovering, Verdict::Pass) => return step,
                        (State::Recovering, Verdict::NotReady | Verdict::Fail) => {
                            (State::Down, Cause::Probe, detail)
                        }
                        (State::Down, Verdict::NotReady | Verdict::Fail) => return step,
                        (State::Maintenance, _) => return step,
                    }
                }
            }
        };
        if to == self.state && cause != Cause::FirstCheck {
            return step;
        }
        // Counters restart in the new state, except the passes that brought a backend
        // into RECOVERING: they count towards `rise`.
        if to != State::Recovering || cause == Cause::Operator {
            self.passes = 0;
        }
        self.fails = 0;
        let t = Transition {
            backend: self.name.clone(),
            from: self.state,
            to,
            cause,
            detail,
            at: now,
        };
        self.state = to;
        self.since = now;
        self.last_change = Some(t.clone());
        step.transition = Some(t);
        step
    }

    fn pass_detail(&self) -> String {
        match self.passes {
            1 => "1 pass".into(),
            n => format!("{n} passes"),
        }
    }

    fn fail_detail(&self, last: String) -> String {
        format!("{} failures, last: {last}", self.fails)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::Failure;
    use std::time::Duration;

    const R: Rules = Rules {
        rise: 2,
        fall: 2,
        unauthorized: Unauthorized::Alive,
    };

    fn pass() -> Event {
        Event::Probe(Outcome::Ready)
    }
    fn fail() -> Event {
        Event::Probe(Outcome::Failed(Failure::Refused))
    }
    fn not_ready() -> Event {
        Event::Probe(Outcome::NotReady { status: 503 })
    }
    fn unauthorized() -> Event {
        Event::Probe(Outcome::Unauthorized { status: 401 })
    }
    fn connect_failed() -> Event {
        Event::ConnectFailed("connection refused".into())
    }

    /// Issue 10: a backend added to a running set (reload, discovery) needs `rise` passes.
    #[test]
    fn an_added_backend_must_pass_rise_checks() {
        let t0 = Instant::now();
        let mut h = Health::new("10.0.0.9:6443", t0);
        h.added(t0);
        assert_eq!(h.state(), State::Recovering);
        assert!(h.checked());
        h.observe(&R, t0, pass());
        assert_eq!(h.state(), State::Recovering, "one pass is not enough");
        h.observe(&R, t0, pass());
        assert_eq!(h.state(), State::Up);
        let mut h = Health::new("10.0.0.9:6443", t0);
        h.added(t0);
        h.observe(&R, t0, fail());
        assert_eq!(h.state(), State::Down);
    }

    /// Drives a fresh backend through `events`, returning the state after each.
    fn run(rules: &Rules, events: &[Event]) -> Vec<State> {
        let t0 = Instant::now();
        let mut h = Health::new("10.0.0.2:6443", t0);
        events
            .iter()
            .enumerate()
            .map(|(i, e)| {
                h.observe(rules, t0 + Duration::from_millis(250 * i as u64), e.clone());
                h.state()
            })
            .collect()
    }

    /// A backend in `state` (reached through real events).
    fn at(state: State) -> Health {
        let t0 = Instant::now();
        let mut h = Health::new("b", t0);
        let path: Vec<Event> = match state {
            State::Up => vec![pass()],
            State::Down => vec![fail()],
            State::Suspect => vec![pass(), connect_failed()],
            State::Draining => vec![pass(), not_ready()],
            State::Recovering => vec![fail(), pass()],
            State::Maintenance => vec![pass(), Event::Maintenance(true)],
        };
        for e in path {
            h.observe(&R, t0, e);
        }
        assert_eq!(h.state(), state);
        h
    }

    #[test]
    fn first_check_decides_at_once() {
        assert_eq!(run(&R, &[pass()]), [State::Up]);
        assert_eq!(run(&R, &[fail()]), [State::Down]);
        assert_eq!(run(&R, &[not_ready()]), [State::Down]);
        let mut h = Health::new("b", Instant::now());
        assert!(!h.checked());
        let s = h.observe(&R, Instant::now(), pass());
        let t = s.transition.unwrap();
        assert_eq!(
            (t.from, t.to, t.cause),
            (State::Down, State::Up, Cause::FirstCheck)
        );
    }

    #[test]
    fn fall_consecutive_failures_take_it_down() {
        assert_eq!(
            run(&R, &[pass(), fail(), fail()]),
            [State::Up, State::Up, State::Down]
        );
        // A pass in between resets the count.
        assert_eq!(
            run(&R, &[pass(), fail(), pass(), fail(), pass()]),
            [State::Up; 5]
        );
        let r3 = Rules { fall: 3, ..R };
        assert_eq!(
            run(&r3, &[pass(), fail(), fail(), fail()]),
            [State::Up, State::Up, State::Up, State::Down]
        );
    }

    #[test]
    fn rise_consecutive_passes_bring_it_back_through_recovering() {
        assert_eq!(
            run(&R, &[fail(), pass(), pass()]),
            [State::Down, State::Recovering, State::Up]
        );
        // A failure while recovering starts over.
        assert_eq!(
            run(&R, &[fail(), pass(), fail(), pass(), pass()]),
            [
                State::Down,
                State::Recovering,
                State::Down,
                State::Recovering,
                State::Up
            ]
        );
        let r1 = Rules { rise: 1, ..R };
        assert_eq!(run(&r1, &[fail(), pass()]), [State::Down, State::Up]);
        let r3 = Rules { rise: 3, ..R };
        assert_eq!(
            run(&r3, &[fail(), pass(), pass(), pass()]),
            [State::Down, State::Recovering, State::Recovering, State::Up]
        );
    }

    #[test]
    fn not_ready_drains_at_the_first_answer_and_needs_rise_to_return() {
        assert_eq!(
            run(&R, &[pass(), not_ready(), not_ready(), pass(), pass()]),
            [
                State::Up,
                State::Draining,
                State::Draining,
                State::Recovering,
                State::Up
            ]
        );
        // The API server's listener closes after the shutdown delay: down after `fall`.
        assert_eq!(
            run(&R, &[pass(), not_ready(), fail(), fail()]),
            [State::Up, State::Draining, State::Draining, State::Down]
        );
    }

    #[test]
    fn a_failed_connect_makes_it_suspect_and_the_next_probe_decides() {
        assert_eq!(
            run(&R, &[pass(), connect_failed(), pass()]),
            [State::Up, State::Suspect, State::Up]
        );
        assert_eq!(
            run(&R, &[pass(), connect_failed(), fail()]),
            [State::Up, State::Suspect, State::Down]
        );
        assert_eq!(
            run(&R, &[pass(), connect_failed(), not_ready()]),
            [State::Up, State::Suspect, State::Draining]
        );
        // Passive failures change nothing for backends without new connections, but they
        // do say TCP is dead.
        let mut h = at(State::Draining);
        assert!(h.tcp_alive());
        let s = h.observe(&R, Instant::now(), connect_failed());
        assert_eq!(
            (s.transition, h.state(), h.tcp_alive()),
            (None, State::Draining, false)
        );
        let mut h = at(State::Recovering);
        h.observe(&R, Instant::now(), connect_failed());
        assert_eq!(h.state(), State::Down);
    }

    #[test]
    fn unauthorized_counts_as_alive_or_down_by_rule_and_is_reported_once() {
        let t0 = Instant::now();
        let mut h = Health::new("b", t0);
        let s1 = h.observe(&R, t0, unauthorized());
        let s2 = h.observe(&R, t0, unauthorized());
        assert!(s1.first_unauthorized && !s2.first_unauthorized);
        assert_eq!(h.state(), State::Up);
        let down = Rules {
            unauthorized: Unauthorized::Down,
            ..R
        };
        assert_eq!(
            run(&down, &[pass(), unauthorized(), unauthorized()]),
            [State::Up, State::Up, State::Down]
        );
        let mut h = Health::new("b", t0);
        assert!(!h.observe(&down, t0, unauthorized()).first_unauthorized);
    }

    #[test]
    fn maintenance_freezes_state_until_released_then_needs_rise() {
        assert_eq!(
            run(
                &R,
                &[
                    pass(),
                    Event::Maintenance(true),
                    pass(),
                    fail(),
                    connect_failed(),
                    Event::Maintenance(false),
                    pass(),
                    pass()
                ]
            ),
            [
                State::Up,
                State::Maintenance,
                State::Maintenance,
                State::Maintenance,
                State::Maintenance,
                State::Recovering,
                State::Recovering,
                State::Up
            ]
        );
        // Releasing a backend that is not in maintenance does nothing.
        let mut h = at(State::Up);
        assert_eq!(
            h.observe(&R, Instant::now(), Event::Maintenance(false)),
            Step::default()
        );
    }

    #[test]
    fn tcp_alive_follows_the_last_attempt() {
        let mut h = at(State::Up);
        assert!(h.tcp_alive());
        h.observe(
            &R,
            Instant::now(),
            Event::Probe(Outcome::NotReady { status: 500 }),
        );
        assert!(h.tcp_alive(), "a 500 (etcd stall) still accepts TCP");
        h.observe(
            &R,
            Instant::now(),
            Event::Probe(Outcome::Failed(Failure::Timeout)),
        );
        assert!(h.tcp_alive(), "connected, then no answer");
        h.observe(
            &R,
            Instant::now(),
            Event::Probe(Outcome::Failed(Failure::Refused)),
        );
        assert!(!h.tcp_alive());
        h.observe(
            &R,
            Instant::now(),
            Event::Probe(Outcome::Failed(Failure::ConnectTimeout)),
        );
        assert!(!h.tcp_alive());
    }

    /// Every state × every event: never panics, only UP takes new connections, transitions
    /// report the right from/to and time, and a probe pass never makes things worse.
    #[test]
    fn exhaustive_state_event_table() {
        let events = [
            pass(),
            fail(),
            not_ready(),
            unauthorized(),
            connect_failed(),
            Event::Maintenance(true),
            Event::Maintenance(false),
            Event::Probe(Outcome::Failed(Failure::Http("bad".into()))),
        ];
        let t1 = Instant::now() + Duration::from_secs(5);
        for state in State::ALL {
            for e in &events {
                let mut h = at(state);
                let step = h.observe(&R, t1, e.clone());
                assert_eq!(h.takes_new_connections(), h.state() == State::Up);
                match &step.transition {
                    Some(t) => {
                        assert_eq!(
                            (t.from, t.to, t.at),
                            (state, h.state(), t1),
                            "{state:?} {e:?}"
                        );
                        assert_ne!(t.from, t.to, "only a first check may keep the state");
                        assert_eq!(h.since(), t1);
                        assert_eq!(h.last_change(), Some(t));
                    }
                    None => assert_eq!(h.state(), state, "{state:?} {e:?}: silent change"),
                }
                if matches!(e, Event::Probe(Outcome::Ready)) && state != State::Maintenance {
                    assert!(h.state() >= state, "{state:?} + pass -> {:?}", h.state());
                }
                if matches!(e, Event::Maintenance(true)) {
                    assert_eq!(h.state(), State::Maintenance);
                }
            }
        }
    }

    #[test]
    fn transitions_display_like_the_logs() {
        let t0 = Instant::now();
        let mut h = Health::new("10.0.0.2:6443", t0);
        h.observe(&R, t0, fail());
        h.observe(&R, t0, pass());
        let t = h.observe(&R, t0, pass()).transition.unwrap();
        assert_eq!(
            t.to_string(),
            "10.0.0.2:6443 RECOVERING->UP (probe: 2 passes)"
        );
        let t = h.observe(&R, t0, not_ready()).transition.unwrap();
        assert_eq!(
            t.to_string(),
            "10.0.0.2:6443 UP->DRAINING (probe: not ready (HTTP 503))"
        );
        let t = h
            .observe(&R, t0, Event::Maintenance(true))
            .transition
            .unwrap();
        assert_eq!(
            t.to_string(),
            "10.0.0.2:6443 DRAINING->MAINTENANCE (operator)"
        );
    }

    #[test]
    fn states_are_ordered_by_usefulness() {
        assert!(State::Maintenance < State::Down);
        assert!(State::Down < State::Suspect);
        assert!(State::Suspect < State::Draining);
        assert!(State::Draining < State::Recovering);
        assert!(State::Recovering < State::Up);
    }
}
