//! The L4 load balancer behind `cpe lb`: accepts TCP connections on the endpoint and
//! forwards them, bytes untouched (TLS passes through), to a control-plane machine whose
//! API server answers. It does not terminate TLS, parse HTTP, or decide health itself:
//! health comes from `cpe-health`, selection is a pure function of the backends' states.
//!
//! Three concerns, kept apart (as in Pingora's load-balancing crate):
//!
//! - which backends exist: the member list, one `Arc` snapshot swapped whole on reload
//!   ([`LbHandle::reload`]; what a reload keeps, adds and retires is [`membership`]'s
//!   pure diff);
//! - are they up: one [`cpe_health::Checker`] per backend feeds probe outcomes, and the
//!   connection path feeds failed connects, into that backend's [`cpe_health::Health`];
//! - which to pick: [`select::pick`], least connections among `UP` backends, run per
//!   connection over the member snapshot, reading each backend's state, connection
//!   count and address from atomics (no selection structure is built or swapped).
//!
//! # Layout
//!
//! - [`config`]: [`LbConfig`] and [`BackendSpec`], from the definition or from flags.
//! - [`backend`]: one running backend: address, health, counters, drain token.
//! - [`select`]: the pure choice of a backend.
//! - [`membership`]: the pure reload diff (keep / add / retire), the settings that need a
//!   restart, and when a retired backend's drain is over.
//! - [`forward`]: moving bytes both ways with half-close and no idle buffers.
//! - [`metrics`]: Prometheus metrics.
//! - [`status`]: the `/status` document and the table `cpe status` prints.
//! - `listen.rs`: the listening sockets (one per worker, `SO_REUSEPORT`, the port claimed
//!   first) and [`raise_fd_limit`].
//! - `worker.rs`: the worker threads, each with its own current-thread runtime.
//! - `conn.rs`: the connection path (accept under the limit, pick, connect with retry,
//!   forward).
//! - `checks.rs`: one checker per backend, and what a change of health does (logs,
//!   metrics, the fallback warning).
//! - `reload.rs`: the reload driver and the drains of retired backends.
//! - `admin.rs`: the admin listener's routes (`/metrics`, `/status`, maintenance).
//! - here: [`Lb`] (bind, then `run` until shutdown, then drain) and [`LbHandle`].
//!
//! # Use as a library
//!
//! ```no_run
//! # async fn demo(config: cpe_lb::LbConfig) -> Result<(), cpe_lb::LbError> {
//! let lb = cpe_lb::Lb::bind(config).await?; // listeners bound, first checks done
//! let handle = lb.handle();                  // status, reload, maintenance
//! println!("listening on {}", lb.local_addr());
//! lb.run(async { let _ = tokio::signal::ctrl_c().await; }).await?; // drains, then returns
//! # Ok(()) }
//! ```

mod admin;
pub mod backend;
mod checks;
pub mod config;
mod conn;
mod cut;
pub mod discovery;
pub mod forward;
mod listen;
pub mod membership;
pub mod metrics;
mod reload;
pub mod select;
pub mod status;
mod worker;

pub use config::{BackendSpec, LbConfig};
pub use listen::raise_fd_limit;

use arc_swap::ArcSwap;
use backend::Backend;
use cpe_health::{Check, Event, ProbeError, Prober, Rules};
use metrics::ReloadLabel;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};
use worker::{RunGuard, Worker};

/// Why the load balancer could not start or reload.
#[derive(Debug, thiserror::Error)]
pub enum LbError {
    // The I/O error is in the message, not a `source`: the CLI prints the cause chain,
    // which would repeat it.
    #[error("cannot listen on {addr}: {error}{}", in_use_hint(.error, *.addr))]
    Listen { addr: SocketAddr, error: io::Error },
    #[error("cannot listen for admin requests on {addr}: {error}{}", in_use_hint(.error, *.addr))]
    Admin { addr: SocketAddr, error: io::Error },
    #[error("cannot listen for metrics scrapes on {addr}: {error}{}", in_use_hint(.error, *.addr))]
    Metrics { addr: SocketAddr, error: io::Error },
    #[error(transparent)]
    Health(#[from] ProbeError),
    #[error("no backends: give at least one (control-plane machines in the file, or --backend)")]
    NoBackends,
    #[error("maxConnections must be at least 1")]
    NoConnections,
    #[error("no backend named {0}")]
    NoSuchBackend(String),
    #[error("workers must be at least 1")]
    NoWorkers,
    #[error("cannot start worker {worker}: {error}")]
    Worker { worker: usize, error: io::Error },
    #[error(transparent)]
    AdminToken(#[from] cpe_admin::TokenError),
}

fn in_use_hint(e: &io::Error, addr: SocketAddr) -> String {
    if e.kind() == io::ErrorKind::AddrInUse {
        format!(
            " (another process listens there: `ss -ltnp 'sport = :{}'` shows which)",
            addr.port()
        )
    } else {
        String::new()
    }
}

/// What a reload changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reloaded {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub kept: Vec<String>,
    /// Settings that differ but only take effect after a restart.
    pub needs_restart: Vec<&'static str>,
}

/// Settings of the connection path that may change on reload (the checkers' are in
/// [`Shared::check`]).
#[derive(Clone, Copy, Debug)]
struct Timing {
    connect_timeout: Duration,
    drain_timeout: Duration,
}

impl Timing {
    fn of(config: &LbConfig) -> Timing {
        Timing {
            connect_timeout: config.connect_timeout,
            drain_timeout: config.drain_timeout,
        }
    }
}

/// Everything the accept loop, the connections, the checkers and the admin listener share.
struct Shared {
    /// Which backends exist. Swapped whole on reload; a connection loads it once.
    members: ArcSwap<Vec<Arc<Backend>>>,
    /// Removed backends whose connections are still draining (shown in `/status`).
    retired: Mutex<Vec<Arc<Backend>>>,
    /// Prober, rules and interval: every checker subscribes and reads them at the start
    /// of each round; failed connects and maintenance are judged by the same rules.
    check: watch::Sender<Check>,
    timing: ArcSwap<Timing>,
    /// The definition the load balancer runs on now (for reload diffs).
    config: Mutex<LbConfig>,
    metrics: metrics::Metrics,
    /// Client connections open now, against `max_connections` (see `conn.rs`).
    open: AtomicUsize,
    max_connections: usize,
    /// The first descriptor number a client connection may not have: the soft limit
    /// less [`listen::FD_RESERVE`] (see `conn.rs`).
    fd_ceiling: u64,
    /// Rotates ties in least-connections.
    next: AtomicUsize,
    /// No backend up, some TCP-alive: logged loudly on each change.
    fallback: AtomicBool,
    /// Parent of every checker's stop token.
    stop_checks: CancellationToken,
    /// Ends every connection (drain timeout passed at shutdown).
    hard_stop: CancellationToken,
    connections: TaskTracker,
    started: Instant,
    listen: SocketAddr,
    /// The other addresses bound at `listen`'s port (the node-local `[::1]`).
    listen_also: Vec<SocketAddr>,
    admin: Option<SocketAddr>,
    last_reload_error: Mutex<Option<String>>,
    /// Origins of the backends, when the set changed, discovery's sources and cache.
    board: Mutex<discovery::Board>,
}

/// A bound, checked load balancer, ready to [`run`](Lb::run).
pub struct Lb {
    shared: Arc<Shared>,
    /// Each worker's listening sockets (one per address, `SO_REUSEPORT` across the
    /// workers), taken by `run`.
    listeners: Vec<Vec<std::net::TcpListener>>,
    admin: Option<TcpListener>,
    /// The metrics-only listener (`cpe_admin::serve_metrics`), taken by `run`.
    metrics: Option<TcpListener>,
    /// What `POST /maintenance/...` must carry (read from the token file at bind).
    admin_token: Option<cpe_admin::Token>,
}

/// A cheap handle on a running load balancer: status, reload, maintenance, metrics.
#[derive(Clone)]
pub struct LbHandle {
    shared: Arc<Shared>,
}

impl Lb {
    /// Binds the listener and the admin listener (a port in use is an error naming it),
    /// builds the prober (CA/cert/key files read now), starts one checker per backend and
    /// waits for the first round of checks (at most the check timeout), so the first
    /// client connection already knows which backends are up. A backend that is down or
    /// does not resolve is not an error: it is reported down.
    pub async fn bind(config: LbConfig) -> Result<Lb, LbError> {
        if config.backends.is_empty() {
            return Err(LbError::NoBackends);
        }
        if config.max_connections == 0 {
            return Err(LbError::NoConnections);
        }
        let prober = Prober::from_config(&config.health)?;
        let admin_token = config
            .admin_token_file
            .as_deref()
            .map(cpe_admin::Token::read)
            .transpose()?;
        if config.workers == 0 {
            return Err(LbError::NoWorkers);
        }
        let backlog = config.max_connections.clamp(128, 65535) as u32;
        let listeners =
            listen::bind_listeners(config.listen, backlog, config.workers).map_err(|error| {
                LbError::Listen {
                    addr: config.listen,
                    error,
                }
            })?;
        let listen = listeners[0].local_addr().map_err(|error| LbError::Listen {
            addr: config.listen,
            error,
        })?;
        let (listeners, listen_also) = listen::bind_also(
            listeners,
            listen,
            &config.listen_also,
            backlog,
            config.workers,
        )?;
        let admin = match config.admin {
            Some(a) => Some(
                listen::bind_listener(a, 128).map_err(|error| LbError::Admin { addr: a, error })?,
            ),
            None => None,
        };
        let admin_addr = admin.as_ref().and_then(|l| l.local_addr().ok());
        let metrics_listener = match config.metrics {
            Some(a) => Some(
                listen::bind_listener(a, 128)
                    .map_err(|error| LbError::Metrics { addr: a, error })?,
            ),
            None => None,
        };
        let shared = Arc::new(Shared {
            members: ArcSwap::from_pointee(Vec::new()),
            retired: Mutex::new(Vec::new()),
            check: watch::channel(Check {
                prober,
                rules: Rules::from_config(&config.health),
                interval: config.health.interval,
            })
            .0,
            timing: ArcSwap::from_pointee(Timing::of(&config)),
            config: Mutex::new(config.clone()),
            metrics: metrics::Metrics::new(),
            open: AtomicUsize::new(0),
            max_connections: config.max_connections,
            fd_ceiling: listen::fd_ceiling(),
            next: AtomicUsize::new(0),
            fallback: AtomicBool::new(false),
            stop_checks: CancellationToken::new(),
            hard_stop: CancellationToken::new(),
            connections: TaskTracker::new(),
            started: Instant::now(),
            listen,
            listen_also,
            admin: admin_addr,
            last_reload_error: Mutex::new(None),
            board: Mutex::new(discovery::Board::new()),
        });
        let members: Vec<Arc<Backend>> = config
            .backends
            .iter()
            .map(|spec| shared.start_backend(spec.clone(), false))
            .collect();
        shared.members.store(Arc::new(members));
        // The first round of checks, so that the first connection finds backends up.
        let deadline = Instant::now() + config.health.timeout + Duration::from_millis(200);
        while Instant::now() < deadline
            && !shared.members.load().iter().all(|b| b.health().checked())
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        info!(
            listen = %listen,
            listen_also = ?shared.listen_also,
            admin = ?admin_addr,
            backends = %shared.members.load().iter().map(|b| format!("{} {}", b.name, b.state())).collect::<Vec<_>>().join(", "),
            "load balancer ready"
        );
        Ok(Lb {
            shared,
            listeners,
            admin,
            metrics: metrics_listener,
            admin_token,
        })
    }

    /// Where clients connect (the actual port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.listen
    }

    /// Every address clients may connect to: [`local_addr`](Self::local_addr), then the
    /// `listen_also` addresses that were bound.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        std::iter::once(self.shared.listen)
            .chain(self.shared.listen_also.iter().copied())
            .collect()
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.shared.admin
    }

    /// The metrics-only listener's address (the actual port when bound to port 0).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|l| l.local_addr().ok())
    }

    pub fn handle(&self) -> LbHandle {
        LbHandle {
            shared: self.shared.clone(),
        }
    }

    /// Serves until `shutdown` completes; then closes the listener at once (new
    /// connections are refused by the kernel), lets existing connections finish for up to
    /// the drain timeout, closes what is left and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), LbError> {
        let mut this = self;
        let shared = this.shared.clone();
        let admin = this.admin.take();
        if this.listeners.is_empty() {
            return Ok(());
        }
        let admin_stop = CancellationToken::new();
        let admin_task = admin.map(|l| {
            let (handler, actions) = admin::routes(LbHandle {
                shared: shared.clone(),
            });
            tokio::spawn(cpe_admin::serve_with(
                l,
                handler,
                Some(actions),
                cpe_admin::Options::with_token(this.admin_token.take()),
                admin_stop.clone().cancelled_owned(),
            ))
        });
        let metrics_task = this.metrics.take().map(|l| {
            let (handler, _) = admin::routes(LbHandle {
                shared: shared.clone(),
            });
            tokio::spawn(cpe_admin::serve_metrics(
                l,
                handler,
                admin_stop.clone().cancelled_owned(),
            ))
        });

        // The workers (see `worker.rs`). Health checks, the admin listener and reloads
        // stay on the caller's runtime; everything the workers share is atomics and
        // swapped snapshots.
        let stop_accepting = CancellationToken::new();
        let _guard = RunGuard {
            stop_accepting: stop_accepting.clone(),
            shared: shared.clone(),
        };
        let mut workers = Vec::new();
        for (i, l) in std::mem::take(&mut this.listeners).into_iter().enumerate() {
            match Worker::start(i, &shared, l, stop_accepting.clone()) {
                Ok(w) => workers.push(w),
                Err(error) => {
                    stop_accepting.cancel();
                    shared.connections.close();
                    for w in workers {
                        w.join().await;
                    }
                    admin_stop.cancel();
                    return Err(LbError::Worker { worker: i, error });
                }
            }
        }
        shutdown.await;
        stop_accepting.cancel();
        for w in &mut workers {
            w.listener_closed().await;
        }
        let drain = shared.timing.load().drain_timeout;
        let open = shared.connections.len();
        info!(
            open,
            drain_timeout = ?drain,
            "stopped accepting; draining existing connections"
        );
        shared.connections.close();
        if tokio::time::timeout(drain, shared.connections.wait())
            .await
            .is_err()
        {
            warn!(
                open = shared.connections.len(),
                "drain timeout passed: closing the remaining connections"
            );
            shared.hard_stop.cancel();
            shared.connections.wait().await;
        }
        for w in workers {
            w.join().await;
        }
        shared.stop_checks.cancel();
        admin_stop.cancel();
        for t in [admin_task, metrics_task].into_iter().flatten() {
            let _ = t.await;
        }
        info!("load balancer stopped");
        Ok(())
    }
}

impl Drop for Lb {
    fn drop(&mut self) {
        // Dropped without run (or after it): no checker outlives the load balancer.
        self.shared.stop_checks.cancel();
    }
}

impl Shared {
    fn config(&self) -> LbConfig {
        self.config
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl LbHandle {
    /// The `/status` document (`"kind": "lb"`).
    pub fn status(&self) -> serde_json::Value {
        status::document(&self.shared)
    }

    /// Prometheus text.
    pub fn metrics_text(&self) -> String {
        for b in self.shared.members.load().iter() {
            // Keep the one-hot state fresh even if a transition raced a reload.
            self.shared.metrics.set_state(&b.name, b.state());
        }
        self.shared.metrics.encode()
    }

    /// Applies a new definition: backends added start being checked (and get connections
    /// once up), removed ones get no new connections and keep their existing ones until
    /// they end or the drain timeout passes. On error nothing changes.
    pub fn reload(&self, config: LbConfig) -> Result<Reloaded, LbError> {
        let r = self.shared.reload(config);
        match &r {
            Err(e) => self.reload_failed(&e.to_string()),
            Ok(r) if !r.added.is_empty() || !r.removed.is_empty() => self.board().touch(),
            Ok(_) => {}
        }
        r
    }

    /// Discovery's board: origins, when the set changed, sources, cache.
    pub fn board(&self) -> std::sync::MutexGuard<'_, discovery::Board> {
        self.shared.board.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where backends without a discovered origin come from: [`discovery::decide::Origin::File`]
    /// for a definition's machines, `Seed` (the default) for `--backend`.
    pub fn set_seed_origin(&self, origin: discovery::decide::Origin) {
        self.board().seed_origin = origin;
    }

    /// Where discovery may ask the API: the addresses of the backends that are up, or of
    /// every member when none is.
    pub fn discovery_targets(&self) -> Vec<SocketAddr> {
        let members = self.shared.members.load();
        let up: Vec<SocketAddr> = members
            .iter()
            .filter(|b| b.state() == cpe_health::State::Up)
            .filter_map(|b| b.addr())
            .collect();
        if !up.is_empty() {
            return up;
        }
        members.iter().filter_map(|b| b.addr()).collect()
    }

    /// Records a reload that failed before reaching [`reload`](Self::reload) (an invalid
    /// file): counted, and shown in `/status` until the next good reload.
    pub fn reload_failed(&self, error: &str) {
        self.shared
            .metrics
            .reloads
            .get_or_create(&ReloadLabel {
                result: "error".into(),
            })
            .inc();
        *self
            .shared
            .last_reload_error
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(error.to_string());
    }

    /// Puts a backend in maintenance (no new connections, checks ignored) or takes it out.
    pub fn set_maintenance(&self, backend: &str, on: bool) -> Result<(), LbError> {
        let members = self.shared.members.load();
        let b = members
            .iter()
            .find(|b| b.name == backend)
            .ok_or_else(|| LbError::NoSuchBackend(backend.to_string()))?;
        self.shared.apply(b, Event::Maintenance(on));
        Ok(())
    }

    /// Current state of every backend, by name.
    pub fn states(&self) -> Vec<(String, cpe_health::State)> {
        self.shared
            .members
            .load()
            .iter()
            .map(|b| (b.name.clone(), b.state()))
            .collect()
    }

    /// Client connections open now.
    pub fn active_connections(&self) -> usize {
        self.shared.metrics.active.get().max(0) as usize
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.shared.listen
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.shared.admin
    }
}
