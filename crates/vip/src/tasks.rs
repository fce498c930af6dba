//! The agent's background tasks, each looping on one slow source and reporting to the
//! driver (`agent.rs`) through its channel as an [`Event`]: the health checker (cpe-health's
//! [`Checker`], the one the load balancer also runs), the lease keep-alive, the interface
//! poll, the etcd leader query, the read of the other agents' health and the election's
//! queue, while holding, the etcd-leadership check, and revoking a lease until etcd has.
//!
//! They decide nothing about the VIP (that is [`crate::machine`]'s, fed by the driver) and
//! the etcd-leadership rules are [`crate::etcd_leader`]'s: here is only the I/O, the
//! timing and the logging. A task ends when the driver's receiver is gone or when the
//! driver aborts it.

use crate::etcd_leader::{self, Decision, Mover};
use crate::machine::Input;
use crate::settings::HealthCheck;
use cpe_election::{Client, KeepAlive};
use cpe_health::{Check, Checker, Health, Target};
use cpe_net::Netlink;
use std::net::{IpAddr, SocketAddr};
use std::ops::ControlFlow;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// What the tasks report.
pub(crate) enum Event {
    Machine(Input),
    /// The campaign with this lease won (revoking the lease is how we resign).
    Elected(i64),
    /// A takeover probe finished: the MAC that answered for the VIP, if any.
    Probed(Option<String>),
    /// Who leads (the election value and lease), asked at the instant given.
    Leader(Result<Option<(String, i64)>, cpe_election::Error>, Instant),
    Renewal(Duration),
    /// A renewal got no answer from etcd (for the reachability metric; the machine acts
    /// on the deadline, not on this).
    RenewalFailed,
    /// The outcome of a leadership check while holding; `moved` when a transfer was done.
    EtcdLeader {
        detail: String,
        moved: bool,
    },
    /// The other agents' health and the election's queue (an error: not read this time).
    Peers(Result<crate::peers::PeerInfo, cpe_election::Error>),
    /// An operator's request from the admin listener.
    Command(crate::machine::Input),
}

/// Why one etcd-leadership check gave no answer (logged; the next check tries again).
#[derive(Debug, thiserror::Error)]
enum EtcdLeaderError {
    #[error(transparent)]
    Members(cpe_election::Error),
    #[error("the leader has no client URL")]
    NoLeaderUrl,
    #[error("moving etcd leadership from {from_name} ({from:x}) to {to_name} ({to:x}): {error}")]
    Move {
        from_name: String,
        from: u64,
        to_name: String,
        to: u64,
        error: cpe_election::Error,
    },
}

pub(crate) fn send(tx: &Option<mpsc::UnboundedSender<Event>>, ev: Event) {
    if let Some(tx) = tx {
        let _ = tx.send(ev);
    }
}

/// Renews `id` every quarter TTL; reports each success with the moment it was *sent*.
pub(crate) async fn keepalive_loop(
    etcd: Client,
    id: i64,
    ttl: Duration,
    tx: Option<mpsc::UnboundedSender<Event>>,
) {
    let every = (ttl / 4).max(Duration::from_millis(100));
    loop {
        tokio::time::sleep(every).await;
        let sent_at = Instant::now();
        match etcd.keep_alive(id).await {
            Ok(KeepAlive::Renewed(ttl)) => {
                send(&tx, Event::Renewal(sent_at.elapsed()));
                send(
                    &tx,
                    Event::Machine(Input::LeaseRenewed { id, ttl, sent_at }),
                );
            }
            Ok(KeepAlive::Gone) => {
                tracing::warn!("etcd says lease {id:x} is gone");
                send(&tx, Event::Machine(Input::LeaseGone { id }));
                return;
            }
            Err(e) => {
                tracing::warn!("lease {id:x} renewal failed: {e}");
                send(&tx, Event::RenewalFailed);
            }
        }
    }
}

/// The node's health checker: every transition (rise/fall applied, with its cause) goes
/// to the machine; the first 401/403 is logged once.
pub(crate) async fn health_loop(target: Target, hc: HealthCheck, tx: mpsc::UnboundedSender<Event>) {
    let checker = Checker::new(
        target,
        Check {
            prober: hc.prober,
            rules: hc.rules,
            interval: hc.interval,
        },
    );
    let health = Health::new(hc.target, Instant::now());
    checker
        .run(health, |round| {
            if round.step.first_unauthorized {
                tracing::warn!("health check answered {}: counted as alive (give a client certificate to check readiness)", round.observation.outcome);
            }
            match round.step.transition {
                Some(t) => {
                    tracing::info!("health {t}");
                    match tx.send(Event::Machine(Input::Health(t))) {
                        Ok(()) => ControlFlow::Continue(()),
                        Err(_) => ControlFlow::Break(()),
                    }
                }
                None => ControlFlow::Continue(()),
            }
        })
        .await;
}

/// Polls the interface every 200 ms: is it up, is the VIP on it.
pub(crate) async fn interface_loop(
    nl: Netlink,
    index: u32,
    name: String,
    vip: IpAddr,
    tx: mpsc::UnboundedSender<Event>,
) {
    let mut last_up = None;
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        match nl.state(index).await {
            Ok((up, addrs)) => {
                if last_up != Some(up) {
                    last_up = Some(up);
                    tracing::info!(interface = %name, up, "link state");
                    if tx.send(Event::Machine(Input::Link { up })).is_err() {
                        return;
                    }
                }
                let present = addrs.iter().any(|(a, _)| *a == vip);
                if tx.send(Event::Machine(Input::Address { present })).is_err() {
                    return;
                }
            }
            Err(e) => tracing::warn!(interface = %name, "{e}"),
        }
    }
}

/// Asks etcd who leads every 300 ms: for `/status`, and so that a holder whose election
/// key disappeared (etcd names someone else) drops at once.
pub(crate) async fn leader_loop(etcd: Client, name: String, tx: mpsc::UnboundedSender<Event>) {
    loop {
        let sent_at = Instant::now();
        let r = etcd
            .leader(&name)
            .await
            .map(|l| l.map(|l| (l.value, l.lease)));
        if tx.send(Event::Leader(r, sent_at)).is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// While this node holds the VIP: right after it starts holding, then every 2 s, checks
/// which etcd member leads and, if it is this machine's, hands leadership to another
/// started, healthy member (the rules are [`Mover`]'s). Each check is bounded (3 s); it
/// only reports back.
pub(crate) async fn etcd_leader_loop(
    etcd: Client,
    mut holding: tokio::sync::watch::Receiver<bool>,
    tx: mpsc::UnboundedSender<Event>,
) {
    const EVERY: Duration = Duration::from_secs(2);
    const BOUND: Duration = Duration::from_secs(3);
    let mut mover = Mover::new();
    loop {
        if !*holding.borrow_and_update() {
            mover.holding_again();
            while !*holding.borrow_and_update() {
                if holding.changed().await.is_err() {
                    return;
                }
            }
        }
        let (detail, moved) =
            match tokio::time::timeout(BOUND, move_etcd_leader_once(&etcd, &mut mover)).await {
                Ok(Ok((d, moved))) => {
                    if moved {
                        tracing::info!("{d}");
                    } else {
                        tracing::debug!("{d}");
                    }
                    (d, moved)
                }
                Ok(Err(e)) => {
                    mover.check_failed();
                    let d = format!("cannot check the etcd leader: {e}");
                    tracing::warn!("{d}");
                    (d, false)
                }
                Err(_) => {
                    mover.check_failed();
                    let d = format!("etcd leader check: no result within {BOUND:?}");
                    tracing::warn!("{d}");
                    (d, false)
                }
            };
        if tx.send(Event::EtcdLeader { detail, moved }).is_err() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            r = holding.changed() => if r.is_err() { return },
        }
    }
}

/// One check: member list, every started member's status (in parallel), the decision,
/// and the transfer if needed. Returns the sentence to log and whether it moved.
async fn move_etcd_leader_once(
    etcd: &Client,
    mover: &mut Mover,
) -> Result<(String, bool), EtcdLeaderError> {
    let members = etcd.members().await.map_err(EtcdLeaderError::Members)?;
    let mut set = tokio::task::JoinSet::new();
    for (i, m) in members.iter().enumerate() {
        if let Some(url) = m.client_urls.first().cloned() {
            let etcd = etcd.clone();
            set.spawn(async move { (i, etcd.status_at(&url).await) });
        }
    }
    let mut statuses = vec![None; members.len()];
    while let Some(r) = set.join_next().await {
        if let Ok((i, Ok(s))) = r {
            statuses[i] = Some(s);
        }
    }
    let leader = etcd_leader::leader_by_votes(statuses.iter().flatten().map(|s| s.leader));
    let views = etcd_leader::views(&members, &statuses, leader, is_local);
    let name = |id: u64| {
        views
            .iter()
            .find(|v| v.id == id)
            .map_or_else(|| "?".to_string(), |v| v.name.clone())
    };
    Ok(match mover.next(leader, &views) {
        Decision::NoLeader => ("etcd has no leader now (an election is running)".into(), false),
        Decision::LeaderElsewhere => (
            format!("etcd leader {} ({leader:x}) is not on this machine", name(leader)),
            false,
        ),
        Decision::NoTarget => (
            format!(
                "etcd leader {} ({leader:x}) is on this machine, but no other member is started and healthy to take over",
                name(leader)
            ),
            false,
        ),
        Decision::WaitOneCheck { from } => (
            format!(
                "etcd leader {} ({from:x}) is on this machine since the last check: moving it at the next one",
                name(from)
            ),
            false,
        ),
        Decision::Move { from, to } => {
            let url = members
                .iter()
                .find(|m| m.id == from)
                .and_then(|m| m.client_urls.first())
                .ok_or(EtcdLeaderError::NoLeaderUrl)?;
            etcd.move_leader(url, to)
                .await
                .map_err(|error| EtcdLeaderError::Move {
                    from_name: name(from),
                    from,
                    to_name: name(to),
                    to,
                    error,
                })?;
            (
                format!(
                    "moved etcd leadership from {} ({from:x}) to {} ({to:x}): the VIP holder's machine no longer leads etcd",
                    name(from),
                    name(to)
                ),
                true,
            )
        }
    })
}

/// Whether a client URL's host is an address of this machine (its network namespace):
/// binding to it succeeds only then. Loopback and names are not counted, as they say
/// nothing about which machine a member runs on.
fn is_local(url: &str) -> bool {
    let Ok(u) = cpe_election::EndpointUrl::parse(url) else {
        return false;
    };
    match u.host.parse::<IpAddr>() {
        Ok(ip) if !ip.is_loopback() && !ip.is_unspecified() => {
            std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
        }
        _ => false,
    }
}

/// Reads every agent's published health, the election's queue and the holder's handover
/// target every 100 ms (three reads, in parallel), for the machine's fail-open and
/// handover rules and for `/status`.
pub(crate) async fn peers_loop(
    etcd: Client,
    node: String,
    election: String,
    tx: mpsc::UnboundedSender<Event>,
) {
    use crate::peers::{self, PeerInfo};
    let (qp, hp, pk) = (
        peers::queue_prefix(&election),
        peers::health_prefix(&election),
        peers::prefer_key(&election),
    );
    loop {
        let (queue, health, prefer) = tokio::join!(
            etcd.range_prefix(&qp),
            etcd.range_prefix(&hp),
            etcd.range_prefix(&pk),
        );
        let view = match (queue, health, prefer) {
            (Ok(q), Ok(h), Ok(p)) => Ok(PeerInfo::read(
                &node,
                &election,
                &q,
                &h,
                p.iter().find(|kv| kv.key == pk),
            )),
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => Err(e),
        };
        if tx.send(Event::Peers(view)).is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Puts `key` = `value` under `lease`, three tries 200 ms apart (this node's health, the
/// holder's handover target); a last failure is logged, and the next change (or the next
/// read-back that finds the key missing) puts it again.
pub(crate) async fn put_retrying(etcd: Client, key: String, value: String, lease: i64) {
    for attempt in 0..3 {
        match etcd.put(&key, &value, lease).await {
            Ok(()) => return,
            Err(e) if attempt == 2 => {
                tracing::warn!("cannot write {key} under lease {lease:x}: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// How long a lease this agent gave up is revoked for before it is left to expire.
pub(crate) const REVOKE_FOR: Duration = Duration::from_secs(120);

/// Revokes a lease this agent gave up (a resigned holder's, an abandoned campaign's), again
/// and again while etcd cannot answer (an election, a member cut off), for up to
/// [`REVOKE_FOR`]. Leaving it "to expire on its own" is not enough: etcd 3.4 queues lease
/// expiries by the wall clock (`LeaseWithTime.time = expiry.UnixNano()`), so after the
/// host's clock steps back a lease nobody renews outlives its TTL by the step, and its
/// election key keeps every candidate behind it waiting (a 31 s stretch with no holder in
/// a chaos run, docs/chaos.md). A revoked lease takes its key at once.
pub(crate) async fn revoke_until_done(etcd: Client, id: i64) {
    let start = Instant::now();
    let mut wait = Duration::from_millis(250);
    let mut tries = 0u32;
    loop {
        tries += 1;
        match etcd.revoke(id).await {
            Ok(()) if tries == 1 => return,
            Ok(()) => {
                tracing::info!("lease {id:x} revoked (try {tries})");
                return;
            }
            Err(e) if !e.is_retryable() => {
                tracing::warn!("cannot revoke lease {id:x}: {e} (left to expire)");
                return;
            }
            Err(e) if start.elapsed() >= REVOKE_FOR => {
                tracing::warn!(
                    "cannot revoke lease {id:x} after {tries} tries in {:?}: {e} (left to expire)",
                    REVOKE_FOR
                );
                return;
            }
            Err(e) => {
                if tries == 1 {
                    tracing::warn!(
                        "cannot revoke lease {id:x} yet: {e}; trying again until etcd answers"
                    );
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            }
        }
    }
}
