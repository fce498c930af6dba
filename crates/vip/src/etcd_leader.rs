//! Whether the VIP holder should hand etcd's raft leadership away, and to whom. Pure: the
//! driver gathers the member list and each member's status, and performs the transfer.
//!
//! Why: with stacked etcd the holder's machine also runs an etcd member. If that member
//! leads and the machine is lost, the survivors must first elect a new etcd leader, and a
//! leader change extends every lease by its TTL, so the VIP moves after an election plus
//! a TTL (~4.5 s at TTL 2 s) instead of a TTL (~2.3 s). Keeping the leader elsewhere makes
//! losing the holder cost only the lease. It does not decide anything about the VIP.
//!
//! The pure parts, in the order a check uses them: [`leader_by_votes`] (which leader the
//! members name), [`views`] (each member as the decision sees it), [`decide`] (move or
//! not, and to whom), and [`Mover`], which remembers between checks what the rules need:
//! the last leader seen elsewhere, and whether leadership just arrived here (then it waits
//! one check). The driver (`agent.rs`) asks etcd, performs the transfer and logs; it
//! holds no rule of its own.

use cpe_election::{Member, MemberStatus};

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Nobody leads now (an election is running): nothing to move.
    NoLeader,
    /// The leader is not on this machine: fine as it is.
    LeaderElsewhere,
    /// The leader is on this machine but no other member is started and healthy.
    NoTarget,
    /// Transfer leadership from `from` (this machine's member) to `to`.
    Move { from: u64, to: u64 },
    /// Leadership came to `from` (this machine's member) while this node held the VIP:
    /// left there one more check before it is moved (only from [`Mover::next`]).
    WaitOneCheck { from: u64 },
}

/// The leader most members name (0: none named). They agree unless an election is under
/// way; on a tie, the one named last among the most named.
pub fn leader_by_votes(named: impl IntoIterator<Item = u64>) -> u64 {
    let mut votes: Vec<(u64, usize)> = Vec::new();
    for leader in named.into_iter().filter(|l| *l != 0) {
        match votes.iter_mut().find(|(l, _)| *l == leader) {
            Some((_, n)) => *n += 1,
            None => votes.push((leader, 1)),
        }
    }
    votes.iter().max_by_key(|(_, n)| *n).map_or(0, |(l, _)| *l)
}

/// Each member as [`decide`] sees it, from the member list, each member's status (`None`:
/// it did not answer), the `leader` the members name, and whether a client URL is an
/// address of this machine (`local`, the one question that needs the host).
pub fn views(
    members: &[Member],
    statuses: &[Option<MemberStatus>],
    leader: u64,
    local: impl Fn(&str) -> bool,
) -> Vec<MemberView> {
    members
        .iter()
        .zip(statuses)
        .map(|(m, s)| MemberView {
            id: m.id,
            name: m.name.clone(),
            local: m.client_urls.iter().any(|u| local(u)),
            started: !m.name.is_empty() && !m.client_urls.is_empty(),
            healthy: s
                .as_ref()
                .is_some_and(|s| s.errors.is_empty() && s.leader == leader && s.member_id == m.id),
            raft_index: s.as_ref().map_or(0, |s| s.raft_index),
        })
        .collect()
}

/// What the holder remembers from one leadership check to the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mover {
    /// The last leader seen on another machine (see [`decide`]).
    previous: Option<u64>,
    /// Our member was seen leading at the last check (so it is moved at this one).
    seen_leading: bool,
    /// The next check is the first of a holding period.
    first: bool,
}

impl Default for Mover {
    fn default() -> Self {
        Mover::new()
    }
}

impl Mover {
    pub fn new() -> Mover {
        Mover {
            previous: None,
            seen_leading: false,
            first: true,
        }
    }

    /// The node starts holding the VIP (again): its next check is a first one.
    pub fn holding_again(&mut self) {
        self.first = true;
        self.seen_leading = false;
    }

    /// A check that gave no answer (etcd unreachable, no result in time): nothing was
    /// seen, so nothing is remembered as seen leading.
    pub fn check_failed(&mut self) {
        self.first = false;
        self.seen_leading = false;
    }

    /// One check's decision. Right after the node starts holding, a leader on this
    /// machine is moved at once: it was there before the VIP came. Later, leadership that
    /// arrives here while the node holds may have been moved here on purpose (an operator,
    /// Cluster API before removing a member) by someone still waiting to see it land: it
    /// is left one more check ([`Decision::WaitOneCheck`]) and moved at the next.
    pub fn next(&mut self, leader: u64, members: &[MemberView]) -> Decision {
        let first = std::mem::replace(&mut self.first, false);
        let was_leading = std::mem::replace(&mut self.seen_leading, false);
        match decide(leader, members, self.previous) {
            Decision::LeaderElsewhere => {
                self.previous = Some(leader);
                Decision::LeaderElsewhere
            }
            Decision::Move { from, .. } if !first && !was_leading => {
                self.seen_leading = true;
                Decision::WaitOneCheck { from }
            }
            d => d,
        }
    }
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
    fn the_leader_most_members_name() {
        assert_eq!(leader_by_votes([2, 2, 3]), 2);
        assert_eq!(leader_by_votes([0, 0, 3]), 3, "0 names nobody");
        assert_eq!(leader_by_votes([0, 0]), 0);
        assert_eq!(leader_by_votes([]), 0);
        assert_eq!(leader_by_votes([2, 3]), 3, "a tie: the one named last");
    }

    #[test]
    fn members_are_seen_through_their_status() {
        let member = |id: u64, name: &str, url: &str| Member {
            id,
            name: name.into(),
            client_urls: if url.is_empty() {
                vec![]
            } else {
                vec![url.into()]
            },
        };
        let status = |member_id: u64, leader: u64, errors: &[&str]| MemberStatus {
            member_id,
            leader,
            raft_index: 10 + member_id,
            errors: errors.iter().map(|e| e.to_string()).collect(),
        };
        let members = [
            member(1, "cp1", "https://10.0.0.1:2379"),
            member(2, "cp2", "https://10.0.0.2:2379"),
            member(3, "cp3", "https://10.0.0.3:2379"),
            member(4, "", ""),
            member(5, "cp5", "https://10.0.0.5:2379"),
        ];
        let statuses = [
            Some(status(1, 1, &[])),
            Some(status(2, 1, &["NOSPACE"])),
            Some(status(3, 9, &[])),
            None,
            Some(status(4, 1, &[])),
        ];
        let v = views(&members, &statuses, 1, |u| u.contains("10.0.0.1"));
        let seen: Vec<(bool, bool, bool, u64)> = v
            .iter()
            .map(|m| (m.local, m.started, m.healthy, m.raft_index))
            .collect();
        assert_eq!(
            seen,
            [
                (true, true, true, 11),
                (false, true, false, 12), // an alarm
                (false, true, false, 13), // names another leader
                (false, false, false, 0), // not started, no answer
                (false, true, false, 14), // answered for another member id
            ]
        );
    }

    /// Leadership already here when the node starts holding: moved at the first check.
    #[test]
    fn a_leader_here_when_holding_starts_moves_at_once() {
        let ms = [m(1, true, true, true, 9), m(2, false, true, true, 9)];
        let mut mover = Mover::new();
        assert_eq!(mover.next(1, &ms), Decision::Move { from: 1, to: 2 });
        // Holding again later: again a first check.
        mover.next(2, &ms);
        mover.holding_again();
        assert_eq!(mover.next(1, &ms), Decision::Move { from: 1, to: 2 });
    }

    /// Leadership that arrives while holding waits one check, then moves (and not back
    /// to where it came from, when there is another choice).
    #[test]
    fn leadership_arriving_while_holding_waits_one_check() {
        let ms = [
            m(1, true, true, true, 9),
            m(2, false, true, true, 8),
            m(3, false, true, true, 9),
        ];
        let mut mover = Mover::new();
        assert_eq!(mover.next(3, &ms), Decision::LeaderElsewhere);
        assert_eq!(mover.next(1, &ms), Decision::WaitOneCheck { from: 1 });
        assert_eq!(mover.next(1, &ms), Decision::Move { from: 1, to: 2 });
        // Moved, then back again: waits again.
        assert_eq!(mover.next(1, &ms), Decision::WaitOneCheck { from: 1 });
    }

    /// A failed check forgets that leadership was seen here: the wait starts over.
    #[test]
    fn a_failed_check_restarts_the_wait() {
        let ms = [m(1, true, true, true, 9), m(2, false, true, true, 9)];
        let mut mover = Mover::new();
        assert_eq!(mover.next(2, &ms), Decision::LeaderElsewhere);
        assert_eq!(mover.next(1, &ms), Decision::WaitOneCheck { from: 1 });
        mover.check_failed();
        assert_eq!(mover.next(1, &ms), Decision::WaitOneCheck { from: 1 });
        assert_eq!(mover.next(1, &ms), Decision::Move { from: 1, to: 2 });
        // A failure as the first check of a holding period ends its "first".
        let mut mover = Mover::new();
        mover.check_failed();
        assert_eq!(mover.next(1, &ms), Decision::WaitOneCheck { from: 1 });
    }

    #[test]
    fn no_leader_and_no_target_change_nothing_remembered() {
        let ms = [m(1, true, true, true, 9), m(2, false, true, false, 9)];
        let mut mover = Mover::new();
        assert_eq!(mover.next(0, &ms), Decision::NoLeader);
        assert_eq!(mover.next(1, &ms), Decision::NoTarget);
        let ms = [m(1, true, true, true, 9), m(2, false, true, true, 9)];
        assert_eq!(mover.next(1, &ms), Decision::WaitOneCheck { from: 1 });
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
