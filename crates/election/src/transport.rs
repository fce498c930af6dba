//! HTTP/1.1 to etcd's JSON gateway: connections (plain TCP or rustls with a client
//! certificate, ring provider), a small pool of idle connections per member so that a
//! keep-alive every few hundred milliseconds does not pay a TLS handshake each time, and
//! failover: a call starts at the member that last worked and moves on when one fails.
//!
//! The member list can be replaced while calls run ([`Transport::set_endpoints`]: the
//! VIP agent follows etcd's member list); a call in flight finishes on the list it
//! started with, idle connections are kept by URL so that a member that stays keeps its
//! pooled connections.
//!
//! It knows nothing of leases or elections; it posts JSON and returns JSON.

use crate::endpoint::{EndpointUrl, UrlError};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Client TLS material for `https://` members: the CA that signed the members'
/// certificates (`--etcd-ca`), and a client certificate and key (`--etcd-cert`,
/// `--etcd-key`), both or neither. cpe's one TLS-files type.
pub use cpe_config::TlsFiles;

/// No member gave a usable answer: each member's reason, in the order tried. Always worth
/// retrying later (members come back; the caller decides when).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .reasons.join("; "))]
pub struct Unreachable {
    /// `URL: reason`, one per member tried.
    pub reasons: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error(transparent)]
    Url(#[from] UrlError),
    #[error("{what} `{path}`: {reason}")]
    File {
        what: &'static str,
        path: String,
        reason: String,
    },
    #[error("no etcd endpoint given (--etcd URL[,URL...])")]
    NoEndpoint,
    #[error("an https:// etcd endpoint needs the CA that signed its certificate (--etcd-ca FILE)")]
    NoCa,
    #[error("--etcd-cert and --etcd-key go together: give both or neither")]
    CertWithoutKey,
    #[error("TLS settings: {0}")]
    Tls(#[from] rustls::Error),
}

/// How long connecting to one member may take before the next one is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(700);
/// Idle connections kept for reuse (keep-alive, leader queries and revoke run at once).
const POOL_MAX: usize = 6;

#[derive(Clone)]
pub struct Transport {
    inner: Arc<Inner>,
}

struct Inner {
    /// The members, replaced whole by [`Transport::set_endpoints`]; a call works on the
    /// snapshot it took.
    urls: RwLock<Arc<Vec<EndpointUrl>>>,
    tls: Option<TlsConnector>,
    /// The member tried first: the last one that worked (an index into the current list).
    current: AtomicUsize,
    failures: AtomicU64,
    /// Idle connections by member URL. A std mutex: held only to push or pop.
    pool: Mutex<Vec<(String, SendRequest<Full<Bytes>>)>>,
}

impl Transport {
    pub fn new(urls: Vec<EndpointUrl>, files: &TlsFiles) -> Result<Self, TransportError> {
        if urls.is_empty() {
            return Err(TransportError::NoEndpoint);
        }
        let tls = if urls.iter().any(|u| u.tls) {
            Some(tls_connector(files)?)
        } else {
            None
        };
        Ok(Transport {
            inner: Arc::new(Inner {
                urls: RwLock::new(Arc::new(urls)),
                tls,
                current: AtomicUsize::new(0),
                failures: AtomicU64::new(0),
                pool: Mutex::new(Vec::new()),
            }),
        })
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.urls().iter().map(|u| u.to_string()).collect()
    }

    fn urls(&self) -> Arc<Vec<EndpointUrl>> {
        self.inner
            .urls
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the members (in the order to try them). The member tried first stays the
    /// one that last worked when it is still listed, else the first; idle connections to
    /// members no longer listed are closed. Refused: an empty list, or an `https://` member
    /// when the transport was made without TLS (its files were never read).
    pub fn set_endpoints(&self, urls: Vec<EndpointUrl>) -> Result<(), TransportError> {
        if urls.is_empty() {
            return Err(TransportError::NoEndpoint);
        }
        if self.inner.tls.is_none() && urls.iter().any(|u| u.tls) {
            return Err(TransportError::NoCa);
        }
        let mut guard = self.inner.urls.write().unwrap_or_else(|p| p.into_inner());
        let old = guard.clone();
        let cur = old
            .get(self.inner.current.load(Ordering::Relaxed) % old.len().max(1))
            .map(|u| u.to_string());
        let idx = cur
            .and_then(|c| urls.iter().position(|u| u.to_string() == c))
            .unwrap_or(0);
        let keep: Vec<String> = urls.iter().map(|u| u.to_string()).collect();
        *guard = Arc::new(urls);
        self.inner.current.store(idx, Ordering::Relaxed);
        drop(guard);
        let mut pool = self.inner.pool.lock().unwrap_or_else(|p| p.into_inner());
        pool.retain(|(u, _)| keep.contains(u));
        Ok(())
    }

    pub fn failures(&self) -> u64 {
        self.inner.failures.load(Ordering::Relaxed)
    }

    /// Posts `body` to `path`, trying each member once starting with the current one.
    /// `timeout` bounds each attempt (connect included); `None` waits as long as the member
    /// keeps the connection (campaign). Returns the JSON answer, which may be a gateway
    /// error object for the caller to interpret, or every member's failure in one line.
    pub async fn post(
        &self,
        path: &str,
        body: String,
        timeout: Option<Duration>,
    ) -> Result<Value, Unreachable> {
        let urls = self.urls();
        let n = urls.len();
        let start = self.inner.current.load(Ordering::Relaxed) % n;
        let mut reasons = Vec::new();
        for k in 0..n {
            let idx = (start + k) % n;
            let attempt = self.attempt(&urls[idx], path, body.clone());
            let r = match timeout {
                Some(t) => match tokio::time::timeout(t, attempt).await {
                    Ok(r) => r,
                    Err(_) => Err(format!("no answer within {t:?}")),
                },
                None => attempt.await,
            };
            match r {
                Ok(v) if !retryable(&v) => {
                    self.inner.current.store(idx, Ordering::Relaxed);
                    return Ok(v);
                }
                Ok(v) => reasons.push(format!(
                    "{}: {}",
                    urls[idx],
                    v.get("message")
                        .and_then(|m| m.as_str())
                        .unwrap_or("unavailable")
                )),
                Err(e) => reasons.push(format!("{}: {e}", urls[idx])),
            }
            self.inner.failures.fetch_add(1, Ordering::Relaxed);
            self.inner.current.store((idx + 1) % n, Ordering::Relaxed);
        }
        Err(Unreachable { reasons })
    }

    /// Posts `body` to `path` on one given member (which need not be among the configured
    /// endpoints: e.g. a client URL from the member list), on a fresh connection, bounded
    /// by `timeout` (connect included). No failover: the call is about that member.
    pub async fn post_at(
        &self,
        url: &EndpointUrl,
        path: &str,
        body: String,
        timeout: Duration,
    ) -> Result<Value, Unreachable> {
        let attempt = async {
            let send = self.connect_url(url).await?;
            self.exchange(send, url, path, body).await.map(|(v, _)| v)
        };
        let reason = match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => format!("{url}: {e}"),
            Err(_) => format!("{url}: no answer within {timeout:?}"),
        };
        Err(Unreachable {
            reasons: vec![reason],
        })
    }

    async fn attempt(&self, url: &EndpointUrl, path: &str, body: String) -> Result<Value, String> {
        let key = url.to_string();
        let send = match self.take_idle(&key) {
            Some(s) => s,
            None => self.connect_url(url).await?,
        };
        let (v, send) = self.exchange(send, url, path, body).await?;
        self.put_idle(key, send);
        Ok(v)
    }

    /// One request on an open connection; gives the connection back for reuse.
    async fn exchange(
        &self,
        mut send: SendRequest<Full<Bytes>>,
        url: &EndpointUrl,
        path: &str,
        body: String,
    ) -> Result<(Value, SendRequest<Full<Bytes>>), String> {
        let req = hyper::Request::post(path)
            .header("host", url.authority())
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let resp = send
            .send_request(req)
            .await
            .map_err(|e| chain(&e, url.tls))?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| chain(&e, url.tls))?
            .to_bytes();
        let v = serde_json::from_slice::<Value>(&bytes).map_err(|_| {
            let text = String::from_utf8_lossy(&bytes);
            format!(
                "HTTP {status}: {} (is this etcd's client URL?)",
                text.trim().chars().take(120).collect::<String>()
            )
        })?;
        Ok((v, send))
    }

    fn take_idle(&self, key: &str) -> Option<SendRequest<Full<Bytes>>> {
        let mut pool = self.inner.pool.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(pos) = pool.iter().position(|(u, _)| u == key) {
            let (_, s) = pool.swap_remove(pos);
            if s.is_ready() {
                return Some(s);
            }
        }
        None
    }

    fn put_idle(&self, key: String, send: SendRequest<Full<Bytes>>) {
        if !send.is_ready() {
            return;
        }
        let mut pool = self.inner.pool.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < POOL_MAX {
            pool.push((key, send));
        }
    }

    async fn connect_url(&self, url: &EndpointUrl) -> Result<SendRequest<Full<Bytes>>, String> {
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(url.authority()))
            .await
            .map_err(|_| format!("connect: no answer within {CONNECT_TIMEOUT:?}"))?
            .map_err(|e| format!("connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        if url.tls {
            let tls = self
                .inner
                .tls
                .as_ref()
                .ok_or_else(|| "TLS is not configured".to_string())?;
            let name = ServerName::try_from(url.host.clone())
                .map_err(|e| format!("server name `{}`: {e}", url.host))?;
            let stream = tokio::time::timeout(CONNECT_TIMEOUT, tls.connect(name, tcp))
                .await
                .map_err(|_| format!("TLS handshake: no answer within {CONNECT_TIMEOUT:?}"))?
                .map_err(|e| {
                    format!("TLS handshake: {e} (check --etcd-ca, --etcd-cert, --etcd-key)")
                })?;
            handshake(TokioIo::new(stream)).await
        } else {
            handshake(TokioIo::new(tcp)).await
        }
    }
}

/// An error with its causes (`connection error: received fatal alert: CertificateRequired`),
/// and a hint when TLS is involved: with TLS 1.3 a refused client certificate only shows
/// up as a broken connection after the handshake.
fn chain(e: &(dyn std::error::Error + 'static), tls: bool) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    if tls {
        s.push_str(" (if etcd refused our client certificate: check --etcd-cert and --etcd-key)");
    }
    s
}

async fn handshake<T>(io: TokioIo<T>) -> Result<SendRequest<Full<Bytes>>, String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (send, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(send)
}

/// gRPC codes that mean "this member cannot serve now, another may": cancelled,
/// deadline exceeded, unavailable (etcd's "no leader" and "request timed out").
fn retryable(v: &Value) -> bool {
    v.get("error").is_some()
        && v.get("code")
            .and_then(|c| c.as_i64())
            .is_some_and(crate::is_retryable_code)
}

fn tls_connector(files: &TlsFiles) -> Result<TlsConnector, TransportError> {
    let file_err = |what: &'static str, path: &PathBuf, reason: String| TransportError::File {
        what,
        path: path.display().to_string(),
        reason,
    };
    let ca = files.ca.as_ref().ok_or(TransportError::NoCa)?;
    let mut roots = rustls::RootCertStore::empty();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca)
        .map_err(|e| file_err("etcd CA", ca, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_err("etcd CA", ca, e.to_string()))?;
    if certs.is_empty() {
        return Err(file_err("etcd CA", ca, "no PEM certificate in it".into()));
    }
    for c in certs {
        roots
            .add(c)
            .map_err(|e| file_err("etcd CA", ca, e.to_string()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let config = match (&files.cert, &files.key) {
        (Some(cert), Some(key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .map_err(|e| file_err("etcd client certificate", cert, e.to_string()))?
                .collect::<Result<_, _>>()
                .map_err(|e| file_err("etcd client certificate", cert, e.to_string()))?;
            if chain.is_empty() {
                return Err(file_err(
                    "etcd client certificate",
                    cert,
                    "no PEM certificate in it".into(),
                ));
            }
            let key_der = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| file_err("etcd client key", key, e.to_string()))?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| file_err("etcd client key", key, e.to_string()))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => return Err(TransportError::CertWithoutKey),
    };
    Ok(TlsConnector::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unavailable_is_retryable_not_found_is_not() {
        assert!(retryable(
            &json!({"error":"etcdserver: no leader","code":14})
        ));
        assert!(retryable(&json!({"error":"x","code":4})));
        assert!(!retryable(&json!({"error":"lease not found","code":5})));
        assert!(!retryable(&json!({"header":{}})));
    }

    #[test]
    fn endpoints_are_replaced_whole_and_the_working_member_stays_first() {
        let u = |s: &str| EndpointUrl::parse(s).unwrap();
        let t = Transport::new(
            vec![u("http://127.0.0.1:2379"), u("http://10.0.0.12:2379")],
            &TlsFiles::default(),
        )
        .unwrap();
        t.inner.current.store(1, Ordering::Relaxed); // 10.0.0.12 worked last
        t.set_endpoints(vec![
            u("http://127.0.0.1:2379"),
            u("http://10.0.0.13:2379"),
            u("http://10.0.0.12:2379"),
        ])
        .unwrap();
        assert_eq!(
            t.endpoints(),
            vec![
                "http://127.0.0.1:2379",
                "http://10.0.0.13:2379",
                "http://10.0.0.12:2379"
            ]
        );
        assert_eq!(t.inner.current.load(Ordering::Relaxed), 2);
        // The member that worked is gone: start from the first.
        t.set_endpoints(vec![u("http://127.0.0.1:2379")]).unwrap();
        assert_eq!(t.inner.current.load(Ordering::Relaxed), 0);
        // Never empty; never https without the CA read at start.
        assert!(matches!(
            t.set_endpoints(Vec::new()),
            Err(TransportError::NoEndpoint)
        ));
        assert!(matches!(
            t.set_endpoints(vec![u("https://10.0.0.12:2379")]),
            Err(TransportError::NoCa)
        ));
        assert_eq!(t.endpoints(), vec!["http://127.0.0.1:2379"]);
    }

    #[test]
    fn https_without_ca_is_a_clear_error() {
        let urls = vec![EndpointUrl::parse("https://127.0.0.1:2379").unwrap()];
        let e = Transport::new(urls, &TlsFiles::default()).err().unwrap();
        assert!(e.to_string().contains("--etcd-ca"), "{e}");
    }

    #[test]
    fn missing_ca_file_names_the_file() {
        let urls = vec![EndpointUrl::parse("https://127.0.0.1:2379").unwrap()];
        let files = TlsFiles {
            ca: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        };
        let e = Transport::new(urls, &files).err().unwrap().to_string();
        assert!(e.contains("etcd CA `/nonexistent/ca.pem`"), "{e}");
    }
}
