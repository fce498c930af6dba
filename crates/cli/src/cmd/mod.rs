//! One module per subcommand. Each has an `Args` (clap) and a `run` that returns the exit
//! code; the shared plumbing here is logging and the async runtime. Loading and checking
//! a definition, and resolving flags over it, is cpe-config's (`load_file`, `VipFlags`,
//! `LbFlags`); `cpe preflight` and `cpe check` share their loading and printing through
//! `preflight::{load, print}`.

pub mod check;
pub mod demo;
pub mod generate;
pub mod inline;
pub mod lb;
pub mod plan;
pub mod preflight;
pub mod render;
pub mod status;
pub mod test_apiserver;
pub mod version;
pub mod vip;

use std::future::Future;
use std::process::ExitCode;

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum LogFormat {
    Text,
    Json,
}

pub fn init_logging(filter: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour codes only for a terminal: a journal or a log file gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Runs an async subcommand on a multi-threaded runtime.
pub fn block_on(fut: impl Future<Output = anyhow::Result<ExitCode>>) -> anyhow::Result<ExitCode> {
    run_on(tokio::runtime::Builder::new_multi_thread(), fut)
}

/// Runs an async subcommand on the calling thread alone: for `cpe lb`, whose own worker
/// threads carry the traffic, so the checks, the admin listener and the signals need
/// no thread pool of their own competing with them for the CPUs.
pub fn block_on_current_thread(
    fut: impl Future<Output = anyhow::Result<ExitCode>>,
) -> anyhow::Result<ExitCode> {
    run_on(tokio::runtime::Builder::new_current_thread(), fut)
}

/// rustls's ring provider is installed first so that no second provider can be picked by
/// accident.
fn run_on(
    mut builder: tokio::runtime::Builder,
    fut: impl Future<Output = anyhow::Result<ExitCode>>,
) -> anyhow::Result<ExitCode> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    builder
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?
        .block_on(fut)
}
