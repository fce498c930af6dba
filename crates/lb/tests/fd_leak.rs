//! Alone in its own test binary: it counts this process's file descriptors, which other
//! tests running in parallel would disturb.

mod common;

use common::*;
use cpe_health::State;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_accepting_at_once_drains_and_leaks_no_descriptor() {
    let b = Backend::start("b0").await;
    let before = open_fds();
    let mut c = config(vec![b.spec()]);
    c.drain_timeout = Duration::from_secs(3);
    let lb = start(c).await;
    until("up", || state_of(&lb.handle, &b) == State::Up).await;
    for _ in 0..50 {
        assert_eq!(once(lb.addr).await.unwrap(), "b0");
    }
    let mut long = Conn::open(lb.addr).await.unwrap();
    assert_eq!(long.get().await.unwrap(), "b0");
    lb.stop.cancel();
    // The listener is closed at once: new connections are refused...
    until("listener closed", || {
        std::net::TcpStream::connect_timeout(&lb.addr, Duration::from_millis(100)).is_err()
    })
    .await;
    // ...while the open one still works during the drain.
    assert_eq!(long.get().await.unwrap(), "b0");
    drop(long);
    tokio::time::timeout(Duration::from_secs(2), lb.task)
        .await
        .expect("run did not return once the last connection ended")
        .unwrap();
    drop(lb.handle);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = open_fds();
    assert!(
        after <= before + 2,
        "descriptors before {before}, after {after}"
    );
}
