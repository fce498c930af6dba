//! The real kube-apiserver on the VIP testbed's machines ([`ApiKind::Kube`]), from the pieces
//! of the kube testbed (`crate::kube`): the flags of [`apiserver::start`] (advertising the
//! machine's own address, etcd at `127.0.0.1:2379`: the machine's own member, as kubeadm's
//! stacked etcd), one test cluster CA and token file ([`KubePki`]) for the testbed, each
//! machine's serving certificate naming its own address first, then `127.0.0.1` and the VIP.
//!
//! Also here:
//! - making a running server unready for real: nftables in its machine's namespace drops
//!   its packets to its etcd member (`output`, `ip daddr 127.0.0.1 tcp dport 2379`: only the
//!   API server uses that address; the agents, the observers and `etcdctl` use the members'
//!   own addresses), so `/readyz`'s etcd check times out and /readyz answers 500 (the
//!   real server's code for a failed check) until the rule is removed;
//! - [`ReadyzWait`], a thread polling one machine's `/readyz` until it answers 200 (or
//!   until it stops answering 200), timed: the chaos runner must not block for a start
//!   that takes 8–30 s.
//!
//! It does not run a controller-manager, scheduler or kubelet, and nothing here reads the
//! cluster's objects: the agents only probe `/readyz`.

use super::{ApiKind, Testbed};
use crate::kube::pki::KubePki;
use crate::kube::{apiserver, ApiOptions, User};
use crate::{Child, Host};
use anyhow::{bail, Context, Result};
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The nftables table that cuts an API server from its etcd member.
const ETCD_CUT_TABLE: &str = "cpe_chaos_etcd_cut";

/// The kube-apiserver options on the VIP testbed: the stand-in's shutdown delay (2 s: a
/// SIGTERMed server still serves while the agents react to its failing /readyz).
fn options() -> ApiOptions {
    ApiOptions {
        shutdown_delay: Duration::from_secs(2),
        ..ApiOptions::default()
    }
}

/// The test cluster's CA, service-account key and tokens, under `dir/pki`; every serving
/// certificate also names the VIP (the address the client and the agents' peers use).
pub(super) fn create_pki(dir: &Path, vip: Ipv4Addr) -> Result<KubePki> {
    KubePki::create(&dir.join("pki"), &[vip])
}

impl Testbed {
    /// Starts a kube-apiserver on machine `i` (binary `bin`); does not wait.
    pub(super) fn spawn_kube_api(&self, i: usize, bin: &Path) -> Result<Child> {
        let pki = self.pki.as_ref().context("no kube PKI on this testbed")?;
        let host = &self.machines[i].host;
        let log = self
            .dir()
            .join(format!("api-{}.log", self.machines[i].host.name));
        Ok(apiserver::start(bin, host, pki, &options(), &log)?.child)
    }

    /// Cuts machine `i`'s kube-apiserver from its etcd member (`ready` false) or lifts the
    /// cut (`ready` true). Returns at once: /readyz follows within the etcd health check's
    /// timeout (2 s) or the client's reconnect.
    pub(super) fn set_kube_ready(&mut self, i: usize, ready: bool) -> Result<()> {
        let host = &self.machines[i].host;
        if ready {
            host.exec("nft", &["delete", "table", "inet", ETCD_CUT_TABLE])
                .with_context(|| format!("lifting the etcd cut on {}", host.name))?;
        } else {
            let rules = format!(
                "table inet {ETCD_CUT_TABLE} {{\n\
                 chain o {{ type filter hook output priority -300; policy accept; \
                 ip daddr 127.0.0.1 tcp dport 2379 drop; }}\n}}\n"
            );
            crate::net::run_with_stdin(
                {
                    let mut c = host.command("nft");
                    c.args(["-f", "-"]);
                    c
                },
                &rules,
            )
            .with_context(|| format!("cutting {}'s API server from its etcd", host.name))?;
        }
        Ok(())
    }

    /// The test cluster's admin bearer token (`system:masters`), with a real kube-apiserver.
    pub fn kube_token(&self) -> Option<String> {
        self.pki.as_ref().map(|p| p.token(User::Admin).to_string())
    }

    /// Whether the machines run a real kube-apiserver.
    pub fn kube_api(&self) -> bool {
        matches!(self.api, ApiKind::Kube(_))
    }

    /// How long an API server may take from its start to its first /readyz 200.
    pub(super) fn api_ready_timeout(&self) -> Duration {
        match self.api {
            ApiKind::Kube(_) => apiserver::READY_TIMEOUT,
            _ => Duration::from_secs(20),
        }
    }

    /// Starts polling machine `i`'s /readyz from inside the machine (every 50 ms) until it
    /// answers 200 (`ready` true; 1 s per try) or until it does not (`ready` false: an
    /// answer other than 200, or none within 3 s — longer than kube-apiserver's 2 s etcd
    /// check, so that its own answer is seen), for up to the API server's start timeout.
    pub fn readyz_wait(&self, i: usize, ready: bool) -> ReadyzWait {
        ReadyzWait::start(
            self.machines[i].host.clone(),
            self.api_url(),
            ready,
            self.api_ready_timeout(),
        )
    }
}

/// A thread polling one machine's `/readyz` until it reaches the wanted state; stopped when
/// dropped.
#[derive(Debug)]
pub struct ReadyzWait {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<(Duration, String)>>>,
}

impl ReadyzWait {
    fn start(host: Host, url: String, ready: bool, timeout: Duration) -> ReadyzWait {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let t0 = Instant::now();
            let per_try = Duration::from_secs(if ready { 1 } else { 3 });
            while !s.load(Ordering::Relaxed) {
                let asked = t0.elapsed();
                let code = apiserver::readyz_within(&host, &url, per_try);
                if (code == Some(200)) == ready {
                    let what = match code {
                        Some(c) => format!("{c}, asked at {} ms", asked.as_millis()),
                        None => format!("no answer within {per_try:?}"),
                    };
                    return Ok((t0.elapsed(), what));
                }
                if t0.elapsed() > timeout {
                    bail!(
                        "{}'s /readyz still {} after {timeout:?}",
                        host.name,
                        if ready { "failing" } else { "200" }
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            bail!("stopped")
        });
        ReadyzWait {
            stop,
            thread: Some(thread),
        }
    }

    /// `None` while still waiting; then once the time it took and what /readyz answered,
    /// or why it gave up.
    pub fn poll(&mut self) -> Option<Result<(Duration, String)>> {
        if !self.thread.as_ref()?.is_finished() {
            return None;
        }
        let t = self.thread.take()?;
        Some(
            t.join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the poller panicked"))),
        )
    }
}

impl Drop for ReadyzWait {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
