//! Shared by the load balancer's integration tests: small HTTP backends, a client, a
//! running load balancer.
#![allow(dead_code)]

use cpe_config::{HealthCheck, Protocol};
use cpe_health::State;
use cpe_lb::{BackendSpec, Lb, LbConfig, LbHandle};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// A tiny HTTP/1.1 backend: `/readyz` answers `ready` (a status code), every other path
/// answers 200 with the backend's name. Keep-alive. `kill` drops the listener and every
/// connection at once, like a killed process.
pub struct Backend {
    pub addr: SocketAddr,
    pub ready: Arc<AtomicU16>,
    pub kill: CancellationToken,
}

impl Backend {
    pub async fn start(name: &'static str) -> Backend {
        Self::start_on(name, "127.0.0.1:0".parse().unwrap()).await
    }

    pub async fn start_on(name: &'static str, addr: SocketAddr) -> Backend {
        let l = TcpListener::bind(addr).await.unwrap();
        let addr = l.local_addr().unwrap();
        let ready = Arc::new(AtomicU16::new(200));
        let kill = CancellationToken::new();
        let (r, k) = (ready.clone(), kill.clone());
        tokio::spawn(async move {
            loop {
                let s = tokio::select! {
                    _ = k.cancelled() => return,
                    a = l.accept() => match a { Ok((s, _)) => s, Err(_) => continue },
                };
                let (r, k) = (r.clone(), k.clone());
                tokio::spawn(async move {
                    tokio::select! {
                        _ = k.cancelled() => {}
                        _ = serve(s, name, r) => {}
                    }
                });
            }
        });
        Backend { addr, ready, kill }
    }

    pub fn spec(&self) -> BackendSpec {
        BackendSpec::from_addr(self.addr)
    }
}

pub async fn serve(s: TcpStream, name: &str, ready: Arc<AtomicU16>) {
    let mut s = BufReader::new(s);
    loop {
        let mut line = String::new();
        if s.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
        loop {
            let mut h = String::new();
            if s.read_line(&mut h).await.unwrap_or(0) == 0 {
                return;
            }
            if h == "\r\n" {
                break;
            }
        }
        let (status, body) = if path == "/readyz" {
            (ready.load(Ordering::Relaxed), "readyz".to_string())
        } else {
            (200, name.to_string())
        };
        let resp = format!(
            "HTTP/1.1 {status} X\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        if s.get_mut().write_all(resp.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// One keep-alive client connection.
pub struct Conn(BufReader<TcpStream>);

impl Conn {
    pub async fn open(addr: SocketAddr) -> std::io::Result<Conn> {
        Ok(Conn(BufReader::new(TcpStream::connect(addr).await?)))
    }

    /// `GET /` and the body (the backend's name).
    pub async fn get(&mut self) -> std::io::Result<String> {
        let work = async {
            self.0
                .get_mut()
                .write_all(b"GET / HTTP/1.1\r\nhost: t\r\n\r\n")
                .await?;
            let mut len = 0usize;
            let mut first = true;
            loop {
                let mut h = String::new();
                if self.0.read_line(&mut h).await? == 0 {
                    return Err(std::io::Error::other("closed before an answer"));
                }
                if first && !h.starts_with("HTTP/1.1 200") {
                    return Err(std::io::Error::other(format!("answer: {h}")));
                }
                first = false;
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length: ") {
                    len = v.trim().parse().unwrap();
                }
                if h == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; len];
            self.0.read_exact(&mut body).await?;
            Ok(String::from_utf8(body).unwrap())
        };
        tokio::time::timeout(Duration::from_secs(5), work)
            .await
            .map_err(|_| std::io::Error::other("no answer in 5 s"))?
    }
}

/// A new connection, one request.
pub async fn once(addr: SocketAddr) -> std::io::Result<String> {
    Conn::open(addr).await?.get().await
}

pub fn config(backends: Vec<BackendSpec>) -> LbConfig {
    let mut c = LbConfig::new("127.0.0.1:0".parse().unwrap(), backends);
    c.admin = Some("127.0.0.1:0".parse().unwrap());
    c.health = HealthCheck {
        protocol: Protocol::Http,
        interval: Duration::from_millis(100),
        timeout: Duration::from_millis(300),
        ..HealthCheck::default()
    };
    c.drain_timeout = Duration::from_secs(5);
    c
}

pub struct Running {
    pub addr: SocketAddr,
    pub handle: LbHandle,
    pub stop: CancellationToken,
    pub task: tokio::task::JoinHandle<()>,
}

pub async fn start(c: LbConfig) -> Running {
    let lb = Lb::bind(c).await.unwrap();
    let addr = lb.local_addr();
    let handle = lb.handle();
    let stop = CancellationToken::new();
    let s = stop.clone();
    let task = tokio::spawn(async move {
        lb.run(s.cancelled_owned()).await.unwrap();
    });
    Running {
        addr,
        handle,
        stop,
        task,
    }
}

/// Polls until `cond` holds, failing after 5 s with `what`.
pub async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub fn state_of(h: &LbHandle, b: &Backend) -> State {
    let name = b.addr.to_string();
    h.states().into_iter().find(|(n, _)| *n == name).unwrap().1
}

pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}
