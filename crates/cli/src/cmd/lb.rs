//! `cpe lb`: the L4 load balancer, from a definition file (`-f endpoint.yaml`, reloaded on
//! SIGHUP) or ad hoc from flags (`--listen ... --backend ... --backend ...`). SIGTERM or
//! Ctrl-C: stop accepting, drain, exit 0. The flags and the file are checked and resolved
//! by cpe-config (one set of rules; problems name the flag or the file's line) into a
//! [`cpe_config::LbPlan`]; the work is in `cpe-lb`. This module maps clap's values onto
//! [`cpe_config::LbFlags`] and signals onto calls.

use anyhow::Context;
use cpe_config::{LbFlags, PlanError};
use cpe_lb::discovery::{self, decide::Origin};
use cpe_lb::{Lb, LbConfig, LbHandle};
use std::path::PathBuf;
use std::process::ExitCode;
use tokio::signal::unix::{signal, SignalKind};

#[derive(clap::Args, Debug, Clone)]
#[command(
    after_help = "Examples:\n  cpe lb -f endpoint.yaml\n  cpe lb --listen 0.0.0.0:6443 --backend 10.0.0.11:6443 --backend 10.0.0.12:6443 --backend 10.0.0.13:6443\n  cpe lb --listen 0.0.0.0:6443 --backend 10.0.0.11:6443 --discover kubernetes --kubeconfig /etc/cpe/lb.kubeconfig\n\nSIGHUP reloads the file (an invalid file is reported and the old one kept); SIGTERM stops accepting, drains and exits.\nWith --discover the backends follow the cluster (docs/discovery.md); the seeds and the cached set are used until a source answers."
)]
pub struct Args {
    /// Endpoint definition (external-lb mode); reloaded on SIGHUP.
    #[arg(short = 'f', long = "file", value_name = "FILE", conflicts_with_all = ["listen", "backend"])]
    file: Option<PathBuf>,
    /// Address to accept clients on (without -f).
    #[arg(long, value_name = "ADDR:PORT", requires = "backend")]
    listen: Option<String>,
    /// A backend API server, repeatable (without -f), each once. An IP or a DNS name.
    /// (Needs --listen, except with --node-local.)
    #[arg(long, value_name = "HOST:PORT")]
    backend: Vec<String>,
    /// The node-local load balancer: loopback only (127.0.0.1 and [::1], default port
    /// 7445), admin on 127.0.0.1:9632, one worker; with -f, the definition's nodeLocal
    /// section. See docs/node-local.md.
    #[arg(long)]
    node_local: bool,
    /// Admin listener for /metrics and /status (default 127.0.0.1:9630; `off` for none).
    #[arg(long, value_name = "ADDR:PORT|off")]
    admin: Option<String>,
    /// File holding the token `POST /maintenance/...` must carry (`Authorization: Bearer`;
    /// required when the admin listener is not loopback). Default: the definition's
    /// loadBalancer.adminTokenFile.
    #[arg(long, value_name = "FILE")]
    admin_token_file: Option<PathBuf>,
    /// A second listener with /metrics and the probes only (no /status, no actions), e.g.
    /// the node address for Prometheus while --admin stays on loopback. Default: the
    /// definition's loadBalancer.metrics, else none.
    #[arg(long, value_name = "ADDR:PORT|off")]
    metrics: Option<String>,
    /// Health check protocol.
    #[arg(long, value_enum)]
    health_check: Option<HealthProto>,
    /// Health check path (http/https).
    #[arg(long, value_name = "PATH")]
    health_path: Option<String>,
    /// Time between checks of one backend, e.g. 250ms (at least 10ms).
    #[arg(long, value_name = "DURATION")]
    health_interval: Option<String>,
    /// Time a check may take, e.g. 500ms.
    #[arg(long, value_name = "DURATION")]
    health_timeout: Option<String>,
    /// Consecutive passes before a backend is up again (1 to 1000).
    #[arg(long, allow_negative_numbers = true)]
    rise: Option<i64>,
    /// Consecutive failures before a backend is down (1 to 1000).
    #[arg(long, allow_negative_numbers = true)]
    fall: Option<i64>,
    /// CA to verify the API servers' certificates (none: not verified).
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// Client certificate for health checks (API servers with anonymous access off).
    #[arg(long, value_name = "FILE", requires = "key_file")]
    cert_file: Option<PathBuf>,
    /// Client key for health checks.
    #[arg(long, value_name = "FILE", requires = "cert_file")]
    key_file: Option<PathBuf>,
    /// What a 401/403 from the health path means.
    #[arg(long, value_enum)]
    unauthorized: Option<UnauthorizedArg>,
    /// Client connections at once; past it new ones are closed and counted.
    #[arg(long, allow_negative_numbers = true)]
    max_connections: Option<i64>,
    /// How long connections may continue after SIGTERM or after their backend is removed.
    #[arg(long, value_name = "DURATION")]
    drain_timeout: Option<String>,
    /// Connect timeout to a backend before trying another.
    #[arg(long, value_name = "DURATION")]
    connect_timeout: Option<String>,
    /// Threads accepting and forwarding connections, each with its own listening socket
    /// (SO_REUSEPORT) [default: one per CPU].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1024))]
    workers: Option<u64>,
    /// Copy bulk transfers through user space instead of splice(2) (for comparisons).
    #[arg(long)]
    no_splice: bool,
    #[command(flatten)]
    discovery: DiscoveryArgs,
}

/// Backend discovery (docs/discovery.md).
#[derive(clap::Args, Debug, Clone)]
pub struct DiscoveryArgs {
    /// Learn the backends at run time: `kubernetes` (the `kubernetes` EndpointSlices, or
    /// Endpoints on servers without v1 slices) and/or `etcd` (the member list).
    /// Repeatable. The seeds (--backend) and the cached set are used until a source answers.
    #[arg(long = "discover", value_name = "SOURCE", value_parser = ["kubernetes", "etcd"])]
    discover: Vec<String>,
    /// Kubeconfig of the `kubernetes` source (token or client certificate; the cluster CA
    /// is always verified) [default: $KUBECONFIG].
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// etcd client URL of the `etcd` source, repeatable or comma-separated.
    #[arg(long = "etcd", value_name = "URL")]
    etcd: Vec<String>,
    /// CA of the etcd members' certificates.
    #[arg(long, value_name = "FILE")]
    etcd_ca: Option<PathBuf>,
    /// Client certificate for etcd.
    #[arg(long, value_name = "FILE")]
    etcd_cert: Option<PathBuf>,
    /// Client key for etcd.
    #[arg(long, value_name = "FILE")]
    etcd_key: Option<PathBuf>,
    /// Where the last good backend set is cached (lb-PORT.json) [default: /var/lib/cpe].
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// `timeoutSeconds` of each watch; a watch silent past it (plus half of it and 1 s)
    /// counts as stalled (for tests).
    #[arg(long, value_name = "DURATION", hide = true, value_parser = cpe_config::duration::parse)]
    discovery_watch_timeout: Option<std::time::Duration>,
    /// Between two etcd member lists (for tests).
    #[arg(long, value_name = "DURATION", hide = true, value_parser = cpe_config::duration::parse)]
    discovery_etcd_interval: Option<std::time::Duration>,
}

impl DiscoveryArgs {
    fn flags(&self) -> cpe_config::DiscoveryFlags {
        cpe_config::DiscoveryFlags {
            discover: self.discover.clone(),
            kubeconfig: self.kubeconfig.clone(),
            kubeconfig_env: std::env::var("KUBECONFIG").ok(),
            etcd: self.etcd.clone(),
            etcd_ca: self.etcd_ca.clone(),
            etcd_cert: self.etcd_cert.clone(),
            etcd_key: self.etcd_key.clone(),
            cache_dir: self.cache_dir.clone(),
        }
    }

    fn timing(&self) -> discovery::Timing {
        let mut t = discovery::Timing::default();
        if let Some(w) = self.discovery_watch_timeout {
            t.watch_timeout = w;
        }
        if let Some(e) = self.discovery_etcd_interval {
            t.etcd_interval = e;
        }
        t
    }
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum HealthProto {
    Https,
    Http,
    Tcp,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum UnauthorizedArg {
    Alive,
    Down,
}

impl Args {
    /// The flags as typed, for cpe-config to check and lay over the definition.
    fn flags(&self) -> LbFlags {
        LbFlags {
            node_local: self.node_local,
            listen: self.listen.clone(),
            backends: self.backend.clone(),
            admin: self.admin.clone(),
            admin_token_file: self.admin_token_file.clone(),
            metrics: self.metrics.clone(),
            health_check: self.health_check.map(|p| {
                match p {
                    HealthProto::Https => "https",
                    HealthProto::Http => "http",
                    HealthProto::Tcp => "tcp",
                }
                .to_string()
            }),
            health_path: self.health_path.clone(),
            health_interval: self.health_interval.clone(),
            health_timeout: self.health_timeout.clone(),
            rise: self.rise,
            fall: self.fall,
            ca_file: self.ca_file.clone(),
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
            unauthorized: self.unauthorized.map(|u| {
                match u {
                    UnauthorizedArg::Alive => "alive",
                    UnauthorizedArg::Down => "down",
                }
                .to_string()
            }),
            max_connections: self.max_connections,
            drain_timeout: self.drain_timeout.clone(),
            connect_timeout: self.connect_timeout.clone(),
            discovery: self.discovery.flags(),
        }
    }

    /// The definition (if any) and the flags, resolved; the definition's warnings are
    /// logged (at start and on every reload).
    fn config(&self) -> Result<LbConfig, PlanError> {
        let resolved = self.flags().resolve(self.file.as_deref())?;
        let name = self.file.as_ref().map(|f| f.display().to_string());
        for w in &resolved.warnings {
            tracing::warn!("{}", w.render(name.as_deref()));
        }
        let mut c = LbConfig::from_plan(&resolved.plan);
        if let Some(w) = self.workers {
            c.workers = w as usize;
        }
        Ok(c)
    }
}

/// Every problem, one per line (the file's with their lines).
fn render(e: &PlanError, args: &Args) -> String {
    e.render(args.file.as_deref()).join("\n")
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = match args.config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}", render(&e, &args));
            // An invalid definition fails (1); a flag is a usage error (2).
            let code = match e {
                PlanError::Load(_) => 1,
                PlanError::Invalid(_) => 2,
            };
            return Ok(ExitCode::from(code));
        }
    };
    if args.no_splice {
        cpe_lb::forward::set_splice(false);
    }
    cpe_lb::raise_fd_limit(config.max_connections);
    let seed_origin = if args.file.is_some() {
        Origin::File
    } else {
        Origin::Seed
    };
    // Discovery: the kubeconfig read (a problem exits 1, like a bad file) and the cached
    // set joined to the seeds before binding.
    let prepared = match config.discovery.clone() {
        None => None,
        Some(d) => {
            match discovery::Prepared::new(&config, d, seed_origin, args.discovery.timing()) {
                Ok(p) => Some(p),
                Err(e) => {
                    eprintln!("{e}");
                    return Ok(ExitCode::from(1));
                }
            }
        }
    };
    let mut start = config.clone();
    if let Some(p) = &prepared {
        start.backends = p.start_set();
    }
    // Signals are installed before binding and the first round of checks: a SIGTERM or
    // SIGHUP that arrives while starting is queued and handled, never the default action
    // (which would kill the process without draining).
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let lb = Lb::bind(start).await.context("cpe lb cannot start")?;
    let handle = lb.handle();
    handle.set_seed_origin(seed_origin);
    let discovery = prepared.map(|p| p.start(handle.clone()));
    let reloader = tokio::spawn(async move {
        while hup.recv().await.is_some() {
            // The file is read off the runtime that runs the checks and the signals: a
            // slow disk must not stall them (FIFOs and devices are refused unopened).
            let a = args.clone();
            match tokio::task::spawn_blocking(move || a.config()).await {
                Ok(result) => reload(&args, &handle, discovery.as_ref(), result).await,
                Err(e) => tracing::error!("reload failed: {e}"),
            }
        }
    });
    lb.run(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: stopping"),
            _ = tokio::signal::ctrl_c() => tracing::info!("interrupted: stopping"),
        }
    })
    .await?;
    reloader.abort();
    Ok(ExitCode::SUCCESS)
}

async fn reload(
    args: &Args,
    handle: &LbHandle,
    discovery: Option<&discovery::Discovery>,
    result: Result<LbConfig, PlanError>,
) {
    let Some(file) = &args.file else {
        tracing::warn!("SIGHUP: nothing to reload (started without -f)");
        return;
    };
    match result {
        Err(e) => {
            let msg = render(&e, args);
            tracing::error!(file = %file.display(), "reload failed, still running on the previous definition: {msg}");
            handle.reload_failed(&msg);
        }
        // With discovery the file's machines are the new seeds; the discovered set stays.
        Ok(c) => match match discovery {
            Some(d) => d.reload(c).await,
            None => handle.reload(c),
        } {
            Ok(r) => {
                tracing::info!(
                    file = %file.display(),
                    added = ?r.added,
                    removed = ?r.removed,
                    kept = r.kept.len(),
                    "reloaded"
                );
                if !r.needs_restart.is_empty() {
                    tracing::warn!(settings = ?r.needs_restart, "changed settings that take effect only after a restart");
                }
            }
            Err(e) => tracing::error!(
                file = %file.display(),
                "reload failed, still running on the previous definition: {e}"
            ),
        },
    }
}
