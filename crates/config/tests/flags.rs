//! Flags laid over a definition (or over the defaults) by the definition's own rules, and
//! the plans one node runs.

use cpe_config::plan::{etcd_endpoints, etcd_for};
use cpe_config::{load_str, HealthTarget, LbFlags, PlanError, VipFlags};
use std::time::Duration;

const EXT3: &str = "cluster: prod\nendpoint:\n  host: lb.example.com\ncontrolPlane:\n  replicas: 3\n  machines:\n    - {name: cp1, address: 10.0.0.11}\n    - {name: cp2, address: 10.0.0.12}\n    - {name: cp3, address: 10.0.0.13}\n";

fn problems(e: PlanError) -> Vec<String> {
    e.render(None)
}

#[test]
fn lb_flags_over_a_definition_replace_its_values_by_the_same_rules() {
    let def = load_str(EXT3).unwrap().endpoint;
    let flags = LbFlags {
        admin: Some("off".into()),
        health_interval: Some("100ms".into()),
        rise: Some(5),
        ..Default::default()
    };
    let p = flags.plan_for(Some(&def)).unwrap();
    assert_eq!(p.admin, None);
    assert_eq!(p.health.interval, Duration::from_millis(100));
    assert_eq!(p.health.rise, 5);
    assert_eq!(p.backends.len(), 3);
    assert_eq!(p.listen, "0.0.0.0:6443".parse().unwrap());

    let bad = LbFlags {
        health_interval: Some("5ms".into()),
        rise: Some(0),
        health_path: Some("readyz".into()),
        cert_file: Some("c.crt".into()),
        max_connections: Some(0),
        drain_timeout: Some("0s".into()),
        ..Default::default()
    };
    assert_eq!(
        problems(bad.plan_for(Some(&def)).unwrap_err()),
        vec![
            "error: --health-path = readyz: must start with / and contain no spaces\n  hint: e.g. /readyz (the API server's readiness)",
            "error: --health-interval = 5ms: must be at least 10ms",
            "error: --rise = 0: must be between 1 and 1000",
            "error: --cert-file = c.crt: needs --key-file too\n  hint: a client certificate is used with its private key",
            "error: --max-connections = 0: must be between 1 and 10000000",
            "error: --drain-timeout = 0s: must be longer than zero",
        ]
    );
}

#[test]
fn lb_ad_hoc_needs_listen_and_backends_each_once() {
    let none = LbFlags::default().plan_for(None).unwrap_err();
    let ps = problems(none);
    assert!(
        ps[0].starts_with("error: --listen: is required without -f"),
        "{ps:?}"
    );
    assert!(
        ps[1].starts_with("error: --backend: is required without -f"),
        "{ps:?}"
    );
    let twice = LbFlags {
        listen: Some("127.0.0.1:6443".into()),
        backends: vec!["cp1.example.com:6443".into(), "cp1.example.com:6443".into()],
        ..Default::default()
    };
    assert_eq!(
        problems(twice.plan_for(None).unwrap_err()),
        vec!["error: --backend = cp1.example.com:6443: is already backend 1 (--backend cp1.example.com:6443)\n  hint: give every backend once"]
    );
    // The same backend written two ways is the same backend.
    let v6 = LbFlags {
        listen: Some("[::1]:6443".into()),
        backends: vec!["[fd00::2]:6443".into(), "[fd00:0::2]:6443".into()],
        ..Default::default()
    };
    assert!(v6.plan_for(None).is_err());
}

#[test]
fn an_lb_definition_in_another_mode_is_refused() {
    let vip =
        EXT3.replace("host: lb.example.com", "host: 10.0.0.10") + "virtualIP:\n  interface: eth0\n";
    let def = load_str(&vip).unwrap().endpoint;
    let ps = problems(LbFlags::default().plan_for(Some(&def)).unwrap_err());
    assert!(
        ps[0].contains("mode is virtual-ip: `cpe lb` runs in external-lb mode only"),
        "{ps:?}"
    );
}

#[test]
fn vip_etcd_endpoints_put_the_nodes_own_member_first() {
    let vip = EXT3.replace("host: lb.example.com", "host: 10.0.0.10")
        + "virtualIP:\n  interface: eth0\netcd:\n  endpoints: [https://10.0.0.11:2379, https://10.0.0.12:2379, https://10.0.0.13:2379]\n";
    let def = load_str(&vip).unwrap().endpoint;
    let flags = VipFlags {
        node: "cp3".into(),
        ..Default::default()
    };
    let p = flags.plan_for(Some(&def)).unwrap();
    assert_eq!(
        p.etcd,
        vec![
            "https://10.0.0.13:2379",
            "https://10.0.0.11:2379",
            "https://10.0.0.12:2379"
        ]
    );
    assert_eq!(
        p.health,
        HealthTarget::Machine("10.0.0.13:6443".parse().unwrap())
    );
    assert_eq!(
        p.health.describe(&p.health_check),
        "https://10.0.0.13:6443/readyz"
    );
}

#[test]
fn etcd_for_a_node_is_derived_where_etcd_is_known_only() {
    let def = load_str(EXT3).unwrap().endpoint;
    // Stacked etcd (the default): every machine's member, this node's first, kubeadm's files.
    let etcd = etcd_for(&def, def.machine("cp2")).unwrap();
    assert_eq!(
        etcd.endpoints,
        vec![
            "https://10.0.0.12:2379",
            "https://10.0.0.11:2379",
            "https://10.0.0.13:2379"
        ]
    );
    assert_eq!(
        etcd.ca_file.as_deref(),
        Some(std::path::Path::new("/etc/kubernetes/pki/etcd/ca.crt"))
    );
    // External etcd and no endpoints: nothing says where it is.
    let ext = load_str(&EXT3.replace("  replicas: 3\n", "  replicas: 3\n  etcd: external\n"))
        .unwrap()
        .endpoint;
    assert!(etcd_endpoints(&ext, None).is_empty());
    assert!(etcd_for(&ext, None).is_none());
}

#[test]
fn vip_flags_name_themselves_and_the_pairs_they_need() {
    let flags = VipFlags {
        node: "n1".into(),
        vip: Some("10.0.0.10".into()),
        interface: Some("eth/0".into()),
        etcd: vec!["http://127.0.0.1:2379".into()],
        etcd_key: Some("k.pem".into()),
        election: Some("no-slash".into()),
        admin: Some("localhost".into()),
        health_timeout: Some("0s".into()),
        ..Default::default()
    };
    assert_eq!(
        problems(flags.plan_for(None).unwrap_err()),
        vec![
            "error: --interface = eth/0: must be an interface name: 1 to 15 characters, no '/', ':' or whitespace\n  hint: the interface that carries the machines' addresses, e.g. eth0 (`ip -br addr`)",
            "error: --etcd-key = k.pem: needs --etcd-cert too\n  hint: a client certificate is used with its private key",
            "error: --health-timeout = 0s: must be longer than zero",
            "error: --election = no-slash: must be an etcd key prefix starting with / and without spaces",
            "error: --admin = localhost: must be an IP address and port, e.g. 127.0.0.1:9630 or [::1]:9630",
        ]
    );
}

/// Issue 14, item 2: an admin listener off loopback without a token is refused, naming
/// the flag or the field that put it there and the one that would fix it.
#[test]
fn a_non_loopback_admin_listener_needs_a_token() {
    let lb = |admin: Option<&str>, token: Option<&str>| LbFlags {
        listen: Some("0.0.0.0:6443".into()),
        backends: vec!["10.0.0.11:6443".into()],
        admin: admin.map(Into::into),
        admin_token_file: token.map(Into::into),
        ..Default::default()
    };
    assert_eq!(
        problems(lb(Some("0.0.0.0:9630"), None).plan_for(None).unwrap_err()),
        vec!["error: --admin = 0.0.0.0:9630: is not a loopback address, so state-changing admin requests need a token: set --admin-token-file\n  hint: a file holding a secret of 16+ characters (`cpe status --admin-token-file FILE` sends it), or listen on 127.0.0.1"]
    );
    let p = lb(Some("0.0.0.0:9630"), Some("/etc/cpe/token"))
        .plan_for(None)
        .unwrap();
    assert_eq!(p.admin_token_file, Some("/etc/cpe/token".into()));
    // Loopback (the default) and `off` need none.
    assert!(lb(None, None).plan_for(None).is_ok());
    assert!(lb(Some("[::1]:9630"), None).plan_for(None).is_ok());
    assert!(lb(Some("off"), None).plan_for(None).is_ok());

    // From the definition: the field is named, and the flag fixes it too.
    let def = load_str(&format!("{EXT3}loadBalancer:\n  admin: 10.0.0.5:9630\n"))
        .unwrap()
        .endpoint;
    let e = LbFlags::default().plan_for(Some(&def)).unwrap_err();
    assert_eq!(
        problems(e),
        vec!["error: loadBalancer.admin = 10.0.0.5:9630: is not a loopback address, so state-changing admin requests need a token: set loadBalancer.adminTokenFile (or --admin-token-file)\n  hint: a file holding a secret of 16+ characters (`cpe status --admin-token-file FILE` sends it), or listen on 127.0.0.1"]
    );
    let with_flag = LbFlags {
        admin_token_file: Some("/t".into()),
        ..Default::default()
    };
    assert!(with_flag.plan_for(Some(&def)).is_ok());
    let def = load_str(&format!(
        "{EXT3}loadBalancer:\n  admin: 10.0.0.5:9630\n  adminTokenFile: /etc/cpe/token\n"
    ))
    .unwrap()
    .endpoint;
    let p = LbFlags::default().plan_for(Some(&def)).unwrap();
    assert_eq!(p.admin_token_file, Some("/etc/cpe/token".into()));

    // cpe vip, ad hoc.
    let vip = |admin: &str, token: Option<&str>| VipFlags {
        node: "cp1".into(),
        vip: Some("10.0.0.10/24".into()),
        interface: Some("eth0".into()),
        etcd: vec!["https://10.0.0.11:2379".into()],
        admin: Some(admin.into()),
        admin_token_file: token.map(Into::into),
        ..Default::default()
    };
    let e = vip("0.0.0.0:9631", None).plan_for(None).unwrap_err();
    assert!(problems(e)[0].starts_with("error: --admin = 0.0.0.0:9631: is not a loopback address"),);
    let p = vip("0.0.0.0:9631", Some("/t")).plan_for(None).unwrap();
    assert_eq!(p.admin_token_file, Some("/t".into()));
    assert!(vip("127.0.0.1:9631", None).plan_for(None).is_ok());
}

/// Virtual-ip mode without a machine list (issue 10: Cluster API replaces machines).
const VIP_NO_MACHINES: &str = "cluster: prod\nendpoint:\n  host: 10.0.0.10\nvirtualIP:\n  interface: eth0\ncontrolPlane:\n  replicas: 3\n";

#[test]
fn virtual_ip_mode_needs_no_machine_list() {
    let l = load_str(VIP_NO_MACHINES).unwrap();
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    let def = l.endpoint;
    assert!(def.machines.is_empty());
    assert_eq!(def.replicas, 3);
    let flags = VipFlags {
        node: "prod-control-plane-x7k2p".into(),
        ..Default::default()
    };
    let r = flags.resolve_over(&def).unwrap();
    // The own member through loopback (kubeadm's stacked etcd listens there), kubeadm's
    // certificates; the others come from etcd's member list at run time.
    assert_eq!(r.plan.etcd, vec!["https://127.0.0.1:2379"]);
    assert_eq!(
        r.plan.etcd_tls.cert.as_deref(),
        Some(std::path::Path::new(
            "/etc/kubernetes/pki/etcd/healthcheck-client.crt"
        ))
    );
    assert_eq!(r.plan.health, HealthTarget::OwnAddress(6443));
    assert_eq!(
        r.plan.health.describe(&r.plan.health_check),
        "https://OWN-ADDRESS:6443/readyz"
    );
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
}

#[test]
fn a_written_machine_list_is_still_held_to_the_count_and_outside_vip_mode_required() {
    // Written but short: the rule stands in every mode.
    let short =
        VIP_NO_MACHINES.to_string() + "  machines:\n    - {name: cp1, address: 10.0.0.11}\n";
    let e = load_str(&short).err().unwrap().to_string();
    assert!(
        e.contains("lists 1 machine, fewer than the 3 replicas"),
        "{e}"
    );
    // External-lb mode without machines: the load balancer needs its backends.
    let lb = "endpoint:\n  host: lb.example.com\ncontrolPlane:\n  replicas: 3\n";
    let e = load_str(lb).err().unwrap().to_string();
    assert!(
        e.contains("lists 0 machines, fewer than the 3 replicas"),
        "{e}"
    );
}

#[test]
fn external_etcd_without_machines_needs_its_endpoints() {
    let ext = VIP_NO_MACHINES.replace("  replicas: 3\n", "  replicas: 3\n  etcd: external\n");
    let e = load_str(&ext).err().unwrap().to_string();
    assert!(
        e.contains("etcd.endpoints: is required in virtual-ip mode when etcd is external and no machines are listed"),
        "{e}"
    );
    let ok = ext.clone() + "etcd:\n  endpoints: [https://10.0.0.21:2379, https://10.0.0.22:2379]\n";
    let def = load_str(&ok).unwrap().endpoint;
    let flags = VipFlags {
        node: "any".into(),
        ..Default::default()
    };
    let p = flags.plan_for(Some(&def)).unwrap();
    assert_eq!(
        p.etcd,
        vec!["https://10.0.0.21:2379", "https://10.0.0.22:2379"]
    );
}

#[test]
fn a_node_the_list_does_not_name_is_accepted_with_a_warning() {
    let vip =
        EXT3.replace("host: lb.example.com", "host: 10.0.0.10") + "virtualIP:\n  interface: eth0\n";
    let def = load_str(&vip).unwrap().endpoint;
    let flags = VipFlags {
        node: "cp4".into(),
        ..Default::default()
    };
    let r = flags.resolve_over(&def).unwrap();
    assert_eq!(r.plan.health, HealthTarget::OwnAddress(6443));
    // Its own member first (loopback), then the listed machines' members.
    assert_eq!(
        r.plan.etcd,
        vec![
            "https://127.0.0.1:2379",
            "https://10.0.0.11:2379",
            "https://10.0.0.12:2379",
            "https://10.0.0.13:2379"
        ]
    );
    let w: Vec<String> = r.warnings.iter().map(|p| p.render(None)).collect();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with("warning: --node = cp4: is not a machine of the definition (machines: cp1, cp2, cp3): accepted"),
        "{w:?}"
    );
    // A listed node keeps its listed address.
    let flags = VipFlags {
        node: "cp2".into(),
        ..Default::default()
    };
    assert_eq!(
        flags.plan_for(Some(&def)).unwrap().health,
        HealthTarget::Machine("10.0.0.12:6443".parse().unwrap())
    );
}
