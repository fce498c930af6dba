//! The chaos run's own observers, next to the testbed's prober and holder watcher, all in
//! the client's namespace: the etcd leader as the members report it (their JSON gateway's
//! `/v3/maintenance/status`, every 250 ms), the VIP election's queue (a range over its
//! prefix, every 250 ms: who is waiting behind whom when nobody holds), a client watch stream through the VIP (the
//! stand-in's `/debug/stream`, reopened whenever it ends), and the per-process readings
//! (fds, RSS, threads) from `/proc`. They record; the checker judges.

use super::history::{LeaderSample, Ms, QueueSample, WatchEvent, WatchWhat};
use crate::netlink::enter_netns;
use crate::Host;
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A thread in the client's namespace that records into a shared vector until dropped.
#[derive(Debug)]
pub struct Recorder<T> {
    stop: Arc<AtomicBool>,
    pub records: Arc<Mutex<Vec<T>>>,
    thread: Option<JoinHandle<()>>,
}

impl<T> Recorder<T> {
    /// A copy of what was recorded so far.
    pub fn snapshot(&self) -> Vec<T>
    where
        T: Clone,
    {
        self.records.lock().unwrap().clone()
    }
}

impl<T> Drop for Recorder<T> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Runs `body` in a thread inside `client`'s namespace, recording until the [`Recorder`]
/// is dropped.
pub(super) fn spawn_in<T: Send + 'static>(
    client: &Host,
    name: &str,
    body: impl FnOnce(Arc<AtomicBool>, Arc<Mutex<Vec<T>>>) + Send + 'static,
) -> Result<Recorder<T>> {
    let stop = Arc::new(AtomicBool::new(false));
    let records = Arc::new(Mutex::new(Vec::new()));
    let ns = client.ns_path();
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = {
        let (stop, records) = (stop.clone(), records.clone());
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                if let Err(e) = enter_netns(&ns) {
                    let _ = tx.send(Err(e));
                    return;
                }
                let _ = tx.send(Ok(()));
                body(stop, records)
            })?
    };
    rx.recv().context("observer thread died")??;
    Ok(Recorder {
        stop,
        records,
        thread: Some(thread),
    })
}

pub(super) fn ms(epoch: Instant) -> Ms {
    epoch.elapsed().as_millis() as Ms
}

/// The etcd members the leader observer asks: (machine name, member address), replaced
/// by the runner when a member or a machine is replaced.
pub type Members = std::sync::Arc<std::sync::Mutex<Vec<(String, Ipv4Addr)>>>;

/// A thread in the client's namespace that calls `read` every 250 ms and records what it
/// returns whenever that differs from the last reading (the first reading included).
fn on_change<V, T>(
    client: &Host,
    name: &str,
    epoch: Instant,
    mut read: impl FnMut() -> V + Send + 'static,
    sample: impl Fn(Ms, V) -> T + Send + 'static,
) -> Result<Recorder<T>>
where
    V: PartialEq + Clone + Send + 'static,
    T: Send + 'static,
{
    spawn_in(client, name, move |stop, records| {
        let mut last: Option<V> = None;
        while !stop.load(Ordering::Relaxed) {
            let now = read();
            if last.as_ref() != Some(&now) {
                records.lock().unwrap().push(sample(ms(epoch), now.clone()));
                last = Some(now);
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    })
}

/// Records the etcd leader (by machine name) on change, asking every member in `members`.
pub fn etcd_leader(
    client: &Host,
    members: Members,
    epoch: Instant,
) -> Result<Recorder<LeaderSample>> {
    let mut names: HashMap<String, String> = HashMap::new();
    let read = move || {
        let mut votes: HashMap<String, usize> = HashMap::new();
        let now: Vec<(String, Ipv4Addr)> = members.lock().unwrap().clone();
        for (name, addr) in &now {
            if let Ok(v) = etcd_status(*addr) {
                let id = v["header"]["member_id"].as_str().unwrap_or("").to_string();
                names.insert(id, name.clone());
                if let Some(l) = v["leader"].as_str().filter(|l| *l != "0") {
                    *votes.entry(l.to_string()).or_default() += 1;
                }
            }
        }
        votes
            .into_iter()
            .max_by_key(|(_, n)| *n)
            .map(|(id, _)| names.get(&id).cloned().unwrap_or(id))
    };
    on_change(client, "etcd-leader-watch", epoch, read, |t, leader| {
        LeaderSample { t, leader }
    })
}

/// Records the VIP election's queue (`ELECTION/` keys by creation, as `node/lease`) on
/// change, from the first member in `members` that answers.
pub fn election_queue(
    client: &Host,
    members: Members,
    election: String,
    epoch: Instant,
) -> Result<Recorder<QueueSample>> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let prefix = format!("{election}/");
    let mut end = prefix.clone().into_bytes();
    *end.last_mut().expect("non-empty") += 1;
    let body = serde_json::json!({
        "key": b64.encode(&prefix),
        "range_end": b64.encode(&end),
        "sort_order": "ASCEND",
        "sort_target": "CREATE",
    })
    .to_string();
    // One candidate's key as `node/lease hex` (the value is `cpe vip`'s election value).
    let entry = move |kv: &serde_json::Value| {
        let val = kv["value"]
            .as_str()
            .and_then(|x| b64.decode(x).ok())
            .map(|x| String::from_utf8_lossy(&x).into_owned())
            .unwrap_or_default();
        let node = serde_json::from_str::<serde_json::Value>(&val)
            .ok()
            .and_then(|j| j["node"].as_str().map(String::from))
            .unwrap_or(val);
        let lease = kv["lease"]
            .as_str()
            .and_then(|l| l.parse::<i64>().ok())
            .unwrap_or(0);
        format!("{node}/{lease:x}")
    };
    let read = move || {
        let now: Vec<(String, Ipv4Addr)> = members.lock().unwrap().clone();
        now.iter().find_map(|(_, addr)| {
            let v = etcd_post(*addr, "/v3/kv/range", &body).ok()?;
            let kvs = v["kvs"].as_array().cloned().unwrap_or_default();
            Some(kvs.iter().map(&entry).collect::<Vec<_>>())
        })
    };
    on_change(client, "election-queue-watch", epoch, read, |t, queue| {
        QueueSample { t, queue }
    })
}

fn etcd_status(addr: Ipv4Addr) -> Result<serde_json::Value> {
    etcd_post(addr, "/v3/maintenance/status", "{}")
}

/// One POST to a member's JSON gateway, 300 ms for everything.
fn etcd_post(addr: Ipv4Addr, path: &str, body: &str) -> Result<serde_json::Value> {
    let t = Duration::from_millis(300);
    let mut s = TcpStream::connect_timeout(&SocketAddr::new(addr.into(), 2379), t)?;
    s.set_read_timeout(Some(t))?;
    s.set_write_timeout(Some(t))?;
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    let text = String::from_utf8_lossy(&out);
    let json = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .context("no body")?;
    // The gateway may answer chunked: the JSON object is the part between the braces.
    let (a, z) = (json.find('{'), json.rfind('}'));
    match (a, z) {
        (Some(a), Some(z)) => Ok(serde_json::from_str(&json[a..=z])?),
        _ => bail!("no JSON in {json:?}"),
    }
}

/// Keeps a watch stream open to `https://VIP:6443/debug/stream` and records its starts and
/// ends. A stream that delivers nothing for `idle` ends (the stand-in sends an event every
/// 500 ms).
pub fn watch_stream(
    client: &Host,
    vip: Ipv4Addr,
    idle: Duration,
    epoch: Instant,
) -> Result<Recorder<WatchEvent>> {
    let tls = Arc::new(crate::observe::tls_config());
    spawn_in(client, "watch-stream", move |stop, records| {
        let push = |what| {
            records
                .lock()
                .unwrap()
                .push(WatchEvent { t: ms(epoch), what })
        };
        while !stop.load(Ordering::Relaxed) {
            let mut started = false;
            let r = stream_once(vip, &tls, idle, &stop, |backend| {
                started = true;
                push(WatchWhat::Start { backend });
            });
            if started {
                let reason = match r {
                    Ok(()) => "stream closed by the server".to_string(),
                    Err(e) => format!("{e:#}"),
                };
                if !stop.load(Ordering::Relaxed) {
                    push(WatchWhat::End { reason });
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })
}

fn stream_once(
    vip: Ipv4Addr,
    tls: &Arc<rustls::ClientConfig>,
    idle: Duration,
    stop: &AtomicBool,
    mut on_start: impl FnMut(Option<String>),
) -> Result<()> {
    let addr = SocketAddr::new(vip.into(), 6443);
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).context("connect")?;
    tcp.set_read_timeout(Some(idle))?;
    tcp.set_write_timeout(Some(idle))?;
    let name = rustls::pki_types::ServerName::IpAddress(vip.into());
    let conn = rustls::ClientConnection::new(tls.clone(), name)?;
    let mut s = rustls::StreamOwned::new(conn, tcp);
    write!(
        s,
        "GET /debug/stream HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: cpe-chaos\r\n\r\n"
    )?;
    let mut buf = [0u8; 4096];
    let mut seen = Vec::new();
    let mut started = false;
    while !stop.load(Ordering::Relaxed) {
        let n = s.read(&mut buf).context("read")?;
        if n == 0 {
            return Ok(());
        }
        if !started {
            seen.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&seen);
            if !text.starts_with("HTTP/1.1 200") && text.contains("\r\n") {
                bail!("{}", text.lines().next().unwrap_or_default());
            }
            if text.contains("BOOKMARK") {
                started = true;
                let backend = text.lines().find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("x-cpe-backend")
                        .then(|| v.trim().to_string())
                });
                on_start(backend);
                seen.clear();
            }
        }
    }
    Ok(())
}

/// fds, RSS (KiB) and threads of a process, from /proc.
pub fn proc_usage(pid: u32) -> Option<(u64, u64, u64)> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    };
    Some((fds, field("VmRSS:")?, field("Threads:")?))
}
