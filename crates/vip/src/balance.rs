//! The VIP that also load-balances (`cpe vip --load-balance`, issue 11): every agent runs
//! `cpe lb`'s load balancer in-process, all the time, on its own port (default 6444) —
//! same checks, retries, drain and fail-open rules — so its backends' health is warm
//! when this machine takes the VIP. Only the *steering* follows the VIP: on the holder,
//! nftables rules (`cpe-nft`) redirect TCP to VIP:port (prerouting, and output for this
//! machine's own clients) to that port. The driver installs them right after the address
//! is added and removes them right before it is removed; a start removes what an earlier
//! run left.
//!
//! In this mode the agent is healthy while its load balancer has at least one backend
//! `UP` ([`healthy`], pure): the holder's own API server dying costs no VIP move, its
//! load balancer retries on another backend.
//!
//! Its backends follow the cluster as `cpe lb --discover`'s do (`cpe_lb::discovery`: the
//! seeds and the cached set until a source answers, then the sources' sets; removed
//! backends drain, new ones get connections once their checks pass). The `etcd` source
//! asks through the agent's own etcd client, which follows etcd's member list
//! ([`crate::members`]); the cache is `vip-lb-PORT.json`.
//!
//! It does not decide when the VIP moves (that is [`crate::machine`]'s), and it does not
//! pick or discover backends (that is `cpe-lb`'s).

use crate::machine::Input;
use crate::tasks::Event;
use cpe_health::{Cause, State, Transition};
use cpe_lb::discovery::{decide::Origin, Discovery, DiscoveryError, Prepared, Timing};
use cpe_lb::{Lb, LbConfig, LbHandle};
use cpe_nft::{Family, Redirect};
use std::net::IpAddr;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What the load-balancing mode runs with (resolved by the CLI).
#[derive(Debug, Clone)]
pub struct LoadBalance {
    /// The VIP's port, redirected on the holder to the load balancer's (`lb.listen`).
    pub port: u16,
    /// The load balancer, as `cpe lb` would run it (`lb.discovery`: where its backends
    /// are learned; its etcd source uses the agent's client).
    pub lb: LbConfig,
    /// What the seeds (`lb.backends`) are: the definition's machines, or `--backend` and
    /// this node's own API server.
    pub seed_origin: Origin,
    /// Discovery's run-time knobs.
    pub timing: Timing,
}

/// Between two etcd member lists of the in-agent load balancer: as often as the agent
/// follows the member list for its own endpoints ([`crate::members::REFRESH`]).
pub const ETCD_INTERVAL: Duration = crate::members::REFRESH;

#[derive(Debug, thiserror::Error)]
pub enum BalanceError {
    #[error("load balancer: {0}")]
    Lb(#[from] cpe_lb::LbError),
    #[error("removing the redirect left by an earlier run: {0}")]
    Stale(cpe_nft::NftError),
    #[error("load balancer discovery: {0}")]
    Discovery(#[from] DiscoveryError),
}

/// How often the load balancer's backend states are read for the agent's health. The
/// states are atomics: reading them is a few loads.
const HEALTH_POLL: Duration = Duration::from_millis(20);

/// How long before the address's lifetime ends the redirect is removed: two of the
/// driver's ticks (50 ms), since the check runs on a tick.
const EXPIRY_MARGIN: Duration = Duration::from_millis(100);

/// The name the load balancer's health carries in logs and `/status`.
const NAME: &str = "load balancer";

/// Healthy while at least one backend is `UP` (pure).
pub fn healthy(states: &[(String, State)]) -> bool {
    states.iter().any(|(_, s)| *s == State::Up)
}

/// `2/3 backends up (cp1 down)`, for the health transition's detail.
pub fn describe(states: &[(String, State)]) -> String {
    let up = states.iter().filter(|(_, s)| *s == State::Up).count();
    let others: Vec<String> = states
        .iter()
        .filter(|(_, s)| *s != State::Up)
        .map(|(n, s)| format!("{n} {s}"))
        .collect();
    let mut d = format!("{up}/{} backends up", states.len());
    if !others.is_empty() {
        d.push_str(&format!(" ({})", others.join(", ")));
    }
    d
}

/// The running load balancer and the steering's state.
pub(crate) struct Balancer {
    handle: LbHandle,
    redirect: Redirect,
    /// Whether this process installed the redirect and has not removed it.
    steering: bool,
    /// When the kernel removes the address unless a renewal extends it (its lifetime):
    /// the redirect goes [`EXPIRY_MARGIN`] before, so it is never on without the address.
    until: Option<Instant>,
    stop: CancellationToken,
    task: JoinHandle<Result<(), cpe_lb::LbError>>,
    /// The running discovery (its tasks stop when it is dropped).
    discovery: Option<Discovery>,
}

impl Balancer {
    /// Removes a redirect an earlier run left (this process holds nothing yet), reads the
    /// discovery cache, binds the load balancer on the seeds and the cached set (first
    /// round of checks done), starts serving and discovering (`etcd`: the agent's client).
    pub(crate) async fn start(
        lb: &LoadBalance,
        vip: IpAddr,
        etcd: &cpe_election::Client,
    ) -> Result<Balancer, BalanceError> {
        let had = cpe_nft::remove_all().map_err(BalanceError::Stale)?;
        if !had.is_empty() {
            tracing::warn!(tables = ?had.iter().map(|f| f.as_str()).collect::<Vec<_>>(),
                "removed the VIP redirect an earlier run left (this agent holds no lease)");
        }
        let redirect = Redirect {
            vip,
            port: lb.port,
            to_port: lb.lb.listen.port(),
        };
        let prepared = match lb.lb.discovery.clone() {
            Some(d) => Some(
                Prepared::new(&lb.lb, d, lb.seed_origin, lb.timing)?.with_etcd_client(etcd.clone()),
            ),
            None => None,
        };
        let mut start = lb.lb.clone();
        if let Some(p) = &prepared {
            start.backends = p.start_set();
        }
        let bound = Lb::bind(start).await?;
        let handle = bound.handle();
        handle.set_seed_origin(lb.seed_origin);
        let discovery = prepared.map(|p| p.start(handle.clone()));
        let stop = CancellationToken::new();
        let task = tokio::spawn(bound.run(stop.clone().cancelled_owned()));
        tracing::info!(listen = %handle.local_addr(), steering = %redirect,
            "load balancer running; the redirect follows the VIP");
        Ok(Balancer {
            handle,
            redirect,
            steering: false,
            until: None,
            stop,
            task,
            discovery,
        })
    }

    /// Installs the redirect (after the address is added or extended, with the instant its
    /// lifetime ends). Repeating it only moves that instant.
    pub(crate) fn steer(&mut self, until: Option<Instant>) {
        self.until = until;
        if self.steering {
            return;
        }
        match cpe_nft::install(&self.redirect) {
            Ok(()) => {
                self.steering = true;
                tracing::info!(rule = %self.redirect, "redirect installed");
            }
            // The VIP still answers (the holder's own API server, if it listens on the
            // VIP): logged, and tried again at the next renewal.
            Err(e) => tracing::error!("cannot install the redirect: {e}; retrying"),
        }
    }

    /// Removes the redirect (before the address is removed). Always asks the kernel, so
    /// a redirect whose install raced an error is not left behind.
    pub(crate) fn unsteer(&mut self) {
        match cpe_nft::remove(Family::of(self.redirect.vip)) {
            Ok(had) => {
                if had || self.steering {
                    tracing::info!(rule = %self.redirect, "redirect removed");
                }
                self.steering = false;
            }
            Err(e) => tracing::error!("cannot remove the redirect: {e}"),
        }
    }

    /// The address's lifetime runs out without a renewal (the agent stalled, or etcd did
    /// not answer): the redirect goes first, as it would before a removal.
    pub(crate) fn expire(&mut self, now: Instant) {
        if self.steering && self.until.is_some_and(|u| now + EXPIRY_MARGIN >= u) {
            tracing::warn!("the address's lifetime runs out without a lease renewal: removing the redirect first");
            self.unsteer();
        }
    }

    pub(crate) fn handle(&self) -> LbHandle {
        self.handle.clone()
    }

    /// Stops accepting and drains (the load balancer's drain timeout).
    pub(crate) async fn stop(mut self) {
        // No set change while draining.
        self.discovery.take();
        self.stop.cancel();
        match self.task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("load balancer: {e}"),
            Err(e) => tracing::warn!("load balancer task: {e}"),
        }
    }
}

/// For the guard (the agent is gone): removes a redirect the agent left, if any (none
/// outside load-balancing mode, or after a clean exit). Errors are logged: the address
/// removal that follows matters more.
pub fn remove_left_redirect(vip: IpAddr) {
    match cpe_nft::remove(Family::of(vip)) {
        Ok(true) => {
            tracing::warn!(%vip, "cpe vip ended without removing its redirect (killed?): the guard removed it")
        }
        Ok(false) => {}
        Err(e) => tracing::error!("guard: cannot remove the redirect: {e}"),
    }
}

/// The agent's health in this mode: a transition whenever "some backend is up" changes
/// (the first reading is the first check), to the machine as any health transition.
pub(crate) async fn health_loop(handle: LbHandle, tx: mpsc::UnboundedSender<Event>) {
    let mut last: Option<bool> = None;
    let mut tick = tokio::time::interval(HEALTH_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let states = handle.states();
        let now = healthy(&states);
        if last == Some(now) {
            continue;
        }
        let state = |up| if up { State::Up } else { State::Down };
        let t = Transition {
            backend: NAME.into(),
            from: state(last.unwrap_or(now)),
            to: state(now),
            cause: if last.is_none() {
                Cause::FirstCheck
            } else {
                Cause::Probe
            },
            detail: describe(&states),
            at: Instant::now(),
        };
        last = Some(now);
        tracing::info!("health {t}");
        if tx.send(Event::Machine(Input::Health(t))).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(list: &[(&str, State)]) -> Vec<(String, State)> {
        list.iter().map(|(n, s)| (n.to_string(), *s)).collect()
    }

    #[test]
    fn healthy_while_one_backend_is_up() {
        assert!(healthy(&s(&[("a", State::Down), ("b", State::Up)])));
        assert!(!healthy(&s(&[
            ("a", State::Down),
            ("b", State::Recovering)
        ])));
        assert!(!healthy(&[]));
        // suspect, draining and maintenance get no new connections: not "up"
        assert!(!healthy(&s(&[
            ("a", State::Suspect),
            ("b", State::Draining),
            ("c", State::Maintenance)
        ])));
    }

    #[test]
    fn the_detail_names_the_backends_not_up() {
        assert_eq!(
            describe(&s(&[
                ("cp1", State::Down),
                ("cp2", State::Up),
                ("cp3", State::Up)
            ])),
            format!("2/3 backends up (cp1 {})", State::Down)
        );
        assert_eq!(describe(&s(&[("cp1", State::Up)])), "1/1 backends up");
    }
}
