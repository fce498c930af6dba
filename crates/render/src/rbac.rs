//! `cpe render --kind rbac`: the least privilege `cpe lb --discover kubernetes` needs, as
//! a ServiceAccount `cpe-lb` in `kube-system`, a Role and a RoleBinding in `default`:
//! `get`, `list`, `watch` on `endpointslices` (discovery.k8s.io) and `endpoints` (core),
//! nothing else.
//!
//! A namespaced Role rather than a ClusterRole: the `kubernetes` Service's endpoints exist
//! only in `default`, and a Role bound there grants nothing in any other namespace (a
//! ClusterRole bound by a RoleBinding would too, but a Role cannot be bound cluster-wide
//! by mistake). No `resourceNames`: the slices are listed by their service label, which
//! resourceNames cannot express. It does not create a credential: docs/discovery.md says
//! how to make the kubeconfig's token.

/// The ServiceAccount's name.
pub const SERVICE_ACCOUNT: &str = "cpe-lb";
/// Where the ServiceAccount lives.
pub const SERVICE_ACCOUNT_NAMESPACE: &str = "kube-system";

/// The three objects, as one YAML stream.
pub fn rbac() -> String {
    format!(
        r#"# Least privilege for `cpe lb --discover kubernetes` (docs/discovery.md): read the
# `kubernetes` EndpointSlices (discovery.k8s.io/v1) and Endpoints (core/v1, the fallback
# on servers without v1 slices) in `default`, nothing else.
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {sa}
  namespace: {ns}
  labels:
    app.kubernetes.io/name: cpe
    app.kubernetes.io/component: lb
---
# A Role in `default`, where the `kubernetes` Service lives: no other namespace is readable.
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: cpe-lb-discovery
  namespace: default
  labels:
    app.kubernetes.io/name: cpe
    app.kubernetes.io/component: lb
rules:
- apiGroups: ["discovery.k8s.io"]
  resources: ["endpointslices"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["endpoints"]
  verbs: ["get", "list", "watch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: cpe-lb-discovery
  namespace: default
  labels:
    app.kubernetes.io/name: cpe
    app.kubernetes.io/component: lb
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: cpe-lb-discovery
subjects:
- kind: ServiceAccount
  name: {sa}
  namespace: {ns}
"#,
        sa = SERVICE_ACCOUNT,
        ns = SERVICE_ACCOUNT_NAMESPACE
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_reads_of_the_two_resources() {
        let t = super::rbac();
        assert!(!t.contains("ClusterRole"), "a namespaced Role");
        for verb in ["create", "update", "patch", "delete", "*"] {
            assert!(!t.contains(&format!("\"{verb}\"")), "{verb}");
        }
        assert_eq!(
            t.matches("verbs: [\"get\", \"list\", \"watch\"]").count(),
            2
        );
    }
}
