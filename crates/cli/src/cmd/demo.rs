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
//! - [`script`]: the timed steps.
//! - [`traffic`]: the clients and the tally of every request.
//! - [`view`]: the live frame, the plain lines and the summary.

mod script;
mod traffic;
mod view;

use anyhow::Context;
use cpe_apiserver::{tls, Config, Pki, Running, Server, TlsSettings};
use cpe_health::State;
use cpe_lb::{BackendSpec, Lb, LbConfig};
use std::collections::VecDeque;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use script::{Action, Pace};
use traffic::{Clients, KillWindow, Tally};

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
    #[arg(long, default_value = "10ms", value_name = "DURATION", value_parser = duration)]
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

fn duration(s: &str) -> Result<Duration, String> {
    cpe_config::duration::parse(s).map_err(|e| e.to_string())
}

const NAMES: [&str; 3] = ["cp1", "cp2", "cp3"];
/// The server stopped gracefully and the one killed (indices into `NAMES`), unless the
/// watch is elsewhere when the stop is due: then its server is stopped and the next killed.
const GRACEFUL: usize = 0;
const KILLED: usize = 1;

/// The run's certificates on disk (the health checker reads its CA from a file), removed
/// at the end whatever happens.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One stand-in API server as the demo drives it.
struct Slot {
    name: String,
    config: Config,
    running: Option<Running>,
    server: view::Server,
}

impl Slot {
    fn addr(&self) -> SocketAddr {
        self.config.listen
    }
}

/// A change of a backend's state in the load balancer, as polled.
struct Transition {
    at: Duration,
    backend: usize,
    to: State,
}

/// A step that ran, with what the load balancer did about it.
struct Done {
    at: Duration,
    action: Action,
    text: String,
}

fn lb_state_of(states: &[(String, State)], addr: SocketAddr) -> Option<State> {
    let name = BackendSpec::from_addr(addr).to_string();
    states.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

/// What the load balancer did after a step: for a stop or a kill, how long until it took
/// the backend out of rotation; for a restart, how long until it put it back.
fn outcome(done: &Done, transitions: &[Transition]) -> Option<String> {
    let (backend, back_up) = match done.action {
        Action::Graceful(i) | Action::Kill(i) => (i, false),
        Action::Restart(i) => (i, true),
        Action::End => return None,
    };
    transitions
        .iter()
        .find(|t| t.backend == backend && t.at >= done.at && (t.to == State::Up) == back_up)
        .map(|t| {
            let after = (t.at - done.at).as_secs_f64();
            if back_up {
                format!("back in rotation after {after:.2}s")
            } else {
                format!("out of rotation after {after:.2}s ({})", t.to.as_str())
            }
        })
}

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

    // Certificates: one CA, one server certificate naming localhost and 127.0.0.1 shared
    // by the three servers (a cluster's API servers all carry the endpoint's name).
    let dir = TempDir(std::env::temp_dir().join(format!("cpe-demo-{}", std::process::id())));
    let pki =
        Pki::generate(&["localhost", "127.0.0.1"]).context("generating the demo's certificates")?;
    pki.write_to(&dir.0)?;
    let ca_path = dir.0.join(cpe_apiserver::pki::CA_CERT);

    // Three stand-in API servers on ports the kernel picks; a restart rebinds the same port.
    let mut slots = Vec::new();
    for name in NAMES {
        let mut config = Config::new(
            "127.0.0.1:0".parse()?,
            name,
            Some(TlsSettings {
                cert_pem: pki.server.cert_pem.clone(),
                key_pem: pki.server.key_pem.clone(),
                client_ca_pem: Some(pki.ca_cert_pem.clone()),
            }),
        );
        config.shutdown_delay = pace.shutdown_delay;
        config.shutdown_grace = pace.shutdown_grace;
        config.stream_interval = Duration::from_millis(250);
        let server = Server::bind(config.clone())
            .await
            .with_context(|| format!("starting stand-in API server {name}"))?;
        config.listen = server.local_addr();
        slots.push(Slot {
            name: name.to_string(),
            config,
            running: Some(server.spawn()),
            server: view::Server::Serving,
        });
    }

    // The load balancer in front, with its admin listener so `cpe status` works meanwhile.
    let mut lb_config = LbConfig::new(
        "127.0.0.1:0".parse()?,
        slots
            .iter()
            .map(|s| BackendSpec::from_addr(s.addr()))
            .collect(),
    );
    lb_config.admin = Some("127.0.0.1:0".parse()?);
    lb_config.health.ca_file = Some(ca_path.clone());
    let lb = Lb::bind(lb_config)
        .await
        .context("starting the load balancer")?;
    let lb_handle = lb.handle();
    let endpoint = lb.local_addr();
    let admin = lb.admin_addr();
    let lb_stop = CancellationToken::new();
    let lb_task = tokio::spawn(lb.run(lb_stop.clone().cancelled_owned()));

    // Traffic starts once the load balancer sees every server up.
    let ready_by = Instant::now() + Duration::from_secs(10);
    while !slots
        .iter()
        .all(|s| lb_state_of(&lb_handle.states(), s.addr()) == Some(State::Up))
    {
        if Instant::now() > ready_by {
            anyhow::bail!(
                "the load balancer did not see the three stand-in servers up within 10 s: {:?}",
                lb_handle.states()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    if !live {
        out.event(
            Duration::ZERO,
            &format!(
                "endpoint https://{endpoint} (admin {}), backends {}; try: curl --cacert {} https://localhost:{}/debug/whoami",
                admin.map(|a| a.to_string()).unwrap_or_else(|| "-".into()),
                slots
                    .iter()
                    .map(|s| format!("{} {}", s.name, s.addr()))
                    .collect::<Vec<_>>()
                    .join(", "),
                ca_path.display(),
                endpoint.port()
            ),
        );
    }

    let tally = Arc::new(Mutex::new(Tally::default()));
    let t0 = Instant::now();
    let stop = CancellationToken::new();
    let clients = Clients {
        target: cpe_apiserver::client::Target {
            addr: endpoint,
            tls: Some((
                tls::client_config(&pki.ca_cert_pem, None, &[b"http/1.1"])?,
                tls::server_name("localhost")?,
            )),
            timeout: Duration::from_secs(3),
        },
        tally: tally.clone(),
        t0,
        stop: stop.clone(),
        pace: args.pace,
    };
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..args.clients {
        tasks.spawn(clients.clone().new_connections());
    }
    for _ in 0..args.keepalive {
        tasks.spawn(clients.clone().keep_alive());
    }
    tasks.spawn(clients.clone().watch());

    let names: Vec<String> = NAMES.iter().map(|s| s.to_string()).collect();
    let mut steps = script::timeline(pace, GRACEFUL, KILLED);
    let mut next_step = 0;
    let mut done: Vec<Done> = Vec::new();
    let mut kills: Vec<KillWindow> = Vec::new();
    let mut transitions: Vec<Transition> = Vec::new();
    let mut last_states: Vec<Option<State>> = vec![Some(State::Up); slots.len()];
    let mut history: VecDeque<(Duration, Vec<u64>)> = VecDeque::new();
    let mut last_draw = Duration::ZERO;
    let draw_every = if live {
        Duration::from_millis(250)
    } else {
        Duration::from_secs(1)
    };
    if live {
        out.clear();
    }
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    // Ctrl-C ends the demo early, with the summary (and the temporary directory removed).
    let mut interrupted = std::pin::pin!(tokio::signal::ctrl_c());
    let elapsed = loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut interrupted => {
                let now = t0.elapsed();
                out.event(now, "interrupted: stopping traffic early");
                break now;
            }
        }
        let now = t0.elapsed();

        // What the load balancer thinks, polled every 20 ms: the detection times come from here.
        let states = lb_handle.states();
        for (i, slot) in slots.iter().enumerate() {
            let st = lb_state_of(&states, slot.addr());
            if st != last_states[i] {
                if let Some(to) = st {
                    transitions.push(Transition {
                        at: now,
                        backend: i,
                        to,
                    });
                    if !live {
                        out.event(
                            now,
                            &format!(
                                "load balancer: {} {} -> {}",
                                slot.name,
                                last_states[i].map(|s| s.as_str()).unwrap_or("-"),
                                to.as_str()
                            ),
                        );
                    }
                }
                last_states[i] = st;
            }
        }
        for slot in slots.iter_mut() {
            if slot.server == view::Server::ShuttingDown
                && slot.running.as_ref().is_none_or(|r| r.is_finished())
            {
                slot.server = view::Server::Stopped;
                if let Some(r) = slot.running.take() {
                    if let Err(e) = r.wait().await {
                        out.event(now, &format!("{}: {e}", slot.name));
                    }
                }
                if !live {
                    out.event(
                        now,
                        &format!("{}: listener closed, connections finished", slot.name),
                    );
                }
            }
        }

        // Steps that are due.
        let mut ended = None;
        while next_step < steps.len() && steps[next_step].at <= now {
            if let Action::Graceful(_) = steps[next_step].action {
                // Stop the server carrying the watch, kill another one.
                let watched = tally
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .watch_backend
                    .clone();
                let g = watched
                    .and_then(|w| slots.iter().position(|s| s.name == w))
                    .unwrap_or(GRACEFUL);
                script::retarget(&mut steps[next_step..], g, (g + 1) % slots.len());
            }
            let step = &steps[next_step];
            next_step += 1;
            let text = script::describe(step.action, &names, pace);
            if !live {
                out.event(now, &format!("step: {text}"));
            }
            let at = t0.elapsed();
            match step.action {
                Action::Graceful(i) => {
                    if let Some(r) = &slots[i].running {
                        r.handle().shutdown();
                        slots[i].server = view::Server::ShuttingDown;
                    }
                }
                Action::Kill(i) => {
                    if let Some(r) = slots[i].running.take() {
                        let from = t0.elapsed();
                        r.kill().await;
                        kills.push(KillWindow {
                            backend: slots[i].name.clone(),
                            from,
                            to: t0.elapsed(),
                        });
                    }
                    slots[i].server = view::Server::Killed;
                }
                Action::Restart(i) => {
                    if let Some(r) = slots[i].running.take() {
                        r.kill().await;
                    }
                    match Server::bind(slots[i].config.clone()).await {
                        Ok(s) => {
                            slots[i].running = Some(s.spawn());
                            slots[i].server = view::Server::Serving;
                        }
                        Err(e) => {
                            out.event(now, &format!("{}: restart failed: {e}", slots[i].name))
                        }
                    }
                }
                Action::End => ended = Some(now),
            }
            done.push(Done {
                at,
                action: step.action,
                text,
            });
        }
        if let Some(e) = ended {
            break e;
        }

        // Requests per backend over the last second.
        let counts: Vec<u64> = {
            let t = tally.lock().unwrap_or_else(|e| e.into_inner());
            slots
                .iter()
                .map(|s| t.per_backend.get(&s.name).copied().unwrap_or(0))
                .collect()
        };
        history.push_back((now, counts.clone()));
        while history
            .front()
            .is_some_and(|(t, _)| now.saturating_sub(*t) > Duration::from_secs(1))
        {
            history.pop_front();
        }
        if now.saturating_sub(last_draw) >= draw_every {
            last_draw = now;
            let snap = snapshot(
                now,
                endpoint,
                admin,
                &ca_path,
                &slots,
                &last_states,
                &counts,
                &history,
                &tally,
                &kills,
                &steps,
                &done,
                &transitions,
                &names,
                pace,
            );
            if live {
                out.frame(&view::frame(&snap));
            } else {
                out.line(&view::line(&snap));
            }
        }
    };

    // Stop the clients (a request in flight finishes, bounded by its timeout), then the
    // load balancer, then the servers.
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

    let t = tally.lock().unwrap_or_else(|e| e.into_inner());
    let (in_flight, other) = traffic::classify(&t.failures, &kills);
    let describe_failure = |f: &traffic::Failure| {
        format!(
            "{:.2}s-{:.2}s {} on {}: {}",
            f.started.as_secs_f64(),
            f.ended.as_secs_f64(),
            f.kind.as_str(),
            f.backend.as_deref().unwrap_or("(unknown backend)"),
            f.error
        )
    };
    let summary = view::Summary {
        elapsed,
        endpoint: endpoint.to_string(),
        ok: t.ok,
        failed: t.failures.len() as u64,
        in_flight_on_killed: in_flight.iter().map(|f| describe_failure(f)).collect(),
        other_failures: other.iter().map(|f| describe_failure(f)).collect(),
        retried: t.retried,
        per_backend: t.per_backend.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        watch_events: t.watch_events,
        watch_starts: t.watch_starts,
        watch_ended_cleanly: t.watch_ended_cleanly,
        steps: done
            .iter()
            .filter(|d| d.action != Action::End)
            .map(|d| {
                format!(
                    "{:>6.2}s  {}  -> {}",
                    d.at.as_secs_f64(),
                    d.text,
                    outcome(d, &transitions).unwrap_or_else(|| "no change seen".into())
                )
            })
            .collect(),
    };
    if live {
        // Leave the last frame on screen, the summary below it.
        println!();
    }
    print!("{}", view::summary(&summary));
    let _ = std::io::stdout().flush();
    Ok(ExitCode::SUCCESS)
}

#[allow(clippy::too_many_arguments)]
fn snapshot(
    now: Duration,
    endpoint: SocketAddr,
    admin: Option<SocketAddr>,
    ca: &std::path::Path,
    slots: &[Slot],
    lb_states: &[Option<State>],
    counts: &[u64],
    history: &VecDeque<(Duration, Vec<u64>)>,
    tally: &traffic::Shared,
    kills: &[KillWindow],
    steps: &[script::Step],
    done: &[Done],
    transitions: &[Transition],
    names: &[String],
    pace: Pace,
) -> view::Snapshot {
    let t = tally.lock().unwrap_or_else(|e| e.into_inner());
    let (in_flight, _) = traffic::classify(&t.failures, kills);
    let rate = |i: usize| match history.front() {
        Some((t0, c0)) if now > *t0 => {
            (counts[i].saturating_sub(c0[i])) as f64 / (now - *t0).as_secs_f64()
        }
        _ => 0.0,
    };
    view::Snapshot {
        elapsed: now,
        endpoint: endpoint.to_string(),
        admin: admin.map(|a| a.to_string()),
        ca: ca.display().to_string(),
        backends: slots
            .iter()
            .enumerate()
            .map(|(i, s)| view::Backend {
                name: s.name.clone(),
                addr: s.addr().to_string(),
                server: s.server,
                lb: lb_states[i].map(|s| s.as_str()).unwrap_or("-").to_string(),
                requests: counts[i],
                rate: rate(i),
            })
            .collect(),
        ok: t.ok,
        failed: t.failures.len() as u64,
        in_flight_on_killed: in_flight.len() as u64,
        last_failure: t.failures.last().map(|f| {
            format!(
                "{:.2}s {} on {}: {}",
                f.ended.as_secs_f64(),
                f.kind.as_str(),
                f.backend.as_deref().unwrap_or("(unknown backend)"),
                f.error
            )
        }),
        retried: t.retried,
        watch_events: t.watch_events,
        watch_backend: t.watch_backend.clone(),
        timeline: steps
            .iter()
            .enumerate()
            .map(|(i, s)| view::Line {
                at: s.at,
                text: script::describe(s.action, names, pace),
                done: i < done.len(),
                outcome: done.get(i).and_then(|d| outcome(d, transitions)),
            })
            .collect(),
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
