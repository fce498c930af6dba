//! The node-local load balancer's artifacts (`nodeLocal.enabled: true`): the static pod
//! that runs `cpe lb --node-local` on every node ([`static_pod`]), the kubeconfig its
//! discovery reads ([`kubeconfig`]), the Role that lets nodes read the `kubernetes`
//! EndpointSlices ([`rbac`]), the `certSANs` the API servers' certificate needs so that
//! `https://localhost:7445` verifies ([`cert_sans`]), and the Cluster API
//! `KubeadmConfigTemplate` that gives every worker the pod and points its kubelet at it
//! ([`capi_workers`]).
//!
//! The pod runs with no capability at all, a read-only root file system and no privilege
//! escalation. It runs as uid 0 for one reason only: discovery authenticates with the
//! kubelet's own client certificate (`/var/lib/kubelet/pki/kubelet-client-current.pem`,
//! mode 0600, owned by root), which kubeadm's TLS bootstrap creates and rotates on every
//! node, so nothing has to be distributed. With a credential readable by another user
//! (a token file), set `runAsUser` to it: binding port 7445 needs no privilege.
//!
//! Pure text, like the rest of the crate; it does not change the kubelet or kube-proxy
//! itself: it prints the lines to change (the header of [`static_pod`], and the
//! `postKubeadmCommands` of [`capi_workers`]).

use crate::{indent_block, q, Kind, Options, RenderError, VERSION};
use cpe_config::{duration, Endpoint, NodeLocal, Protocol, Unauthorized};
use std::fmt::Write;

/// Where the rendered kubeconfig is installed on each node.
pub const KUBECONFIG_PATH: &str = "/etc/cpe/node-local.kubeconfig";
/// The cluster CA kubeadm writes on every node (workers included).
pub const CLUSTER_CA: &str = "/etc/kubernetes/pki/ca.crt";
/// The kubelet's client certificate and key in one file, rotated by the kubelet.
pub const KUBELET_CLIENT: &str = "/var/lib/kubelet/pki/kubelet-client-current.pem";
const KUBELET_PKI: &str = "/var/lib/kubelet/pki";
/// The discovery cache: the last good backend set, read at the next start.
pub const CACHE_DIR: &str = "/var/lib/cpe/node-local";
/// The static pod's file.
pub const MANIFEST: &str = "/etc/kubernetes/manifests/cpe-node-local.yaml";
/// Measured with `bench/node-local.sh` (release, 50 clients): 9.3 MiB resident;
/// the limit leaves room for bursts of connections without an OOM kill of the one
/// path this node's kubelet has to the API.
const REQUESTS_CPU: &str = "10m";
const REQUESTS_MEMORY: &str = "16Mi";
const LIMITS_MEMORY: &str = "64Mi";

fn enabled(e: &Endpoint, kind: Kind) -> Result<&NodeLocal, RenderError> {
    e.node_local
        .as_ref()
        .ok_or(RenderError::NodeLocalDisabled { kind })
}

/// The names the API servers' certificate must carry for node-local clients:
/// `localhost` and `127.0.0.1` when node-local is enabled, none otherwise.
pub fn cert_sans(e: &Endpoint) -> &'static [&'static str] {
    if e.node_local.is_some() {
        &["localhost", "127.0.0.1"]
    } else {
        &[]
    }
}

/// The `certSANs` items for [`cert_sans`], at `indent`, with a comment saying why.
pub(crate) fn cert_san_lines(e: &Endpoint, indent: &str) -> String {
    let mut s = String::new();
    if !cert_sans(e).is_empty() {
        let _ = writeln!(
            s,
            "{indent}# Node-local load balancers: nodes dial https://localhost:PORT."
        );
    }
    for san in cert_sans(e) {
        let _ = writeln!(s, "{indent}- {}", q(san));
    }
    s
}

/// What node components dial: `https://localhost:<port>`.
pub fn server_url(n: &NodeLocal) -> String {
    format!("https://localhost:{}", n.listen.port())
}

/// The CA that verifies the API servers' certificates in health checks.
fn health_ca(e: &Endpoint) -> String {
    e.health
        .ca_file
        .as_ref()
        .map_or_else(|| CLUSTER_CA.to_string(), |p| p.display().to_string())
}

/// The arguments of `cpe lb --node-local` for this definition.
fn args(e: &Endpoint, n: &NodeLocal) -> Vec<String> {
    let h = &e.health;
    let mut a: Vec<String> = vec![
        "lb".into(),
        "--node-local".into(),
        "--listen".into(),
        n.listen.to_string(),
        "--admin".into(),
        n.admin.to_string(),
    ];
    for b in cpe_config::node_local::seeds(e) {
        a.extend(["--backend".into(), b.to_string()]);
    }
    let proto = match h.protocol {
        Protocol::Https => "https",
        Protocol::Http => "http",
        Protocol::Tcp => "tcp",
    };
    a.extend(["--health-check".into(), proto.into()]);
    if h.protocol != Protocol::Tcp {
        a.extend(["--health-path".into(), h.path.clone()]);
    }
    a.extend([
        "--health-interval".into(),
        duration::format(h.interval),
        "--health-timeout".into(),
        duration::format(h.timeout),
        "--rise".into(),
        h.rise.to_string(),
        "--fall".into(),
        h.fall.to_string(),
        "--unauthorized".into(),
        match h.unauthorized {
            Unauthorized::Alive => "alive",
            Unauthorized::Down => "down",
        }
        .into(),
    ]);
    if h.protocol == Protocol::Https {
        a.extend(["--ca-file".into(), health_ca(e)]);
    }
    a.extend([
        "--discover".into(),
        "kubernetes".into(),
        "--kubeconfig".into(),
        KUBECONFIG_PATH.into(),
        "--cache-dir".into(),
        CACHE_DIR.into(),
    ]);
    a
}

/// The static pod for `/etc/kubernetes/manifests/cpe-node-local.yaml`.
pub fn static_pod(e: &Endpoint, o: &Options) -> Result<String, RenderError> {
    let n = enabled(e, Kind::NodeLocal)?;
    let url = server_url(n);
    let mut s = format!(
        "# The cpe node-local load balancer as a static pod: copy to {MANIFEST}
# on every node, with the kubeconfig of `cpe render --kind node-local-kubeconfig` at
# {KUBECONFIG_PATH} (and `cpe render --kind node-local-rbac` applied once to the cluster).
# It listens on {listen} and [::1]:{port} only, and forwards to the API servers it
# discovers from the `kubernetes` EndpointSlices (seeded with the definition's machines,
# or its endpoint; the last good set is cached in {CACHE_DIR}).
#
# Once it answers (`curl -sk {url}/readyz`), point this node's components at it:
#   kubelet     /etc/kubernetes/kubelet.conf:   server: {url}
#               then `systemctl restart kubelet`
#   kube-proxy  kubectl -n kube-system edit configmap kube-proxy, in kubeconfig.conf:
#               server: {url}
#               then `kubectl -n kube-system rollout restart daemonset kube-proxy`
# The control plane keeps its endpoint {endpoint} for everything else (kubectl, other
# clusters' clients); only this node's own components dial localhost.
apiVersion: v1
kind: Pod
metadata:
  name: cpe-node-local
  namespace: kube-system
  labels:
    app.kubernetes.io/name: cpe-node-local
    app.kubernetes.io/part-of: cpe
    app.kubernetes.io/version: {version}
spec:
  # It listens on the host's loopback, where the kubelet and kube-proxy dial it.
  hostNetwork: true
  priorityClassName: system-node-critical
  securityContext:
    # uid 0 only to read the kubelet's client key (0600, root); no capability at all.
    runAsUser: 0
    runAsGroup: 0
    seccompProfile:
      type: RuntimeDefault
  containers:
    - name: cpe-node-local
      # Built by scripts/release.sh (the image's entrypoint is /cpe).
      image: {image}
      imagePullPolicy: IfNotPresent
      args:
",
        listen = n.listen,
        port = n.listen.port(),
        endpoint = crate::authority(e),
        version = q(VERSION),
        image = q(&o.image),
    );
    for a in args(e, n) {
        let _ = writeln!(s, "        - {}", q(&a));
    }
    let _ = write!(
        s,
        "      ports:
        # The admin listener (/metrics, /status, /livez), on the host's loopback.
        - name: admin
          containerPort: {admin_port}
          protocol: TCP
      resources:
        requests:
          cpu: {REQUESTS_CPU}
          memory: {REQUESTS_MEMORY}
        # No CPU limit: throttling would add latency to every request of the kubelet.
        limits:
          memory: {LIMITS_MEMORY}
      securityContext:
        allowPrivilegeEscalation: false
        readOnlyRootFilesystem: true
        capabilities:
          drop:
            - ALL
      livenessProbe:
        httpGet:
          host: {admin_host}
          port: {admin_port}
          path: /livez
        periodSeconds: 10
        failureThreshold: 3
      volumeMounts:
",
        admin_host = q(&n.admin.ip().to_string()),
        admin_port = n.admin.port(),
    );
    let vols = volumes(e);
    for (name, path, _, ro) in &vols {
        let _ = write!(
            s,
            "        - name: {name}\n          mountPath: {}\n",
            q(path)
        );
        if *ro {
            s.push_str("          readOnly: true\n");
        }
    }
    s.push_str("  volumes:\n");
    for (name, path, kind, _) in &vols {
        let _ = write!(
            s,
            "    - name: {name}\n      hostPath:\n        path: {}\n        type: {kind}\n",
            q(path)
        );
    }
    Ok(s)
}

/// (name, host path = mount path, hostPath type, read-only).
fn volumes(e: &Endpoint) -> Vec<(&'static str, String, &'static str, bool)> {
    let mut v = vec![
        ("kubeconfig", KUBECONFIG_PATH.to_string(), "File", true),
        ("cluster-ca", CLUSTER_CA.to_string(), "File", true),
        ("kubelet-pki", KUBELET_PKI.to_string(), "Directory", true),
        ("cache", CACHE_DIR.to_string(), "DirectoryOrCreate", false),
    ];
    let ca = health_ca(e);
    if e.health.protocol == Protocol::Https && ca != CLUSTER_CA {
        v.push(("health-ca", ca, "File", true));
    }
    v
}

/// The kubeconfig discovery reads: the cluster CA and the kubelet's client certificate.
/// Its server is the control-plane endpoint; discovery lists and watches through the
/// healthy backends themselves, so the endpoint is only a starting point.
pub fn kubeconfig(e: &Endpoint) -> Result<String, RenderError> {
    enabled(e, Kind::NodeLocalKubeconfig)?;
    Ok(format!(
        "# The kubeconfig of the cpe node-local load balancer's discovery: install at
# {KUBECONFIG_PATH} on every node. It authenticates as the node (the kubelet's own
# client certificate, rotated by the kubelet), which `cpe render --kind node-local-rbac`
# allows to read the `kubernetes` EndpointSlices and Endpoints in `default`, nothing else.
apiVersion: v1
kind: Config
clusters:
  - name: {cluster}
    cluster:
      certificate-authority: {CLUSTER_CA}
      server: {server}
users:
  - name: node
    user:
      client-certificate: {KUBELET_CLIENT}
      client-key: {KUBELET_CLIENT}
contexts:
  - name: cpe-node-local
    context:
      cluster: {cluster}
      user: node
current-context: cpe-node-local
",
        cluster = q(&e.cluster),
        server = q(&format!("https://{}", crate::authority(e))),
    ))
}

/// Read access to the `kubernetes` EndpointSlices and Endpoints in `default` for every
/// node (group `system:nodes`): a Role in `default`, so nothing else is readable.
pub fn rbac(e: &Endpoint) -> Result<String, RenderError> {
    enabled(e, Kind::NodeLocalRbac)?;
    Ok(
        "# Lets every node's cpe node-local load balancer (authenticated as the node) read the
# `kubernetes` EndpointSlices and Endpoints in `default`: get, list, watch, nothing else.
# Apply once: kubectl apply -f -
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: cpe-node-local
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
  name: cpe-node-local
  namespace: default
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: cpe-node-local
subjects:
  - apiGroup: rbac.authorization.k8s.io
    kind: Group
    name: system:nodes
"
        .to_string(),
    )
}

/// Cluster API: the workers' `KubeadmConfigTemplate` carrying the static pod and its
/// kubeconfig, and pointing the kubelet at localhost once the pod answers. Empty when
/// node-local is not enabled.
pub fn capi_workers(e: &Endpoint, o: &Options) -> Result<String, RenderError> {
    let Some(n) = &e.node_local else {
        return Ok(String::new());
    };
    let pod = static_pod(e, o)?;
    let kc = kubeconfig(e)?;
    let url = server_url(n);
    let mut s = format!(
        "---
# Workers: the node-local load balancer and its kubeconfig are written before
# `kubeadm join`; after the join the kubelet is pointed at {url} once it answers.
# Reference it from your MachineDeployment's spec.template.spec.bootstrap.configRef.
# Apply `cpe render --kind node-local-rbac` to the cluster once.
apiVersion: bootstrap.cluster.x-k8s.io/{version}
kind: KubeadmConfigTemplate
metadata:
  name: {name}
  namespace: {ns}
spec:
  template:
    spec:
      files:
",
        name = q(&format!("{}-workers", e.cluster)),
        ns = q(&o.namespace),
        version = o.capi_version.as_str(),
    );
    for (path, content, mode) in [(MANIFEST, &pod, "0644"), (KUBECONFIG_PATH, &kc, "0600")] {
        let _ = writeln!(
            s,
            "        - path: {}\n          owner: root:root\n          permissions: {}\n          content: |",
            q(path),
            q(mode)
        );
        s.push_str(&indent_block(content, "            "));
    }
    let wait = format!(
        "for i in $(seq 1 120); do curl -fsk {url}/readyz >/dev/null 2>&1 && break; sleep 1; done"
    );
    let switch = format!(
        "sed -i 's#^\\( *server:\\).*#\\1 {url}#' /etc/kubernetes/kubelet.conf && systemctl restart kubelet"
    );
    let _ = write!(
        s,
        "      postKubeadmCommands:\n        - {}\n        - {}\n",
        q(&wait),
        q(&switch)
    );
    Ok(s)
}

/// The `nodeLocal` section of the written-back definition (empty when not enabled).
pub fn definition_section(e: &Endpoint) -> String {
    match &e.node_local {
        None => String::new(),
        Some(n) => format!(
            "nodeLocal:\n  enabled: true\n  listen: {}\n  admin: {}\n",
            q(&n.listen.to_string()),
            q(&n.admin.to_string())
        ),
    }
}
