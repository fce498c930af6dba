//! What operators expect of a running agent's admin listener, checked on a real `cpe lb`
//! on loopback (no root): `/livez`, `/readyz` and `/healthz` answer, and `/metrics` has
//! `cpe_build_info` with this binary's version and revision and the process metrics read
//! from `/proc/self`. (`cpe vip` serves the same listener; its end-to-end tests need
//! etcd and namespaces, and scrape it there.)

mod common;
use common::free_addr;
use cpe_testkit::Child;
use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::time::{Duration, Instant};

async fn get_eventually(addr: SocketAddr, path: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match cpe_admin::get(addr, path, Duration::from_secs(2)).await {
            Ok(body) => return body,
            Err(e) if Instant::now() > deadline => panic!("GET {path} on {addr}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// The revision `cpe version --json` reports.
fn build() -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_cpe"))
        .args(["version", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn lb_answers_probes_and_build_and_process_metrics() {
    let dir = tempfile::tempdir().unwrap();
    // A backend that accepts TCP: the LB has something to check.
    let backend = TcpListener::bind("127.0.0.1:0").unwrap();
    let admin = free_addr();
    let mut c = Command::new(env!("CARGO_BIN_EXE_cpe"));
    c.args(["lb", "--listen", &free_addr().to_string()])
        .args(["--backend", &backend.local_addr().unwrap().to_string()])
        .args(["--health-check", "tcp", "--admin", &admin.to_string()]);
    let _lb = Child::spawn("lb", c, &dir.path().join("lb.log")).unwrap();

    for path in ["/livez", "/readyz", "/healthz"] {
        assert_eq!(get_eventually(admin, path).await, "ok\n", "{path}");
    }
    let b = build();
    let metrics = get_eventually(admin, "/metrics").await;
    let info = format!(
        "cpe_build_info{{version=\"{}\",revision=\"{}\"}} 1",
        b["version"].as_str().unwrap(),
        b["revision"].as_str().unwrap()
    );
    for want in [
        info.as_str(),
        "cpe_lb_connections_accepted_total",
        "process_resident_memory_bytes ",
        "process_open_fds ",
        "process_max_fds ",
        "process_cpu_seconds_total ",
        "process_start_time_seconds ",
    ] {
        assert!(
            metrics.contains(want),
            "{want} missing from /metrics:\n{metrics}"
        );
    }
    assert!(metrics.ends_with("# EOF\n"), "{metrics}");
    assert_eq!(metrics.matches("# EOF").count(), 1, "{metrics}");
}

/// Issue 13, item 3: `--metrics` opens a second listener with `/metrics` and the probes
/// only, for an in-cluster Prometheus on the node address: no `/status` (the topology),
/// no actions, while the admin listener keeps both.
#[tokio::test]
async fn the_metrics_listener_serves_metrics_and_probes_only() {
    let dir = tempfile::tempdir().unwrap();
    let backend = TcpListener::bind("127.0.0.1:0").unwrap();
    let (admin, metrics) = (free_addr(), free_addr());
    let mut c = Command::new(env!("CARGO_BIN_EXE_cpe"));
    c.args(["lb", "--listen", &free_addr().to_string()])
        .args(["--backend", &backend.local_addr().unwrap().to_string()])
        .args(["--health-check", "tcp", "--admin", &admin.to_string()])
        .args(["--metrics", &metrics.to_string()]);
    let _lb = Child::spawn("lb", c, &dir.path().join("lb.log")).unwrap();

    let text = get_eventually(metrics, "/metrics").await;
    assert!(text.contains("cpe_lb_backend_state"), "{text}");
    assert!(text.contains("cpe_build_info{"), "{text}");
    for path in ["/livez", "/readyz", "/healthz"] {
        assert_eq!(get_eventually(metrics, path).await, "ok\n", "{path}");
    }
    match cpe_admin::get(metrics, "/status", Duration::from_secs(2)).await {
        Err(cpe_admin::ClientError::Status { status: 404, .. }) => {}
        other => panic!("/status on the metrics listener: {other:?}"),
    }
    let backend_name = backend.local_addr().unwrap().to_string();
    let path = format!("/maintenance/{backend_name}");
    match cpe_admin::post(metrics, &path, "on", Duration::from_secs(2)).await {
        Err(cpe_admin::ClientError::Status { status: 405, .. }) => {}
        other => panic!("POST {path} on the metrics listener: {other:?}"),
    }
    // The admin listener still has both.
    assert!(get_eventually(admin, "/status")
        .await
        .contains(&backend_name));
}
