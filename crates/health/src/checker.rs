//! The one health checker: resolve the target, probe it, feed the outcome to the pure
//! [`Health`] state machine, hand the round (address, observation, transition with its
//! cause) to the caller; again every interval. The load balancer runs one per backend,
//! the VIP agent one for its node.
//!
//! It owns the schedule and the name resolution, nothing else. Where the health lives is
//! behind [`Observe`]: owned by the checker (the VIP agent), or shared with a data path
//! that also reports failed connects and an operator who sets maintenance (the load
//! balancer). What a round means (metrics, logs, the VIP's state machine) is the caller's
//! callback. The probe is behind the narrow [`Probe`] trait, and time is `tokio::time`,
//! so the tests below run on a paused clock with a scripted probe.
//!
//! Resolution, one rule for every caller: an IP literal is probed as is; a name is looked
//! up before every probe (a changed DNS answer is picked up), bounded by the probe
//! timeout. A lookup error is a failed probe naming the error; a lookup that times out or
//! answers no address probes the last address the name had, if any.

use crate::probe::{Failure, Observation, Outcome, Prober};
use crate::state::{Event, Health, Rules, Step};
pub use crate::target::Target;
use std::future::Future;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// One probe of one address: what the checker needs of a [`Prober`] (and what a test
/// fakes).
pub trait Probe: Clone + Send + Sync + 'static {
    /// Probes `addr`, bounded by the prober's own timeout.
    fn probe(&self, addr: SocketAddr) -> impl Future<Output = Observation> + Send;
    /// How long one probe may take; also bounds the name lookup before it.
    fn timeout(&self) -> Duration;
}

impl Probe for Prober {
    fn probe(&self, addr: SocketAddr) -> impl Future<Output = Observation> + Send {
        Prober::probe(self, addr)
    }
    fn timeout(&self) -> Duration {
        Prober::timeout(self)
    }
}

/// Where a checker's observations go: a [`Health`] it owns, or one it shares.
pub trait Observe {
    /// Feeds one event to the state machine at `now`.
    fn observe(&mut self, rules: &Rules, now: Instant, event: Event) -> Step;
    /// The target's name resolved to `addr`, just before `addr` is probed. The load
    /// balancer connects clients to that address; the default ignores it.
    fn resolved(&mut self, addr: SocketAddr) {
        let _ = addr;
    }
}

impl Observe for Health {
    fn observe(&mut self, rules: &Rules, now: Instant, event: Event) -> Step {
        Health::observe(self, rules, now, event)
    }
}

impl<O: Observe + ?Sized> Observe for &mut O {
    fn observe(&mut self, rules: &Rules, now: Instant, event: Event) -> Step {
        (**self).observe(rules, now, event)
    }
    fn resolved(&mut self, addr: SocketAddr) {
        (**self).resolved(addr)
    }
}

/// Why a target's name gave no address to probe.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The lookup failed (`nosuch.example: Name or service not known`).
    #[error("{host}: {reason}")]
    Lookup { host: String, reason: String },
    /// The lookup timed out or answered no address, and the name never had one.
    #[error("{host}: no address")]
    NoAddress { host: String },
}

/// How to check: the prober, the rise/fall rules, and how often. The load balancer swaps
/// it on reload; a checker reads it at the start of each round.
#[derive(Clone, Debug)]
pub struct Check<P = Prober> {
    pub prober: P,
    pub rules: Rules,
    /// From the start of one probe to the start of the next.
    pub interval: Duration,
}

/// One round, as the checker hands it to its caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Round {
    /// The address probed; `None` when the target gave none (the observation then says
    /// why, as a [`Failure::Resolve`]).
    pub addr: Option<SocketAddr>,
    pub observation: Observation,
    /// What the observation did: the transition (with its cause and detail) if the state
    /// changed, and whether this was the first 401/403 (logged once by the caller).
    pub step: Step,
}

/// Checks one target, round after round (see the module documentation).
#[derive(Debug)]
pub struct Checker<P = Prober> {
    target: Target,
    check: watch::Receiver<Check<P>>,
    /// The last address the target's name resolved to.
    last: Option<SocketAddr>,
}

impl<P: Probe> Checker<P> {
    /// A checker with fixed settings.
    pub fn new(target: Target, check: Check<P>) -> Checker<P> {
        // The sender may go: a receiver keeps the last value it was sent.
        Checker::watching(target, watch::channel(check).1)
    }

    /// A checker that reads `check` anew at the start of every round.
    pub fn watching(target: Target, check: watch::Receiver<Check<P>>) -> Checker<P> {
        let last = match &target {
            Target::Addr(a) => Some(*a),
            Target::Name { .. } => None,
        };
        Checker {
            target,
            check,
            last,
        }
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Rounds until `on_round` says [`ControlFlow::Break`]: the first at once, then one
    /// every interval, counted from the start of a round (a round longer than the
    /// interval is followed at once by the next). Drop the future to stop it sooner: a
    /// probe cut short leaves no connection behind.
    pub async fn run(
        mut self,
        mut health: impl Observe,
        mut on_round: impl FnMut(Round) -> ControlFlow<()>,
    ) {
        loop {
            let start = Instant::now();
            let round = self.round(&mut health).await;
            if on_round(round).is_break() {
                return;
            }
            let interval = self.check.borrow().interval;
            tokio::time::sleep_until(start + interval).await;
        }
    }

    /// One round: resolve, probe, observe.
    pub async fn round(&mut self, health: &mut impl Observe) -> Round {
        let Check { prober, rules, .. } = self.check.borrow().clone();
        let start = Instant::now();
        let (addr, observation) = match self.resolve(prober.timeout()).await {
            Ok(addr) => {
                if matches!(self.target, Target::Name { .. }) {
                    health.resolved(addr);
                }
                (Some(addr), prober.probe(addr).await)
            }
            Err(e) => (
                None,
                Observation {
                    outcome: Outcome::Failed(Failure::Resolve(e.to_string())),
                    latency: start.elapsed(),
                },
            ),
        };
        let step = health.observe(
            &rules,
            Instant::now(),
            Event::Probe(observation.outcome.clone()),
        );
        Round {
            addr,
            observation,
            step,
        }
    }

    async fn resolve(&mut self, timeout: Duration) -> Result<SocketAddr, ResolveError> {
        let (host, port) = match &self.target {
            Target::Addr(a) => return Ok(*a),
            Target::Name { host, port } => (host, *port),
        };
        match tokio::time::timeout(timeout, tokio::net::lookup_host((host.as_str(), port))).await {
            Ok(Ok(mut addrs)) => {
                if let Some(a) = addrs.next() {
                    self.last = Some(a);
                }
            }
            Ok(Err(e)) => {
                // Without getaddrinfo's long prefix: `Name or service not known`.
                let text = e.to_string();
                let reason = text
                    .strip_prefix("failed to lookup address information: ")
                    .unwrap_or(&text)
                    .to_string();
                return Err(ResolveError::Lookup {
                    host: host.clone(),
                    reason,
                });
            }
            // A slow resolver is not a dead backend: keep probing where the name was.
            Err(_) => {}
        }
        self.last
            .ok_or_else(|| ResolveError::NoAddress { host: host.clone() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Cause, State, Transition};
    use cpe_config::Unauthorized;
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    /// Answers from a script (the last answer repeats), after `delay`, and records when
    /// and where each probe was sent.
    #[derive(Clone, Debug)]
    struct Scripted {
        answers: Arc<Mutex<VecDeque<Outcome>>>,
        sent: Arc<Mutex<Vec<(Instant, SocketAddr)>>>,
        delay: Duration,
    }

    impl Scripted {
        fn new(answers: &[Outcome]) -> Scripted {
            Scripted {
                answers: Arc::new(Mutex::new(answers.iter().cloned().collect())),
                sent: Arc::default(),
                delay: Duration::from_millis(1),
            }
        }
        fn sent(&self) -> Vec<(Instant, SocketAddr)> {
            self.sent.lock().unwrap().clone()
        }
        /// When each probe was sent, in ms after `t0`.
        fn sent_ms(&self, t0: Instant) -> Vec<u128> {
            self.sent()
                .iter()
                .map(|(t, _)| (*t - t0).as_millis())
                .collect()
        }
    }

    impl Probe for Scripted {
        fn probe(&self, addr: SocketAddr) -> impl Future<Output = Observation> + Send {
            self.sent.lock().unwrap().push((Instant::now(), addr));
            let outcome = {
                let mut a = self.answers.lock().unwrap();
                match a.len() {
                    0 => Outcome::Ready,
                    1 => a[0].clone(),
                    _ => a.pop_front().unwrap(),
                }
            };
            let delay = self.delay;
            async move {
                tokio::time::sleep(delay).await;
                Observation {
                    outcome,
                    latency: delay,
                }
            }
        }
        fn timeout(&self) -> Duration {
            Duration::from_millis(500)
        }
    }

    const RULES: Rules = Rules {
        rise: 2,
        fall: 2,
        unauthorized: Unauthorized::Alive,
    };

    fn addr() -> SocketAddr {
        "127.0.0.1:6443".parse().unwrap()
    }

    fn check(p: &Scripted, ms: u64) -> Check<Scripted> {
        Check {
            prober: p.clone(),
            rules: RULES,
            interval: Duration::from_millis(ms),
        }
    }

    /// Runs a checker on its own health until `n` rounds were seen; returns them.
    async fn rounds(checker: Checker<Scripted>, n: usize) -> Vec<Round> {
        let mut seen = Vec::new();
        let health = Health::new("b", Instant::now());
        checker
            .run(health, |r| {
                seen.push(r);
                if seen.len() == n {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
            .await;
        seen
    }

    fn transitions(rs: &[Round]) -> Vec<(State, State, Cause, String)> {
        rs.iter()
            .filter_map(|r| r.step.transition.as_ref())
            .map(|t: &Transition| (t.from, t.to, t.cause, t.detail.clone()))
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn probes_at_once_then_every_interval_from_the_start_of_each() {
        let mut p = Scripted::new(&[]);
        p.delay = Duration::from_millis(30);
        let t0 = Instant::now();
        rounds(Checker::new(Target::Addr(addr()), check(&p, 250)), 4).await;
        let at = p.sent_ms(t0);
        assert_eq!(at, [0, 250, 500, 750]);
        assert!(p.sent().iter().all(|(_, a)| *a == addr()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_longer_than_the_interval_is_followed_at_once() {
        let mut p = Scripted::new(&[]);
        p.delay = Duration::from_millis(400);
        let t0 = Instant::now();
        rounds(Checker::new(Target::Addr(addr()), check(&p, 250)), 3).await;
        let at = p.sent_ms(t0);
        assert_eq!(at, [0, 400, 800]);
    }

    #[tokio::test(start_paused = true)]
    async fn transitions_come_with_their_cause_and_what_was_seen() {
        let p = Scripted::new(&[
            Outcome::Ready,
            Outcome::Failed(Failure::Refused),
            Outcome::Failed(Failure::Refused),
            Outcome::Ready,
            Outcome::Ready,
        ]);
        let rs = rounds(Checker::new(Target::Addr(addr()), check(&p, 100)), 5).await;
        assert_eq!(
            transitions(&rs),
            [
                (State::Down, State::Up, Cause::FirstCheck, "ready".into()),
                (
                    State::Up,
                    State::Down,
                    Cause::Probe,
                    "2 failures, last: failed: connection refused".into()
                ),
                (State::Down, State::Recovering, Cause::Probe, "ready".into()),
                (
                    State::Recovering,
                    State::Up,
                    Cause::Probe,
                    "2 passes".into()
                ),
            ]
        );
        assert_eq!(rs[1].step.transition, None, "one failure is below fall");
        assert_eq!(rs[1].addr, Some(addr()));
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_unauthorized_answer_is_flagged_once() {
        let p = Scripted::new(&[Outcome::Unauthorized { status: 401 }]);
        let rs = rounds(Checker::new(Target::Addr(addr()), check(&p, 100)), 3).await;
        let flags: Vec<bool> = rs.iter().map(|r| r.step.first_unauthorized).collect();
        assert_eq!(flags, [true, false, false]);
        assert_eq!(rs[0].step.transition.as_ref().unwrap().to, State::Up);
    }

    #[tokio::test(start_paused = true)]
    async fn new_settings_take_effect_at_the_next_round() {
        let p = Scripted::new(&[]);
        let (tx, rx) = watch::channel(check(&p, 100));
        let t0 = Instant::now();
        let mut seen = 0;
        let health = Health::new("b", Instant::now());
        Checker::watching(Target::Addr(addr()), rx)
            .run(health, |_| {
                seen += 1;
                if seen == 2 {
                    tx.send_modify(|c| c.interval = Duration::from_millis(1000));
                }
                if seen == 4 {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
            .await;
        let at = p.sent_ms(t0);
        assert_eq!(at, [0, 100, 1100, 2100]);
    }

    /// A shared health (the load balancer's): the checker and a data path feed the same
    /// state machine, and the resolved address is handed over before the probe.
    #[tokio::test(start_paused = true)]
    async fn a_shared_health_sees_every_observer() {
        struct Shared {
            health: Health,
            resolved: Vec<SocketAddr>,
        }
        impl Observe for Shared {
            fn observe(&mut self, rules: &Rules, now: Instant, event: Event) -> Step {
                self.health.observe(rules, now, event)
            }
            fn resolved(&mut self, addr: SocketAddr) {
                self.resolved.push(addr);
            }
        }
        let mut shared = Shared {
            health: Health::new("b", Instant::now()),
            resolved: Vec::new(),
        };
        let p = Scripted::new(&[Outcome::Ready]);
        let mut c = Checker::new(Target::new("localhost", 6443), check(&p, 100));
        let r = c.round(&mut shared).await;
        assert_eq!(shared.health.state(), State::Up);
        assert_eq!(r.addr.map(|a| a.port()), Some(6443));
        assert_eq!(shared.resolved, [r.addr.unwrap()]);
        // A connect failure from the data path, then the checker again.
        shared.observe(
            &RULES,
            Instant::now(),
            Event::ConnectFailed("refused".into()),
        );
        assert_eq!(shared.health.state(), State::Suspect);
        let r = c.round(&mut shared).await;
        let t = r.step.transition.unwrap();
        assert_eq!((t.from, t.to), (State::Suspect, State::Up));
        // An address is not "resolved".
        let mut c = Checker::new(Target::Addr(addr()), check(&p, 100));
        c.round(&mut shared).await;
        assert_eq!(shared.resolved.len(), 2);
    }

    #[tokio::test]
    async fn a_name_that_does_not_resolve_is_a_failed_probe_naming_the_error() {
        let p = Scripted::new(&[Outcome::Ready]);
        let mut c = Checker::new(Target::new("nosuch.invalid", 6443), check(&p, 100));
        let mut h = Health::new("b", Instant::now());
        let r = c.round(&mut h).await;
        assert_eq!(r.addr, None);
        let Outcome::Failed(Failure::Resolve(why)) = &r.observation.outcome else {
            panic!("{r:?}")
        };
        assert!(why.starts_with("nosuch.invalid: "), "{why}");
        assert!(p.sent().is_empty(), "probed without an address");
        assert_eq!(h.state(), State::Down);
        let t = r.step.transition.unwrap();
        assert!(
            t.to_string().contains("cannot resolve: nosuch.invalid"),
            "{t}"
        );
    }

    #[test]
    fn targets_are_addresses_or_names() {
        assert_eq!(
            Target::new("10.0.0.2", 6443),
            Target::Addr(([10, 0, 0, 2], 6443).into())
        );
        assert_eq!(
            Target::new("::1", 6443).to_string(),
            "[::1]:6443",
            "an IPv6 literal"
        );
        assert_eq!(
            Target::new("cp1.example", 6443),
            Target::Name {
                host: "cp1.example".into(),
                port: 6443
            }
        );
        assert_eq!(
            ResolveError::NoAddress { host: "cp1".into() }.to_string(),
            "cp1: no address"
        );
    }
}
