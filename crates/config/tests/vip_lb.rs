//! The VIP that also load-balances: `virtualIP.loadBalance`/`lbPort` and the flags
//! `--load-balance`, `--backend`, `--lb-port`, held to the same rules.

use cpe_config::{load_str, DiscoveryFlags, DiscoverySource, PlanError, VipFlags};

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
fn ad_hoc_load_balance_discovers_from_etcd_and_checks_a_free_port() {
    let base = VipFlags {
        node: "cp1".into(),
        vip: Some("10.0.0.10/24".into()),
        interface: Some("eth0".into()),
        etcd: vec!["http://10.0.0.11:2379".into()],
        load_balance: true,
        ..Default::default()
    };
    // No --backend: the etcd source on the agent's own etcd, seeded with this node's own
    // API server (found at start).
    let p = base.plan_for(None).unwrap();
    let l = p.load_balance.clone().unwrap();
    assert!(l.seed_own && l.backends.is_empty(), "{l:?}");
    let d = l.discovery.clone().expect("discovery implied");
    assert_eq!(d.sources, [DiscoverySource::Etcd]);
    assert_eq!(d.etcd, ["http://10.0.0.11:2379"]);
    assert_eq!((d.api_port, d.cache_prefix), (6443, "vip-lb"));
    assert_eq!(d.cache_dir, std::path::PathBuf::from("/var/lib/cpe"));
    assert_eq!(p.lb_plan().unwrap().discovery, Some(d));

    let ok = VipFlags {
        backends: vec!["10.0.0.11:6443".into(), "10.0.0.12:6443".into()],
        lb_port: Some(7443),
        ..base.clone()
    };
    let p = ok.plan_for(None).unwrap();
    let l = p.load_balance.unwrap();
    assert_eq!((l.port, l.lb_port, l.backends.len()), (6443, 7443, 2));
    assert!(
        l.discovery.is_none() && !l.seed_own,
        "--backend alone: fixed"
    );

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
        discovery: DiscoveryFlags {
            discover: vec!["etcd".into()],
            cache_dir: Some("/tmp/c".into()),
            ..Default::default()
        },
        ..base
    };
    let ps = problems(stray.plan_for(None).unwrap_err()).join("\n");
    assert!(
        ps.contains("--backend = 10.0.0.11:6443: needs --load-balance"),
        "{ps}"
    );
    assert!(ps.contains("--lb-port = 0: needs --load-balance"), "{ps}");
    assert!(
        ps.contains("--discover = etcd: needs --load-balance"),
        "{ps}"
    );
    assert!(
        ps.contains("--cache-dir = /tmp/c: needs --load-balance"),
        "{ps}"
    );
}

fn ad_hoc() -> VipFlags {
    VipFlags {
        node: "cp1".into(),
        vip: Some("10.0.0.10/24".into()),
        interface: Some("eth0".into()),
        etcd: vec!["http://127.0.0.1:2379".into()],
        load_balance: true,
        ..Default::default()
    }
}

/// The discovery flags are `cpe lb`'s, under `cpe lb`'s rules; the etcd source is the
/// agent's etcd.
#[test]
fn discovery_flags_are_cpe_lbs() {
    let with = |d: DiscoveryFlags, backends: &[&str]| VipFlags {
        discovery: d,
        backends: backends.iter().map(|b| b.to_string()).collect(),
        ..ad_hoc()
    };
    // kubernetes needs a kubeconfig: the flag named, as `cpe lb` names it
    let e = with(
        DiscoveryFlags {
            discover: vec!["kubernetes".into()],
            ..Default::default()
        },
        &[],
    )
    .plan_for(None)
    .unwrap_err();
    let ps = problems(e).join("\n");
    assert!(
        ps.contains("--kubeconfig: is required with --discover kubernetes"),
        "{ps}"
    );
    let p = with(
        DiscoveryFlags {
            discover: vec!["kubernetes".into()],
            kubeconfig: Some("/etc/cpe/vip.kubeconfig".into()),
            cache_dir: Some("/var/lib/cpe-vip".into()),
            ..Default::default()
        },
        &[],
    )
    .plan_for(None)
    .unwrap();
    let l = p.load_balance.unwrap();
    let d = l.discovery.unwrap();
    assert_eq!(d.sources, [DiscoverySource::Kubernetes]);
    assert_eq!(
        d.kubeconfig,
        Some(std::path::PathBuf::from("/etc/cpe/vip.kubeconfig"))
    );
    assert_eq!(d.cache_dir, std::path::PathBuf::from("/var/lib/cpe-vip"));
    assert!(
        l.seed_own,
        "the own API server is how the API is reached first"
    );

    // --backend with --discover: seeds, not the own API server
    let p = with(
        DiscoveryFlags {
            discover: vec!["etcd".into()],
            ..Default::default()
        },
        &["10.0.0.11:6443"],
    )
    .plan_for(None)
    .unwrap();
    let l = p.load_balance.unwrap();
    assert!(!l.seed_own);
    assert_eq!(l.discovery.unwrap().etcd, ["http://127.0.0.1:2379"]);

    // --kubeconfig without the kubernetes source: the rule of `cpe lb`
    let ps = problems(
        with(
            DiscoveryFlags {
                kubeconfig: Some("/k".into()),
                ..Default::default()
            },
            &[],
        )
        .plan_for(None)
        .unwrap_err(),
    )
    .join("\n");
    assert!(
        ps.contains("--kubeconfig: is used only with --discover"),
        "{ps}"
    );
    // https etcd members without the agent's CA: the etcd flag named
    let https = VipFlags {
        etcd: vec!["https://127.0.0.1:2379".into()],
        ..ad_hoc()
    };
    let ps = problems(https.plan_for(None).unwrap_err()).join("\n");
    assert!(ps.contains("--etcd-ca"), "{ps}");
}

/// A virtual-ip definition may leave the machine list out (issue 10): the in-agent load
/// balancer then discovers its backends from the agent's etcd, seeded with its own API
/// server; `loadBalancer.discovery` says otherwise, as for `cpe lb`.
#[test]
fn load_balance_without_machines_discovers_its_backends() {
    const NO_MACHINES: &str = "cluster: prod\nendpoint:\n  host: 10.0.0.10\ncontrolPlane:\n  replicas: 3\nvirtualIP:\n  interface: eth0\n  loadBalance: true\n";
    let def = load_str(NO_MACHINES).unwrap().endpoint;
    let p = node("cp-x7k2p").plan_for(Some(&def)).unwrap();
    let l = p.load_balance.clone().unwrap();
    assert!(l.seed_own);
    let d = l.discovery.unwrap();
    assert_eq!(d.sources, [DiscoverySource::Etcd]);
    assert_eq!(d.etcd, p.etcd, "the agent's own etcd endpoints");
    assert_eq!(d.etcd_tls, p.etcd_tls, "and TLS");
    assert_eq!(d.etcd[0], "https://127.0.0.1:2379");

    let with = VipFlags {
        backends: vec!["10.0.0.11:6443".into(), "10.0.0.12:6443".into()],
        ..node("cp-x7k2p")
    };
    let p = with.plan_for(Some(&def)).unwrap();
    let l = p.load_balance.unwrap();
    assert_eq!(l.backends.len(), 2);
    assert!(l.discovery.is_none());

    // loadBalancer.discovery in virtual-ip mode: read, and not warned about
    let text = format!(
        "{NO_MACHINES}loadBalancer:\n  discovery:\n    sources: [kubernetes]\n    kubeconfig: /etc/cpe/vip.kubeconfig\n    cacheDir: /srv/cpe\n"
    );
    let loaded = load_str(&text).unwrap();
    let w: Vec<String> = loaded.warnings.iter().map(|w| w.render(None)).collect();
    assert!(w.iter().all(|w| !w.contains("loadBalancer")), "{w:?}");
    let p = node("cp-x7k2p").plan_for(Some(&loaded.endpoint)).unwrap();
    let d = p.load_balance.unwrap().discovery.unwrap();
    assert_eq!(d.sources, [DiscoverySource::Kubernetes]);
    assert_eq!(d.cache_dir, std::path::PathBuf::from("/srv/cpe"));
    assert_eq!(d.cache_prefix, "vip-lb");
    // --discover replaces the sources, as for cpe lb
    let flags = VipFlags {
        discovery: DiscoveryFlags {
            discover: vec!["etcd".into()],
            ..Default::default()
        },
        ..node("cp-x7k2p")
    };
    let d = flags
        .plan_for(Some(&loaded.endpoint))
        .unwrap()
        .load_balance
        .unwrap()
        .discovery
        .unwrap();
    assert_eq!(d.sources, [DiscoverySource::Etcd]);
    // its sources are checked with the file's rule and line
    let bad = load_str(&format!(
        "{NO_MACHINES}loadBalancer:\n  discovery:\n    sources: [dns]\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(bad.contains("loadBalancer.discovery.sources[0]"), "{bad}");
    // other loadBalancer fields are ignored in virtual-ip mode, and said so
    let w = load_str(&format!(
        "{NO_MACHINES}loadBalancer:\n  listen: 0.0.0.0:7000\n"
    ))
    .unwrap()
    .warnings;
    let w: Vec<String> = w.iter().map(|w| w.render(None)).collect();
    assert!(
        w.iter()
            .any(|w| w.contains("loadBalancer") && w.contains("except loadBalancer.discovery")),
        "{w:?}"
    );
}

/// With machines listed, they are the backends as before (fixed) unless a source is named.
#[test]
fn listed_machines_stay_fixed_unless_a_source_is_named() {
    let def = load_str(&(VIP3.to_string() + "  loadBalance: true\n"))
        .unwrap()
        .endpoint;
    let l = node("cp2")
        .plan_for(Some(&def))
        .unwrap()
        .load_balance
        .unwrap();
    assert!(l.discovery.is_none() && !l.seed_own);
    let flags = VipFlags {
        discovery: DiscoveryFlags {
            discover: vec!["etcd".into()],
            ..Default::default()
        },
        ..node("cp2")
    };
    let p = flags.plan_for(Some(&def)).unwrap();
    let l = p.load_balance.unwrap();
    assert_eq!(l.backends.len(), 3, "the machines are the seeds");
    assert!(!l.seed_own);
    assert_eq!(l.discovery.unwrap().etcd, p.etcd);
}

/// With external etcd the members' hosts are not API servers: no etcd source implied, and
/// the plan says what to give instead.
#[test]
fn external_etcd_cannot_supply_the_backends() {
    let def = load_str(
        "cluster: prod\nendpoint:\n  host: 10.0.0.10\ncontrolPlane:\n  replicas: 3\n  etcd: external\nvirtualIP:\n  interface: eth0\n  loadBalance: true\netcd:\n  endpoints: [https://10.0.1.1:2379]\n  caFile: /ca\n  certFile: /c\n  keyFile: /k\n",
    )
    .unwrap()
    .endpoint;
    let ps = problems(node("cp1").plan_for(Some(&def)).unwrap_err()).join("\n");
    assert!(
        ps.contains(
            "controlPlane.etcd = external: is external: its members' hosts are not API servers"
        ),
        "{ps}"
    );
    assert!(ps.contains("--discover kubernetes"), "{ps}");
    let etcd = VipFlags {
        discovery: DiscoveryFlags {
            discover: vec!["etcd".into()],
            ..Default::default()
        },
        ..node("cp1")
    };
    let ps = problems(etcd.plan_for(Some(&def)).unwrap_err()).join("\n");
    assert!(ps.contains("(the etcd source is named)"), "{ps}");
    let kube = VipFlags {
        discovery: DiscoveryFlags {
            discover: vec!["kubernetes".into()],
            kubeconfig: Some("/etc/cpe/vip.kubeconfig".into()),
            ..Default::default()
        },
        ..node("cp1")
    };
    let l = kube.plan_for(Some(&def)).unwrap().load_balance.unwrap();
    assert!(l.seed_own);
    let with = VipFlags {
        backends: vec!["10.0.0.11:6443".into()],
        ..node("cp1")
    };
    assert!(with.plan_for(Some(&def)).is_ok());
}
