//! The load balancer's side of health: one [`cpe_health::Checker`] per backend, and what
//! every change of a backend's health does here (logs at a level by state, metrics, the
//! loud fallback warning). The checker probes and feeds the state machine; the connection
//! path feeds it failed connects and the operator maintenance, all through
//! [`Shared::apply`]'s one path, so a transition is logged and counted the same whatever
//! caused it.
//!
//! It does not probe, resolve or schedule (the checker does) and does not pick backends.

use crate::backend::Backend;
use crate::metrics::{ResultLabel, TransitionLabel};
use crate::{BackendSpec, Shared};
use cpe_health::{Checker, Event, Outcome, Round, State, Step, Target};
use std::ops::ControlFlow;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

impl Shared {
    /// Creates a backend and starts its checker (stopped by the backend's `stop` token).
    /// Starts a backend and its checker. `added`: to a running set (reload, discovery),
    /// so it starts as RECOVERING and must pass `rise` checks before it gets connections.
    pub(crate) fn start_backend(self: &Arc<Self>, spec: BackendSpec, added: bool) -> Arc<Backend> {
        let b = Arc::new(Backend::new(
            spec,
            &self.metrics,
            self.stop_checks.child_token(),
            self.hard_stop.child_token(),
            Instant::now(),
        ));
        if added {
            b.added(Instant::now());
            self.metrics.set_state(&b.name, b.state());
        }
        let target = Target::new(&b.spec.host, b.spec.port);
        let checker = Checker::watching(target, self.check.subscribe());
        let (s, b2) = (self.clone(), b.clone());
        tokio::spawn(async move {
            let stop = b2.stop.clone();
            let run = checker.run(&*b2, |round| {
                s.on_round(&b2, round);
                ControlFlow::Continue(())
            });
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = run => {}
            }
        });
        b
    }

    /// One check of `b`: its metrics, then what the state machine said.
    fn on_round(&self, b: &Backend, round: Round) {
        let obs = &round.observation;
        b.check_seconds.observe(obs.latency.as_secs_f64());
        b.last_check_us
            .store(obs.latency.as_micros() as u64, Ordering::Relaxed);
        let result = match &obs.outcome {
            Outcome::Ready => "ready",
            Outcome::NotReady { .. } => "not_ready",
            Outcome::Unauthorized { .. } => "unauthorized",
            Outcome::Failed(_) => "failed",
        };
        self.metrics
            .backend_checks
            .get_or_create(&ResultLabel {
                backend: b.name.clone(),
                result: result.to_string(),
            })
            .inc();
        debug!(backend = %b.name, outcome = %obs.outcome, latency = ?obs.latency, "check");
        self.after(b, round.step);
    }

    /// Feeds a passive or operator event (a failed connect, maintenance) into a backend's
    /// state machine, with the rules in force now.
    pub(crate) fn apply(&self, b: &Backend, event: Event) {
        let rules = self.check.borrow().rules;
        let step = b.observe(&rules, Instant::now(), event);
        self.after(b, step);
    }

    /// Logs and counts what one event did.
    fn after(&self, b: &Backend, step: Step) {
        if step.first_unauthorized {
            warn!(
                backend = %b.name,
                "health check answered 401/403: counted as alive, readiness unknown \
                 (give healthCheck certFile/keyFile, or set unauthorized: down); logged once"
            );
        }
        if let Some(t) = step.transition {
            match t.to {
                State::Up | State::Recovering | State::Maintenance => {
                    info!(backend = %b.name, from = t.from.as_str(), to = t.to.as_str(), cause = t.cause.as_str(), "{t}")
                }
                State::Draining | State::Suspect | State::Down => {
                    warn!(backend = %b.name, from = t.from.as_str(), to = t.to.as_str(), cause = t.cause.as_str(), "{t}")
                }
            }
            self.metrics.set_state(&b.name, t.to);
            if t.from != t.to {
                self.metrics
                    .backend_transitions
                    .get_or_create(&TransitionLabel {
                        backend: b.name.clone(),
                        from: t.from.as_str().into(),
                        to: t.to.as_str().into(),
                    })
                    .inc();
            }
        }
        self.check_fallback();
    }

    /// Logs loudly when the endpoint enters or leaves fallback (no backend up).
    pub(crate) fn check_fallback(&self) {
        let members = self.members.load();
        let any_up = members.iter().any(|b| b.state() == State::Up);
        let now = !any_up && !members.is_empty() && members.iter().all(|b| b.health().checked());
        let alive: Vec<&str> = members
            .iter()
            .filter(|b| b.tcp_alive() && b.state() != State::Maintenance)
            .map(|b| b.name.as_str())
            .collect();
        if self.fallback.swap(now, Ordering::Relaxed) != now {
            self.metrics.fallback.set(now as i64);
            if now && alive.is_empty() {
                error!("NO BACKEND IS UP and none outside maintenance accepts TCP: new connections are closed");
            } else if now {
                error!(
                    tcp_alive = %alive.join(", "),
                    "NO BACKEND PASSES ITS HEALTH CHECK: sending new connections to backends that still accept TCP"
                );
            } else {
                info!("a backend is up again: fallback over");
            }
        }
    }
}
