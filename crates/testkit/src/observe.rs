//! The two observers of a failover, both outside the machines under test.
//!
//! - [`Prober`]: the client. From inside the client's namespace it starts a request to the
//!   endpoint every `interval` (open loop: a new request does not wait for a slow one), each
//!   on a fresh connection with an overall timeout, HTTPS (certificate not checked: the
//!   observer measures reachability, not trust) or plain HTTP. Every request is recorded with
//!   its start, end and result; [`Requests`] turns them into figures.
//! - [`Watch`]: samples, every `interval`, every host's IPv4 addresses (who holds the VIP)
//!   and the client's neighbour entry for the VIP (which MAC it sends to), over netlink
//!   sockets opened in each namespace so that one sweep over all hosts takes well under a
//!   millisecond. It records changes only.
//!
//! Definitions (also in `docs/vip-failover.md`): the *outage* of a window is the longest
//! time between two consecutive successful completions in it, so a client sending a request
//! every 20 ms sees about 20 ms when nothing fails; a *failed* request is one that errored,
//! timed out or got a status other than 200; *two holders* is a sweep in which two hosts had
//! the VIP on an interface.

use crate::netlink::{enter_netns, NlSocket};
use crate::Host;
use anyhow::{bail, Context, Result};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One request the client made. Times are since the testbed's epoch.
#[derive(Debug, Clone)]
pub struct Request {
    pub start: Duration,
    pub end: Duration,
    pub ok: bool,
    /// The status code, or the error.
    pub detail: String,
    /// The `X-Cpe-Backend` response header (the stand-in API server that answered), if any.
    pub backend: Option<String>,
}

/// What to request.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub https: bool,
    pub path: String,
}

/// The client: requests in flight from the client namespace until dropped.
#[derive(Debug)]
pub struct Prober {
    stop: Arc<AtomicBool>,
    records: Arc<Mutex<Vec<Request>>>,
    thread: Option<JoinHandle<()>>,
}

impl Prober {
    /// Starts probing `target` from inside `client`. `timeout` bounds one request (connect,
    /// TLS, response); at most `timeout / interval + 1` requests are in flight.
    pub fn start(
        client: &Host,
        target: Target,
        interval: Duration,
        timeout: Duration,
        epoch: Instant,
    ) -> Result<Prober> {
        let stop = Arc::new(AtomicBool::new(false));
        let records = Arc::new(Mutex::new(Vec::new()));
        let tls = Arc::new(tls_config());
        let ns = client.ns_path();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = {
            let stop = stop.clone();
            let records = records.clone();
            std::thread::Builder::new()
                .name("prober".into())
                .spawn(move || {
                    // Workers started from this thread inherit its namespace.
                    if let Err(e) = enter_netns(&ns) {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                    let _ = ready_tx.send(Ok(()));
                    let in_flight = Arc::new(AtomicUsize::new(0));
                    let max_in_flight =
                        (timeout.as_millis() / interval.as_millis().max(1)) as usize + 1;
                    let mut next = Instant::now();
                    while !stop.load(Ordering::Relaxed) {
                        if in_flight.load(Ordering::SeqCst) < max_in_flight {
                            in_flight.fetch_add(1, Ordering::SeqCst);
                            let (records, flight, tls, target) = (
                                records.clone(),
                                in_flight.clone(),
                                tls.clone(),
                                target.clone(),
                            );
                            let spawned = std::thread::Builder::new().spawn(move || {
                                let start = epoch.elapsed();
                                let r = request(&target, &tls, timeout);
                                let end = epoch.elapsed();
                                let (ok, detail, backend) = match r {
                                    Ok((200, b)) => (true, "200".to_string(), b),
                                    Ok((code, b)) => (false, code.to_string(), b),
                                    Err(e) => (false, format!("{e:#}"), None),
                                };
                                records.lock().unwrap().push(Request {
                                    start,
                                    end,
                                    ok,
                                    detail,
                                    backend,
                                });
                                flight.fetch_sub(1, Ordering::SeqCst);
                            });
                            if spawned.is_err() {
                                in_flight.fetch_sub(1, Ordering::SeqCst);
                            }
                        }
                        next += interval;
                        let now = Instant::now();
                        if next > now {
                            std::thread::sleep(next - now);
                        } else {
                            next = now;
                        }
                    }
                    // Let requests in flight finish so their results are recorded.
                    let deadline = Instant::now() + timeout + Duration::from_millis(200);
                    while in_flight.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                })?
        };
        ready_rx.recv().context("prober thread died")??;
        Ok(Prober {
            stop,
            records,
            thread: Some(thread),
        })
    }

    /// A copy of every request so far, in completion order.
    pub fn requests(&self) -> Requests {
        Requests(self.records.lock().unwrap().clone())
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Requests, with the figures the scenarios report.
#[derive(Debug, Clone)]
pub struct Requests(pub Vec<Request>);

impl Requests {
    /// The longest time between consecutive successful completions ending in `[from, to]`,
    /// counting `from` itself as a success boundary only if a request succeeded just before
    /// it (so a window that starts mid-outage is not shortened). `None` if nothing succeeded.
    pub fn outage(&self, from: Duration, to: Duration) -> Option<Duration> {
        let mut ends: Vec<Duration> = self
            .0
            .iter()
            .filter(|r| r.ok && r.end >= from && r.end <= to)
            .map(|r| r.end)
            .collect();
        // The last success before the window opens the first gap.
        if let Some(before) = self
            .0
            .iter()
            .filter(|r| r.ok && r.end < from)
            .map(|r| r.end)
            .max()
        {
            ends.push(before);
        }
        ends.sort();
        if ends.is_empty() {
            return None;
        }
        let mut worst = Duration::ZERO;
        for w in ends.windows(2) {
            worst = worst.max(w[1] - w[0]);
        }
        // Still failing at the end of the window: the gap runs to `to`.
        worst = worst.max(to.saturating_sub(*ends.last().unwrap()));
        Some(worst)
    }

    /// Requests started in `[from, to]` that failed.
    pub fn failed(&self, from: Duration, to: Duration) -> Vec<&Request> {
        self.0
            .iter()
            .filter(|r| !r.ok && r.start >= from && r.start <= to)
            .collect()
    }

    /// Requests started in `[from, to]`.
    pub fn count(&self, from: Duration, to: Duration) -> usize {
        self.0
            .iter()
            .filter(|r| r.start >= from && r.start <= to)
            .count()
    }

    /// The slowest successful request started in `[from, to]`.
    pub fn slowest(&self, from: Duration, to: Duration) -> Duration {
        self.0
            .iter()
            .filter(|r| r.ok && r.start >= from && r.start <= to)
            .map(|r| r.end - r.start)
            .max()
            .unwrap_or_default()
    }

    /// Whether the last `n` requests completed (by end time) before `until` all succeeded.
    pub fn last_ok(&self, n: usize, until: Duration) -> bool {
        let mut done: Vec<&Request> = self.0.iter().filter(|r| r.end <= until).collect();
        done.sort_by_key(|r| r.end);
        done.len() >= n && done[done.len() - n..].iter().all(|r| r.ok)
    }
}

/// One GET on a fresh connection; the status code and the `X-Cpe-Backend` header.
fn request(
    t: &Target,
    tls: &Arc<rustls::ClientConfig>,
    timeout: Duration,
) -> Result<(u16, Option<String>)> {
    let deadline = Instant::now() + timeout;
    let tcp = TcpStream::connect_timeout(&t.addr, timeout).context("connect")?;
    let left = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    tcp.set_nodelay(true)?;
    tcp.set_read_timeout(Some(left()))?;
    tcp.set_write_timeout(Some(left()))?;
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: cpe-testkit\r\nConnection: close\r\n\r\n",
        t.path, t.addr
    );
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    if t.https {
        let name = rustls::pki_types::ServerName::IpAddress(t.addr.ip().into());
        let conn = rustls::ClientConnection::new(tls.clone(), name)?;
        let mut s = rustls::StreamOwned::new(conn, tcp);
        s.write_all(req.as_bytes())
            .context("TLS handshake / write")?;
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            s.sock.set_read_timeout(Some(left()))?;
            let n = s.read(&mut buf).context("read")?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
    } else {
        let mut s = tcp;
        s.write_all(req.as_bytes()).context("write")?;
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            s.set_read_timeout(Some(left()))?;
            let n = s.read(&mut buf).context("read")?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
    }
    let text = String::from_utf8_lossy(&head);
    let code = text.split_whitespace().nth(1).and_then(|c| c.parse().ok());
    let backend = text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("x-cpe-backend")
            .then(|| v.trim().to_string())
    });
    match code {
        Some(c) => Ok((c, backend)),
        None => bail!("no status line in {:?}", text.lines().next().unwrap_or("")),
    }
}

pub(crate) fn tls_config() -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .dangerous()
        .with_custom_certificate_verifier(cpe_health::NoVerification::new(provider))
        .with_no_client_auth()
}

/// A change seen by the [`Watch`].
#[derive(Debug, Clone)]
pub struct HolderChange {
    pub t: Duration,
    /// Names of the hosts with the VIP on an interface, sorted.
    pub holders: Vec<String>,
}

/// A change of the client's neighbour entry for the VIP.
#[derive(Debug, Clone)]
pub struct NeighbourChange {
    pub t: Duration,
    /// The MAC the client would send to (empty: no usable entry).
    pub mac: String,
    /// The host owning that MAC, if known.
    pub host: Option<String>,
}

#[derive(Debug, Default)]
struct WatchState {
    holders: Vec<HolderChange>,
    neighbour: Vec<NeighbourChange>,
    /// Sweeps with two or more holders.
    doubles: Vec<HolderChange>,
    sweeps: u64,
    errors: Vec<String>,
}

struct Watched {
    name: String,
    mac: String,
    sock: NlSocket,
}

/// Samples who holds the VIP and where the client's neighbour entry points.
#[derive(Debug)]
pub struct Watch {
    stop: Arc<AtomicBool>,
    state: Arc<Mutex<WatchState>>,
    hosts: Arc<Mutex<Vec<Watched>>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Watched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name, self.mac)
    }
}

impl Watch {
    /// Starts watching `hosts` for `vip`, and `client`'s neighbour entry for it.
    pub fn start(
        hosts: &[Host],
        client: &Host,
        vip: Ipv4Addr,
        interval: Duration,
        epoch: Instant,
    ) -> Result<Watch> {
        let mut watched = Vec::new();
        for h in hosts {
            watched.push(Watched {
                name: h.name.clone(),
                mac: h.mac()?,
                sock: NlSocket::open_in(&h.ns_path())?,
            });
        }
        let hosts = Arc::new(Mutex::new(watched));
        let mut csock = NlSocket::open_in(&client.ns_path())?;
        let stop = Arc::new(AtomicBool::new(false));
        let state = Arc::new(Mutex::new(WatchState::default()));
        let thread = {
            let (stop, state, hosts) = (stop.clone(), state.clone(), hosts.clone());
            std::thread::Builder::new()
                .name("holder-watch".into())
                .spawn(move || {
                    let mut next = Instant::now();
                    while !stop.load(Ordering::Relaxed) {
                        let t = epoch.elapsed();
                        let mut holders = Vec::new();
                        let mut macs = Vec::new();
                        let mut errors = Vec::new();
                        {
                            let mut hs = hosts.lock().unwrap();
                            for h in hs.iter_mut() {
                                match h.sock.ipv4_addrs() {
                                    Ok(a) if a.contains(&vip) => holders.push(h.name.clone()),
                                    Ok(_) => {}
                                    Err(e) => errors.push(format!("{}: {e:#}", h.name)),
                                }
                                macs.push((h.mac.clone(), h.name.clone()));
                            }
                        }
                        holders.sort();
                        let neigh = csock.ipv4_neighbours().map(|ns| {
                            ns.into_iter()
                                .find(|n| n.dst == vip)
                                // Only states that carry a usable address (not INCOMPLETE/FAILED).
                                .filter(|n| {
                                    n.state & (0x02 | 0x04 | 0x08 | 0x10 | 0x40 | 0x80) != 0
                                })
                                .map(|n| n.mac)
                                .unwrap_or_default()
                        });
                        let mut st = state.lock().unwrap();
                        st.sweeps += 1;
                        for e in errors {
                            if st.errors.len() < 20 {
                                st.errors.push(e);
                            }
                        }
                        if st.holders.last().map(|c| &c.holders) != Some(&holders) {
                            st.holders.push(HolderChange {
                                t,
                                holders: holders.clone(),
                            });
                        }
                        if holders.len() > 1 {
                            st.doubles.push(HolderChange { t, holders });
                        }
                        if let Ok(mac) = neigh {
                            if st.neighbour.last().map(|c| &c.mac) != Some(&mac) {
                                let host =
                                    macs.iter().find(|(m, _)| *m == mac).map(|(_, n)| n.clone());
                                st.neighbour.push(NeighbourChange { t, mac, host });
                            }
                        }
                        drop(st);
                        next += interval;
                        let now = Instant::now();
                        if next > now {
                            std::thread::sleep(next - now);
                        } else {
                            next = now;
                        }
                    }
                })?
        };
        Ok(Watch {
            stop,
            state,
            hosts,
            thread: Some(thread),
        })
    }

    /// Starts watching another host (rolling replacement).
    pub fn add_host(&self, h: &Host) -> Result<()> {
        let w = Watched {
            name: h.name.clone(),
            mac: h.mac()?,
            sock: NlSocket::open_in(&h.ns_path())?,
        };
        self.hosts.lock().unwrap().push(w);
        Ok(())
    }

    /// Stops watching a host (before its namespace is deleted).
    pub fn remove_host(&self, name: &str) {
        self.hosts.lock().unwrap().retain(|w| w.name != name);
    }

    /// The holder changes so far (the first entry is the state at start).
    pub fn holders(&self) -> Vec<HolderChange> {
        self.state.lock().unwrap().holders.clone()
    }

    /// The current holders.
    pub fn current(&self) -> Vec<String> {
        self.state
            .lock()
            .unwrap()
            .holders
            .last()
            .map(|c| c.holders.clone())
            .unwrap_or_default()
    }

    /// Sweeps in `[from, to]` that saw two or more holders.
    pub fn doubles(&self, from: Duration, to: Duration) -> Vec<HolderChange> {
        self.state
            .lock()
            .unwrap()
            .doubles
            .iter()
            .filter(|c| c.t >= from && c.t <= to)
            .cloned()
            .collect()
    }

    /// Holder changes in `[from, to]`.
    pub fn changes(&self, from: Duration, to: Duration) -> Vec<HolderChange> {
        self.holders()
            .into_iter()
            .filter(|c| c.t >= from && c.t <= to)
            .collect()
    }

    /// The client's neighbour-entry changes so far.
    pub fn neighbour(&self) -> Vec<NeighbourChange> {
        self.state.lock().unwrap().neighbour.clone()
    }

    /// How many sweeps ran, and the first sampling errors (a host that could not be read).
    pub fn health(&self) -> (u64, Vec<String>) {
        let st = self.state.lock().unwrap();
        (st.sweeps, st.errors.clone())
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: u64, end: u64, ok: bool) -> Request {
        Request {
            start: Duration::from_millis(start),
            end: Duration::from_millis(end),
            ok,
            detail: String::new(),
            backend: None,
        }
    }
    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn outage_is_the_longest_gap_between_successes_including_the_one_before_the_window() {
        let q = Requests(vec![
            r(0, 5, true),
            r(20, 25, true),
            r(40, 1040, false),
            r(60, 700, true), // slow but succeeded: ends the outage at 700
            r(720, 725, true),
        ]);
        assert_eq!(q.outage(ms(30), ms(800)), Some(ms(675)));
        assert_eq!(q.failed(ms(30), ms(800)).len(), 1);
        assert_eq!(q.slowest(ms(30), ms(800)), ms(640));
    }

    #[test]
    fn outage_runs_to_the_end_of_the_window_when_nothing_recovers() {
        let q = Requests(vec![r(0, 5, true), r(20, 500, false)]);
        assert_eq!(q.outage(ms(10), ms(900)), Some(ms(895)));
        assert!(!q.last_ok(1, ms(900)));
        assert!(q.last_ok(1, ms(10)));
    }
}
