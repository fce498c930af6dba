//! One health probe against one address: an HTTPS or HTTP `GET` of the health path, or a
//! TCP connect. One fresh connection per probe (a pooled connection would hide a listener
//! that stopped accepting), the whole probe bounded by the timeout, and a typed answer.
//!
//! TLS: with a CA file the server certificate is verified against it, for the name given
//! (the URL's host, or the backend's IP address); without one, verification is skipped,
//! because API server certificates are often issued for names the prober does not use.
//! A client certificate and key are sent when given (API servers with anonymous access off
//! answer `/readyz` with 401 otherwise).
//!
//! It does not resolve names, retry, schedule or interpret a series of probes: that is
//! [`crate::checker`] and [`crate::state`].

use bytes::Bytes;
use cpe_config::{HealthCheck, Protocol};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// What one probe saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    pub outcome: Outcome,
    /// From the start of the connect to the answer (or the failure).
    pub latency: Duration,
}

/// The answer to one probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// HTTP 2xx, or (TCP check) the connect succeeded.
    Ready,
    /// The server answered with another status: 503 during an API server's shutdown
    /// delay, 500 when etcd stalls. The server accepts connections.
    NotReady { status: u16 },
    /// 401 or 403: alive, readiness unknown (anonymous access off).
    Unauthorized { status: u16 },
    /// No HTTP answer.
    Failed(Failure),
}

impl Outcome {
    /// Did the TCP connect succeed? Used to fall back to backends that still accept
    /// connections when every one fails its check.
    pub fn tcp_alive(&self) -> bool {
        match self {
            Outcome::Ready | Outcome::NotReady { .. } | Outcome::Unauthorized { .. } => true,
            Outcome::Failed(f) => f.connected(),
        }
    }
}

/// Why a probe got no answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The name in a URL did not resolve.
    Resolve(String),
    /// Connection refused: nothing listens (the API server is dead or restarting).
    Refused,
    /// The TCP connect did not finish within the timeout (machine gone, packets dropped).
    ConnectTimeout,
    /// Another connect error (unreachable network, reset during connect...).
    Connect(String),
    /// Connected, but no complete answer within the timeout (a hung server).
    Timeout,
    /// The TLS handshake failed (wrong CA, name mismatch, not TLS at all...).
    Tls(String),
    /// Connected, but the answer was not valid HTTP, or the connection broke mid-answer.
    Http(String),
}

impl Failure {
    fn connected(&self) -> bool {
        matches!(self, Failure::Timeout | Failure::Tls(_) | Failure::Http(_))
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Ready => f.write_str("ready"),
            Outcome::NotReady { status } => write!(f, "not ready (HTTP {status})"),
            Outcome::Unauthorized { status } => {
                write!(f, "alive, readiness unknown (HTTP {status})")
            }
            Outcome::Failed(e) => write!(f, "failed: {e}"),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Resolve(e) => write!(f, "cannot resolve: {e}"),
            Failure::Refused => f.write_str("connection refused"),
            Failure::ConnectTimeout => f.write_str("connect timed out"),
            Failure::Connect(e) => write!(f, "connect: {e}"),
            Failure::Timeout => f.write_str("no answer within the timeout"),
            Failure::Tls(e) => write!(f, "TLS: {e}"),
            Failure::Http(e) => write!(f, "malformed HTTP answer: {e}"),
        }
    }
}

/// A prober could not be built from its settings.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("health check {what} {path}: {source}")]
    File {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("health check {what} {path}: {reason}")]
    Pem {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("health check TLS settings: {0}")]
    Tls(String),
    #[error("health URL {url:?}: {rule}")]
    Url { url: String, rule: &'static str },
}

#[derive(Clone)]
enum Kind {
    Tcp,
    Http,
    Https {
        config: Arc<ClientConfig>,
        /// The name to verify the certificate against (and send as SNI); the probed IP
        /// address when `None`.
        server_name: Option<ServerName<'static>>,
    },
}

/// Probes one address at a time; cheap to clone and share between backends.
#[derive(Clone)]
pub struct Prober {
    kind: Kind,
    path: String,
    timeout: Duration,
    /// `host:port` from a URL: the `Host` header, and the checker's target
    /// ([`Prober::url_target`]).
    target: Option<(String, u16)>,
}

impl fmt::Debug for Prober {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Tcp => "tcp",
            Kind::Http => "http",
            Kind::Https { .. } => "https",
        };
        f.debug_struct("Prober")
            .field("kind", &kind)
            .field("path", &self.path)
            .field("timeout", &self.timeout)
            .field("target", &self.target)
            .finish()
    }
}

/// CA, client certificate and key for HTTPS probes (all optional): cpe's one TLS-files type.
pub use cpe_config::TlsFiles;

impl Prober {
    /// From the definition's `healthCheck` section.
    pub fn from_config(hc: &HealthCheck) -> Result<Prober, ProbeError> {
        let tls = hc.tls();
        Ok(Prober {
            kind: kind(hc.protocol, &tls, None)?,
            path: hc.path.clone(),
            timeout: hc.timeout,
            target: None,
        })
    }

    /// From a URL such as `https://127.0.0.1:6443/readyz` (`http://`, `https://` or
    /// `tcp://host:port`). The port defaults to 443 / 80. With a CA file, the certificate is
    /// verified for the URL's host.
    pub fn from_url(url: &str, tls: &TlsFiles, timeout: Duration) -> Result<Prober, ProbeError> {
        let bad = |rule| ProbeError::Url {
            url: url.to_string(),
            rule,
        };
        let (protocol, rest, default_port) = if let Some(r) = url.strip_prefix("https://") {
            (Protocol::Https, r, 443)
        } else if let Some(r) = url.strip_prefix("http://") {
            (Protocol::Http, r, 80)
        } else if let Some(r) = url.strip_prefix("tcp://") {
            (Protocol::Tcp, r, 0)
        } else {
            return Err(bad("must start with https://, http:// or tcp://"));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = split_host_port(authority).ok_or(bad("host:port is not valid"))?;
        let port = match port {
            Some(p) => p,
            None if default_port != 0 => default_port,
            None => return Err(bad("tcp:// needs a port")),
        };
        if host.is_empty() {
            return Err(bad("has no host"));
        }
        let server_name = ServerName::try_from(host.to_string())
            .map_err(|_| bad("host is not a valid TLS server name"))?;
        Ok(Prober {
            kind: kind(protocol, tls, Some(server_name))?,
            path: path.to_string(),
            timeout,
            target: Some((host.to_string(), port)),
        })
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The `host:port` of the URL this prober was built from, if any.
    pub fn target(&self) -> Option<String> {
        self.target.as_ref().map(|(h, p)| match h.contains(':') {
            true => format!("[{h}]:{p}"),
            false => format!("{h}:{p}"),
        })
    }

    /// The URL's host and port as what a [`Checker`](crate::Checker) probes (a name is
    /// resolved by the checker before every probe); `None` for a prober built from a
    /// config, which probes addresses it is given.
    pub fn url_target(&self) -> Option<crate::target::Target> {
        self.target
            .as_ref()
            .map(|(h, p)| crate::target::Target::new(h, *p))
    }

    /// One probe of `addr`, bounded by the timeout. Never panics, never outlives the
    /// timeout, leaves no connection behind.
    pub async fn probe(&self, addr: SocketAddr) -> Observation {
        let start = Instant::now();
        let deadline = start + self.timeout;
        let outcome = self.probe_inner(addr, deadline).await;
        Observation {
            outcome,
            latency: start.elapsed(),
        }
    }

    async fn probe_inner(&self, addr: SocketAddr, deadline: Instant) -> Outcome {
        let stream = match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
            Err(_) => return Outcome::Failed(Failure::ConnectTimeout),
            Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
                return Outcome::Failed(Failure::Refused)
            }
            Ok(Err(e)) => return Outcome::Failed(Failure::Connect(e.to_string())),
            Ok(Ok(s)) => s,
        };
        let _ = stream.set_nodelay(true);
        let host = match &self.target {
            Some((h, p)) if h.contains(':') => format!("[{h}]:{p}"),
            Some((h, p)) => format!("{h}:{p}"),
            None => addr.to_string(),
        };
        let work = async {
            match &self.kind {
                Kind::Tcp => Outcome::Ready,
                Kind::Http => http_get(stream, &host, &self.path).await,
                Kind::Https {
                    config,
                    server_name,
                } => {
                    let name = server_name
                        .clone()
                        .unwrap_or_else(|| ServerName::IpAddress(addr.ip().into()));
                    let connector = tokio_rustls::TlsConnector::from(config.clone());
                    match connector.connect(name, stream).await {
                        Ok(tls) => http_get(tls, &host, &self.path).await,
                        Err(e) => Outcome::Failed(Failure::Tls(tls_reason(&e))),
                    }
                }
            }
        };
        tokio::time::timeout_at(deadline, work)
            .await
            .unwrap_or(Outcome::Failed(Failure::Timeout))
    }
}

fn tls_reason(e: &io::Error) -> String {
    match e.get_ref() {
        Some(inner) => inner.to_string(),
        None => e.to_string(),
    }
}

/// `GET path` over one connection; only the status line and headers are read.
async fn http_get<S>(io: S, host: &str, path: &str) -> Outcome
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut send, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(io)).await {
        Ok(x) => x,
        Err(e) => return Outcome::Failed(Failure::Http(e.to_string())),
    };
    let req = match http::Request::get(path)
        .header(http::header::HOST, host)
        .header(http::header::CONNECTION, "close")
        .header(http::header::USER_AGENT, "cpe-health")
        .header(http::header::ACCEPT, "*/*")
        .body(Empty::<Bytes>::new())
    {
        Ok(r) => r,
        Err(e) => return Outcome::Failed(Failure::Http(e.to_string())),
    };
    // The connection is driven here, not spawned: when the caller's timeout drops this
    // future, the socket goes with it.
    let request = send.send_request(req);
    tokio::pin!(request, conn);
    let mut conn_done = false;
    let status = loop {
        tokio::select! {
            r = &mut request => break r,
            r = &mut conn, if !conn_done => {
                conn_done = true;
                if let Err(e) = r {
                    return Outcome::Failed(Failure::Http(e.to_string()));
                }
            }
        }
    };
    match status {
        Err(e) => Outcome::Failed(Failure::Http(e.to_string())),
        Ok(resp) => {
            let status = resp.status().as_u16();
            match status {
                200..=299 => Outcome::Ready,
                401 | 403 => Outcome::Unauthorized { status },
                _ => Outcome::NotReady { status },
            }
        }
    }
}

fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let end = rest.find(']')?;
        let host = &rest[..end];
        host.parse::<std::net::Ipv6Addr>().ok()?;
        let after = &rest[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse().ok()?),
            None if after.is_empty() => None,
            None => return None,
        };
        return Some((host, port));
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => Some((h, Some(p.parse().ok().filter(|p: &u16| *p != 0)?))),
        None => Some((authority, None)),
    }
}

fn kind(
    protocol: Protocol,
    tls: &TlsFiles,
    server_name: Option<ServerName<'static>>,
) -> Result<Kind, ProbeError> {
    Ok(match protocol {
        Protocol::Tcp => Kind::Tcp,
        Protocol::Http => Kind::Http,
        Protocol::Https => Kind::Https {
            config: Arc::new(client_config(tls)?),
            server_name,
        },
    })
}

fn client_config(tls: &TlsFiles) -> Result<ClientConfig, ProbeError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ProbeError::Tls(e.to_string()))?;
    let builder = match &tls.ca {
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certs("caFile", path)? {
                roots.add(cert).map_err(|e| ProbeError::Pem {
                    what: "caFile",
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            }
            builder.with_root_certificates(roots)
        }
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(NoVerification::new(provider)),
    };
    let mut config = match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => {
            let certs = read_certs("certFile", cert)?;
            let key = read_file("keyFile", key).and_then(|bytes| {
                PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| ProbeError::Pem {
                    what: "keyFile",
                    path: key.clone(),
                    reason: format!("no private key found: {e}"),
                })
            })?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| ProbeError::Tls(format!("client certificate and key: {e}")))?
        }
        (None, None) => builder.with_no_client_auth(),
        (Some(_), None) => {
            return Err(ProbeError::Tls(
                "certFile is given without keyFile: give both or neither".into(),
            ))
        }
        (None, Some(_)) => {
            return Err(ProbeError::Tls(
                "keyFile is given without certFile: give both or neither".into(),
            ))
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn read_file(what: &'static str, path: &Path) -> Result<Vec<u8>, ProbeError> {
    std::fs::read(path).map_err(|source| ProbeError::File {
        what,
        path: path.to_path_buf(),
        source,
    })
}

fn read_certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, ProbeError> {
    let bytes = read_file(what, path)?;
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&bytes).collect();
    match certs {
        Ok(c) if !c.is_empty() => Ok(c),
        Ok(_) => Err(ProbeError::Pem {
            what,
            path: path.to_path_buf(),
            reason: "no PEM certificate in it".into(),
        }),
        Err(e) => Err(ProbeError::Pem {
            what,
            path: path.to_path_buf(),
            reason: e.to_string(),
        }),
    }
}

/// Accepts any server certificate (no CA given), but still checks the handshake
/// signatures, so the peer holds the key of the certificate it showed. The one such
/// verifier in cpe: the probes, `cpe preflight`/`cpe check` and the test clients use it.
#[derive(Debug)]
pub struct NoVerification(Arc<CryptoProvider>);

impl NoVerification {
    pub fn new(provider: Arc<CryptoProvider>) -> Arc<Self> {
        Arc::new(NoVerification(provider))
    }
}

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A server that answers every connection with `answer` after reading the request.
    async fn server(answer: &'static [u8]) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let _ = s.read(&mut buf).await;
                    let _ = s.write_all(answer).await;
                    let _ = s.shutdown().await;
                });
            }
        });
        addr
    }

    fn http_prober(timeout_ms: u64) -> Prober {
        Prober::from_config(&HealthCheck {
            protocol: Protocol::Http,
            timeout: Duration::from_millis(timeout_ms),
            ..HealthCheck::default()
        })
        .unwrap()
    }

    #[tokio::test]
    async fn http_statuses_are_typed() {
        let p = http_prober(2000);
        let ok = server(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
        assert_eq!(p.probe(ok).await.outcome, Outcome::Ready);
        let down = server(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n").await;
        assert_eq!(
            p.probe(down).await.outcome,
            Outcome::NotReady { status: 503 }
        );
        let unauth = server(b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n").await;
        assert_eq!(
            p.probe(unauth).await.outcome,
            Outcome::Unauthorized { status: 401 }
        );
        let malformed = server(b"SSH-2.0-OpenSSH_9.2\r\n").await;
        let o = p.probe(malformed).await.outcome;
        assert!(matches!(o, Outcome::Failed(Failure::Http(_))), "{o:?}");
        assert!(o.tcp_alive());
    }

    #[tokio::test]
    async fn refused_is_typed() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let o = http_prober(2000).probe(addr).await.outcome;
        assert_eq!(o, Outcome::Failed(Failure::Refused));
        assert!(!o.tcp_alive());
    }

    #[tokio::test]
    async fn hung_server_times_out_and_leaves_no_connection() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let (s, _) = l.accept().await.unwrap();
                let _ = tx.send(s);
            }
        });
        let obs = http_prober(200).probe(addr).await;
        assert_eq!(obs.outcome, Outcome::Failed(Failure::Timeout));
        assert!(obs.latency >= Duration::from_millis(190), "{obs:?}");
        // The prober closed its side: the server reads EOF.
        let mut s = rx.recv().await.unwrap();
        let mut buf = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut buf))
            .await
            .expect("prober kept the connection open");
        assert!(n.is_ok());
    }

    #[tokio::test]
    async fn tcp_check_only_connects() {
        let p = Prober::from_config(&HealthCheck {
            protocol: Protocol::Tcp,
            ..HealthCheck::default()
        })
        .unwrap();
        let addr = server(b"").await;
        assert_eq!(p.probe(addr).await.outcome, Outcome::Ready);
    }

    #[tokio::test]
    async fn https_without_ca_skips_verification_and_with_wrong_ca_fails() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let ca = rcgen::generate_simple_self_signed(vec!["apiserver".into()]).unwrap();
        let cert_der = ca.cert.der().clone();
        let key_der = PrivateKeyDer::try_from(ca.signing_key.serialize_der()).unwrap();
        let server_config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert_der], key_der)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (s, _) = l.accept().await.unwrap();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(mut tls) = acceptor.accept(s).await {
                        let mut buf = [0u8; 1024];
                        let _ = tls.read(&mut buf).await;
                        let _ = tls
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                            .await;
                        let _ = tls.shutdown().await;
                    }
                });
            }
        });
        let p = Prober::from_url(
            &format!("https://{addr}/readyz"),
            &TlsFiles::default(),
            Duration::from_secs(2),
        )
        .unwrap();
        assert_eq!(p.probe(addr).await.outcome, Outcome::Ready);

        // A CA that did not sign the server's certificate: a TLS failure, typed.
        let dir = tempfile::tempdir().unwrap();
        let other = rcgen::generate_simple_self_signed(vec!["other".into()]).unwrap();
        let ca_path = dir.path().join("ca.pem");
        std::fs::write(&ca_path, other.cert.pem()).unwrap();
        let p = Prober::from_url(
            &format!("https://{addr}/readyz"),
            &TlsFiles {
                ca: Some(ca_path),
                ..TlsFiles::default()
            },
            Duration::from_secs(2),
        )
        .unwrap();
        let o = p.probe(addr).await.outcome;
        assert!(matches!(o, Outcome::Failed(Failure::Tls(_))), "{o:?}");
    }

    #[test]
    fn urls_are_checked() {
        let t = TlsFiles::default();
        let d = Duration::from_secs(1);
        let p = Prober::from_url("https://127.0.0.1:6443/readyz", &t, d).unwrap();
        assert_eq!(p.target().unwrap(), "127.0.0.1:6443");
        assert_eq!(
            p.url_target(),
            Some(crate::target::Target::Addr(([127, 0, 0, 1], 6443).into()))
        );
        assert_eq!(p.path, "/readyz");
        let p = Prober::from_url("http://[::1]:8080", &t, d).unwrap();
        assert_eq!(p.target().unwrap(), "[::1]:8080");
        assert_eq!(p.path, "/");
        let p = Prober::from_url("https://localhost/livez", &t, d).unwrap();
        assert_eq!(p.target().unwrap(), "localhost:443");
        assert_eq!(p.url_target().unwrap().to_string(), "localhost:443");
        for bad in [
            "ftp://x/",
            "https://:6443/",
            "http://h:0/",
            "http://h:99999/",
            "tcp://h",
        ] {
            assert!(Prober::from_url(bad, &t, d).is_err(), "{bad}");
        }
        let e = Prober::from_url(
            "https://h/",
            &TlsFiles {
                cert: Some("/nonexistent/c.pem".into()),
                ..TlsFiles::default()
            },
            d,
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("certFile is given without keyFile"),
            "{e}"
        );
        let e = Prober::from_url(
            "https://h/",
            &TlsFiles {
                ca: Some("/nonexistent/ca.pem".into()),
                ..TlsFiles::default()
            },
            d,
        )
        .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
    }
}
