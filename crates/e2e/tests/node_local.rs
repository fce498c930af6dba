//! The node-local load balancer against real kube-apiservers (issue 12): three
//! control-plane machines as network namespaces (`cpe_testkit::kube`: real etcd, real
//! kube-apiserver 1.20 advertising its own address), and a worker — the testbed's `lb`
//! host — running `cpe lb --node-local` on its loopback, seeded with one machine and
//! following the `kubernetes` Endpoints.
//!
//! - Every control-plane machine is replaced in turn (new names, new addresses) while the
//!   worker polls `https://127.0.0.1:7445/version` every 50 ms and runs `kubectl --server
//!   https://localhost:7445 get --raw /readyz` (CA verified: the serving certificates name
//!   `localhost`). No request fails beyond those in flight on a killed server, and the
//!   worker's `cpe lb` is the same process throughout, never signalled or reconfigured.
//! - The worker's load balancer then restarts while every seed address is gone: it serves
//!   from its cache.
//!
//! Needs root, etcd, etcdctl, curl, kubectl and the kube-apiserver of
//! `scripts/kube-apiserver.sh`; fails, never skips, without them.

use cpe_testkit::kube::{watch::KubectlLoop, watch::LbStatus, ApiOptions, KubeBed, User};
use cpe_testkit::observe::{Prober, Target};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

const LISTEN: &str = "127.0.0.1:7445";
const ADMIN: &str = "127.0.0.1:9632";

macro_rules! check {
    ($bed:expr, $what:expr, $e:expr $(,)?) => {
        match $e {
            Ok(v) => v,
            Err(e) => panic!("{}: {:#}\n{}", $what, e, $bed.logs(25)),
        }
    };
}

/// `cpe lb --node-local` in the worker (`lb` host), seeded with `seed`.
fn start_node_local(bed: &KubeBed, seed: &str, cache: &Path, log: &str) -> cpe_testkit::Child {
    let kc = check!(bed, "kubeconfig", bed.kubeconfig(User::Discovery, seed));
    let args: Vec<String> = [
        "lb",
        "--node-local",
        "--backend",
        seed,
        "--discover",
        "kubernetes",
        "--kubeconfig",
        kc.to_str().unwrap(),
        "--cache-dir",
        cache.to_str().unwrap(),
        "--ca-file",
        bed.pki().ca_path().to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let logf = bed.dir().join(format!("{log}.log"));
    let mut child = check!(
        bed,
        "spawn cpe lb --node-local",
        bed.lb
            .spawn("cpe lb --node-local", &logf, cpe_e2e::cpe_bin(), &args)
    );
    let t = Instant::now();
    while bed
        .lb
        .exec(
            "curl",
            &["-sf", "-m", "1", &format!("http://{ADMIN}/status")],
        )
        .is_err()
    {
        assert!(
            child.is_running() && t.elapsed() < Duration::from_secs(20),
            "cpe lb --node-local did not come up: {}",
            child.tail(30)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    child
}

fn status_backends(bed: &KubeBed) -> Vec<String> {
    let text = bed
        .lb
        .exec(
            "curl",
            &["-sf", "-m", "2", &format!("http://{ADMIN}/status")],
        )
        .unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let mut out: Vec<String> = v["backends"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| {
            b["address"]
                .as_str()
                .or(b["name"].as_str())
                .map(String::from)
        })
        .collect();
    out.sort();
    out
}

fn wait_backends(bed: &KubeBed, want: &[String], timeout: Duration) -> Duration {
    let t = Instant::now();
    loop {
        let got = status_backends(bed);
        if got == want {
            return t.elapsed();
        }
        assert!(
            t.elapsed() < timeout,
            "node-local lists {got:?}, want {want:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn api_addrs(bed: &KubeBed) -> Vec<String> {
    let mut v: Vec<String> = bed.addrs().iter().map(|a| format!("{a}:6443")).collect();
    v.sort();
    v
}

/// `/version` from the worker as `https://localhost:7445` (CA verified: the certificate
/// names `localhost`), connecting to `connect` (`127.0.0.1` or `[::1]`).
fn curl_version(bed: &KubeBed, connect: &str) -> anyhow::Result<String> {
    let ca = bed.pki().ca_path();
    let to = format!("localhost:7445:{connect}:7445");
    bed.lb.exec(
        "curl",
        &[
            "-sf",
            "-m",
            "3",
            "--cacert",
            ca.to_str().unwrap(),
            "--connect-to",
            &to,
            "https://localhost:7445/version",
        ],
    )
}

#[test]
fn a_worker_keeps_reaching_the_api_through_node_local_while_every_machine_is_replaced() {
    let t = Instant::now();
    let mut bed = KubeBed::start("nlrep", &["cp-a", "cp-b", "cp-c"], ApiOptions::default())
        .unwrap_or_else(|e| panic!("kube testbed: {e:#}"));
    eprintln!("kube testbed up in {:.1}s", t.elapsed().as_secs_f64());
    check!(bed, "apply RBAC", bed.apply_discovery_rbac());
    let cache = bed.dir().join("node-local-cache");
    std::fs::create_dir_all(&cache).unwrap();
    let seed = bed.api_addr("cp-a").unwrap();
    let mut lb = start_node_local(&bed, &seed, &cache, "node-local");
    let pid = lb.pid();
    let learned = wait_backends(&bed, &api_addrs(&bed), Duration::from_secs(30));
    eprintln!(
        "node-local seeded with cp-a lists all three machines {:.1}s after its start",
        learned.as_secs_f64()
    );
    // Both loopback families; `localhost` names the API servers' certificates.
    check!(
        bed,
        "version over 127.0.0.1",
        curl_version(&bed, "127.0.0.1")
    );
    let has_v6 = bed
        .lb
        .exec("ip", &["-6", "addr", "show", "dev", "lo"])
        .is_ok_and(|o| o.contains("::1"));
    if has_v6 {
        check!(bed, "version over [::1]", curl_version(&bed, "[::1]"));
    } else {
        eprintln!("the worker's namespace has no ::1: node-local serves IPv4 only there");
    }

    let epoch = Instant::now();
    let status = check!(
        bed,
        "status poller",
        LbStatus::start(
            &bed.lb,
            ADMIN.parse().unwrap(),
            Duration::from_millis(50),
            epoch
        )
    );
    let prober = check!(
        bed,
        "prober",
        Prober::start(
            &bed.lb,
            Target {
                addr: LISTEN.parse::<SocketAddr>().unwrap(),
                https: true,
                path: "/version".into(),
            },
            Duration::from_millis(50),
            Duration::from_secs(5),
            epoch,
        )
    );
    let kc = check!(
        bed,
        "admin kubeconfig",
        bed.kubeconfig(User::Admin, "localhost:7445")
    );
    let kubectl = check!(
        bed,
        "kubectl loop",
        KubectlLoop::start(
            &bed.lb,
            bed.dir().to_path_buf(),
            kc,
            Duration::from_millis(200),
            epoch
        )
    );
    std::thread::sleep(Duration::from_secs(1));
    for (old, new) in ["cp-a", "cp-b", "cp-c"]
        .into_iter()
        .zip(["cp-x7k2p", "cp-m4q9z", "cp-r8w3d"])
    {
        let ready = check!(bed, "add machine", bed.add_machine(new));
        let addr = bed.api_addr(new).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while status.backend(&addr).first_connect.is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let seen = status.backend(&addr);
        eprintln!(
            "{new} ({addr}) ready {:.1}s after its start; listed at {:?}, first proxied connection at {:?}",
            ready.as_secs_f64(),
            seen.listed,
            seen.first_connect
        );
        check!(bed, "remove machine", bed.remove_machine(old));
    }
    check!(bed, "finish leaving", bed.finish_leaving());
    std::thread::sleep(Duration::from_secs(2));
    let runs = kubectl.runs();
    drop(kubectl);
    let requests = prober.requests().0;
    drop(prober);
    drop(status);
    let failed: Vec<_> = requests.iter().filter(|r| !r.ok).collect();
    let kubectl_failed: Vec<_> = runs
        .iter()
        .filter(|r| !r.ok)
        // The /readyz answer of a server being removed is the server answering.
        .filter(|r| {
            !(r.output.contains("[-]etcd failed") || r.output.contains("[-]shutdown failed"))
        })
        .collect();
    eprintln!(
        "node-local during the replacement ({:.1}s): /version every 50 ms: {} requests, {} failed; kubectl --server https://localhost:7445: {} runs, {} failed",
        epoch.elapsed().as_secs_f64(),
        requests.len(),
        failed.len(),
        runs.len(),
        kubectl_failed.len()
    );
    for r in failed.iter().take(5) {
        eprintln!(
            "  failed request at {:.2}s: {}",
            r.start.as_secs_f64(),
            r.detail
        );
    }
    assert!(
        failed.is_empty(),
        "{} /version requests failed\n{}",
        failed.len(),
        lb.tail(40)
    );
    assert!(
        kubectl_failed.is_empty(),
        "kubectl through node-local failed: {:?}\n{}",
        kubectl_failed.first().map(|r| &r.output),
        lb.tail(40)
    );
    // The same process all along: never restarted, never sent a signal (no reload).
    assert!(
        lb.is_running(),
        "cpe lb --node-local exited: {}",
        lb.tail(40)
    );
    assert_eq!(lb.pid(), pid);
    assert!(
        !lb.tail(400).contains("reloaded"),
        "node-local was reconfigured: {}",
        lb.tail(40)
    );
    check!(
        bed,
        "endpoints",
        bed.wait_endpoints(&bed.addrs(), Duration::from_secs(60))
    );
    let new = api_addrs(&bed);
    wait_backends(&bed, &new, Duration::from_secs(30));

    // The worker's load balancer restarts while every seed address is gone: the cache.
    lb.terminate(Duration::from_secs(10));
    drop(lb);
    let t = Instant::now();
    let lb = start_node_local(&bed, &seed, &cache, "node-local-restart");
    let served = loop {
        if curl_version(&bed, "127.0.0.1").is_ok() {
            break t.elapsed();
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "a restarted node-local whose seeds are gone does not serve from its cache\n{}",
            lb.tail(40)
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!(
        "node-local restarted with every seed gone: first /version through localhost {:.1}s after its start",
        served.as_secs_f64()
    );
    wait_backends(&bed, &new, Duration::from_secs(30));
}
