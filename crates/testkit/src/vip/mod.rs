//! The VIP testbed: three control-plane machines and a client on one bridge, and the failure
//! scenarios of `docs/vip-failover.md`, run against `cpe vip` or keepalived.
//!
//! Each machine is a namespace with an etcd member, an API server on `:6443` (the stand-in
//! `cpe test-apiserver`, or a real kube-apiserver: [`ApiKind`]) and the VIP agent; the client namespace runs the [`Prober`] against `VIP:6443`, and a [`Watch`]
//! samples every machine's addresses and the client's neighbour entry. A scenario waits for a
//! steady state (one holder, the client answered), injects one failure into the holder (or
//! the etcd leader), waits for the VIP to settle, measures, then repairs everything and waits
//! for a steady state again, so scenarios run one after another on one testbed.
//!
//! This module measures and reports; it asserts nothing. The tests
//! (`crates/e2e/tests/vip_e2e.rs`) assert the properties on the [`Outcome`]s; the benchmark
//! (`bench/vip.sh`, through the `vip_bench` example) prints their figures. It knows the command lines of `cpe vip`,
//! `cpe test-apiserver`, kube-apiserver and keepalived, nothing of their internals.
//!
//! # Layout
//!
//! - this file: what a run is made of (which API server, which agent, which failure).
//! - [`testbed`]: the testbed itself: building it, starting and stopping the processes on
//!   each machine, waiting for a steady state, repairing.
//! - `scenarios`: running one [`Scenario`] on the testbed and measuring its [`Outcome`].
//! - `kube_api`: the real kube-apiserver on the machines ([`ApiKind::Kube`]): its PKI,
//!   cutting it from its etcd member, and [`ReadyzWait`], a /readyz poller in a thread.
//! - `lb`: the load-balancing VIP's observers (which API server answered, the nftables
//!   redirect on each machine) and helpers (kill or restart one API server).
//! - `safety`: the issue-11 runs ([`SafetyRun`]: every API server overloaded, planned
//!   moves through `cpe status --resign` / `--prefer`) and their [`SafetyOutcome`].
//! - `front`: a load balancer on a host of its own in front of the machines (`cpe lb` or
//!   HAProxy; the chaos runner's front-lb mode): the client sends to it, not to the VIP.
//! - [`outcome`]: what a run measured and how it is reported (a line, JSON).
//! - `text`: the text crossing the testbed's edges: tcpdump's ARP lines read, keepalived's
//!   configuration written.

mod arp_clock;
mod faults;
mod front;
mod kube_api;
mod lb;
mod outcome;
mod safety;
mod scenarios;
mod testbed;
mod text;

pub use front::FrontLb;
pub use kube_api::ReadyzWait;
pub use lb::{has_redirect, redirect_guarded, RulesSample, RulesWatch};
pub use outcome::Outcome;
pub use safety::{SafetyOutcome, SafetyRun};
pub use testbed::Testbed;
pub use text::{keepalived_conf, parse_arp_claim};

use std::path::PathBuf;

/// Which API server runs on each machine.
#[derive(Debug, Clone)]
pub enum ApiKind {
    /// `cpe test-apiserver` from this binary (HTTPS): the stand-in, ready in ~0.1 s, with
    /// its own `/readyz` switch. The default everywhere.
    Cpe(PathBuf),
    /// A real kube-apiserver 1.20 (this binary, see [`crate::kube::apiserver`]) on the
    /// machine's address, against its own etcd member at `127.0.0.1:2379`, with a serving
    /// certificate from a test cluster CA naming the machine's address and the VIP
    /// (`kube_api`). Slow to start (8–30 s); made unready by cutting it from its etcd member.
    Kube(PathBuf),
    /// `python3 -m http.server` serving a directory with a `readyz` file (HTTP); only for
    /// trying the harness before the stand-in exists.
    Python,
}

/// Which VIP agent runs on each machine.
#[derive(Debug, Clone)]
pub enum AgentKind {
    /// `cpe vip` from this binary, with this lease TTL (e.g. "2s") and extra arguments
    /// (e.g. `--etcd-move-leader off`).
    Cpe {
        bin: PathBuf,
        lease_ttl: String,
        extra: Vec<String>,
    },
    /// keepalived (VRRP) with a `vrrp_script` on the local /readyz; see [`keepalived_conf`].
    Keepalived,
}

impl AgentKind {
    pub fn name(&self) -> &'static str {
        match self {
            AgentKind::Cpe { extra, .. } if extra.iter().any(|a| a == "--load-balance") => "cpe-lb",
            AgentKind::Cpe { .. } => "cpe",
            AgentKind::Keepalived => "keepalived",
        }
    }
}

/// The failures, one at a time, always injected into the VIP holder unless said otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// The holder's API server process is SIGKILLed.
    ApiserverKilled,
    /// The holder's API server keeps running but `/readyz` answers 503.
    Readyz503,
    /// The holder's switch port goes down; after the VIP moved it comes back up.
    LinkCut,
    /// As `LinkCut`, but the etcd leader is first moved onto the holder's member
    /// (`etcdctl move-leader`) and the cut comes 6 s later: the worst case for stacked
    /// etcd, unless the agent hands leadership away in the meantime (`cpe vip` does).
    LinkCutEtcdLeader,
    /// The holder's agent is SIGKILLed.
    AgentSigkill,
    /// The holder's agent gets SIGTERM (planned handover).
    AgentSigterm,
    /// The holder's agent is frozen (SIGSTOP; keepalived: its VRRP process too) while its
    /// API server is SIGKILLed, as a long stall, a starved cgroup or a stuck write would
    /// freeze it; 8 s after the failure it resumes (SIGCONT) and 3 s are watched: a
    /// resumed agent must not take the VIP back.
    AgentFrozen,
    /// The holder is cut off (IP) from the other machines, not from the client.
    Partition,
    /// The etcd leader (wherever the VIP is) is SIGKILLed.
    EtcdLeaderKilled,
    /// Every machine replaced in turn (agent stopped, etcd member removed, new machine with
    /// a new address added) while the client keeps sending.
    RollingReplacement,
}

impl Scenario {
    pub const ALL: [Scenario; 10] = [
        Scenario::ApiserverKilled,
        Scenario::Readyz503,
        Scenario::LinkCut,
        Scenario::LinkCutEtcdLeader,
        Scenario::AgentSigkill,
        Scenario::AgentSigterm,
        Scenario::AgentFrozen,
        Scenario::Partition,
        Scenario::EtcdLeaderKilled,
        Scenario::RollingReplacement,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::ApiserverKilled => "apiserver-killed",
            Scenario::Readyz503 => "readyz-503",
            Scenario::LinkCut => "link-cut",
            Scenario::LinkCutEtcdLeader => "link-cut-etcd-leader",
            Scenario::AgentSigkill => "agent-sigkill",
            Scenario::AgentSigterm => "agent-sigterm",
            Scenario::AgentFrozen => "agent-frozen",
            Scenario::Partition => "partition",
            Scenario::EtcdLeaderKilled => "etcd-leader-killed",
            Scenario::RollingReplacement => "rolling-replacement",
        }
    }

    pub fn from_name(s: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|x| x.name() == s)
    }

    /// Whether the VIP is expected to leave the machine the failure hit, with a VIP only
    /// (`load_balancing` false) or with a load balancer behind it on every machine
    /// (`cpe vip --load-balance`, keepalived+HAProxy): there the holder's own API server
    /// failing takes one backend out of rotation and costs no move.
    pub fn moves(self, load_balancing: bool) -> bool {
        match self {
            Scenario::EtcdLeaderKilled | Scenario::RollingReplacement => false,
            Scenario::ApiserverKilled | Scenario::Readyz503 => !load_balancing,
            _ => true,
        }
    }

    /// Whether the scenario hits only the holder's API server (not its agent, link or
    /// etcd member): with a load balancer the holder stays a good holder.
    pub fn hits_api_only(self) -> bool {
        matches!(self, Scenario::ApiserverKilled | Scenario::Readyz503)
    }
}
