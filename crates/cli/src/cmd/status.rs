//! `cpe status`: asks a running `cpe lb` or `cpe vip` for its `/status` and prints it as
//! a table (or the JSON as is). The table layouts belong to the crates that own the
//! status (`cpe_lb::status`, `cpe_vip::status`); this module only fetches and dispatches.
//!
//! It also sends the operator's actions: `--maintenance` to a `cpe lb`, `--resign` and
//! `--prefer` to the `cpe vip` holder (its admin `POST /resign`, `/prefer`; the agent
//! decides, this only asks, prints the answer and waits a few seconds for the move).

use anyhow::Context;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Admin listener of the running agent. Default: try `cpe lb`'s (127.0.0.1:9630) and
    /// `cpe vip`'s (127.0.0.1:9631) and show every one that answers.
    #[arg(long, value_name = "ADDR:PORT")]
    admin: Vec<SocketAddr>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
    output: Output,
    /// Put a `cpe lb` backend in maintenance (no new connections, checks ignored; its
    /// connections continue) or take it out: `--maintenance 10.0.0.11:6443=on|off`.
    /// Talks to `--admin` (default 127.0.0.1:9630).
    #[arg(long, value_name = "BACKEND=on|off")]
    maintenance: Option<String>,
    /// On the `cpe vip` holder: hand the VIP over to the healthiest candidate (one that is
    /// healthy and campaigning), then stay out of the election for --hold-off. Talks to
    /// `--admin` (default 127.0.0.1:9631).
    #[arg(long, conflicts_with_all = ["maintenance", "prefer"])]
    resign: bool,
    /// With --resign: how long this machine stays out of the election afterwards.
    #[arg(long, value_name = "DURATION", requires = "resign", value_parser = cpe_config::duration::parse)]
    hold_off: Option<Duration>,
    /// On the `cpe vip` holder: hand the VIP over to NODE as soon as NODE is healthy and
    /// campaigning. Talks to `--admin` (default 127.0.0.1:9631).
    #[arg(long, value_name = "NODE", conflicts_with = "maintenance")]
    prefer: Option<String>,
    /// File holding the agent's admin token, sent as `Authorization: Bearer` with
    /// --maintenance, --resign and --prefer (the agent's adminTokenFile /
    /// --admin-token-file; required when its admin listener is not on loopback).
    #[arg(long, value_name = "FILE")]
    admin_token_file: Option<std::path::PathBuf>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq)]
enum Output {
    Table,
    Json,
}

/// `--resign` / `--prefer`: ask the holder, print its answer, then wait up to 5 s for the
/// VIP to move and say where it went.
async fn handover(args: &Args) -> anyhow::Result<ExitCode> {
    let admin = match args.admin.as_slice() {
        [] => cpe_config::DEFAULT_VIP_ADMIN.parse()?,
        [one] => *one,
        _ => {
            eprintln!("error: --resign and --prefer take one --admin (the holder's cpe vip)");
            return Ok(ExitCode::from(2));
        }
    };
    let token = args
        .admin_token_file
        .as_deref()
        .map(cpe_admin::Token::read)
        .transpose()?;
    let (path, body) = match &args.prefer {
        Some(node) => ("/prefer", node.clone()),
        None => (
            "/resign",
            format!(
                "{}ms",
                args.hold_off
                    .unwrap_or(cpe_vip::DEFAULT_HOLD_OFF)
                    .as_millis()
            ),
        ),
    };
    let timeout = Duration::from_secs(3);
    match cpe_admin::post_with_token(admin, path, &body, token.as_ref(), timeout).await {
        Ok(answer) => print!("{answer}"),
        Err(cpe_admin::ClientError::Status {
            status: 409, body, ..
        }) => {
            eprintln!("error: {}", body.trim());
            return Ok(ExitCode::from(1));
        }
        Err(e) => return Err(e.into()),
    }
    let t0 = std::time::Instant::now();
    while t0.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let Ok(body) = cpe_admin::get(admin, "/status", timeout).await else {
            continue;
        };
        let v: serde_json::Value = serde_json::from_str(&body)?;
        if v.get("role").and_then(|r| r.as_str()) != Some("holder") {
            let holder = v
                .get("holder")
                .and_then(|h| h.as_str())
                .unwrap_or("nobody yet");
            println!(
                "handed over after {:.2} s: etcd names {holder} as the holder",
                t0.elapsed().as_secs_f64()
            );
            return Ok(ExitCode::SUCCESS);
        }
    }
    println!("still holding after 5 s: the handover waits (see `cpe status`, `handover`)");
    Ok(ExitCode::SUCCESS)
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.resign || args.prefer.is_some() {
        return handover(&args).await;
    }
    if let Some(m) = &args.maintenance {
        let Some((backend, on)) = m
            .rsplit_once('=')
            .filter(|(b, v)| !b.is_empty() && (*v == "on" || *v == "off"))
        else {
            eprintln!(
                "error: --maintenance {m}: write BACKEND=on or BACKEND=off, e.g. 10.0.0.11:6443=on"
            );
            return Ok(ExitCode::from(2));
        };
        let admin = match args.admin.as_slice() {
            [] => cpe_config::DEFAULT_LB_ADMIN.parse()?,
            [one] => *one,
            _ => {
                eprintln!("error: --maintenance takes one --admin (the cpe lb to change)");
                return Ok(ExitCode::from(2));
            }
        };
        let token = args
            .admin_token_file
            .as_deref()
            .map(cpe_admin::Token::read)
            .transpose()?;
        let body = cpe_admin::post_with_token(
            admin,
            &format!("/maintenance/{backend}"),
            on,
            token.as_ref(),
            Duration::from_secs(3),
        )
        .await?;
        print!("{body}");
        return Ok(ExitCode::SUCCESS);
    }
    let explicit = !args.admin.is_empty();
    let admins = if explicit {
        args.admin.clone()
    } else {
        vec![
            cpe_config::DEFAULT_LB_ADMIN.parse()?,
            cpe_config::DEFAULT_VIP_ADMIN.parse()?,
        ]
    };
    let mut shown = 0;
    let mut errors = Vec::new();
    for admin in admins {
        match cpe_admin::get(admin, "/status", Duration::from_secs(3)).await {
            Ok(body) => {
                shown += 1;
                let v: serde_json::Value = serde_json::from_str(&body)
                    .with_context(|| format!("{admin}/status did not answer JSON"))?;
                if args.output == Output::Json {
                    println!("{}", serde_json::to_string_pretty(&v)?);
                    continue;
                }
                match v.get("kind").and_then(|k| k.as_str()) {
                    Some("lb") => print!("{}", cpe_lb::status::table(&v)),
                    Some("vip") => print!("{}", cpe_vip::status::table(&v)),
                    other => anyhow::bail!(
                        "{admin}/status: unknown kind {other:?}: is this a cpe admin listener?"
                    ),
                }
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    if shown == 0 {
        for e in &errors {
            eprintln!("error: {e}");
        }
        if !explicit {
            eprintln!("hint: give the agent's admin listener with --admin ADDR:PORT");
        }
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
