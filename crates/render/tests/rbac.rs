//! `cpe render --kind rbac`: pinned by a golden file (`tests/rbac.golden.yaml`, beside `golden/`, which holds the per-definition kinds; rewrite
//! with `UPDATE_GOLDEN=1`) and accepted by the real `kubectl create --dry-run=client`,
//! which reads back exactly the verbs and resources written. kubectl needs a server for
//! REST mapping even in client dry-run, so the test serves the discovery documents it
//! asks for on 127.0.0.1; nothing else is faked. kubectl must be installed: when it is
//! not, the test fails and says so.

mod common;

use common::kubectl::{discovery_server, kubectl_dry_run_all};
use cpe_render::rbac::rbac;
use std::path::PathBuf;

#[test]
fn rbac_matches_the_golden_file() {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/rbac.golden.yaml");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&file, rbac()).unwrap();
    }
    let want = std::fs::read_to_string(&file).unwrap();
    assert_eq!(rbac(), want, "rerun with UPDATE_GOLDEN=1 if intended");
}

#[test]
fn kubectl_accepts_the_rbac_and_reads_the_verbs_written() {
    let server = discovery_server();
    let items = kubectl_dry_run_all(&server, &rbac());
    let kinds: Vec<&str> = items.iter().map(|i| i["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["ServiceAccount", "Role", "RoleBinding"]);
    let rules = &items[1]["rules"];
    assert_eq!(rules[0]["resources"][0], "endpointslices");
    assert_eq!(rules[0]["apiGroups"][0], "discovery.k8s.io");
    assert_eq!(rules[1]["resources"][0], "endpoints");
    for r in rules.as_array().unwrap() {
        assert_eq!(r["verbs"], serde_json::json!(["get", "list", "watch"]));
    }
    assert_eq!(items[2]["subjects"][0]["name"], "cpe-lb");
    assert_eq!(items[2]["subjects"][0]["namespace"], "kube-system");
}
