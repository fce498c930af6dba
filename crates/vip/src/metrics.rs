//! Prometheus metrics of the agent (`/metrics` on the admin listener). No global
//! registry: the driver owns one [`Metrics`] and the admin handler encodes it.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;
use tokio::time::Instant;

pub struct Metrics {
    registry: Registry,
    /// 1 while this node holds the VIP.
    pub holder: Gauge,
    /// 1 while the health check passes.
    pub healthy: Gauge,
    pub announcements: Counter,
    /// Round trip of successful lease renewals.
    pub renewal: Histogram,
    /// The last successful renewal's round trip, in seconds.
    pub last_renewal: Gauge<f64, AtomicU64>,
    /// 1 while the last exchange with etcd (renewal, grant, leader query) succeeded.
    pub etcd_reachable: Gauge,
    /// Seconds until the lease this agent holds runs out, computed at each scrape from
    /// [`Metrics::set_lease_deadline`]; 0 without a lease.
    lease_remaining: Gauge<f64, AtomicU64>,
    lease_deadline: Mutex<Option<Instant>>,
    /// etcd leadership transfers away from this machine while holding.
    pub etcd_leader_moves: Counter,
    /// 1 while this node holds the VIP although unhealthy (no other candidate healthy).
    pub fail_open: Gauge,
    transitions: Family<Vec<(String, String)>, Counter>,
    total: Counter,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("cpe_vip");
        let holder = Gauge::default();
        let healthy = Gauge::default();
        let announcements = Counter::default();
        let renewal = Histogram::new(exponential_buckets(0.0005, 2.0, 14));
        let transitions = Family::<Vec<(String, String)>, Counter>::default();
        let etcd_leader_moves = Counter::default();
        let last_renewal = Gauge::<f64, AtomicU64>::default();
        let etcd_reachable = Gauge::default();
        let lease_remaining = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "lease_last_renewal_seconds",
            "Round trip of the last successful etcd lease renewal",
            last_renewal.clone(),
        );
        registry.register(
            "etcd_reachable",
            "1 while the last exchange with etcd (renewal, grant, leader query) succeeded",
            etcd_reachable.clone(),
        );
        registry.register(
            "lease_remaining_seconds",
            "Seconds until this agent's lease runs out unless renewed (0 without a lease)",
            lease_remaining.clone(),
        );
        let fail_open = Gauge::default();
        registry.register(
            "fail_open",
            "1 while this node holds the VIP although its health check fails, because no other candidate is healthy",
            fail_open.clone(),
        );
        registry.register(
            "etcd_leader_moves",
            "etcd leadership handed from this machine's member to another while holding the VIP",
            etcd_leader_moves.clone(),
        );
        registry.register("holder", "1 while this node holds the VIP", holder.clone());
        registry.register(
            "healthy",
            "1 while this node's health check passes",
            healthy.clone(),
        );
        registry.register(
            "announcements",
            "Gratuitous ARP / unsolicited NA rounds sent",
            announcements.clone(),
        );
        registry.register(
            "lease_renewal_seconds",
            "Round trip of successful etcd lease renewals",
            renewal.clone(),
        );
        registry.register(
            "transitions",
            "Role changes, by new role and reason",
            transitions.clone(),
        );
        Metrics {
            registry,
            holder,
            healthy,
            announcements,
            renewal,
            last_renewal,
            etcd_reachable,
            lease_remaining,
            lease_deadline: Mutex::new(None),
            etcd_leader_moves,
            fail_open,
            transitions,
            total: Counter::default(),
        }
    }

    pub fn transition(&self, to: &str, reason: &str) {
        self.transitions
            .get_or_create(&vec![
                ("to".to_string(), to.to_string()),
                ("reason".to_string(), reason.to_string()),
            ])
            .inc();
        self.total.inc();
    }

    pub fn transitions_total(&self) -> u64 {
        self.total.get()
    }

    /// A renewal round trip that succeeded.
    pub fn renewed(&self, round_trip: std::time::Duration) {
        self.renewal.observe(round_trip.as_secs_f64());
        self.last_renewal.set(round_trip.as_secs_f64());
        self.etcd_reachable.set(1);
    }

    /// The lease's current deadline (`None`: no lease).
    pub fn set_lease_deadline(&self, deadline: Option<Instant>) {
        *self
            .lease_deadline
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = deadline;
    }

    /// The OpenMetrics text.
    pub fn encode(&self) -> String {
        let deadline = *self
            .lease_deadline
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        self.lease_remaining.set(deadline.map_or(0.0, |d| {
            d.saturating_duration_since(Instant::now()).as_secs_f64()
        }));
        let mut s = String::new();
        let _ = encode(&mut s, &self.registry);
        s
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_holder_transitions_and_renewals() {
        let m = Metrics::new();
        m.holder.set(1);
        m.transition("holder", "acquired");
        m.renewed(std::time::Duration::from_millis(2));
        m.etcd_leader_moves.inc();
        m.set_lease_deadline(Some(Instant::now() + std::time::Duration::from_secs(2)));
        m.fail_open.set(1);
        let text = m.encode();
        assert!(text.contains("cpe_vip_fail_open 1"), "{text}");
        assert!(text.contains("cpe_vip_holder 1"), "{text}");
        assert!(
            text.contains("cpe_vip_transitions_total{to=\"holder\",reason=\"acquired\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("cpe_vip_lease_renewal_seconds_count 1"),
            "{text}"
        );
        assert!(text.contains("cpe_vip_etcd_leader_moves_total 1"), "{text}");
        assert!(text.contains("cpe_vip_etcd_reachable 1"), "{text}");
        assert!(
            text.contains("cpe_vip_lease_last_renewal_seconds 0.002"),
            "{text}"
        );
        let remaining: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("cpe_vip_lease_remaining_seconds "))
            .expect("lease_remaining_seconds")
            .parse()
            .unwrap();
        assert!(remaining > 1.0 && remaining <= 2.0, "{text}");
        m.set_lease_deadline(None);
        assert!(m.encode().contains("cpe_vip_lease_remaining_seconds 0.0"));
        assert_eq!(m.transitions_total(), 1);
    }
}
