//! kubectl's client dry run against a server that answers only the discovery documents
//! (kubectl needs them for REST mapping even in client dry run); nothing else is faked.

#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};

/// Serves the discovery documents kubectl reads before a client dry run.
pub fn discovery_server() -> String {
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
                    r#"{"kind":"APIResourceList","groupVersion":"v1","resources":[{"name":"pods","singularName":"pod","namespaced":true,"kind":"Pod","verbs":["create","get","list"]},{"name":"configmaps","singularName":"configmap","namespaced":true,"kind":"ConfigMap","verbs":["create","get","list"]},{"name":"serviceaccounts","singularName":"serviceaccount","namespaced":true,"kind":"ServiceAccount","verbs":["create","get","list"]}]}"#
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

/// `kubectl create --dry-run=client -o json` of `yaml`: every document as kubectl read it.
pub fn kubectl_dry_run_all(server: &str, yaml: &str) -> Vec<Value> {
    let mut child = Command::new("kubectl")
        .args(["create", "--dry-run=client", "--validate=false", "-o", "json", "-f", "-"])
        .arg(format!("--server={server}"))
        .env("KUBECONFIG", "/dev/null")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl must be installed for this test (it checks the rendered manifests with the real client)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(yaml.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kubectl refused:\n{}\n{yaml}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::Deserializer::from_slice(&out.stdout)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// As [`kubectl_dry_run_all`] for a one-document manifest.
pub fn kubectl_dry_run(server: &str, yaml: &str) -> Value {
    let mut all = kubectl_dry_run_all(server, yaml);
    assert_eq!(all.len(), 1, "one document expected:\n{yaml}");
    all.remove(0)
}
