//! What one scenario run measured ([`Outcome`]) and how it is reported: one line for logs
//! and the bench, JSON for `bench/vip.sh`. Plain data; it measures nothing itself (the
//! runner in `scenarios` fills it) and asserts nothing (the tests judge it).

use super::Scenario;
use crate::observe::HolderChange;
use std::time::Duration;

/// What one scenario run measured. Times are seconds.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub agent: &'static str,
    pub scenario: Scenario,
    /// A load balancer ran behind the VIP on every machine (`cpe vip --load-balance`,
    /// keepalived+HAProxy).
    pub load_balancing: bool,
    /// Whether the VIP should leave the machine the failure hit ([`Scenario::moves`]).
    pub expected_move: bool,
    /// When the failure was injected (the observers' clock: since the testbed started).
    pub t_fault: Duration,
    /// The holder when the failure was injected.
    pub from: String,
    /// Whether the holder's etcd member was the etcd leader then (losing both at once costs
    /// an etcd election on top of the lease TTL). None if it could not be told.
    pub holder_led_etcd: Option<bool>,
    /// The holders once it settled (before repair). One, on a healthy machine, is the goal.
    pub settled_holders: Vec<String>,
    /// Whether the settled holder is a machine the failure did not hit (or, after an
    /// agent's SIGKILL, the old holder still serving: see `stayed_orphaned`).
    pub settled_on_healthy: bool,
    /// Agent SIGKILL only: the VIP stayed on the machine whose agent was killed (its address
    /// orphaned there, still served by its API server) until the agent was restarted.
    pub stayed_orphaned: bool,
    /// From the failure to the VIP first appearing on another machine (None: never).
    pub takeover: Option<Duration>,
    /// From the failure to the VIP first gone from the machine that held it (None: never,
    /// e.g. it stayed).
    pub released: Option<Duration>,
    /// Longest time without a successful request from the failure until settled (None:
    /// nothing succeeded).
    pub outage: Option<Duration>,
    pub requests: usize,
    pub failed: usize,
    /// The first few failures (start time and error), for the report.
    pub failures: Vec<String>,
    /// When each failed request started, after the failure was injected.
    pub failed_after: Vec<Duration>,
    /// Requests in flight at the instant of the injection.
    pub in_flight_at_fault: usize,
    pub slowest: Duration,
    /// Sweeps that saw two holders, from the failure until the measurement ended.
    pub doubles: Vec<HolderChange>,
    /// Sweeps that saw two holders while the testbed was being repaired afterwards (a
    /// restarted agent, a healed partition, keepalived preempting back).
    pub doubles_repair: Vec<HolderChange>,
    /// ARP claims for the VIP the client received (gratuitous requests and replies), from
    /// the failure to settle: (time, MAC, host owning it).
    pub arp_claims: Vec<(Duration, String, Option<String>)>,
    /// Distinct MACs that claimed the VIP to the client after the takeover until settled:
    /// more than one means the client saw two machines answer for it.
    pub arp_claimers_after_takeover: usize,
    /// Whether the client's neighbour entry pointed at the settled holder's MAC.
    pub neighbour_follows: bool,
    pub neighbour_detail: String,
    /// Link cut: holder changes after the link came back (0 = no flapping); frozen agent:
    /// after it resumed (0 = it did not take the VIP back). And the outage the client saw
    /// then.
    pub changes_after_restore: Option<usize>,
    pub restore_outage: Option<Duration>,
    /// Holder and neighbour changes, for printing.
    pub timeline: Vec<String>,
}

impl Outcome {
    /// One line for logs and the bench.
    pub fn line(&self) -> String {
        let s = |d: Option<Duration>| {
            d.map(|d| format!("{:.3}s", d.as_secs_f64()))
                .unwrap_or("none".into())
        };
        let mut l = format!(
            "{:<10} {:<20} from {} to {:?}: takeover {}, outage {}, failed {}/{}, slowest {:.3}s, two holders: {}, neighbour follows: {}",
            self.agent,
            self.scenario.name(),
            if self.holder_led_etcd == Some(true) { format!("{} (etcd leader)", self.from) } else { self.from.clone() },
            self.settled_holders,
            s(self.takeover),
            s(self.outage),
            self.failed,
            self.requests,
            self.slowest.as_secs_f64(),
            if self.doubles.is_empty() { "no".to_string() } else { format!("YES ({} sweeps, first {:?})", self.doubles.len(), self.doubles[0]) },
            self.neighbour_follows,
        );
        l += &format!(
            ", ARP claimers after takeover: {}",
            self.arp_claimers_after_takeover
        );
        if !self.expected_move {
            l += &format!(
                ", VIP left {}: {}",
                self.from,
                if self.released.is_some() { "yes" } else { "no" }
            );
        }
        if self.stayed_orphaned {
            l += ", VIP stayed on the killed agent's machine";
        }
        if let Some(c) = self.changes_after_restore {
            let what = match self.scenario {
                Scenario::AgentFrozen => "resume",
                _ => "link back",
            };
            l += &format!(
                ", changes after {what}: {c} (outage then {})",
                s(self.restore_outage)
            );
        }
        l
    }

    /// The figures as JSON (for `bench/vip.sh`).
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "agent": self.agent,
            "scenario": self.scenario.name(),
            "from": self.from,
            "holder_led_etcd": self.holder_led_etcd,
            "settled": self.settled_holders,
            "settled_on_healthy": self.settled_on_healthy,
            "stayed_orphaned": self.stayed_orphaned,
            "takeover_s": self.takeover.map(|d| d.as_secs_f64()),
            "outage_s": self.outage.map(|d| d.as_secs_f64()),
            "requests": self.requests,
            "load_balancing": self.load_balancing,
            "expected_move": self.expected_move,
            "failed": self.failed,
            "in_flight_at_fault": self.in_flight_at_fault,
            "failed_after_s": self.failed_after.iter().map(|d| d.as_secs_f64()).collect::<Vec<_>>(),
            "failures": self.failures,
            "slowest_s": self.slowest.as_secs_f64(),
            "two_holders": !self.doubles.is_empty(),
            "two_holders_during_repair": !self.doubles_repair.is_empty(),
            "neighbour_follows": self.neighbour_follows,
            "arp_claimers_after_takeover": self.arp_claimers_after_takeover,
            "changes_after_restore": self.changes_after_restore,
            "restore_outage_s": self.restore_outage.map(|d| d.as_secs_f64()),
        })
    }
}
