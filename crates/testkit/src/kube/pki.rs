//! The kube testbed's credentials, all made in memory and written under one directory:
//! a cluster CA (the test PKI of `cpe-apiserver`), one serving certificate per machine
//! naming its own address (plus `127.0.0.1`, `localhost`, the in-cluster names and the
//! endpoint addresses a client may reach it through: a load balancer passes TLS through),
//! the service-account signing key kube-apiserver 1.20 requires (and its public half), the static token file
//! (`--token-auth-file`) with an admin and a discovery identity, and kubeconfigs (CA data
//! + bearer token) for `cpe` and `kubectl`.
//!
//! It does not rotate anything, and keys are written in the clear (mode 0600): a test
//! cluster, never a real one.

use anyhow::{Context, Result};
use base64::Engine;
use cpe_apiserver::pki::Pki;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// The user the admin token authenticates as (group `system:masters`).
pub const ADMIN_USER: &str = "kube-admin";
/// The user the discovery token authenticates as: the ServiceAccount that
/// `cpe render --kind rbac` binds (a static token may carry a ServiceAccount's user name,
/// and RBAC matches ServiceAccount subjects by that name).
pub const DISCOVERY_NAMESPACE: &str = "kube-system";
pub const DISCOVERY_SA: &str = "cpe-discovery";

/// Who a kubeconfig authenticates as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum User {
    /// `system:masters`: applies RBAC, reads everything.
    Admin,
    /// The discovery ServiceAccount: only what the RBAC applied for it allows.
    Discovery,
}

/// The files of one test cluster.
pub struct KubePki {
    pki: Pki,
    dir: PathBuf,
    admin_token: String,
    discovery_token: String,
    /// Extra names every serving certificate carries (the endpoint addresses).
    endpoint_names: Vec<String>,
}

impl std::fmt::Debug for KubePki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubePki")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl KubePki {
    /// Generates the CA, the service-account key and both tokens, and writes `ca.crt`,
    /// `sa.key` and `tokens.csv` into `dir`.
    pub fn create(dir: &Path, endpoint_addrs: &[Ipv4Addr]) -> Result<KubePki> {
        std::fs::create_dir_all(dir)?;
        let pki = Pki::generate::<&str>(&[]).context("generating the test CA")?;
        let admin_token = random_token()?;
        let discovery_token = random_token()?;
        let me = KubePki {
            pki,
            dir: dir.to_path_buf(),
            admin_token,
            discovery_token,
            endpoint_names: endpoint_addrs.iter().map(|a| a.to_string()).collect(),
        };
        write(&me.ca_path(), &me.pki.ca_cert_pem, false)?;
        let sa = rcgen::KeyPair::generate().context("generating the service-account key")?;
        write(&me.sa_key_path(), &sa.serialize_pem(), true)?;
        // kube-apiserver reads `--service-account-key-file` as public keys (or PKCS#1/SEC1
        // private keys), not PKCS#8: give it the public half.
        write(&me.sa_pub_path(), &sa.public_key_pem(), false)?;
        // token,user,uid,"group1,group2"
        let sa_user = format!("system:serviceaccount:{DISCOVERY_NAMESPACE}:{DISCOVERY_SA}");
        let tokens = format!(
            "{},{ADMIN_USER},uid-admin,\"system:masters\"\n\
             {},{sa_user},uid-discovery,\"system:serviceaccounts,system:serviceaccounts:{DISCOVERY_NAMESPACE}\"\n",
            me.admin_token, me.discovery_token
        );
        write(&me.tokens_path(), &tokens, true)?;
        Ok(me)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// The cluster CA certificate (what `--certificate-authority` / a kubeconfig trusts).
    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
    pub fn ca_pem(&self) -> &str {
        &self.pki.ca_cert_pem
    }
    pub fn sa_key_path(&self) -> PathBuf {
        self.dir.join("sa.key")
    }
    pub fn sa_pub_path(&self) -> PathBuf {
        self.dir.join("sa.pub")
    }
    pub fn tokens_path(&self) -> PathBuf {
        self.dir.join("tokens.csv")
    }
    pub fn token(&self, user: User) -> &str {
        match user {
            User::Admin => &self.admin_token,
            User::Discovery => &self.discovery_token,
        }
    }

    /// Writes `<name>.crt` / `<name>.key`: a serving certificate for machine `name` at
    /// `addr`, also valid for `127.0.0.1`, `localhost`, the in-cluster service names and
    /// the endpoint addresses. Returns (cert, key) paths.
    pub fn issue_machine(&self, name: &str, addr: Ipv4Addr) -> Result<(PathBuf, PathBuf)> {
        let mut names = vec![
            addr.to_string(),
            "127.0.0.1".into(),
            "localhost".into(),
            "10.96.0.1".into(),
            "kubernetes".into(),
            "kubernetes.default".into(),
            "kubernetes.default.svc".into(),
            "kubernetes.default.svc.cluster.local".into(),
        ];
        names.extend(self.endpoint_names.iter().cloned());
        let ck = self
            .pki
            .issue_server(&names)
            .with_context(|| format!("issuing the serving certificate of {name}"))?;
        let cert = self.dir.join(format!("{name}.crt"));
        let key = self.dir.join(format!("{name}.key"));
        write(&cert, &ck.cert_pem, false)?;
        write(&key, &ck.key_pem, true)?;
        Ok((cert, key))
    }

    /// A kubeconfig for `server` (e.g. `https://10.1.2.3:6443`) trusting the cluster CA
    /// (embedded as `certificate-authority-data`) with `user`'s bearer token, written to
    /// `path` (mode 0600).
    pub fn write_kubeconfig(&self, path: &Path, server: &str, user: User) -> Result<()> {
        let ca = base64::engine::general_purpose::STANDARD.encode(&self.pki.ca_cert_pem);
        let name = match user {
            User::Admin => ADMIN_USER.to_string(),
            User::Discovery => DISCOVERY_SA.to_string(),
        };
        let text = format!(
            "apiVersion: v1\n\
             kind: Config\n\
             clusters:\n\
             - name: cpe-test\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\n\
             users:\n\
             - name: {name}\n  user:\n    token: {token}\n\
             contexts:\n\
             - name: {name}@cpe-test\n  context:\n    cluster: cpe-test\n    user: {name}\n\
             current-context: {name}@cpe-test\n",
            token = self.token(user),
        );
        write(path, &text, true)
    }
}

fn random_token() -> Result<String> {
    let mut b = [0u8; 16];
    let mut f = std::fs::File::open("/dev/urandom")?;
    std::io::Read::read_exact(&mut f, &mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

fn write(path: &Path, content: &str, secret: bool) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if secret { 0o600 } else { 0o644 })
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(content.as_bytes())?;
    Ok(())
}
