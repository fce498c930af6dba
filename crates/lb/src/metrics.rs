//! Prometheus metrics of the load balancer (prometheus-client, no global registry).
//!
//! Per-backend handles are created once per backend and kept in the backend, so the
//! connection path increments an atomic and never looks up a label set.

use cpe_health::State;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabel {
    pub backend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub backend: String,
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransitionLabel {
    pub backend: String,
    pub from: String,
    pub to: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub backend: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceStateLabel {
    pub source: String,
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FaultLabel {
    pub source: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabel {
    pub result: String,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms .. ~1 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 12))
}

pub struct Metrics {
    pub registry: Registry,
    pub backend_state: Family<StateLabel, Gauge>,
    pub backend_active: Family<BackendLabel, Gauge>,
    pub backend_connects: Family<BackendLabel, Counter>,
    pub backend_connect_failures: Family<BackendLabel, Counter>,
    pub backend_checks: Family<ResultLabel, Counter>,
    pub backend_check_seconds: Family<BackendLabel, Histogram, fn() -> Histogram>,
    pub backend_transitions: Family<TransitionLabel, Counter>,
    pub accepted: Counter,
    pub rejected: Counter,
    pub no_backend: Counter,
    pub fallback_connections: Counter,
    pub fallback: Gauge,
    pub retries: Counter,
    pub active: Gauge,
    pub reloads: Family<ReloadLabel, Counter>,
    pub discovery_state: Family<SourceStateLabel, Gauge>,
    pub discovery_last_success: Family<SourceLabel, Gauge>,
    pub discovery_faults: Family<FaultLabel, Counter>,
    pub discovery_set_changes: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let m = Metrics {
            backend_state: Family::default(),
            backend_active: Family::default(),
            backend_connects: Family::default(),
            backend_connect_failures: Family::default(),
            backend_checks: Family::default(),
            backend_check_seconds: Family::new_with_constructor(latency_histogram),
            backend_transitions: Family::default(),
            accepted: Counter::default(),
            rejected: Counter::default(),
            no_backend: Counter::default(),
            fallback_connections: Counter::default(),
            fallback: Gauge::default(),
            retries: Counter::default(),
            active: Gauge::default(),
            reloads: Family::default(),
            discovery_state: Family::default(),
            discovery_last_success: Family::default(),
            discovery_faults: Family::default(),
            discovery_set_changes: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "cpe_lb_backend_state",
            "1 for the backend's current state (maintenance, down, suspect, draining, recovering, up)",
            m.backend_state.clone(),
        );
        registry.register(
            "cpe_lb_backend_active_connections",
            "Connections open to the backend now",
            m.backend_active.clone(),
        );
        registry.register(
            "cpe_lb_backend_connects",
            "Connections established to the backend",
            m.backend_connects.clone(),
        );
        registry.register(
            "cpe_lb_backend_connect_failures",
            "Connects to the backend that were refused or timed out (retried on another backend)",
            m.backend_connect_failures.clone(),
        );
        registry.register(
            "cpe_lb_backend_checks",
            "Health checks by result (ready, not_ready, unauthorized, failed)",
            m.backend_checks.clone(),
        );
        registry.register(
            "cpe_lb_backend_check_duration_seconds",
            "Health check latency",
            m.backend_check_seconds.clone(),
        );
        registry.register(
            "cpe_lb_backend_transitions",
            "Backend state changes",
            m.backend_transitions.clone(),
        );
        registry.register(
            "cpe_lb_connections_accepted",
            "Client connections accepted",
            m.accepted.clone(),
        );
        registry.register(
            "cpe_lb_connections_rejected",
            "Client connections closed at once because the connection limit was reached",
            m.rejected.clone(),
        );
        registry.register(
            "cpe_lb_connections_no_backend",
            "Client connections closed because no backend could take them",
            m.no_backend.clone(),
        );
        registry.register(
            "cpe_lb_connections_fallback",
            "Client connections sent to a backend failing its check (no backend up, TCP alive)",
            m.fallback_connections.clone(),
        );
        registry.register(
            "cpe_lb_fallback",
            "1 while no backend passes its check and connections go to TCP-alive backends",
            m.fallback.clone(),
        );
        registry.register(
            "cpe_lb_connect_retries",
            "Backend connects retried on another backend within the same client connection",
            m.retries.clone(),
        );
        registry.register(
            "cpe_lb_active_connections",
            "Client connections open now",
            m.active.clone(),
        );
        registry.register(
            "cpe_lb_reloads",
            "Reloads of the definition (SIGHUP) by result",
            m.reloads.clone(),
        );
        registry.register(
            "cpe_lb_discovery_state",
            "1 for each discovery source's state (ok: its last answer was applied; failing: kept the last good set)",
            m.discovery_state.clone(),
        );
        registry.register(
            "cpe_lb_discovery_last_success_timestamp_seconds",
            "When each discovery source last gave an answer that was applied (Unix time)",
            m.discovery_last_success.clone(),
        );
        registry.register(
            "cpe_lb_discovery_faults",
            "Discovery answers not applied, by source and reason (unreachable, forbidden, empty, unparsable, stalled, ...)",
            m.discovery_faults.clone(),
        );
        registry.register(
            "cpe_lb_discovery_set_changes",
            "Changes of the backend set made by discovery",
            m.discovery_set_changes.clone(),
        );
        Metrics { registry, ..m }
    }

    fn discovery_state_is(&self, source: &str, state: &str) {
        for s in ["ok", "failing"] {
            self.discovery_state
                .get_or_create(&SourceStateLabel {
                    source: source.to_string(),
                    state: s.to_string(),
                })
                .set((s == state) as i64);
        }
    }

    /// A source's answer was applied at `unix` seconds.
    pub fn discovery_success(&self, source: &str, unix: u64) {
        self.discovery_state_is(source, "ok");
        self.discovery_last_success
            .get_or_create(&SourceLabel {
                source: source.to_string(),
            })
            .set(unix as i64);
    }

    /// A source's answer was not applied.
    pub fn discovery_fault(&self, source: &str, reason: &str) {
        self.discovery_state_is(source, "failing");
        self.discovery_faults
            .get_or_create(&FaultLabel {
                source: source.to_string(),
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Sets the one-hot state gauges of a backend.
    pub fn set_state(&self, backend: &str, state: State) {
        for s in State::ALL {
            self.backend_state
                .get_or_create(&StateLabel {
                    backend: backend.to_string(),
                    state: s.as_str().to_string(),
                })
                .set((s == state) as i64);
        }
    }

    /// Forgets a backend's series once it is gone for good.
    pub fn remove_backend(&self, backend: &str) {
        let b = BackendLabel {
            backend: backend.to_string(),
        };
        for s in State::ALL {
            self.backend_state.remove(&StateLabel {
                backend: backend.to_string(),
                state: s.as_str().to_string(),
            });
        }
        self.backend_active.remove(&b);
        self.backend_check_seconds.remove(&b);
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
