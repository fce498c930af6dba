//! The VIP that also load-balances: `virtualIP.loadBalance`/`lbPort` and the flags
//! `--load-balance`, `--backend`, `--lb-port`, held to the same rules.

use cpe_config::{load_str, PlanError, VipFlags};

const VIP3: &str = "cluster: prod\nendpoint:\n  host: 10.0.0.10\ncontrolPlane:\n  replicas: 3\n  machines:\n    - {name: cp1, address: 10.0.0.11}\n    - {name: cp2, address: 10.0.0.12}\n    - {name: cp3, address: 10.0.0.13}\nvirtualIP:\n  interface: eth0\n";

fn problems(e: PlanError) -> Vec<String> {
    e.render(None)
}

fn node(n: &str) -> VipFlags {
    VipFlags {
        node: n.into(),
        ..Default::default()
    }
}

#[test]
fn a_definition_with_load_balance_gives_every_machine_as_backend() {
    let def = load_str(&(VIP3.to_string() + "  loadBalance: true\n"))
        .unwrap()
        .endpoint;
    let p = node("cp2").plan_for(Some(&def)).unwrap();
    let l = p.load_balance.clone().unwrap();
    assert_eq!((l.port, l.lb_port), (6443, 6444));
    let names: Vec<String> = l.backends.iter().map(|b| b.to_string()).collect();
    assert_eq!(
        names,
        ["10.0.0.11:6443", "10.0.0.12:6443", "10.0.0.13:6443"]
    );
    let lb = p.lb_plan().unwrap();
    assert_eq!(lb.listen, "0.0.0.0:6444".parse().unwrap());
    assert_eq!(lb.admin, None);
    assert_eq!(lb.health.path, "/readyz");
    // Its drain is short: the VIP has moved before the load balancer drains.
    assert_eq!(lb.drain_timeout, std::time::Duration::from_secs(5));
    assert_eq!(lb.drain_timeout, cpe_config::vip_lb::VIP_LB_DRAIN);

    // without it: the VIP only, and `plan -o json` unchanged
    let plain = load_str(VIP3).unwrap().endpoint;
    assert!(node("cp2")
        .plan_for(Some(&plain))
        .unwrap()
        .load_balance
        .is_none());
    let json = serde_json::to_string(&plain).unwrap();
    assert!(!json.contains("\"load_balance\""), "{json}");
}

#[test]
fn lb_port_in_the_file_is_checked_and_without_load_balance_warned() {
    let bad = load_str(&(VIP3.to_string() + "  loadBalance: true\n  lbPort: 6443\n"))
        .unwrap_err()
        .to_string();
    assert!(bad.contains("virtualIP.lbPort"), "{bad}");
    assert!(bad.contains("must differ from the endpoint port"), "{bad}");
    let bad = load_str(&(VIP3.to_string() + "  loadBalance: yes please\n"))
        .unwrap_err()
        .to_string();
    assert!(bad.contains("virtualIP.loadBalance"), "{bad}");
    let warned = load_str(&(VIP3.to_string() + "  lbPort: 7000\n")).unwrap();
    let w: Vec<String> = warned.warnings.iter().map(|w| w.render(None)).collect();
    assert!(
        w.iter()
            .any(|w| w.contains("virtualIP.lbPort") && w.contains("has no effect")),
        "{w:?}"
    );
}

#[test]
fn ad_hoc_load_balance_needs_backends_and_a_free_port() {
    let base = VipFlags {
        node: "cp1".into(),
        vip: Some("10.0.0.10/24".into()),
        interface: Some("eth0".into()),
        etcd: vec!["http://10.0.0.11:2379".into()],
        load_balance: true,
        ..Default::default()
    };
    let ps = problems(base.plan_for(None).unwrap_err());
    assert_eq!(
        ps,
        ["error: --backend: is required with --load-balance without -f\n  hint: repeat it once per API server, e.g. --backend 10.0.0.11:6443"]
    );
    let ok = VipFlags {
        backends: vec!["10.0.0.11:6443".into(), "10.0.0.12:6443".into()],
        lb_port: Some(7443),
        ..base.clone()
    };
    let p = ok.plan_for(None).unwrap();
    let l = p.load_balance.unwrap();
    assert_eq!((l.port, l.lb_port, l.backends.len()), (6443, 7443, 2));

    let bad = VipFlags {
        backends: vec!["10.0.0.11:6443".into(), "10.0.0.11:6443".into()],
        lb_port: Some(6443),
        health_url: Some("https://127.0.0.1:6443/readyz".into()),
        ..base.clone()
    };
    let ps = problems(bad.plan_for(None).unwrap_err()).join("\n");
    assert!(
        ps.contains("--backend = 10.0.0.11:6443: is already backend 1"),
        "{ps}"
    );
    assert!(
        ps.contains("--lb-port = 6443: must differ from the endpoint port"),
        "{ps}"
    );
    assert!(
        ps.contains(
            "--health-url = https://127.0.0.1:6443/readyz: does not apply with load balancing"
        ),
        "{ps}"
    );

    let stray = VipFlags {
        load_balance: false,
        backends: vec!["10.0.0.11:6443".into()],
        lb_port: Some(0),
        ..base
    };
    let ps = problems(stray.plan_for(None).unwrap_err()).join("\n");
    assert!(
        ps.contains("--backend = 10.0.0.11:6443: needs --load-balance"),
        "{ps}"
    );
    assert!(ps.contains("--lb-port = 0: needs --load-balance"), "{ps}");
}

/// A virtual-ip definition may leave the machine list out (issue 10); load balancing then
/// has no backend to start from, and the plan says what to add instead of starting an
/// agent whose load balancer has none.
#[test]
fn load_balance_without_machines_asks_for_backends() {
    let def = load_str(
        "cluster: prod\nendpoint:\n  host: 10.0.0.10\ncontrolPlane:\n  replicas: 3\nvirtualIP:\n  interface: eth0\n  loadBalance: true\n",
    )
    .unwrap()
    .endpoint;
    let e = node("cp-x7k2p").plan_for(Some(&def)).unwrap_err();
    assert_eq!(
        problems(e),
        vec!["error: --backend: is required with load balancing when the definition lists no controlPlane.machines (the in-agent load balancer does not discover its backends yet)\n  hint: repeat it once per API server, e.g. --backend 10.0.0.11:6443"]
    );
    let with = VipFlags {
        backends: vec!["10.0.0.11:6443".into(), "10.0.0.12:6443".into()],
        ..node("cp-x7k2p")
    };
    let p = with.plan_for(Some(&def)).unwrap();
    assert_eq!(p.load_balance.unwrap().backends.len(), 2);
}
