//! The node-local preset's listening: one worker serving `127.0.0.1` and `[::1]` at the
//! same port (the plan's `listen_also`), and a stranger already on `[::1]` at that port
//! refusing the start (it would receive the node's API traffic for half of `localhost`).
//! A host without `::1` fails these tests (they say so) rather than skipping them.

mod common;

use common::*;
use cpe_lb::{Lb, LbError};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

fn has_ipv6_loopback() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_worker_serves_both_loopback_families_at_one_port() {
    assert!(
        has_ipv6_loopback(),
        "this test needs ::1 on the host's loopback"
    );
    let b = Backend::start("b0").await;
    let mut c = config(vec![b.spec()]);
    c.listen_also = vec![IpAddr::V6(Ipv6Addr::LOCALHOST)];
    c.workers = 1;
    let lb = start(c).await;
    let v6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), lb.addr.port());
    until("b0 up", || {
        lb.handle
            .states()
            .iter()
            .all(|(_, s)| *s == cpe_health::State::Up)
    })
    .await;
    assert_eq!(once(lb.addr).await.unwrap(), "b0");
    assert_eq!(once(v6).await.unwrap(), "b0");
    lb.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_on_the_other_loopback_refuses_the_start() {
    assert!(
        has_ipv6_loopback(),
        "this test needs ::1 on the host's loopback"
    );
    // A port free on 127.0.0.1, then taken on [::1] by "another process".
    let (port, stranger) = loop {
        let v4 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = v4.local_addr().unwrap().port();
        drop(v4);
        if let Ok(l) = std::net::TcpListener::bind(("::1", port)) {
            break (port, l);
        }
    };
    let b = Backend::start("b0").await;
    let mut c = config(vec![b.spec()]);
    c.listen = SocketAddr::from(([127, 0, 0, 1], port));
    c.listen_also = vec![IpAddr::V6(Ipv6Addr::LOCALHOST)];
    c.workers = 1;
    match Lb::bind(c).await {
        Err(e @ LbError::Listen { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains(&format!("[::1]:{port}")) && msg.contains("in use"),
                "{msg}"
            );
        }
        Err(e) => panic!("another error: {e}"),
        Ok(_) => panic!("started although [::1]:{port} belongs to another process"),
    }
    drop(stranger);
}
