//! Issue 14 against the real `cpe lb` process, on loopback (no root):
//!
//! - an admin listener off loopback without a token is refused at start, naming the flag;
//! - `POST /maintenance/...` needs the token: a browser's cross-site request and a
//!   request without or with a wrong token are refused, `cpe status --admin-token-file`
//!   gets through, and `GET /status`, `/metrics`, `/healthz` stay open;
//! - with a low descriptor limit (`prlimit --nofile=300`), 420 idle admin connections do
//!   not starve the data path: the backends stay UP and a client gets through the LB.

mod common;
use common::{cpe, free_addr};
use cpe_testkit::Child;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

fn wait_port(addr: SocketAddr, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "{what} never listened on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A TCP echo server on a free loopback port, one thread per connection.
fn echo_backend() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut r = s.try_clone().unwrap();
                let mut w = s;
                let _ = std::io::copy(&mut r, &mut w);
            });
        }
    });
    addr
}

/// One raw HTTP/1.1 request; the status code of the answer (0: none).
fn raw(addr: SocketAddr, req: &str) -> u16 {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n])
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn status(admin: SocketAddr) -> serde_json::Value {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let body = rt
        .block_on(cpe_admin::get(admin, "/status", Duration::from_secs(3)))
        .expect("GET /status without a token");
    serde_json::from_str(&body).unwrap()
}

fn states(s: &serde_json::Value) -> Vec<(String, f64)> {
    s["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["state"].as_str().unwrap().to_string(),
                b["for_seconds"].as_f64().unwrap(),
            )
        })
        .collect()
}

fn wait_all_up(admin: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = status(admin);
        if states(&s).iter().all(|(st, _)| st == "up") {
            return;
        }
        assert!(Instant::now() < deadline, "backends never up: {s:#}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_non_loopback_admin_listener_without_a_token_is_refused_at_start() {
    let out = cpe()
        .args(["lb", "--listen", "127.0.0.1:0", "--backend", "127.0.0.1:1"])
        .args(["--admin", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--admin = 0.0.0.0:0: is not a loopback address")
            && err.contains("--admin-token-file"),
        "{err}"
    );
}

#[test]
fn maintenance_needs_the_token_and_idle_admin_connections_cannot_starve_the_lb() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("admin-token");
    std::fs::write(&token, "s3cret-admin-token-0123\n").unwrap();
    let wrong = dir.path().join("wrong-token");
    std::fs::write(&wrong, "not-the-admin-token-0123\n").unwrap();
    let backends = [echo_backend(), echo_backend()];
    let (listen, admin) = (free_addr(), free_addr());
    let mut c = Command::new("prlimit");
    c.arg("--nofile=300:300")
        .arg(env!("CARGO_BIN_EXE_cpe"))
        .args(["lb", "--listen", &listen.to_string()])
        .args(["--admin", &admin.to_string()])
        .args(["--health-check", "tcp", "--health-interval", "100ms"])
        .args(["--workers", "1"])
        .arg("--admin-token-file")
        .arg(&token);
    for b in &backends {
        c.args(["--backend", &b.to_string()]);
    }
    let _lb = Child::spawn("lb", c, &dir.path().join("lb.log")).unwrap();
    wait_port(admin, "cpe lb admin");
    wait_all_up(admin);

    // --- item 2: who may change state.
    let b0 = backends[0].to_string();
    let browser = |host: &str| {
        format!(
            "POST /maintenance/{b0} HTTP/1.1\r\nHost: {host}\r\nOrigin: https://evil.example\r\n\
             Content-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\non"
        )
    };
    assert_eq!(raw(admin, &browser("evil.example")), 421, "DNS rebinding");
    assert_eq!(raw(admin, &browser(&admin.to_string())), 403, "cross-site");
    let maintenance = |token: Option<&std::path::Path>| {
        let mut c = cpe();
        c.args(["status", "--admin", &admin.to_string()])
            .args(["--maintenance", &format!("{b0}=on")]);
        if let Some(t) = token {
            c.arg("--admin-token-file").arg(t);
        }
        c.output().unwrap()
    };
    for t in [None, Some(wrong.as_path())] {
        let out = maintenance(t);
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("401"), "{err}");
    }
    assert!(states(&status(admin)).iter().all(|(s, _)| s == "up"));
    let out = maintenance(Some(&token));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(states(&status(admin))[0].0, "maintenance");
    for p in ["/metrics", "/healthz", "/readyz"] {
        let code = raw(
            admin,
            &format!("GET {p} HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n"),
        );
        assert_eq!(code, 200, "{p}");
    }
    let out = cpe()
        .args(["status", "--admin", &admin.to_string()])
        .args(["--maintenance", &format!("{b0}=off")])
        .arg("--admin-token-file")
        .arg(&token)
        .output()
        .unwrap();
    assert!(out.status.success());
    wait_all_up(admin);

    // --- item 3: 420 idle admin connections with 300 descriptors.
    let flood_start = Instant::now();
    let mut idle = Vec::new();
    for _ in 0..420 {
        match TcpStream::connect_timeout(&admin, Duration::from_millis(500)) {
            Ok(s) => idle.push(s),
            Err(_) => break,
        }
    }
    std::thread::sleep(Duration::from_millis(1500)); // 15 check rounds
    let mut client = TcpStream::connect(listen).expect("a client connects through the LB");
    client
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    client.write_all(b"ping\n").unwrap();
    let mut buf = [0u8; 5];
    client
        .read_exact(&mut buf)
        .expect("the client's bytes come back through the LB");
    assert_eq!(&buf, b"ping\n");
    let flood = flood_start.elapsed().as_secs_f64();
    drop(idle);
    drop(client);
    // The idle ones are closed by the listener or by us; then /status answers, and no
    // backend changed state during the flood.
    let deadline = Instant::now() + Duration::from_secs(10);
    let s = loop {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        if let Ok(b) = rt.block_on(cpe_admin::get(admin, "/status", Duration::from_secs(2))) {
            break serde_json::from_str::<serde_json::Value>(&b).unwrap();
        }
        assert!(Instant::now() < deadline, "/status never answered again");
        std::thread::sleep(Duration::from_millis(100));
    };
    for (st, for_s) in states(&s) {
        assert_eq!(st, "up", "{s:#}");
        assert!(
            for_s >= flood,
            "a backend changed state during the flood: {s:#}"
        );
    }
}
