//! Leadership transfer against a real three-member etcd cluster (Debian `etcd-server` 3.4)
//! on loopback: three members on 127.0.0.1 with ports picked free at start and their own
//! data directories, killed at the end. Checks the calls `cpe vip` uses to keep the etcd
//! leader off the VIP holder: member list, per-member status, and `move_leader`, which must
//! make the named member the leader (and is refused by a member that does not lead).
//! It needs the `etcd` binary; without it the test fails and says so.

mod common;

use common::free_port;
use cpe_election::{Client, Error, TlsFiles};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Cluster {
    children: Vec<Child>,
    urls: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn start_cluster() -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let initial = ports
        .iter()
        .enumerate()
        .map(|(i, (_, p))| format!("m{i}=http://127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut children = Vec::new();
    let mut urls = Vec::new();
    for (i, (c, p)) in ports.iter().enumerate() {
        let url = format!("http://127.0.0.1:{c}");
        let peer = format!("http://127.0.0.1:{p}");
        let child = Command::new("etcd")
            .args(["--name", &format!("m{i}"), "--data-dir"])
            .arg(dir.path().join(format!("m{i}")))
            .args(["--listen-client-urls", &url, "--advertise-client-urls", &url])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &initial])
            .args(["--initial-cluster-token", "cpe-move-leader-test"])
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.path().join(format!("m{i}.log"))).unwrap(),
            ))
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start `etcd` ({e}): install Debian's etcd-server (scripts/test.sh does)")
            });
        children.push(child);
        urls.push(url);
    }
    Cluster {
        children,
        urls,
        _dir: dir,
    }
}

fn client_for(urls: &[String]) -> Client {
    Client::new(urls, TlsFiles::default(), Duration::from_secs(2)).unwrap()
}

/// The leader every member agrees on, once there is one.
async fn agreed_leader(c: &Client, urls: &[String]) -> u64 {
    let t0 = Instant::now();
    loop {
        let mut seen = Vec::new();
        for u in urls {
            if let Ok(s) = c.status_at(u).await {
                seen.push(s.leader);
            }
        }
        if seen.len() == urls.len() && seen[0] != 0 && seen.iter().all(|l| *l == seen[0]) {
            return seen[0];
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the cluster did not agree on a leader: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn move_leader_hands_raft_leadership_to_the_named_member() {
    let cluster = start_cluster();
    let c = client_for(&cluster.urls);
    let leader = agreed_leader(&c, &cluster.urls).await;

    // The member list maps ids to client URLs; every member is started (has a name).
    let members = c.members().await.unwrap();
    assert_eq!(members.len(), 3, "{members:?}");
    assert!(members.iter().all(|m| !m.name.is_empty()), "{members:?}");
    let url_of = |id: u64| {
        members
            .iter()
            .find(|m| m.id == id)
            .map(|m| m.client_urls[0].clone())
            .unwrap_or_else(|| panic!("member {id} not in {members:?}"))
    };
    // Each member's status names itself in the header.
    for m in &members {
        let s = c.status_at(&m.client_urls[0]).await.unwrap();
        assert_eq!(s.member_id, m.id);
        assert_eq!(s.leader, leader);
        assert!(s.errors.is_empty(), "{s:?}");
    }

    // Twice, so the test does not pass by luck of the first election.
    let mut current = leader;
    for _ in 0..2 {
        let target = members
            .iter()
            .map(|m| m.id)
            .find(|id| *id != current)
            .unwrap();
        // A member that does not lead refuses the transfer.
        let follower = members
            .iter()
            .map(|m| m.id)
            .find(|id| *id != current && *id != target)
            .unwrap();
        match c.move_leader(&url_of(follower), target).await {
            Err(Error::Etcd { message, .. }) => {
                assert!(message.contains("not leader"), "{message}")
            }
            other => panic!("a follower accepted a transfer: {other:?}"),
        }
        c.move_leader(&url_of(current), target).await.unwrap();
        assert_eq!(agreed_leader(&c, &cluster.urls).await, target);
        current = target;
    }

    // An unreachable member is an error naming it, within the timeout.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let t0 = Instant::now();
    let e = c.status_at(&dead).await.unwrap_err().to_string();
    assert!(e.contains(&dead), "{e}");
    assert!(t0.elapsed() < Duration::from_secs(3));
}
