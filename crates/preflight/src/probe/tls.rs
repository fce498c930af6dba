//! HTTPS for the checks that need it: the etcd status request (a `POST` to etcd's JSON
//! gateway), the `/readyz` request, and the look at the certificate an API server presents.
//!
//! One fresh connection per request, the whole exchange bounded by a timeout. The
//! certificate look connects *without* verifying (a misnamed certificate is what it is
//! looking for, so verification must not stop the handshake) and then checks the chain
//! against the CA and the names against the endpoint host separately, so it can say which
//! of the two is wrong.

use crate::facts::{Connect, Http, PeerCert};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, RootCertStore};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

/// CA, client certificate and key (each optional): cpe's one TLS-files type.
pub use cpe_config::TlsFiles;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca: &Path) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    let certs =
        CertificateDer::pem_file_iter(ca).map_err(|e| format!("CA file {}: {e}", ca.display()))?;
    for c in certs {
        let c = c.map_err(|e| format!("CA file {}: {e}", ca.display()))?;
        store
            .add(c)
            .map_err(|e| format!("CA file {}: {e}", ca.display()))?;
    }
    if store.is_empty() {
        return Err(format!("CA file {}: no certificate in it", ca.display()));
    }
    Ok(store)
}

/// A client configuration. `verify`: check the server's certificate against the CA (when
/// one is given); otherwise accept any certificate (signatures are still checked).
pub fn client_config(files: &TlsFiles, verify: bool) -> Result<Arc<ClientConfig>, String> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match (&files.ca, verify) {
        (Some(ca), true) => {
            let v = WebPkiServerVerifier::builder_with_provider(Arc::new(roots(ca)?), provider)
                .build()
                .map_err(|e| format!("CA file {}: {e}", ca.display()))?;
            builder.with_webpki_verifier(v)
        }
        _ => builder
            .dangerous()
            .with_custom_certificate_verifier(cpe_health::NoVerification::new(provider)),
    };
    let config = match (&files.cert, &files.key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("certificate file {}: {e}", cert.display()))?;
            if chain.is_empty() {
                return Err(format!(
                    "certificate file {}: no certificate in it",
                    cert.display()
                ));
            }
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("key file {}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("client certificate and key: {e}"))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => return Err("a client certificate needs both a certificate and a key file".into()),
    };
    Ok(Arc::new(config))
}

/// The name to send as SNI (and verify against): a DNS name or an IP address.
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    let h = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.');
    ServerName::try_from(h.to_string()).map_err(|_| format!("{host:?} is not a valid TLS name"))
}

/// One HTTP/1.1 request, over TLS when `tls` is given.
pub async fn request(
    addr: SocketAddr,
    tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
    method: &str,
    path: &str,
    body: Option<String>,
    timeout: Duration,
) -> Http {
    let host = match &tls {
        Some((_, ServerName::DnsName(d))) => format!("{}:{}", d.as_ref(), addr.port()),
        _ => addr.to_string(),
    };
    let work = async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| Http::Connect(crate::probe::net::classify(&e)))?;
        let _ = tcp.set_nodelay(true);
        match tls {
            Some((config, name)) => {
                let s = tokio_rustls::TlsConnector::from(config)
                    .connect(name, tcp)
                    .await
                    .map_err(|e| Http::Tls(e.to_string()))?;
                exchange(s, method, path, &host, body).await
            }
            None => exchange(tcp, method, path, &host, body).await,
        }
    };
    match tokio::time::timeout(timeout, work).await {
        Err(_) => Http::Connect(Connect::Timeout),
        Ok(Ok(h)) | Ok(Err(h)) => h,
    }
}

async fn exchange<S>(
    stream: S,
    method: &str,
    path: &str,
    host: &str,
    body: Option<String>,
) -> Result<Http, Http>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| Http::Other(format!("HTTP handshake: {e}")))?;
    // The connection's own error says why an exchange failed (a TLS alert sent after the
    // handshake, when the server refuses the client certificate under TLS 1.3).
    let conn_task = tokio::spawn(conn);
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, host);
    if body.is_some() {
        req = req.header(http::header::CONTENT_TYPE, "application/json");
    }
    let req = req
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| Http::Other(e.to_string()))?;
    let resp = match send.send_request(req).await {
        Ok(r) => r,
        Err(e) => {
            let conn_err = match tokio::time::timeout(Duration::from_millis(500), conn_task).await {
                Ok(Ok(Err(ce))) => Some(ce),
                _ => None,
            };
            let tls = conn_err
                .as_ref()
                .and_then(|ce| rustls_cause(ce))
                .or_else(|| rustls_cause(&e));
            return Err(match tls {
                Some(t) => Http::Tls(format!("the server ended the session: {t}")),
                None => Http::Other(format!(
                    "no HTTP answer: {}",
                    conn_err.map(|c| c.to_string()).unwrap_or(e.to_string())
                )),
            });
        }
    };
    let code = resp.status().as_u16();
    // Health and status answers are small; a cap keeps a confused server from making
    // preflight buffer without end.
    let body = Limited::new(resp.into_body(), 256 * 1024)
        .collect()
        .await
        .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
        .unwrap_or_default();
    Ok(Http::Status { code, body })
}

/// The rustls error somewhere in an error's chain (hyper wraps io errors that wrap it).
fn rustls_cause(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(r) = c.downcast_ref::<rustls::Error>() {
            return Some(r.to_string());
        }
        if let Some(r) = c
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(r.to_string());
        }
        cur = c.source();
    }
    None
}

/// Connects to `addr` with `sni`, takes the certificate it presents, and checks it: the
/// chain against `ca` (when given), the names against `endpoint_host`.
pub async fn peer_cert(
    addr: SocketAddr,
    endpoint_host: &str,
    files: &TlsFiles,
    timeout: Duration,
) -> Result<PeerCert, Http> {
    let sni = server_name(endpoint_host).map_err(Http::Other)?;
    let config = client_config(files, false).map_err(Http::Other)?;
    let work = async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| Http::Connect(crate::probe::net::classify(&e)))?;
        let s = tokio_rustls::TlsConnector::from(config)
            .connect(sni.clone(), tcp)
            .await
            .map_err(|e| Http::Tls(e.to_string()))?;
        let certs: Vec<CertificateDer<'static>> = s
            .get_ref()
            .1
            .peer_certificates()
            .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
            .unwrap_or_default();
        Ok(certs)
    };
    let certs = match tokio::time::timeout(timeout, work).await {
        Err(_) => return Err(Http::Connect(Connect::Timeout)),
        Ok(r) => r?,
    };
    let Some(leaf) = certs.first() else {
        return Err(Http::Tls("the server presented no certificate".into()));
    };
    let parsed = webpki::EndEntityCert::try_from(leaf)
        .map_err(|e| Http::Tls(format!("cannot parse the server certificate: {e}")))?;
    let dns_names = parsed.valid_dns_names().map(str::to_string).collect();
    let names_endpoint = parsed.verify_is_valid_for_subject_name(&sni).is_ok();
    let chain = files
        .ca
        .as_ref()
        .map(|ca| chain_ok(ca, leaf, &certs[1..], &sni));
    Ok(PeerCert {
        dns_names,
        names_endpoint,
        chain,
    })
}

/// Verifies the chain only: a name mismatch is the other check's business.
fn chain_ok(
    ca: &Path,
    leaf: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    sni: &ServerName<'_>,
) -> Result<(), String> {
    let v = WebPkiServerVerifier::builder_with_provider(Arc::new(roots(ca)?), provider())
        .build()
        .map_err(|e| e.to_string())?;
    match v.verify_server_cert(leaf, intermediates, sni, &[], UnixTime::now()) {
        Ok(_) => Ok(()),
        Err(rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        )) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}
