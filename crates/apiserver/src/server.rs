//! The listener, the connections and the shutdown sequence.
//!
//! Shutdown follows kube-apiserver's `--shutdown-delay-duration`: when shutdown starts,
//! `/readyz` answers 503 at once while every request (new connections included) is still
//! served; after `shutdown_delay` the listener closes, open connections are asked to finish
//! (HTTP/2 GOAWAY, keep-alive closed, watch streams ended) and after `shutdown_grace`
//! whatever is left is dropped. A *kill* ([`Running::kill`]) skips all of that: the task is
//! aborted and the listener and every connection are dropped at once, like a crashed process.
//!
//! Connection tasks live in a `JoinSet` owned by the serving future, so dropping that future
//! (abort) drops every connection with it; no connection outlives its server.

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::routes;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS for the stand-in API server: {0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("the accept loop on {addr} failed: {source}")]
    Accept {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// TLS material for the server, as PEM text.
#[derive(Clone, Debug)]
pub struct TlsSettings {
    pub cert_pem: String,
    pub key_pem: String,
    /// When set, client certificates are verified against this CA (but stay optional).
    pub client_ca_pem: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    /// Reported in the `X-Cpe-Backend` header and by `/debug/whoami`.
    pub name: String,
    /// `None`: plain HTTP (HTTP/1.1 and h2c).
    pub tls: Option<TlsSettings>,
    /// How long `/readyz` answers 503 while everything is still served, before the
    /// listener closes (kube-apiserver's `--shutdown-delay-duration`).
    pub shutdown_delay: Duration,
    /// How long open connections get to finish once the listener is closed.
    pub shutdown_grace: Duration,
    /// Start with `/readyz` answering 503 until made ready.
    pub start_ready: bool,
    /// Interval between two events of the watch stream.
    pub stream_interval: Duration,
    /// The `kubernetes` EndpointSlices/Endpoints it serves (default: its own address).
    pub kube: crate::endpoints::Settings,
}

impl Config {
    /// Defaults: ready at start, 2 s shutdown delay, 1 s grace, an event every 500 ms.
    pub fn new(listen: SocketAddr, name: impl Into<String>, tls: Option<TlsSettings>) -> Config {
        Config {
            listen,
            name: name.into(),
            tls,
            shutdown_delay: Duration::from_secs(2),
            shutdown_grace: Duration::from_secs(1),
            start_ready: true,
            stream_interval: routes::DEFAULT_STREAM_INTERVAL,
            kube: Default::default(),
        }
    }
}

/// State shared by the accept loop, the connections and the [`Handle`]s.
pub(crate) struct Shared {
    pub(crate) name: Arc<str>,
    /// Set by tests and SIGUSR1 (`/debug/ready`, [`Handle::set_ready`]).
    pub(crate) ready: AtomicBool,
    /// Set once shutdown starts; never cleared (a server does not come back from shutdown).
    pub(crate) shutting_down: AtomicBool,
    /// Cancelled when shutdown starts: the accept loop starts its delay.
    pub(crate) shutdown: CancellationToken,
    /// Cancelled when the delay is over: connections finish, watch streams end.
    pub(crate) closing: CancellationToken,
    pub(crate) stream_interval: Duration,
    pub(crate) requests: AtomicU64,
    pub(crate) kube: Arc<crate::endpoints::Kube>,
}

impl Shared {
    pub(crate) fn not_ready_reason(&self) -> Option<&'static str> {
        if self.shutting_down.load(Ordering::SeqCst) {
            Some("shutdown: the server is shutting down")
        } else if !self.ready.load(Ordering::SeqCst) {
            Some("ready: marked not ready")
        } else {
            None
        }
    }
}

/// Controls a server from outside: readiness and shutdown. Cheap to clone.
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field("name", &self.shared.name)
            .finish()
    }
}

impl Handle {
    pub fn name(&self) -> &str {
        &self.shared.name
    }
    /// Makes `/readyz` answer 200 (`true`) or 503 (`false`). Shutdown wins over this.
    pub fn set_ready(&self, ready: bool) {
        self.shared.ready.store(ready, Ordering::SeqCst);
    }
    /// Flips readiness and returns the new value (what SIGUSR1 does in the binary).
    pub fn toggle_ready(&self) -> bool {
        !self.shared.ready.fetch_xor(true, Ordering::SeqCst)
    }
    /// Whether `/readyz` answers 200 right now.
    pub fn is_ready(&self) -> bool {
        self.shared.not_ready_reason().is_none()
    }
    /// Starts the shutdown sequence (idempotent).
    pub fn shutdown(&self) {
        self.shared.shutting_down.store(true, Ordering::SeqCst);
        self.shared.shutdown.cancel();
    }
    /// Requests answered so far (every path, streams counted once).
    /// Changes the `kubernetes` endpoints served (watches see it at once).
    pub fn set_endpoints(&self, set: Vec<SocketAddr>) {
        self.shared.kube.set_endpoints(set);
    }

    /// Sets the fault of the discovery paths.
    pub fn set_discovery_fault(&self, f: crate::endpoints::Fault) {
        self.shared.kube.set_fault(f);
    }

    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }
}

/// A bound, not yet serving, stand-in API server.
pub struct Server {
    listener: TcpListener,
    local_addr: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    config: Config,
    shared: Arc<Shared>,
}

impl Server {
    /// Binds the listener and checks the TLS material; nothing is served until [`Server::run`].
    pub async fn bind(config: Config) -> Result<Server, ServerError> {
        // TLS first: bad material must not leave a listener half-open.
        let tls = match &config.tls {
            Some(t) => Some(tokio_rustls::TlsAcceptor::from(crate::tls::server_config(
                &t.cert_pem,
                &t.key_pem,
                t.client_ca_pem.as_deref(),
            )?)),
            None => None,
        };
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ServerError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let local_addr = listener.local_addr().map_err(|source| ServerError::Bind {
            addr: config.listen,
            source,
        })?;
        let shared = Arc::new(Shared {
            name: Arc::from(config.name.as_str()),
            ready: AtomicBool::new(config.start_ready),
            shutting_down: AtomicBool::new(false),
            shutdown: CancellationToken::new(),
            closing: CancellationToken::new(),
            stream_interval: config.stream_interval,
            requests: AtomicU64::new(0),
            kube: Arc::new(crate::endpoints::Kube::new(&config.kube, local_addr)),
        });
        Ok(Server {
            listener,
            local_addr,
            tls,
            config,
            shared,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn handle(&self) -> Handle {
        Handle {
            shared: self.shared.clone(),
        }
    }

    /// Serves until the shutdown sequence (started through a [`Handle`]) is complete.
    pub async fn run(self) -> Result<(), ServerError> {
        let Server {
            listener,
            local_addr,
            tls,
            config,
            shared,
        } = self;
        let mut conns = JoinSet::new();
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        // Watch streams are long; keep them alive through idle LBs and notice dead peers.
        builder.http1().timer(TokioTimer::new());
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(Some(Duration::from_secs(10)))
            .keep_alive_timeout(Duration::from_secs(20));
        let builder = Arc::new(builder);
        let mut delay_over: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(a) => a,
                        // Per-connection errors (e.g. aborted handshakes, EMFILE) must not
                        // take the server down; back off briefly and go on.
                        Err(e) => {
                            tracing::warn!(server = %shared.name, error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    conns.spawn(serve_conn(stream, peer, tls.clone(), builder.clone(), shared.clone()));
                }
                _ = shared.shutdown.cancelled(), if delay_over.is_none() => {
                    tracing::info!(
                        server = %shared.name, addr = %local_addr,
                        delay_ms = config.shutdown_delay.as_millis() as u64,
                        "shutdown started: /readyz answers 503, still serving until the delay is over"
                    );
                    delay_over = Some(Box::pin(tokio::time::sleep(config.shutdown_delay)));
                }
                _ = async { delay_over.as_mut().expect("guarded").await }, if delay_over.is_some() => break,
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
        drop(listener);
        shared.closing.cancel();
        tracing::info!(
            server = %shared.name, open = conns.len(),
            grace_ms = config.shutdown_grace.as_millis() as u64,
            "listener closed; asking open connections to finish"
        );
        let drained = tokio::time::timeout(config.shutdown_grace, async {
            while conns.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::info!(server = %shared.name, left = conns.len(), "grace over; dropping the connections left");
            conns.shutdown().await;
        }
        tracing::info!(server = %shared.name, "stopped");
        Ok(())
    }

    /// Runs the server on its own task.
    pub fn spawn(self) -> Running {
        let handle = self.handle();
        let local_addr = self.local_addr;
        Running {
            handle,
            local_addr,
            task: tokio::spawn(self.run()),
        }
    }
}

/// A server running on its own task.
pub struct Running {
    handle: Handle,
    local_addr: SocketAddr,
    task: tokio::task::JoinHandle<Result<(), ServerError>>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("name", &self.handle.name())
            .field("local_addr", &self.local_addr)
            .finish()
    }
}

impl Running {
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
    /// Starts the shutdown sequence and waits for it to complete.
    pub async fn shutdown(self) -> Result<(), ServerError> {
        self.handle.shutdown();
        self.wait().await
    }
    /// Waits for the server to stop (after a shutdown started elsewhere).
    pub async fn wait(self) -> Result<(), ServerError> {
        match self.task.await {
            Ok(r) => r,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Ok(()),
        }
    }
    /// Kills the server like a crash: listener and every connection dropped at once, no
    /// 503 phase, no GOAWAY. Returns once the listener is closed.
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

async fn serve_conn(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    builder: Arc<hyper_util::server::conn::auto::Builder<TokioExecutor>>,
    shared: Arc<Shared>,
) {
    match tls {
        Some(acceptor) => {
            // A client that never finishes its handshake must not hold a task forever.
            let hs = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await;
            match hs {
                Ok(Ok(tls)) => serve_io(TokioIo::new(tls), builder, shared).await,
                Ok(Err(e)) => {
                    tracing::debug!(server = %shared.name, %peer, error = %e, "TLS handshake failed")
                }
                Err(_) => tracing::debug!(server = %shared.name, %peer, "TLS handshake timed out"),
            }
        }
        None => serve_io(TokioIo::new(stream), builder, shared).await,
    }
}

async fn serve_io<I>(
    io: I,
    builder: Arc<hyper_util::server::conn::auto::Builder<TokioExecutor>>,
    shared: Arc<Shared>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let closing = shared.closing.clone();
    let svc_shared = shared.clone();
    let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let shared = svc_shared.clone();
        async move {
            shared.requests.fetch_add(1, Ordering::Relaxed);
            let (parts, body) = req.into_parts();
            // Only the readiness switch reads a body; cap it, it is `true` or `false`.
            let bytes = if parts.method == http::Method::POST {
                match http_body_util::Limited::new(body, 16 * 1024)
                    .collect()
                    .await
                {
                    Ok(c) => c.to_bytes(),
                    Err(_) => Bytes::new(),
                }
            } else {
                Bytes::new()
            };
            // The `unreachable` discovery fault: the connection closes without an answer.
            if shared.kube.drops(&parts.uri) {
                return Err(std::io::Error::other(
                    "the unreachable discovery fault is set",
                ));
            }
            if let Some(r) = shared.kube.respond(&parts.uri, &parts.headers) {
                return Ok(r);
            }
            Ok::<_, std::io::Error>(routes::respond(&shared, &parts.method, &parts.uri, &bytes))
        }
    });
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = closing.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
