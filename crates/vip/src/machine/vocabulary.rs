//! The state machine's vocabulary: its timing [`Config`], the [`Role`]s and the [`Reason`]s
//! of their changes, what goes in ([`Input`]) and what comes out ([`Action`], [`Output`],
//! [`Transition`]), and the lease and handover it keeps. Plain data; the rules that
//! connect them are `machine.rs`'s.

use crate::peers::PeerInfo;
use cpe_health::Transition as HealthTransition;
use std::fmt;
use std::time::Duration;
use tokio::time::Instant;

/// Timing knobs. [`Config::new`] derives sane values from the lease TTL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Taken off the TTL when computing the holder's deadline: covers clock-rate
    /// differences and the time to drop the address.
    pub safety_margin: Duration,
    /// Delays after takeover at which the address is announced (first one immediately).
    pub announce_burst: Vec<Duration>,
    /// Announcement refresh once the burst is over.
    pub announce_refresh: Duration,
    /// First and longest wait before retrying a failed grant or campaign.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// How long to stay out of the election after a foreign host was found on the VIP.
    pub foreign_backoff: Duration,
    /// The shortest address lifetime: with less lease left, the address is not added,
    /// extended or put back (the kernel takes whole seconds, at least one).
    pub min_lifetime: Duration,
    /// How old a view of the other agents' health may be and still count.
    pub peers_fresh: Duration,
    /// How long `--resign` waits for a healthy candidate before giving up.
    pub resign_timeout: Duration,
    /// The lifetime top-up ([`Machine`]'s `top_up`) happens while the deadline is between
    /// `min_lifetime + top_up_slack` and that plus `top_up_window` away (wider than the
    /// driver's 50 ms tick; the slack covers the time until the driver's netlink call).
    pub top_up_window: Duration,
    pub top_up_slack: Duration,
}

impl Config {
    pub fn new(lease_ttl: Duration) -> Self {
        Config {
            safety_margin: (lease_ttl / 4).min(Duration::from_millis(500)),
            announce_burst: vec![
                Duration::ZERO,
                Duration::from_millis(200),
                Duration::from_millis(600),
                Duration::from_millis(1400),
            ],
            announce_refresh: Duration::from_secs(10),
            backoff_min: Duration::from_millis(200),
            backoff_max: Duration::from_secs(5),
            foreign_backoff: Duration::from_secs(5),
            min_lifetime: Duration::from_secs(1),
            peers_fresh: Duration::from_secs(1),
            resign_timeout: Duration::from_secs(10),
            top_up_window: Duration::from_millis(100),
            top_up_slack: Duration::from_millis(20),
        }
    }
}

/// Where this node stands, in the order a node climbs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Not campaigning: unhealthy, no lease yet (etcd unreachable?), or backing off.
    Waiting,
    /// Healthy, lease held, campaign in flight: elected as soon as the holder goes.
    Candidate,
    /// Was holder; the lease deadline passed without a renewal, so the VIP is dropped, but
    /// the lease (and with it the election key) is kept: if a renewal succeeds after all
    /// (etcd was electing a leader), this node still leads and takes the VIP back at once.
    Suspended,
    /// Elected; probing that no foreign host answers for the address before adding it.
    Acquiring,
    /// Holds the VIP: address on the interface, announced.
    Holder,
    /// Shut down; nothing held.
    Stopped,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Waiting => "waiting",
            Role::Candidate => "candidate",
            Role::Suspended => "suspended",
            Role::Acquiring => "acquiring",
            Role::Holder => "holder",
            Role::Stopped => "stopped",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str().to_uppercase())
    }
}

/// Why the role changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// Healthy and a lease was granted: campaigning.
    Campaigning,
    /// The campaign returned: this node leads.
    Elected,
    /// The probe found nobody else on the address: it is ours now.
    Acquired,
    HealthFailed,
    /// No renewal succeeded in time (cannot reach the etcd majority?).
    LeaseDeadline,
    /// etcd says the lease no longer exists.
    LeaseGone,
    /// A host outside the cluster answers for the VIP (its MAC).
    ForeignHolder(String),
    /// Elected, but the lease or health was no longer good enough to take the address.
    ElectedTooLate,
    /// A renewal succeeded after the deadline had passed: still elected, take the VIP back.
    Resumed,
    /// A campaign request failed (an etcd member went away): a fresh lease, a new campaign.
    CampaignFailed,
    /// etcd names another leader while this node holds: our key is gone.
    LeaderElsewhere,
    /// Handed over to this node: it is healthy and next in the election (a planned move,
    /// or this node is unhealthy and that one is not).
    YieldTo(String),
    /// Left the queue to join again behind the node the holder hands over to.
    StepAside(String),
    Shutdown,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Campaigning => f.write_str("healthy with a lease: campaigning"),
            Reason::Elected => f.write_str("elected"),
            Reason::Acquired => f.write_str("elected and no other host answers for the address"),
            Reason::HealthFailed => f.write_str("health check failed"),
            Reason::LeaseDeadline => {
                f.write_str("lease not renewed before its deadline (etcd majority unreachable?)")
            }
            Reason::LeaseGone => f.write_str("etcd says the lease is gone"),
            Reason::ForeignHolder(mac) => write!(
                f,
                "a host outside the cluster answers for the address (MAC {mac}): refusing it"
            ),
            Reason::ElectedTooLate => {
                f.write_str("elected, but the lease or health check had already lapsed")
            }
            Reason::Resumed => f.write_str(
                "the lease was renewed after all (etcd answered again): still elected, taking the address back",
            ),
            Reason::CampaignFailed => {
                f.write_str("campaign failed: starting over with a fresh lease")
            }
            Reason::LeaderElsewhere => {
                f.write_str("etcd names another leader (our election key is gone)")
            }
            Reason::YieldTo(n) => {
                write!(f, "handed the VIP over to {n}, a healthy candidate")
            }
            Reason::StepAside(n) => write!(
                f,
                "stepped aside in the election so that {n} is elected next (the holder hands over to it)"
            ),
            Reason::Shutdown => f.write_str("shutting down"),
        }
    }
}

impl Reason {
    /// A short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Reason::Campaigning => "campaigning",
            Reason::Elected => "elected",
            Reason::Acquired => "acquired",
            Reason::HealthFailed => "health_failed",
            Reason::LeaseDeadline => "lease_deadline",
            Reason::LeaseGone => "lease_gone",
            Reason::ForeignHolder(_) => "foreign_holder",
            Reason::ElectedTooLate => "elected_too_late",
            Reason::Resumed => "resumed",
            Reason::CampaignFailed => "campaign_failed",
            Reason::LeaderElsewhere => "leader_elsewhere",
            Reason::YieldTo(_) => "handed_over",
            Reason::StepAside(_) => "step_aside",
            Reason::Shutdown => "shutdown",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub at: Instant,
    pub from: Role,
    pub to: Role,
    pub reason: Reason,
}

/// What the driver observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Time passed (the driver ticks every few tens of milliseconds).
    Tick,
    /// The health checker's state changed (rise/fall already applied), with its cause and
    /// what was seen: healthy when it is now `UP`.
    Health(HealthTransition),
    LeaseGranted {
        id: i64,
        ttl: Duration,
        sent_at: Instant,
    },
    LeaseGrantFailed {
        error: String,
    },
    /// A keep-alive sent at `sent_at` succeeded.
    LeaseRenewed {
        id: i64,
        ttl: Duration,
        sent_at: Instant,
    },
    /// A keep-alive answered that the lease does not exist.
    LeaseGone {
        id: i64,
    },
    /// The campaign with this lease returned: elected.
    Elected {
        lease: i64,
    },
    CampaignFailed {
        lease: i64,
        error: String,
    },
    /// etcd named the leader's lease (`None`: nobody leads) for a question sent at `sent_at`.
    LeaderSeen {
        lease: Option<i64>,
        sent_at: Instant,
    },
    /// The probe for a foreign host answering for the address finished (`Some`: the MAC
    /// of a host outside the cluster that answered).
    ProbeDone {
        foreign_mac: Option<String>,
    },
    /// The probe was answered by the previous holder (its MAC is the one it published
    /// with its election value): its address lifetime has not run out yet.
    PreviousHolderAnswers {
        node: String,
        mac: String,
    },
    /// Whether the VIP is on the interface now.
    Address {
        present: bool,
    },
    /// Whether the interface is up (operationally) now.
    Link {
        up: bool,
    },
    /// The other agents' health and the election's queue, as just read.
    Peers(PeerInfo),
    /// The operator asks the holder to hand the VIP over: to `to` once it is healthy and
    /// campaigning (`--prefer`), or to the healthiest candidate (`to: None`, `--resign`),
    /// then to stay out of the election for `hold_off`.
    Handover {
        to: Option<String>,
        hold_off: Option<Duration>,
    },
    Shutdown,
}

/// What the driver must do, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    GrantLease,
    Campaign {
        lease: i64,
    },
    CancelCampaign,
    /// Ask the segment whether anyone answers for the address.
    Probe,
    /// Put the address on the interface with a lifetime ending no later than `until` (the
    /// lease deadline); the driver adds nothing when less than a second is left by then.
    AddAddress {
        until: Instant,
    },
    /// Extend the address's lifetime to end no later than `until` (a renewal moved the
    /// deadline). The kernel re-creates the address if it is gone.
    ExtendAddress {
        until: Instant,
    },
    /// One announcement (gratuitous ARP / unsolicited NA).
    Announce,
    RemoveAddress,
    RevokeLease {
        id: i64,
    },
    /// Publish (under this node's lease) the node the holder hands over to, so that the
    /// candidates queued ahead of it step aside.
    PublishPreference {
        to: String,
    },
    /// Everything is released; the process may exit.
    Exit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseState {
    pub id: i64,
    pub ttl: Duration,
    /// The moment after which the lease may be gone.
    pub deadline: Instant,
}

/// A planned move in progress (only while holder).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handover {
    /// `None`: the healthiest candidate (`--resign`).
    pub to: Option<String>,
    pub hold_off: Option<Duration>,
    pub since: Instant,
}

/// The result of one input.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    pub actions: Vec<Action>,
    pub transition: Option<Transition>,
}
