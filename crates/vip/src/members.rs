//! Following etcd's membership: the agent starts from one member (its own, by default
//! kubeadm's stacked etcd at `https://127.0.0.1:2379`) and learns the others' client URLs
//! from etcd's member list (`POST /v3/cluster/member/list`), asked again every couple of
//! seconds, so a member added or removed by a rolling upgrade (Cluster API replaces
//! machines) is followed without a restart.
//!
//! [`next_endpoints`] is the pure rule: the first endpoint of the plan (the *pinned* one,
//! this machine's own member) always stays, first; the rest is exactly what the last good
//! answer lists (URLs written as cpe-election prints them); an answer with no usable URL changes nothing, so the list never drops to
//! zero nor loses its own member. [`follow`] is the I/O: ask, apply the rule, swap the
//! client's endpoints ([`cpe_election::Client::set_endpoints`]), log what changed.
//!
//! It does not decide anything about the VIP, nor which member leads (that is
//! [`crate::etcd_leader`]'s), and it never removes the pinned member even when etcd no
//! longer lists it: a machine whose own member is gone has nowhere better to start from.

use cpe_election::{Client, EndpointUrl, Member};
use std::net::IpAddr;
use std::time::Duration;

/// How often the member list is asked once it has answered.
pub const REFRESH: Duration = Duration::from_secs(2);
/// How often it is asked while etcd has not answered yet (bootstrap: etcd starts with or
/// after the agent).
pub const RETRY: Duration = Duration::from_secs(1);

/// The endpoints after a member-list answer: `pinned` first, then every started member's
/// client URLs in the order etcd lists them, each once. Left out: URLs that do not parse,
/// URLs of another scheme than `pinned`'s (the client's TLS was set up for that one),
/// loopback hosts (from another member they would point back here) and hosts that are
/// this machine's own addresses (`own`: the pinned member reached another way). `None`
/// when the answer names no usable URL: keep what there is.
pub fn next_endpoints(pinned: &str, own: &[IpAddr], members: &[Member]) -> Option<Vec<String>> {
    let pinned_tls = EndpointUrl::parse(pinned).map_or(true, |u| u.tls);
    let mut out = vec![pinned.to_string()];
    let mut seen =
        vec![EndpointUrl::parse(pinned).map_or_else(|_| pinned.to_string(), |u| u.to_string())];
    let mut usable = false;
    for m in members {
        for u in &m.client_urls {
            let Ok(url) = EndpointUrl::parse(u) else {
                continue;
            };
            if url.tls != pinned_tls {
                continue;
            }
            usable = true;
            let ip = url.host.parse::<IpAddr>().ok();
            let here = url.host.eq_ignore_ascii_case("localhost")
                || ip.is_some_and(|a| a.is_loopback() || own.contains(&a));
            if here {
                // This machine's own member, seen from etcd's side: the pinned URL
                // already reaches it.
                continue;
            }
            let n = url.to_string();
            if !seen.contains(&n) {
                seen.push(n.clone());
                out.push(n);
            }
        }
    }
    usable.then_some(out)
}

/// What changed between two endpoint lists (for the log line).
pub fn diff(old: &[String], new: &[String]) -> (Vec<String>, Vec<String>) {
    let added = new.iter().filter(|u| !old.contains(u)).cloned().collect();
    let removed = old.iter().filter(|u| !new.contains(u)).cloned().collect();
    (added, removed)
}

/// Asks the member list for ever and keeps `etcd`'s endpoints current (a task; the driver
/// aborts it). `own`: this machine's addresses. Logs every change, the first failure after
/// a success (and the first success after failures); a failed or empty answer changes
/// nothing.
pub async fn follow(etcd: Client, own: Vec<IpAddr>) {
    let Some(pinned) = etcd.endpoints().first().cloned() else {
        return;
    };
    let mut answered = false;
    let mut failing = false;
    loop {
        match etcd.members().await {
            Ok(ms) => {
                if failing || !answered {
                    tracing::info!(
                        members = ms.len(),
                        "etcd member list answered: following its members from now on"
                    );
                }
                answered = true;
                failing = false;
                let current = etcd.endpoints();
                match next_endpoints(&pinned, &own, &ms) {
                    Some(next) if next != current => match etcd.set_endpoints(&next) {
                        Ok(()) => {
                            let (added, removed) = diff(&current, &next);
                            tracing::info!(?added, ?removed, endpoints = ?next,
                                "etcd membership changed: endpoints updated");
                        }
                        Err(e) => tracing::warn!(
                            "etcd member list: cannot use {next:?}: {e}; keeping {current:?}"
                        ),
                    },
                    Some(_) => {}
                    None => tracing::warn!(
                        "etcd member list names no usable client URL: keeping {current:?}"
                    ),
                }
            }
            Err(e) if !failing => {
                failing = true;
                if answered {
                    tracing::warn!("etcd member list: {e}; keeping the endpoints as they are");
                } else {
                    tracing::info!(
                        "etcd is not answering yet ({e}): starting from {pinned}, asking for its members every {RETRY:?}"
                    );
                }
            }
            Err(_) => {}
        }
        tokio::time::sleep(if answered { REFRESH } else { RETRY }).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: u64, name: &str, urls: &[&str]) -> Member {
        Member {
            id,
            name: name.into(),
            client_urls: urls.iter().map(|s| s.to_string()).collect(),
        }
    }

    const OWN: &str = "https://127.0.0.1:2379";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn own_member_first_then_every_other_member() {
        let ms = [
            m(1, "cp-a", &["https://10.0.0.11:2379"]),
            m(2, "cp-b", &["https://10.0.0.12:2379"]),
            m(3, "cp-c", &["https://10.0.0.13:2379/"]),
        ];
        // cp-b is this machine: its advertised URL is the pinned member reached another way.
        let next = next_endpoints(OWN, &[ip("10.0.0.12")], &ms).unwrap();
        assert_eq!(
            next,
            vec![OWN, "https://10.0.0.11:2379", "https://10.0.0.13:2379"]
        );
    }

    #[test]
    fn a_member_added_or_removed_is_followed() {
        let before = [
            m(1, "cp-a", &["https://10.0.0.11:2379"]),
            m(2, "cp-b", &["https://10.0.0.12:2379"]),
        ];
        let a = next_endpoints(OWN, &[], &before).unwrap();
        // cp-d added (not started yet: no name, no client URL), then started; cp-a removed.
        let added = [before[0].clone(), before[1].clone(), m(4, "", &[])];
        assert_eq!(next_endpoints(OWN, &[], &added).unwrap(), a);
        let replaced = [
            m(2, "cp-b", &["https://10.0.0.12:2379"]),
            m(4, "cp-d", &["https://10.0.0.14:2379"]),
        ];
        let b = next_endpoints(OWN, &[], &replaced).unwrap();
        assert_eq!(
            b,
            vec![OWN, "https://10.0.0.12:2379", "https://10.0.0.14:2379"]
        );
        assert_eq!(
            diff(&a, &b),
            (
                vec!["https://10.0.0.14:2379".to_string()],
                vec!["https://10.0.0.11:2379".to_string()]
            )
        );
    }

    #[test]
    fn never_zero_and_never_without_the_pinned_member() {
        // An empty answer, or one with only unusable URLs: keep what there is.
        assert_eq!(next_endpoints(OWN, &[], &[]), None);
        assert_eq!(next_endpoints(OWN, &[], &[m(4, "", &[])]), None);
        assert_eq!(
            next_endpoints(
                OWN,
                &[],
                &[m(1, "x", &["not a url", "unix:///run/etcd.sock"])]
            ),
            None
        );
        // The pinned member stays first even when etcd does not list it.
        let only_others = [m(2, "cp-b", &["https://10.0.0.12:2379"])];
        assert_eq!(
            next_endpoints(OWN, &[], &only_others).unwrap(),
            vec![OWN, "https://10.0.0.12:2379"]
        );
        // Only this machine's own member listed: the pinned one alone (an answer).
        let alone = [m(
            1,
            "cp-a",
            &["https://10.0.0.11:2379", "https://127.0.0.1:2379"],
        )];
        assert_eq!(
            next_endpoints(OWN, &[ip("10.0.0.11")], &alone).unwrap(),
            vec![OWN]
        );
    }

    #[test]
    fn other_schemes_loopback_and_duplicates_are_left_out() {
        let ms = [
            m(1, "a", &["http://10.0.0.11:2379", "https://10.0.0.11:2379"]),
            m(2, "b", &["https://localhost:2379", "https://[::1]:2379"]),
            m(
                3,
                "c",
                &["https://10.0.0.13:2379", "https://10.0.0.13:2379/"],
            ),
            m(5, "e", &["https://[fd00::15]:2379"]),
        ];
        assert_eq!(
            next_endpoints(OWN, &[], &ms).unwrap(),
            vec![
                OWN,
                "https://10.0.0.11:2379",
                "https://10.0.0.13:2379",
                "https://[fd00::15]:2379"
            ]
        );
        // A plain-http pinned member follows plain-http members only.
        let plain = "http://10.9.0.1:2379";
        assert_eq!(
            next_endpoints(plain, &[], &ms).unwrap(),
            vec![plain, "http://10.0.0.11:2379"]
        );
    }
}
