//! rustls configurations built from PEM text: the server side of the stand-in (ALPN h2 and
//! http/1.1, client certificates verified when given but optional, as on a real API
//! server) and a client side for tests and the demo's traffic.
//!
//! Always the ring provider, passed explicitly, so nothing here depends on which process-wide
//! default provider was installed. It does not read files: callers hand in PEM text.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("the {what} is not valid PEM: {detail}")]
    Pem { what: &'static str, detail: String },
    #[error("the {what} holds no certificate")]
    Empty { what: &'static str },
    #[error("cannot build the TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("cannot build the client-certificate verifier: {0}")]
    Verifier(String),
    #[error("{0:?} is not a valid TLS server name")]
    ServerName(String),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub(crate) fn certs(
    pem: &str,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what,
            detail: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Empty { what });
    }
    Ok(certs)
}

fn key(pem: &str, what: &'static str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| TlsError::Pem {
        what,
        detail: e.to_string(),
    })
}

fn roots(ca_pem: &str, what: &'static str) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs(ca_pem, what)? {
        roots.add(cert)?;
    }
    Ok(roots)
}

/// The server configuration: certificate chain and key, and optionally a CA whose client
/// certificates are verified (clients without a certificate are still let in, the way an
/// API server lets anonymous requests reach `/readyz`).
pub fn server_config(
    cert_pem: &str,
    key_pem: &str,
    client_ca_pem: Option<&str>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?;
    let builder = match client_ca_pem {
        Some(ca) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots(ca, "client CA")?),
                provider(),
            )
            .allow_unauthenticated()
            .build()
            .map_err(|e| TlsError::Verifier(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(
        certs(cert_pem, "server certificate")?,
        key(key_pem, "server key")?,
    )?;
    // kubectl (Go's net/http) asks for h2 first; curl and probes use either.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A client configuration trusting exactly `ca_pem`, optionally presenting a client
/// certificate, offering the given ALPN protocols (empty: none).
pub fn client_config(
    ca_pem: &str,
    client: Option<(&str, &str)>,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(ca_pem, "CA certificate")?);
    let mut config = match client {
        Some((cert, key_pem)) => builder.with_client_auth_cert(
            certs(cert, "client certificate")?,
            key(key_pem, "client key")?,
        )?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// Parses a host name or IP literal into the name rustls checks the certificate against.
pub fn server_name(host: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(host.to_string()).map_err(|_| TlsError::ServerName(host.to_string()))
}
