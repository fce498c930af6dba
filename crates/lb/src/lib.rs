//! The L4 load balancer behind `cpe lb`: accepts TCP connections on the endpoint and
//! forwards them, bytes untouched (TLS passes through), to a control-plane machine whose
//! API server answers. It does not terminate TLS, parse HTTP, or decide health itself:
//! health comes from `cpe-health`, selection is a pure function of the backends' states.
//!
//! Three concerns, kept apart (as in Pingora's load-balancing crate):
//!
//! - which backends exist: the [`LbConfig`], swapped whole on reload ([`LbHandle::reload`]);
//! - are they up: one checker task per backend feeds probe outcomes, and the connection
//!   path feeds failed connects, into that backend's [`cpe_health::Health`];
//! - which to pick: [`select::pick`], least connections among `UP` backends, reading
//!   atomics only.
//!
//! # Layout
//!
//! - [`config`]: [`LbConfig`] and [`BackendSpec`], from the definition or from flags.
//! - [`backend`]: one running backend: address, health, counters, drain token.
//! - [`select`]: the pure choice of a backend.
//! - [`forward`]: moving bytes both ways with half-close and no idle buffers.
//! - [`metrics`]: Prometheus metrics.
//! - [`status`]: the `/status` document and the table `cpe status` prints.
//! - here: [`Lb`] (bind, then `run` with one worker thread per CPU, each accepting on its
//!   own `SO_REUSEPORT` socket), the connection path, checkers, reload.
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

pub mod backend;
pub mod config;
pub mod forward;
pub mod metrics;
pub mod select;
pub mod status;

pub use config::{BackendSpec, LbConfig};

use arc_swap::ArcSwap;
use backend::Backend;
use cpe_health::{Event, Observation, Outcome, ProbeError, Prober, Rules};
use metrics::{ReloadLabel, ResultLabel};
use select::Pick;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

/// Why the load balancer could not start or reload.
#[derive(Debug, thiserror::Error)]
pub enum LbError {
    // The I/O error is in the message, not a `source`: the CLI prints the cause chain,
    // which would repeat it.
    #[error("cannot listen on {addr}: {error}{}", in_use_hint(.error, *.addr))]
    Listen { addr: SocketAddr, error: io::Error },
    #[error("cannot listen for admin requests on {addr}: {error}{}", in_use_hint(.error, *.addr))]
    Admin { addr: SocketAddr, error: io::Error },
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

/// Settings that may change on reload.
#[derive(Clone, Copy, Debug)]
struct Timing {
    interval: Duration,
    connect_timeout: Duration,
    drain_timeout: Duration,
}

/// Everything the accept loop, the connections, the checkers and the admin listener share.
struct Shared {
    /// Which backends exist. Swapped whole on reload; a connection loads it once.
    members: ArcSwap<Vec<Arc<Backend>>>,
    /// Removed backends whose connections are still draining (shown in `/status`).
    retired: Mutex<Vec<Arc<Backend>>>,
    prober: ArcSwap<Prober>,
    rules: ArcSwap<Rules>,
    timing: ArcSwap<Timing>,
    /// The definition the load balancer runs on now (for reload diffs).
    config: Mutex<LbConfig>,
    metrics: metrics::Metrics,
    /// Client connections open now, against `max_connections` (see [`Slot`]).
    open: AtomicUsize,
    max_connections: usize,
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
    admin: Option<SocketAddr>,
    last_reload_error: Mutex<Option<String>>,
}

/// A bound, checked load balancer, ready to [`run`](Lb::run).
pub struct Lb {
    shared: Arc<Shared>,
    /// One listening socket per worker (all on the same address), taken by `run`.
    listeners: Vec<std::net::TcpListener>,
    admin: Option<TcpListener>,
}

/// A cheap handle on a running load balancer: status, reload, maintenance, metrics.
#[derive(Clone)]
pub struct LbHandle {
    shared: Arc<Shared>,
}

/// A listening socket with the options accepted sockets inherit.
fn listen_socket(
    addr: SocketAddr,
    reuse_port: bool,
    backlog: u32,
) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    // A restarted cpe must not wait out TIME_WAIT from its previous life.
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    // Accepted sockets inherit these on Linux: no per-connection system calls for them.
    socket.set_tcp_nodelay(true)?;
    socket.set_keepalive(true)?;
    let _ = socket.set_tcp_keepalive(&forward::keepalive());
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog as i32)?;
    Ok(socket.into())
}

/// `count` listening sockets on `addr`, one per worker. With more than one they share
/// the port through `SO_REUSEPORT` and the kernel spreads new connections over them, so
/// each worker accepts on its own socket with no lock and no thundering herd.
///
/// `SO_REUSEPORT` would also let us join a port that another process (of the same user)
/// already listens on with the same option, silently splitting its traffic. So the port
/// is first taken by a plain socket: if anything listens there, that bind fails with
/// "address in use", as a single listener would. It also turns port 0 into the real port.
fn bind_listeners(
    addr: SocketAddr,
    backlog: u32,
    count: usize,
) -> io::Result<Vec<std::net::TcpListener>> {
    if count <= 1 {
        return Ok(vec![listen_socket(addr, false, backlog)?]);
    }
    let addr = {
        let probe = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            None,
        )?;
        probe.set_reuse_address(true)?;
        probe.bind(&addr.into())?;
        probe
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("bound socket has no IP address"))?
    };
    (0..count)
        .map(|_| listen_socket(addr, true, backlog))
        .collect()
}

fn bind_listener(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    TcpListener::from_std(listen_socket(addr, false, backlog)?)
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
        if config.workers == 0 {
            return Err(LbError::NoWorkers);
        }
        let backlog = config.max_connections.clamp(128, 65535) as u32;
        let listeners =
            bind_listeners(config.listen, backlog, config.workers).map_err(|error| {
                LbError::Listen {
                    addr: config.listen,
                    error,
                }
            })?;
        let listen = listeners[0].local_addr().map_err(|error| LbError::Listen {
            addr: config.listen,
            error,
        })?;
        let admin = match config.admin {
            Some(a) => {
                Some(bind_listener(a, 128).map_err(|error| LbError::Admin { addr: a, error })?)
            }
            None => None,
        };
        let admin_addr = admin.as_ref().and_then(|l| l.local_addr().ok());
        let shared = Arc::new(Shared {
            members: ArcSwap::from_pointee(Vec::new()),
            retired: Mutex::new(Vec::new()),
            prober: ArcSwap::from_pointee(prober),
            rules: ArcSwap::from_pointee(Rules::from_config(&config.health)),
            timing: ArcSwap::from_pointee(Timing {
                interval: config.health.interval,
                connect_timeout: config.connect_timeout,
                drain_timeout: config.drain_timeout,
            }),
            config: Mutex::new(config.clone()),
            metrics: metrics::Metrics::new(),
            open: AtomicUsize::new(0),
            max_connections: config.max_connections,
            next: AtomicUsize::new(0),
            fallback: AtomicBool::new(false),
            stop_checks: CancellationToken::new(),
            hard_stop: CancellationToken::new(),
            connections: TaskTracker::new(),
            started: Instant::now(),
            listen,
            admin: admin_addr,
            last_reload_error: Mutex::new(None),
        });
        let members: Vec<Arc<Backend>> = config
            .backends
            .iter()
            .map(|spec| shared.start_backend(spec.clone()))
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
            admin = ?admin_addr,
            backends = %shared.members.load().iter().map(|b| format!("{} {}", b.name, b.state())).collect::<Vec<_>>().join(", "),
            "load balancer ready"
        );
        Ok(Lb {
            shared,
            listeners,
            admin,
        })
    }

    /// Where clients connect (the actual port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.listen
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.shared.admin
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
            let h = LbHandle {
                shared: shared.clone(),
            };
            let handler: cpe_admin::Handler = Arc::new(move |path| match path {
                "/metrics" => Some(cpe_admin::Response::metrics(h.metrics_text())),
                "/status" => Some(cpe_admin::Response::json(
                    serde_json::to_string_pretty(&h.status()).unwrap_or_default(),
                )),
                _ => None,
            });
            // POST /maintenance/<backend> with `on` or `off`: the operator's maintenance.
            let h = LbHandle {
                shared: shared.clone(),
            };
            let actions: cpe_admin::Actions = Arc::new(move |path, body| {
                let backend = path.strip_prefix("/maintenance/")?;
                let on = match body {
                    "on" => true,
                    "off" => false,
                    other => {
                        return Some(cpe_admin::Response {
                            status: 400,
                            content_type: "text/plain",
                            body: format!("body `{other}`: write `on` or `off`\n"),
                        })
                    }
                };
                Some(match h.set_maintenance(backend, on) {
                    Ok(()) => cpe_admin::Response::text(format!(
                        "{backend}: maintenance {}\n",
                        if on { "on" } else { "off" }
                    )),
                    Err(e) => cpe_admin::Response {
                        status: 404,
                        content_type: "text/plain",
                        body: format!("{e}\n"),
                    },
                })
            });
            tokio::spawn(cpe_admin::serve_with_actions(
                l,
                handler,
                Some(actions),
                admin_stop.clone().cancelled_owned(),
            ))
        });

        // The workers: one thread each, with its own current-thread runtime (its own
        // epoll, timers and task queue) and its own listening socket. A connection lives
        // its whole life on the worker that accepted it: no work stealing, no wake-ups
        // across threads. Health checks, the admin listener and reloads stay on the
        // caller's runtime; everything the workers share is atomics and swapped snapshots.
        let stop_accepting = CancellationToken::new();
        // Should this future be dropped before it finishes, the workers must not outlive
        // it: they stop accepting and cut their connections. (On the normal path both
        // have already happened when the guard fires.)
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
        if let Some(t) = admin_task {
            let _ = t.await;
        }
        info!("load balancer stopped");
        Ok(())
    }
}

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

struct RunGuard {
    stop_accepting: CancellationToken,
    shared: Arc<Shared>,
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        self.stop_accepting.cancel();
        self.shared.connections.close();
        self.shared.hard_stop.cancel();
        // The checkers are stopped by `Lb`'s own drop, which the dropped future runs too.
    }
}

/// One accepting and forwarding thread (see [`Lb::run`]).
struct Worker {
    /// Fires when the worker's accept loop has ended and its listening socket is closed.
    listener_closed: Option<tokio::sync::oneshot::Receiver<()>>,
    /// Fires when the thread is about to end (its connections are all over).
    done: tokio::sync::oneshot::Receiver<()>,
}

impl Worker {
    /// Builds the worker's runtime and registers its socket here, so that both can fail
    /// before anything is served; then starts the thread.
    fn start(
        index: usize,
        shared: &Arc<Shared>,
        listener: std::net::TcpListener,
        stop: CancellationToken,
    ) -> io::Result<Worker> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let listener = {
            let _in_runtime = runtime.enter();
            TcpListener::from_std(listener)?
        };
        let (closed_tx, closed_rx) = tokio::sync::oneshot::channel();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let shared = shared.clone();
        std::thread::Builder::new()
            .name(format!("cpe-lb-{index}"))
            .spawn(move || {
                runtime.block_on(async {
                    shared.accept_loop(listener, stop).await;
                    let _ = closed_tx.send(());
                    // The connections this worker accepted run on this runtime: it
                    // lives until they have all ended (drained or cut by `run`).
                    shared.connections.wait().await;
                });
                // Its epoll and wake-up descriptors are closed before `run` hears that
                // the worker is done.
                drop(runtime);
                let _ = done_tx.send(());
            })?;
        Ok(Worker {
            listener_closed: Some(closed_rx),
            done: done_rx,
        })
    }

    async fn listener_closed(&mut self) {
        if let Some(rx) = self.listener_closed.take() {
            // An error means the thread ended (panicked): its socket is closed too.
            let _ = rx.await;
        }
    }

    async fn join(self) {
        let _ = self.done.await;
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

    /// Accepts on one worker's socket until `stop`, then closes it (dropped on return).
    async fn accept_loop(self: &Arc<Self>, listener: TcpListener, stop: CancellationToken) {
        let mut last_limit_log: Option<Instant> = None;
        let mut last_accept_log: Option<Instant> = None;
        loop {
            let (client, peer) = tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                r = listener.accept() => match r {
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
                },
            };
            self.metrics.accepted.inc();
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

    /// Creates a backend and starts its checker.
    fn start_backend(self: &Arc<Self>, spec: BackendSpec) -> Arc<Backend> {
        let b = Arc::new(Backend::new(
            spec,
            &self.metrics,
            self.stop_checks.child_token(),
            self.hard_stop.child_token(),
            Instant::now(),
        ));
        let s = self.clone();
        let b2 = b.clone();
        tokio::spawn(async move { s.check_loop(b2).await });
        b
    }

    async fn check_loop(self: Arc<Self>, b: Arc<Backend>) {
        let stop = b.stop.clone();
        loop {
            let prober = self.prober.load_full();
            let obs = tokio::select! {
                _ = stop.cancelled() => return,
                o = probe_backend(&prober, &b) => o,
            };
            let secs = obs.latency.as_secs_f64();
            b.check_seconds.observe(secs);
            b.last_check_us
                .store(obs.latency.as_micros() as u64, Ordering::Relaxed);
            let result = match &obs.outcome {
                Outcome::Ready => "ready",
                Outcome::NotReady { .. } => "not_ready",
                Outcome::Unauthorized { .. } => "unauthorized",
                Outcome::Failed(_) => "failed",
            };
            self.metrics
                .backend_checks
                .get_or_create(&ResultLabel {
                    backend: b.name.clone(),
                    result: result.to_string(),
                })
                .inc();
            debug!(backend = %b.name, outcome = %obs.outcome, latency = ?obs.latency, "check");
            self.apply(&b, Event::Probe(obs.outcome));
            let interval = self.timing.load().interval;
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
        }
    }

    /// Feeds one event into a backend's state machine; logs and counts a transition.
    fn apply(&self, b: &Backend, event: Event) {
        let rules = **self.rules.load();
        let step = {
            let mut h = b.health();
            let step = h.observe(&rules, Instant::now(), event);
            b.mirror(&h);
            step
        };
        if step.first_unauthorized {
            warn!(
                backend = %b.name,
                "health check answered 401/403: counted as alive, readiness unknown \
                 (give healthCheck certFile/keyFile, or set unauthorized: down); logged once"
            );
        }
        if let Some(t) = step.transition {
            use cpe_health::State::*;
            match t.to {
                Up => {
                    info!(backend = %b.name, from = t.from.as_str(), to = t.to.as_str(), cause = t.cause.as_str(), "{t}")
                }
                Recovering | Maintenance => {
                    info!(backend = %b.name, from = t.from.as_str(), to = t.to.as_str(), cause = t.cause.as_str(), "{t}")
                }
                Draining | Suspect | Down => {
                    warn!(backend = %b.name, from = t.from.as_str(), to = t.to.as_str(), cause = t.cause.as_str(), "{t}")
                }
            }
            self.metrics.set_state(&b.name, t.to);
            if t.from != t.to {
                self.metrics
                    .backend_transitions
                    .get_or_create(&metrics::TransitionLabel {
                        backend: b.name.clone(),
                        from: t.from.as_str().into(),
                        to: t.to.as_str().into(),
                    })
                    .inc();
            }
        }
        self.check_fallback();
    }

    /// Logs loudly when the endpoint enters or leaves fallback (no backend up).
    fn check_fallback(&self) {
        let members = self.members.load();
        let any_up = members.iter().any(|b| b.state() == cpe_health::State::Up);
        let now = !any_up && !members.is_empty() && members.iter().all(|b| b.health().checked());
        let alive: Vec<&str> = members
            .iter()
            .filter(|b| b.tcp_alive() && b.state() != cpe_health::State::Maintenance)
            .map(|b| b.name.as_str())
            .collect();
        if self.fallback.swap(now, Ordering::Relaxed) != now {
            self.metrics.fallback.set(now as i64);
            if now && alive.is_empty() {
                error!("NO BACKEND IS UP and none accepts TCP: new connections are closed");
            } else if now {
                error!(
                    tcp_alive = %alive.join(", "),
                    "NO BACKEND PASSES ITS HEALTH CHECK: sending new connections to backends that still accept TCP"
                );
            } else {
                info!("a backend is up again: fallback over");
            }
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
        tokio::select! {
            r = forward::both_ways(&client, &upstream) => {
                if let Err(e) = r {
                    debug!(backend = %b.name, %peer, error = %e, "connection ended with an error");
                }
            }
            _ = b.drain.cancelled() => debug!(backend = %b.name, %peer, "closed: drain timeout passed"),
        }
    }

    /// Swaps in a new definition.
    fn reload(self: &Arc<Self>, config: LbConfig) -> Result<Reloaded, LbError> {
        if config.backends.is_empty() {
            return Err(LbError::NoBackends);
        }
        let prober = Prober::from_config(&config.health)?;
        let old = self.config();
        let mut out = Reloaded::default();
        if config.listen != old.listen {
            out.needs_restart.push("listen");
        }
        if config.admin != old.admin {
            out.needs_restart.push("admin");
        }
        if config.max_connections != old.max_connections {
            out.needs_restart.push("maxConnections");
        }
        if config.workers != old.workers {
            out.needs_restart.push("workers");
        }
        self.prober.store(Arc::new(prober));
        self.rules
            .store(Arc::new(Rules::from_config(&config.health)));
        self.timing.store(Arc::new(Timing {
            interval: config.health.interval,
            connect_timeout: config.connect_timeout,
            drain_timeout: config.drain_timeout,
        }));
        let current = self.members.load_full();
        let mut next: Vec<Arc<Backend>> = Vec::new();
        for spec in &config.backends {
            if next.iter().any(|b| &b.spec == spec) {
                continue;
            }
            match current.iter().find(|b| &b.spec == spec) {
                Some(b) => {
                    out.kept.push(b.name.clone());
                    next.push(b.clone());
                }
                None => {
                    let b = self.start_backend(spec.clone());
                    out.added.push(b.name.clone());
                    next.push(b);
                }
            }
        }
        self.members.store(Arc::new(next));
        for b in current.iter() {
            if !config.backends.contains(&b.spec) {
                out.removed.push(b.name.clone());
                self.retire(b.clone(), config.drain_timeout);
            }
        }
        *self.config.lock().unwrap_or_else(|e| e.into_inner()) = config;
        *self
            .last_reload_error
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = None;
        self.metrics
            .reloads
            .get_or_create(&ReloadLabel {
                result: "ok".into(),
            })
            .inc();
        self.check_fallback();
        Ok(out)
    }

    /// A removed backend: no new connections (it is no longer a member), no more checks;
    /// its connections continue until they end or the drain timeout passes.
    fn retire(self: &Arc<Self>, b: Arc<Backend>, drain: Duration) {
        b.stop.cancel();
        let open = b.active.get();
        info!(backend = %b.name, open, drain_timeout = ?drain, "backend removed: draining its connections");
        self.retired
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(b.clone());
        let s = self.clone();
        tokio::spawn(async move {
            let deadline = Instant::now() + drain;
            while b.active.get() > 0 && Instant::now() < deadline {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    _ = s.hard_stop.cancelled() => break,
                }
            }
            if b.active.get() > 0 {
                warn!(backend = %b.name, open = b.active.get(), "drain timeout passed for a removed backend: closing its connections");
            }
            b.drain.cancel();
            s.retired
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|r| !Arc::ptr_eq(r, &b));
            if !s.members.load().iter().any(|m| m.name == b.name) {
                s.metrics.remove_backend(&b.name);
            }
        });
    }
}

/// Decrements a gauge when a connection ends, however it ends.
struct GaugeGuard<'a>(&'a prometheus_client::metrics::gauge::Gauge);

impl Drop for GaugeGuard<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Each proxied connection costs two file descriptors: raises the soft limit towards the
/// hard one so that `max_connections` can be reached, and warns when the hard limit is too
/// low.
pub fn raise_fd_limit(max_connections: usize) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let want = (max_connections as u64)
        .saturating_mul(2)
        .saturating_add(256);
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let target = want.min(hard);
        if target > soft {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, target, hard);
        }
        if want > hard {
            warn!(
                max_connections,
                fd_limit = hard,
                "the file descriptor limit is below 2 x max connections + 256: raise it (ulimit -n, LimitNOFILE)"
            );
        }
    }
}

/// Resolves (names only) and probes one backend.
async fn probe_backend(prober: &Prober, b: &Backend) -> Observation {
    let addr = match b.spec.literal() {
        Some(a) => Some(a),
        None => {
            let start = Instant::now();
            let lookup = tokio::time::timeout(
                prober.timeout(),
                tokio::net::lookup_host((b.spec.host.as_str(), b.spec.port)),
            )
            .await;
            match lookup {
                Ok(Ok(mut addrs)) => match addrs.next() {
                    Some(a) => {
                        b.set_addr(a);
                        Some(a)
                    }
                    None => None,
                },
                Ok(Err(e)) => {
                    return Observation {
                        outcome: Outcome::Failed(cpe_health::Failure::Resolve(
                            cpe_health::probe::resolve_error(&b.spec.host, &e),
                        )),
                        latency: start.elapsed(),
                    }
                }
                Err(_) => None,
            }
            .or_else(|| b.addr())
        }
    };
    match addr {
        Some(a) => prober.probe(a).await,
        None => Observation {
            outcome: Outcome::Failed(cpe_health::Failure::Resolve(format!(
                "{}: no address",
                b.spec.host
            ))),
            latency: Duration::ZERO,
        },
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
        if let Err(e) = &r {
            self.reload_failed(&e.to_string());
        }
        r
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
