//! A minimal HTTP(S) client for tests and the demo's traffic: one request on a new
//! connection, a keep-alive connection reused for many requests, and a watch stream read
//! line by line. HTTP/1.1 only, on purpose: every request maps to a visible connection,
//! which is what counting failures through a load balancer needs.
//!
//! It is not a general client: no redirects, no proxies, no connection pool.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS handshake with {addr}: {source}")]
    Tls {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("HTTP with {addr}: {source}")]
    Http {
        addr: SocketAddr,
        source: hyper::Error,
    },
    #[error("{addr} did not answer within {timeout:?}")]
    Timeout { addr: SocketAddr, timeout: Duration },
}

/// Where and how to connect.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    /// `None`: plain HTTP.
    pub tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
    /// Bound for connecting plus the TLS handshake plus one response head.
    pub timeout: Duration,
}

/// A response: status, the backend that answered (`X-Cpe-Backend`), and the body.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: http::StatusCode,
    pub backend: Option<String>,
    pub body: Bytes,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

async fn connect(target: &Target) -> Result<Box<dyn Io>, ClientError> {
    let addr = target.addr;
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|source| ClientError::Connect { addr, source })?;
    let _ = tcp.set_nodelay(true);
    match &target.tls {
        None => Ok(Box::new(tcp)),
        Some((config, name)) => {
            let tls = tokio_rustls::TlsConnector::from(config.clone())
                .connect(name.clone(), tcp)
                .await
                .map_err(|source| ClientError::Tls { addr, source })?;
            Ok(Box::new(tls))
        }
    }
}

/// A connection that can carry several requests one after the other (keep-alive).
pub struct Conn {
    target: Target,
    sender: http1::SendRequest<Full<Bytes>>,
    driver: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("addr", &self.target.addr)
            .finish()
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl Conn {
    /// Opens a connection (TCP, TLS if configured, HTTP/1.1 handshake).
    pub async fn open(target: &Target) -> Result<Conn, ClientError> {
        let addr = target.addr;
        let fut = async {
            let io = connect(target).await?;
            let (sender, conn) = http1::handshake(TokioIo::new(io))
                .await
                .map_err(|source| ClientError::Http { addr, source })?;
            let driver = tokio::spawn(async move {
                let _ = conn.await;
            });
            Ok(Conn {
                target: target.clone(),
                sender,
                driver,
            })
        };
        tokio::time::timeout(target.timeout, fut)
            .await
            .map_err(|_| ClientError::Timeout {
                addr,
                timeout: target.timeout,
            })?
    }

    /// True when the connection can take another request.
    pub fn is_open(&self) -> bool {
        !self.sender.is_closed()
    }

    /// Sends `GET path` and reads the whole response.
    pub async fn get(&mut self, path: &str) -> Result<Reply, ClientError> {
        self.send(request(http::Method::GET, path, Bytes::new()))
            .await
    }

    /// Sends `POST path` with `body` and reads the whole response.
    pub async fn post(&mut self, path: &str, body: impl Into<Bytes>) -> Result<Reply, ClientError> {
        self.send(request(http::Method::POST, path, body.into()))
            .await
    }

    async fn send(&mut self, req: http::Request<Full<Bytes>>) -> Result<Reply, ClientError> {
        let addr = self.target.addr;
        let timeout = self.target.timeout;
        let fut = async {
            self.sender
                .ready()
                .await
                .map_err(|source| ClientError::Http { addr, source })?;
            let resp = self
                .sender
                .send_request(req)
                .await
                .map_err(|source| ClientError::Http { addr, source })?;
            let (parts, body) = resp.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|source| ClientError::Http { addr, source })?
                .to_bytes();
            Ok(Reply {
                status: parts.status,
                backend: backend(&parts.headers),
                body,
            })
        };
        tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| ClientError::Timeout { addr, timeout })?
    }
}

fn request(method: http::Method, path: &str, body: Bytes) -> http::Request<Full<Bytes>> {
    http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, "cpe-endpoint")
        .header(http::header::USER_AGENT, "cpe")
        .body(Full::new(body))
        .expect("a method and a path make a valid request")
}

fn backend(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get(crate::BACKEND_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// One request on a new connection, closed afterwards.
pub async fn get(target: &Target, path: &str) -> Result<Reply, ClientError> {
    let mut conn = Conn::open(target).await?;
    conn.get(path).await
}

/// A watch stream: the response head, then the body read one frame at a time.
pub struct Watch {
    pub status: http::StatusCode,
    pub backend: Option<String>,
    body: hyper::body::Incoming,
    addr: SocketAddr,
    _conn: Conn,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch").field("addr", &self.addr).finish()
    }
}

impl Watch {
    /// Opens a new connection and starts a watch on `path`.
    pub async fn start(target: &Target, path: &str) -> Result<Watch, ClientError> {
        let mut conn = Conn::open(target).await?;
        let addr = target.addr;
        let req = request(http::Method::GET, path, Bytes::new());
        let fut = async {
            conn.sender
                .ready()
                .await
                .map_err(|source| ClientError::Http { addr, source })?;
            conn.sender
                .send_request(req)
                .await
                .map_err(|source| ClientError::Http { addr, source })
        };
        let resp = tokio::time::timeout(target.timeout, fut)
            .await
            .map_err(|_| ClientError::Timeout {
                addr,
                timeout: target.timeout,
            })??;
        let (parts, body) = resp.into_parts();
        Ok(Watch {
            status: parts.status,
            backend: backend(&parts.headers),
            body,
            addr,
            _conn: conn,
        })
    }

    /// The next chunk of data; `Ok(None)` when the server ended the stream cleanly.
    pub async fn next(&mut self) -> Result<Option<Bytes>, ClientError> {
        loop {
            match self.body.frame().await {
                None => return Ok(None),
                Some(Err(source)) => {
                    return Err(ClientError::Http {
                        addr: self.addr,
                        source,
                    })
                }
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        return Ok(Some(data));
                    }
                }
            }
        }
    }
}
