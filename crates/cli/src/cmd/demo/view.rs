//! What the demo shows: a frame redrawn a few times a second on a terminal, or plain
//! timestamped lines when stdout is a pipe or a file, and the summary at the end. Rendered
//! from a [`Snapshot`] into a `String`; the caller writes it. No I/O here.

use std::fmt::Write;
use std::time::Duration;

/// What the stand-in server process is doing (as the demo drives it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Server {
    Serving,
    /// Shutdown started: `/readyz` 503, still serving until the delay is over.
    ShuttingDown,
    Stopped,
    Killed,
}

impl Server {
    pub fn as_str(self) -> &'static str {
        match self {
            Server::Serving => "serving",
            Server::ShuttingDown => "shutting down",
            Server::Stopped => "stopped",
            Server::Killed => "killed",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Backend {
    pub name: String,
    pub addr: String,
    pub server: Server,
    /// The load balancer's state for it (`up`, `down`, ...).
    pub lb: String,
    pub requests: u64,
    /// Requests per second over the last second.
    pub rate: f64,
}

/// One line of the timeline: a step, whether it ran, and what the load balancer did.
#[derive(Clone, Debug)]
pub struct Line {
    pub at: Duration,
    pub text: String,
    pub done: bool,
    pub outcome: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Snapshot {
    pub elapsed: Duration,
    pub endpoint: String,
    pub admin: Option<String>,
    pub ca: String,
    pub backends: Vec<Backend>,
    pub ok: u64,
    pub failed: u64,
    pub in_flight_on_killed: u64,
    pub last_failure: Option<String>,
    pub retried: u64,
    pub watch_events: u64,
    pub watch_backend: Option<String>,
    pub timeline: Vec<Line>,
}

fn secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

/// The terminal frame (the caller clears the screen before writing it).
pub fn frame(s: &Snapshot) -> String {
    let mut o = String::new();
    let port = s.endpoint.rsplit(':').next().unwrap_or("");
    let _ = writeln!(
        o,
        "cpe demo: three stand-in API servers behind the load balancer      t = {:>6.1}s",
        s.elapsed.as_secs_f64()
    );
    let _ = writeln!(
        o,
        "  endpoint  https://{}  (TLS passed through to the API servers)",
        s.endpoint
    );
    let _ = writeln!(
        o,
        "  try       curl --cacert {} https://localhost:{port}/debug/whoami",
        s.ca
    );
    if let Some(a) = &s.admin {
        let _ = writeln!(o, "            cpe status --admin {a}");
    }
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "  {:<6} {:<17} {:<15} {:<14} {:>9} {:>7}",
        "server", "address", "process", "load balancer", "requests", "req/s"
    );
    for b in &s.backends {
        let _ = writeln!(
            o,
            "  {:<6} {:<17} {:<15} {:<14} {:>9} {:>7.0}",
            b.name,
            b.addr,
            b.server.as_str(),
            b.lb,
            b.requests,
            b.rate
        );
    }
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "  requests ok {}   failed {} ({} in flight on a killed server)   retried {}",
        s.ok, s.failed, s.in_flight_on_killed, s.retried
    );
    if let Some(f) = &s.last_failure {
        let _ = writeln!(o, "  last failure  {f}");
    }
    let _ = writeln!(
        o,
        "  watch    {} events, now on {}",
        s.watch_events,
        s.watch_backend.as_deref().unwrap_or("(reconnecting)")
    );
    let _ = writeln!(o);
    let _ = writeln!(o, "  timeline");
    let next = s.timeline.iter().position(|l| !l.done);
    for (i, l) in s.timeline.iter().enumerate() {
        let mark = if l.done {
            "done"
        } else if Some(i) == next {
            "next"
        } else {
            "    "
        };
        let _ = write!(o, "   {mark} {:>6.1}s  {}", l.at.as_secs_f64(), l.text);
        if let Some(out) = &l.outcome {
            let _ = write!(o, "  -> {out}");
        }
        let _ = writeln!(o);
    }
    o
}

/// The once-a-second line for pipes and files.
pub fn line(s: &Snapshot) -> String {
    let mut o = format!("[{:>7}] ", secs(s.elapsed));
    for b in &s.backends {
        let _ = write!(
            o,
            "{} {}/{} {} | ",
            b.name,
            b.server.as_str(),
            b.lb,
            b.requests
        );
    }
    let _ = write!(
        o,
        "ok {} failed {} retried {} watch {} on {}",
        s.ok,
        s.failed,
        s.retried,
        s.watch_events,
        s.watch_backend.as_deref().unwrap_or("-")
    );
    o
}

/// An event line (a step, a load-balancer transition) for pipes and files.
pub fn event(elapsed: Duration, text: &str) -> String {
    format!("[{:>7}] {text}", secs(elapsed))
}

/// Everything the summary says.
#[derive(Clone, Debug)]
pub struct Summary {
    pub elapsed: Duration,
    pub endpoint: String,
    pub ok: u64,
    pub failed: u64,
    pub in_flight_on_killed: Vec<String>,
    pub other_failures: Vec<String>,
    pub retried: u64,
    pub per_backend: Vec<(String, u64)>,
    pub watch_events: u64,
    pub watch_starts: u64,
    pub watch_ended_cleanly: u64,
    /// One line per step: what it was and what the load balancer did.
    pub steps: Vec<String>,
}

pub fn summary(s: &Summary) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "Summary ({:.1} s of traffic through {})",
        s.elapsed.as_secs_f64(),
        s.endpoint
    );
    let _ = writeln!(o, "  requests      {} ok, {} failed", s.ok, s.failed);
    let _ = writeln!(
        o,
        "    in flight on a killed server: {} (a crash loses what it was doing)",
        s.in_flight_on_killed.len()
    );
    for f in s.in_flight_on_killed.iter().take(5) {
        let _ = writeln!(o, "      {f}");
    }
    let _ = writeln!(o, "    other failures: {}", s.other_failures.len());
    for f in s.other_failures.iter().take(10) {
        let _ = writeln!(o, "      {f}");
    }
    let _ = writeln!(
        o,
        "    retried once on a new connection after a reused one failed (as Go clients do): {}",
        s.retried
    );
    let per: Vec<String> = s
        .per_backend
        .iter()
        .map(|(n, c)| format!("{n} {c}"))
        .collect();
    let _ = writeln!(o, "  per backend   {}", per.join(", "));
    let _ = writeln!(
        o,
        "  watch         {} events over {} streams ({} ended cleanly by a graceful shutdown and resumed)",
        s.watch_events, s.watch_starts, s.watch_ended_cleanly
    );
    let _ = writeln!(o, "  steps");
    for step in &s.steps {
        let _ = writeln!(o, "    {step}");
    }
    let _ = writeln!(
        o,
        "demo result: requests={} failed={} in_flight_on_killed={} other_failures={} retried={}",
        s.ok + s.failed,
        s.failed,
        s.in_flight_on_killed.len(),
        s.other_failures.len(),
        s.retried
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap() -> Snapshot {
        Snapshot {
            elapsed: Duration::from_millis(4200),
            endpoint: "127.0.0.1:41000".into(),
            admin: Some("127.0.0.1:41001".into()),
            ca: "/tmp/d/ca.crt".into(),
            backends: vec![Backend {
                name: "cp1".into(),
                addr: "127.0.0.1:40001".into(),
                server: Server::ShuttingDown,
                lb: "down".into(),
                requests: 12,
                rate: 3.0,
            }],
            ok: 12,
            failed: 0,
            in_flight_on_killed: 0,
            last_failure: None,
            retried: 0,
            watch_events: 5,
            watch_backend: Some("cp1".into()),
            timeline: vec![
                Line {
                    at: Duration::from_secs(2),
                    text: "stop cp1".into(),
                    done: true,
                    outcome: Some("out of rotation after 0.50s".into()),
                },
                Line {
                    at: Duration::from_secs(5),
                    text: "restart cp1".into(),
                    done: false,
                    outcome: None,
                },
            ],
        }
    }

    #[test]
    fn the_frame_shows_endpoint_backends_counts_and_what_is_next() {
        let f = frame(&snap());
        assert!(f.contains("https://127.0.0.1:41000"));
        assert!(f.contains("https://localhost:41000/debug/whoami"));
        assert!(f.contains("cp1") && f.contains("shutting down") && f.contains("down"));
        assert!(
            f.contains("done    2.0s  stop cp1  -> out of rotation after 0.50s"),
            "{f}"
        );
        assert!(f.contains("next    5.0s  restart cp1"), "{f}");
    }

    #[test]
    fn the_plain_line_is_timestamped() {
        let l = line(&snap());
        assert!(
            l.starts_with("[  4.20s] cp1 shutting down/down 12 | ok 12"),
            "{l}"
        );
    }

    #[test]
    fn the_summary_ends_with_a_machine_readable_result() {
        let s = Summary {
            elapsed: Duration::from_secs(13),
            endpoint: "127.0.0.1:1".into(),
            ok: 100,
            failed: 2,
            in_flight_on_killed: vec!["a".into(), "b".into()],
            other_failures: vec![],
            retried: 1,
            per_backend: vec![("cp1".into(), 50), ("cp2".into(), 50)],
            watch_events: 10,
            watch_starts: 2,
            watch_ended_cleanly: 1,
            steps: vec![],
        };
        let text = summary(&s);
        assert!(text.trim_end().ends_with(
            "demo result: requests=102 failed=2 in_flight_on_killed=2 other_failures=0 retried=1"
        ), "{text}");
    }
}
