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

#[path = "discovery/vip.rs"]
mod vip;

use vip::{generated_name, start_agent, status_code, vip_definition};

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

/// Applies what `cpe render --kind rbac` writes (the discovery identity's least privilege)
/// with kubectl. The objects do not depend on the definition; any valid one will do.
fn apply_rendered_rbac(bed: &KubeBed) {
    let def = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/external-lb-3.yaml"
    );
    let out = std::process::Command::new(cpe_e2e::cpe_bin())
        .args(["render", "-f", def, "--kind", "rbac"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cpe render --kind rbac: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = String::from_utf8(out.stdout).unwrap();
    if let Err(e) = bed.apply(&yaml) {
        panic!(
            "kubectl apply (cpe render --kind rbac): {e:#}\n{}",
            bed.logs(20)
        );
    }
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
    apply_rendered_rbac(&bed);
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
        bed.kubectl(&["delete", "rolebinding", "cpe-lb-discovery", "-n", "default"])
    );
    let t = wait_fault(&bed, &lb, |f| f.contains("403") || f.contains("orbidden"));
    eprintln!(
        "403 (RoleBinding deleted) shown in /status after {:.1}s",
        t.as_secs_f64()
    );
    hold_backends(&bed, &three, Duration::from_secs(3));
    apply_rendered_rbac(&bed);

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
fn kubeadm_init_bootstrap_then_rolling_replacement_through_cpe_lb_and_vip_agents_then_a_cache_restart(
) {
    let _g = serial();
    let mut bed = KubeBed::start("kbrep", &[], ApiOptions::default())
        .unwrap_or_else(|e| panic!("kube testbed: {e:#}"));
    let def = vip_definition(bed.dir(), bed.vip);
    let vip = bed.vip;
    let epoch = Instant::now();
    let mut agents: std::collections::HashMap<String, cpe_testkit::Child> = Default::default();

    // 1. kubeadm init-like: agent, etcd and API server of the first machine started in a
    //    random order; a kubelet restarts an API server that gave up on a missing etcd.
    let first = generated_name(0);
    let host = check!(bed, "first machine", bed.add_bare_machine(&first));
    let watch = cpe_testkit::observe::Watch::start(
        std::slice::from_ref(&host),
        &bed.client,
        vip,
        Duration::from_millis(10),
        epoch,
    )
    .unwrap();
    let mut order = ["agent", "etcd", "api"];
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as usize;
    for i in (1..order.len()).rev() {
        order.swap(i, (seed >> (i * 3)) % (i + 1));
    }
    eprintln!("bootstrap of {first}: started in the order {order:?}");
    let t0 = Instant::now();
    for what in order {
        match what {
            "agent" => {
                agents.insert(first.clone(), start_agent(&bed, &host, &def));
            }
            "etcd" => check!(bed, "first etcd", bed.start_first_etcd(&first)),
            _ => check!(bed, "first API server", bed.start_api(&first)),
        }
    }
    let readyz = format!("https://127.0.0.1:{API_PORT}/readyz");
    let vip_readyz = format!("https://{vip}:{API_PORT}/readyz");
    let (mut api_ready, mut vip_up, mut restarts) = (None, None, 0);
    while api_ready.is_none() || vip_up.is_none() {
        assert!(
            t0.elapsed() < Duration::from_secs(180),
            "bootstrap: API server ready after {api_ready:?}, VIP after {vip_up:?}\n--- agent ---\n{}\n{}",
            agents[&first].tail(30),
            bed.logs(20)
        );
        if !bed.api_running(&first) {
            restarts += 1;
            check!(bed, "API server restart", bed.start_api(&first));
        }
        if api_ready.is_none() && status_code(&host, &readyz) == Some(200) {
            api_ready = Some(t0.elapsed());
        }
        if vip_up.is_none() && status_code(&bed.client, &vip_readyz) == Some(200) {
            vip_up = Some(t0.elapsed());
        }
        assert!(
            agents.get_mut(&first).unwrap().is_running(),
            "the agent must wait for etcd and its API server, not exit:\n{}",
            agents[&first].tail(30)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (api_ready, vip_up) = (api_ready.unwrap(), vip_up.unwrap());
    let lag = vip_up.saturating_sub(api_ready);
    eprintln!(
        "bootstrap: API server's first /readyz 200 at {:.1}s ({restarts} kubelet restarts), VIP answers at {:.1}s: {:.2}s after it",
        api_ready.as_secs_f64(),
        vip_up.as_secs_f64(),
        lag.as_secs_f64()
    );
    assert!(
        lag < Duration::from_secs(10),
        "the VIP answered {lag:?} after the API server's first /readyz 200 (want a few seconds)"
    );
    check!(bed, "wait_ready", bed.wait_ready(&first));

    // 2. kubeadm join-like: two more machines, etcd first, then API server and agent.
    for salt in 1..=2 {
        let name = generated_name(salt);
        check!(bed, "join", bed.add_machine(&name));
        let h = bed.machine(&name).unwrap().host.clone();
        agents.insert(name.clone(), start_agent(&bed, &h, &def));
        watch.add_host(&h).unwrap();
    }
    check!(
        bed,
        "endpoints",
        bed.wait_endpoints(&bed.addrs(), Duration::from_secs(30))
    );
    let originals = bed.names();
    eprintln!("machines: {originals:?}");

    // 3. cpe lb seeded with the first machine only.
    apply_rendered_rbac(&bed);
    let cache = bed.dir().join("lb-cache");
    std::fs::create_dir_all(&cache).unwrap();
    let seed = bed.api_addr(&first).unwrap();
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
        "cpe lb seeded with {first} lists all three machines {:.1}s after its start",
        learned.as_secs_f64()
    );

    // 4. The rolling replacement, through the LB and the VIP at once.
    let new_names: Vec<String> = (3..6).map(generated_name).collect();
    let new_refs: Vec<&str> = new_names.iter().map(|s| s.as_str()).collect();
    let t_replace = epoch.elapsed();
    let mut hook = |bed: &mut KubeBed, step: replace::Step<'_>| -> anyhow::Result<()> {
        match step {
            replace::Step::Joined(n) => {
                let h = bed.machine(n)?.host.clone();
                agents.insert(n.to_string(), start_agent(bed, &h, &def));
                watch.add_host(&h)?;
            }
            replace::Step::Removed(n) => {
                if let Some(mut a) = agents.remove(n) {
                    a.terminate(Duration::from_secs(10));
                }
                watch.remove_host(n);
            }
        }
        Ok(())
    };
    let out = replace::rolling_replacement(
        &mut bed,
        &new_refs,
        replace::Options {
            admin: Some(replace::LB_ADMIN.parse().unwrap()),
            vip: Some(SocketAddr::new(vip.into(), API_PORT)),
            hook: Some(&mut hook),
            epoch,
        },
    );
    let out = match out {
        Ok(o) => o,
        Err(e) => panic!(
            "replacement: {e:#}\n--- cpe lb ---\n{}\n{}",
            lb.tail(40),
            bed.logs(25)
        ),
    };
    eprint!("{}", out.summary("replacement"));
    let new = sorted_api_addrs(&bed);
    let final_status = lb_status(&bed);
    eprintln!(
        "/status discovery after the replacement: {}",
        final_status["discovery"]
    );
    let changes = watch.changes(t_replace, epoch.elapsed());
    let handover = |start: Duration, end: Duration| {
        changes.iter().any(|c| {
            c.t + Duration::from_secs(1) >= start && c.t <= end + Duration::from_millis(100)
        })
    };
    let server_answer = |o: &str| o.contains("[-]etcd failed") || o.contains("[-]shutdown failed");
    let problems = [
        (!out.failed().is_empty())
            .then(|| format!("{} /version requests through cpe lb failed", out.failed().len())),
        // kubectl through an L4 LB may get the /readyz answer of a machine being removed
        // (its etcd member gone, or SIGTERMed) before the LB's next check sees it: that is
        // the server answering, not the endpoint failing. Anything else is a failure.
        out.kubectl_failed()
            .into_iter()
            .find(|r| !server_answer(&r.output))
            .map(|r| format!("kubectl through cpe lb failed at {:.2}s: {}", r.start.as_secs_f64(), r.output)),
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
        // Through the VIP: only requests in flight while the VIP moved may fail.
        out.vip_requests
            .iter()
            .find(|r| !r.ok && !handover(r.start, r.end))
            .map(|r| format!("/version through the VIP failed at {:.2}s, no handover then: {}", r.start.as_secs_f64(), r.detail)),
        out.vip_kubectl
            .iter()
            .find(|r| !r.ok && !server_answer(&r.output) && !handover(r.start, r.start + Duration::from_secs(5)))
            .map(|r| format!("kubectl through the VIP failed at {:.2}s: {}", r.start.as_secs_f64(), r.output)),
        (!watch.doubles(Duration::ZERO, epoch.elapsed()).is_empty())
            .then(|| format!("two holders: {:?}", watch.doubles(Duration::ZERO, epoch.elapsed()))),
        (!watch.current().iter().all(|h| new_names.contains(h)) || watch.current().len() != 1)
            .then(|| format!("VIP held by {:?} at the end, want one of {new_names:?}", watch.current())),
    ];
    let problems: Vec<String> = problems.into_iter().flatten().collect();
    eprintln!(
        "VIP holder changes during the replacement: {:?}",
        changes
            .iter()
            .map(|c| (format!("{:.2}", c.t.as_secs_f64()), c.holders.clone()))
            .collect::<Vec<_>>()
    );
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

    // 5. Cache: the only seed is gone; a restarted cpe lb must serve from the addresses
    //    it cached.
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
    drop(agents);
}
