//! One TCP connect with a timeout, and name resolution. A single attempt each: preflight
//! wants to know what the network does now, not whether a retry would help.

use crate::facts::Connect;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::net::TcpStream;

pub async fn connect(addr: SocketAddr, timeout: Duration) -> Connect {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Err(_) => Connect::Timeout,
        Ok(Ok(_stream)) => Connect::Accepted,
        Ok(Err(e)) => classify(&e),
    }
}

pub fn classify(e: &std::io::Error) -> Connect {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => Connect::Refused,
        std::io::ErrorKind::TimedOut => Connect::Timeout,
        std::io::ErrorKind::HostUnreachable | std::io::ErrorKind::NetworkUnreachable => {
            Connect::Unreachable(e.to_string())
        }
        _ => Connect::Error(e.to_string()),
    }
}

/// The addresses `host` resolves to (the system resolver: /etc/hosts, then DNS).
///
/// `getaddrinfo` cannot be cancelled, so it runs on a detached thread: when it outlasts the
/// timeout the check reports that, and the process can still exit at once (a blocking task
/// of the runtime would hold the runtime's shutdown until the resolver gives up).
pub async fn resolve(host: &str, port: u16, timeout: Duration) -> Result<Vec<IpAddr>, String> {
    use std::net::ToSocketAddrs;
    let host = host.trim_end_matches('.').to_string();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("resolve".into())
        .spawn(move || {
            let r = (host.as_str(), port)
                .to_socket_addrs()
                .map(|it| it.map(|a| a.ip()).collect::<Vec<_>>())
                .map_err(|e| e.to_string());
            let _ = tx.send(r);
        });
    if let Err(e) = spawned {
        return Err(format!("cannot start the resolver thread: {e}"));
    }
    match tokio::time::timeout(timeout, rx).await {
        Err(_) => Err(format!("no answer from the resolver within {timeout:?}")),
        Ok(Err(_)) => Err("the resolver thread ended without an answer".into()),
        // One entry per address, in the resolver's order (it lists one per socket type).
        Ok(Ok(r)) => r.map(|v| {
            let mut out: Vec<IpAddr> = Vec::new();
            for a in v {
                if !out.contains(&a) {
                    out.push(a);
                }
            }
            out
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refused_and_accepted_on_loopback() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = l.local_addr().unwrap();
        assert_eq!(connect(a, Duration::from_secs(2)).await, Connect::Accepted);
        drop(l);
        assert_eq!(connect(a, Duration::from_secs(2)).await, Connect::Refused);
    }

    #[tokio::test]
    async fn localhost_resolves() {
        let v = resolve("localhost", 1, Duration::from_secs(2))
            .await
            .unwrap();
        assert!(v.iter().any(|a| a.is_loopback()), "{v:?}");
    }
}
