//! The driver: owns the clock, the sockets and the etcd client, feeds the
//! [`Machine`](crate::machine::Machine) what it observes and performs the actions it returns,
//! in order. Slow work (grant, keep-alive, campaign, probe, revoke, health probes, the
//! interface poll) runs in tasks that report back through one channel, so the loop never
//! waits on the network; address changes and announcements are done inline because their
//! order is the safety argument (the address is removed before the lease is released).
//!
//! Health is cpe-health's [`Checker`](cpe_health::Checker), the one the load balancer
//! also runs per backend: each transition, with its cause and what was seen, goes to the
//! machine as it is. The tasks themselves are in `tasks.rs`.
//!
//! Start-up checks everything it can before touching anything: capabilities, the
//! interface, the VIP inside the interface's subnet, TLS files, the admin port. A VIP left
//! on the interface by an earlier run is removed (this process holds no lease yet). On
//! every way out — SIGTERM, an error — the address is removed before returning.
//!
//! The etcd endpoints follow etcd's member list (`crate::members`, a task of its own that
//! swaps the client's endpoints; `/status.etcd_endpoints` shows the current list).
//!
//! While holding, a separate task keeps etcd's raft leader off this machine (right after
//! acquiring, then every 2 s; `--etcd-move-leader off` disables it): the rules are
//! [`crate::etcd_leader`]'s (the vote, the decision, the one-check wait); the task asks
//! etcd, performs the transfer and only reports, so a slow or failing etcd never delays
//! the VIP.
//!
//! The address goes on with a lifetime ending no later than the lease deadline the machine
//! gives (`cpe_net::Lifetime::within`), extended at every renewal, so the kernel removes it
//! at the deadline even when this process is frozen or killed with its guard. The election
//! value carries this node's name and MAC ([`ElectionValue`]); a takeover probe answered by
//! the previous holder's MAC is reported to the machine as such, not as a stranger.
//!
//! Beside the election it publishes this node's health under its lease, reads every
//! agent's back with the election's queue ([`crate::peers`], for the machine's fail-open
//! and handover rules), performs the operator's handovers (`POST /resign`, `/prefer`:
//! [`crate::actions`]), and tells the guard which lease and election key are its own, so
//! that the guard can release them after a SIGKILL ([`crate::guard`]).
//!
//! It does not parse or validate settings ([`crate::settings`]) and holds no rule of the
//! holder's: those are [`crate::machine`]'s.

use crate::machine::{Action, Config, Input, Machine, Role, Transition};
use crate::metrics::Metrics;
use crate::status::{ElectionValue, Holder, Snapshot, StatusCell};
use crate::tasks::{self, send, Event};
use cpe_health::{State as HealthState, Target};
use cpe_net::{Announcer, Interface, Lifetime, Netlink};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use crate::settings::{HealthCheck, Settings};

/// What the driver writes beside the election: this node's health, the guard's line.
mod beside;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("cpe vip needs {0}: run it as root or grant the capabilities (e.g. AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW in its systemd unit)")]
    Capabilities(String),
    #[error(transparent)]
    Net(#[from] cpe_net::NetError),
    #[error("the VIP {vip} is not inside the subnet of any address on `{interface}` (it has: {present}): every control-plane machine must have an address in the VIP's subnet on that interface")]
    NotInSubnet {
        vip: IpAddr,
        interface: String,
        present: String,
    },
    #[error("metrics listener {addr}: {source}")]
    Metrics {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("admin listener {addr}: {source}")]
    Admin {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("health check {0}: no address to probe (give an address or a URL)")]
    HealthTarget(String),
    #[error(transparent)]
    Balance(#[from] crate::balance::BalanceError),
}

/// Runs the agent until `shutdown` completes, then hands the VIP over (remove the
/// address, revoke the lease) and returns. Returns an error only for start-up problems;
/// once running, failures are states (waiting for etcd, unhealthy, ...), not exits.
pub async fn run(settings: Settings, shutdown: impl Future<Output = ()>) -> Result<(), AgentError> {
    run_with(settings, None, shutdown).await
}

/// As [`run`], telling the guard whose stdin is `guard` (see [`crate::guard::spawn`])
/// which lease and election key are this agent's, whenever they change.
pub async fn run_with(
    settings: Settings,
    guard: Option<std::process::ChildStdin>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    let missing = cpe_net::missing_capabilities();
    if !missing.is_empty() {
        return Err(AgentError::Capabilities(missing.join(" and ")));
    }
    let health_target = settings
        .health
        .checker_target()
        .ok_or_else(|| AgentError::HealthTarget(settings.health.target.clone()))?;
    let nl = Netlink::connect()?;
    let iface = nl.interface(&settings.interface).await?;
    let others: Vec<(IpAddr, u8)> = iface
        .addrs
        .iter()
        .copied()
        .filter(|(a, _)| *a != settings.vip)
        .collect();
    if cpe_net::covering_subnet(settings.vip, &others).is_none() {
        return Err(AgentError::NotInSubnet {
            vip: settings.vip,
            interface: settings.interface.clone(),
            present: if others.is_empty() {
                "no address".into()
            } else {
                others
                    .iter()
                    .map(|(a, p)| format!("{a}/{p}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        });
    }
    if iface.addrs.iter().any(|(a, _)| *a == settings.vip) {
        tracing::warn!(vip = %settings.vip, interface = %iface.name,
            "the VIP is on the interface but this agent holds no lease (left by an earlier run?): removing it");
        nl.remove(iface.index, settings.vip).await?;
    }
    let announcer = Announcer::new(iface.index, iface.mac, settings.vip)?;
    // Load-balancing mode: the load balancer runs from now on; the redirect follows the VIP.
    let balancer = match &settings.load_balance {
        Some(lb) => Some(crate::balance::Balancer::start(lb, settings.vip, &settings.etcd).await?),
        None => None,
    };

    let metrics = Arc::new(Metrics::new());
    let status = StatusCell::new(Snapshot::initial(&settings));
    let metrics_listener = match settings.metrics {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| AgentError::Metrics { addr, source })?,
        ),
        None => None,
    };
    let (events, events_rx) = mpsc::unbounded_channel();
    let (admin_stop, admin_task) = match settings.admin {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| AgentError::Admin { addr, source })?;
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let handler = crate::status::handler(
                status.clone(),
                metrics.clone(),
                balancer.as_ref().map(|b| b.handle()),
            );
            let actions = crate::actions::actions(status.clone(), events.clone());
            let options = cpe_admin::Options::with_token(settings.admin_token.clone());
            let task = tokio::spawn(cpe_admin::serve_with(
                listener,
                handler,
                Some(actions),
                options,
                async {
                    let _ = rx.await;
                },
            ));
            (Some(tx), Some(task))
        }
        None => (None, None),
    };

    // Stopped with the admin listener (same shutdown signal below).
    let metrics_stop = tokio_util::sync::CancellationToken::new();
    let metrics_task = metrics_listener.map(|l| {
        tokio::spawn(cpe_admin::serve_metrics(
            l,
            crate::status::handler(
                status.clone(),
                metrics.clone(),
                balancer.as_ref().map(|b| b.handle()),
            ),
            metrics_stop.clone().cancelled_owned(),
        ))
    });

    tracing::info!(node = %settings.node, vip = %format!("{}/{}", settings.vip, settings.prefix_len),
        interface = %iface.name, mac = %iface.mac, etcd = ?settings.etcd.endpoints(),
        election = %settings.election, lease_ttl = ?settings.lease_ttl, health = %settings.health.target,
        "cpe vip starting");

    let mut driver = Driver {
        machine: Machine::new(Config::new(settings.lease_ttl), Instant::now()),
        settings,
        nl,
        iface,
        announcer,
        metrics,
        status,
        tx: None,
        holding_tx: tokio::sync::watch::channel(false).0,
        keepalive: None,
        campaign: None,
        revokes: Vec::new(),
        address_added: false,
        holder_seen: Holder::NotAsked,
        previous_holder: None,
        wall_since: SystemTime::now(),
        last_transition_wall: None,
        balancer,
        guard,
        guard_told: None,
        published_health: None,
        health_since_wall: SystemTime::now(),
        health_seen: None,
        fail_open_seen: false,
    };
    let result = driver.run(health_target, events, events_rx, shutdown).await;
    driver.tell_guard(None);
    // Whatever happened, no VIP stays behind.
    driver.ensure_removed().await;
    if let Some(b) = driver.balancer.take() {
        b.stop().await;
    }
    if let Some(tx) = admin_stop {
        let _ = tx.send(());
    }
    if let Some(t) = admin_task {
        let _ = t.await;
    }
    metrics_stop.cancel();
    if let Some(t) = metrics_task {
        let _ = t.await;
    }
    result
}

struct Driver {
    machine: Machine,
    settings: Settings,
    nl: Netlink,
    iface: Interface,
    announcer: Announcer,
    metrics: Arc<Metrics>,
    status: StatusCell,
    tx: Option<mpsc::UnboundedSender<Event>>,
    /// Whether this node holds the VIP, for the etcd-leader task.
    holding_tx: tokio::sync::watch::Sender<bool>,
    /// The keep-alive loop and the lease it renews.
    keepalive: Option<(i64, JoinHandle<()>)>,
    /// The campaign in flight; aborting it closes its connection and etcd cancels it.
    campaign: Option<JoinHandle<()>>,
    /// Revocations in flight; awaited (bounded) before exit.
    revokes: Vec<JoinHandle<()>>,
    /// Whether this process put the address on the interface and has not removed it.
    address_added: bool,
    holder_seen: Holder,
    /// The last other node seen leading, with the MAC it published: a probe answered by
    /// that MAC is the previous holder whose address lifetime has not run out.
    previous_holder: Option<(String, String)>,
    wall_since: SystemTime,
    last_transition_wall: Option<(Transition, SystemTime)>,
    /// Load-balancing mode: the load balancer and the redirect ([`crate::balance`]).
    balancer: Option<crate::balance::Balancer>,
    /// The guard's stdin, and the lease last told to it.
    guard: Option<std::process::ChildStdin>,
    guard_told: Option<Option<i64>>,
    /// What was last published as this node's health: lease, healthy, state.
    published_health: Option<(i64, bool, String)>,
    /// When the health last changed (wall clock, for the published value), and to what.
    health_since_wall: SystemTime,
    health_seen: Option<(bool, String)>,
    /// Whether fail-open was in force at the last step (logged on change).
    fail_open_seen: bool,
}

impl Driver {
    async fn run(
        &mut self,
        health: Target,
        tx: mpsc::UnboundedSender<Event>,
        mut rx: mpsc::UnboundedReceiver<Event>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), AgentError> {
        self.tx = Some(tx.clone());
        let mut background = vec![
            match &self.balancer {
                Some(b) => tokio::spawn(crate::balance::health_loop(b.handle(), tx.clone())),
                None => tokio::spawn(tasks::health_loop(
                    health,
                    self.settings.health.clone(),
                    tx.clone(),
                )),
            },
            tokio::spawn(tasks::interface_loop(
                self.nl.clone(),
                self.iface.index,
                self.settings.interface.clone(),
                self.settings.vip,
                tx.clone(),
            )),
            tokio::spawn(tasks::leader_loop(
                self.settings.etcd.clone(),
                self.settings.election.clone(),
                tx.clone(),
            )),
            tokio::spawn(tasks::peers_loop(
                self.settings.etcd.clone(),
                self.settings.node.clone(),
                self.settings.election.clone(),
                tx.clone(),
            )),
        ];
        if self.settings.etcd_follow_members {
            let own: Vec<IpAddr> = self.iface.addrs.iter().map(|(a, _)| *a).collect();
            background.push(tokio::spawn(crate::members::follow(
                self.settings.etcd.clone(),
                own,
            )));
        }
        if self.settings.etcd_move_leader {
            background.push(tokio::spawn(tasks::etcd_leader_loop(
                self.settings.etcd.clone(),
                self.holding_tx.subscribe(),
                tx.clone(),
            )));
        }
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let input = tokio::select! {
                biased;
                _ = &mut shutdown => {
                    tracing::info!("shutdown requested: handing the VIP over");
                    Input::Shutdown
                }
                ev = rx.recv() => match ev {
                    Some(Event::Machine(i)) => {
                        match &i {
                            Input::LeaseGranted { .. } => { self.metrics.etcd_reachable.set(1); }
                            Input::LeaseGrantFailed { .. } => { self.metrics.etcd_reachable.set(0); }
                            _ => {}
                        }
                        i
                    }
                    Some(Event::Elected(lease)) => {
                        self.campaign = None;
                        Input::Elected { lease }
                    }
                    Some(Event::Probed(mac)) => self.probe_answer(mac),
                    Some(Event::Leader(l, sent_at)) => match l {
                        Ok(Some((value, lease))) => {
                            self.metrics.etcd_reachable.set(1);
                            let v = ElectionValue::parse(&value);
                            if let (true, Some(mac)) = (v.node != self.settings.node, &v.mac) {
                                self.previous_holder = Some((v.node.clone(), mac.clone()));
                            }
                            self.holder_seen = Holder::Node(v.node);
                            Input::LeaderSeen { lease: Some(lease), sent_at }
                        }
                        Ok(None) => {
                            self.metrics.etcd_reachable.set(1);
                            self.holder_seen = Holder::Nobody;
                            Input::LeaderSeen { lease: None, sent_at }
                        }
                        Err(e) => {
                            self.metrics.etcd_reachable.set(0);
                            self.holder_seen = Holder::Unknown(e.to_string());
                            self.publish();
                            continue
                        }
                    },
                    Some(Event::Renewal(d)) => { self.metrics.renewed(d); continue }
                    Some(Event::RenewalFailed) => { self.metrics.etcd_reachable.set(0); continue }
                    Some(Event::Peers(Ok(view))) => {
                        // Our own key missing or stale (a put lost to an etcd hiccup):
                        // publish again, or the others would take us for unhealthy.
                        let mine = view.health.iter().find(|p| p.node == self.settings.node);
                        if self.machine.lease().is_some()
                            && mine.is_none_or(|p| p.healthy != self.machine.healthy())
                        {
                            self.published_health = None;
                        }
                        let mut snap = self.status.get();
                        snap.peers = crate::status::PeerRow::from_view(&view);
                        snap.peers_error = None;
                        self.status.set(snap);
                        Input::Peers(view)
                    }
                    Some(Event::Peers(Err(e))) => {
                        let mut snap = self.status.get();
                        snap.peers_error = Some(e.to_string());
                        self.status.set(snap);
                        continue
                    }
                    Some(Event::Command(i)) => {
                        tracing::info!(?i, "operator request");
                        i
                    }
                    Some(Event::EtcdLeader { detail, moved }) => {
                        let mut snap = self.status.get();
                        if moved {
                            self.metrics.etcd_leader_moves.inc();
                            snap.etcd_leader_moves += 1;
                        }
                        snap.etcd_leader = Some(detail);
                        self.status.set(snap);
                        continue
                    }
                    None => Input::Shutdown,
                },
                _ = tick.tick() => Input::Tick,
            };
            let stop = self.step(input).await;
            if stop {
                break;
            }
        }
        for t in background {
            t.abort();
        }
        // Let revocations finish so the next machine is elected at once.
        let pending = std::mem::take(&mut self.revokes);
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            for t in pending {
                let _ = t.await;
            }
        })
        .await;
        Ok(())
    }

    /// What a takeover probe's answer means: nobody, the previous holder (its published
    /// MAC: its address lifetime has not run out yet), or a host outside the cluster.
    fn probe_answer(&self, mac: Option<String>) -> Input {
        let vip = self.settings.vip;
        match (mac, &self.previous_holder) {
            (None, _) => Input::ProbeDone { foreign_mac: None },
            (Some(m), Some((node, prev))) if prev.eq_ignore_ascii_case(&m) => {
                tracing::warn!(%vip, "{node} ({m}) still answers for the VIP: waiting for its address lifetime to end");
                Input::PreviousHolderAnswers {
                    node: node.clone(),
                    mac: m,
                }
            }
            (Some(m), _) => {
                tracing::error!(%vip, mac = %m,
                    "a host outside the cluster answers for the VIP: not taking it (find the host with MAC {m} and remove the address from it)");
                Input::ProbeDone {
                    foreign_mac: Some(m),
                }
            }
        }
    }

    /// Puts the VIP on with a lifetime ending no later than `until` (the lease deadline);
    /// nothing when less than a second is left. Returns the lifetime given.
    async fn add_until(&mut self, until: Instant) -> Option<Lifetime> {
        let Some(lifetime) = Lifetime::within(until.saturating_duration_since(Instant::now()))
        else {
            tracing::debug!("less than a second of lease left: the address is not (re)added");
            return None;
        };
        match self
            .nl
            .add_for(
                self.iface.index,
                self.settings.vip,
                self.settings.prefix_len,
                lifetime,
            )
            .await
        {
            Ok(()) => {
                self.address_added = true;
                // The redirect goes on after the address (a no-op once installed).
                if let Some(b) = &mut self.balancer {
                    b.steer(match lifetime {
                        Lifetime::Seconds(s) => {
                            Some(Instant::now() + Duration::from_secs(s.into()))
                        }
                        Lifetime::Forever => None,
                    });
                }
                Some(lifetime)
            }
            Err(e) => {
                tracing::error!("cannot add the VIP: {e}; retrying");
                None
            }
        }
    }

    /// Feeds one input and performs the actions. Returns true on `Exit`.
    async fn step(&mut self, input: Input) -> bool {
        if let Input::Health(t) = &input {
            self.metrics.healthy.set((t.to == HealthState::Up) as i64);
        }
        let now = Instant::now();
        if let Some(b) = &mut self.balancer {
            b.expire(now);
        }
        let out = self.machine.handle(now, input);
        if let Some(t) = &out.transition {
            self.on_transition(t);
        }
        let mut exit = false;
        for a in out.actions {
            if self.perform(a).await {
                exit = true;
            }
        }
        self.sync_keepalive();
        self.publish_health();
        let lease = self.machine.lease().map(|l| l.id);
        self.tell_guard(lease);
        let fail_open = self.machine.fail_open() && self.address_added;
        if fail_open != self.fail_open_seen {
            self.fail_open_seen = fail_open;
            self.metrics.fail_open.set(fail_open as i64);
            if fail_open {
                tracing::error!(node = %self.settings.node, vip = %self.settings.vip,
                    "FAIL OPEN: keeping the VIP although this node's health check fails ({}): no other candidate is healthy",
                    self.machine.health().map_or_else(|| "not checked".to_string(), |t| t.to_string()));
            } else {
                tracing::warn!(node = %self.settings.node, vip = %self.settings.vip,
                    "fail open over: healthy again, or the VIP was handed to a healthy candidate");
            }
        }
        let holding = self.address_added && self.machine.role() == Role::Holder;
        self.holding_tx
            .send_if_modified(|h| std::mem::replace(h, holding) != holding);
        self.revokes.retain(|t| !t.is_finished());
        self.publish();
        exit
    }

    fn on_transition(&mut self, t: &Transition) {
        let wall = SystemTime::now();
        self.wall_since = wall;
        self.last_transition_wall = Some((t.clone(), wall));
        self.metrics.transition(t.to.as_str(), t.reason.label());
        self.metrics.holder.set((t.to == Role::Holder) as i64);
        let level_warn = matches!(t.to, Role::Waiting | Role::Suspended)
            && matches!(t.from, Role::Suspended | Role::Acquiring | Role::Holder);
        if level_warn {
            tracing::warn!(node = %self.settings.node, vip = %self.settings.vip,
                "{}->{} ({})", t.from, t.to, t.reason);
        } else {
            tracing::info!(node = %self.settings.node, vip = %self.settings.vip,
                "{}->{} ({})", t.from, t.to, t.reason);
        }
    }

    async fn perform(&mut self, action: Action) -> bool {
        tracing::debug!(?action, "action");
        match action {
            Action::GrantLease => {
                let etcd = self.settings.etcd.clone();
                let ttl = self.settings.lease_ttl;
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    let sent_at = Instant::now();
                    let input = match etcd.grant(ttl).await {
                        Ok(l) => Input::LeaseGranted {
                            id: l.id,
                            ttl: l.ttl,
                            sent_at,
                        },
                        Err(e) => {
                            tracing::warn!(
                                "cannot get a lease: {e}; retrying with back-off, holding nothing"
                            );
                            Input::LeaseGrantFailed {
                                error: e.to_string(),
                            }
                        }
                    };
                    send(&tx, Event::Machine(input));
                });
            }
            Action::Campaign { lease } => {
                if let Some(c) = self.campaign.take() {
                    c.abort();
                }
                let etcd = self.settings.etcd.clone();
                let name = self.settings.election.clone();
                let node = ElectionValue {
                    node: self.settings.node.clone(),
                    mac: Some(self.iface.mac.to_string()),
                }
                .encode();
                let tx = self.tx.clone();
                self.campaign = Some(tokio::spawn(async move {
                    let failures = etcd.failures();
                    let watch = async {
                        // A campaign blocked on a member that went silent never returns:
                        // when any call to any member fails, start over elsewhere.
                        loop {
                            tokio::time::sleep(Duration::from_millis(250)).await;
                            if etcd.failures() != failures {
                                return;
                            }
                        }
                    };
                    let ev = tokio::select! {
                        r = etcd.campaign(&name, lease, &node) => match r {
                            Ok(key) => Event::Elected(key.lease),
                            Err(e) => Event::Machine(Input::CampaignFailed { lease, error: e.to_string() }),
                        },
                        _ = watch => Event::Machine(Input::CampaignFailed {
                            lease,
                            error: "an etcd member failed; campaigning again".into(),
                        }),
                    };
                    send(&tx, ev);
                }));
            }
            Action::CancelCampaign => {
                if let Some(c) = self.campaign.take() {
                    c.abort();
                }
            }
            Action::Probe => {
                let (index, mac, vip) = (self.iface.index, self.iface.mac, self.settings.vip);
                let wait = self.settings.probe_wait;
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    let answered = match cpe_net::probe(index, mac, vip, wait).await {
                        Ok(m) => m.map(|m| m.to_string()),
                        Err(e) => {
                            tracing::warn!("probe for a foreign holder failed: {e}; going ahead");
                            None
                        }
                    };
                    send(&tx, Event::Probed(answered));
                });
            }
            Action::AddAddress { until } => {
                if let Some(Lifetime::Seconds(s)) = self.add_until(until).await {
                    tracing::info!(vip = %self.settings.vip, interface = %self.iface.name,
                        "address added (lifetime {s} s, extended at every lease renewal)");
                }
            }
            Action::ExtendAddress { until } => {
                if let Some(l) = self.add_until(until).await {
                    tracing::trace!(?l, "address lifetime extended");
                }
            }
            Action::Announce => match self.announcer.announce() {
                Ok(()) => {
                    self.metrics.announcements.inc();
                }
                Err(e) => tracing::warn!("{e}"),
            },
            Action::RemoveAddress => self.remove_address().await,
            Action::RevokeLease { id } => {
                if self.keepalive.as_ref().is_some_and(|(k, _)| *k == id) {
                    if let Some((_, t)) = self.keepalive.take() {
                        t.abort();
                    }
                }
                let etcd = self.settings.etcd.clone();
                self.revokes
                    .push(tokio::spawn(tasks::revoke_until_done(etcd, id)));
            }
            Action::PublishPreference { to } => {
                if let Some(lease) = self.machine.lease().map(|l| l.id) {
                    tracing::info!("handing the VIP over to {to}: published, waiting for it to be next in the election");
                    tokio::spawn(tasks::put_retrying(
                        self.settings.etcd.clone(),
                        crate::peers::prefer_key(&self.settings.election),
                        to,
                        lease,
                    ));
                }
            }
            Action::Exit => return true,
        }
        false
    }

    async fn remove_address(&mut self) {
        // The redirect goes before the address.
        if let Some(b) = &mut self.balancer {
            b.unsteer();
        }
        match self.nl.remove(self.iface.index, self.settings.vip).await {
            Ok(true) => {
                self.address_added = false;
                tracing::info!(vip = %self.settings.vip, interface = %self.iface.name, "address removed");
            }
            Ok(false) => {
                self.address_added = false;
                tracing::info!(vip = %self.settings.vip, interface = %self.iface.name,
                    "address already gone (its lifetime ran out, or someone removed it)");
            }
            Err(e) => tracing::error!("cannot remove the VIP: {e}"),
        }
    }

    async fn ensure_removed(&mut self) {
        if let Some(b) = &mut self.balancer {
            b.unsteer();
        }
        if self.address_added {
            self.remove_address().await;
        }
    }

    /// Keeps exactly one keep-alive loop, for the lease the machine holds.
    fn sync_keepalive(&mut self) {
        let want = self.machine.lease().map(|l| (l.id, l.ttl));
        match (want, &self.keepalive) {
            (Some((id, _)), Some((k, _))) if *k == id => {}
            (Some((id, ttl)), _) => {
                if let Some((_, t)) = self.keepalive.take() {
                    t.abort();
                }
                let etcd = self.settings.etcd.clone();
                let tx = self.tx.clone();
                self.keepalive = Some((id, tokio::spawn(tasks::keepalive_loop(etcd, id, ttl, tx))));
            }
            (None, Some(_)) => {
                if let Some((_, t)) = self.keepalive.take() {
                    t.abort();
                }
            }
            (None, None) => {}
        }
    }

    fn publish(&self) {
        let now = Instant::now();
        let m = &self.machine;
        self.metrics
            .set_lease_deadline(m.lease().map(|l| l.deadline));
        let snap = Snapshot {
            role: m.role(),
            holding: self.address_added,
            since: self.wall_since,
            holder: self.holder_seen.clone(),
            last_transition: self.last_transition_wall.clone(),
            lease: m
                .lease()
                .map(|l| (l.id, l.ttl, l.deadline.saturating_duration_since(now))),
            healthy: m.healthy(),
            health_detail: m
                .health()
                .map_or_else(|| "not checked yet".to_string(), |t| t.to_string()),
            waiting_for: m.waiting_for().map(str::to_string),
            foreign_mac: m.foreign_mac().map(str::to_string),
            transitions: self.metrics.transitions_total(),
            // Kept current by the member-list task (`crate::members`).
            etcd_endpoints: self.settings.etcd.endpoints(),
            fail_open: m.fail_open() && self.address_added,
            handover: m.handover().map(|h| match &h.to {
                Some(n) => format!("to {n} once it is healthy and next in the election"),
                None => format!(
                    "to the healthiest candidate, then not campaigning for {:?}",
                    h.hold_off.unwrap_or_default()
                ),
            }),
            hold_off_left: m
                .hold_off_until()
                .map(|t| t.saturating_duration_since(now))
                .filter(|d| !d.is_zero()),
            ..self.status.get()
        };
        self.status.set(snap);
    }
}
