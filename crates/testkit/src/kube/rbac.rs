//! The least-privilege RBAC of the discovery identity, applied with `kubectl`: read the
//! `kubernetes` EndpointSlices and Endpoints in `default` (get, list, watch), nothing else.
//! The same objects, with the same names, as `cpe render --kind rbac` writes (a
//! ServiceAccount `cpe-lb` in `kube-system`, a Role and a RoleBinding `cpe-lb-discovery` in
//! `default`): the e2e tests apply the rendered text through [`super::KubeBed::apply`];
//! this copy is for callers without a `cpe` binary (the bench's HAProxy run needs none).
//!
//! It does not grant anything outside `default`.

use super::pki::{DISCOVERY_NAMESPACE, DISCOVERY_SA};

/// The Role and RoleBinding's name.
pub const DISCOVERY_BINDING: &str = "cpe-lb-discovery";

/// The ServiceAccount, the Role and its RoleBinding in `default`.
pub fn discovery_rbac() -> String {
    format!(
        "apiVersion: v1
kind: ServiceAccount
metadata:
  name: {DISCOVERY_SA}
  namespace: {DISCOVERY_NAMESPACE}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: {DISCOVERY_BINDING}
  namespace: default
rules:
- apiGroups: [\"discovery.k8s.io\"]
  resources: [\"endpointslices\"]
  verbs: [\"get\", \"list\", \"watch\"]
- apiGroups: [\"\"]
  resources: [\"endpoints\"]
  verbs: [\"get\", \"list\", \"watch\"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: {DISCOVERY_BINDING}
  namespace: default
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: {DISCOVERY_BINDING}
subjects:
- kind: ServiceAccount
  name: {DISCOVERY_SA}
  namespace: {DISCOVERY_NAMESPACE}
"
    )
}
