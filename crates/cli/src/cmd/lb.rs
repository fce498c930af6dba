//! `cpe lb`: the L4 load balancer, from a definition file (`-f endpoint.yaml`, reloaded on
//! SIGHUP) or ad hoc from flags (`--listen ... --backend ... --backend ...`). SIGTERM or
//! Ctrl-C: stop accepting, drain, exit 0. All the work is in `cpe-lb`; this module turns
//! arguments and signals into calls.

use anyhow::Context;
use cpe_config::{HealthCheck, Protocol, Unauthorized};
use cpe_lb::{BackendSpec, Lb, LbConfig, LbHandle};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  cpe lb -f endpoint.yaml\n  cpe lb --listen 0.0.0.0:6443 --backend 10.0.0.11:6443 --backend 10.0.0.12:6443 --backend 10.0.0.13:6443\n\nSIGHUP reloads the file (an invalid file is reported and the old one kept); SIGTERM stops accepting, drains and exits."
)]
pub struct Args {
    /// Endpoint definition (external-lb mode); reloaded on SIGHUP.
    #[arg(short = 'f', long = "file", value_name = "FILE", conflicts_with_all = ["listen", "backend"])]
    file: Option<PathBuf>,
    /// Address to accept clients on (without -f).
    #[arg(long, value_name = "ADDR:PORT", requires = "backend")]
    listen: Option<SocketAddr>,
    /// A backend API server, repeatable (without -f). An IP or a DNS name.
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_backend, requires = "listen")]
    backend: Vec<BackendSpec>,
    /// Admin listener for /metrics and /status (default 127.0.0.1:9630; `off` for none).
    #[arg(long, value_name = "ADDR:PORT|off")]
    admin: Option<String>,
    /// Health check protocol.
    #[arg(long, value_enum)]
    health_check: Option<HealthProto>,
    /// Health check path (http/https).
    #[arg(long, value_name = "PATH")]
    health_path: Option<String>,
    /// Time between checks of one backend, e.g. 250ms.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    health_interval: Option<Duration>,
    /// Time a check may take, e.g. 500ms.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    health_timeout: Option<Duration>,
    /// Consecutive passes before a backend is up again.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100))]
    rise: Option<u32>,
    /// Consecutive failures before a backend is down.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100))]
    fall: Option<u32>,
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
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    max_connections: Option<u64>,
    /// How long connections may continue after SIGTERM or after their backend is removed.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    drain_timeout: Option<Duration>,
    /// Connect timeout to a backend before trying another.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    connect_timeout: Option<Duration>,
    /// Threads accepting and forwarding connections, each with its own listening socket
    /// (SO_REUSEPORT) [default: one per CPU].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1024))]
    workers: Option<u64>,
    /// Copy bulk transfers through user space instead of splice(2) (for comparisons).
    #[arg(long)]
    no_splice: bool,
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

fn parse_backend(s: &str) -> Result<BackendSpec, String> {
    BackendSpec::parse(s)
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    cpe_config::duration::parse(s)
}

fn load(path: &Path) -> anyhow::Result<LbConfig> {
    let loaded = cpe_config::load_file(path).map_err(|e| {
        let problems = e.problems();
        if problems.is_empty() {
            anyhow::anyhow!("{e}")
        } else {
            anyhow::anyhow!(
                "{}: invalid definition:\n{}",
                path.display(),
                problems
                    .iter()
                    .map(|p| format!("  {p}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        }
    })?;
    for w in &loaded.warnings {
        tracing::warn!("{}: {w}", path.display());
    }
    LbConfig::from_endpoint(&loaded.endpoint)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

impl Args {
    /// Flags override the file's values (the file keeps the backends).
    fn config(&self) -> anyhow::Result<LbConfig> {
        let mut c = match (&self.file, self.listen) {
            (Some(f), _) => load(f)?,
            (None, Some(listen)) => LbConfig::new(listen, self.backend.clone()),
            (None, None) => anyhow::bail!(
                "give a definition (-f endpoint.yaml) or --listen ADDR:PORT with --backend HOST:PORT"
            ),
        };
        self.apply_flags(&mut c)?;
        Ok(c)
    }

    fn apply_flags(&self, c: &mut LbConfig) -> anyhow::Result<()> {
        if let Some(a) = &self.admin {
            c.admin = match a.as_str() {
                "off" | "none" => None,
                a => Some(a.parse().map_err(|_| {
                    anyhow::anyhow!("--admin {a}: not ADDR:PORT (e.g. 127.0.0.1:9630) or `off`")
                })?),
            };
        }
        let h: &mut HealthCheck = &mut c.health;
        if let Some(p) = self.health_check {
            h.protocol = match p {
                HealthProto::Https => Protocol::Https,
                HealthProto::Http => Protocol::Http,
                HealthProto::Tcp => Protocol::Tcp,
            };
        }
        if let Some(p) = &self.health_path {
            anyhow::ensure!(p.starts_with('/'), "--health-path {p}: must start with /");
            h.path = p.clone();
        }
        if let Some(d) = self.health_interval {
            anyhow::ensure!(!d.is_zero(), "--health-interval: must be more than 0");
            h.interval = d;
        }
        if let Some(d) = self.health_timeout {
            anyhow::ensure!(!d.is_zero(), "--health-timeout: must be more than 0");
            h.timeout = d;
        }
        if let Some(r) = self.rise {
            h.rise = r;
        }
        if let Some(f) = self.fall {
            h.fall = f;
        }
        if self.ca_file.is_some() {
            h.ca_file = self.ca_file.clone();
        }
        if self.cert_file.is_some() {
            h.cert_file = self.cert_file.clone();
            h.key_file = self.key_file.clone();
        }
        if let Some(u) = self.unauthorized {
            h.unauthorized = match u {
                UnauthorizedArg::Alive => Unauthorized::Alive,
                UnauthorizedArg::Down => Unauthorized::Down,
            };
        }
        if let Some(m) = self.max_connections {
            c.max_connections = m as usize;
        }
        if let Some(w) = self.workers {
            c.workers = w as usize;
        }
        if let Some(d) = self.drain_timeout {
            c.drain_timeout = d;
        }
        if let Some(d) = self.connect_timeout {
            anyhow::ensure!(!d.is_zero(), "--connect-timeout: must be more than 0");
            c.connect_timeout = d;
        }
        Ok(())
    }
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = args.config()?;
    if args.no_splice {
        cpe_lb::forward::set_splice(false);
    }
    cpe_lb::raise_fd_limit(config.max_connections);
    // Signals are installed before binding and the first round of checks: a SIGTERM or
    // SIGHUP that arrives while starting is queued and handled, never the default action
    // (which would kill the process without draining).
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let lb = Lb::bind(config).await.context("cpe lb cannot start")?;
    let handle = lb.handle();
    let reloader = tokio::spawn(async move {
        while hup.recv().await.is_some() {
            reload(&args, &handle);
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

fn reload(args: &Args, handle: &LbHandle) {
    let Some(file) = &args.file else {
        tracing::warn!("SIGHUP: nothing to reload (started without -f)");
        return;
    };
    match args.config() {
        Err(e) => {
            let msg = format!("{e:#}");
            tracing::error!(file = %file.display(), "reload failed, still running on the previous definition: {msg}");
            handle.reload_failed(&msg);
        }
        Ok(c) => match handle.reload(c) {
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
