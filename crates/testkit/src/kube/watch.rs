//! Observers of the replacement scenario, outside the machines: [`LbStatus`] polls a
//! `cpe lb`'s admin `/status` from inside the load balancer's host and records, per backend
//! address, when it was first listed, first `up`, and first given a proxied connection;
//! [`KubectlLoop`] runs `kubectl get --raw /readyz` through the endpoint again and again and
//! records every result.
//!
//! They measure; they do not decide whether a figure is good (the tests and the bench do).

use crate::netlink::enter_netns;
use crate::Host;
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What [`LbStatus`] saw of one backend address (times since its epoch).
#[derive(Debug, Clone, Default)]
pub struct BackendSeen {
    pub listed: Option<Duration>,
    pub up: Option<Duration>,
    pub first_connect: Option<Duration>,
}

#[derive(Debug, Default)]
struct Seen {
    backends: BTreeMap<String, BackendSeen>,
    last: Option<serde_json::Value>,
    errors: usize,
}

/// Polls `GET /status` of a `cpe lb` every `interval` from inside its host.
#[derive(Debug)]
pub struct LbStatus {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
    thread: Option<JoinHandle<()>>,
}

impl LbStatus {
    pub fn start(
        host: &Host,
        admin: SocketAddr,
        interval: Duration,
        epoch: Instant,
    ) -> Result<LbStatus> {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let ns = host.ns_path();
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = {
            let (stop, seen) = (stop.clone(), seen.clone());
            std::thread::Builder::new()
                .name("lb-status".into())
                .spawn(move || {
                    if let Err(e) = enter_netns(&ns) {
                        let _ = tx.send(Err(e));
                        return;
                    }
                    let _ = tx.send(Ok(()));
                    while !stop.load(Ordering::Relaxed) {
                        let t = epoch.elapsed();
                        match get_json(admin, "/status") {
                            Ok(v) => {
                                let mut s = seen.lock().unwrap();
                                for b in v["backends"].as_array().into_iter().flatten() {
                                    let Some(addr) = b["address"].as_str().or(b["name"].as_str())
                                    else {
                                        continue;
                                    };
                                    let e = s.backends.entry(addr.to_string()).or_default();
                                    e.listed.get_or_insert(t);
                                    if b["state"].as_str() == Some("up") {
                                        e.up.get_or_insert(t);
                                    }
                                    if b["connects"].as_u64().unwrap_or(0) > 0 {
                                        e.first_connect.get_or_insert(t);
                                    }
                                }
                                s.last = Some(v);
                            }
                            Err(_) => seen.lock().unwrap().errors += 1,
                        }
                        std::thread::sleep(interval);
                    }
                })?
        };
        rx.recv().context("status thread died")??;
        Ok(LbStatus {
            stop,
            seen,
            thread: Some(thread),
        })
    }

    /// What was seen of backend `addr` (`IP:PORT`).
    pub fn backend(&self, addr: &str) -> BackendSeen {
        self.seen
            .lock()
            .unwrap()
            .backends
            .get(addr)
            .cloned()
            .unwrap_or_default()
    }

    /// The last `/status` document read.
    pub fn last(&self) -> Option<serde_json::Value> {
        self.seen.lock().unwrap().last.clone()
    }

    /// Polls that failed (the admin listener did not answer).
    pub fn errors(&self) -> usize {
        self.seen.lock().unwrap().errors
    }
}

impl Drop for LbStatus {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `GET path` on plain HTTP, the body parsed as JSON (from the calling thread's namespace).
pub fn get_json(addr: SocketAddr, path: &str) -> Result<serde_json::Value> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .context("no HTTP body")?;
    Ok(serde_json::from_str(body)?)
}

/// One `kubectl get --raw /readyz` through the endpoint.
#[derive(Debug, Clone)]
pub struct KubectlRun {
    pub start: Duration,
    pub ok: bool,
    pub output: String,
}

/// Runs `kubectl get --raw /readyz` with `kubeconfig` from the client host, one after the
/// other with `pause` between, until dropped.
#[derive(Debug)]
pub struct KubectlLoop {
    stop: Arc<AtomicBool>,
    runs: Arc<Mutex<Vec<KubectlRun>>>,
    thread: Option<JoinHandle<()>>,
}

impl KubectlLoop {
    pub fn start(
        client: &Host,
        dir: PathBuf,
        kubeconfig: PathBuf,
        pause: Duration,
        epoch: Instant,
    ) -> Result<KubectlLoop> {
        let stop = Arc::new(AtomicBool::new(false));
        let runs = Arc::new(Mutex::new(Vec::new()));
        let client = client.clone();
        let thread = {
            let (stop, runs) = (stop.clone(), runs.clone());
            std::thread::Builder::new()
                .name("kubectl".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let start = epoch.elapsed();
                        let r = super::kubectl(
                            &client,
                            &dir,
                            &kubeconfig,
                            &["get", "--raw", "/readyz"],
                            None,
                        );
                        let (ok, output) = match r {
                            Ok(o) => (o.trim() == "ok", o.trim().to_string()),
                            Err(e) => (false, format!("{e:#}")),
                        };
                        runs.lock().unwrap().push(KubectlRun { start, ok, output });
                        std::thread::sleep(pause);
                    }
                })?
        };
        Ok(KubectlLoop {
            stop,
            runs,
            thread: Some(thread),
        })
    }

    pub fn runs(&self) -> Vec<KubectlRun> {
        self.runs.lock().unwrap().clone()
    }
}

impl Drop for KubectlLoop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
