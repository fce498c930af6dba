//! The connection path, on the workers: accept (a place under the connection limit and
//! the descriptor reserve, or an immediate close), pick a backend ([`select::pick`]), connect (a refused or timed-out
//! connect marks that backend SUSPECT and the next one is tried), then forward both ways
//! until either side ends or the backend's drain is cut.
//!
//! It takes no lock on the common path: the member list is one snapshot loaded per
//! connection, each backend's state, counters and address are atomics or swapped
//! snapshots. It does not probe or decide health: a failed connect is reported to the
//! backend's state machine through [`Shared::apply`](crate::Shared).

use crate::cut::unless_cut;
use crate::select::{self, Pick};
use crate::{forward, Shared};
use cpe_health::Event;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// One client connection's place under the connection limit, given back on drop.
///
/// An atomic count rather than a semaphore: nothing ever waits for a place (past the
/// limit a connection is closed at once), and a semaphore's release takes a lock that
/// every worker would contend on for every connection.
struct Slot(Arc<Shared>);

impl Slot {
    fn take(shared: &Arc<Shared>) -> Option<Slot> {
        shared
            .open
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < shared.max_connections).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(shared.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Decrements a gauge when a connection ends, however it ends.
struct GaugeGuard<'a>(&'a prometheus_client::metrics::gauge::Gauge);

impl Drop for GaugeGuard<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Shared {
    /// Accepts on one worker's socket until `stop`, then closes it (dropped on return).
    /// The stop token, shared by the workers, is polled only when it fires (`cut.rs`),
    /// not on every accept.
    pub(crate) async fn accept_loop(
        self: &Arc<Self>,
        listener: TcpListener,
        stop: CancellationToken,
    ) {
        unless_cut(self.accept_until_dropped(listener), &stop).await;
    }

    async fn accept_until_dropped(self: &Arc<Self>, listener: TcpListener) {
        let mut last_limit_log: Option<Instant> = None;
        let mut last_accept_log: Option<Instant> = None;
        loop {
            let (client, peer) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: the connection stays in the backlog; back
                    // off a little instead of spinning on it.
                    if last_accept_log.is_none_or(|t| t.elapsed() > Duration::from_secs(1)) {
                        warn!(error = %e, "accept failed (file descriptor limit?)");
                        last_accept_log = Some(Instant::now());
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            self.metrics.accepted.inc();
            // Near the descriptor limit the client is closed, as past the connection
            // limit: the rest is kept for health checks, backend connects and the admin
            // listener, so that a flood cannot turn every backend DOWN.
            if std::os::fd::AsRawFd::as_raw_fd(&client) as u64 >= self.fd_ceiling {
                self.metrics.rejected.inc();
                if last_limit_log.is_none_or(|t| t.elapsed() > Duration::from_secs(1)) {
                    warn!(
                        fd_limit_less_reserve = self.fd_ceiling,
                        %peer,
                        "file descriptors nearly exhausted: closing new connections to keep a reserve for health checks (counted in cpe_lb_connections_rejected_total)"
                    );
                    last_limit_log = Some(Instant::now());
                }
                drop(client);
                continue;
            }
            let Some(slot) = Slot::take(self) else {
                self.metrics.rejected.inc();
                if last_limit_log.is_none_or(|t| t.elapsed() > Duration::from_secs(1)) {
                    warn!(
                        limit = self.config().max_connections,
                        %peer,
                        "connection limit reached: closing new connections (counted in cpe_lb_connections_rejected_total)"
                    );
                    last_limit_log = Some(Instant::now());
                }
                drop(client);
                continue;
            };
            // On this worker's runtime; tracked for the drain. The slot goes back when
            // the task ends, however it ends.
            tokio::spawn(self.connections.track_future(async move {
                slot.0.serve(client, peer).await;
            }));
        }
    }

    async fn serve(&self, client: TcpStream, peer: SocketAddr) {
        self.metrics.active.inc();
        let _active = GaugeGuard(&self.metrics.active);
        let members = self.members.load_full();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let connect_timeout = self.timing.load().connect_timeout;
        let mut tried: Vec<usize> = Vec::new();
        let (b, upstream) = loop {
            let i = match select::pick(members.len(), |i| members[i].view(), &tried, start) {
                Pick::Up(i) => i,
                Pick::Fallback(i) => {
                    self.metrics.fallback_connections.inc();
                    i
                }
                Pick::None => {
                    self.metrics.no_backend.inc();
                    debug!(%peer, tried = tried.len(), "no backend can take the connection: closing it");
                    return;
                }
            };
            let b = &members[i];
            let Some(addr) = b.addr() else {
                tried.push(i);
                continue;
            };
            if !tried.is_empty() {
                self.metrics.retries.inc();
            }
            let err = match tokio::time::timeout(connect_timeout, TcpStream::connect(addr)).await {
                Ok(Ok(s)) => break (b.clone(), s),
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("connect timed out after {connect_timeout:?}"),
            };
            b.failures.inc();
            debug!(backend = %b.name, %peer, error = %err, "connect failed: trying another backend");
            self.apply(b, Event::ConnectFailed(err));
            tried.push(i);
        };
        drop(members);
        forward::tune(&upstream);
        b.connects.inc();
        b.active.inc();
        let _b_active = GaugeGuard(&b.active);
        // Not `select!`: it would poll the drain token, shared by every connection to this
        // backend, on every read and write (see `cut.rs`).
        match unless_cut(forward::both_ways(&client, &upstream, &*b), &b.drain).await {
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                debug!(backend = %b.name, %peer, error = %e, "connection ended with an error")
            }
            None => debug!(backend = %b.name, %peer, "closed: drain timeout passed"),
        }
    }
}
