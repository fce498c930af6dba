//! `cpe demo`: a local control plane with the endpoint in front, failures injected, shown
//! live. Three stand-in API servers (`cpe_apiserver`, TLS from a CA generated for the run)
//! and the load balancer (`cpe_lb`, TLS passed through) run in this process on loopback
//! ports picked by the kernel; clients send steady traffic through the endpoint while a
//! script stops one server gracefully, kills another, and brings both back. It ends with a
//! summary and exits 0 when the demo ran (failed requests are reported, not hidden; a
//! non-zero exit means the demo itself could not run).
//!
//! It needs nothing but the binary: no root, no etcd, no package. It is not a benchmark
//! (the clients pace themselves) and not the VIP mode (that needs namespaces and etcd).
//!
//! # Layout
//!
//! - this file: the run in its phases (set up, traffic, the script, shut down, summary),
//!   the signals that end it early, and writing to stdout.
//! - [`setup`]: the private directory with the CA, the servers, the load balancer.
//! - [`show`]: the running demo: polling, the steps as they fall due, the view, the summary.
//! - [`script`]: the timed steps.
//! - [`traffic`]: the clients and the tally of every request.
//! - [`view`]: the live frame, the plain lines and the summary.
//!
//! # Files and signals
//!
//! The CA certificate (the health checker reads it from a file) goes into a fresh private
//! directory (`$TMPDIR/cpe-demo-XXXXXX`, mode 0700); the private keys never touch the disk.
//! SIGINT, SIGTERM and SIGHUP are taken over before that directory exists, and each ends the
//! demo early through the same path as its normal end, so the directory is removed whatever
//! stops the run short of SIGKILL.

mod script;
mod setup;
mod show;
mod traffic;
mod view;

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use script::Pace;
use traffic::{Clients, Tally};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A shorter run (about 13 s instead of about 30 s), same steps.
    #[arg(long)]
    quick: bool,
    /// Clients opening a new TLS connection for every request.
    #[arg(long, default_value_t = 4, value_name = "N")]
    clients: usize,
    /// Clients reusing one keep-alive connection.
    #[arg(long, default_value_t = 2, value_name = "N")]
    keepalive: usize,
    /// Pause between two requests of one client.
    #[arg(long, default_value = "10ms", value_name = "DURATION", value_parser = cpe_config::duration::parse)]
    pace: Duration,
    /// How to show progress: a live frame (terminal), plain timestamped lines, or pick by
    /// whether stdout is a terminal.
    #[arg(long, value_enum, default_value_t = ViewMode::Auto)]
    view: ViewMode,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum ViewMode {
    Auto,
    Live,
    Plain,
}

const NAMES: [&str; 3] = ["cp1", "cp2", "cp3"];
/// The server stopped gracefully and the one killed (indices into `NAMES`), unless the
/// watch is elsewhere when the stop is due: then its server is stopped and the next killed.
const GRACEFUL: usize = 0;
const KILLED: usize = 1;

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let pace = if args.quick {
        Pace::quick()
    } else {
        Pace::normal()
    };
    let live = match args.view {
        ViewMode::Live => true,
        ViewMode::Plain => false,
        ViewMode::Auto => std::io::stdout().is_terminal(),
    };
    let mut out = Output { live };

    // The signals before the directory: from here on none of them kills the process outright.
    let mut signals = Signals::take_over()?;
    let dir = setup::private_dir()?;
    let stage = tokio::select! {
        stage = setup::stage(dir.path(), pace) => stage?,
        sig = signals.recv() => anyhow::bail!("interrupted by {sig} while setting up"),
    };
    let setup::Stage {
        ca_cert_pem,
        ca_path,
        slots,
        front,
    } = stage;
    let setup::Front {
        handle,
        endpoint,
        admin,
        stop: lb_stop,
        task: lb_task,
    } = front;
    let place = show::Place {
        endpoint,
        admin,
        ca_path,
    };
    if !live {
        out.event(Duration::ZERO, &started(&place, &slots));
    }

    let traffic = start_traffic(place.endpoint, &ca_cert_pem, &args)?;
    let mut show = show::Show::new(
        slots,
        handle,
        place,
        traffic.tally.clone(),
        traffic.t0,
        pace,
        live,
    );
    let elapsed = show.run(&mut out, &mut signals).await;
    shut_down(
        traffic,
        (lb_stop, lb_task),
        &mut show.slots,
        elapsed,
        &mut out,
    )
    .await;

    let summary = show.summary(elapsed);
    if live {
        // Leave the last frame on screen, the summary below it.
        println!();
    }
    print!("{}", view::summary(&summary));
    let _ = std::io::stdout().flush();
    // The private directory goes with `dir`, here or on any early return above.
    drop(dir);
    Ok(ExitCode::SUCCESS)
}

/// The first plain line: where the endpoint is and how to try it.
fn started(place: &show::Place, slots: &[setup::Slot]) -> String {
    format!(
        "endpoint https://{} (admin {}), backends {}; try: curl --cacert {} https://localhost:{}/debug/whoami",
        place.endpoint,
        place.admin.map(|a| a.to_string()).unwrap_or_else(|| "-".into()),
        slots
            .iter()
            .map(|s| format!("{} {}", s.name, s.addr()))
            .collect::<Vec<_>>()
            .join(", "),
        place.ca_path.display(),
        place.endpoint.port()
    )
}

/// The clients running through the endpoint, and what stops them.
struct Traffic {
    tally: traffic::Shared,
    t0: Instant,
    stop: CancellationToken,
    tasks: JoinSet<()>,
}

/// The clients: new-connection ones, keep-alive ones and the watch, verifying the endpoint
/// against the run's CA with the name `localhost`.
fn start_traffic(endpoint: SocketAddr, ca_cert_pem: &str, args: &Args) -> anyhow::Result<Traffic> {
    let tally = Arc::new(Mutex::new(Tally::default()));
    let t0 = Instant::now();
    let stop = CancellationToken::new();
    let clients = Clients {
        target: cpe_apiserver::client::Target {
            addr: endpoint,
            tls: Some((
                cpe_apiserver::tls::client_config(ca_cert_pem, None, &[b"http/1.1"])?,
                cpe_apiserver::tls::server_name("localhost")?,
            )),
            timeout: Duration::from_secs(3),
        },
        tally: tally.clone(),
        t0,
        stop: stop.clone(),
        pace: args.pace,
    };
    let mut tasks = JoinSet::new();
    for _ in 0..args.clients {
        tasks.spawn(clients.clone().new_connections());
    }
    for _ in 0..args.keepalive {
        tasks.spawn(clients.clone().keep_alive());
    }
    tasks.spawn(clients.clone().watch());
    Ok(Traffic {
        tally,
        t0,
        stop,
        tasks,
    })
}

/// Stops the clients (a request in flight finishes, bounded by its timeout), then the
/// load balancer, then the servers.
async fn shut_down(
    traffic: Traffic,
    (lb_stop, lb_task): (CancellationToken, setup::LbTask),
    slots: &mut [setup::Slot],
    elapsed: Duration,
    out: &mut Output,
) {
    let Traffic {
        stop, mut tasks, ..
    } = traffic;
    stop.cancel();
    let drained = tokio::time::timeout(Duration::from_secs(5), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tasks.shutdown().await;
    }
    lb_stop.cancel();
    match tokio::time::timeout(Duration::from_secs(5), lb_task).await {
        Ok(Ok(Err(e))) => out.event(elapsed, &format!("load balancer: {e}")),
        Ok(Err(e)) => out.event(elapsed, &format!("load balancer task: {e}")),
        _ => {}
    }
    for slot in slots.iter_mut() {
        if let Some(r) = slot.running.take() {
            r.kill().await;
        }
    }
}

/// SIGINT, SIGTERM and SIGHUP, taken over for the whole run (tokio keeps a signal's handler
/// installed once registered, so a late one is ignored rather than killing the process).
struct Signals {
    int: Signal,
    term: Signal,
    hup: Signal,
}

impl Signals {
    fn take_over() -> anyhow::Result<Signals> {
        let on = |kind: SignalKind, name: &str| {
            signal(kind).map_err(|e| anyhow::anyhow!("cannot handle {name}: {e}"))
        };
        Ok(Signals {
            int: on(SignalKind::interrupt(), "SIGINT")?,
            term: on(SignalKind::terminate(), "SIGTERM")?,
            hup: on(SignalKind::hangup(), "SIGHUP")?,
        })
    }

    /// The next of the three signals to arrive, by name.
    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
            _ = self.hup.recv() => "SIGHUP",
        }
    }
}

/// Writes to stdout: frames on a terminal, lines otherwise.
struct Output {
    live: bool,
}

impl Output {
    fn clear(&mut self) {
        print!("\x1b[2J\x1b[H");
        let _ = std::io::stdout().flush();
    }

    fn frame(&mut self, text: &str) {
        let mut o = String::from("\x1b[H");
        for line in text.lines() {
            o.push_str(line);
            o.push_str("\x1b[K\n");
        }
        o.push_str("\x1b[J");
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(o.as_bytes());
        let _ = stdout.flush();
    }

    fn line(&mut self, text: &str) {
        println!("{text}");
    }

    fn event(&mut self, at: Duration, text: &str) {
        if self.live {
            // On a terminal the frame shows steps and states; errors still go to stderr.
            if text.contains("failed") || text.contains("error") {
                eprintln!("{}", view::event(at, text));
            }
        } else {
            println!("{}", view::event(at, text));
        }
    }
}
