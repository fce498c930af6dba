//! A stand-in Kubernetes API server for tests and `cpe demo`, and the test PKI that
//! gives it certificates. Serves `/readyz`, `/livez`, `/healthz`, `/version` and a
//! long-lived watch-like stream over TLS (HTTP/1.1 and HTTP/2), and follows the real
//! shutdown sequence, and the `kubernetes` EndpointSlices/Endpoints (list, watch, fault
//! switches) for discovery tests. It is not a Kubernetes API server: no other objects, no
//! auth beyond an optional bearer token on those two.
//!
//! # Layout
//!
//! - [`pki`]: a CA, server certificates for chosen names, a client certificate; PEM in
//!   memory, or written to a directory.
//! - [`tls`]: rustls server and client configurations from PEM (ring provider only).
//! - [`endpoints`]: the `kubernetes` EndpointSlices and Endpoints, list and watch, with
//!   the endpoint set and a fault switchable at run time.
//! - [`routes`]: what each path answers, from a snapshot of the server's state.
//! - [`client`]: a minimal HTTP/1.1 client (new connection, keep-alive, watch) for tests
//!   and the demo's traffic.
//! - [`server`]: the listener, connections, readiness and the shutdown sequence.
//!
//! In-process use:
//!
//! ```no_run
//! # async fn f() -> Result<(), cpe_apiserver::ServerError> {
//! use cpe_apiserver::{Config, Server};
//! let server = Server::bind(Config::new("127.0.0.1:0".parse().unwrap(), "cp1", None)).await?;
//! let addr = server.local_addr();
//! let running = server.spawn();
//! running.handle().set_ready(false);     // /readyz -> 503
//! running.shutdown().await?;             // 503 for the delay, then the listener closes
//! # Ok(()) }
//! ```

pub mod client;
pub mod endpoints;
pub mod pki;
pub mod routes;
pub mod server;
pub mod tls;

pub use pki::{CertKey, Pki, PkiError, TlsFiles};
pub use routes::{BACKEND_HEADER, GIT_VERSION};
pub use server::{Config, Handle, Running, Server, ServerError, TlsSettings};
