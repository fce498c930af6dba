//! `cpe preflight`: the checks before the cluster is created.
//!
//! With `--local --node NAME`, on a control-plane machine: its ports can be bound, the VIP
//! interface is there and up and the VIP unused on the link, the VIP agent would have its
//! capabilities, etcd answers (when it already exists). Without `--local`, from an admin
//! machine: every machine reachable with nothing on its API server port yet, and the
//! endpoint (load balancer or VIP) ready to be taken.
//!
//! Exit codes: 0 nothing failed (warnings allowed), 1 a check failed or the definition is
//! invalid, 2 a usage error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The endpoint definition.
    #[arg(short = 'f', long = "file", value_name = "PATH")]
    file: PathBuf,
    /// Check this machine (run it on each control-plane machine) instead of checking the
    /// machines from afar.
    #[arg(long, requires = "node")]
    local: bool,
    /// This machine's name in the definition (with --local).
    #[arg(long, value_name = "NAME", requires = "local")]
    node: Option<String>,
    /// etcd runs elsewhere: do not check ports 2379/2380 here; check the etcd endpoints.
    #[arg(long)]
    external_etcd: bool,
    /// The cluster already has etcd (a machine joining): check the definition's etcd
    /// endpoints even with stacked etcd.
    #[arg(long)]
    etcd_exists: bool,
    /// Timeout of each connect and request (e.g. 500ms, 2s).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = cpe_config::duration::parse)]
    timeout: Duration,
    /// How long the ARP/NDP probe for the VIP waits for an answer (--local, VIP mode).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = cpe_config::duration::parse)]
    dad_wait: Duration,
    /// A table per machine, or one JSON document (checks, summary, exit code).
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
    output: Output,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let endpoint = match load(&args.file) {
        Ok(e) => e,
        Err(code) => return Ok(code),
    };
    let report = if args.local {
        let node = args.node.clone().unwrap_or_default();
        let mut endpoint = endpoint;
        if let Err(e) = etcd_to_check(&mut endpoint, &node, &args) {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
        let opts = cpe_preflight::run::Local {
            node,
            external_etcd: args.external_etcd,
            etcd_exists: args.etcd_exists,
            timeout: args.timeout,
            dad_wait: args.dad_wait,
        };
        match cpe_preflight::run::local(&endpoint, &opts).await {
            Ok(r) => r,
            Err(e @ cpe_preflight::run::RunError::UnknownNode { .. }) => {
                eprintln!("error: {e}");
                return Ok(ExitCode::from(2));
            }
            Err(e) => return Err(e.into()),
        }
    } else {
        let opts = cpe_preflight::run::Remote {
            timeout: args.timeout,
        };
        cpe_preflight::run::remote(&endpoint, &opts).await
    };
    Ok(print(&report, args.output))
}

/// With `--etcd-exists` or external etcd, the etcd endpoints to check are the ones
/// `cpe vip` would use (cpe-config's [`cpe_config::plan::etcd_for`]: the definition's,
/// else every machine's `https://ADDRESS:2379`, this machine's first), so the check is
/// never silently empty. When nothing says where etcd is, that is an error that says so.
fn etcd_to_check(e: &mut cpe_config::Endpoint, node: &str, args: &Args) -> Result<(), String> {
    let external = args.external_etcd || e.etcd_topology == cpe_config::EtcdTopology::External;
    if !(external || args.etcd_exists) {
        return Ok(());
    }
    let machine = e.machine(node).cloned();
    let etcd = if args.external_etcd && e.etcd.as_ref().is_none_or(|x| x.endpoints.is_empty()) {
        None // etcd elsewhere: the machines' own addresses would be a guess
    } else {
        cpe_config::plan::etcd_for(e, machine.as_ref())
    };
    match etcd {
        Some(etcd) => {
            e.etcd = Some(etcd);
            Ok(())
        }
        // Only `controlPlane.etcd: external` and no flag: nothing was asked for by name.
        None if !(args.external_etcd || args.etcd_exists) => Ok(()),
        None => Err(format!(
            "{}: the definition lists no etcd.endpoints and etcd is external, so there is no etcd to check; add etcd.endpoints",
            if args.etcd_exists { "--etcd-exists" } else { "--external-etcd" }
        )),
    }
}

// What `cpe preflight` and `cpe check` share: loading the definition (problems printed,
// exit 1) and printing a report as a table or JSON with its exit code.

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum Output {
    Table,
    Json,
}

/// Loads the definition (its warnings printed), or prints every problem in it and returns
/// exit code 1.
pub fn load(path: &Path) -> Result<cpe_config::Endpoint, ExitCode> {
    match cpe_config::load_file(path) {
        Ok(l) => {
            // Warnings about the definition (single node, many replicas) go to stderr, so
            // that `-o json` stays one JSON document on stdout.
            let name = path.display().to_string();
            for p in &l.warnings {
                eprintln!("{}", p.render(Some(&name)));
            }
            Ok(l.endpoint)
        }
        Err(e) => {
            let name = path.display().to_string();
            for p in e.problems() {
                eprintln!("{}", p.render(Some(&name)));
            }
            Err(ExitCode::from(1))
        }
    }
}

pub fn print(report: &cpe_preflight::Report, output: Output) -> ExitCode {
    match output {
        Output::Table => print!("{}", report.to_table()),
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report.to_json()).expect("JSON")
        ),
    }
    ExitCode::from(report.exit_code())
}
