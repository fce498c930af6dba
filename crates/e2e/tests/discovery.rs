//! Discovery against real kube-apiservers (issue 10): machines as network namespaces, each
//! with a real etcd member and a real kube-apiserver 1.20 advertising its own address
//! (`cpe_testkit::kube`), and `cpe lb --discover kubernetes` in a host of its own.
//!
//! - The real servers register themselves in the `kubernetes` Endpoints (and leave them on
//!   SIGTERM, or when their lease expires after SIGKILL), the discovery identity's RBAC
//!   lets it read those and nothing else, and cpe lb's set follows them.
//! - Rolling replacement as Cluster API does it, through `cpe lb --discover kubernetes`
//!   seeded with the first machine only; then a restart of `cpe lb` with every seed gone,
//!   served from its cache.
//! - Discovery faults made real: 403 (the RoleBinding deleted) and the API unreachable
//!   (the LB's links to the machines cut): the backend set stays, the fault is shown.
//!
//! A test binary of its own, its tests one at a time (they measure, and each API server
//! start takes seconds of CPU on 2 shared cores). Needs root, etcd, etcdctl, curl, kubectl
//! and the kube-apiserver of `scripts/kube-apiserver.sh` (`CPE_KUBE_APISERVER`); fails,
//! never skips, without them.

use cpe_testkit::kube::{replace, ApiOptions, KubeBed, User, API_PORT};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

static SERIAL: Mutex<()> = Mutex::new(());

/// A new machine's first proxied connection later than this after its first `/readyz` 200
/// means discovery lagged (a few hundred milliseconds is usual here).
const LATE: Duration = Duration::from_secs(15);

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn start_bed(tag: &str) -> KubeBed {
    let t = Instant::now();
    let bed = KubeBed::start(tag, &["cp-a", "cp-b", "cp-c"], ApiOptions::default())
        .unwrap_or_else(|e| panic!("kube testbed: {e:#}"));
    eprintln!(
        "kube testbed up (3 etcd members, 3 kube-apiservers, listed in the Endpoints) in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    bed
}

/// The value of a testbed step; on failure the testbed's logs are printed before failing.
macro_rules! check {
    ($bed:expr, $what:expr, $e:expr $(,)?) => {
        match $e {
            Ok(v) => v,
            Err(e) => panic!("{}: {:#}\n{}", $what, e, $bed.logs(25)),
        }
    };
}

#[test]
fn real_servers_register_discovery_reads_only_them_and_its_faults_keep_the_backends() {
    let _g = serial();
    let mut bed = start_bed("kbflt");
    let all = bed.addrs();
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(check!(bed, "endpoints", bed.endpoints()), sorted);
    // 1.20 serves discovery.k8s.io/v1beta1 slices, not v1.
    let slices = check!(
        bed,
        "endpointslices",
        bed.kubectl(&[
            "get",
            "endpointslices.v1beta1.discovery.k8s.io",
            "-n",
            "default",
            "kubernetes",
            "-o",
            "json"
        ]),
    );
    for a in &all {
        assert!(slices.contains(&a.to_string()), "slice lacks {a}: {slices}");
    }

    // The discovery identity reads the kubernetes Endpoints/slices in default, nothing else.
    check!(bed, "apply RBAC", bed.apply_discovery_rbac());
    let kc = check!(
        bed,
        "kubeconfig",
        bed.kubeconfig(User::Discovery, &bed.api_addr("cp-a").unwrap()),
    );
    check!(
        bed,
        "discovery reads endpoints",
        bed.kubectl_with(&kc, &["get", "endpoints", "kubernetes", "-n", "default"]),
    );
    check!(
        bed,
        "discovery reads slices",
        bed.kubectl_with(
            &kc,
            &[
                "get",
                "endpointslices.v1beta1.discovery.k8s.io",
                "-n",
                "default"
            ]
        ),
    );
    for denied in [
        &["get", "pods", "-n", "default"][..],
        &["get", "endpoints", "-n", "kube-system"],
        &["get", "secrets", "-n", "default"],
        &["delete", "endpoints", "kubernetes", "-n", "default"],
    ] {
        let r = bed.kubectl_with(&kc, denied);
        let e = format!(
            "{:#}",
            r.expect_err(&format!("discovery may not {denied:?}"))
        );
        assert!(e.contains("orbidden"), "{denied:?}: {e}");
    }

    // cpe lb seeded with cp-a learns the others; its watches end every 5 s so that a
    // changed permission is met at the next list.
    let cache = bed.dir().join("lb-cache");
    std::fs::create_dir_all(&cache).unwrap();
    let seed = bed.api_addr("cp-a").unwrap();
    let lb = check!(
        bed,
        "cpe lb",
        replace::start_cpe_lb(
            &bed,
            cpe_e2e::cpe_bin().as_ref(),
            std::slice::from_ref(&seed),
            &cache,
            &["--discovery-watch-timeout", "5s"],
            "lb",
        )
    );
    let three = sorted_api_addrs(&bed);
    let t = wait_lb_backends(&bed, &three, Duration::from_secs(30));
    eprintln!(
        "cpe lb seeded with cp-a lists all three {:.1}s after its start",
        t.as_secs_f64()
    );

    // 403: the RoleBinding deleted. The set stays, the fault shows.
    check!(
        bed,
        "delete binding",
        bed.kubectl(&["delete", "rolebinding", "cpe-discovery", "-n", "default"])
    );
    let t = wait_fault(&bed, &lb, |f| f.contains("403") || f.contains("orbidden"));
    eprintln!(
        "403 (RoleBinding deleted) shown in /status after {:.1}s",
        t.as_secs_f64()
    );
    hold_backends(&bed, &three, Duration::from_secs(3));
    check!(bed, "re-apply RBAC", bed.apply_discovery_rbac());

    // The API unreachable: the LB host cut off from every machine (the client still
    // reaches the LB). The set stays (every backend down), the fault shows; healed, it serves.
    check!(bed, "partition", bed.lb.partition_from(&all));
    let t = wait_fault(&bed, &lb, |f| !f.contains("403") && !f.contains("orbidden"));
    eprintln!(
        "API unreachable shown in /status after {:.1}s",
        t.as_secs_f64()
    );
    hold_backends(&bed, &three, Duration::from_secs(3));
    check!(bed, "heal", bed.lb.heal());
    let url = format!("https://{}:{API_PORT}/version", bed.lb.addr);
    let t = Instant::now();
    while bed.client.exec("curl", &["-sfk", "-m", "2", &url]).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "no service after the heal\n{}",
            lb.tail(30)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "healed: served again after {:.1}s",
        t.elapsed().as_secs_f64()
    );
    hold_backends(&bed, &three, Duration::from_secs(1));

    // SIGTERM: the server leaves the Endpoints at once (during its shutdown delay), and the
    // LB's set follows.
    let t = Instant::now();
    check!(bed, "SIGTERM cp-b", bed.sigterm_api("cp-b"));
    let want: Vec<_> = all.iter().copied().filter(|a| *a != all[1]).collect();
    check!(
        bed,
        "cp-b leaves",
        bed.wait_endpoints(&want, Duration::from_secs(30))
    );
    let left = t.elapsed();
    let two: Vec<String> = three
        .iter()
        .filter(|a| !a.starts_with(&format!("{}:", all[1])))
        .cloned()
        .collect();
    wait_lb_backends(&bed, &two, Duration::from_secs(30));
    let lb_left = t.elapsed();
    check!(bed, "cp-b exits", bed.wait_api_exit("cp-b"));
    eprintln!(
        "SIGTERMed kube-apiserver (shutdown delay 3 s): out of the Endpoints {:.1}s and of cpe lb's set {:.1}s after SIGTERM, exited after {:.1}s",
        left.as_secs_f64(),
        lb_left.as_secs_f64(),
        t.elapsed().as_secs_f64(),
    );

    // SIGKILL: listed until its master lease (15 s in 1.20) expires and a live server
    // reconciles (every 10 s); the LB keeps it (down) until then.
    let t = Instant::now();
    check!(bed, "SIGKILL cp-c", bed.kill_api("cp-c"));
    let still = check!(bed, "endpoints", bed.endpoints());
    assert!(
        still.contains(&all[2]),
        "a SIGKILLed server is listed until its lease expires: {still:?}"
    );
    check!(
        bed,
        "cp-c's lease expires",
        bed.wait_endpoints(&[all[0]], Duration::from_secs(60))
    );
    let gone = t.elapsed();
    wait_lb_backends(&bed, &[seed], Duration::from_secs(30));
    eprintln!(
        "SIGKILLed kube-apiserver: out of the Endpoints {:.1}s and of cpe lb's set {:.1}s after SIGKILL",
        gone.as_secs_f64(),
        t.elapsed().as_secs_f64()
    );
}

/// The faults shown under `/status`'s `discovery` (every non-null `fault` or `error`
/// value, as text).
fn discovery_faults(status: &serde_json::Value) -> String {
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, x) in m {
                    if (k == "fault" || k == "error") && !x.is_null() {
                        out.push(x.to_string());
                    } else {
                        walk(x, out);
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(&status["discovery"], &mut out);
    out.join("; ")
}

/// Waits until `/status` shows a discovery fault `matches` accepts; returns the time.
fn wait_fault(bed: &KubeBed, lb: &cpe_testkit::Child, matches: impl Fn(&str) -> bool) -> Duration {
    let t = Instant::now();
    loop {
        let st = lb_status(bed);
        let f = discovery_faults(&st);
        if !f.is_empty() && matches(&f) {
            eprintln!("  /status discovery: {}", st["discovery"]);
            return t.elapsed();
        }
        if t.elapsed() > Duration::from_secs(30) {
            panic!(
                "no such discovery fault in /status after 30 s: {:#}\n--- cpe lb ---\n{}",
                st["discovery"],
                lb.tail(30)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Asserts that the LB's set stays exactly `want` for `d`.
fn hold_backends(bed: &KubeBed, want: &[String], d: Duration) {
    let t = Instant::now();
    while t.elapsed() < d {
        let st = lb_status(bed);
        assert_eq!(
            status_backends(&st),
            want,
            "a discovery fault changed the backend set: {st:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The addresses (`IP:PORT`) of the backends a `/status` document lists as members
/// (retired ones are under `removed`), sorted.
fn status_backends(status: &serde_json::Value) -> Vec<String> {
    let mut v: Vec<String> = status["backends"]
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
    v.sort();
    v
}

fn lb_status(bed: &KubeBed) -> serde_json::Value {
    let text = bed
        .lb
        .exec(
            "curl",
            &[
                "-sf",
                "-m",
                "2",
                &format!("http://{}/status", replace::LB_ADMIN),
            ],
        )
        .unwrap_or_else(|e| panic!("cpe lb /status: {e:#}"));
    serde_json::from_str(&text).unwrap()
}

/// Waits until the LB's `/status` lists exactly `want` (sorted `IP:PORT`s).
fn wait_lb_backends(bed: &KubeBed, want: &[String], timeout: Duration) -> Duration {
    let t = Instant::now();
    loop {
        let got = status_backends(&lb_status(bed));
        if got == want {
            return t.elapsed();
        }
        if t.elapsed() > timeout {
            panic!(
                "cpe lb lists {got:?} after {timeout:?}, want {want:?}\n{}",
                lb_status(bed)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn sorted_api_addrs(bed: &KubeBed) -> Vec<String> {
    let mut v: Vec<String> = bed
        .addrs()
        .iter()
        .map(|a| format!("{a}:{API_PORT}"))
        .collect();
    v.sort();
    v
}

#[test]
fn rolling_replacement_through_cpe_lb_discovery_then_a_restart_from_the_cache() {
    let _g = serial();
    let mut bed = start_bed("kbrep");
    check!(bed, "apply RBAC", bed.apply_discovery_rbac());
    let cache = bed.dir().join("lb-cache");
    std::fs::create_dir_all(&cache).unwrap();
    let seed = bed.api_addr("cp-a").unwrap();
    let mut lb = check!(
        bed,
        "cpe lb",
        replace::start_cpe_lb(
            &bed,
            cpe_e2e::cpe_bin().as_ref(),
            std::slice::from_ref(&seed),
            &cache,
            &[],
            "lb"
        )
    );
    let learned = wait_lb_backends(&bed, &sorted_api_addrs(&bed), Duration::from_secs(30));
    eprintln!(
        "cpe lb seeded with cp-a lists all three machines {:.1}s after its start",
        learned.as_secs_f64()
    );

    let admin: SocketAddr = replace::LB_ADMIN.parse().unwrap();
    let out = replace::rolling_replacement(&mut bed, &["cp-d", "cp-e", "cp-f"], Some(admin));
    let out = match out {
        Ok(o) => o,
        Err(e) => panic!(
            "replacement: {e:#}\n--- cpe lb ---\n{}\n{}",
            lb.tail(40),
            bed.logs(25)
        ),
    };
    eprint!("{}", out.summary("cpe lb --discover kubernetes"));
    let new = sorted_api_addrs(&bed);
    let final_status = lb_status(&bed);
    eprintln!(
        "/status discovery after the replacement: {}",
        final_status["discovery"]
    );
    let problems = [
        (!out.failed().is_empty())
            .then(|| format!("{} /version requests failed", out.failed().len())),
        // kubectl through an L4 LB may get the /readyz answer of a machine being removed
        // (its etcd member gone, or SIGTERMed) before the LB's next check sees it: that is
        // the server answering, not the endpoint failing. Anything else is a failure.
        out.kubectl_failed()
            .into_iter()
            .find(|r| {
                !(r.output.contains("[-]etcd failed") || r.output.contains("[-]shutdown failed"))
            })
            .map(|r| {
                format!(
                    "kubectl get --raw /readyz failed at {:.2}s: {}",
                    r.start.as_secs_f64(),
                    r.output
                )
            }),
        out.joined
            .iter()
            .find(|j| j.ready_to_proxied.is_none())
            .map(|j| format!("{} never got a proxied connection", j.name)),
        // Generous (a few hundred ms is usual): a discovery that lags by tens of seconds
        // (a watch left on a server that can no longer see changes) fails here.
        out.joined
            .iter()
            .find(|j| j.ready_to_proxied.is_some_and(|d| d > LATE))
            .map(|j| format!("{} got its first proxied connection {:?} after its first /readyz 200 (more than {LATE:?})", j.name, j.ready_to_proxied.unwrap())),
    ];
    let problems: Vec<String> = problems.into_iter().flatten().collect();
    assert!(
        problems.is_empty(),
        "{problems:#?}\n{final_status:#}\n--- cpe lb ---\n{}\n{}",
        lb.tail(40),
        bed.logs(20)
    );
    // A removed machine's API server cannot take itself out of the Endpoints (its etcd
    // member went first): it stays listed until its lease expires (15 s), and the LB's set
    // follows the Endpoints.
    let t = Instant::now();
    check!(
        bed,
        "endpoints",
        bed.wait_endpoints(&bed.addrs(), Duration::from_secs(60))
    );
    wait_lb_backends(&bed, &new, Duration::from_secs(30));
    eprintln!(
        "after the replacement: Endpoints and cpe lb's /status list exactly the three new machines {:.1}s after the last API server exited",
        t.elapsed().as_secs_f64()
    );

    // Cache: cp-a (the only seed) is gone; a restarted cpe lb must serve from the
    // addresses it cached.
    lb.terminate(Duration::from_secs(10));
    drop(lb);
    let t = Instant::now();
    let lb = check!(
        bed,
        "cpe lb restart",
        replace::start_cpe_lb(
            &bed,
            cpe_e2e::cpe_bin().as_ref(),
            &[seed],
            &cache,
            &[],
            "lb-restart"
        )
    );
    let url = format!("https://{}:{API_PORT}/version", bed.lb.addr);
    let served = loop {
        if bed.client.exec("curl", &["-sfk", "-m", "2", &url]).is_ok() {
            break t.elapsed();
        }
        if t.elapsed() > Duration::from_secs(30) {
            panic!(
                "a restarted cpe lb whose seeds are gone does not serve from its cache\n{}\n{:#}",
                lb.tail(40),
                lb_status(&bed)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!(
        "cpe lb restarted with every seed gone: first /version through it {:.1}s after its start",
        served.as_secs_f64()
    );
    wait_lb_backends(&bed, &new, Duration::from_secs(30));
}
