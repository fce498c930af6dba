//! The reload driver: applies [`membership::diff`] (start the added backends' checkers,
//! swap the member list, retire the rest), swaps the check settings and timings, and runs
//! each retired backend's drain until [`membership::drain`] says it is over.
//!
//! The decisions are `membership.rs`'s; this module owns the tasks, the clock and the
//! tokens. It does not touch the listeners: what needs a restart is only reported.

use crate::backend::Backend;
use crate::membership::{self, Drain, Member};
use crate::metrics::ReloadLabel;
use crate::{LbConfig, LbError, Reloaded, Shared, Timing};
use cpe_health::{Check, Prober, Rules};
use prometheus_client::metrics::gauge::Gauge;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// How often a retired backend's open connections are counted during its drain.
const DRAIN_POLL: Duration = Duration::from_millis(100);

impl Shared {
    /// Swaps in a new definition (a SIGHUP): counted in the reload metrics, and the last
    /// reload error cleared. On error nothing changes.
    pub(crate) fn reload(self: &Arc<Self>, config: LbConfig) -> Result<Reloaded, LbError> {
        let out = self.swap(config)?;
        *self
            .last_reload_error
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = None;
        self.metrics
            .reloads
            .get_or_create(&ReloadLabel {
                result: "ok".into(),
            })
            .inc();
        Ok(out)
    }

    /// Swaps in a new definition (a reload, or a discovered set). On error nothing changes.
    pub(crate) fn swap(self: &Arc<Self>, config: LbConfig) -> Result<Reloaded, LbError> {
        if config.backends.is_empty() {
            return Err(LbError::NoBackends);
        }
        let prober = Prober::from_config(&config.health)?;
        let old = self.config();
        let mut out = Reloaded {
            needs_restart: membership::needs_restart(&old, &config),
            ..Reloaded::default()
        };
        self.check.send_replace(Check {
            prober,
            rules: Rules::from_config(&config.health),
            interval: config.health.interval,
        });
        self.timing.store(Arc::new(Timing::of(&config)));
        let current = self.members.load_full();
        let specs: Vec<_> = current.iter().map(|b| b.spec.clone()).collect();
        let diff = membership::diff(&specs, &config.backends);
        let next: Vec<Arc<Backend>> = diff
            .members
            .iter()
            .map(|m| match *m {
                Member::Keep(i) => {
                    out.kept.push(current[i].name.clone());
                    current[i].clone()
                }
                Member::Add(j) => {
                    let b = self.start_backend(config.backends[j].clone());
                    out.added.push(b.name.clone());
                    b
                }
            })
            .collect();
        self.members.store(Arc::new(next));
        for &i in &diff.retire {
            out.removed.push(current[i].name.clone());
            self.retire(current[i].clone(), config.drain_timeout);
        }
        *self.config.lock().unwrap_or_else(|e| e.into_inner()) = config;
        self.check_fallback();
        Ok(out)
    }

    /// A removed backend: no new connections (it is no longer a member), no more checks;
    /// its connections continue until they end or the drain timeout passes.
    fn retire(self: &Arc<Self>, b: Arc<Backend>, drain: Duration) {
        b.stop.cancel();
        let open = b.active.get();
        info!(backend = %b.name, open, drain_timeout = ?drain, "backend removed: draining its connections");
        self.retired
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(b.clone());
        let s = self.clone();
        tokio::spawn(async move {
            let end = drain_until(&b.active, Instant::now() + drain, &s.hard_stop).await;
            if end == Drain::Cut {
                warn!(backend = %b.name, open = b.active.get(), "drain timeout passed for a removed backend: closing its connections");
            }
            b.drain.cancel();
            s.retired
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|r| !Arc::ptr_eq(r, &b));
            if !s.members.load().iter().any(|m| m.name == b.name) {
                s.metrics.remove_backend(&b.name);
            }
        });
    }
}

/// Waits until the connections counted by `open` have ended ([`Drain::Done`]) or the
/// `deadline` passed with some still open ([`Drain::Cut`]), counting them every
/// [`DRAIN_POLL`]. The load balancer's own hard stop ends the wait early (as a cut, if
/// connections are open: they are being closed).
async fn drain_until(open: &Gauge, deadline: Instant, hard_stop: &CancellationToken) -> Drain {
    loop {
        match membership::drain(open.get(), Instant::now(), deadline) {
            Drain::Wait => {}
            end => return end,
        }
        tokio::select! {
            _ = tokio::time::sleep(DRAIN_POLL) => {}
            _ = hard_stop.cancelled() => {
                return match open.get() {
                    0 => Drain::Done,
                    _ => Drain::Cut,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The drain on a paused clock: it ends with the last connection, or at the
    /// deadline (within one poll) with connections still open.
    #[tokio::test(start_paused = true)]
    async fn a_drain_ends_with_the_last_connection_or_at_the_deadline() {
        let stop = CancellationToken::new();
        let open = Gauge::default();
        open.set(2);
        let t0 = Instant::now();
        let deadline = t0 + Duration::from_millis(800);
        assert_eq!(drain_until(&open, deadline, &stop).await, Drain::Cut);
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_millis(800) && took < Duration::from_millis(800) + DRAIN_POLL,
            "{took:?}"
        );

        // The connections end at 250 ms: the drain is over at the next count.
        let t0 = Instant::now();
        let gauge = open.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(250)).await;
            gauge.set(0);
        });
        let end = drain_until(&open, t0 + Duration::from_secs(30), &stop).await;
        assert_eq!(end, Drain::Done);
        assert_eq!(t0.elapsed(), Duration::from_millis(300));

        // No connection at all: over at once.
        let t0 = Instant::now();
        assert_eq!(
            drain_until(&open, t0 + Duration::from_secs(30), &stop).await,
            Drain::Done
        );
        assert_eq!(t0.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn the_load_balancers_hard_stop_ends_a_drain() {
        let stop = CancellationToken::new();
        let open = Gauge::default();
        open.set(1);
        let t0 = Instant::now();
        let s = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(150)).await;
            s.cancel();
        });
        let end = drain_until(&open, t0 + Duration::from_secs(30), &stop).await;
        assert_eq!(end, Drain::Cut);
        assert_eq!(t0.elapsed(), Duration::from_millis(150));
    }
}
