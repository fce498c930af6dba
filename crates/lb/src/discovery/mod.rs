//! Backend discovery for `cpe lb`: the running set follows the cluster's API servers, learned
//! from the `kubernetes` EndpointSlices (or Endpoints) and/or the etcd member list, starting
//! from the seeds (`--backend`, `controlPlane.machines`) and the set cached by the last run.
//!
//! - `decide.rs` (pure): what to do with an answer ([`decide::judge`]) and the set to run
//!   on ([`decide::compose`]).
//! - `kube.rs`, `etcd.rs`: the sources' loops; each sends [`Report`]s, decides nothing.
//! - `kubeconfig.rs`: credentials and the TLS client of the `kubernetes` source.
//! - `cache.rs`: the last good set on disk.
//! - here: [`Prepared`] (the cache read and the start set, before the load balancer binds),
//!   [`Discovery`] (the runner: judges reports, applies a changed set through the same
//!   swap a SIGHUP reload uses, writes the cache, keeps the [`Board`] that `/status` and
//!   the metrics show).
//!
//! Safety: a set is only ever replaced by a composed set from good answers; an empty,
//! failed, forbidden, unparsable or stalled answer is a fault on the board and changes
//! nothing. Removed backends drain; new ones start unchecked and get connections only once
//! their checks pass.

pub mod cache;
pub mod decide;
pub mod etcd;
pub mod kube;
pub mod kubeconfig;

use crate::{BackendSpec, LbConfig, LbError, LbHandle, Reloaded};
use cpe_config::{DiscoverySource as Source, LbPlan};
use decide::{Fault, Member, Origin, Verdict};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{info, warn};

/// One answer (or fault) of a source.
#[derive(Debug)]
pub(crate) struct Report {
    pub source: Source,
    pub answer: Result<Vec<BackendSpec>, Fault>,
    /// The backend the answer came through (kubernetes).
    pub via: Option<String>,
    pub api: Option<&'static str>,
}

impl Report {
    pub(crate) fn fault(source: Source, f: Fault) -> Report {
        Report {
            source,
            answer: Err(f),
            via: None,
            api: None,
        }
    }

    pub(crate) fn answer(
        source: Source,
        answer: Result<Vec<BackendSpec>, Fault>,
        via: std::net::SocketAddr,
        api: &'static str,
    ) -> Report {
        Report {
            source,
            answer,
            via: Some(via.to_string()),
            api: Some(api),
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A source as `/status` shows it.
#[derive(Clone, Debug)]
pub struct SourceStatus {
    pub source: Source,
    /// No answer yet.
    pub starting: bool,
    /// The fault of the last answer (`None`: it was applied).
    pub fault: Option<String>,
    pub last_fault: Option<(String, Instant)>,
    pub last_success: Option<(u64, Instant)>,
    pub via: Option<String>,
    pub api: Option<&'static str>,
    /// The last good set.
    pub backends: Vec<String>,
}

impl SourceStatus {
    pub fn state(&self) -> &'static str {
        match (&self.fault, self.starting) {
            (Some(_), _) => "failing",
            (None, true) => "starting",
            (None, false) => "ok",
        }
    }
}

/// What discovery shows: origins, when the set changed, each source, the cache.
#[derive(Debug)]
pub struct Board {
    /// The origin of backends not found in `origins` (seeds or the file's machines).
    pub seed_origin: Origin,
    /// By backend name (removed ones keep their last origins).
    pub origins: HashMap<String, Vec<Origin>>,
    pub changed: (u64, Instant),
    pub sources: Vec<SourceStatus>,
    pub cache_path: Option<PathBuf>,
    /// `loaded`, `written`, `none`, `error`.
    pub cache_state: &'static str,
    pub cache_error: Option<String>,
}

impl Board {
    pub(crate) fn new() -> Board {
        Board {
            seed_origin: Origin::Seed,
            origins: HashMap::new(),
            changed: (unix_now(), Instant::now()),
            sources: Vec::new(),
            cache_path: None,
            cache_state: "none",
            cache_error: None,
        }
    }

    pub(crate) fn touch(&mut self) {
        self.changed = (unix_now(), Instant::now());
    }

    pub fn origins_of(&self, name: &str) -> Vec<&'static str> {
        match self.origins.get(name) {
            Some(o) => o.iter().map(|o| o.as_str()).collect(),
            None => vec![self.seed_origin.as_str()],
        }
    }

    /// The `discovery` part of `/status` (`null` without sources).
    pub fn json(&self) -> Value {
        if self.sources.is_empty() {
            return Value::Null;
        }
        let ago = |t: Instant| t.elapsed().as_millis() as f64 / 1000.0;
        let sources: Vec<Value> = self
            .sources
            .iter()
            .map(|s| {
                json!({
                    "source": s.source.as_str(),
                    "state": s.state(),
                    "fault": s.fault,
                    "last_fault": s.last_fault.as_ref().map(|f| f.0.clone()),
                    "last_fault_seconds_ago": s.last_fault.as_ref().map(|f| ago(f.1)),
                    "last_success_unix": s.last_success.map(|t| t.0),
                    "last_success_seconds_ago": s.last_success.map(|t| ago(t.1)),
                    "via": s.via,
                    "api": s.api,
                    "backends": s.backends,
                })
            })
            .collect();
        json!({
            "sources": sources,
            "cache": {
                "path": self.cache_path.as_ref().map(|p| p.display().to_string()),
                "state": self.cache_state,
                "error": self.cache_error,
            },
        })
    }
}

/// Run-time knobs (tests shorten them).
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// `timeoutSeconds` of each watch; a watch silent past it plus a grace is stalled.
    pub watch_timeout: Duration,
    /// Between two etcd member lists.
    pub etcd_interval: Duration,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            watch_timeout: Duration::from_secs(300),
            etcd_interval: Duration::from_secs(5),
        }
    }
}

/// Why discovery cannot start (a file problem: exit 1).
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("--kubeconfig: {0}")]
    Kubeconfig(#[from] kubeconfig::KubeconfigError),
}

/// Discovery before the load balancer binds: the cache read, the start set composed.
pub struct Prepared {
    settings: cpe_config::Discovery,
    kube: Option<kubeconfig::Kube>,
    seeds: Vec<BackendSpec>,
    seed_origin: Origin,
    cache: Vec<BackendSpec>,
    cache_path: PathBuf,
    cache_state: &'static str,
    cache_error: Option<String>,
    timing: Timing,
    /// The etcd client of the `etcd` source when the caller has one already (the VIP
    /// agent's, which follows etcd's member list); else one is made from the settings.
    etcd_client: Option<cpe_election::Client>,
}

impl Prepared {
    /// The `etcd` source asks through `client` (shared: its endpoints are whatever the
    /// owner sets them to) instead of a client of its own.
    pub fn with_etcd_client(mut self, client: cpe_election::Client) -> Prepared {
        self.etcd_client = Some(client);
        self
    }

    /// Reads the kubeconfig (a problem is fatal: it is the user's file) and the cache (a
    /// problem is reported, never fatal).
    pub fn new(
        plan: &LbPlan,
        settings: cpe_config::Discovery,
        seed_origin: Origin,
        timing: Timing,
    ) -> Result<Prepared, DiscoveryError> {
        let kube = match (&settings.kubeconfig, settings.has(Source::Kubernetes)) {
            (Some(p), true) => Some(kubeconfig::Kube::load(p)?),
            _ => None,
        };
        let cache_path = cache::path(
            &settings.cache_dir,
            settings.cache_prefix,
            plan.listen.port(),
        );
        let (cache, cache_state, cache_error) = match cache::read(&cache_path) {
            Ok(Some(list)) => {
                info!(path = %cache_path.display(), backends = ?list.iter().map(|b| b.to_string()).collect::<Vec<_>>(), "starting with the cached backend set");
                (list, "loaded", None)
            }
            Ok(None) => (Vec::new(), "none", None),
            Err(e) => {
                warn!("the backend cache is not used: {e}");
                (Vec::new(), "error", Some(e.to_string()))
            }
        };
        Ok(Prepared {
            kube,
            seeds: plan.backends.clone(),
            seed_origin,
            cache,
            cache_path,
            cache_state,
            cache_error,
            settings,
            timing,
            etcd_client: None,
        })
    }

    /// The set to bind with: the seeds and the cached set.
    pub fn start_set(&self) -> Vec<BackendSpec> {
        self.compose(&[]).into_iter().map(|m| m.spec).collect()
    }

    fn compose(&self, sources: &[(Source, Option<&[BackendSpec]>)]) -> Vec<Member> {
        decide::compose(&decide::Inputs {
            seeds: &self.seeds,
            seed_origin: Some(self.seed_origin),
            cache: &self.cache,
            sources,
        })
    }

    /// Starts the sources and the runner on the load balancer `handle` was bound with
    /// [`start_set`](Self::start_set).
    pub fn start(self, handle: LbHandle) -> Discovery {
        let start = self.compose(&[]);
        {
            let mut b = handle.board();
            b.seed_origin = self.seed_origin;
            b.origins = start
                .iter()
                .map(|m| (m.spec.to_string(), m.origins.clone()))
                .collect();
            b.cache_path = Some(self.cache_path.clone());
            b.cache_state = self.cache_state;
            b.cache_error = self.cache_error.clone();
            b.sources = self
                .settings
                .sources
                .iter()
                .map(|s| SourceStatus {
                    source: *s,
                    starting: true,
                    fault: None,
                    last_fault: None,
                    last_success: None,
                    via: None,
                    api: None,
                    backends: Vec::new(),
                })
                .collect();
        }
        let (tx, rx) = mpsc::channel(64);
        let (ctl_tx, ctl_rx) = mpsc::channel(4);
        let mut tasks = Vec::new();
        if let Some(kube) = self.kube.clone() {
            let h = handle.clone();
            let path = self.settings.kubeconfig.clone();
            tasks.push(tokio::spawn(kube::run(
                kube,
                path,
                Box::new(move || h.discovery_targets()),
                self.timing.watch_timeout,
                tx.clone(),
            )));
        }
        if self.settings.has(Source::Etcd) {
            tasks.push(tokio::spawn(etcd::run(
                self.etcd_client.clone(),
                self.settings.etcd.clone(),
                self.settings.etcd_tls.clone(),
                self.settings.api_port,
                self.timing.etcd_interval,
                tx.clone(),
            )));
        }
        drop(tx);
        let runner = Runner {
            current: start,
            last_good: self.settings.sources.iter().map(|s| (*s, None)).collect(),
            prepared: self,
            handle,
            writes: 0,
            latest_write: Default::default(),
            write_lock: Default::default(),
        };
        tasks.push(tokio::spawn(runner.run(rx, ctl_rx)));
        Discovery {
            control: ctl_tx,
            tasks,
        }
    }
}

/// The running discovery: stops its tasks when dropped.
pub struct Discovery {
    control: mpsc::Sender<(LbConfig, oneshot::Sender<Result<Reloaded, LbError>>)>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Discovery {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Discovery {
    /// A SIGHUP reload: the new settings, and `config.backends` as the new seeds; the set
    /// applied is composed again (the discovered sets stay in force once any source answered).
    pub async fn reload(&self, config: LbConfig) -> Result<Reloaded, LbError> {
        let (tx, rx) = oneshot::channel();
        if self.control.send((config, tx)).await.is_err() {
            return Err(LbError::NoBackends);
        }
        rx.await.unwrap_or(Err(LbError::NoBackends))
    }
}

struct Runner {
    prepared: Prepared,
    handle: LbHandle,
    current: Vec<Member>,
    last_good: Vec<(Source, Option<Vec<BackendSpec>>)>,
    writes: u64,
    latest_write: std::sync::Arc<std::sync::atomic::AtomicU64>,
    write_lock: std::sync::Arc<std::sync::Mutex<()>>,
}

impl Runner {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Report>,
        mut ctl: mpsc::Receiver<(LbConfig, oneshot::Sender<Result<Reloaded, LbError>>)>,
    ) {
        // Every source may end (a setup fault was reported): the runner still answers
        // reloads.
        let mut sources_open = true;
        loop {
            tokio::select! {
                r = rx.recv(), if sources_open => match r {
                    Some(r) => self.on_report(r),
                    None => sources_open = false,
                },
                c = ctl.recv() => match c {
                    Some((config, reply)) => {
                        self.prepared.seeds = config.backends.clone();
                        let next = self.compose();
                        let r = self.apply(config, next, false);
                        let _ = reply.send(r);
                    }
                    None => return,
                },
            }
        }
    }

    fn compose(&self) -> Vec<Member> {
        let sources: Vec<(Source, Option<&[BackendSpec]>)> = self
            .last_good
            .iter()
            .map(|(s, set)| (*s, set.as_deref()))
            .collect();
        self.prepared.compose(&sources)
    }

    fn on_report(&mut self, r: Report) {
        let verdict = decide::judge(r.answer);
        let metrics = &self.handle.shared.metrics;
        {
            let mut board = self.handle.board();
            let Some(s) = board.sources.iter_mut().find(|s| s.source == r.source) else {
                return;
            };
            s.starting = false;
            match &verdict {
                Verdict::Apply(set) => {
                    if s.fault.is_some() {
                        info!(source = %r.source, "discovery answers again");
                    }
                    s.fault = None;
                    s.last_success = Some((unix_now(), Instant::now()));
                    s.backends = set.iter().map(|b| b.to_string()).collect();
                    if r.via.is_some() {
                        s.via = r.via.clone();
                    }
                    if r.api.is_some() {
                        s.api = r.api;
                    }
                    metrics.discovery_success(r.source.as_str(), s.last_success.map_or(0, |t| t.0));
                }
                Verdict::Keep(f) => {
                    let text = f.to_string();
                    if s.fault.as_deref() != Some(text.as_str()) {
                        warn!(source = %r.source, "discovery answer not applied, keeping the last good set: {text}");
                    }
                    s.fault = Some(text.clone());
                    s.last_fault = Some((text, Instant::now()));
                    metrics.discovery_fault(r.source.as_str(), f.reason());
                }
            }
        }
        if let Verdict::Apply(set) = verdict {
            if let Some(slot) = self.last_good.iter_mut().find(|(s, _)| *s == r.source) {
                slot.1 = Some(set);
            }
            let next = self.compose();
            if !decide::same(&next, &self.current) {
                let config = self.handle.shared.config();
                if let Err(e) = self.apply(config, next, true) {
                    warn!("discovered set not applied: {e}");
                }
            }
        }
    }

    /// Applies `next` (with `config`'s settings) like a reload, records origins and the
    /// change, and caches the set when it was discovered.
    fn apply(
        &mut self,
        mut config: LbConfig,
        next: Vec<Member>,
        discovered: bool,
    ) -> Result<Reloaded, LbError> {
        config.backends = next.iter().map(|m| m.spec.clone()).collect();
        let r = if discovered {
            self.handle.shared.swap(config)
        } else {
            self.handle.reload(config)
        }?;
        let changed = !r.added.is_empty() || !r.removed.is_empty();
        {
            let mut b = self.handle.board();
            for m in &next {
                b.origins.insert(m.spec.to_string(), m.origins.clone());
            }
            if changed {
                b.touch();
            }
        }
        if changed {
            info!(added = ?r.added, removed = ?r.removed, kept = r.kept.len(), "backend set changed by discovery");
            self.handle.shared.metrics.discovery_set_changes.inc();
        }
        let from_sources = self.last_good.iter().any(|(_, s)| s.is_some());
        if from_sources && (changed || !decide::same(&next, &self.current)) {
            self.write_cache(&next);
        }
        self.current = next;
        Ok(r)
    }

    /// Writes off the runtime; a write overtaken by a newer one is skipped, so the file
    /// always ends with the newest set.
    fn write_cache(&mut self, set: &[Member]) {
        let path = self.prepared.cache_path.clone();
        let specs: Vec<BackendSpec> = set.iter().map(|m| m.spec.clone()).collect();
        let handle = self.handle.clone();
        self.writes += 1;
        let (seq, latest) = (self.writes, self.latest_write.clone());
        latest.store(seq, std::sync::atomic::Ordering::SeqCst);
        let lock = self.write_lock.clone();
        tokio::task::spawn_blocking(move || {
            let _one_at_a_time = lock.lock().unwrap_or_else(|e| e.into_inner());
            if latest.load(std::sync::atomic::Ordering::SeqCst) != seq {
                return;
            }
            let r = cache::write(&path, &specs, unix_now());
            let mut b = handle.board();
            match r {
                Ok(()) => {
                    b.cache_state = "written";
                    b.cache_error = None;
                }
                Err(e) => {
                    warn!("cannot cache the backend set: {e}");
                    b.cache_state = "error";
                    b.cache_error = Some(e.to_string());
                }
            }
        });
    }
}
