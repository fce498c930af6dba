//! The `etcd` source: the member list through etcd's JSON gateway (`cpe-election`'s
//! client), every few seconds (etcd has no watch on membership). Each started member's
//! first client URL that is not a loopback address gives a backend: that host at the API
//! server port (stacked etcd: the API server runs on the same machine); a member that
//! advertises only loopback URLs gives its first one. A member added
//! but not started yet (no client URL) is skipped; an answer with no usable member is
//! judged empty by the runner.
//!
//! With a client of its own (`cpe lb --discover etcd --etcd URL...`, not the VIP agent's
//! shared one, which follows the members itself), the source also asks the members the
//! list names next ([`next_endpoints`]): the `--etcd` URLs are where it starts, and a
//! rolling replacement (Cluster API replaces every machine, so every member the flags
//! named goes away) must not leave it asking removed members only, which would freeze the
//! backend set at whatever it was when the last of them went.
//!
//! It does not decide anything about backends: it reports each answer or fault.

use super::decide::Fault;
use super::Report;
use crate::BackendSpec;
use cpe_config::DiscoverySource as Source;
use cpe_config::TlsFiles;
use std::time::Duration;
use tokio::sync::mpsc;

/// The backends of a member list: `(client URLs of each member)` → hosts at `port`.
pub fn members_set(members: &[Vec<String>], port: u16) -> Vec<BackendSpec> {
    let mut out = Vec::new();
    for urls in members {
        let hosts: Vec<String> = urls.iter().filter_map(|u| url_host(u)).collect();
        // A member advertising only a loopback URL (a one-machine cluster) is taken as it is.
        let host = hosts
            .iter()
            .find(|h| !is_loopback(h))
            .or(hosts.first())
            .cloned();
        let b = host.and_then(|h| match h.parse::<std::net::IpAddr>() {
            Ok(ip) => Some(BackendSpec::from_addr(std::net::SocketAddr::new(ip, port))),
            Err(_) => BackendSpec::parse(&format!("{h}:{port}")).ok(),
        });
        if let Some(b) = b {
            if !out.contains(&b) {
                out.push(b);
            }
        }
    }
    out
}

/// The endpoints a source with its own client asks after a member-list answer: every
/// listed client URL (in etcd's order, each once) of the scheme the configured endpoints
/// use (the client's TLS was set up for it), loopback URLs left out (from another member
/// they point at the asker's own host), then the `configured` endpoints not listed, last:
/// they are what the operator gave, kept as the last resort (a name in front of etcd, a
/// member that comes back). `None` when the answer names no usable URL: keep what there is.
pub fn next_endpoints(configured: &[String], members: &[Vec<String>]) -> Option<Vec<String>> {
    use cpe_election::EndpointUrl;
    let tls = configured
        .first()
        .and_then(|u| EndpointUrl::parse(u).ok())
        .is_none_or(|u| u.tls);
    let mut out: Vec<String> = Vec::new();
    for u in members.iter().flatten() {
        let Ok(url) = EndpointUrl::parse(u) else {
            continue;
        };
        if url.tls != tls || is_loopback(&url.host) {
            continue;
        }
        let n = url.to_string();
        if !out.contains(&n) {
            out.push(n);
        }
    }
    if out.is_empty() {
        return None;
    }
    for c in configured {
        let n = EndpointUrl::parse(c).map_or_else(|_| c.clone(), |u| u.to_string());
        if !out.contains(&n) {
            out.push(n);
        }
    }
    Some(out)
}

fn url_host(u: &str) -> Option<String> {
    let rest = u
        .strip_prefix("https://")
        .or_else(|| u.strip_prefix("http://"))?;
    let authority = rest.split('/').next()?;
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    (!host.is_empty()).then(|| host.to_string())
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Polls the member list every `every` until the channel closes, through `shared` when
/// given (the VIP agent's client), else a client of its own for `endpoints`.
pub(crate) async fn run(
    shared: Option<cpe_election::Client>,
    endpoints: Vec<String>,
    tls: TlsFiles,
    port: u16,
    every: Duration,
    tx: mpsc::Sender<Report>,
) {
    // A shared client's endpoints are its owner's to keep current.
    let follow = shared.is_none();
    let made = match shared {
        Some(c) => Ok(c),
        None => cpe_election::Client::new(&endpoints, tls, Duration::from_secs(2)),
    };
    let client = match made {
        Ok(c) => c,
        Err(e) => {
            let _ = tx
                .send(Report::fault(Source::Etcd, Fault::Setup(e.to_string())))
                .await;
            return;
        }
    };
    while !tx.is_closed() {
        let report = match client.members().await {
            Ok(members) => {
                let urls: Vec<Vec<String>> = members.into_iter().map(|m| m.client_urls).collect();
                if follow {
                    follow_members(&client, &endpoints, &urls);
                }
                Report {
                    source: Source::Etcd,
                    answer: Ok(members_set(&urls, port)),
                    via: None,
                    api: Some("etcd member list"),
                }
            }
            Err(e) => Report::fault(Source::Etcd, Fault::Unreachable(e.to_string())),
        };
        if tx.send(report).await.is_err() {
            return;
        }
        tokio::time::sleep(every).await;
    }
}

/// Points `client` at the members `urls` lists ([`next_endpoints`]), logging a change.
fn follow_members(client: &cpe_election::Client, configured: &[String], urls: &[Vec<String>]) {
    let current = client.endpoints();
    let Some(next) = next_endpoints(configured, urls) else {
        return;
    };
    if next == current {
        return;
    }
    match client.set_endpoints(&next) {
        Ok(()) => {
            let added: Vec<&String> = next.iter().filter(|u| !current.contains(u)).collect();
            let removed: Vec<&String> = current.iter().filter(|u| !next.contains(u)).collect();
            if added.is_empty() && removed.is_empty() {
                // Only the order: the member list's, the flags' URLs last.
                tracing::debug!(endpoints = ?next, "discovery etcd: asking the members in the member list's order");
            } else {
                tracing::info!(?added, ?removed, endpoints = ?next,
                    "discovery etcd: the member list changed; asking its members from now on");
            }
        }
        Err(e) => tracing::warn!(
            "discovery etcd: cannot ask the listed members {next:?}: {e}; keeping {current:?}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn the_source_asks_the_listed_members_first_and_keeps_the_configured_ones_last() {
        let configured = s(&["http://10.0.0.11:2379", "http://10.0.0.12:2379"]);
        // cp1 replaced by cp4; cp2 still there; a member added but not started (no URL).
        let members = vec![
            s(&["http://10.0.0.12:2379"]),
            s(&["http://10.0.0.14:2379", "http://127.0.0.1:2379"]),
            vec![],
            s(&["http://10.0.0.12:2379/"]),
        ];
        assert_eq!(
            next_endpoints(&configured, &members).unwrap(),
            s(&[
                "http://10.0.0.12:2379",
                "http://10.0.0.14:2379",
                "http://10.0.0.11:2379"
            ])
        );
    }

    #[test]
    fn every_original_member_gone_the_source_still_asks_the_new_ones_first() {
        // Five replacements: none of the members the flags named is left.
        let configured = s(&[
            "http://10.0.0.11:2379",
            "http://10.0.0.12:2379",
            "http://10.0.0.13:2379",
        ]);
        let members = vec![
            s(&["http://10.0.0.16:2379"]),
            s(&["http://10.0.0.17:2379"]),
            s(&["http://10.0.0.18:2379"]),
        ];
        let next = next_endpoints(&configured, &members).unwrap();
        assert_eq!(
            next[..3],
            s(&[
                "http://10.0.0.16:2379",
                "http://10.0.0.17:2379",
                "http://10.0.0.18:2379"
            ])
        );
        assert_eq!(next.len(), 6, "{next:?}");
    }

    #[test]
    fn an_answer_without_usable_urls_keeps_the_endpoints() {
        let configured = s(&["https://10.0.0.11:2379"]);
        // Another scheme than the client's TLS, loopback only, garbage, nothing.
        for members in [
            vec![s(&["http://10.0.0.12:2379"])],
            vec![s(&["https://127.0.0.1:2379", "https://localhost:2379"])],
            vec![s(&["10.0.0.12:2379", "https://10.0.0.12:2379/x"])],
            vec![vec![]],
            vec![],
        ] {
            assert_eq!(next_endpoints(&configured, &members), None, "{members:?}");
        }
        let members = vec![s(&["https://[fd00::12]:2379"])];
        assert_eq!(
            next_endpoints(&configured, &members).unwrap(),
            s(&["https://[fd00::12]:2379", "https://10.0.0.11:2379"])
        );
    }

    #[test]
    fn each_member_gives_its_host_at_the_api_port() {
        let members = vec![
            vec![
                "https://127.0.0.1:2379".into(),
                "https://10.0.0.1:2379".into(),
            ],
            vec!["https://[fd00::2]:2379".into()],
            vec![],
            vec!["https://cp3.example:2379".into()],
            vec!["https://127.0.0.1:2379".into()],
        ];
        let set: Vec<String> = members_set(&members, 6443)
            .iter()
            .map(|b| b.to_string())
            .collect();
        assert_eq!(
            set,
            [
                "10.0.0.1:6443",
                "[fd00::2]:6443",
                "cp3.example:6443",
                "127.0.0.1:6443"
            ]
        );
    }
}
