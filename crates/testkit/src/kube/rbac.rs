//! The least-privilege RBAC of the discovery identity, applied with `kubectl`: read the
//! `kubernetes` EndpointSlices and Endpoints in `default` (get, list, watch), nothing else.
//! The same objects `cpe render --kind rbac` writes (issue 10); the tests may apply that
//! rendered text instead through [`super::KubeBed::apply`].
//!
//! It does not grant anything cluster-wide: the ClusterRole is bound in `default` only.

use super::pki::{DISCOVERY_NAMESPACE, DISCOVERY_SA};

/// The ServiceAccount, the ClusterRole and its RoleBinding in `default`.
pub fn discovery_rbac() -> String {
    format!(
        "apiVersion: v1
kind: ServiceAccount
metadata:
  name: {DISCOVERY_SA}
  namespace: {DISCOVERY_NAMESPACE}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: {DISCOVERY_SA}
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
  name: {DISCOVERY_SA}
  namespace: default
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: {DISCOVERY_SA}
subjects:
- kind: ServiceAccount
  name: {DISCOVERY_SA}
  namespace: {DISCOVERY_NAMESPACE}
"
    )
}
