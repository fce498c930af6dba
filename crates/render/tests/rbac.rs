//! `cpe render --kind rbac`: pinned by a golden file (`tests/rbac.golden.yaml`, beside `golden/`, which holds the per-definition kinds; rewrite
//! with `UPDATE_GOLDEN=1`) and accepted by the real `kubectl create --dry-run=client`,
//! which reads back exactly the verbs and resources written. kubectl needs a server for
//! REST mapping even in client dry-run, so the test serves the discovery documents it
//! asks for on 127.0.0.1; nothing else is faked. kubectl must be installed: when it is
//! not, the test fails and says so.

use cpe_render::rbac::rbac;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};

#[test]
fn rbac_matches_the_golden_file() {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/rbac.golden.yaml");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&file, rbac()).unwrap();
    }
    let want = std::fs::read_to_string(&file).unwrap();
    assert_eq!(rbac(), want, "rerun with UPDATE_GOLDEN=1 if intended");
}

fn discovery_server() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in l.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut first = String::new();
            if r.read_line(&mut first).is_err() {
                continue;
            }
            let mut line = String::new();
            while r.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let path = first
                .split(' ')
                .nth(1)
                .unwrap_or("")
                .split('?')
                .next()
                .unwrap_or("");
            let body = match path {
                "/api" => {
                    r#"{"kind":"APIVersions","versions":["v1"],"serverAddressByClientCIDRs":[]}"#
                }
                "/apis" => {
                    r#"{"kind":"APIGroupList","apiVersion":"v1","groups":[{"name":"rbac.authorization.k8s.io","versions":[{"groupVersion":"rbac.authorization.k8s.io/v1","version":"v1"}],"preferredVersion":{"groupVersion":"rbac.authorization.k8s.io/v1","version":"v1"}}]}"#
                }
                "/api/v1" => {
                    r#"{"kind":"APIResourceList","groupVersion":"v1","resources":[{"name":"serviceaccounts","singularName":"serviceaccount","namespaced":true,"kind":"ServiceAccount","verbs":["create","get","list"]}]}"#
                }
                "/apis/rbac.authorization.k8s.io/v1" => {
                    r#"{"kind":"APIResourceList","groupVersion":"rbac.authorization.k8s.io/v1","resources":[{"name":"roles","singularName":"role","namespaced":true,"kind":"Role","verbs":["create","get","list"]},{"name":"rolebindings","singularName":"rolebinding","namespaced":true,"kind":"RoleBinding","verbs":["create","get","list"]}]}"#
                }
                _ => "",
            };
            let status = if body.is_empty() {
                "404 Not Found"
            } else {
                "200 OK"
            };
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = r.read(&mut [0u8; 0]);
        }
    });
    format!("http://{addr}")
}

#[test]
fn kubectl_accepts_the_rbac_and_reads_the_verbs_written() {
    let server = discovery_server();
    let mut child = Command::new("kubectl")
        .args(["create", "--dry-run=client", "--validate=false", "-o", "json", "-f", "-"])
        .arg(format!("--server={server}"))
        .env("KUBECONFIG", "/dev/null")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl must be installed for this test (it checks the rendered RBAC with the real client)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(rbac().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kubectl refused:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // One JSON object per document.
    let items: Vec<Value> = serde_json::Deserializer::from_slice(&out.stdout)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .unwrap();
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
