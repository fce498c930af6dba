//! Which backends a reload keeps, adds and retires, which changed settings need a
//! restart, and when a retired backend's drain is over: pure functions of the specs, the
//! connection count and the time, tested here without sockets or a clock.
//!
//! A backend is identified by its spec (host and port as written). A kept backend keeps
//! everything it has (its state, its checker, its connections), so its health plays no
//! part in the decision: a backend that is down now and still listed stays, to come back
//! up. It does not start checkers, swap the member list or close connections: the reload
//! driver (`reload.rs`) does, with these answers.

use crate::config::{BackendSpec, LbConfig};
use tokio::time::Instant;

/// One member of the new list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Member {
    /// The running backend at this index of the current list.
    Keep(usize),
    /// A new backend, from this index of the new spec list.
    Add(usize),
}

/// What a reload does to the members.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diff {
    /// The new member list, in the order of the new specs, each spec once.
    pub members: Vec<Member>,
    /// Indices into the current list of the backends that are not kept: they get no new
    /// connections and drain.
    pub retire: Vec<usize>,
}

/// From the current members' specs to the `next` spec list. A spec listed twice is one
/// member; a spec that was running twice is kept once and its other copy retired.
pub fn diff(current: &[BackendSpec], next: &[BackendSpec]) -> Diff {
    let mut out = Diff::default();
    let mut kept = vec![false; current.len()];
    for (j, spec) in next.iter().enumerate() {
        if next[..j].contains(spec) {
            continue;
        }
        match current.iter().position(|c| c == spec) {
            Some(i) => {
                kept[i] = true;
                out.members.push(Member::Keep(i));
            }
            None => out.members.push(Member::Add(j)),
        }
    }
    out.retire = (0..current.len()).filter(|i| !kept[*i]).collect();
    out
}

/// The settings that differ between `old` and `new` but only take effect after a restart
/// (named as in the definition).
pub fn needs_restart(old: &LbConfig, new: &LbConfig) -> Vec<&'static str> {
    let mut out = Vec::new();
    if new.listen != old.listen || new.listen_also != old.listen_also {
        out.push("listen");
    }
    if new.admin != old.admin {
        out.push("admin");
    }
    if new.admin_token_file != old.admin_token_file {
        out.push("adminTokenFile");
    }
    if new.max_connections != old.max_connections {
        out.push("maxConnections");
    }
    if new.workers != old.workers {
        out.push("workers");
    }
    if new.discovery != old.discovery {
        out.push("loadBalancer.discovery");
    }
    out
}

/// Where a retired backend's drain stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drain {
    /// Connections are open and the deadline is ahead: let them run.
    Wait,
    /// No connection left: the backend can go.
    Done,
    /// The deadline passed with connections open: close them.
    Cut,
}

/// `open` connections at `now`, for a drain that ends at `deadline`.
pub fn drain(open: i64, now: Instant, deadline: Instant) -> Drain {
    if open <= 0 {
        Drain::Done
    } else if now < deadline {
        Drain::Wait
    } else {
        Drain::Cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn specs(list: &[&str]) -> Vec<BackendSpec> {
        list.iter()
            .map(|s| BackendSpec::parse(s).unwrap())
            .collect()
    }

    #[test]
    fn kept_added_and_retired() {
        let cur = specs(&["10.0.0.1:6443", "10.0.0.2:6443", "10.0.0.3:6443"]);
        let next = specs(&["10.0.0.3:6443", "10.0.0.4:6443", "10.0.0.1:6443"]);
        let d = diff(&cur, &next);
        assert_eq!(
            d.members,
            [Member::Keep(2), Member::Add(1), Member::Keep(0)],
            "the new order"
        );
        assert_eq!(d.retire, [1]);
    }

    #[test]
    fn the_same_list_changes_nothing() {
        let cur = specs(&["a.example:6443", "10.0.0.2:6443"]);
        let d = diff(&cur, &cur);
        assert_eq!(d.members, [Member::Keep(0), Member::Keep(1)]);
        assert!(d.retire.is_empty());
    }

    #[test]
    fn a_spec_listed_twice_is_one_member() {
        let cur = specs(&["10.0.0.1:6443"]);
        let next = specs(&[
            "10.0.0.2:6443",
            "10.0.0.2:6443",
            "10.0.0.1:6443",
            "10.0.0.1:6443",
        ]);
        let d = diff(&cur, &next);
        assert_eq!(d.members, [Member::Add(0), Member::Keep(0)]);
        assert!(d.retire.is_empty());
        // Running twice (started from a list with a duplicate): one copy stays.
        let cur = specs(&["10.0.0.1:6443", "10.0.0.1:6443"]);
        let d = diff(&cur, &specs(&["10.0.0.1:6443"]));
        assert_eq!(d.members, [Member::Keep(0)]);
        assert_eq!(d.retire, [1]);
    }

    #[test]
    fn names_and_ports_are_compared_as_written() {
        let cur = specs(&["cp1.example:6443"]);
        let d = diff(&cur, &specs(&["cp1.example:6444", "CP1.example:6443"]));
        assert_eq!(d.retire, [0], "another port or spelling is another backend");
        assert_eq!(d.members, [Member::Add(0), Member::Add(1)]);
    }

    #[test]
    fn everything_replaced() {
        let cur = specs(&["10.0.0.1:6443", "10.0.0.2:6443"]);
        let d = diff(&cur, &specs(&["10.0.0.9:6443"]));
        assert_eq!(d.members, [Member::Add(0)]);
        assert_eq!(d.retire, [0, 1]);
    }

    #[test]
    fn restart_only_settings_are_named() {
        let old = LbConfig::new("127.0.0.1:6443".parse().unwrap(), specs(&["10.0.0.1:6443"]));
        let mut new = old.clone();
        new.backends = specs(&["10.0.0.2:6443"]);
        new.drain_timeout = Duration::from_secs(1);
        assert!(needs_restart(&old, &new).is_empty(), "applied on reload");
        new.listen = "127.0.0.1:7443".parse().unwrap();
        new.admin = Some("127.0.0.1:1".parse().unwrap());
        new.admin_token_file = Some("/etc/cpe/token".into());
        new.max_connections += 1;
        new.workers += 1;
        assert_eq!(
            needs_restart(&old, &new),
            [
                "listen",
                "admin",
                "adminTokenFile",
                "maxConnections",
                "workers"
            ]
        );
    }

    #[test]
    fn drain_ends_when_the_last_connection_does_or_at_the_deadline() {
        let t0 = Instant::now();
        let deadline = t0 + Duration::from_millis(800);
        assert_eq!(drain(3, t0, deadline), Drain::Wait);
        assert_eq!(drain(0, t0, deadline), Drain::Done);
        assert_eq!(
            drain(3, deadline - Duration::from_millis(1), deadline),
            Drain::Wait
        );
        assert_eq!(drain(3, deadline, deadline), Drain::Cut);
        assert_eq!(drain(0, deadline, deadline), Drain::Done, "nothing to cut");
        assert_eq!(drain(-1, t0, deadline), Drain::Done);
    }
}
