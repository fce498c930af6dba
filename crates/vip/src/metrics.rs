//! Prometheus metrics of the agent (`/metrics` on the admin listener). No global
//! registry: the driver owns one [`Metrics`] and the admin handler encodes it.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

pub struct Metrics {
    registry: Registry,
    /// 1 while this node holds the VIP.
    pub holder: Gauge,
    /// 1 while the health check passes.
    pub healthy: Gauge,
    pub announcements: Counter,
    /// Round trip of successful lease renewals.
    pub renewal: Histogram,
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

    /// The OpenMetrics text.
    pub fn encode(&self) -> String {
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
        m.renewal.observe(0.002);
        m.etcd_leader_moves.inc();
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
        assert_eq!(m.transitions_total(), 1);
    }
}
