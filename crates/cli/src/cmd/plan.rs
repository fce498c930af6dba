//! `cpe plan`: validates an endpoint definition (a file, or Konvoy-style flags) and
//! explains it: mode, endpoint, replicas, failures tolerated, quorum, spares, warnings.
//! Every problem is printed at once, as `file:line:column: error: field = value: rule`
//! with a hint. Exit 0 valid (warnings allowed), 1 invalid, 2 usage error.
//!
//! The checking is `cpe-config`'s; this module only gathers the source and prints. The
//! [`Source`] arguments are shared with `cpe render`.

use cpe_config::{Checked, Endpoint, KonvoyFlags, Mode, Problem, Severity};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// Where the definition comes from: a file, or Konvoy-style flags (not both).
#[derive(clap::Args, Debug, Clone)]
#[group(skip)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["file", "control_plane_endpoint_host"])))]
pub struct Source {
    /// The endpoint definition file (see examples/ and docs/definition.md). Required
    /// unless --control-plane-endpoint-host is given.
    #[arg(short = 'f', long = "file", value_name = "FILE",
          conflicts_with_all = ["control_plane_endpoint_host", "control_plane_endpoint_port", "control_plane_replicas", "virtual_ip_interface", "machine", "cluster"])]
    pub file: Option<PathBuf>,

    /// Without -f: the endpoint host (load balancer address or DNS name, the virtual IP,
    /// or the single machine's address). Required without -f.
    #[arg(
        long,
        value_name = "HOST",
        help_heading = "Konvoy-style flags (instead of -f)"
    )]
    pub control_plane_endpoint_host: Option<String>,

    /// Without -f: the endpoint port, also each machine's API server port.
    #[arg(
        long,
        value_name = "PORT",
        default_value_t = 6443,
        allow_hyphen_values = true,
        help_heading = "Konvoy-style flags (instead of -f)"
    )]
    pub control_plane_endpoint_port: i64,

    /// Without -f: the number of control-plane machines (1 is single-node: not for production).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 3,
        allow_hyphen_values = true,
        help_heading = "Konvoy-style flags (instead of -f)"
    )]
    pub control_plane_replicas: i64,

    /// Without -f: the interface for the built-in virtual IP; non-empty selects virtual-ip
    /// mode. [default: none, i.e. external-lb, or single-node with 1 replica]
    #[arg(
        long,
        value_name = "IFACE",
        help_heading = "Konvoy-style flags (instead of -f)"
    )]
    pub virtual_ip_interface: Option<String>,

    /// Without -f: a control-plane machine as NAME=ADDRESS (e.g. cp1=10.0.0.11/24);
    /// repeat once per machine. [default: none]
    #[arg(
        long,
        value_name = "NAME=ADDRESS",
        help_heading = "Konvoy-style flags (instead of -f)"
    )]
    pub machine: Vec<String>,

    /// Without -f: the cluster name.
    #[arg(
        long,
        value_name = "NAME",
        default_value = "kubernetes",
        help_heading = "Konvoy-style flags (instead of -f)"
    )]
    pub cluster: String,
}

impl Source {
    /// The name problems are reported against: the file, or `flags`.
    pub fn label(&self) -> String {
        match &self.file {
            Some(f) => f.display().to_string(),
            None => "flags".to_string(),
        }
    }

    /// Reads and checks the definition. Never fails: unreadable files become problems. A
    /// pipe or a device is read too (`cpe plan -f /dev/stdin`), never past the 1 MiB limit.
    pub fn check(&self) -> Checked {
        match &self.file {
            Some(path) => match cpe_config::read_file_or_stream(path) {
                Ok(text) => cpe_config::check_str(&text),
                Err(e) => Checked {
                    problems: e.problems(),
                    ..Default::default()
                },
            },
            None => KonvoyFlags {
                cluster: Some(self.cluster.clone()),
                host: self.control_plane_endpoint_host.clone(),
                port: self.control_plane_endpoint_port,
                replicas: self.control_plane_replicas,
                interface: self.virtual_ip_interface.clone(),
                machines: self.machine.clone(),
            }
            .check(),
        }
    }
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// A summary for people.
    Text,
    /// One JSON document: valid, errors, warnings, problems, summary.
    Json,
}

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  cpe plan -f endpoint.yaml
  cpe plan --control-plane-endpoint-host 10.0.0.10 --virtual-ip-interface eth0 \\
           --machine cp1=10.0.0.11/24 --machine cp2=10.0.0.12/24 --machine cp3=10.0.0.13/24
  cpe plan -f endpoint.yaml --output json

Exit status: 0 valid (warnings allowed), 1 invalid or unreadable definition, 2 usage error.")]
pub struct Args {
    #[command(flatten)]
    pub source: Source,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let checked = args.source.check();
    let label = args.source.label();
    let text = match args.output {
        Output::Text => text_report(&label, &checked),
        Output::Json => serde_json::to_string_pretty(&json_report(&label, &checked))? + "\n",
    };
    // A closed pipe (`cpe plan | head`) is not an error worth a message.
    let _ = std::io::stdout().write_all(text.as_bytes());
    Ok(if checked.errors() == 0 && checked.endpoint.is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

/// `N errors, M warnings`.
pub fn counts(c: &Checked) -> String {
    format!(
        "{}, {}",
        plural(c.errors(), "error"),
        plural(c.warnings(), "warning")
    )
}

/// Every problem, rendered against `label`, one block each.
pub fn problems_text(label: &str, problems: &[Problem]) -> String {
    // Problems of flags carry the flag's name; a `flags:` prefix would add nothing.
    let file = (label != "flags").then_some(label);
    problems.iter().map(|p| p.render(file) + "\n").collect()
}

fn text_report(label: &str, c: &Checked) -> String {
    let mut s = String::new();
    match &c.endpoint {
        Some(e) => {
            s.push_str(&format!("{label}: valid\n"));
            s.push_str(&summary_text(e, c.mode_inferred));
        }
        None => s.push_str(&format!("{label}: invalid\n")),
    }
    if !c.problems.is_empty() {
        s.push('\n');
        s.push_str(&problems_text(label, &c.problems));
    }
    s.push('\n');
    s.push_str(&counts(c));
    s.push('\n');
    s
}

fn summary_text(e: &Endpoint, inferred: bool) -> String {
    let mut s = String::new();
    let mode_note = match e.mode {
        Mode::ExternalLb => "an L4 load balancer in front of every machine that answers",
        Mode::VirtualIp => "one healthy machine holds the virtual IP; not a load balancer",
        Mode::SingleNode => "the one machine is the endpoint; not for production",
    };
    s.push_str(&format!("  mode       {}: {mode_note}\n", e.mode));
    if inferred {
        let why = match e.mode {
            Mode::VirtualIp => "a virtual IP interface is given",
            Mode::SingleNode => "1 replica and no virtual IP interface",
            Mode::ExternalLb => "no virtual IP interface and more than 1 replica",
        };
        s.push_str(&format!("             (inferred: {why})\n"));
    }
    s.push_str(&format!("  endpoint   {}\n", e.url_authority()));
    s.push_str(&format!(
        "  replicas   {}: tolerates {}, quorum {}, {}\n",
        e.replicas,
        plural(e.failures_tolerated() as usize, "failure"),
        e.quorum(),
        plural(e.spares(), "spare")
    ));
    if e.machines.is_empty() {
        // Virtual-ip mode only (the rules require a list elsewhere).
        s.push_str("  machines   none listed: any machine may run `cpe vip` (its own address: the one on the VIP interface in the VIP's subnet)\n");
    } else {
        s.push_str("  machines\n");
    }
    let width = e.machines.iter().map(|m| m.name.len()).max().unwrap_or(0);
    for (i, m) in e.machines.iter().enumerate() {
        let addr = match m.prefix_len {
            Some(l) => format!("{}/{l}", m.address),
            None => m.address.to_string(),
        };
        let spare = if i >= e.replicas as usize {
            "  (spare)"
        } else {
            ""
        };
        s.push_str(&format!(
            "    {:width$}  {addr}  API server :{}{spare}\n",
            m.name, m.api_server_port
        ));
    }
    let h = &e.health;
    let protocol = match h.protocol {
        cpe_config::Protocol::Https => "https",
        cpe_config::Protocol::Http => "http",
        cpe_config::Protocol::Tcp => "tcp",
    };
    let path = if h.protocol == cpe_config::Protocol::Tcp {
        String::new()
    } else {
        format!(" {}", h.path)
    };
    s.push_str(&format!(
        "  health     {protocol}{path} every {}, timeout {}, up after {} passes, down after {} failures\n",
        cpe_config::duration::format(h.interval),
        cpe_config::duration::format(h.timeout),
        h.rise,
        h.fall
    ));
    if let Some(v) = &e.vip {
        s.push_str(&format!(
            "  vip        {}/{} on {}, lease {}, election {}\n",
            v.address,
            v.prefix_len,
            v.interface,
            cpe_config::duration::format(v.lease_ttl),
            v.election
        ));
    }
    if let Some(etcd) = &e.etcd {
        if !etcd.endpoints.is_empty() {
            s.push_str(&format!("  etcd       {}\n", etcd.endpoints.join(", ")));
        } else if e.mode == Mode::VirtualIp && e.machines.is_empty() {
            s.push_str("  etcd       this machine's own member (https://127.0.0.1:2379), then every member etcd lists\n");
        } else if e.mode == Mode::VirtualIp {
            s.push_str("  etcd       every machine's https://ADDRESS:2379, its own first, then every member etcd lists\n");
        }
    }
    if let Some(lb) = &e.load_balancer {
        s.push_str(&format!(
            "  lb         listen {}, admin {}\n",
            lb.listen, lb.admin
        ));
    }
    s
}

/// One problem as `-o json` prints it (`cpe plan`, and `cpe preflight`/`cpe check` for a
/// definition they cannot use).
pub(crate) fn problem_json(p: &cpe_config::Problem, file: &str) -> serde_json::Value {
    serde_json::json!({
        "severity": match p.severity { Severity::Error => "error", Severity::Warning => "warning" },
        "file": file,
        "line": p.pos.map(|p| p.line),
        "column": p.pos.map(|p| p.column),
        "field": p.field,
        "value": p.value,
        "rule": p.rule,
        "hint": p.hint,
    })
}

fn json_report(label: &str, c: &Checked) -> serde_json::Value {
    let problems: Vec<serde_json::Value> =
        c.problems.iter().map(|p| problem_json(p, label)).collect();
    let summary = c.endpoint.as_ref().map(|e| {
        serde_json::json!({
            "mode": e.mode,
            "modeInferred": c.mode_inferred,
            "endpoint": e.url_authority(),
            "host": e.host,
            "port": e.port,
            "replicas": e.replicas,
            "failuresTolerated": e.failures_tolerated(),
            "quorum": e.quorum(),
            "spares": e.spares(),
            "machines": e.machines.iter().map(|m| serde_json::json!({
                "name": m.name,
                "address": m.address,
                "prefixLength": m.prefix_len,
                "apiServerPort": m.api_server_port,
            })).collect::<Vec<_>>(),
            "warnings": c.problems.iter().filter(|p| p.severity == Severity::Warning).map(|p| p.rule.clone()).collect::<Vec<_>>(),
        })
    });
    serde_json::json!({
        "valid": c.endpoint.is_some() && c.errors() == 0,
        "source": label,
        "errors": c.errors(),
        "warnings": c.warnings(),
        "problems": problems,
        "summary": summary,
        "definition": c.endpoint,
    })
}
