//! Whether the VIP holder should hand etcd's raft leadership away, and to whom. Pure: the
//! driver gathers the member list and each member's status, and performs the transfer.
//!
//! Why: with stacked etcd the holder's machine also runs an etcd member. If that member
//! leads and the machine is lost, the survivors must first elect a new etcd leader, and a
//! leader change extends every lease by its TTL, so the VIP moves after an election plus
//! a TTL (~4.5 s at TTL 2 s) instead of a TTL (~2.3 s). Keeping the leader elsewhere makes
//! losing the holder cost only the lease. It does not decide anything about the VIP.

/// One member as the driver saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberView {
    pub id: u64,
    pub name: String,
    /// Its client URL's host is an address of this machine.
    pub local: bool,
    /// It has joined (etcd lists unstarted members without a name).
    pub started: bool,
    /// Its status answered, without errors or alarms, naming the same leader.
    pub healthy: bool,
    /// Its raft index: the most up-to-date member takes over with the least catching up.
    pub raft_index: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nobody leads now (an election is running): nothing to move.
    NoLeader,
    /// The leader is not on this machine: fine as it is.
    LeaderElsewhere,
    /// The leader is on this machine but no other member is started and healthy.
    NoTarget,
    /// Transfer leadership from `from` (this machine's member) to `to`.
    Move { from: u64, to: u64 },
}

/// `leader` is the raft leader the members report (0: none). `previous` is the last leader
/// seen on another machine: it is not chosen while another target exists, because it most
/// likely just handed leadership to us on purpose (an operator or Cluster API moving it
/// off a member about to be removed); moving it back would undo that and race the removal.
pub fn decide(leader: u64, members: &[MemberView], previous: Option<u64>) -> Decision {
    if leader == 0 {
        return Decision::NoLeader;
    }
    if !members.iter().any(|m| m.id == leader && m.local) {
        return Decision::LeaderElsewhere;
    }
    let targets: Vec<&MemberView> = members
        .iter()
        .filter(|m| m.id != leader && !m.local && m.started && m.healthy)
        .collect();
    let fresh = targets.iter().any(|m| Some(m.id) != previous);
    targets
        .into_iter()
        .filter(|m| !fresh || Some(m.id) != previous)
        // Most up to date first; the lowest id breaks ties, so the choice is stable.
        .max_by_key(|m| (m.raft_index, std::cmp::Reverse(m.id)))
        .map_or(Decision::NoTarget, |m| Decision::Move {
            from: leader,
            to: m.id,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: u64, local: bool, started: bool, healthy: bool, raft_index: u64) -> MemberView {
        MemberView {
            id,
            name: format!("cp{id}"),
            local,
            started,
            healthy,
            raft_index,
        }
    }

    #[test]
    fn moves_off_this_machine_to_the_most_up_to_date_healthy_member() {
        let ms = [
            m(1, true, true, true, 9),
            m(2, false, true, true, 8),
            m(3, false, true, true, 9),
        ];
        assert_eq!(decide(1, &ms, None), Decision::Move { from: 1, to: 3 });
    }

    #[test]
    fn equal_indexes_pick_the_lowest_id() {
        let ms = [
            m(7, false, true, true, 5),
            m(1, true, true, true, 5),
            m(4, false, true, true, 5),
        ];
        assert_eq!(decide(1, &ms, None), Decision::Move { from: 1, to: 4 });
    }

    #[test]
    fn leader_on_another_machine_stays() {
        let ms = [
            m(1, true, true, true, 9),
            m(2, false, true, true, 9),
            m(3, false, true, true, 9),
        ];
        assert_eq!(decide(2, &ms, None), Decision::LeaderElsewhere);
        // A leader id not in the list (a member just added) is not ours either.
        assert_eq!(decide(42, &ms, None), Decision::LeaderElsewhere);
    }

    #[test]
    fn no_leader_means_an_election_is_running() {
        let ms = [m(1, true, true, true, 9), m(2, false, true, true, 9)];
        assert_eq!(decide(0, &ms, None), Decision::NoLeader);
    }

    #[test]
    fn never_to_an_unstarted_unhealthy_or_local_member() {
        let ms = [
            m(1, true, true, true, 9),
            m(2, false, false, true, 99), // added, not joined
            m(3, false, true, false, 99), // status failed or alarm
            m(4, true, true, true, 99),   // also on this machine
        ];
        assert_eq!(decide(1, &ms, None), Decision::NoTarget);
        // One healthy peer is enough.
        let mut ms = ms.to_vec();
        ms.push(m(5, false, true, true, 1));
        assert_eq!(decide(1, &ms, None), Decision::Move { from: 1, to: 5 });
    }

    #[test]
    fn not_back_to_the_member_that_just_handed_leadership_to_us() {
        // 3 led before (highest index: it was the leader); it moved leadership to us.
        let ms = [
            m(1, true, true, true, 9),
            m(2, false, true, true, 8),
            m(3, false, true, true, 9),
        ];
        assert_eq!(decide(1, &ms, Some(3)), Decision::Move { from: 1, to: 2 });
        // Unless it is the only place to go.
        let ms = [m(1, true, true, true, 9), m(3, false, true, true, 9)];
        assert_eq!(decide(1, &ms, Some(3)), Decision::Move { from: 1, to: 3 });
    }

    #[test]
    fn a_single_member_cluster_has_nowhere_to_go() {
        assert_eq!(
            decide(1, &[m(1, true, true, true, 3)], None),
            Decision::NoTarget
        );
        assert_eq!(decide(1, &[], None), Decision::LeaderElsewhere);
    }
}
