//! `cpe render --kind capi`: the Cluster API `Cluster` (its control-plane endpoint) and
//! `KubeadmControlPlane` (replicas, version, the endpoint in the certificate, and in
//! virtual-ip mode the VIP agent's static pod and the definition in `files`), written for
//! Cluster API as it really is: machines are replaced, never upgraded, each replacement
//! with a generated name and a new address, so the definition written into the machines
//! lists **no machines** — the same file works on every one of them (`cpe vip` finds its
//! own address and follows etcd's members).
//!
//! Two API versions ([`CapiVersion`]): `v1beta1` (Cluster API up to 1.10, still served by
//! 1.11) and `v1beta2` (Cluster API 1.11's): object references become
//! `{apiGroup, kind, name}` (no `apiVersion`), the KubeadmControlPlane's
//! `machineTemplate.infrastructureRef` moves to `machineTemplate.spec.infrastructureRef`,
//! and `rolloutStrategy` becomes `rollout.strategy`. Read from Cluster API's
//! `api/controlplane/kubeadm/v1beta2` types and its v1.10-to-v1.11 migration notes.
//!
//! The infrastructure provider's machine template is named by the caller
//! ([`InfrastructureRef`]); without one the reference is left out with a comment saying
//! what to fill in — never a kind that does not exist.
//!
//! It does not validate against Cluster API's CRDs (nothing here talks to a cluster).

use crate::{
    cluster_configuration_body, definition_with, header, host_str, indent_block, q, static_pod,
    tolerance, Options, RenderError, MANIFESTS_DIR,
};
use cpe_config::{Endpoint, EtcdTopology, Mode};
use std::fmt::Write;

/// The Cluster API version the objects are written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CapiVersion {
    /// `cluster.x-k8s.io/v1beta1`, `controlplane.cluster.x-k8s.io/v1beta1`.
    #[default]
    V1beta1,
    /// Cluster API 1.11's `v1beta2`.
    V1beta2,
}

impl CapiVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            CapiVersion::V1beta1 => "v1beta1",
            CapiVersion::V1beta2 => "v1beta2",
        }
    }
}

/// The infrastructure provider's machine template (`--infrastructure-kind`,
/// `--infrastructure-api-version`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InfrastructureRef {
    /// e.g. `VSphereMachineTemplate`.
    pub kind: String,
    /// `GROUP/VERSION`, e.g. `infrastructure.cluster.x-k8s.io/v1beta1`.
    pub api_version: String,
}

/// Why an infrastructure reference is refused (a usage error naming the flag).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InfrastructureError {
    #[error("--infrastructure-kind = {0}: must be a Kubernetes kind: a letter, then letters and digits (e.g. VSphereMachineTemplate)")]
    Kind(String),
    #[error("--infrastructure-api-version = {0}: must be GROUP/VERSION (e.g. infrastructure.cluster.x-k8s.io/v1beta1)")]
    ApiVersion(String),
}

impl InfrastructureRef {
    /// Checks both values: a kind is an upper-camel identifier, an API version is
    /// `GROUP/VERSION` with a DNS-name group (a machine template is never in the core group).
    pub fn new(kind: &str, api_version: &str) -> Result<Self, InfrastructureError> {
        let kind_ok = kind.chars().next().is_some_and(|c| c.is_ascii_uppercase())
            && kind.chars().all(|c| c.is_ascii_alphanumeric())
            && kind.len() <= 63;
        if !kind_ok {
            return Err(InfrastructureError::Kind(kind.to_string()));
        }
        let ok = api_version.split_once('/').is_some_and(|(g, v)| {
            g.contains('.')
                && cpe_config::validate::is_dns_name(g)
                && !v.is_empty()
                && v.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        });
        if !ok {
            return Err(InfrastructureError::ApiVersion(api_version.to_string()));
        }
        Ok(InfrastructureRef {
            kind: kind.to_string(),
            api_version: api_version.to_string(),
        })
    }

    fn group(&self) -> &str {
        self.api_version
            .split_once('/')
            .map_or(self.api_version.as_str(), |(g, _)| g)
    }
}

/// An object reference at `indent`: `apiVersion/kind/name` (v1beta1) or
/// `apiGroup/kind/name` (v1beta2).
fn reference(v: CapiVersion, indent: &str, api_version: &str, kind: &str, name: &str) -> String {
    match v {
        CapiVersion::V1beta1 => format!(
            "{indent}apiVersion: {api_version}\n{indent}kind: {kind}\n{indent}name: {}\n",
            q(name)
        ),
        CapiVersion::V1beta2 => {
            let group = api_version.split_once('/').map_or(api_version, |(g, _)| g);
            format!(
                "{indent}apiGroup: {group}\n{indent}kind: {kind}\n{indent}name: {}\n",
                q(name)
            )
        }
    }
}

pub(crate) fn capi(e: &Endpoint, o: &Options) -> Result<String, RenderError> {
    let v = o.capi_version;
    // The definition the machines carry: no machine list (generated names and addresses).
    let on_machines = Endpoint {
        machines: Vec::new(),
        ..e.clone()
    };
    let etcd_written = e.etcd.as_ref().is_some_and(|x| !x.endpoints.is_empty());
    if e.mode == Mode::VirtualIp && e.etcd_topology == EtcdTopology::External && !etcd_written {
        return Err(RenderError::CapiNeedsEtcdEndpoints);
    }
    let mut s = header(
        e,
        &format!(
            "Cluster API ({}): the Cluster's control-plane endpoint and the KubeadmControlPlane's replicas.",
            v.as_str()
        ),
    );
    let kcp = format!("{}-control-plane", e.cluster);
    let version = v.as_str();
    let _ = write!(
        s,
        "apiVersion: cluster.x-k8s.io/{version}
kind: Cluster
metadata:
  name: {name}
  namespace: {ns}
spec:
  controlPlaneEndpoint:
    host: {host}
    port: {port}
  controlPlaneRef:
{cp_ref}---
apiVersion: controlplane.cluster.x-k8s.io/{version}
kind: KubeadmControlPlane
metadata:
  name: {kcp_q}
  namespace: {ns}
spec:
  # {tolerance}
  replicas: {replicas}
  version: {kversion}
",
        name = q(&e.cluster),
        ns = q(&o.namespace),
        host = q(&host_str(&e.host)),
        port = e.port,
        cp_ref = reference(
            v,
            "    ",
            &format!("controlplane.cluster.x-k8s.io/{version}"),
            "KubeadmControlPlane",
            &kcp
        ),
        kcp_q = q(&kcp),
        replicas = e.replicas,
        kversion = q(&o.kubernetes_version),
        tolerance = tolerance(e),
    );
    // Rolling replacement: a new machine joins before an old one leaves (maxSurge 1, the
    // default written out), so etcd and the VIP never lose a member they need.
    match v {
        CapiVersion::V1beta1 => s.push_str(
            "  # Machines are replaced, never upgraded: a new one (new name, new address) joins\n  # before an old one is removed.\n  rolloutStrategy:\n    type: RollingUpdate\n    rollingUpdate:\n      maxSurge: 1\n",
        ),
        CapiVersion::V1beta2 => s.push_str(
            "  # Machines are replaced, never upgraded: a new one (new name, new address) joins\n  # before an old one is removed.\n  rollout:\n    strategy:\n      type: RollingUpdate\n      rollingUpdate:\n        maxSurge: 1\n",
        ),
    }
    s.push_str("  machineTemplate:\n");
    let (ref_indent, key) = match v {
        CapiVersion::V1beta1 => ("      ", "    infrastructureRef:\n"),
        CapiVersion::V1beta2 => ("        ", "    spec:\n      infrastructureRef:\n"),
    };
    match &o.infrastructure {
        Some(i) => {
            let _ = writeln!(
                s,
                "    # Your infrastructure provider's machine template ({}, group {}).",
                i.kind,
                i.group()
            );
            s.push_str(key);
            s.push_str(&reference(v, ref_indent, &i.api_version, &i.kind, &kcp));
        }
        None => {
            let example = reference(
                v,
                "    #   ",
                "infrastructure.cluster.x-k8s.io/v1beta1",
                "VSphereMachineTemplate",
                &kcp,
            );
            let path = match v {
                CapiVersion::V1beta1 => "machineTemplate.infrastructureRef",
                CapiVersion::V1beta2 => "machineTemplate.spec.infrastructureRef",
            };
            let _ = write!(
                s,
                "    # FILL IN {path}: your infrastructure provider's machine template, e.g. for vSphere:\n{example}    # or render again with --infrastructure-kind KIND --infrastructure-api-version GROUP/VERSION.\n"
            );
        }
    }
    s.push_str("  kubeadmConfigSpec:\n    clusterConfiguration:\n");
    s.push_str(&cluster_configuration_body(e, "      "));
    if e.mode == Mode::VirtualIp {
        let pod = static_pod(&on_machines, o)?;
        let def = definition_with(&on_machines, false);
        s.push_str(
            "    # The VIP agent's manifest is in place before kubeadm runs, so kubeadm must not\n    # insist on an empty manifests directory.\n    initConfiguration:\n      nodeRegistration:\n        ignorePreflightErrors:\n          - DirAvailable--etc-kubernetes-manifests\n    joinConfiguration:\n      nodeRegistration:\n        ignorePreflightErrors:\n          - DirAvailable--etc-kubernetes-manifests\n    # The VIP agent and its definition are written before kubeadm runs, so the\n    # virtual IP answers while `kubeadm init` / `kubeadm join` wait for the endpoint.\n    # The definition lists no machines: the same file works on every generated machine\n    # (each agent finds its own address on the VIP interface and its etcd members).\n    files:\n",
        );
        let _ = writeln!(
            s,
            "      - path: {}\n        owner: root:root\n        permissions: \"0644\"\n        content: |",
            q(&format!("{MANIFESTS_DIR}/cpe-vip.yaml"))
        );
        s.push_str(&indent_block(&pod, "          "));
        if !o.inline {
            let _ = writeln!(
                s,
                "      - path: {}\n        owner: root:root\n        permissions: \"0644\"\n        content: |",
                q(&o.definition_path.display().to_string())
            );
            s.push_str(&indent_block(&def, "          "));
        }
    }
    // Workers seed from the endpoint too: the machines they would list get replaced.
    s.push_str(&crate::node_local::capi_workers(&on_machines, o)?);
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn infrastructure_references_are_checked() {
        let ok = InfrastructureRef::new(
            "VSphereMachineTemplate",
            "infrastructure.cluster.x-k8s.io/v1beta1",
        )
        .unwrap();
        assert_eq!(ok.group(), "infrastructure.cluster.x-k8s.io");
        assert_eq!(
            InfrastructureRef::new("MachineTemplate ", "infrastructure.cluster.x-k8s.io/v1beta1")
                .unwrap_err()
                .to_string(),
            "--infrastructure-kind = MachineTemplate : must be a Kubernetes kind: a letter, then letters and digits (e.g. VSphereMachineTemplate)"
        );
        for bad in [
            "v1beta1",
            "infrastructure.cluster.x-k8s.io",
            "core/v1",
            "infra.x/V1",
            "/v1",
        ] {
            let e = InfrastructureRef::new("DockerMachineTemplate", bad)
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with("--infrastructure-api-version = "),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn references_by_version() {
        assert_eq!(
            reference(CapiVersion::V1beta1, "  ", "a.b/v1", "K", "n"),
            "  apiVersion: a.b/v1\n  kind: K\n  name: \"n\"\n"
        );
        assert_eq!(
            reference(CapiVersion::V1beta2, "  ", "a.b/v1", "K", "n"),
            "  apiGroup: a.b\n  kind: K\n  name: \"n\"\n"
        );
    }
}
