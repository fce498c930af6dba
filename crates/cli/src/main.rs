//! `cpe`: keeps a Kubernetes control plane's endpoint answering.
//!
//! This binary only parses arguments, sets up logging and a runtime, and maps results to
//! exit codes: 0 success, 1 a failure or an invalid definition, 2 a usage error (clap's
//! own code). Each subcommand lives in its own module under `cmd/` and calls into the
//! library crates; no decision logic lives here.

use clap::{CommandFactory, Parser, Subcommand};
use std::process::ExitCode;

mod cmd;

#[derive(Parser, Debug)]
#[command(
    name = "cpe",
    version,
    about = "Keeps a Kubernetes control plane's endpoint answering while machines fail, restart or are replaced",
    long_about = None,
    propagate_version = true
)]
struct Cli {
    /// Log filter (tracing syntax), e.g. `info`, `cpe_lb=debug`.
    #[arg(long, global = true, env = "CPE_LOG", default_value = "info")]
    log: String,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = cmd::LogFormat::Text)]
    log_format: cmd::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate an endpoint definition and explain it: mode, replicas, failures tolerated, quorum.
    Plan(cmd::plan::Args),
    /// Generate the artifacts that wire the endpoint into a cluster.
    Render(cmd::render::Args),
    /// Check the machines before the cluster is created.
    Preflight(cmd::preflight::Args),
    /// Check that the endpoint answers once the cluster exists.
    Check(cmd::check::Args),
    /// Run the L4 load balancer in front of the control-plane machines.
    Lb(Box<cmd::lb::Args>),
    /// Run the built-in virtual IP agent on a control-plane machine.
    Vip(Box<cmd::vip::Args>),
    /// Show what a running `cpe lb` or `cpe vip` is doing.
    Status(cmd::status::Args),
    /// A local three-node control plane with the endpoint in front and failures injected.
    Demo(cmd::demo::Args),
    /// A stand-in API server for tests and demos (TLS, /readyz, /version, watch; not Kubernetes).
    #[command(name = "test-apiserver")]
    TestApiserver(cmd::test_apiserver::Args),
    /// Print the version, git revision, build date, compiler and TLS provider.
    Version(cmd::version::Args),
    /// Write shell completions or man pages generated from this CLI (used by the release).
    #[command(hide = true)]
    Generate(cmd::generate::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `cpe demo` draws its own view on stdout; the in-process agents' logs would tear it,
    // so it logs errors only unless a filter was asked for.
    let log = if matches!(cli.command, Command::Demo(_))
        && cli.log == "info"
        && std::env::var_os("CPE_LOG").is_none()
    {
        "error"
    } else {
        cli.log.as_str()
    };
    cmd::init_logging(log, cli.log_format);
    // What /metrics reports as cpe_build_info on both agents' admin listeners.
    cpe_admin::set_build_info(cmd::version::BUILD.version, cmd::version::BUILD.revision);
    let result = match cli.command {
        Command::Plan(a) => cmd::plan::run(a),
        Command::Render(a) => cmd::render::run(a),
        Command::Preflight(a) => cmd::block_on(cmd::preflight::run(a)),
        Command::Check(a) => cmd::block_on(cmd::check::run(a)),
        Command::Lb(a) => cmd::block_on_current_thread(cmd::lb::run(*a)),
        Command::Vip(a) => cmd::block_on(cmd::vip::run(*a)),
        Command::Status(a) => cmd::block_on(cmd::status::run(a)),
        Command::Demo(a) => cmd::block_on(cmd::demo::run(a)),
        Command::TestApiserver(a) => cmd::block_on(cmd::test_apiserver::run(a)),
        Command::Version(a) => cmd::version::run(a),
        Command::Generate(a) => cmd::generate::run(a, Cli::command()),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // The whole cause chain, one line each; never a backtrace.
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(1)
        }
    }
}
