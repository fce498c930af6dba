//! The numbers the checker's rules use ([`Bounds`]) and what each fault kind may cost the
//! client ([`allowance`], by where the client's requests go: the VIP or a load balancer
//! in front of the machines), and from that whether a fault
//! may explain an outage at all ([`explains`]). Published in
//! `docs/chaos.md`; pure constants and tables, judged nothing here (`checker` does).

use super::history::Ms;
use super::schedule::FaultKind;

/// The bounds the rules use.
#[derive(Debug, Clone)]
pub struct Bounds {
    pub outage_min: Ms,
    pub grace: Ms,
    pub claim_slack: Ms,
    pub watch_resume: Ms,
    pub warmup: Ms,
    pub fd_growth: u64,
    pub thread_growth: u64,
    pub rss_growth_kib: u64,
}

impl Default for Bounds {
    fn default() -> Bounds {
        Bounds {
            outage_min: 1_000,
            grace: 5_000,
            claim_slack: 300,
            watch_resume: 20_000,
            warmup: 10_000,
            fd_growth: 32,
            thread_growth: 16,
            rss_growth_kib: 64 * 1024,
        }
    }
}

/// What a fault may cost the client, by where its requests go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowance {
    /// An outage it explains alone ends within this long after its start (or `grace`
    /// after its end, whichever is earlier).
    Within(Ms),
    /// It degrades every path while it lasts: until `grace` after its end.
    UntilEnd,
    /// Not on the client's path: it explains (and prolongs) no outage; an outage while
    /// only such faults are in progress is as unexplained as one in a quiet cluster.
    /// Through a front LB the agents, partitions between the machines and etcd's
    /// elections; in both modes a step of the real-time clock, which is on no path: every
    /// decision of the agents and load balancers runs on the monotonic clock.
    OffPath,
}

/// What a fault of `kind` may cost the client when it is the only fault in progress:
/// through the VIP (`front_lb` false), or through a load balancer in front of the machines
/// (`cpe lb` or HAProxy on a host of their own). There a failing API server costs only
/// what was in flight to it until the LB's checks take it out (2 × 250 ms; a refused
/// connect is retried on another backend), a cut or replaced machine the same plus a
/// connect timeout (1 s), and the agents, the VIP, a partition between the machines and
/// etcd's elections are not on the client's path at all: the stand-in API server does not
/// use etcd, and the LB keeps its backend set while etcd does not answer. A clock step is
/// off the path in both modes (the one rule for it: [`explains`]).
pub fn allowance(kind: FaultKind, front_lb: bool) -> Allowance {
    use Allowance::*;
    use FaultKind::*;
    match (kind, front_lb) {
        // A step of the real-time clock is on no path.
        (ClockStep, _) => OffPath,
        // What degrades every path while it lasts.
        (LinkFlap | PacketLoss | Delay, _) => UntilEnd,
        // Through the VIP: a move of the address.
        (ApiKill | ApiTerm | ApiUnready | AgentTerm | AgentRestart, false) => Within(6_000),
        (AgentKill | LinkCut, false) => Within(8_000),
        (Partition | PartitionOneWay | EtcdLeaderKill | CpuStarve, false) => Within(10_000),
        // The holder's machine replaced: a planned handover first (its agent's SIGTERM);
        // an etcd member replaced: leadership moved off it first, a leader election at worst.
        (MachineReplace, false) => Within(8_000),
        (EtcdReplace, false) => Within(10_000),
        // Through a front LB: its checks take a failing backend out.
        (ApiKill | ApiTerm | ApiUnready | MachineReplace | EtcdReplace, true) => Within(4_000),
        (LinkCut, true) => Within(6_000),
        (
            AgentKill | AgentTerm | AgentRestart | CpuStarve | Partition | PartitionOneWay
            | EtcdLeaderKill,
            true,
        ) => OffPath,
    }
}

/// Whether a fault of `kind` may explain (or prolong) an outage of a client that goes
/// through a front LB (`front_lb`) or the VIP: whether it is on the client's path
/// (not [`Allowance::OffPath`]). A step of the real-time clock never is.
pub fn explains(kind: FaultKind, front_lb: bool) -> bool {
    allowance(kind, front_lb) != Allowance::OffPath
}
