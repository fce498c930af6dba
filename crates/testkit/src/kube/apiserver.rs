//! One real kube-apiserver (1.20, built by `scripts/kube-apiserver.sh`) inside a machine's
//! namespace: where the binary is, the flags it runs with, and waiting for its first
//! `/readyz` 200 (timed: how long a start takes on this machine is one of the figures).
//!
//! Flags, as kubeadm would set them where it matters here: `--advertise-address` is the
//! machine's own non-loopback address (the lease endpoint reconciler refuses loopback),
//! etcd is the machine's own member over plain HTTP (`http://127.0.0.1:2379`, stacked etcd),
//! TLS with the machine's certificate, static tokens, RBAC only,
//! `--endpoint-reconciler-type=lease` (the 1.20 default, spelled out: its lease TTL is fixed
//! at 15 s and the reconcile interval at 10 s — no flag changes them in 1.20; `--master-count`
//! only matters to the `master-count` reconciler), and `--shutdown-delay-duration` so that
//! a SIGTERMed server keeps serving with `/readyz` failing before its listener closes.
//!
//! It does not start etcd or decide the machine's lifecycle: see [`super::KubeBed`].

use super::pki::KubePki;
use crate::{Child, Host};
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The port every API server listens on.
pub const API_PORT: u16 = 6443;

/// How long an API server may take to become ready on 2 busy shared cores (alone on this
/// machine it takes 8–16 s).
pub const READY_TIMEOUT: Duration = Duration::from_secs(180);

/// Where the cache of `scripts/kube-apiserver.sh` puts the binary.
pub const DEFAULT_BIN: &str = "/var/cache/cpe-test/kube-apiserver/kube-apiserver";

/// The kube-apiserver binary: `CPE_KUBE_APISERVER` (exported by `scripts/test.sh`), else
/// the script's cache. Panics with what to do when neither is there: a test that needs a
/// real API server fails, never skips.
pub fn kube_apiserver_bin() -> PathBuf {
    let (path, from) = match std::env::var_os("CPE_KUBE_APISERVER") {
        Some(p) if !p.is_empty() => (PathBuf::from(p), "CPE_KUBE_APISERVER"),
        _ => (PathBuf::from(DEFAULT_BIN), "the default cache path"),
    };
    let runnable = std::fs::metadata(&path)
        .map(|m| {
            m.is_file() && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
        })
        .unwrap_or(false);
    if !runnable {
        panic!(
            "this end-to-end test needs a real kube-apiserver, and {} ({from}) is not an \
             executable file. Build and cache it with `scripts/kube-apiserver.sh` (Debian's \
             kubernetes source package, ~6 min on 2 cores; scripts/test.sh runs it and exports \
             CPE_KUBE_APISERVER) — the test is not skipped on purpose",
            path.display()
        );
    }
    path
}

/// What an API server is started with.
#[derive(Debug, Clone)]
pub struct ApiOptions {
    /// `--shutdown-delay-duration`: how long a SIGTERMed server keeps serving (readyz failing).
    pub shutdown_delay: Duration,
    /// `--etcd-servers`; `http://127.0.0.1:2379` (the machine's own member) by default.
    pub etcd_servers: String,
}

impl Default for ApiOptions {
    fn default() -> Self {
        ApiOptions {
            shutdown_delay: Duration::from_secs(3),
            etcd_servers: "http://127.0.0.1:2379".into(),
        }
    }
}

/// A running API server and when it started and first answered `/readyz` 200.
#[derive(Debug)]
pub struct ApiServer {
    pub child: Child,
    pub started: Instant,
    pub first_ready: Option<Instant>,
}

/// Starts kube-apiserver on `host`, its log in `log`.
pub fn start(
    bin: &Path,
    host: &Host,
    pki: &KubePki,
    opts: &ApiOptions,
    log: &Path,
) -> Result<ApiServer> {
    let (cert, key) = pki.issue_machine(&host.name, host.addr)?;
    let p = |p: PathBuf| p.to_string_lossy().into_owned();
    let args: Vec<String> = vec![
        format!("--advertise-address={}", host.addr),
        "--bind-address=0.0.0.0".into(),
        format!("--secure-port={API_PORT}"),
        "--insecure-port=0".into(),
        format!("--etcd-servers={}", opts.etcd_servers),
        format!("--tls-cert-file={}", p(cert)),
        format!("--tls-private-key-file={}", p(key)),
        format!("--client-ca-file={}", p(pki.ca_path())),
        format!("--token-auth-file={}", p(pki.tokens_path())),
        "--authorization-mode=RBAC".into(),
        "--anonymous-auth=true".into(),
        format!("--service-account-key-file={}", p(pki.sa_pub_path())),
        format!(
            "--service-account-signing-key-file={}",
            p(pki.sa_key_path())
        ),
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
        "--service-cluster-ip-range=10.96.0.0/12".into(),
        "--endpoint-reconciler-type=lease".into(),
        format!(
            "--shutdown-delay-duration={}ms",
            opts.shutdown_delay.as_millis()
        ),
        // No controller-manager runs, so no ServiceAccount token controller: the admission
        // plugin would refuse any pod (testbed notes).
        "--disable-admission-plugins=ServiceAccount".into(),
        // Less start-up work on 2 shared cores; nothing here tests fairness or profiling.
        "--enable-priority-and-fairness=false".into(),
        "--profiling=false".into(),
        "--v=1".into(),
    ];
    let started = Instant::now();
    let child = host.spawn(&format!("kube-apiserver {}", host.name), log, bin, &args)?;
    Ok(ApiServer {
        child,
        started,
        first_ready: None,
    })
}

/// Polls `https://127.0.0.1:6443/readyz` from inside `host` every 100 ms until it answers
/// 200 (or `timeout`, or the process exits); records and returns the time to it.
pub fn wait_ready(api: &mut ApiServer, host: &Host, timeout: Duration) -> Result<Duration> {
    if let Some(t) = api.first_ready {
        return Ok(t - api.started);
    }
    let deadline = Instant::now() + timeout;
    let url = format!("https://127.0.0.1:{API_PORT}/readyz");
    loop {
        if readyz(host, &url) == Some(200) {
            let now = Instant::now();
            api.first_ready = Some(now);
            return Ok(now - api.started);
        }
        if !api.child.is_running() {
            bail!(
                "kube-apiserver on {} exited before it was ready:\n{}",
                host.name,
                api.child.tail(30)
            );
        }
        if Instant::now() > deadline {
            bail!(
                "kube-apiserver on {} not ready after {timeout:?}:\n{}",
                host.name,
                api.child.tail(30)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The status code `url` answers from inside `host` (certificate not checked) within 1 s,
/// if any.
pub fn readyz(host: &Host, url: &str) -> Option<u16> {
    readyz_within(host, url, Duration::from_secs(1))
}

/// As [`readyz`], waiting up to `timeout` for the answer.
pub fn readyz_within(host: &Host, url: &str, timeout: Duration) -> Option<u16> {
    let secs = format!("{:.3}", timeout.as_secs_f64());
    let out = host
        .exec(
            "curl",
            &[
                "-sk",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-m",
                &secs,
                url,
            ],
        )
        .ok()?;
    out.trim().parse().ok().filter(|c| *c != 0)
}
