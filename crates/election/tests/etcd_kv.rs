//! The plain-key calls against a real etcd (Debian `etcd-server` 3.4) on loopback: a key
//! put under a lease goes with the lease, a prefix read comes oldest first and sees the
//! election's candidates, and the guarded delete acts only on a key still attached to the
//! given lease with the given value. Needs the `etcd` binary (fails and says so without).

mod common;

use common::{client_for, start_etcd, Etcd};
use cpe_election::Client;
use std::time::Duration;

async fn start() -> (Etcd, Client) {
    let etcd = start_etcd().await;
    let c = client_for(std::slice::from_ref(&etcd.url));
    (etcd, c)
}

#[tokio::test]
async fn keys_under_a_lease_prefix_reads_and_the_guarded_delete() {
    let (_etcd, c) = start().await;
    let a = c.grant(Duration::from_secs(5)).await.unwrap();
    let b = c.grant(Duration::from_secs(5)).await.unwrap();
    // Two candidates of election /e, in this order, and a health key beside it.
    let ca = {
        let c = c.clone();
        tokio::spawn(async move { c.campaign("/e", a.id, "va").await })
    };
    ca.await.unwrap().unwrap();
    let cb = {
        let c = c.clone();
        tokio::spawn(async move { c.campaign("/e", b.id, "vb").await })
    };
    c.put("/e.health/n1", "{\"state\":\"up\"}", a.id)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let queue = c.range_prefix("/e/").await.unwrap();
    let values: Vec<&str> = queue.iter().map(|k| k.value.as_str()).collect();
    assert_eq!(values, ["va", "vb"], "oldest first");
    assert_eq!(queue[0].key, format!("/e/{:x}", a.id));
    assert_eq!(queue[0].lease, a.id);
    let health = c.range_prefix("/e.health/").await.unwrap();
    assert_eq!(health.len(), 1);
    assert_eq!(health[0].lease, a.id);
    assert!(c.range_prefix("/nothing/").await.unwrap().is_empty());

    // The guarded delete: wrong lease, wrong value: nothing; right ones: both keys gone
    // and the next candidate elected.
    let key = format!("/e/{:x}", a.id);
    assert!(!c.delete_if_held(&key, b.id, "va", &[]).await.unwrap());
    assert!(!c.delete_if_held(&key, a.id, "vx", &[]).await.unwrap());
    assert_eq!(c.range_prefix("/e/").await.unwrap().len(), 2);
    assert!(c
        .delete_if_held(&key, a.id, "va", &["/e.health/n1"])
        .await
        .unwrap());
    let elected = tokio::time::timeout(Duration::from_secs(3), cb).await;
    assert!(matches!(elected, Ok(Ok(Ok(_)))), "{elected:?}");
    assert!(c.range_prefix("/e.health/").await.unwrap().is_empty());
    // A key that is gone is not deleted twice.
    assert!(!c.delete_if_held(&key, a.id, "va", &[]).await.unwrap());
    // A key under a revoked lease goes with it.
    c.put("/e.health/n2", "x", b.id).await.unwrap();
    c.revoke(b.id).await.unwrap();
    assert!(c.range_prefix("/e.health/").await.unwrap().is_empty());
}
