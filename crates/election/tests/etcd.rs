//! The election client against a real etcd (Debian `etcd-server` 3.4) on loopback: one
//! member with its own data directory and ports picked free at start, killed at the end.
//! It needs the `etcd` binary; without it the test fails and says so.

mod common;

use common::{client_for, free_port, start_etcd};
use cpe_election::{Client, KeepAlive};
use std::time::{Duration, Instant};

/// Keeps a lease alive every 500 ms until aborted.
fn keep(c: &Client, id: i64) -> tokio::task::JoinHandle<()> {
    let c = c.clone();
    tokio::spawn(async move {
        loop {
            let _ = c.keep_alive(id).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn election_hands_over_on_resign_on_expiry_and_on_cancel() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let etcd = start_etcd().await;
    let name = "/cpe-test/vip";
    let c1 = client_for(std::slice::from_ref(&etcd.url));
    let c2 = client_for(std::slice::from_ref(&etcd.url));

    // Two candidates: the first is elected at once, the second waits.
    let l1 = c1.grant(Duration::from_secs(2)).await.unwrap();
    assert!(l1.ttl >= Duration::from_secs(2), "{l1:?}");
    let k1 = keep(&c1, l1.id);
    let key1 = c1.campaign(name, l1.id, "n1").await.unwrap();
    assert_eq!(key1.lease, l1.id);
    let l2 = c2.grant(Duration::from_secs(2)).await.unwrap();
    let k2 = keep(&c2, l2.id);
    let c2b = c2.clone();
    let mut camp2 = tokio::spawn(async move { c2b.campaign(name, l2.id, "n2").await });
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        !camp2.is_finished(),
        "second candidate elected while the first leads"
    );
    assert_eq!(c2.leader(name).await.unwrap().unwrap().value, "n1");

    // Resign hands over at once.
    let t = Instant::now();
    c1.resign(&key1).await.unwrap();
    let key2 = tokio::time::timeout(Duration::from_secs(2), &mut camp2)
        .await
        .expect("resign did not hand over")
        .unwrap()
        .unwrap();
    eprintln!("handover after resign: {:?}", t.elapsed());
    assert_eq!(key2.lease, l2.id);
    assert_eq!(c1.leader(name).await.unwrap().unwrap().value, "n2");

    // The first candidate campaigns again; the holder stops renewing: its lease expires
    // and the waiting candidate takes over.
    let c1b = c1.clone();
    let mut camp1 = tokio::spawn(async move { c1b.campaign(name, l1.id, "n1").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!camp1.is_finished());
    k2.abort();
    let t = Instant::now();
    let key1 = tokio::time::timeout(Duration::from_secs(6), &mut camp1)
        .await
        .expect("expired lease did not hand over")
        .unwrap()
        .unwrap();
    eprintln!(
        "handover after the holder stopped renewing: {:?}",
        t.elapsed()
    );
    assert_eq!(key1.lease, l1.id);
    assert_eq!(c2.keep_alive(l2.id).await.unwrap(), KeepAlive::Gone);
    assert_eq!(c2.leader(name).await.unwrap().unwrap().value, "n1");

    // A campaign that is dropped leaves no key behind: after the leader's lease is
    // revoked, nobody leads.
    let l3 = c2.grant(Duration::from_secs(2)).await.unwrap();
    let c2c = c2.clone();
    let camp3 = tokio::spawn(async move { c2c.campaign(name, l3.id, "n3").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    camp3.abort();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let k3 = keep(&c2, l3.id); // the lease lives on: only the key must have gone
    k1.abort();
    c1.revoke(l1.id).await.unwrap();
    c1.revoke(l1.id).await.unwrap(); // revoking twice is fine
    assert_eq!(c1.leader(name).await.unwrap(), None);
    k3.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fails_over_to_the_next_member_and_reports_unreachable() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let etcd = start_etcd().await;
    let dead = format!("http://127.0.0.1:{}", free_port());
    let c = client_for(&[dead.clone(), etcd.url.clone()]);
    let l = c.grant(Duration::from_secs(3)).await.unwrap();
    assert_eq!(c.failures(), 1);
    // The live member is now tried first.
    assert!(matches!(
        c.keep_alive(l.id).await.unwrap(),
        KeepAlive::Renewed(_)
    ));
    assert_eq!(c.failures(), 1);

    let only_dead = client_for(std::slice::from_ref(&dead));
    let e = only_dead.grant(Duration::from_secs(2)).await.unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.starts_with("etcd unreachable:") && msg.contains(&dead),
        "{msg}"
    );
}
