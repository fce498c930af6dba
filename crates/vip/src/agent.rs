//! The driver: owns the clock, the sockets and the etcd client, feeds the
//! [`Machine`](crate::machine::Machine) what it observes and performs the actions it returns,
//! in order. Slow work (grant, keep-alive, campaign, probe, revoke, health probes, the
//! interface poll) runs in tasks that report back through one channel, so the loop never
//! waits on the network; address changes and announcements are done inline because their
//! order is the safety argument (the address is removed before the lease is released).
//!
//! Start-up checks everything it can before touching anything: capabilities, the
//! interface, the VIP inside the interface's subnet, TLS files, the admin port. A VIP left
//! on the interface by an earlier run is removed (this process holds no lease yet). On
//! every way out — SIGTERM, an error — the address is removed before returning.

use crate::machine::{Action, Config, Input, Machine, Role, Transition};
use crate::metrics::Metrics;
use crate::status::{Snapshot, StatusCell};
use cpe_election::{Client, KeepAlive};
use cpe_health::{Event as HealthEvent, Health, Prober, Rules, State as HealthState};
use cpe_net::{Announcer, Interface, Netlink};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Everything the agent needs, resolved by the CLI from a definition file or flags.
#[derive(Debug, Clone)]
pub struct Settings {
    pub node: String,
    pub vip: IpAddr,
    pub prefix_len: u8,
    pub interface: String,
    pub election: String,
    pub lease_ttl: Duration,
    pub etcd: Client,
    pub health: HealthCheck,
    pub admin: Option<SocketAddr>,
    /// How long the takeover probe waits for a foreign host to answer.
    pub probe_wait: Duration,
}

/// What "healthy" means for this node.
#[derive(Debug, Clone)]
pub struct HealthCheck {
    pub prober: Prober,
    /// Probed address for a prober built from a definition (`None`: the URL's own).
    pub addr: Option<SocketAddr>,
    /// Shown in `/status` and logs.
    pub target: String,
    pub interval: Duration,
    pub rules: Rules,
}

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
    #[error("admin listener {addr}: {source}")]
    Admin {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Runs the agent until `shutdown` completes, then hands the VIP over (remove the
/// address, revoke the lease) and returns. Returns an error only for start-up problems;
/// once running, failures are states (waiting for etcd, unhealthy, ...), not exits.
pub async fn run(settings: Settings, shutdown: impl Future<Output = ()>) -> Result<(), AgentError> {
    let missing = cpe_net::missing_capabilities();
    if !missing.is_empty() {
        return Err(AgentError::Capabilities(missing.join(" and ")));
    }
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

    let metrics = Arc::new(Metrics::new());
    let status = StatusCell::new(Snapshot::initial(&settings));
    let (admin_stop, admin_task) = match settings.admin {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| AgentError::Admin { addr, source })?;
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let handler = crate::status::handler(status.clone(), metrics.clone());
            let task = tokio::spawn(cpe_admin::serve(listener, handler, async {
                let _ = rx.await;
            }));
            (Some(tx), Some(task))
        }
        None => (None, None),
    };

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
        keepalive: None,
        campaign: None,
        revokes: Vec::new(),
        address_added: false,
        holder_seen: None,
        health_detail: "not checked yet".into(),
        wall_since: SystemTime::now(),
        last_transition_wall: None,
    };
    let result = driver.run(shutdown).await;
    // Whatever happened, no VIP stays behind.
    driver.ensure_removed().await;
    if let Some(tx) = admin_stop {
        let _ = tx.send(());
    }
    if let Some(t) = admin_task {
        let _ = t.await;
    }
    result
}

/// What the tasks report.
enum Event {
    Machine(Input),
    /// The campaign with this lease won (revoking the lease is how we resign).
    Elected(i64),
    HealthDetail(String),
    /// Who leads (node name and lease), asked at the instant given.
    Leader(Result<Option<(String, i64)>, String>, Instant),
    Renewal(Duration),
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
    /// The keep-alive loop and the lease it renews.
    keepalive: Option<(i64, JoinHandle<()>)>,
    /// The campaign in flight; aborting it closes its connection and etcd cancels it.
    campaign: Option<JoinHandle<()>>,
    /// Revocations in flight; awaited (bounded) before exit.
    revokes: Vec<JoinHandle<()>>,
    /// Whether this process put the address on the interface and has not removed it.
    address_added: bool,
    holder_seen: Option<Result<Option<String>, String>>,
    health_detail: String,
    wall_since: SystemTime,
    last_transition_wall: Option<(Transition, SystemTime)>,
}

impl Driver {
    async fn run(&mut self, shutdown: impl Future<Output = ()>) -> Result<(), AgentError> {
        let (tx, mut rx) = mpsc::unbounded_channel();
        self.tx = Some(tx.clone());
        let background = [
            tokio::spawn(health_loop(self.settings.health.clone(), tx.clone())),
            tokio::spawn(interface_loop(
                self.nl.clone(),
                self.iface.index,
                self.settings.interface.clone(),
                self.settings.vip,
                tx.clone(),
            )),
            tokio::spawn(leader_loop(
                self.settings.etcd.clone(),
                self.settings.election.clone(),
                tx.clone(),
            )),
        ];
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
                    Some(Event::Machine(i)) => i,
                    Some(Event::Elected(lease)) => {
                        self.campaign = None;
                        Input::Elected { lease }
                    }
                    Some(Event::HealthDetail(d)) => { self.health_detail = d; self.publish(); continue }
                    Some(Event::Leader(l, sent_at)) => {
                        let lease = match &l {
                            Ok(v) => v.as_ref().map(|(_, id)| *id),
                            Err(_) => { self.holder_seen = Some(l.map(|_| None)); self.publish(); continue }
                        };
                        self.holder_seen = Some(l.map(|v| v.map(|(name, _)| name)));
                        Input::LeaderSeen { lease, sent_at }
                    }
                    Some(Event::Renewal(d)) => { self.metrics.renewal.observe(d.as_secs_f64()); continue }
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

    /// Feeds one input and performs the actions. Returns true on `Exit`.
    async fn step(&mut self, input: Input) -> bool {
        if let Input::Health(ok) = &input {
            self.metrics.healthy.set(*ok as i64);
        }
        let now = Instant::now();
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
                let node = self.settings.node.clone();
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
                    let foreign_mac = match cpe_net::probe(index, mac, vip, wait).await {
                        Ok(m) => m.map(|m| m.to_string()),
                        Err(e) => {
                            tracing::warn!("probe for a foreign holder failed: {e}; going ahead");
                            None
                        }
                    };
                    if let Some(m) = &foreign_mac {
                        tracing::error!(vip = %vip, mac = %m,
                            "a host outside the cluster answers for the VIP: not taking it (find the host with MAC {m} and remove the address from it)");
                    }
                    send(&tx, Event::Machine(Input::ProbeDone { foreign_mac }));
                });
            }
            Action::AddAddress => {
                match self
                    .nl
                    .add(
                        self.iface.index,
                        self.settings.vip,
                        self.settings.prefix_len,
                    )
                    .await
                {
                    Ok(()) => {
                        self.address_added = true;
                        tracing::info!(vip = %self.settings.vip, interface = %self.iface.name, "address added");
                    }
                    Err(e) => tracing::error!("cannot add the VIP: {e}; retrying"),
                }
            }
            Action::Announce => match self.announcer.announce() {
                Ok(()) => {
                    self.metrics.announcements.inc();
                }
                Err(e) => tracing::warn!("{e}"),
            },
            Action::StopAnnouncing => {}
            Action::RemoveAddress => self.remove_address().await,
            Action::RevokeLease { id } => {
                if self.keepalive.as_ref().is_some_and(|(k, _)| *k == id) {
                    if let Some((_, t)) = self.keepalive.take() {
                        t.abort();
                    }
                }
                let etcd = self.settings.etcd.clone();
                self.revokes.push(tokio::spawn(async move {
                    if let Err(e) = etcd.revoke(id).await {
                        tracing::warn!("cannot revoke lease {id:x}: {e} (it expires on its own)");
                    }
                }));
            }
            Action::Exit => return true,
        }
        false
    }

    async fn remove_address(&mut self) {
        match self.nl.remove(self.iface.index, self.settings.vip).await {
            Ok(_) => {
                self.address_added = false;
                tracing::info!(vip = %self.settings.vip, interface = %self.iface.name, "address removed");
            }
            Err(e) => tracing::error!("cannot remove the VIP: {e}"),
        }
    }

    async fn ensure_removed(&mut self) {
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
                self.keepalive = Some((id, tokio::spawn(keepalive_loop(etcd, id, ttl, tx))));
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
            health_detail: self.health_detail.clone(),
            waiting_for: m.waiting_for().map(str::to_string),
            foreign_mac: m.foreign_mac().map(str::to_string),
            transitions: self.metrics.transitions_total(),
            ..self.status.get()
        };
        self.status.set(snap);
    }
}

fn send(tx: &Option<mpsc::UnboundedSender<Event>>, ev: Event) {
    if let Some(tx) = tx {
        let _ = tx.send(ev);
    }
}

/// Renews `id` every quarter TTL; reports each success with the moment it was *sent*.
async fn keepalive_loop(
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
            Err(e) => tracing::warn!("lease {id:x} renewal failed: {e}"),
        }
    }
}

/// Probes health every interval and reports changes of "healthy" (rise/fall applied by
/// cpe-health's state machine; healthy means its state is UP).
async fn health_loop(hc: HealthCheck, tx: mpsc::UnboundedSender<Event>) {
    let mut health = Health::new(hc.target.clone(), Instant::now());
    let mut healthy = false;
    let mut tick = tokio::time::interval(hc.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let obs = match hc.addr {
            Some(a) => hc.prober.probe(a).await,
            None => hc.prober.probe_target().await,
        };
        let step = health.observe(
            &hc.rules,
            Instant::now(),
            HealthEvent::Probe(obs.outcome.clone()),
        );
        if let Some(t) = &step.transition {
            tracing::info!("health {t}");
            let _ = tx.send(Event::HealthDetail(t.to_string()));
        }
        if step.first_unauthorized {
            tracing::warn!("health check answered {}: counted as alive (give a client certificate to check readiness)", obs.outcome);
        }
        let now_healthy = health.state() == HealthState::Up;
        if now_healthy != healthy {
            healthy = now_healthy;
            if tx.send(Event::Machine(Input::Health(healthy))).is_err() {
                return;
            }
        }
    }
}

/// Polls the interface every 200 ms: is it up, is the VIP on it.
async fn interface_loop(
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
async fn leader_loop(etcd: Client, name: String, tx: mpsc::UnboundedSender<Event>) {
    loop {
        let sent_at = Instant::now();
        let r = etcd
            .leader(&name)
            .await
            .map(|l| l.map(|l| (l.value, l.lease)))
            .map_err(|e| e.to_string());
        if tx.send(Event::Leader(r, sent_at)).is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
