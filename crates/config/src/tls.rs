//! [`TlsFiles`]: where a TLS client finds its CA and its client certificate and key. One
//! type for every TLS client of cpe (the health checks, the etcd election, preflight's
//! probes), so a definition's `caFile`/`certFile`/`keyFile` and a command's `--*-ca`,
//! `--*-cert`, `--*-key` flags map onto the same thing.
//!
//! Paths only: it neither reads nor checks the files (that is the TLS client's job, when
//! it is built).

use std::path::PathBuf;

/// CA to verify the server with (`None`: the client's own default, e.g. not verified for
/// health checks), and a client certificate with its key (both or neither).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct TlsFiles {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl TlsFiles {
    pub fn new(ca: Option<PathBuf>, cert: Option<PathBuf>, key: Option<PathBuf>) -> TlsFiles {
        TlsFiles { ca, cert, key }
    }

    /// No file at all.
    pub fn is_empty(&self) -> bool {
        self.ca.is_none() && self.cert.is_none() && self.key.is_none()
    }
}
