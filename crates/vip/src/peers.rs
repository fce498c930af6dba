//! What the agents publish beside the election, and how one agent reads it: each agent's
//! health (state, since, reason) under its own lease, the election's queue of candidates
//! (oldest first: the first leads), and the holder's handover preference. Pure: the
//! driver (`agent.rs`, `tasks.rs`) reads and writes the keys; [`crate::machine`] decides
//! with the [`PeerInfo`] built here.
//!
//! # Keys (election name `E`, e.g. `/cpe/vip/10.0.0.100`)
//!
//! - `E/<lease hex>`: the candidates' keys, etcd's own election (value: [`ElectionValue`]).
//! - `E.health/<node>`: this node's [`Published`] health, attached to the lease it
//!   campaigns with, so it exists exactly while the node is in the election and goes with
//!   its lease (revoke, expiry, the guard).
//! - `E.prefer`: the node the holder hands the VIP to (`cpe status --prefer`, `--resign`),
//!   attached to the holder's lease, so it goes with the holder's leadership.
//!
//! Not `E/health/...`: everything under `E/` is a candidate to etcd's election (the
//! leader is the oldest key under that prefix), so the side keys live beside it.
//!
//! It decides nothing about holding the VIP: that is [`crate::machine`]'s.

use crate::status::ElectionValue;
use cpe_election::KeyValue;
use serde::{Deserialize, Serialize};

/// The prefix of the election's candidate keys.
pub fn queue_prefix(election: &str) -> String {
    format!("{election}/")
}

/// The prefix of the health keys.
pub fn health_prefix(election: &str) -> String {
    format!("{election}.health/")
}

/// Where `node` publishes its health.
pub fn health_key(election: &str, node: &str) -> String {
    format!("{}{node}", health_prefix(election))
}

/// Where the holder publishes the node it hands over to.
pub fn prefer_key(election: &str) -> String {
    format!("{election}.prefer")
}

/// The candidate key etcd's election creates for `lease` (`E/<lease hex>`).
pub fn campaign_key(election: &str, lease: i64) -> String {
    format!("{}{lease:x}", queue_prefix(election))
}

/// One agent's published health (JSON in its health key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    pub node: String,
    /// The checker's state (`up`, `down`, `draining`, ...; `unchecked` before the first).
    pub state: String,
    /// Healthy means `up`.
    pub healthy: bool,
    pub since_unix_ms: u64,
    /// The checker's last transition, as logged.
    pub reason: String,
}

/// One candidate in the election's queue, as this node reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub node: String,
    pub lease: i64,
    /// Its published health says `up`.
    pub healthy: bool,
    /// It is this node.
    pub me: bool,
}

/// What the machine learns from one read of the keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerInfo {
    /// Oldest first: the first leads.
    pub queue: Vec<Candidate>,
    /// The node the holder hands over to, if it published one.
    pub prefer: Option<String>,
    /// Every agent's published health (for `/status`), in key order.
    pub health: Vec<Published>,
}

impl PeerInfo {
    /// Builds the view from the three reads (each as etcd returned it; the queue sorted by
    /// creation revision).
    pub fn read(
        me: &str,
        election: &str,
        queue: &[KeyValue],
        health: &[KeyValue],
        prefer: Option<&KeyValue>,
    ) -> PeerInfo {
        let hp = health_prefix(election);
        let mut published: Vec<Published> = health
            .iter()
            .filter(|kv| kv.key.starts_with(&hp))
            .filter_map(|kv| serde_json::from_str(&kv.value).ok())
            .collect();
        published.sort_by(|a, b| a.node.cmp(&b.node));
        let qp = queue_prefix(election);
        let queue = queue
            .iter()
            .filter(|kv| kv.key.starts_with(&qp) && !kv.key[qp.len()..].contains('/'))
            .map(|kv| {
                let node = ElectionValue::parse(&kv.value).node;
                Candidate {
                    healthy: published.iter().any(|p| p.node == node && p.healthy),
                    me: node == me,
                    lease: kv.lease,
                    node,
                }
            })
            .collect();
        PeerInfo {
            queue,
            prefer: prefer
                .map(|kv| kv.value.trim().to_string())
                .filter(|s| !s.is_empty()),
            health: published,
        }
    }

    /// Other nodes that are healthy and campaigning, in queue order.
    pub fn healthy_others(&self) -> impl Iterator<Item = &Candidate> {
        self.queue.iter().filter(|c| !c.me && c.healthy)
    }

    /// Nobody leads and nobody campaigns.
    pub fn empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// The candidate elected next if the leader left now (the second in the queue), when
    /// this node leads.
    pub fn next_after_me(&self) -> Option<&Candidate> {
        match self.queue.as_slice() {
            [first, second, ..] if first.me => Some(second),
            _ => None,
        }
    }

    /// Whether `node` is a healthy candidate.
    pub fn is_healthy_candidate(&self, node: &str) -> bool {
        self.queue
            .iter()
            .any(|c| c.node == node && c.healthy && !c.me)
    }

    /// Whether this node (its entry with `lease`) should leave the queue and join again at
    /// its end so that the preferred node comes first after the leader: the holder
    /// published a preference for a healthy candidate behind us, and we do not lead.
    pub fn should_step_aside(&self, lease: i64) -> Option<&str> {
        let to = self.prefer.as_deref()?;
        let mine = self.queue.iter().position(|c| c.lease == lease)?;
        let theirs = self.queue.iter().position(|c| c.node == to && c.healthy)?;
        (mine > 0 && mine < theirs && !self.queue[mine].node.eq(to)).then_some(to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &str, lease: i64, rev: i64) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: value.into(),
            lease,
            create_revision: rev,
        }
    }

    fn health(node: &str, up: bool) -> KeyValue {
        let p = Published {
            node: node.into(),
            state: if up { "up" } else { "down" }.into(),
            healthy: up,
            since_unix_ms: 1,
            reason: String::new(),
        };
        kv(
            &health_key("/e", node),
            &serde_json::to_string(&p).unwrap(),
            1,
            1,
        )
    }

    fn value(node: &str) -> String {
        ElectionValue {
            node: node.into(),
            mac: Some("02:00:00:00:00:01".into()),
        }
        .encode()
    }

    fn queue(nodes: &[(&str, i64)]) -> Vec<KeyValue> {
        nodes
            .iter()
            .enumerate()
            .map(|(i, (n, l))| kv(&campaign_key("/e", *l), &value(n), *l, i as i64 + 10))
            .collect()
    }

    #[test]
    fn keys_live_beside_the_election_never_under_it() {
        assert_eq!(campaign_key("/cpe/vip/x", 0x1f), "/cpe/vip/x/1f");
        assert_eq!(health_key("/cpe/vip/x", "cp1"), "/cpe/vip/x.health/cp1");
        assert_eq!(prefer_key("/cpe/vip/x"), "/cpe/vip/x.prefer");
        for k in [health_key("/cpe/vip/x", "cp1"), prefer_key("/cpe/vip/x")] {
            assert!(!k.starts_with(&queue_prefix("/cpe/vip/x")), "{k}");
        }
    }

    #[test]
    fn the_view_joins_the_queue_with_the_published_health() {
        let q = queue(&[("cp1", 1), ("cp2", 2), ("cp3", 3)]);
        let h = [
            health("cp1", false),
            health("cp2", true),
            health("cp3", true),
        ];
        let v = PeerInfo::read("cp1", "/e", &q, &h, None);
        assert_eq!(v.queue.len(), 3);
        assert!(v.queue[0].me && !v.queue[0].healthy);
        let others: Vec<&str> = v.healthy_others().map(|c| c.node.as_str()).collect();
        assert_eq!(others, ["cp2", "cp3"]);
        assert_eq!(v.next_after_me().map(|c| c.node.as_str()), Some("cp2"));
        assert!(v.is_healthy_candidate("cp3"));
        assert!(!v.is_healthy_candidate("cp1"), "never this node");
        // Not leading: nobody is next after me.
        let v = PeerInfo::read("cp2", "/e", &q, &h, None);
        assert_eq!(v.next_after_me(), None);
        // Unreadable health is unhealthy; an empty queue is nobody.
        let bad = kv(&health_key("/e", "cp2"), "not json", 2, 1);
        let v = PeerInfo::read("cp1", "/e", &q, &[bad], None);
        assert_eq!(v.healthy_others().count(), 0);
        assert!(PeerInfo::read("cp1", "/e", &[], &h, None).empty());
    }

    #[test]
    fn candidates_ahead_of_the_preferred_node_step_aside() {
        let q = queue(&[("cp1", 1), ("cp2", 2), ("cp3", 3)]);
        let h = [health("cp2", true), health("cp3", true)];
        let pref = kv(&prefer_key("/e"), "cp3", 1, 5);
        let v = PeerInfo::read("cp2", "/e", &q, &h, Some(&pref));
        assert_eq!(v.should_step_aside(2), Some("cp3"));
        // The preferred node itself, the leader, and a node behind it stay.
        assert_eq!(v.should_step_aside(3), None);
        assert_eq!(v.should_step_aside(1), None);
        let q2 = queue(&[("cp1", 1), ("cp3", 3), ("cp2", 2)]);
        let v = PeerInfo::read("cp2", "/e", &q2, &h, Some(&pref));
        assert_eq!(v.should_step_aside(2), None);
        // An unhealthy preferred node is not made way for.
        let v = PeerInfo::read("cp2", "/e", &q, &[health("cp3", false)], Some(&pref));
        assert_eq!(v.should_step_aside(2), None);
        // No preference: nobody moves.
        let v = PeerInfo::read("cp2", "/e", &q, &h, None);
        assert_eq!(v.should_step_aside(2), None);
    }
}
