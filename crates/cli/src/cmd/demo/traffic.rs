//! The demo's traffic through the endpoint, and the tally of what happened to it.
//!
//! Three kinds of clients, as a cluster has them: clients opening a new TLS connection per
//! request (kubectl, short-lived jobs), clients reusing one keep-alive connection (kubelets,
//! controllers) and one long-lived watch. Every request is recorded with when it started and
//! ended, so that a failure can be matched against the kill that caused it.
//!
//! A keep-alive client retries a GET once on a fresh connection when its *reused* connection
//! fails, exactly as Go's HTTP transport (hence kubectl and client-go) does for idempotent
//! requests; those retries are counted and shown, never hidden. Nothing else is retried.

use cpe_apiserver::client::{self, Conn, Target, Watch};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How a failed request was being sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    NewConnection,
    KeepAlive,
    Watch,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::NewConnection => "new connection",
            Kind::KeepAlive => "keep-alive",
            Kind::Watch => "watch",
        }
    }
}

/// One failed request (or a broken watch).
#[derive(Clone, Debug)]
pub struct Failure {
    /// Since the demo started.
    pub started: Duration,
    pub ended: Duration,
    /// The backend, when the client knew it (a keep-alive connection or a watch that had
    /// answered before); a new connection does not know where the LB sent it.
    pub backend: Option<String>,
    pub kind: Kind,
    pub error: String,
}

/// Everything counted, shared by the clients (a mutex: a few hundred updates a second).
#[derive(Debug, Default)]
pub struct Tally {
    pub ok: u64,
    pub per_backend: BTreeMap<String, u64>,
    pub failures: Vec<Failure>,
    /// Requests retried once on a fresh connection after a reused one failed (Go does this).
    pub retried: u64,
    pub watch_events: u64,
    /// Backend of the watch stream now.
    pub watch_backend: Option<String>,
    /// Watch streams the server ended cleanly (graceful shutdown); the client starts anew.
    pub watch_ended_cleanly: u64,
    pub watch_starts: u64,
}

pub type Shared = Arc<Mutex<Tally>>;

fn lock(t: &Shared) -> std::sync::MutexGuard<'_, Tally> {
    t.lock().unwrap_or_else(|e| e.into_inner())
}

/// A kill as the summary knows it: from just before the abort to when it was complete.
#[derive(Clone, Debug)]
pub struct KillWindow {
    pub backend: String,
    pub from: Duration,
    pub to: Duration,
}

/// Failures split into those in flight on a server when it was killed (expected: a crash
/// loses what it was doing) and every other one (not expected: the endpoint should have
/// hidden it). A failure is in flight on a kill when it started before the kill was over,
/// ended after it began, and was on that backend or on one the client could not know.
pub fn classify<'a>(
    failures: &'a [Failure],
    kills: &[KillWindow],
) -> (Vec<&'a Failure>, Vec<&'a Failure>) {
    failures.iter().partition(|f| {
        kills.iter().any(|k| {
            f.started <= k.to
                && f.ended >= k.from
                && f.backend.as_deref().is_none_or(|b| b == k.backend)
        })
    })
}

#[derive(Clone)]
pub struct Clients {
    pub target: Target,
    pub tally: Shared,
    pub t0: Instant,
    pub stop: CancellationToken,
    /// Pause between two requests of one client (keeps the demo light on shared CPUs).
    pub pace: Duration,
}

impl Clients {
    fn since(&self) -> Duration {
        self.t0.elapsed()
    }

    fn ok(&self, backend: Option<String>) {
        let mut t = lock(&self.tally);
        t.ok += 1;
        *t.per_backend
            .entry(backend.unwrap_or_else(|| "?".into()))
            .or_default() += 1;
    }

    fn fail(&self, started: Duration, backend: Option<String>, kind: Kind, error: String) {
        let ended = self.since();
        lock(&self.tally).failures.push(Failure {
            started,
            ended,
            backend,
            kind,
            error,
        });
    }

    /// A new TLS connection for every request.
    pub async fn new_connections(self) {
        while !self.stop.is_cancelled() {
            let started = self.since();
            match client::get(&self.target, "/version").await {
                Ok(r) if r.status == 200 => self.ok(r.backend),
                Ok(r) => self.fail(
                    started,
                    r.backend,
                    Kind::NewConnection,
                    format!("HTTP {}", r.status),
                ),
                Err(e) => self.fail(started, None, Kind::NewConnection, e.to_string()),
            }
            self.pause().await;
        }
    }

    /// One connection reused for request after request, reopened when it closes.
    pub async fn keep_alive(self) {
        let mut conn: Option<(Conn, Option<String>)> = None;
        while !self.stop.is_cancelled() {
            let started = self.since();
            // A connection the server closed while idle (graceful shutdown) is replaced
            // before sending, as every HTTP client does.
            if conn.as_ref().is_some_and(|(c, _)| !c.is_open()) {
                conn = None;
            }
            let reused = conn.is_some();
            if conn.is_none() {
                match Conn::open(&self.target).await {
                    Ok(c) => conn = Some((c, None)),
                    Err(e) => {
                        self.fail(started, None, Kind::KeepAlive, e.to_string());
                        self.pause().await;
                        continue;
                    }
                }
            }
            let (c, backend) = conn.as_mut().expect("opened above");
            match c.get("/version").await {
                Ok(r) if r.status == 200 => {
                    *backend = r.backend.clone();
                    self.ok(r.backend);
                }
                Ok(r) => {
                    self.fail(
                        started,
                        r.backend,
                        Kind::KeepAlive,
                        format!("HTTP {}", r.status),
                    );
                    conn = None;
                }
                Err(e) if reused => {
                    // Go's transport retries an idempotent request once on a new
                    // connection when a reused one fails; so do we, and count it.
                    let was_on = backend.clone();
                    lock(&self.tally).retried += 1;
                    conn = None;
                    match client::get(&self.target, "/version").await {
                        Ok(r) if r.status == 200 => self.ok(r.backend),
                        Ok(r) => self.fail(
                            started,
                            was_on,
                            Kind::KeepAlive,
                            format!("{e}; retry: HTTP {}", r.status),
                        ),
                        Err(e2) => self.fail(
                            started,
                            was_on,
                            Kind::KeepAlive,
                            format!("{e}; retry: {e2}"),
                        ),
                    }
                }
                Err(e) => {
                    self.fail(started, backend.clone(), Kind::KeepAlive, e.to_string());
                    conn = None;
                }
            }
            self.pause().await;
        }
    }

    /// One watch, started again whenever it ends (as client-go's reflector does).
    pub async fn watch(self) {
        while !self.stop.is_cancelled() {
            let started = self.since();
            let mut w = match Watch::start(
                &self.target,
                "/api/v1/namespaces/default/pods?watch=true",
            )
            .await
            {
                Ok(w) if w.status == 200 => w,
                Ok(w) => {
                    self.fail(
                        started,
                        w.backend.clone(),
                        Kind::Watch,
                        format!("HTTP {}", w.status),
                    );
                    self.pause().await;
                    continue;
                }
                Err(e) => {
                    self.fail(started, None, Kind::Watch, e.to_string());
                    self.pause().await;
                    continue;
                }
            };
            {
                let mut t = lock(&self.tally);
                t.watch_starts += 1;
                t.watch_backend = w.backend.clone();
            }
            loop {
                let next = tokio::select! {
                    _ = self.stop.cancelled() => return,
                    n = w.next() => n,
                };
                match next {
                    Ok(Some(data)) => {
                        let lines = data.iter().filter(|b| **b == b'\n').count() as u64;
                        lock(&self.tally).watch_events += lines;
                    }
                    Ok(None) => {
                        let mut t = lock(&self.tally);
                        t.watch_ended_cleanly += 1;
                        t.watch_backend = None;
                        break;
                    }
                    Err(e) => {
                        lock(&self.tally).watch_backend = None;
                        // The stream was in flight from its start: a kill breaks it.
                        self.fail(started, w.backend.clone(), Kind::Watch, e.to_string());
                        break;
                    }
                }
            }
        }
    }

    async fn pause(&self) {
        tokio::select! {
            _ = self.stop.cancelled() => {}
            _ = tokio::time::sleep(self.pace) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(started: u64, ended: u64, backend: Option<&str>) -> Failure {
        Failure {
            started: Duration::from_millis(started),
            ended: Duration::from_millis(ended),
            backend: backend.map(str::to_string),
            kind: Kind::NewConnection,
            error: "x".into(),
        }
    }

    #[test]
    fn failures_in_flight_on_a_kill_are_told_apart_from_the_rest() {
        let kills = vec![KillWindow {
            backend: "cp2".into(),
            from: Duration::from_millis(1000),
            to: Duration::from_millis(1010),
        }];
        let failures = vec![
            f(990, 1005, None),         // unknown backend, across the kill: in flight
            f(500, 1200, Some("cp2")),  // on cp2, across the kill: in flight
            f(1005, 1020, Some("cp2")), // started during the kill: in flight
            f(500, 1200, Some("cp1")),  // on another backend: not excused
            f(100, 200, None),          // before the kill: not excused
            f(1011, 1300, None),        // after the kill was over: not excused
        ];
        let (in_flight, other) = classify(&failures, &kills);
        assert_eq!(in_flight.len(), 3);
        assert_eq!(other.len(), 3);
        assert!(other.iter().any(|x| x.backend.as_deref() == Some("cp1")));
        assert!(other
            .iter()
            .any(|x| x.started == Duration::from_millis(1011)));
    }

    #[test]
    fn without_kills_every_failure_counts() {
        let failures = vec![f(1, 2, None)];
        let (in_flight, other) = classify(&failures, &[]);
        assert!(in_flight.is_empty());
        assert_eq!(other.len(), 1);
    }
}
