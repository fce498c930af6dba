//! The kubeconfig of the `kubernetes` source: the current context's cluster (server name,
//! CA) and user (bearer token, token file, or client certificate and key), with relative
//! paths taken from the kubeconfig's directory, as kubectl does.
//!
//! Refused, with the field named: no CA (`certificate-authority(-data)`: discovery always
//! verifies the cluster CA), `insecure-skip-tls-verify: true`, `exec` and `auth-provider`
//! users (they run programs; the agent calls none), basic auth, no credentials at all.
//! It does not connect: [`Kube::tls`] builds the rustls client for one backend address.

use base64::Engine;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde::de::IgnoredAny;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(serde::Deserialize)]
struct Config {
    #[serde(default)]
    clusters: Vec<Named<Cluster>>,
    #[serde(default)]
    users: Vec<Named<User>>,
    #[serde(default)]
    contexts: Vec<Named<Context>>,
    #[serde(rename = "current-context")]
    current_context: Option<String>,
}

#[derive(serde::Deserialize)]
struct Named<T> {
    name: String,
    #[serde(alias = "cluster", alias = "user", alias = "context")]
    value: Option<T>,
}

#[derive(serde::Deserialize)]
struct Cluster {
    server: Option<String>,
    #[serde(rename = "certificate-authority")]
    ca: Option<String>,
    #[serde(rename = "certificate-authority-data")]
    ca_data: Option<String>,
    #[serde(rename = "insecure-skip-tls-verify", default)]
    insecure: bool,
    #[serde(rename = "tls-server-name")]
    tls_server_name: Option<String>,
}

#[derive(serde::Deserialize)]
struct User {
    token: Option<String>,
    #[serde(rename = "tokenFile")]
    token_file: Option<String>,
    #[serde(rename = "client-certificate")]
    cert: Option<String>,
    #[serde(rename = "client-certificate-data")]
    cert_data: Option<String>,
    #[serde(rename = "client-key")]
    key: Option<String>,
    #[serde(rename = "client-key-data")]
    key_data: Option<String>,
    exec: Option<IgnoredAny>,
    #[serde(rename = "auth-provider")]
    auth_provider: Option<IgnoredAny>,
    username: Option<IgnoredAny>,
}

#[derive(serde::Deserialize)]
struct Context {
    cluster: String,
    user: Option<String>,
}

/// Why a kubeconfig cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("kubeconfig {path}: {rule}")]
pub struct KubeconfigError {
    pub path: PathBuf,
    pub rule: String,
}

/// How to reach and authenticate to the API.
#[derive(Clone)]
pub struct Kube {
    /// The name the servers' certificates are verified for (`tls-server-name`, else the
    /// host of `server`); a certificate for the backend's own address is accepted too.
    pub server_name: String,
    roots: Arc<rustls::RootCertStore>,
    /// `Authorization: Bearer ...`.
    pub token: Option<String>,
    client_auth: Option<(Vec<CertificateDer<'static>>, Arc<PrivateKeyDer<'static>>)>,
}

impl std::fmt::Debug for Kube {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kube")
            .field("server_name", &self.server_name)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("client_cert", &self.client_auth.is_some())
            .finish()
    }
}

/// The host of `https://HOST:PORT/...` (brackets of IPv6 removed).
fn url_host(server: &str) -> Option<String> {
    let rest = server.strip_prefix("https://")?;
    let authority = rest.split('/').next()?;
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next()?
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    (!host.is_empty()).then(|| host.to_string())
}

impl Kube {
    /// Reads `path` (and the files it names) now.
    pub fn load(path: &Path) -> Result<Kube, KubeconfigError> {
        let bad = |rule: String| KubeconfigError {
            path: path.to_path_buf(),
            rule,
        };
        let text = std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read: {e}")))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        Kube::parse(&text, dir).map_err(bad)
    }

    /// Parses a kubeconfig's text; relative paths are taken from `dir`.
    pub fn parse(text: &str, dir: &Path) -> Result<Kube, String> {
        let c: Config =
            serde_saphyr::from_str(text).map_err(|e| format!("not a kubeconfig: {e}"))?;
        let ctx_name = match (&c.current_context, c.contexts.len()) {
            (Some(n), _) if !n.is_empty() => n.clone(),
            (_, 1) => c.contexts[0].name.clone(),
            _ => {
                return Err(
                    "current-context: is not set (and there is not exactly one context)".into(),
                )
            }
        };
        let ctx = c
            .contexts
            .iter()
            .find(|x| x.name == ctx_name)
            .and_then(|x| x.value.as_ref())
            .ok_or_else(|| format!("current-context: no context named `{ctx_name}`"))?;
        let cluster = c
            .clusters
            .iter()
            .find(|x| x.name == ctx.cluster)
            .and_then(|x| x.value.as_ref())
            .ok_or_else(|| {
                format!(
                    "contexts[{ctx_name}].cluster: no cluster named `{}`",
                    ctx.cluster
                )
            })?;
        let file = |p: &str| -> Result<Vec<u8>, String> {
            let p = dir.join(p);
            std::fs::read(&p).map_err(|e| format!("cannot read {}: {e}", p.display()))
        };
        let data = |field: &str, d: &str| -> Result<Vec<u8>, String> {
            base64::engine::general_purpose::STANDARD
                .decode(d.trim())
                .map_err(|e| format!("{field}: not base64: {e}"))
        };
        if cluster.insecure {
            return Err(format!(
                "clusters[{}].insecure-skip-tls-verify: is true; discovery always verifies the cluster CA",
                ctx.cluster
            ));
        }
        let server = cluster
            .server
            .as_deref()
            .ok_or_else(|| format!("clusters[{}].server: is missing", ctx.cluster))?;
        let server_name = match &cluster.tls_server_name {
            Some(n) if !n.is_empty() => n.clone(),
            _ => url_host(server).ok_or_else(|| {
                format!(
                    "clusters[{}].server: `{server}` is not an https:// URL",
                    ctx.cluster
                )
            })?,
        };
        ServerName::try_from(server_name.clone()).map_err(|_| {
            format!(
                "clusters[{}]: `{server_name}` is not a server name",
                ctx.cluster
            )
        })?;
        let ca_pem = match (&cluster.ca_data, &cluster.ca) {
            (Some(d), _) => data("certificate-authority-data", d)?,
            (None, Some(p)) => file(p)?,
            (None, None) => {
                return Err(format!(
                    "clusters[{}]: has no certificate-authority(-data); discovery verifies the cluster CA",
                    ctx.cluster
                ))
            }
        };
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&ca_pem) {
            let cert = cert.map_err(|e| format!("clusters[{}] CA: not PEM: {e}", ctx.cluster))?;
            roots
                .add(cert)
                .map_err(|e| format!("clusters[{}] CA: {e}", ctx.cluster))?;
        }
        if roots.is_empty() {
            return Err(format!(
                "clusters[{}] CA: holds no certificate",
                ctx.cluster
            ));
        }
        let user_name = ctx.user.clone().unwrap_or_default();
        let user = c
            .users
            .iter()
            .find(|x| x.name == user_name)
            .and_then(|x| x.value.as_ref())
            .ok_or_else(|| format!("contexts[{ctx_name}].user: no user named `{user_name}`"))?;
        let u = format!("users[{user_name}]");
        if user.exec.is_some() || user.auth_provider.is_some() {
            return Err(format!(
                "{u}: exec and auth-provider credentials run programs, which cpe does not; use a token or a client certificate"
            ));
        }
        if user.username.is_some() {
            return Err(format!(
                "{u}: basic auth is not supported; use a token or a client certificate"
            ));
        }
        let token = match (&user.token, &user.token_file) {
            (Some(t), _) if !t.is_empty() => Some(t.clone()),
            (_, Some(p)) => Some(
                String::from_utf8(file(p)?)
                    .map_err(|_| format!("{u}.tokenFile: not text"))?
                    .trim()
                    .to_string(),
            ),
            _ => None,
        };
        let cert = match (&user.cert_data, &user.cert) {
            (Some(d), _) => Some(data("client-certificate-data", d)?),
            (None, Some(p)) => Some(file(p)?),
            _ => None,
        };
        let key = match (&user.key_data, &user.key) {
            (Some(d), _) => Some(data("client-key-data", d)?),
            (None, Some(p)) => Some(file(p)?),
            _ => None,
        };
        let client_auth = match (cert, key) {
            (Some(c), Some(k)) => {
                let chain: Vec<_> = CertificateDer::pem_slice_iter(&c)
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("{u}.client-certificate: not PEM: {e}"))?;
                if chain.is_empty() {
                    return Err(format!("{u}.client-certificate: holds no certificate"));
                }
                let key = PrivateKeyDer::from_pem_slice(&k)
                    .map_err(|e| format!("{u}.client-key: not a PEM private key: {e}"))?;
                Some((chain, Arc::new(key)))
            }
            (Some(_), None) => return Err(format!("{u}: client-certificate without client-key")),
            (None, Some(_)) => return Err(format!("{u}: client-key without client-certificate")),
            (None, None) => None,
        };
        if token.is_none() && client_auth.is_none() {
            return Err(format!(
                "{u}: has no token, tokenFile or client certificate"
            ));
        }
        Ok(Kube {
            server_name,
            roots: Arc::new(roots),
            token,
            client_auth,
        })
    }

    /// The TLS client for a connection to the backend at `ip`: the server's certificate
    /// must chain to the cluster CA and name [`server_name`](Self::server_name) or `ip`.
    pub fn tls(&self, ip: IpAddr) -> Result<Arc<rustls::ClientConfig>, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let inner =
            WebPkiServerVerifier::builder_with_provider(self.roots.clone(), provider.clone())
                .build()
                .map_err(|e| format!("cluster CA: {e}"))?;
        let verifier = Arc::new(EitherName {
            inner,
            alternative: ServerName::IpAddress(ip.into()),
        });
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut config = match &self.client_auth {
            Some((chain, key)) => builder
                .with_client_auth_cert(chain.clone(), key.clone_key())
                .map_err(|e| format!("client certificate: {e}"))?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// The name sent as SNI and verified first.
    pub fn sni(&self) -> ServerName<'static> {
        ServerName::try_from(self.server_name.clone()).expect("checked at parse")
    }
}

/// The standard WebPKI verification, for the kubeconfig's server name, or failing that
/// for the address actually connected to. Both are names the cluster CA vouches for.
#[derive(Debug)]
struct EitherName {
    inner: Arc<WebPkiServerVerifier>,
    alternative: ServerName<'static>,
}

impl ServerCertVerifier for EitherName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. },
            )) => self.inner.verify_server_cert(
                end_entity,
                intermediates,
                &self.alternative,
                ocsp,
                now,
            ),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca_pem() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.self_signed(&key).unwrap().pem()
    }

    fn cfg(cluster: &str, user: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: c\ncontexts:\n- name: c\n  context: {{cluster: k, user: u}}\nclusters:\n- name: k\n  cluster:\n{cluster}users:\n- name: u\n  user:\n{user}"
        )
    }

    #[test]
    fn token_and_ca_data() {
        let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem());
        let k = Kube::parse(
            &cfg(
                &format!(
                    "    server: https://cp.example:6443\n    certificate-authority-data: {ca}\n"
                ),
                "    token: abc\n",
            ),
            Path::new("/"),
        )
        .unwrap();
        assert_eq!(k.server_name, "cp.example");
        assert_eq!(k.token.as_deref(), Some("abc"));
        assert!(k.tls("10.0.0.1".parse().unwrap()).is_ok());
        let k = Kube::parse(
            &cfg(
                &format!("    server: https://[fd00::1]:6443\n    tls-server-name: kubernetes\n    certificate-authority-data: {ca}\n"),
                "    token: abc\n",
            ),
            Path::new("/"),
        )
        .unwrap();
        assert_eq!(k.server_name, "kubernetes");
    }

    #[test]
    fn refusals_name_the_field() {
        let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem());
        let server =
            format!("    server: https://10.0.0.1:6443\n    certificate-authority-data: {ca}\n");
        for (cluster, user, want) in [
            (
                "    server: https://10.0.0.1:6443\n".to_string(),
                "    token: a\n",
                "has no certificate-authority",
            ),
            (
                format!("{server}    insecure-skip-tls-verify: true\n"),
                "    token: a\n",
                "insecure-skip-tls-verify",
            ),
            (server.clone(), "    exec: {command: aws}\n", "exec"),
            (
                server.clone(),
                "    username: admin\n    password: x\n",
                "basic auth",
            ),
            (
                server.clone(),
                "    client-certificate-data: eA==\n",
                "without client-key",
            ),
            (server.clone(), "    {}\n", "no token"),
        ] {
            let e = Kube::parse(&cfg(&cluster, user), Path::new("/")).unwrap_err();
            assert!(e.contains(want), "{want}: {e}");
        }
        assert!(Kube::parse("garbage: [", Path::new("/")).is_err());
    }
}
