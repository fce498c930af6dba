//! The demo while traffic flows: every 20 ms it polls what the load balancer thinks of each
//! server, notices servers that finished shutting down, runs the script's steps that are due
//! (stop gracefully, kill, restart), keeps the requests per second, and draws the view; at
//! the end it pairs each step with what the load balancer did and builds the summary.
//!
//! What it does not do: set anything up or tear it down (`setup` and `run`), send traffic
//! (`traffic`), or render text (`view`); it decides what is shown, `Output` writes it.

use super::script::{self, Action, Pace, Step};
use super::setup::{lb_state_of, Slot};
use super::traffic::{self, KillWindow};
use super::{view, Output, Signals, GRACEFUL, KILLED};
use cpe_apiserver::Server;
use cpe_health::State;
use cpe_lb::LbHandle;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::time::Instant;

/// A change of a backend's state in the load balancer, as polled.
struct Transition {
    at: Duration,
    backend: usize,
    to: State,
}

/// A step that ran, with what the load balancer did about it.
struct Done {
    at: Duration,
    action: Action,
    text: String,
}

/// What the load balancer did after a step: for a stop or a kill, how long until it took
/// the backend out of rotation; for a restart, how long until it put it back.
fn outcome(done: &Done, transitions: &[Transition]) -> Option<String> {
    let (backend, back_up) = match done.action {
        Action::Graceful(i) | Action::Kill(i) => (i, false),
        Action::Restart(i) => (i, true),
        Action::End => return None,
    };
    transitions
        .iter()
        .find(|t| t.backend == backend && t.at >= done.at && (t.to == State::Up) == back_up)
        .map(|t| {
            let after = (t.at - done.at).as_secs_f64();
            if back_up {
                format!("back in rotation after {after:.2}s")
            } else {
                format!("out of rotation after {after:.2}s ({})", t.to.as_str())
            }
        })
}

/// What the view needs to say where things are.
pub struct Place {
    pub endpoint: SocketAddr,
    pub admin: Option<SocketAddr>,
    pub ca_path: PathBuf,
}

/// The running demo: the servers, the script and what was seen so far.
pub struct Show {
    pub slots: Vec<Slot>,
    lb: LbHandle,
    place: Place,
    tally: traffic::Shared,
    t0: Instant,
    pace: Pace,
    live: bool,
    names: Vec<String>,
    steps: Vec<Step>,
    next_step: usize,
    done: Vec<Done>,
    kills: Vec<KillWindow>,
    transitions: Vec<Transition>,
    last_states: Vec<Option<State>>,
    /// Per-backend request counts over the last second, for the rates.
    history: VecDeque<(Duration, Vec<u64>)>,
    last_draw: Duration,
    draw_every: Duration,
}

impl Show {
    pub fn new(
        slots: Vec<Slot>,
        lb: LbHandle,
        place: Place,
        tally: traffic::Shared,
        t0: Instant,
        pace: Pace,
        live: bool,
    ) -> Show {
        let last_states = vec![Some(State::Up); slots.len()];
        Show {
            names: slots.iter().map(|s| s.name.clone()).collect(),
            slots,
            lb,
            place,
            tally,
            t0,
            pace,
            live,
            steps: script::timeline(pace, GRACEFUL, KILLED),
            next_step: 0,
            done: Vec::new(),
            kills: Vec::new(),
            transitions: Vec::new(),
            last_states,
            history: VecDeque::new(),
            last_draw: Duration::ZERO,
            draw_every: if live {
                Duration::from_millis(250)
            } else {
                Duration::from_secs(1)
            },
        }
    }

    /// Runs the script to its end, or until a signal; returns how long traffic ran.
    pub async fn run(&mut self, out: &mut Output, signals: &mut Signals) -> Duration {
        if self.live {
            out.clear();
        }
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                sig = signals.recv() => {
                    let now = self.t0.elapsed();
                    out.event(now, &format!("interrupted by {sig}: stopping traffic early"));
                    return now;
                }
            }
            let now = self.t0.elapsed();
            self.poll_lb(now, out);
            self.reap_stopped(now, out).await;
            if let Some(end) = self.run_due_steps(now, out).await {
                return end;
            }
            let counts = self.count(now);
            if now.saturating_sub(self.last_draw) >= self.draw_every {
                self.last_draw = now;
                let snap = self.snapshot(now, &counts);
                if self.live {
                    out.frame(&view::frame(&snap));
                } else {
                    out.line(&view::line(&snap));
                }
            }
        }
    }

    /// What the load balancer thinks, polled every 20 ms: the detection times come from here.
    fn poll_lb(&mut self, now: Duration, out: &mut Output) {
        let states = self.lb.states();
        for (i, slot) in self.slots.iter().enumerate() {
            let st = lb_state_of(&states, slot.addr());
            if st != self.last_states[i] {
                if let Some(to) = st {
                    self.transitions.push(Transition {
                        at: now,
                        backend: i,
                        to,
                    });
                    if !self.live {
                        out.event(
                            now,
                            &format!(
                                "load balancer: {} {} -> {}",
                                slot.name,
                                self.last_states[i].map(|s| s.as_str()).unwrap_or("-"),
                                to.as_str()
                            ),
                        );
                    }
                }
                self.last_states[i] = st;
            }
        }
    }

    /// A server shutting down gracefully is stopped once its task finished.
    async fn reap_stopped(&mut self, now: Duration, out: &mut Output) {
        for slot in self.slots.iter_mut() {
            if slot.server == view::Server::ShuttingDown
                && slot.running.as_ref().is_none_or(|r| r.is_finished())
            {
                slot.server = view::Server::Stopped;
                if let Some(r) = slot.running.take() {
                    if let Err(e) = r.wait().await {
                        out.event(now, &format!("{}: {e}", slot.name));
                    }
                }
                if !self.live {
                    out.event(
                        now,
                        &format!("{}: listener closed, connections finished", slot.name),
                    );
                }
            }
        }
    }

    /// Runs the steps that are due; returns when the script ended, if it did.
    async fn run_due_steps(&mut self, now: Duration, out: &mut Output) -> Option<Duration> {
        let mut ended = None;
        while self.next_step < self.steps.len() && self.steps[self.next_step].at <= now {
            if let Action::Graceful(_) = self.steps[self.next_step].action {
                // Stop the server carrying the watch, kill another one.
                let watched = self
                    .tally
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .watch_backend
                    .clone();
                let g = watched
                    .and_then(|w| self.slots.iter().position(|s| s.name == w))
                    .unwrap_or(GRACEFUL);
                let n = self.slots.len();
                script::retarget(&mut self.steps[self.next_step..], g, (g + 1) % n);
            }
            let action = self.steps[self.next_step].action;
            self.next_step += 1;
            let text = script::describe(action, &self.names, self.pace);
            if !self.live {
                out.event(now, &format!("step: {text}"));
            }
            let at = self.t0.elapsed();
            match action {
                Action::Graceful(i) => self.stop_gracefully(i),
                Action::Kill(i) => self.kill(i).await,
                Action::Restart(i) => self.restart(i, now, out).await,
                Action::End => ended = Some(now),
            }
            self.done.push(Done { at, action, text });
        }
        ended
    }

    fn stop_gracefully(&mut self, i: usize) {
        if let Some(r) = &self.slots[i].running {
            r.handle().shutdown();
            self.slots[i].server = view::Server::ShuttingDown;
        }
    }

    async fn kill(&mut self, i: usize) {
        if let Some(r) = self.slots[i].running.take() {
            let from = self.t0.elapsed();
            r.kill().await;
            self.kills.push(KillWindow {
                backend: self.slots[i].name.clone(),
                from,
                to: self.t0.elapsed(),
            });
        }
        self.slots[i].server = view::Server::Killed;
    }

    async fn restart(&mut self, i: usize, now: Duration, out: &mut Output) {
        let slot = &mut self.slots[i];
        if let Some(r) = slot.running.take() {
            r.kill().await;
        }
        match Server::bind(slot.config.clone()).await {
            Ok(s) => {
                slot.running = Some(s.spawn());
                slot.server = view::Server::Serving;
            }
            Err(e) => out.event(now, &format!("{}: restart failed: {e}", slot.name)),
        }
    }

    /// Requests per backend so far, remembered for the rate over the last second.
    fn count(&mut self, now: Duration) -> Vec<u64> {
        let counts: Vec<u64> = {
            let t = self.tally.lock().unwrap_or_else(|e| e.into_inner());
            self.slots
                .iter()
                .map(|s| t.per_backend.get(&s.name).copied().unwrap_or(0))
                .collect()
        };
        self.history.push_back((now, counts.clone()));
        while self
            .history
            .front()
            .is_some_and(|(t, _)| now.saturating_sub(*t) > Duration::from_secs(1))
        {
            self.history.pop_front();
        }
        counts
    }

    fn snapshot(&self, now: Duration, counts: &[u64]) -> view::Snapshot {
        let t = self.tally.lock().unwrap_or_else(|e| e.into_inner());
        let (in_flight, _) = traffic::classify(&t.failures, &self.kills);
        let rate = |i: usize| match self.history.front() {
            Some((t0, c0)) if now > *t0 => {
                (counts[i].saturating_sub(c0[i])) as f64 / (now - *t0).as_secs_f64()
            }
            _ => 0.0,
        };
        view::Snapshot {
            elapsed: now,
            endpoint: self.place.endpoint.to_string(),
            admin: self.place.admin.map(|a| a.to_string()),
            ca: self.place.ca_path.display().to_string(),
            backends: self
                .slots
                .iter()
                .enumerate()
                .map(|(i, s)| view::Backend {
                    name: s.name.clone(),
                    addr: s.addr().to_string(),
                    server: s.server,
                    lb: self.last_states[i]
                        .map(|s| s.as_str())
                        .unwrap_or("-")
                        .to_string(),
                    requests: counts[i],
                    rate: rate(i),
                })
                .collect(),
            ok: t.ok,
            failed: t.failures.len() as u64,
            in_flight_on_killed: in_flight.len() as u64,
            last_failure: t.failures.last().map(|f| {
                format!(
                    "{:.2}s {} on {}: {}",
                    f.ended.as_secs_f64(),
                    f.kind.as_str(),
                    f.backend.as_deref().unwrap_or("(unknown backend)"),
                    f.error
                )
            }),
            retried: t.retried,
            watch_events: t.watch_events,
            watch_backend: t.watch_backend.clone(),
            timeline: self
                .steps
                .iter()
                .enumerate()
                .map(|(i, s)| view::Line {
                    at: s.at,
                    text: script::describe(s.action, &self.names, self.pace),
                    done: i < self.done.len(),
                    outcome: self.done.get(i).and_then(|d| outcome(d, &self.transitions)),
                })
                .collect(),
        }
    }

    /// The summary once traffic stopped after `elapsed`.
    pub fn summary(&self, elapsed: Duration) -> view::Summary {
        let t = self.tally.lock().unwrap_or_else(|e| e.into_inner());
        let (in_flight, other) = traffic::classify(&t.failures, &self.kills);
        let describe_failure = |f: &traffic::Failure| {
            format!(
                "{:.2}s-{:.2}s {} on {}: {}",
                f.started.as_secs_f64(),
                f.ended.as_secs_f64(),
                f.kind.as_str(),
                f.backend.as_deref().unwrap_or("(unknown backend)"),
                f.error
            )
        };
        view::Summary {
            elapsed,
            endpoint: self.place.endpoint.to_string(),
            ok: t.ok,
            failed: t.failures.len() as u64,
            in_flight_on_killed: in_flight.iter().map(|f| describe_failure(f)).collect(),
            other_failures: other.iter().map(|f| describe_failure(f)).collect(),
            retried: t.retried,
            per_backend: t.per_backend.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            watch_events: t.watch_events,
            watch_starts: t.watch_starts,
            watch_ended_cleanly: t.watch_ended_cleanly,
            steps: self
                .done
                .iter()
                .filter(|d| d.action != Action::End)
                .map(|d| {
                    format!(
                        "{:>6.2}s  {}  -> {}",
                        d.at.as_secs_f64(),
                        d.text,
                        outcome(d, &self.transitions).unwrap_or_else(|| "no change seen".into())
                    )
                })
                .collect(),
        }
    }
}
