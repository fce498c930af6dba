//! The test PKI: a CA, a server certificate for a chosen list of names, and a client
//! certificate, all generated in memory with rcgen (ECDSA P-256, ring) and handed out as PEM.
//!
//! The server's names are the caller's choice on purpose: a test that wants to see a
//! name check fail makes a certificate that lacks the endpoint's name. More server
//! certificates can be issued from the same CA (`issue_server`), so several stand-in
//! servers share one CA the way a cluster's API servers share the cluster CA.
//!
//! It does not manage rotation, revocation or key storage: keys are written in the clear
//! (mode 0600) by `write_to`, fine for tests and demos, never for a real cluster.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::path::{Path, PathBuf};

/// File names written by [`Pki::write_to`] and read by [`TlsFiles::from_dir`].
pub const CA_CERT: &str = "ca.crt";
pub const SERVER_CERT: &str = "server.crt";
pub const SERVER_KEY: &str = "server.key";
pub const CLIENT_CERT: &str = "client.crt";
pub const CLIENT_KEY: &str = "client.key";

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("certificate name {name:?} is neither an IP address nor a valid DNS name: {reason}")]
    Name { name: String, reason: String },
    #[error("cannot generate the {what}: {source}")]
    Generate {
        what: &'static str,
        source: rcgen::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A certificate and its private key, both PEM.
#[derive(Clone, Debug)]
pub struct CertKey {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A CA with one server and one client certificate issued by it.
pub struct Pki {
    /// The CA certificate, PEM: what clients trust.
    pub ca_cert_pem: String,
    pub server: CertKey,
    pub client: CertKey,
    /// Kept so that more certificates can be issued from the same CA.
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki")
            .field("ca_cert_pem", &self.ca_cert_pem)
            .field("server", &"<cert+key>")
            .field("client", &"<cert+key>")
            .finish()
    }
}

impl Pki {
    /// A new CA, a server certificate valid for exactly `server_names` (each an IP
    /// literal or a DNS name) and a client certificate with common name `cpe-test-client`.
    pub fn generate<S: AsRef<str>>(server_names: &[S]) -> Result<Pki, PkiError> {
        let ca_key = KeyPair::generate().map_err(|source| PkiError::Generate {
            what: "CA key",
            source,
        })?;
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // A distinct name per CA, so that a client trusting another test CA reports an
        // unknown issuer rather than a bad signature.
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("cpe test CA {nonce:x}"));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = params
            .self_signed(&ca_key)
            .map_err(|source| PkiError::Generate {
                what: "CA certificate",
                source,
            })?;
        let issuer = Issuer::new(params, ca_key);
        let server = issue(&issuer, server_names, "cpe-standin-apiserver", true)?;
        let client = issue::<&str>(&issuer, &[], "cpe-test-client", false)?;
        Ok(Pki {
            ca_cert_pem: ca_cert.pem(),
            server,
            client,
            issuer,
        })
    }

    /// Another server certificate from the same CA, valid for `names`.
    pub fn issue_server<S: AsRef<str>>(&self, names: &[S]) -> Result<CertKey, PkiError> {
        issue(&self.issuer, names, "cpe-standin-apiserver", true)
    }

    /// Writes `ca.crt`, `server.crt`, `server.key`, `client.crt`, `client.key` into `dir`
    /// (created if missing). Keys get mode 0600.
    pub fn write_to(&self, dir: &Path) -> Result<(), PkiError> {
        std::fs::create_dir_all(dir).map_err(|source| PkiError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
        let files = [
            (CA_CERT, &self.ca_cert_pem, false),
            (SERVER_CERT, &self.server.cert_pem, false),
            (SERVER_KEY, &self.server.key_pem, true),
            (CLIENT_CERT, &self.client.cert_pem, false),
            (CLIENT_KEY, &self.client.key_pem, true),
        ];
        for (name, content, secret) in files {
            let path = dir.join(name);
            write_file(&path, content, secret)
                .map_err(|source| PkiError::Write { path, source })?;
        }
        Ok(())
    }
}

impl Pki {
    /// Writes the files into `dir` only if `dir` holds no server certificate yet, atomically:
    /// the files are written into a sibling temporary directory that is then renamed onto
    /// `dir`. When several processes race (three stand-ins started at once on one shared
    /// directory) exactly one set of files wins, never a CA from one and a server
    /// certificate from another. Returns whether this call's files were the ones kept.
    pub fn write_new(&self, dir: &Path) -> Result<bool, PkiError> {
        if TlsFiles::present(dir) {
            return Ok(false);
        }
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "pki".into());
        let tmp = dir.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        self.write_to(&tmp)?;
        // rename(2) replaces a missing or empty directory and fails on a non-empty one.
        match std::fs::rename(&tmp, dir) {
            Ok(()) => Ok(true),
            Err(_) if TlsFiles::present(dir) => {
                let _ = std::fs::remove_dir_all(&tmp);
                Ok(false)
            }
            Err(source) => {
                let _ = std::fs::remove_dir_all(&tmp);
                Err(PkiError::Write {
                    path: dir.to_path_buf(),
                    source,
                })
            }
        }
    }
}

fn write_file(path: &Path, content: &str, secret: bool) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if secret { 0o600 } else { 0o644 })
        .open(path)?;
    f.write_all(content.as_bytes())
}

fn issue<S: AsRef<str>>(
    issuer: &Issuer<'static, KeyPair>,
    names: &[S],
    common_name: &str,
    server: bool,
) -> Result<CertKey, PkiError> {
    let mut params = CertificateParams::default();
    for name in names {
        let name = name.as_ref();
        // CertificateParams::new decides IP vs DNS per name; do it one at a time so the
        // error names the offending entry.
        if name.parse::<std::net::IpAddr>().is_err() {
            check_dns_name(name).map_err(|reason| PkiError::Name {
                name: name.to_string(),
                reason: reason.to_string(),
            })?;
        }
        let one = CertificateParams::new(vec![name.to_string()]).map_err(|e| PkiError::Name {
            name: name.to_string(),
            reason: e.to_string(),
        })?;
        params.subject_alt_names.extend(one.subject_alt_names);
    }
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![if server {
        ExtendedKeyUsagePurpose::ServerAuth
    } else {
        ExtendedKeyUsagePurpose::ClientAuth
    }];
    params.use_authority_key_identifier_extension = true;
    let what = if server { "server" } else { "client" };
    let key = KeyPair::generate().map_err(|source| PkiError::Generate { what, source })?;
    let cert = params
        .signed_by(&key, issuer)
        .map_err(|source| PkiError::Generate { what, source })?;
    Ok(CertKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// RFC 1123 host names, with a leading `*.` wildcard allowed (a certificate may carry one).
fn check_dns_name(name: &str) -> Result<(), &'static str> {
    let bare = name.strip_prefix("*.").unwrap_or(name);
    if bare.is_empty() || bare.len() > 253 {
        return Err("a DNS name is 1 to 253 characters long");
    }
    for label in bare.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("each label is 1 to 63 characters long");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err("labels hold only letters, digits and '-'");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("labels neither start nor end with '-'");
        }
    }
    Ok(())
}

/// The PEM files of a TLS directory as written by [`Pki::write_to`].
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub ca_cert_pem: String,
    pub server: CertKey,
}

impl TlsFiles {
    /// True when `dir` holds a server certificate and key (what a server needs).
    pub fn present(dir: &Path) -> bool {
        dir.join(SERVER_CERT).is_file() && dir.join(SERVER_KEY).is_file()
    }

    /// Reads `ca.crt`, `server.crt` and `server.key` from `dir`.
    pub fn from_dir(dir: &Path) -> Result<TlsFiles, PkiError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(|source| PkiError::Read { path, source })
        };
        Ok(TlsFiles {
            ca_cert_pem: read(CA_CERT)?,
            server: CertKey {
                cert_pem: read(SERVER_CERT)?,
                key_pem: read(SERVER_KEY)?,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_the_five_files_with_private_keys_closed() {
        use std::os::unix::fs::PermissionsExt;
        let pki = Pki::generate(&["localhost", "127.0.0.1"]).unwrap();
        let dir = std::env::temp_dir().join(format!("cpe-pki-test-{}", std::process::id()));
        pki.write_to(&dir).unwrap();
        for name in [CA_CERT, SERVER_CERT, SERVER_KEY, CLIENT_CERT, CLIENT_KEY] {
            let text = std::fs::read_to_string(dir.join(name)).unwrap();
            assert!(text.starts_with("-----BEGIN "), "{name}: {text}");
        }
        let mode = std::fs::metadata(dir.join(SERVER_KEY))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o077,
            0,
            "server.key is readable by others: {mode:o}"
        );
        let files = TlsFiles::from_dir(&dir).unwrap();
        assert_eq!(files.ca_cert_pem, pki.ca_cert_pem);
        assert!(TlsFiles::present(&dir));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn write_new_keeps_the_first_set_of_files() {
        let base = std::env::temp_dir().join(format!("cpe-pki-new-{}", std::process::id()));
        let dir = base.join("pki");
        std::fs::create_dir_all(&base).unwrap();
        let first = Pki::generate(&["localhost"]).unwrap();
        let second = Pki::generate(&["localhost"]).unwrap();
        assert!(first.write_new(&dir).unwrap());
        assert!(!second.write_new(&dir).unwrap());
        let files = TlsFiles::from_dir(&dir).unwrap();
        assert_eq!(files.ca_cert_pem, first.ca_cert_pem);
        assert_eq!(files.server.cert_pem, first.server.cert_pem);
        // No temporary directory left behind.
        let left: Vec<_> = std::fs::read_dir(&base).unwrap().collect();
        assert_eq!(left.len(), 1, "{left:?}");
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn a_bad_name_is_named_in_the_error() {
        let err = Pki::generate(&["not a name!"]).unwrap_err();
        assert!(err.to_string().contains("not a name!"), "{err}");
    }
}
