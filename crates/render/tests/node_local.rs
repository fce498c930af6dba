//! The node-local artifacts read back: the static pod accepted by the real `kubectl
//! create --dry-run=client` (standalone and inside the Cluster API workers' template),
//! with no capability, a read-only root, system-node-critical, resources and a liveness
//! probe on the admin listener's `/livez`; the kubeconfig and Role as YAML; `certSANs`
//! naming `localhost` and `127.0.0.1` only when node-local is enabled.

mod common;

use common::kubectl::{discovery_server, kubectl_dry_run};
use cpe_render::{render, Kind, Options};
use serde_json::Value;

fn docs(text: &str) -> Vec<Value> {
    serde_saphyr::from_str_multiple::<Value, Vec<Value>>(text)
        .unwrap_or_else(|e| panic!("not YAML: {e}\n{text}"))
        .into_iter()
        .filter(|v| !v.is_null())
        .collect()
}

fn node_local_example() -> cpe_config::Endpoint {
    common::examples()
        .into_iter()
        .find(|(n, _)| n == "external-lb-node-local")
        .expect("examples/external-lb-node-local.yaml")
        .1
}

#[test]
fn the_static_pod_is_accepted_by_kubectl_and_has_no_privilege() {
    let e = node_local_example();
    let o = Options::default();
    let pod_text = render(&e, Kind::NodeLocal, &o).unwrap();
    let capi = docs(&render(&e, Kind::Capi, &o).unwrap());
    let workers = capi
        .iter()
        .find(|d| d["kind"] == "KubeadmConfigTemplate")
        .unwrap();
    let files = &workers["spec"]["template"]["spec"]["files"];
    assert_eq!(
        files[0]["path"],
        "/etc/kubernetes/manifests/cpe-node-local.yaml"
    );
    assert_eq!(files[1]["path"], "/etc/cpe/node-local.kubeconfig");
    let in_capi = files[0]["content"].as_str().unwrap().to_string();
    // Workers seed from the endpoint: the machines a definition lists get replaced.
    assert!(
        in_capi.contains("\"--backend\"\n        - \"lb.example.com:6443\""),
        "{in_capi}"
    );
    assert!(!in_capi.contains("10.0.0.11"), "{in_capi}");
    let cmds = workers["spec"]["template"]["spec"]["postKubeadmCommands"].to_string();
    assert!(cmds.contains("https://localhost:7445"), "{cmds}");

    let server = discovery_server();
    let got = kubectl_dry_run(&server, &in_capi);
    assert_eq!(got["kind"], "Pod");
    let got = kubectl_dry_run(&server, &pod_text);
    let want = &docs(&pod_text)[0];
    assert_eq!(got["spec"], want["spec"], "kubectl read another spec");
    let spec = &got["spec"];
    assert_eq!(spec["hostNetwork"], true);
    assert_eq!(spec["priorityClassName"], "system-node-critical");
    let c = &spec["containers"][0];
    let sc = &c["securityContext"];
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert!(sc["capabilities"]["add"].is_null(), "no capability added");
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert!(!c["resources"]["requests"]["memory"].is_null());
    assert!(!c["resources"]["limits"]["memory"].is_null());
    let live = &c["livenessProbe"]["httpGet"];
    assert_eq!(live["path"], "/livez");
    assert_eq!(live["host"], "127.0.0.1");
    assert_eq!(live["port"], 9632);
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    for want in [
        "--node-local",
        "127.0.0.1:7445",
        "10.0.0.11:6443",
        "--discover",
        "kubernetes",
        "/etc/cpe/node-local.kubeconfig",
        "--cache-dir",
    ] {
        assert!(args.contains(&want), "{want} in {args:?}");
    }
    // Only the cache is writable.
    for m in c["volumeMounts"].as_array().unwrap() {
        assert_eq!(m["readOnly"] == true, m["name"] != "cache", "{m}");
    }
}

#[test]
fn kubeconfig_rbac_and_cert_sans() {
    let e = node_local_example();
    let o = Options::default();
    let kc = &docs(&render(&e, Kind::NodeLocalKubeconfig, &o).unwrap())[0];
    assert_eq!(kc["kind"], "Config");
    assert_eq!(
        kc["clusters"][0]["cluster"]["certificate-authority"],
        "/etc/kubernetes/pki/ca.crt"
    );
    let rbac = docs(&render(&e, Kind::NodeLocalRbac, &o).unwrap());
    assert_eq!(rbac[0]["kind"], "Role");
    assert_eq!(rbac[0]["metadata"]["namespace"], "default");
    assert_eq!(rbac[1]["subjects"][0]["name"], "system:nodes");
    let verbs = rbac[0]["rules"].to_string();
    assert!(
        !verbs.contains("create") && !verbs.contains("update"),
        "{verbs}"
    );

    let sans = |e: &cpe_config::Endpoint, kind| {
        let d = docs(&render(e, kind, &o).unwrap());
        let cc = if kind == Kind::Kubeadm {
            d[0]["apiServer"]["certSANs"].clone()
        } else {
            d[1]["spec"]["kubeadmConfigSpec"]["clusterConfiguration"]["apiServer"]["certSANs"]
                .clone()
        };
        cc.as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    for kind in [Kind::Kubeadm, Kind::Capi] {
        assert_eq!(sans(&e, kind), ["lb.example.com", "localhost", "127.0.0.1"]);
        let mut off = e.clone();
        off.node_local = None;
        assert_eq!(sans(&off, kind), ["lb.example.com"]);
        assert!(render(&off, Kind::NodeLocal, &o)
            .unwrap_err()
            .to_string()
            .contains("needs `nodeLocal: {enabled: true}`"));
    }
}
