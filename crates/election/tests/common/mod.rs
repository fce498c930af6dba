//! Shared by the election tests, which each start real etcd members on loopback.
//! (Not every test binary that includes this module uses all of it.)
#![allow(dead_code)]

use cpe_election::{Client, TlsFiles};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A loopback port free at this instant (for an etcd client or peer listener).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A one-member etcd on loopback, killed on drop.
pub struct Etcd {
    child: Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a one-member etcd (Debian `etcd-server`) and waits until it grants a lease.
pub async fn start_etcd() -> Etcd {
    let dir = tempfile::tempdir().unwrap();
    let (client, peer) = (free_port(), free_port());
    let url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let child = Command::new("etcd")
        .args(["--name", "t1", "--data-dir"])
        .arg(dir.path().join("data"))
        .args([
            "--listen-client-urls",
            &url,
            "--advertise-client-urls",
            &url,
        ])
        .args(["--listen-peer-urls", &peer_url])
        .args(["--initial-advertise-peer-urls", &peer_url])
        .args(["--initial-cluster", &format!("t1={peer_url}")])
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(dir.path().join("etcd.log")).unwrap(),
        ))
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start `etcd` ({e}): install Debian's etcd-server (scripts/test.sh does)")
        });
    let etcd = Etcd {
        child,
        url,
        _dir: dir,
    };
    let c = client_for(std::slice::from_ref(&etcd.url));
    let t0 = Instant::now();
    loop {
        if c.grant(Duration::from_secs(2)).await.is_ok() {
            return etcd;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "etcd did not come up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn client_for(urls: &[String]) -> Client {
    Client::new(urls, TlsFiles::default(), Duration::from_secs(1)).unwrap()
}
