//! One backend as the running load balancer holds it: its spec, its resolved address, its
//! health (the pure state machine behind a mutex, mirrored into atomics so that the
//! connection path reads it without locking), its counters, and the tokens that end its
//! checks and, after a drain, its connections.
//!
//! It is what its checker observes ([`cpe_health::Observe`]): the checker, the connection
//! path and the operator all feed the one state machine, under its lock, and the mirror
//! is updated under the same lock.

use crate::config::BackendSpec;
use crate::metrics::{BackendLabel, Metrics};
use crate::select::View;
use arc_swap::ArcSwapOption;
use cpe_health::{Event, Health, Observe, Rules, State, Step};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub struct Backend {
    pub spec: BackendSpec,
    /// `spec` as displayed; the label in metrics and logs.
    pub name: String,
    /// Resolved by the checker for names; fixed for IP literals. `None` until a name
    /// resolves: such a backend is never picked. Read on every new connection by every
    /// worker: swapped, not locked.
    addr: ArcSwapOption<SocketAddr>,
    /// Mirror of `health.state()` (index into `State::ALL`), for lock-free selection.
    state: AtomicU8,
    tcp_alive: AtomicBool,
    /// The state machine. Locked by the checker (every interval) and by the connection
    /// path only when a connect fails: never on the common path.
    pub health: Mutex<Health>,
    /// Open connections; also the least-connections count.
    pub active: Gauge,
    pub connects: Counter,
    pub failures: Counter,
    pub check_seconds: Histogram,
    /// Last check latency in microseconds, for `/status`.
    pub last_check_us: AtomicU64,
    /// Ends this backend's checks (removed, or the load balancer stopped).
    pub stop: CancellationToken,
    /// Ends this backend's remaining connections (removed, and the drain timeout passed;
    /// or the load balancer's own drain timeout: a child of its hard stop, so a connection
    /// waits on one token, not two).
    pub drain: CancellationToken,
}

fn state_index(s: State) -> u8 {
    State::ALL.iter().position(|x| *x == s).unwrap_or(0) as u8
}

impl Backend {
    pub fn new(
        spec: BackendSpec,
        metrics: &Metrics,
        stop: CancellationToken,
        drain: CancellationToken,
        now: Instant,
    ) -> Backend {
        let name = spec.to_string();
        let label = BackendLabel {
            backend: name.clone(),
        };
        let health = Health::new(name.clone(), now);
        metrics.set_state(&name, health.state());
        Backend {
            addr: ArcSwapOption::from_pointee(spec.literal()),
            state: AtomicU8::new(state_index(health.state())),
            tcp_alive: AtomicBool::new(false),
            health: Mutex::new(health),
            active: metrics.backend_active.get_or_create_owned(&label),
            connects: metrics.backend_connects.get_or_create_owned(&label),
            failures: metrics.backend_connect_failures.get_or_create_owned(&label),
            check_seconds: metrics.backend_check_seconds.get_or_create_owned(&label),
            last_check_us: AtomicU64::new(0),
            stop,
            drain,
            spec,
            name,
        }
    }

    pub fn addr(&self) -> Option<SocketAddr> {
        self.addr.load().as_deref().copied()
    }

    pub fn set_addr(&self, a: SocketAddr) {
        if self.addr() != Some(a) {
            self.addr.store(Some(Arc::new(a)));
        }
    }

    pub fn state(&self) -> State {
        State::ALL[self.state.load(Ordering::Relaxed) as usize % State::ALL.len()]
    }

    pub fn tcp_alive(&self) -> bool {
        self.tcp_alive.load(Ordering::Relaxed)
    }

    /// Feeds one event to the state machine and mirrors its answers into the atomics,
    /// under the health lock, so that mirrors never go backwards.
    pub fn observe(&self, rules: &Rules, now: Instant, event: Event) -> Step {
        let mut h = self.health();
        let step = h.observe(rules, now, event);
        self.state.store(state_index(h.state()), Ordering::Relaxed);
        self.tcp_alive.store(h.tcp_alive(), Ordering::Relaxed);
        step
    }

    /// Added to a running set: RECOVERING until `rise` checks pass ([`Health::added`]).
    pub fn added(&self, now: Instant) {
        let mut h = self.health();
        h.added(now);
        self.state.store(state_index(h.state()), Ordering::Relaxed);
    }

    pub fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn view(&self) -> View {
        View {
            state: self.state(),
            tcp_alive: self.tcp_alive(),
            active: self.active.get(),
            addressable: self.addr().is_some(),
        }
    }
}

impl Observe for &Backend {
    fn observe(&mut self, rules: &Rules, now: Instant, event: Event) -> Step {
        Backend::observe(self, rules, now, event)
    }

    /// The address the data path connects to follows the name.
    fn resolved(&mut self, addr: SocketAddr) {
        self.set_addr(addr);
    }
}
