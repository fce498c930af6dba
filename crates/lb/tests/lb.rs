//! The load balancer on loopback, in-process, against small HTTP backends whose readiness
//! and life the tests control. Real sockets and real time (these are the driver's tests;
//! the decisions have their own pure unit tests), waits bounded by polling deadlines.

mod common;

use common::*;
use cpe_health::State;
use cpe_lb::{BackendSpec, Lb};
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_backend_costs_no_new_connection_and_leaves_rotation() {
    let bs = [
        Backend::start("b0").await,
        Backend::start("b1").await,
        Backend::start("b2").await,
    ];
    let lb = start(config(bs.iter().map(Backend::spec).collect())).await;
    until("all up", || {
        lb.handle.states().iter().all(|(_, s)| *s == State::Up)
    })
    .await;

    let addr = lb.addr;
    // One request at a time on a new connection each. The one in flight on b1 at the
    // instant it dies may fail (a crash loses what it was doing); every other one must be
    // answered: a connect refused by the dead backend is retried on another one.
    let client = tokio::spawn(async move {
        let mut seen = std::collections::BTreeMap::new();
        let mut failed = Vec::new();
        for _ in 0..300 {
            match once(addr).await {
                Ok(name) => *seen.entry(name).or_insert(0) += 1,
                Err(e) => failed.push(e.to_string()),
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        (seen, failed)
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    bs[1].kill.cancel();
    let killed_at = tokio::time::Instant::now();
    until("b1 out of rotation", || {
        state_of(&lb.handle, &bs[1]) < State::Draining
    })
    .await;
    let out_after = killed_at.elapsed();
    let (seen, failed) = client.await.unwrap();
    assert!(
        failed.len() <= 1,
        "only the request in flight on the killed backend may fail: {failed:?}"
    );
    assert!(
        seen.contains_key("b0") && seen.contains_key("b2"),
        "{seen:?}"
    );
    assert!(out_after < Duration::from_secs(2), "{out_after:?}");
    eprintln!("killed backend out of rotation after {out_after:?}; answers by backend: {seen:?}; failed: {failed:?}");
    lb.stop.cancel();
    lb.task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_not_ready_backend_gets_no_new_connection_but_keeps_its_own() {
    let bs = [Backend::start("b0").await, Backend::start("b1").await];
    let lb = start(config(vec![bs[0].spec()])).await;
    until("b0 up", || state_of(&lb.handle, &bs[0]) == State::Up).await;
    // A long-lived connection on b0 (the only backend at the time).
    let mut long = Conn::open(lb.addr).await.unwrap();
    assert_eq!(long.get().await.unwrap(), "b0");
    lb.handle
        .reload(config(vec![bs[0].spec(), bs[1].spec()]))
        .unwrap();
    until("b1 up", || state_of(&lb.handle, &bs[1]) == State::Up).await;

    // b0's API server enters its shutdown delay: /readyz 503, still serving.
    bs[0].ready.store(503, Ordering::Relaxed);
    until("b0 draining", || {
        state_of(&lb.handle, &bs[0]) == State::Draining
    })
    .await;
    for _ in 0..30 {
        assert_eq!(
            once(lb.addr).await.unwrap(),
            "b1",
            "a new connection went to a draining backend"
        );
    }
    assert_eq!(
        long.get().await.unwrap(),
        "b0",
        "the existing connection was cut"
    );

    // Ready again: back in rotation after `rise` passes.
    bs[0].ready.store(200, Ordering::Relaxed);
    until("b0 up again", || state_of(&lb.handle, &bs[0]) == State::Up).await;
    let status = lb.handle.status();
    let b0 = status["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == bs[0].addr.to_string())
        .unwrap();
    assert!(
        b0["reason"].as_str().unwrap().contains("RECOVERING->UP"),
        "{b0}"
    );
    lb.stop.cancel();
    lb.task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_check_fails_tcp_alive_backends_still_serve() {
    let b = Backend::start("b0").await;
    let lb = start(config(vec![b.spec()])).await;
    until("up", || state_of(&lb.handle, &b) == State::Up).await;
    // etcd stalls: /readyz 500 everywhere, the server still accepts connections.
    b.ready.store(500, Ordering::Relaxed);
    until("draining", || state_of(&lb.handle, &b) == State::Draining).await;
    until("fallback", || lb.handle.status()["fallback"] == true).await;
    assert_eq!(once(lb.addr).await.unwrap(), "b0");
    let m = lb.handle.metrics_text();
    assert!(m.contains("cpe_lb_fallback 1"), "{m}");
    assert!(m.contains("cpe_lb_connections_fallback_total 1"), "{m}");
    lb.stop.cancel();
    lb.task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_backend_keeps_its_connections_until_the_drain_timeout() {
    let bs = [Backend::start("b0").await, Backend::start("b1").await];
    let mut c = config(vec![bs[0].spec()]);
    let lb = start(c.clone()).await;
    until("b0 up", || state_of(&lb.handle, &bs[0]) == State::Up).await;
    let mut long = Conn::open(lb.addr).await.unwrap();
    assert_eq!(long.get().await.unwrap(), "b0");

    c.backends = vec![bs[1].spec()];
    c.drain_timeout = Duration::from_millis(800);
    let r = lb.handle.reload(c).unwrap();
    assert_eq!(r.removed, [bs[0].addr.to_string()]);
    assert_eq!(r.added, [bs[1].addr.to_string()]);
    until("b1 up", || {
        lb.handle.states() == [(bs[1].addr.to_string(), State::Up)]
    })
    .await;
    assert_eq!(once(lb.addr).await.unwrap(), "b1");
    assert_eq!(
        long.get().await.unwrap(),
        "b0",
        "cut before the drain timeout"
    );
    let removed = lb.handle.status()["removed"].clone();
    assert_eq!(removed[0]["name"], bs[0].addr.to_string(), "{removed}");
    // The drain timeout closes it (when exactly is `reload.rs`'s paused-clock test):
    // wait for the close rather than a fixed time.
    let cut = tokio::time::timeout(Duration::from_secs(5), async {
        while long.get().await.is_ok() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(cut.is_ok(), "still open 5 s after the drain timeout");
    until("no backend listed as removed", || {
        lb.handle.status()["removed"] == serde_json::json!([])
    })
    .await;

    // An invalid reload changes nothing.
    let err = lb.handle.reload(config(vec![])).unwrap_err();
    assert!(err.to_string().contains("no backends"), "{err}");
    assert_eq!(once(lb.addr).await.unwrap(), "b1");
    lb.stop.cancel();
    lb.task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_limit_closes_new_connections_and_counts_them() {
    let b = Backend::start("b0").await;
    let mut c = config(vec![b.spec()]);
    c.max_connections = 2;
    let lb = start(c).await;
    until("up", || state_of(&lb.handle, &b) == State::Up).await;
    // Two clients that connect and send nothing hold both slots.
    let _idle1 = TcpStream::connect(lb.addr).await.unwrap();
    let _idle2 = TcpStream::connect(lb.addr).await.unwrap();
    until("two open", || lb.handle.active_connections() == 2).await;
    let e = once(lb.addr).await;
    assert!(e.is_err(), "a third connection was served: {e:?}");
    let m = lb.handle.metrics_text();
    assert!(m.contains("cpe_lb_connections_rejected_total 1"), "{m}");
    drop(_idle1);
    until("a slot free", || lb.handle.active_connections() == 1).await;
    assert_eq!(once(lb.addr).await.unwrap(), "b0");
    lb.stop.cancel();
    lb.task.await.unwrap();
}

#[tokio::test]
async fn a_port_in_use_is_named_and_unreachable_backends_start_down() {
    let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = taken.local_addr().unwrap();
    let mut c = config(vec![BackendSpec::parse("127.0.0.1:1").unwrap()]);
    c.listen = addr;
    let e = Lb::bind(c)
        .await
        .err()
        .expect("bound a port in use")
        .to_string();
    assert!(e.contains(&addr.to_string()) && e.contains("in use"), "{e}");

    // Unreachable and unresolvable backends: the LB starts and reports them down.
    let c = config(vec![
        BackendSpec::parse("127.0.0.1:1").unwrap(),
        BackendSpec::parse("nosuch.invalid:6443").unwrap(),
    ]);
    let lb = Lb::bind(c).await.unwrap();
    let h = lb.handle();
    assert!(
        h.states().iter().all(|(_, s)| *s == State::Down),
        "{:?}",
        h.states()
    );
    let st = h.status();
    assert_eq!(st["kind"], "lb");
    let reasons = st["backends"].to_string();
    assert!(reasons.contains("connection refused"), "{reasons}");
    assert!(reasons.contains("nosuch.invalid"), "{reasons}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_accepts_and_never_answers_goes_down() {
    let good = Backend::start("good").await;
    // Accepts (the kernel does) and never reads or answers.
    let hung = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hung_addr = hung.local_addr().unwrap();
    let lb = start(config(vec![good.spec(), BackendSpec::from_addr(hung_addr)])).await;
    until("hung backend down", || {
        lb.handle
            .states()
            .iter()
            .any(|(n, s)| *n == hung_addr.to_string() && *s == State::Down)
    })
    .await;
    let st = lb.handle.status().to_string();
    assert!(st.contains("no answer within the timeout"), "{st}");
    // A silent client does not hold anyone else up.
    let _silent = TcpStream::connect(lb.addr).await.unwrap();
    for _ in 0..10 {
        assert_eq!(once(lb.addr).await.unwrap(), "good");
    }
    lb.stop.cancel();
    lb.task.await.unwrap_or(());
    drop(hung);
}

/// Several workers share the port through SO_REUSEPORT, which would also let a second
/// load balancer (same user) join it and silently take half its connections: the port is
/// claimed by a plain socket first, so a second `cpe lb` on it is refused and named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_share_the_port_but_a_second_load_balancer_cannot_join_it() {
    let b = Backend::start("b").await;
    let mut c = config(vec![b.spec()]);
    c.workers = 3;
    let lb = start(c.clone()).await;

    let mut again = c.clone();
    again.listen = lb.addr;
    again.admin = None;
    let e = Lb::bind(again)
        .await
        .err()
        .expect("a second load balancer joined a port in use")
        .to_string();
    assert!(
        e.contains(&lb.addr.to_string()) && e.contains("in use"),
        "{e}"
    );

    // Every connection is served, whichever worker's socket the kernel gave it to.
    for i in 0..60 {
        let answer = once(lb.addr)
            .await
            .unwrap_or_else(|e| panic!("request {i}: {e}"));
        assert_eq!(answer, "b");
    }
    lb.stop.cancel();
    lb.task.await.unwrap();
    assert!(
        TcpStream::connect(lb.addr).await.is_err(),
        "a worker's socket outlived the load balancer"
    );
}

/// `run` owns worker threads: if its future is dropped (the task aborted) they must not
/// keep the port open or the connections running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_run_future_stops_the_workers() {
    let b = Backend::start("b").await;
    let lb = start(config(vec![b.spec()])).await;
    let mut idle = TcpStream::connect(lb.addr).await.unwrap();
    until("connection forwarded", || {
        lb.handle.active_connections() == 1
    })
    .await;
    lb.task.abort();
    let _ = lb.task.await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(lb.addr).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "still accepting after run was dropped"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The open connection was cut, not left running on an orphaned thread.
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 16];
    let r = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut buf))
        .await
        .expect("the connection outlived the load balancer");
    assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
}

/// The value of one backend's counter in the metrics text (0 when absent).
fn counter(text: &str, name: &str, backend: &str) -> u64 {
    let prefix = format!("{name}_total{{backend=\"{backend}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_each_way_are_counted_per_backend_while_flowing_and_at_the_end() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let b = Backend::start("b0").await;
    let lb = start(config(vec![b.spec()])).await;
    until("up", || state_of(&lb.handle, &b) == State::Up).await;
    let name = b.addr.to_string();

    // A request with a 200 KiB header: past the 64 KiB batch, so it is counted while the
    // connection is still open (a long watch must not wait for its end to be seen).
    let request = format!(
        "GET / HTTP/1.1\r\nx-pad: {}\r\n\r\n",
        "a".repeat(200 * 1024)
    );
    let response = "HTTP/1.1 200 X\r\ncontent-length: 2\r\n\r\nb0";
    let mut s = TcpStream::connect(lb.addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut got = vec![0u8; response.len()];
    s.read_exact(&mut got).await.unwrap();
    assert_eq!(String::from_utf8(got).unwrap(), response);
    let open = lb.handle.metrics_text();
    let sent_open = counter(&open, "cpe_lb_backend_sent_bytes", &name);
    assert!(
        sent_open >= 64 * 1024,
        "counted while open: {sent_open} bytes\n{open}"
    );

    // Closed: the rest is counted, to the byte.
    drop(s);
    until("the connection's bytes counted", || {
        let m = lb.handle.metrics_text();
        counter(&m, "cpe_lb_backend_sent_bytes", &name) == request.len() as u64
            && counter(&m, "cpe_lb_backend_received_bytes", &name) == response.len() as u64
    })
    .await;
    lb.stop.cancel();
    lb.task.await.unwrap();
}
