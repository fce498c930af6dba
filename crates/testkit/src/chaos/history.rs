//! What a chaos run recorded, as plain serde data written to one JSON file per run
//! (`history.json` in the run's directory, or where the caller asks). Times are
//! milliseconds since the run's epoch (the observers' clock, `CLOCK_MONOTONIC`).
//!
//! The holder samples are run-length encoded: the sampler looks at every machine every
//! 10 ms and records an entry only when the set of holders changes, so each entry stands
//! for every sample up to the next one (`samples` counts them all). A sample with two
//! holders always differs from the one before, so it is always recorded.
//!
//! It holds data only; the checker (`chaos::checker`) judges it, the runner fills it.

use super::schedule::{FaultKind, Role};
use serde::{Deserialize, Serialize};

/// Milliseconds since the run's epoch.
pub type Ms = u64;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct History {
    pub seed: u64,
    /// `cpe`, `cpe-lb` (`cpe vip --load-balance`) or `keepalived`.
    pub agent: String,
    /// The load balancer in front of the machines, when the client goes through one
    /// instead of the VIP (`cpe lb` or `haproxy`); the checker then judges outages by what
    /// a fault costs the client through it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub front_lb: Option<String>,
    /// The API server on the machines: `cpe test-apiserver` (the stand-in) or
    /// `kube-apiserver` (empty in histories recorded before the choice existed: the stand-in).
    #[serde(default)]
    pub api: String,
    /// The checked window: from the first fault's possible start to the end of the run
    /// (before the final teardown).
    pub from: Ms,
    pub to: Ms,
    /// Sampling interval of the holder watcher, and how many sweeps it made.
    pub sample_interval: Ms,
    pub samples: u64,
    /// Every machine that ever took part, with its eth0 MAC.
    pub machines: Vec<MachineInfo>,
    /// Holder changes (run-length encoded samples, see the module header).
    pub holders: Vec<HolderSample>,
    /// The client's neighbour entry for the VIP, on change.
    pub neighbour: Vec<NeighbourSample>,
    /// Gratuitous ARP for the VIP as captured in the client's namespace.
    pub claims: Vec<Claim>,
    /// Every client request.
    pub requests: Vec<ClientRequest>,
    /// The etcd leader as the members report it, on change (`None`: nobody answered or no
    /// leader).
    pub etcd_leader: Vec<LeaderSample>,
    /// The VIP election's queue in etcd (`cpe vip`'s candidates, oldest first: the first
    /// leads), on change; empty for keepalived. Histories from before it have none.
    #[serde(default)]
    pub election: Vec<QueueSample>,
    /// The client's watch stream through the VIP: starts and ends.
    pub watches: Vec<WatchEvent>,
    /// Every fault as performed.
    pub faults: Vec<FaultRecord>,
    /// Processes that exited without the runner asking them to.
    pub crashes: Vec<Crash>,
    /// fds, RSS and threads of every agent, every few seconds.
    pub resources: Vec<ResourceSample>,
    /// What was left after the run, the agents stopped.
    pub end: EndState,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MachineInfo {
    pub name: String,
    pub mac: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HolderSample {
    pub t: Ms,
    /// Machines with the VIP on an interface, sorted.
    pub holders: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NeighbourSample {
    pub t: Ms,
    /// The MAC the client would send to (empty: no usable entry).
    pub mac: String,
    pub host: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Claim {
    pub t: Ms,
    pub mac: String,
    pub host: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClientRequest {
    pub start: Ms,
    pub end: Ms,
    pub ok: bool,
    /// Status code or error.
    pub detail: String,
    /// The API server that answered, if it said.
    pub backend: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LeaderSample {
    pub t: Ms,
    pub leader: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueSample {
    pub t: Ms,
    /// The candidates' nodes with their lease (hex), oldest first; `None`: no member
    /// answered.
    pub queue: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "what")]
pub enum WatchWhat {
    /// A stream answered 200 and delivered its first event (the stand-in), or answered
    /// 200 and delivered every write acknowledged so far (kube-apiserver; see
    /// `chaos::kube_watch`).
    Start { backend: Option<String> },
    /// The stream ended (closed, reset, or no event for the read timeout; kube-apiserver:
    /// also an ERROR event, or a write acknowledged 3 s ago not delivered).
    End { reason: String },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WatchEvent {
    pub t: Ms,
    #[serde(flatten)]
    pub what: WatchWhat,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FaultRecord {
    /// The schedule's id.
    pub id: usize,
    pub kind: FaultKind,
    pub role: Role,
    /// The machine it hit, as resolved at its start (None: skipped).
    pub target: Option<String>,
    /// When injection began and when the repair was complete.
    pub start: Ms,
    pub end: Ms,
    /// Details (loss %, direction) or why it was skipped.
    pub note: String,
    pub skipped: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Crash {
    pub t: Ms,
    /// e.g. `agent cp2`.
    pub process: String,
    pub status: String,
    pub log_tail: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResourceSample {
    pub t: Ms,
    pub process: String,
    pub pid: u32,
    pub fds: u64,
    pub rss_kib: u64,
    pub threads: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EndState {
    /// Machines still carrying the VIP after every agent was stopped with SIGTERM.
    pub vip_left_on: Vec<String>,
    /// `machine: table` for every nftables table left in a machine's namespace.
    pub nft_left: Vec<String>,
    /// `machine: qdisc` for every netem qdisc left.
    pub qdisc_left: Vec<String>,
    /// Agents that did not exit 0 on the final SIGTERM: `machine: status`.
    pub agent_exits: Vec<String>,
    /// Agent logs that contain a panic: `machine: line`.
    pub panics: Vec<String>,
    /// What is wrong with the front load balancer's end (not exit 0 on SIGTERM, a panic
    /// in its log, a table left in its host).
    #[serde(default)]
    pub front_lb: Vec<String>,
}
