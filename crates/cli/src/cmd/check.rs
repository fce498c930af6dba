//! `cpe check`: once the cluster exists, does the endpoint work? `/readyz` through the
//! endpoint (load balancer or VIP) and on each machine directly, and the certificate each
//! one presents names the endpoint host (checked against the CA when one is given).
//!
//! Credentials: `--ca`, `--cert`, `--key`, else the definition's `healthCheck` files.
//! Exit codes: 0 nothing failed, 1 a check failed or the definition is invalid, 2 usage.

use super::preflight::{load, print, Output};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The endpoint definition.
    #[arg(short = 'f', long = "file", value_name = "PATH")]
    file: PathBuf,
    /// CA to verify the API servers' certificates (default: healthCheck.caFile).
    #[arg(long, value_name = "PATH")]
    ca: Option<PathBuf>,
    /// Client certificate for /readyz (default: healthCheck.certFile).
    #[arg(long, value_name = "PATH", requires = "key")]
    cert: Option<PathBuf>,
    /// Client key (default: healthCheck.keyFile).
    #[arg(long, value_name = "PATH", requires = "cert")]
    key: Option<PathBuf>,
    /// Timeout of each connect and request (e.g. 500ms, 2s).
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = cpe_config::duration::parse)]
    timeout: Duration,
    /// A table per machine, or one JSON document (checks, summary, exit code).
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
    output: Output,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let endpoint = match load(&args.file, "check", args.output) {
        Ok(e) => e,
        Err(code) => return Ok(code),
    };
    let hc = &endpoint.health;
    let (cert, key) = match (args.cert, args.key) {
        (Some(c), Some(k)) => (Some(c), Some(k)),
        _ => (hc.cert_file.clone(), hc.key_file.clone()),
    };
    let tls = cpe_preflight::probe::tls::TlsFiles {
        ca: args.ca.or_else(|| hc.ca_file.clone()),
        cert,
        key,
    };
    // Unusable files are a usage error, found before any check runs.
    for (flag, path) in [
        ("--ca", &tls.ca),
        ("--cert", &tls.cert),
        ("--key", &tls.key),
    ] {
        if let Some(p) = path {
            if let Err(e) = std::fs::metadata(p) {
                eprintln!("error: {flag} {}: {e}", p.display());
                return Ok(ExitCode::from(2));
            }
        }
    }
    if let Err(e) = cpe_preflight::probe::tls::client_config(&tls, true) {
        eprintln!("error: TLS files: {e}");
        return Ok(ExitCode::from(2));
    }
    let opts = cpe_preflight::run::CheckOpts {
        tls,
        timeout: args.timeout,
    };
    let report = cpe_preflight::run::check(&endpoint, &opts).await;
    Ok(print(&report, args.output))
}
