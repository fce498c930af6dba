//! The driver's writes beside the election: this node's published health (under its
//! lease, [`crate::peers`]) and the line that tells the guard which lease and election
//! key are this agent's ([`crate::guard::Owned`]). A child of `agent.rs` so that it
//! reads the driver's state directly; it decides nothing.

use super::Driver;
use crate::status::ElectionValue;
use crate::tasks;
use std::time::SystemTime;

impl Driver {
    /// Publishes this node's health under its lease when the lease or the health changed
    /// (retried a few times; the next change publishes again anyway).
    pub(super) fn publish_health(&mut self) {
        let Some(lease) = self.machine.lease().map(|l| l.id) else {
            self.published_health = None;
            return;
        };
        let healthy = self.machine.healthy();
        let state = self
            .machine
            .health()
            .map_or("unchecked", |t| t.to.as_str())
            .to_string();
        let now = (lease, healthy, state.clone());
        if self.published_health.as_ref() == Some(&now) {
            return;
        }
        if self.health_seen.as_ref() != Some(&(healthy, state.clone())) {
            self.health_seen = Some((healthy, state.clone()));
            self.health_since_wall = SystemTime::now();
        }
        self.published_health = Some(now);
        let value = crate::peers::Published {
            node: self.settings.node.clone(),
            state,
            healthy,
            since_unix_ms: self
                .health_since_wall
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            reason: self
                .machine
                .health()
                .map_or_else(|| "not checked yet".to_string(), |t| t.to_string()),
        };
        tokio::spawn(tasks::put_retrying(
            self.settings.etcd.clone(),
            crate::peers::health_key(&self.settings.election, &self.settings.node),
            serde_json::to_string(&value).unwrap_or_default(),
            lease,
        ));
    }

    /// Tells the guard the lease (and so the election key) that is this agent's now, one
    /// JSON line per change (`{"lease":null}`: none).
    pub(super) fn tell_guard(&mut self, lease: Option<i64>) {
        if self.guard_told == Some(lease) {
            return;
        }
        let Some(pipe) = self.guard.as_mut() else {
            return;
        };
        self.guard_told = Some(lease);
        let line = crate::guard::Owned::line(
            lease,
            &self.settings.election,
            &self.settings.node,
            &ElectionValue {
                node: self.settings.node.clone(),
                mac: Some(self.iface.mac.to_string()),
            }
            .encode(),
        );
        use std::io::Write;
        if let Err(e) = pipe.write_all(line.as_bytes()) {
            tracing::warn!("cannot tell the guard the lease: {e}");
        }
    }
}
