//! Running one failure [`Scenario`] on the [`Testbed`]: wait for a steady state, inject the
//! failure into the holder (or the etcd leader), wait for the VIP to settle, measure the
//! [`Outcome`] from what the observers recorded, then repair. It measures and reports; it
//! asserts nothing (the tests and the bench judge the outcome).

use super::testbed::Machine;
use super::{Outcome, Scenario, Testbed};
use anyhow::{Context, Result};
use nix::sys::signal::Signal;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

impl Testbed {
    /// Runs one scenario and repairs afterwards.
    pub fn run(&mut self, s: Scenario) -> Result<Outcome> {
        let holder = self.wait_stable(Duration::from_secs(60))?;
        let from = self.machines[holder].host.name.clone();
        if s == Scenario::LinkCutEtcdLeader {
            let idx = self
                .etcd
                .index_of(&self.machines[holder].host)
                .context("the holder has no etcd member")?;
            self.etcd.move_leader_to(idx)?;
            eprintln!(
                "[vip] etcd leadership moved onto the holder {from}; cutting its link in 6 s"
            );
            std::thread::sleep(Duration::from_secs(6));
        }
        let holder_led_etcd = self
            .etcd
            .leader()
            .ok()
            .map(|l| self.etcd.members[l].host.name == from);
        std::thread::sleep(Duration::from_millis(300));
        let load_balancing = self.load_balancing();
        let t_fault = self.now();
        // The machines the VIP must leave. With a load balancer on every machine, the
        // holder's API server failing leaves the holder a good holder.
        let mut hit = if load_balancing && s.hits_api_only() {
            vec![]
        } else {
            vec![holder]
        };
        match s {
            Scenario::ApiserverKilled => {
                if let Some(a) = self.machines[holder].api.as_mut() {
                    a.kill();
                }
            }
            Scenario::Readyz503 => self.make_unready(holder)?,
            Scenario::LinkCut | Scenario::LinkCutEtcdLeader => {
                self.machines[holder].host.link_down()?;
                self.machines[holder].link_cut = true;
            }
            Scenario::AgentSigkill => self.signal_agent(holder, Signal::SIGKILL),
            Scenario::AgentSigterm => self.signal_agent(holder, Signal::SIGTERM),
            Scenario::AgentFrozen => {
                if let Some(a) = self.machines[holder].api.as_mut() {
                    a.kill();
                }
                self.signal_agent(holder, Signal::SIGSTOP);
                self.machines[holder].frozen = true;
            }
            Scenario::Partition => {
                let peers: Vec<Ipv4Addr> = self
                    .machines
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != holder)
                    .map(|(_, m)| m.host.addr)
                    .collect();
                self.machines[holder].host.partition_from(&peers)?;
                self.machines[holder].partitioned = true;
            }
            Scenario::EtcdLeaderKilled => {
                let l = self.etcd.leader()?;
                let lhost = self.etcd.members[l].host.name.clone();
                hit.clear();
                eprintln!("[vip] etcd leader is on {lhost} (VIP on {from})");
                self.etcd.kill(l);
            }
            Scenario::RollingReplacement => {
                hit.clear();
                for i in 0..self.machines.len() {
                    self.replace(i)?;
                }
            }
        }
        let t_injected = self.now();
        if s == Scenario::EtcdLeaderKilled {
            // Its effect comes late: an etcd election, then maybe a lease that could not be
            // renewed in time. Give it that long before judging the steady state.
            std::thread::sleep(Duration::from_secs(6));
        }
        // Settle: the VIP on one machine the failure did not hit, the client answered.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ok_holder = self.settled_ok(s, holder, &hit, t_fault);
            let now = self.now();
            if ok_holder
                && self.prober.requests().last_ok(5, now)
                && now - t_fault > Duration::from_millis(500)
            {
                break;
            }
            if Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Watch for a second holder or a move back.
        std::thread::sleep(Duration::from_secs(1));
        let t_settled = self.now();
        let settled_holders = self.watch.current();
        let settled_idx = self.holder();
        let settled_on_healthy = self.settled_ok(s, holder, &hit, t_fault);
        let stayed_orphaned = s == Scenario::AgentSigkill && settled_idx == Some(holder);
        let mut changes_after_restore = None;
        let mut restore_outage = None;
        if matches!(s, Scenario::LinkCut | Scenario::LinkCutEtcdLeader) {
            self.machines[holder].host.link_up()?;
            self.machines[holder].link_cut = false;
            let t_up = self.now();
            std::thread::sleep(Duration::from_secs(8));
            let t = self.now();
            changes_after_restore = Some(self.watch.changes(t_up, t).len());
            restore_outage = self.prober.requests().outage(t_up, t);
        }
        if s == Scenario::AgentFrozen {
            let until = t_fault + Duration::from_secs(8);
            std::thread::sleep(until.saturating_sub(self.now()));
            self.signal_agent(holder, Signal::SIGCONT);
            self.machines[holder].frozen = false;
            let t_up = self.now();
            std::thread::sleep(Duration::from_secs(3));
            let t = self.now();
            changes_after_restore = Some(self.watch.changes(t_up, t).len());
            restore_outage = self.prober.requests().outage(t_up, t);
        }
        let t_end = self.now();
        let reqs = self.prober.requests();
        let outage = reqs.outage(t_fault, t_settled);
        let failed: Vec<String> = reqs
            .failed(t_fault, t_end)
            .iter()
            .take(5)
            .map(|r| format!("{:.3}s: {}", r.start.as_secs_f64(), r.detail))
            .collect();
        let failed_n = reqs.failed(t_fault, t_end).len();
        let failed_after: Vec<Duration> = reqs
            .failed(t_fault, t_end)
            .iter()
            .map(|r| r.start.saturating_sub(t_fault))
            .collect();
        // In flight at the injection (on any machine: the client cannot tell which).
        let in_flight_at_fault = reqs
            .0
            .iter()
            .filter(|r| r.start <= t_injected && r.end >= t_fault)
            .count();
        let takeover = self
            .watch
            .holders()
            .iter()
            .find(|c| c.t >= t_fault && c.holders.iter().any(|h| *h != from))
            .map(|c| c.t - t_fault);
        let released = self
            .watch
            .holders()
            .iter()
            .find(|c| c.t >= t_fault && !c.holders.contains(&from))
            .map(|c| c.t - t_fault);
        // The neighbour entry at settle time, against the settled holder's MAC.
        let neigh = self.watch.neighbour();
        let last_neigh = neigh.iter().rev().find(|c| c.t <= t_settled);
        let (neighbour_follows, neighbour_detail) = match (settled_idx, last_neigh) {
            (Some(h), Some(n)) => {
                let mac = self.machines[h].host.mac()?;
                (
                    n.mac == mac,
                    format!(
                        "client -> {} ({:?}), holder {} has {mac}",
                        n.mac, n.host, self.machines[h].host.name
                    ),
                )
            }
            (h, n) => (false, format!("holder {h:?}, neighbour entry {n:?}")),
        };
        let arp_claims: Vec<_> = self
            .arp_claims()
            .into_iter()
            .filter(|(t, _, _)| *t >= t_fault && *t <= t_settled)
            .collect();
        let arp_claimers_after_takeover = {
            let from_t = takeover.map(|d| t_fault + d).unwrap_or(t_fault);
            let mut m: Vec<&String> = arp_claims
                .iter()
                .filter(|(t, _, _)| *t > from_t)
                .map(|(_, m, _)| m)
                .collect();
            m.sort();
            m.dedup();
            m.len()
        };
        let mut timeline: Vec<String> = self
            .watch
            .holders()
            .iter()
            .filter(|c| c.t + Duration::from_millis(500) >= t_fault)
            .map(|c| format!("{:8.3}s holders {:?}", c.t.as_secs_f64(), c.holders))
            .collect();
        timeline.extend(
            neigh
                .iter()
                .filter(|c| c.t + Duration::from_millis(500) >= t_fault)
                .map(|c| {
                    format!(
                        "{:8.3}s client neighbour -> {} {:?}",
                        c.t.as_secs_f64(),
                        c.mac,
                        c.host
                    )
                }),
        );
        timeline.extend(arp_claims.iter().map(|(t, m, h)| {
            format!(
                "{:8.3}s client got ARP: VIP is-at {m} {h:?}",
                t.as_secs_f64()
            )
        }));
        timeline.push(format!("{:8.3}s failure injected", t_fault.as_secs_f64()));
        timeline.push(format!("{:8.3}s settled", t_settled.as_secs_f64()));
        timeline.sort();
        let repaired = self.repair();
        let t_repaired = self.now();
        let doubles = self.watch.doubles(t_fault, t_end);
        let doubles_repair = self.watch.doubles(t_end, t_repaired);
        let out = Outcome {
            agent: self.agent_label(),
            scenario: s,
            t_fault,
            load_balancing,
            expected_move: s.moves(load_balancing),
            from,
            holder_led_etcd,
            settled_holders,
            settled_on_healthy,
            stayed_orphaned,
            takeover,
            released,
            outage,
            requests: reqs.count(t_fault, t_end),
            failed: failed_n,
            failures: failed,
            failed_after,
            in_flight_at_fault,
            slowest: reqs.slowest(t_fault, t_end),
            doubles,
            doubles_repair,
            arp_claims,
            arp_claimers_after_takeover,
            neighbour_follows,
            neighbour_detail,
            changes_after_restore,
            restore_outage,
            timeline,
        };
        eprintln!("[vip] {}", out.line());
        repaired.with_context(|| format!("repairing after {}", s.name()))?;
        Ok(out)
    }

    /// Whether the VIP is where it may settle after scenario `s` hit `hit`: one holder,
    /// healthy and not hit. After an agent's SIGKILL the address it added stays on its
    /// interface (nobody is left to remove it) while its API server still answers; an agent
    /// that refuses to take over a VIP another host still answers for (no two holders)
    /// leaves it there, so that also counts, once a lease TTL and more have passed.
    fn settled_ok(&mut self, s: Scenario, old: usize, hit: &[usize], t_fault: Duration) -> bool {
        let Some(h) = self.holder() else { return false };
        let lb = self.load_balancing();
        if !hit.contains(&h) && self.machines[h].healthy(lb) {
            return true;
        }
        s == Scenario::AgentSigkill
            && h == old
            && self.now() - t_fault > Duration::from_secs(5)
            && self.machines[h]
                .api
                .as_mut()
                .is_some_and(|c| c.is_running())
    }

    /// Replaces machine `i` ([`Testbed::replace_machine`]) and waits for a steady state.
    fn replace(&mut self, i: usize) -> Result<()> {
        self.replace_machine(i)?;
        if self.kube_api() {
            self.wait_api_ready(i)?;
        }
        self.wait_stable(Duration::from_secs(60))?;
        Ok(())
    }

    /// Replaces machine `i` as Cluster API does: stops its agent and then its API server
    /// (SIGTERM), moves etcd leadership off its member and removes it, deletes the host,
    /// then adds a new host with a new name and address, etcd member, API server and agent.
    /// Does not wait for a steady state, nor for a real kube-apiserver to be ready. Returns the new machine's name and MAC.
    pub fn replace_machine(&mut self, i: usize) -> Result<(String, String)> {
        let old = self.machines[i].host.clone();
        if let Some(mut a) = self.machines[i].agent.take() {
            a.terminate(Duration::from_secs(10));
        }
        // Drained, as the kubelet stops a static pod: /readyz 503 for the shutdown delay
        // while requests are still served, then the listener closes. A real kube-apiserver
        // then holds open watches for up to 60 s: the machine is powered off 2 s after its
        // 2 s shutdown delay instead.
        let grace = Duration::from_secs(if self.kube_api() { 4 } else { 10 });
        if let Some(mut a) = self.machines[i].api.take() {
            a.terminate(grace);
        }
        let idx = self
            .etcd
            .index_of(&old)
            .context("replaced machine has no etcd member")?;
        self.etcd.move_leader_off(idx)?;
        self.etcd.remove(idx)?;
        self.watch.remove_host(&old.name);
        self.net.remove_host(&old)?;
        let n = self.next_host;
        self.next_host += 1;
        let host = self.net.add_host(&format!("cp{n}"), 10 + n as u8)?;
        self.watch.add_host(&host)?;
        let mac = host.mac()?;
        self.macs.push((mac.clone(), host.name.clone()));
        self.etcd.add(&host)?;
        let slot = self.machines[i].slot;
        let name = host.name.clone();
        self.machines[i] = Machine::fresh(host, slot);
        self.start_api(i)?;
        // The stand-in is ready in ~0.1 s. A real kube-apiserver takes 8–30 s: its agent
        // starts beside it, as the kubelet starts both static pods, and stays out of the
        // election until /readyz passes (the chaos runner times the start).
        if !self.kube_api() {
            self.wait_api_ready(i)?;
        }
        self.start_agent(i)?;
        eprintln!("[vip] replaced {} by {name}", old.name);
        Ok((name, mac))
    }

    /// Replaces machine `i`'s etcd member as Cluster API would: leadership moved off it,
    /// `member remove`, its data deleted, then a fresh member with a new name and a new
    /// address (a second address on the machine's eth0) added and started, and the cluster
    /// waited healthy. The agents learn the new member from etcd's member list. Returns the
    /// new member's name and client URL.
    pub fn replace_etcd_member(&mut self, i: usize) -> Result<(String, String)> {
        let machine = self.machines[i].host.clone();
        let idx = self
            .etcd
            .index_of(&machine)
            .context("the machine has no etcd member")?;
        self.etcd.move_leader_off(idx)?;
        let old_dir = self.etcd.members[idx].data_dir().to_path_buf();
        self.etcd.remove(idx)?;
        let _ = std::fs::remove_dir_all(&old_dir);
        let n = self.next_host;
        self.next_host += 1;
        let mut host = machine.clone();
        host.name = format!("etcd{n}");
        host.addr = self.net.addr(10 + n as u8);
        machine.exec(
            "ip",
            &["addr", "add", &format!("{}/24", host.addr), "dev", "eth0"],
        )?;
        self.etcd.add(&host)?;
        let url = format!("http://{}:2379", host.addr);
        eprintln!(
            "[vip] {}: etcd member replaced by {} at {url}",
            machine.name, host.name
        );
        Ok((host.name, url))
    }
}
