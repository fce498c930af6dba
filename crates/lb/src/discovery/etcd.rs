//! The `etcd` source: the member list through etcd's JSON gateway (`cpe-election`'s
//! client), every few seconds (etcd has no watch on membership). Each started member's
//! first client URL that is not a loopback address gives a backend: that host at the API
//! server port (stacked etcd: the API server runs on the same machine); a member that
//! advertises only loopback URLs gives its first one. A member added
//! but not started yet (no client URL) is skipped; an answer with no usable member is
//! judged empty by the runner.
//!
//! It does not decide anything: it reports each answer or fault.

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

#[cfg(test)]
mod tests {
    use super::*;

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
