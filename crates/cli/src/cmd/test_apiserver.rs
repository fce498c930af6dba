//! `cpe test-apiserver`: runs the stand-in API server (`cpe_apiserver`) as a process, for
//! tests, benchmarks and trying the load balancer or the VIP by hand.
//!
//! Signals: SIGTERM or SIGINT start the shutdown sequence (`/readyz` 503 for
//! `--shutdown-delay` while everything is still served, then the listener closes) and the
//! process exits 0 when it is over; SIGUSR1 flips readiness. It is not a Kubernetes API
//! server: it serves health, `/version`, a watch-like stream and the `kubernetes`
//! EndpointSlices/Endpoints (with fault switches for discovery tests), nothing else.

use anyhow::Context;
use cpe_apiserver::{Config, Pki, Server, TlsFiles, TlsSettings};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// Name reported in the `X-Cpe-Backend` header and by `/debug/whoami`.
    #[arg(long, default_value = "standin")]
    name: String,
    /// Directory with ca.crt, server.crt, server.key; generated there (CA, server and client
    /// certificates) when server.crt is missing. Stand-ins started together on one
    /// directory share one CA (give every one's address with --san).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["cert", "plain_http"])]
    tls_dir: Option<PathBuf>,
    /// Names for a generated server certificate (DNS names or IPs; repeatable). Default:
    /// localhost, 127.0.0.1 and the listen IP.
    #[arg(long, value_name = "NAME", requires = "tls_dir")]
    san: Vec<String>,
    /// Server certificate (PEM), with --key.
    #[arg(
        long,
        value_name = "FILE",
        requires = "key",
        conflicts_with = "plain_http"
    )]
    cert: Option<PathBuf>,
    /// Server private key (PEM), with --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,
    /// CA whose client certificates are verified (they stay optional). With --tls-dir the
    /// directory's ca.crt is used unless this is given.
    #[arg(long, value_name = "FILE", conflicts_with = "plain_http")]
    client_ca: Option<PathBuf>,
    /// How long /readyz answers 503 after SIGTERM while everything is still served.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = cpe_config::duration::parse)]
    shutdown_delay: Duration,
    /// How long open connections get to finish once the listener is closed.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = cpe_config::duration::parse)]
    shutdown_grace: Duration,
    /// Interval between two events of the watch stream.
    #[arg(long, value_name = "DURATION", default_value = "500ms", value_parser = cpe_config::duration::parse)]
    stream_interval: Duration,
    /// Serve plain HTTP (HTTP/1.1 and h2c) instead of TLS.
    #[arg(long)]
    plain_http: bool,
    /// Only make sure --tls-dir holds a PKI (generated when missing), then exit.
    #[arg(long, requires = "tls_dir")]
    pki_only: bool,
    /// Start with /readyz answering 503 (SIGUSR1 or `POST /debug/ready true` makes it ready).
    #[arg(long)]
    not_ready: bool,
    /// An address of the `kubernetes` EndpointSlices/Endpoints, repeatable (default: its
    /// own). `POST /debug/endpoints ADDR:PORT,...` changes them at run time,
    /// `POST /debug/discovery-fault none|unreachable|forbidden|empty|garbage|stall` sets a fault.
    #[arg(long = "endpoint", value_name = "ADDR:PORT")]
    endpoints: Vec<SocketAddr>,
    /// Answer 404 for discovery.k8s.io/v1 EndpointSlices, as Kubernetes 1.20 does.
    #[arg(long)]
    no_v1_slices: bool,
    /// Bearer token the EndpointSlice/Endpoints paths require (401 without it).
    #[arg(long, value_name = "TOKEN")]
    token: Option<String>,
}

fn tls_settings(args: &Args) -> anyhow::Result<Option<TlsSettings>> {
    let read = |p: &PathBuf, what: &str| {
        std::fs::read_to_string(p)
            .with_context(|| format!("cannot read the {what} {}", p.display()))
    };
    let client_ca = match &args.client_ca {
        Some(p) => Some(read(p, "client CA (--client-ca)")?),
        None => None,
    };
    if let Some(dir) = &args.tls_dir {
        if !TlsFiles::present(dir) {
            let mut names = args.san.clone();
            if names.is_empty() {
                names = vec!["localhost".into(), "127.0.0.1".into()];
                let ip = args.listen.ip();
                if !ip.is_unspecified() && !names.contains(&ip.to_string()) {
                    names.push(ip.to_string());
                }
            }
            let pki = Pki::generate(&names).context("--san")?;
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("--tls-dir {}", dir.display()))?;
            }
            // Atomic: stand-ins started together on one directory share one CA.
            if pki
                .write_new(dir)
                .with_context(|| format!("--tls-dir {}", dir.display()))?
            {
                tracing::info!(dir = %dir.display(), names = ?names, "generated a test PKI");
            }
        }
        let files =
            TlsFiles::from_dir(dir).with_context(|| format!("--tls-dir {}", dir.display()))?;
        return Ok(Some(TlsSettings {
            cert_pem: files.server.cert_pem,
            key_pem: files.server.key_pem,
            client_ca_pem: Some(client_ca.unwrap_or(files.ca_cert_pem)),
        }));
    }
    if let (Some(cert), Some(key)) = (&args.cert, &args.key) {
        return Ok(Some(TlsSettings {
            cert_pem: read(cert, "certificate (--cert)")?,
            key_pem: read(key, "key (--key)")?,
            client_ca_pem: client_ca,
        }));
    }
    if args.plain_http {
        return Ok(None);
    }
    anyhow::bail!(
        "no TLS material: give --tls-dir DIR (generated when empty), --cert FILE --key FILE, or --plain-http"
    )
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let tls = tls_settings(&args)?;
    if args.pki_only {
        return Ok(ExitCode::SUCCESS);
    }
    let plain = tls.is_none();
    let mut config = Config::new(args.listen, args.name.clone(), tls);
    config.shutdown_delay = args.shutdown_delay;
    config.shutdown_grace = args.shutdown_grace;
    config.stream_interval = args.stream_interval;
    config.start_ready = !args.not_ready;
    config.kube = cpe_apiserver::endpoints::Settings {
        endpoints: args.endpoints.clone(),
        no_v1_slices: args.no_v1_slices,
        token: args.token.clone(),
    };
    // Signal handlers before the listener: a SIGTERM that arrives right after the
    // "listening" line must run the shutdown sequence, not kill the process.
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut usr1 = signal(SignalKind::user_defined1()).context("cannot handle SIGUSR1")?;
    let server = Server::bind(config).await?;
    let handle = server.handle();
    tracing::info!(
        name = %args.name,
        addr = %server.local_addr(),
        scheme = if plain { "http" } else { "https" },
        ready = handle.is_ready(),
        "listening"
    );
    // A stable line on stdout for scripts and tests (logs go to stderr and may be coloured).
    println!(
        "listening on {}://{} name={}",
        if plain { "http" } else { "https" },
        server.local_addr(),
        args.name
    );
    let mut running = std::pin::pin!(server.run());
    loop {
        tokio::select! {
            r = &mut running => {
                r?;
                return Ok(ExitCode::SUCCESS);
            }
            _ = term.recv() => {
                tracing::info!("SIGTERM");
                handle.shutdown();
            }
            _ = int.recv() => {
                tracing::info!("SIGINT");
                handle.shutdown();
            }
            _ = usr1.recv() => {
                let ready = handle.toggle_ready();
                tracing::info!(ready, "SIGUSR1: readiness flipped");
            }
        }
    }
}
