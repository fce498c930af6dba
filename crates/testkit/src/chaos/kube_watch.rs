//! The client watch stream when the machines run a real kube-apiserver: a real watch on a
//! ConfigMap, and a writer that changes that ConfigMap every 500 ms, both from the client's
//! namespace through `VIP:6443` with the test cluster's admin bearer token. The stand-in's
//! `/debug/stream` (`observers::watch_stream`) sends an event every 500 ms by itself; here
//! the events are real writes, so a stream's liveness is judged against the writes the
//! writer saw acknowledged.
//!
//! The watcher does what a client-go reflector does: list (`resourceVersion=0`, served from
//! the API server's watch cache), then `GET ...configmaps?watch=1&resourceVersion=RV
//! &fieldSelector=metadata.name=cpe-chaos-watch`, resumed after an end from the last
//! resourceVersion delivered, listed again after an ERROR event (410 Gone: the resumption
//! point is older than the new server's watch cache).
//!
//! What is recorded (`WatchWhat`):
//! - **start**: the watch answered 200 and has delivered every write acknowledged so far
//!   (an event with a resourceVersion at least that of the write's response), or none was
//!   pending: a stream is resumed when it is caught up, not merely accepted;
//! - **end**, the first of: the server closed the stream (EOF, chunked end); the connection
//!   failed (reset, TLS error); an ERROR event; or a write acknowledged `stale` (3 s) ago,
//!   or 3 s before the stream opened if it was acknowledged earlier, has not been delivered.
//!   The last is the stand-in's "3 s without an event", stated against real writes: with no
//!   write acknowledged (the VIP unreachable, etcd without quorum) a silent stream is not
//!   declared dead — nothing was missed. A stream abandoned before it started records
//!   nothing; the next one is opened 100 ms later.
//!
//! The writer's requests are not judged (the prober's are); their count is printed.

use super::history::{WatchEvent, WatchWhat};
use super::observers::{ms, spawn_in, Recorder};
use crate::Host;
use anyhow::{bail, Context, Result};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The ConfigMap written and watched (namespace `default`).
pub const CONFIGMAP: &str = "cpe-chaos-watch";

/// One write of the writer: when its answer came and the resourceVersion it reported
/// (`None`: it failed).
#[derive(Debug, Clone)]
pub struct Ack {
    pub at: Instant,
    pub rv: Option<u64>,
}

/// The watch stream's recorder and the writer feeding it.
#[derive(Debug)]
pub struct KubeWatch {
    pub stream: Recorder<WatchEvent>,
    pub writer: Recorder<Ack>,
}

/// Starts the writer and the watcher in `client`'s namespace, against `https://VIP:6443`.
pub fn configmap_watch(
    client: &Host,
    vip: Ipv4Addr,
    token: String,
    stale: Duration,
    epoch: Instant,
) -> Result<KubeWatch> {
    let tls = Arc::new(crate::observe::tls_config());
    let api = Api {
        addr: SocketAddr::new(vip.into(), 6443),
        tls,
        token,
    };
    let w = api.clone();
    let writer = spawn_in(client, "configmap-writer", move |stop, acks| {
        let mut next = Instant::now();
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let rv = w.write(n).ok();
            acks.lock().unwrap().push(Ack {
                at: Instant::now(),
                rv,
            });
            next += Duration::from_millis(500);
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            } else {
                next = now;
            }
        }
    })?;
    let acks = writer.records.clone();
    let stream = spawn_in(client, "watch-stream", move |stop, records| {
        let push = |what| {
            records
                .lock()
                .unwrap()
                .push(WatchEvent { t: ms(epoch), what })
        };
        // The highest resourceVersion delivered or listed, and where to resume.
        let mut seen = 0u64;
        let mut from: Option<u64> = None;
        while !stop.load(Ordering::Relaxed) {
            let rv = match from {
                Some(rv) => rv,
                None => match api.list_rv() {
                    Ok(rv) => {
                        seen = seen.max(rv);
                        rv
                    }
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                },
            };
            let mut started = false;
            let end = api.watch_once(rv, &acks, stale, &stop, &mut seen, || {
                started = true;
                push(WatchWhat::Start { backend: None });
            });
            from = (!end.relist).then_some(seen);
            if started && !stop.load(Ordering::Relaxed) {
                push(WatchWhat::End { reason: end.reason });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })?;
    Ok(KubeWatch { stream, writer })
}

/// How a watch ended.
struct End {
    reason: String,
    /// List again before the next watch (an ERROR event: 410 Gone and the like).
    relist: bool,
}

impl End {
    fn new(reason: impl Into<String>) -> End {
        End {
            reason: reason.into(),
            relist: false,
        }
    }
}

#[derive(Clone)]
struct Api {
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    token: String,
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

impl Api {
    fn connect(&self, timeout: Duration) -> Result<Tls> {
        let tcp = TcpStream::connect_timeout(&self.addr, timeout).context("connect")?;
        tcp.set_nodelay(true)?;
        tcp.set_read_timeout(Some(timeout))?;
        tcp.set_write_timeout(Some(timeout))?;
        let name = rustls::pki_types::ServerName::IpAddress(self.addr.ip().into());
        let conn = rustls::ClientConnection::new(self.tls.clone(), name)?;
        Ok(rustls::StreamOwned::new(conn, tcp))
    }

    fn head(&self, method: &str, path: &str) -> String {
        format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
             Accept: application/json\r\nUser-Agent: cpe-chaos\r\n",
            self.addr, self.token
        )
    }

    /// One request on a fresh connection (`Connection: close`): status and body.
    fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, &str)>,
        timeout: Duration,
    ) -> Result<(u16, Vec<u8>)> {
        let deadline = Instant::now() + timeout;
        let mut s = self.connect(timeout)?;
        let mut req = self.head(method, path);
        match body {
            Some((ctype, b)) => {
                req += &format!(
                    "Content-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}",
                    b.len()
                )
            }
            None => req += "Connection: close\r\n\r\n",
        }
        s.write_all(req.as_bytes()).context("write")?;
        let mut raw = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("no complete answer within {timeout:?}");
            }
            s.sock.set_read_timeout(Some(left))?;
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(e).context("read"),
            }
            if let Some(r) = parse_response(&raw)? {
                return Ok(r);
            }
        }
        parse_response(&raw)?.context("connection closed before a complete answer")
    }

    /// Changes the ConfigMap (creating it if missing); the resourceVersion of the answer.
    fn write(&self, n: u64) -> Result<u64> {
        let t = Duration::from_secs(2);
        let path = format!("/api/v1/namespaces/default/configmaps/{CONFIGMAP}");
        let patch = format!(r#"{{"data":{{"n":"{n}"}}}}"#);
        let (mut code, mut body) = self.request(
            "PATCH",
            &path,
            Some(("application/merge-patch+json", &patch)),
            t,
        )?;
        if code == 404 {
            let cm = format!(
                r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{CONFIGMAP}"}},"data":{{"n":"{n}"}}}}"#
            );
            (code, body) = self.request(
                "POST",
                "/api/v1/namespaces/default/configmaps",
                Some(("application/json", &cm)),
                t,
            )?;
        }
        if code != 200 && code != 201 {
            bail!("write answered {code}");
        }
        resource_version(&serde_json::from_slice(&body)?)
    }

    /// The list's resourceVersion (`resourceVersion=0`: from the watch cache).
    fn list_rv(&self) -> Result<u64> {
        let path = format!(
            "/api/v1/namespaces/default/configmaps?fieldSelector=metadata.name%3D{CONFIGMAP}\
             &resourceVersion=0"
        );
        let (code, body) = self.request("GET", &path, None, Duration::from_secs(2))?;
        if code != 200 {
            bail!("list answered {code}");
        }
        resource_version(&serde_json::from_slice(&body)?)
    }

    /// One watch from `rv` until it ends; `seen` follows what it delivers; `on_start` when
    /// it has answered 200 and caught up with the acknowledged writes.
    fn watch_once(
        &self,
        rv: u64,
        acks: &Mutex<Vec<Ack>>,
        stale: Duration,
        stop: &AtomicBool,
        seen: &mut u64,
        mut on_start: impl FnMut(),
    ) -> End {
        let mut s = match self.connect(Duration::from_secs(1)) {
            Ok(s) => s,
            Err(e) => return End::new(format!("{e:#}")),
        };
        let req = self.head(
            "GET",
            &format!(
                "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={rv}\
                 &fieldSelector=metadata.name%3D{CONFIGMAP}"
            ),
        ) + "\r\n";
        if let Err(e) = s.write_all(req.as_bytes()) {
            return End::new(format!("write: {e}"));
        }
        let _ = s.sock.set_read_timeout(Some(Duration::from_millis(200)));
        let opened = Instant::now();
        let mut head: Option<Vec<u8>> = Some(Vec::new());
        let mut chunks = Chunked::default();
        let mut lines: Vec<u8> = Vec::new();
        let mut started = false;
        let mut buf = [0u8; 8192];
        while !stop.load(Ordering::Relaxed) {
            // A write acknowledged `stale` ago (or before the stream opened) not delivered.
            let pending = pending_since(&acks.lock().unwrap(), *seen);
            if let Some((at, wrv)) = pending {
                if Instant::now() >= at.max(opened) + stale {
                    return End::new(format!(
                        "resourceVersion {wrv} (a write acknowledged {:.1} s ago) not delivered \
                         within {stale:?}",
                        at.elapsed().as_secs_f64()
                    ));
                }
            } else if !started && head.is_none() {
                started = true;
                on_start();
            }
            if head.is_some() && opened.elapsed() > stale {
                return End::new(format!("no answer to the watch request within {stale:?}"));
            }
            let n = match s.read(&mut buf) {
                Ok(0) => return End::new("stream closed by the server"),
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    continue
                }
                Err(e) => return End::new(format!("read: {e}")),
            };
            let mut data = &buf[..n];
            if let Some(h) = head.as_mut() {
                h.extend_from_slice(data);
                let Some(i) = find(h, b"\r\n\r\n") else {
                    continue;
                };
                let text = String::from_utf8_lossy(&h[..i]).into_owned();
                let status = text.lines().next().unwrap_or_default().to_string();
                if !status.starts_with("HTTP/1.1 200") {
                    return End::new(format!("watch answered {status:?}"));
                }
                if !text
                    .to_ascii_lowercase()
                    .contains("transfer-encoding: chunked")
                {
                    return End::new("watch answer not chunked");
                }
                let rest = h[i + 4..].to_vec();
                head = None;
                match chunks.feed(&rest) {
                    Ok(p) => lines.extend_from_slice(&p),
                    Err(e) => return End::new(format!("{e:#}")),
                }
                data = &[];
            }
            match chunks.feed(data) {
                Ok(p) => lines.extend_from_slice(&p),
                Err(e) => return End::new(format!("{e:#}")),
            }
            while let Some(i) = lines.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = lines.drain(..=i).collect();
                match watch_event(&line) {
                    Ok(Event::Version(v)) => *seen = (*seen).max(v),
                    Ok(Event::Error(e)) => {
                        return End {
                            reason: format!("ERROR event: {e}"),
                            relist: true,
                        }
                    }
                    Err(e) => return End::new(format!("undecodable event: {e:#}")),
                }
            }
            if chunks.done {
                return End::new("stream closed by the server (end of chunked body)");
            }
        }
        End::new("stopped")
    }
}

/// The oldest acknowledged write with a resourceVersion above `seen`: (when, which).
fn pending_since(acks: &[Ack], seen: u64) -> Option<(Instant, u64)> {
    let mut oldest = None;
    for a in acks.iter().rev() {
        match a.rv {
            Some(rv) if rv > seen => oldest = Some((a.at, rv)),
            // One writer, answers in order: everything before is older still.
            Some(_) => break,
            None => {}
        }
    }
    oldest
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A complete HTTP/1.1 answer in `raw` (Content-Length or chunked), if it is complete.
fn parse_response(raw: &[u8]) -> Result<Option<(u16, Vec<u8>)>> {
    let Some(i) = find(raw, b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&raw[..i]).to_ascii_lowercase();
    let code: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("no status line in {:?}", head.lines().next()))?;
    let body = &raw[i + 4..];
    if head.contains("transfer-encoding: chunked") {
        let mut c = Chunked::default();
        let out = c.feed(body)?;
        return Ok(c.done.then_some((code, out)));
    }
    let len = head.lines().find_map(|l| {
        l.strip_prefix("content-length:")
            .and_then(|v| v.trim().parse::<usize>().ok())
    });
    Ok(match len {
        Some(n) if body.len() >= n => Some((code, body[..n].to_vec())),
        _ => None,
    })
}

/// An incremental decoder of HTTP/1.1 chunked transfer coding.
#[derive(Debug, Default)]
struct Chunked {
    buf: Vec<u8>,
    /// The last (zero-size) chunk was read.
    done: bool,
}

impl Chunked {
    /// Feeds raw bytes; returns the payload bytes they completed.
    fn feed(&mut self, data: &[u8]) -> Result<Vec<u8>> {
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        while !self.done {
            let Some(eol) = find(&self.buf, b"\r\n") else {
                break;
            };
            let line = String::from_utf8_lossy(&self.buf[..eol]).into_owned();
            let size = line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size, 16)
                .with_context(|| format!("bad chunk size line {line:?}"))?;
            if size == 0 {
                self.done = true;
                self.buf.clear();
                break;
            }
            if self.buf.len() < eol + 2 + size + 2 {
                break;
            }
            out.extend_from_slice(&self.buf[eol + 2..eol + 2 + size]);
            self.buf.drain(..eol + 2 + size + 2);
        }
        Ok(out)
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Event {
    /// ADDED, MODIFIED, DELETED or BOOKMARK: the object's resourceVersion.
    Version(u64),
    /// An ERROR event: its status code and message.
    Error(String),
}

/// One line of a watch stream (a JSON watch event).
fn watch_event(line: &[u8]) -> Result<Event> {
    let v: serde_json::Value = serde_json::from_slice(line)?;
    match v["type"].as_str() {
        Some("ERROR") => Ok(Event::Error(format!(
            "{} {}",
            v["object"]["code"],
            v["object"]["message"].as_str().unwrap_or_default()
        ))),
        Some(_) => Ok(Event::Version(resource_version(&v["object"])?)),
        None => bail!("no type in {v}"),
    }
}

/// `metadata.resourceVersion` of an object or a list.
fn resource_version(v: &serde_json::Value) -> Result<u64> {
    v["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no resourceVersion in {}", v["metadata"]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_decoding_is_incremental_and_ends_at_the_zero_chunk() {
        let mut c = Chunked::default();
        assert_eq!(c.feed(b"5\r\nhel").unwrap(), b"");
        assert_eq!(c.feed(b"lo\r\n3;ext=1\r\n wo\r\n").unwrap(), b"hello wo");
        assert!(!c.done);
        assert_eq!(c.feed(b"0\r\n\r\n").unwrap(), b"");
        assert!(c.done);
        assert!(Chunked::default().feed(b"zz\r\n").is_err());
    }

    #[test]
    fn answers_are_complete_by_length_or_by_the_last_chunk() {
        let a = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab";
        assert_eq!(parse_response(a).unwrap(), None);
        let a = b"HTTP/1.1 201 Created\r\nContent-Length: 4\r\n\r\nabcd";
        assert_eq!(parse_response(a).unwrap(), Some((201, b"abcd".to_vec())));
        let a = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n";
        assert_eq!(parse_response(a).unwrap(), None);
        let a = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n";
        assert_eq!(parse_response(a).unwrap(), Some((200, b"{}".to_vec())));
    }

    #[test]
    fn watch_events_give_versions_or_errors() {
        let e = br#"{"type":"MODIFIED","object":{"kind":"ConfigMap","metadata":{"name":"x","resourceVersion":"1234"}}}"#;
        assert_eq!(watch_event(e).unwrap(), Event::Version(1234));
        let e = br#"{"type":"ERROR","object":{"kind":"Status","code":410,"message":"too old resource version: 5 (90)"}}"#;
        assert_eq!(
            watch_event(e).unwrap(),
            Event::Error("410 too old resource version: 5 (90)".into())
        );
        assert!(watch_event(br#"{"type":"ADDED","object":{}}"#).is_err());
    }

    #[test]
    fn the_pending_write_is_the_oldest_acknowledged_one_not_seen() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let acks = vec![
            Ack {
                at: at(0),
                rv: Some(10),
            },
            Ack {
                at: at(500),
                rv: None,
            },
            Ack {
                at: at(1000),
                rv: Some(12),
            },
            Ack {
                at: at(1500),
                rv: Some(15),
            },
        ];
        assert_eq!(pending_since(&acks, 15), None);
        assert_eq!(pending_since(&acks, 12), Some((at(1500), 15)));
        assert_eq!(pending_since(&acks, 10), Some((at(1000), 12)));
        assert_eq!(pending_since(&acks, 0), Some((at(0), 10)));
        assert_eq!(pending_since(&[], 0), None);
    }
}
