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
    let endpoint = match load(&args.file, "preflight", args.output) {
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

/// With `--etcd-exists`, the etcd endpoints to check are the ones `cpe vip` would use
/// (cpe-config's [`cpe_config::plan::etcd_for`]: the definition's, else with stacked etcd
/// every machine's `https://ADDRESS:2379`, this machine's first), so the check is never
/// silently empty; when nothing says where etcd is, that is an error that says so.
/// Without it nothing changes (`--external-etcd` alone checks the endpoints written).
fn etcd_to_check(e: &mut cpe_config::Endpoint, node: &str, args: &Args) -> Result<(), String> {
    if !args.etcd_exists {
        return Ok(());
    }
    let machine = e.machine(node).cloned();
    let written = e.etcd.as_ref().is_some_and(|x| !x.endpoints.is_empty());
    // etcd elsewhere: the machines' own addresses would be a guess.
    let etcd = if args.external_etcd && !written {
        None
    } else {
        cpe_config::plan::etcd_for(e, machine.as_ref())
    };
    match etcd {
        Some(etcd) => {
            e.etcd = Some(etcd);
            Ok(())
        }
        None => Err("--etcd-exists: the definition lists no etcd.endpoints and etcd is external, so there is no etcd to check; add etcd.endpoints".to_string()),
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
/// exit code 1. With `-o json` the problems are also one JSON document on stdout
/// ([`invalid_json`]): a script reading stdout gets JSON whatever happened.
pub fn load(path: &Path, command: &str, output: Output) -> Result<cpe_config::Endpoint, ExitCode> {
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
            if let Output::Json = output {
                let doc = invalid_json(command, &name, &e.problems());
                println!("{}", serde_json::to_string_pretty(&doc).expect("JSON"));
            }
            Err(ExitCode::from(1))
        }
    }
}

/// The `-o json` document for a definition that cannot be used: no checks ran.
fn invalid_json(command: &str, file: &str, problems: &[cpe_config::Problem]) -> serde_json::Value {
    let problems: Vec<serde_json::Value> = problems
        .iter()
        .map(|p| {
            let mut v = super::plan::problem_json(p, file);
            v["message"] = p.render(Some(file)).into();
            v
        })
        .collect();
    serde_json::json!({
        "command": command,
        "valid": false,
        "file": file,
        "error": "the definition is invalid: no check ran",
        "problems": problems,
        "targets": [],
        "exitCode": 1,
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser)]
    struct T {
        #[command(flatten)]
        a: Args,
    }

    fn args(extra: &[&str]) -> Args {
        let base = ["cpe", "-f", "x.yaml", "--local", "--node", "cp2"];
        T::try_parse_from(base.iter().chain(extra)).unwrap().a
    }

    const EXT3: &str = "endpoint:\n  host: lb.example.com\ncontrolPlane:\n  replicas: 3\n  machines:\n    - {name: cp1, address: 10.0.0.11}\n    - {name: cp2, address: 10.0.0.12}\n    - {name: cp3, address: 10.0.0.13}\n";

    #[test]
    fn etcd_exists_checks_the_endpoints_cpe_vip_would_use() {
        let mut e = cpe_config::load_str(EXT3).unwrap().endpoint;
        assert!(e.etcd.is_none());
        etcd_to_check(&mut e, "cp2", &args(&["--etcd-exists"])).unwrap();
        let etcd = e.etcd.unwrap();
        assert_eq!(
            etcd.endpoints,
            vec![
                "https://10.0.0.12:2379",
                "https://10.0.0.11:2379",
                "https://10.0.0.13:2379"
            ]
        );
        assert!(etcd.ca_file.is_some());
    }

    #[test]
    fn etcd_exists_without_a_known_etcd_says_why() {
        let mut e = cpe_config::load_str(
            &EXT3.replace("  replicas: 3\n", "  replicas: 3\n  etcd: external\n"),
        )
        .unwrap()
        .endpoint;
        let err = etcd_to_check(&mut e, "cp2", &args(&["--etcd-exists"])).unwrap_err();
        assert!(err.contains("no etcd.endpoints"), "{err}");
        // Without --etcd-exists nothing is derived (as before).
        let mut e = cpe_config::load_str(EXT3).unwrap().endpoint;
        etcd_to_check(&mut e, "cp2", &args(&["--external-etcd"])).unwrap();
        assert!(e.etcd.is_none());
    }
}
