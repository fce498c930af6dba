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
pub async fn resolve(host: &str, port: u16, timeout: Duration) -> Result<Vec<IpAddr>, String> {
    let host = host.trim_end_matches('.');
    match tokio::time::timeout(timeout, tokio::net::lookup_host((host, port))).await {
        Err(_) => Err(format!("no answer from the resolver within {timeout:?}")),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(it)) => {
            let mut v: Vec<IpAddr> = it.map(|a| a.ip()).collect();
            v.dedup();
            Ok(v)
        }
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
