//! End-to-end failover of the built-in virtual IP (`cpe vip`), as root, on real hosts:
//! three control-plane machines as network namespaces on a bridge, each with a real etcd
//! member, the stand-in API server (`cpe test-apiserver`) and `cpe vip`, and a client that
//! sends an HTTPS request to `VIP:6443/readyz` every 20 ms while a watcher samples every
//! machine's addresses and the client's neighbour entry every 10 ms (`cpe_testkit::vip`).
//!
//! One testbed, the scenarios in sequence, each repaired before the next (the whole file
//! takes about two to three minutes). For each scenario the test asserts properties, not
//! tight timings: the VIP settles on a healthy machine other than the one hit (within 20 s),
//! two machines never hold it at once (interfaces), only the new holder claims it in the ARP
//! the client receives, the client's neighbour entry follows the new holder, a planned
//! handover (SIGTERM) fails no request, a machine whose link comes back does not take
//! the VIP back, and the holder whose link is cut was not the etcd leader (the agent hands
//! etcd leadership away while it holds). The measured outage of each scenario is printed (`--nocapture`); the
//! figures against keepalived come from `bench/vip.sh`. The rules are in `vip_common`,
//! shared with `vip_lb`, which runs every scenario again with `cpe vip --load-balance`.
//!
//! Without root it fails with a message saying so; it is never skipped. A test binary of
//! its own, so that no other test loads the machine while it measures outages.

mod vip_common;

use cpe_testkit::vip::{AgentKind, ApiKind, Scenario, Testbed};
use std::path::PathBuf;
use vip_common::run_judged;

fn cpe() -> PathBuf {
    PathBuf::from(cpe_e2e::cpe_bin())
}

#[test]
fn vip_failover_scenarios() {
    cpe_testkit::require_root();
    let mut tb = Testbed::start(
        "vipe2e",
        ApiKind::Cpe(cpe()),
        AgentKind::Cpe {
            bin: cpe(),
            lease_ttl: "2s".into(),
            extra: vec![],
        },
    )
    .expect("testbed up: three machines with etcd, stand-in API server and cpe vip, one holder");
    let mut outcomes = Vec::new();
    let mut violations = Vec::new();
    for s in Scenario::ALL {
        let (o, bad) = run_judged(&mut tb, s);
        violations.extend(bad);
        outcomes.push(o);
    }
    eprintln!("\nVIP failover, cpe vip, lease TTL 2 s (outage = longest time without a successful request):");
    for o in &outcomes {
        eprintln!("  {}", o.line());
    }
    if !violations.is_empty() {
        panic!(
            "{} violation(s):\n  {}\nlogs:\n{}",
            violations.len(),
            violations.join("\n  "),
            tb.logs(40)
        );
    }
}
