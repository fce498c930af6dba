//! Renders the artifacts that wire a control-plane endpoint into a cluster:
//! kubeadm `ClusterConfiguration`, Cluster API objects, the VIP agent static pod, and
//! systemd units. Pure: takes an [`cpe_config::Endpoint`], returns text. Never touches
//! the host or the cluster.
//!
//! # Layout
//!
//! - [`render`]: one entry point, one function per [`Kind`].
//! - [`node_local`]: the node-local load balancer's static pod, kubeconfig and Role,
//!   the `certSANs` it needs and the Cluster API workers' template.
//! - [`rbac`]: the least-privilege RBAC of `cpe lb --discover kubernetes`.
//! - [`definition`]: the definition written back as a canonical `endpoint.yaml`, for
//!   artifacts that install it on the machines (Cluster API's `files`).
//!
//! The YAML is written from templates rather than serialized from structs: the output is
//! read by people before it is applied, so it keeps a fixed field order and comments that
//! say why a value is what it is. Every string is quoted through JSON (a JSON string is a
//! YAML string), so no value can break the document. Golden-file tests pin the output;
//! `kubectl create --dry-run=client` checks the built-in kinds.
//!
//! # What it does not do
//!
//! It does not decide anything about the endpoint (that is `cpe-config`), and it renders
//! only the endpoint's part of each object: a `KubeadmControlPlane` still needs the
//! infrastructure provider's machine template, a `ClusterConfiguration` the rest of the
//! cluster's settings.

pub mod rbac;

use cpe_config::{duration, Endpoint, Host, Mode};

mod capi;
pub mod node_local;
pub use capi::{CapiVersion, InfrastructureRef};
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// The version of cpe that renders, which is the image tag the release builds.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The image's name; `scripts/release.sh` tags its archive `cpe:<version>`.
pub const IMAGE_NAME: &str = "cpe";
/// Where the released image is pushed, unless `--image-registry` says otherwise.
pub const DEFAULT_REGISTRY: &str = "ghcr.io/cpe-dev";
/// The image of the VIP agent's static pod unless `--image`/`--image-registry` say
/// otherwise: [`image`]`(`[`DEFAULT_REGISTRY`]`)`.
pub const DEFAULT_IMAGE: &str = concat!("ghcr.io/cpe-dev/cpe:", env!("CARGO_PKG_VERSION"));
/// The resources the VIP agent's static pod requests (measured: the agent's resident
/// memory stays under 20 MiB and it idles at well under 1% of a core).
const REQUESTS_CPU: &str = "25m";
const REQUESTS_MEMORY: &str = "32Mi";
/// The variable `cpe vip` reads the whole definition from (`--inline`).
pub const DEFINITION_ENV: &str = "CPE_DEFINITION";
/// Where the definition is installed on each machine (read by `cpe vip` / `cpe lb`).
pub const DEFAULT_DEFINITION_PATH: &str = "/etc/cpe/endpoint.yaml";
/// Where the `cpe` binary is installed, for systemd units.
pub const DEFAULT_BINARY: &str = "/usr/local/bin/cpe";
/// The Kubernetes version written into a `KubeadmControlPlane` (a required field there).
pub const DEFAULT_KUBERNETES_VERSION: &str = "v1.32.4";
/// kubelet's static pod directory.
pub const MANIFESTS_DIR: &str = "/etc/kubernetes/manifests";
/// kubeadm's default API server bind port.
const KUBEADM_BIND_PORT: u16 = 6443;

/// The image this version's release builds, under `registry` (`REGISTRY/cpe:<version>`;
/// with an empty registry the bare `cpe:<version>` the archive is tagged with).
pub fn image(registry: &str) -> String {
    match registry.trim_end_matches('/') {
        "" => format!("{IMAGE_NAME}:{VERSION}"),
        r => format!("{r}/{IMAGE_NAME}:{VERSION}"),
    }
}

/// What to render.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// kubeadm `ClusterConfiguration`: `controlPlaneEndpoint` and `apiServer.certSANs`.
    Kubeadm,
    /// Cluster API `Cluster` (`spec.controlPlaneEndpoint`) and `KubeadmControlPlane`
    /// (replicas; in VIP mode the agent's static pod and the definition in `files`).
    Capi,
    /// The VIP agent's static pod for `/etc/kubernetes/manifests/` (virtual-ip mode).
    StaticPod,
    /// A systemd unit running `cpe lb` (external-lb) or `cpe vip` (virtual-ip).
    Systemd,
    /// The node-local load balancer's static pod (`nodeLocal.enabled`), any mode.
    NodeLocal,
    /// The kubeconfig the node-local load balancer's discovery reads.
    NodeLocalKubeconfig,
    /// The Role letting nodes read the `kubernetes` EndpointSlices.
    NodeLocalRbac,
    /// The ServiceAccount, Role and RoleBinding of `cpe lb --discover kubernetes`
    /// ([`rbac::rbac`]; the same for every definition, so not in [`Kind::ALL`]).
    Rbac,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::Kubeadm,
        Kind::Capi,
        Kind::StaticPod,
        Kind::Systemd,
        Kind::NodeLocal,
        Kind::NodeLocalKubeconfig,
        Kind::NodeLocalRbac,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Kubeadm => "kubeadm",
            Kind::Capi => "capi",
            Kind::StaticPod => "static-pod",
            Kind::Systemd => "systemd",
            Kind::NodeLocal => "node-local",
            Kind::NodeLocalKubeconfig => "node-local-kubeconfig",
            Kind::NodeLocalRbac => "node-local-rbac",
            Kind::Rbac => "rbac",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Choices that are not part of the definition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Image of the VIP agent's static pod.
    pub image: String,
    /// Where the definition is installed on each machine.
    pub definition_path: PathBuf,
    /// Where the `cpe` binary is installed (systemd).
    pub binary: PathBuf,
    /// The node name `cpe vip` runs as in a systemd unit; `%H` (the host name) by default.
    pub node: String,
    /// `spec.version` of the `KubeadmControlPlane`.
    pub kubernetes_version: String,
    /// Namespace of the Cluster API objects.
    pub namespace: String,
    /// Static pod (and Cluster API): the definition inside the pod ([`DEFINITION_ENV`])
    /// instead of a file on the host.
    pub inline: bool,
    /// Cluster API: the infrastructure provider's machine template kind and API version
    /// (`--infrastructure-kind`, `--infrastructure-api-version`); `None` writes a comment
    /// saying what to fill in.
    pub infrastructure: Option<InfrastructureRef>,
    /// Cluster API: the API version the objects are written in.
    pub capi_version: CapiVersion,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            image: DEFAULT_IMAGE.into(),
            definition_path: DEFAULT_DEFINITION_PATH.into(),
            binary: DEFAULT_BINARY.into(),
            node: "%H".into(),
            kubernetes_version: DEFAULT_KUBERNETES_VERSION.into(),
            namespace: "default".into(),
            inline: false,
            infrastructure: None,
            capi_version: CapiVersion::V1beta1,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RenderError {
    /// The kind does not apply to the definition's mode.
    #[error("--kind {kind} does not apply to {mode} mode: {why}")]
    NotForMode {
        kind: Kind,
        mode: Mode,
        why: &'static str,
    },
    /// A node-local artifact for a definition without `nodeLocal.enabled: true`.
    #[error("--kind {kind} needs `nodeLocal: {{enabled: true}}` in the definition")]
    NodeLocalDisabled { kind: Kind },
    /// Cluster API machines get generated names and addresses, so the definition they
    /// carry lists no machines: etcd must then be found some other way.
    #[error("--kind capi in virtual-ip mode with external etcd needs etcd.endpoints: the definition written into the machines lists no machines (Cluster API replaces them), so nothing else says where etcd is")]
    CapiNeedsEtcdEndpoints,
    /// A path that ends up inside a pod or a unit must be absolute.
    #[error("{what} must be an absolute path, not `{path}`")]
    RelativePath { what: &'static str, path: String },
}

/// Renders `kind` for a valid definition.
pub fn render(e: &Endpoint, kind: Kind, o: &Options) -> Result<String, RenderError> {
    absolute("--definition-path", &o.definition_path)?;
    match kind {
        Kind::Kubeadm => Ok(kubeadm(e)),
        Kind::Capi => capi::capi(e, o),
        Kind::StaticPod => static_pod(e, o),
        Kind::Systemd => systemd(e, o),
        Kind::NodeLocal => node_local::static_pod(e, o),
        Kind::NodeLocalKubeconfig => node_local::kubeconfig(e),
        Kind::NodeLocalRbac => node_local::rbac(e),
        Kind::Rbac => Ok(rbac::rbac()),
    }
}

/// What the user should know before applying `kind` for this definition (printed on
/// stderr by `cpe render`, and as a comment in the artifact). Today: kubeadm in
/// single-node mode with an IP endpoint, which kubeadm cannot turn into a highly
/// available control plane later.
pub fn warnings(e: &Endpoint, kind: Kind) -> Vec<String> {
    let mut out = Vec::new();
    if kind == Kind::Kubeadm && e.mode == Mode::SingleNode {
        if let Host::Ip(ip) = &e.host {
            out.push(format!(
                "the endpoint is the IP address {ip}: kubeadm cannot turn a single control-plane node into a highly available control plane later unless controlPlaneEndpoint is a name all control-plane machines can share (kubeadm's own advice); use a DNS name that resolves to {ip} today"
            ));
        }
    }
    out
}

fn absolute(what: &'static str, p: &Path) -> Result<(), RenderError> {
    if p.is_absolute() {
        Ok(())
    } else {
        Err(RenderError::RelativePath {
            what,
            path: p.display().to_string(),
        })
    }
}

/// A YAML double-quoted scalar (a JSON string is one).
/// The `caFile`/`certFile`/`keyFile` lines of a section, those that are set.
fn tls_files(
    s: &mut String,
    ca: &Option<std::path::PathBuf>,
    cert: &Option<std::path::PathBuf>,
    key: &Option<std::path::PathBuf>,
) {
    for (k, v) in [("caFile", ca), ("certFile", cert), ("keyFile", key)] {
        if let Some(p) = v {
            let _ = writeln!(s, "  {k}: {}", q(&p.display().to_string()));
        }
    }
}

pub(crate) fn q(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

/// The host as kubeadm and Cluster API write it (no brackets around IPv6).
pub(crate) fn host_str(h: &Host) -> String {
    match h {
        Host::Ip(ip) => ip.to_string(),
        Host::Dns(n) => n.trim_end_matches('.').to_string(),
    }
}

/// `host:port` for kubeadm and Cluster API: brackets around IPv6, no trailing dot (the
/// certificate names the host without one, and TLS clients compare them as written).
fn authority(e: &Endpoint) -> String {
    match &e.host {
        Host::Ip(std::net::IpAddr::V6(a)) => format!("[{a}]:{}", e.port),
        h => format!("{}:{}", host_str(h), e.port),
    }
}

pub(crate) fn header(e: &Endpoint, what: &str) -> String {
    format!(
        "# {what}\n# Generated by `cpe render` for the control-plane endpoint {} ({} mode, {} replicas).\n",
        e.url_authority(),
        e.mode,
        e.replicas
    )
}

/// The API server port every machine listens on, when they all agree.
fn common_api_server_port(e: &Endpoint) -> Option<u16> {
    let first = e.machines.first()?.api_server_port;
    e.machines
        .iter()
        .all(|m| m.api_server_port == first)
        .then_some(first)
}

pub(crate) fn cluster_configuration_body(e: &Endpoint, indent: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{indent}controlPlaneEndpoint: {}", q(&authority(e)));
    let _ = writeln!(s, "{indent}apiServer:");
    let _ = writeln!(
        s,
        "{indent}  # The API server's certificate must name the endpoint host, or clients that"
    );
    let _ = writeln!(
        s,
        "{indent}  # connect through the load balancer or the virtual IP reject it."
    );
    let _ = writeln!(s, "{indent}  certSANs:");
    let _ = writeln!(s, "{indent}    - {}", q(&host_str(&e.host)));
    s.push_str(&node_local::cert_san_lines(e, &format!("{indent}    ")));
    s
}

fn kubeadm(e: &Endpoint) -> String {
    let mut s = header(
        e,
        "kubeadm ClusterConfiguration: merge into the configuration given to `kubeadm init --config`.",
    );
    if let Some(p) = common_api_server_port(e).filter(|p| *p != KUBEADM_BIND_PORT) {
        let _ = writeln!(
            s,
            "# The API servers listen on port {p}: also set InitConfiguration.localAPIEndpoint.bindPort\n# and JoinConfiguration.controlPlane.localAPIEndpoint.bindPort to {p}."
        );
    }
    for w in warnings(e, Kind::Kubeadm) {
        let _ = writeln!(s, "# WARNING: {w}");
    }
    if e.mode == Mode::VirtualIp {
        let _ = writeln!(
            s,
            "# Virtual IP: install the VIP agent first (`cpe render --kind static-pod` into {MANIFESTS_DIR}/cpe-vip.yaml\n# and the definition at {DEFAULT_DEFINITION_PATH}) so that the endpoint answers while kubeadm waits for it;\n# then run kubeadm with --ignore-preflight-errors=DirAvailable--etc-kubernetes-manifests."
        );
    }
    s.push_str("apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\n");
    let _ = writeln!(s, "clusterName: {}", q(&e.cluster));
    s.push_str(&cluster_configuration_body(e, ""));
    s
}

pub(crate) fn tolerance(e: &Endpoint) -> String {
    let n = e.failures_tolerated();
    format!(
        "tolerates {n} failed machine{} (etcd quorum {} of {})",
        if n == 1 { "" } else { "s" },
        e.quorum(),
        e.replicas
    )
}

pub(crate) fn indent_block(text: &str, indent: &str) -> String {
    text.lines()
        .map(|l| {
            if l.is_empty() {
                "\n".to_string()
            } else {
                format!("{indent}{l}\n")
            }
        })
        .collect()
}

/// The etcd client files the agent reads, each mounted read-only at the same path.
fn etcd_files(e: &Endpoint) -> Vec<(&'static str, PathBuf)> {
    let Some(etcd) = &e.etcd else {
        return Vec::new();
    };
    [
        ("etcd-ca", &etcd.ca_file),
        ("etcd-cert", &etcd.cert_file),
        ("etcd-key", &etcd.key_file),
    ]
    .into_iter()
    .filter_map(|(n, p)| p.clone().map(|p| (n, p)))
    .collect()
}

pub(crate) fn static_pod(e: &Endpoint, o: &Options) -> Result<String, RenderError> {
    let Some(vip) = &e.vip else {
        return Err(RenderError::NotForMode {
            kind: Kind::StaticPod,
            mode: e.mode,
            why: "the static pod runs the VIP agent, which only runs in virtual-ip mode",
        });
    };
    let files = etcd_files(e);
    for (_, p) in &files {
        absolute("an etcd certificate path (etcd.caFile/certFile/keyFile)", p)?;
    }
    let def = o.definition_path.display().to_string();
    let (install, definition_args) = if o.inline {
        (
            format!(
                "# control-plane machine. The definition is inside ({DEFINITION_ENV}): the host needs\n# only the etcd client certificates."
            ),
            String::new(),
        )
    } else {
        (
            format!("# control-plane machine, with the definition at {def}."),
            format!("        - -f\n        - {}\n", q(&def)),
        )
    };
    let mut s = format!(
        "# The cpe VIP agent as a static pod: copy to {MANIFESTS_DIR}/cpe-vip.yaml on every
{install}
# It holds the virtual IP {vip_addr} on {iface} while this machine's API server answers;
# the election runs on etcd, so it does not depend on the API server it fronts.
apiVersion: v1
kind: Pod
metadata:
  name: cpe-vip
  namespace: kube-system
  labels:
    app.kubernetes.io/name: cpe-vip
    app.kubernetes.io/part-of: cpe
    app.kubernetes.io/version: {version}
spec:
  # The VIP is added to the host's interface and announced on the host's network.
  hostNetwork: true
  priorityClassName: system-node-critical
  containers:
    - name: cpe-vip
      # Built by scripts/release.sh (the image's entrypoint is /cpe).
      image: {image}
      imagePullPolicy: IfNotPresent
      args:
        - vip
{definition_args}        - --node
        - $(NODE_NAME)
      env:
        # The node name is the name the agent campaigns under; the definition need not list it.
        - name: NODE_NAME
          valueFrom:
            fieldRef:
              fieldPath: spec.nodeName
",
        vip_addr = vip.address,
        iface = vip.interface,
        version = q(VERSION),
        image = q(&o.image),
    );
    if o.inline {
        let _ = writeln!(s, "        - name: {DEFINITION_ENV}\n          value: |");
        s.push_str(&indent_block(&definition(e), "            "));
    }
    let _ = write!(
        s,
        "      ports:
        # The admin listener (/metrics, /status, /livez, /readyz); with hostNetwork this is
        # the host's port, listening on {admin_host_plain} as the definition's virtualIP.admin says.
        - name: admin
          containerPort: {admin_port}
          protocol: TCP
{metrics_port}      resources:
        requests:
          cpu: {cpu}
          memory: {memory}
      securityContext:
        # NET_ADMIN adds and removes the address; NET_RAW sends gratuitous ARP / NA.
        capabilities:
          drop:
            - ALL
          add:
            - NET_ADMIN
            - NET_RAW
      livenessProbe:
        httpGet:
          host: {admin_host}
          port: {admin_port}
          path: /livez
        periodSeconds: 10
        failureThreshold: 3
",
        admin_host_plain = vip.admin.ip(),
        admin_host = q(&vip.admin.ip().to_string()),
        admin_port = vip.admin.port(),
        metrics_port = vip.metrics.map_or(String::new(), |m| format!(
            "        # /metrics and the probes only, on {} (virtualIP.metrics): what Prometheus scrapes.\n        - name: metrics\n          containerPort: {}\n          protocol: TCP\n",
            m.ip(),
            m.port()
        )),
        cpu = REQUESTS_CPU,
        memory = REQUESTS_MEMORY,
    );
    let mut mounts: Vec<(&str, String)> = Vec::new();
    if !o.inline {
        mounts.push(("definition", def.clone()));
    }
    mounts.extend(files.iter().map(|(n, p)| (*n, p.display().to_string())));
    // The load-balancing VIP: its load balancer's discovery cache (written, kept across
    // restarts) and the kubeconfig of a `kubernetes` source.
    let lb_discovery = vip.load_balance.as_ref().map(|l| l.discovery.clone());
    let cache: Option<String> = lb_discovery.as_ref().map(|d| {
        d.as_ref().map_or(
            cpe_config::rules::discovery::DEFAULT_CACHE_DIR.to_string(),
            |d| d.cache_dir.display().to_string(),
        )
    });
    if let Some(k) = lb_discovery.flatten().and_then(|d| d.kubeconfig) {
        absolute("loadBalancer.discovery.kubeconfig", &k)?;
        mounts.push(("kubeconfig", k.display().to_string()));
    }
    if mounts.is_empty() && cache.is_none() {
        return Ok(s);
    }
    s.push_str("      volumeMounts:\n");
    for (name, p) in &mounts {
        let _ = write!(
            s,
            "        - name: {name}\n          mountPath: {}\n          readOnly: true\n",
            q(p)
        );
    }
    if let Some(c) = &cache {
        let _ = write!(
            s,
            "        - name: lb-cache\n          mountPath: {}\n",
            q(c)
        );
    }
    s.push_str("  volumes:\n");
    for (name, p) in &mounts {
        let _ = write!(
            s,
            "    - name: {name}\n      hostPath:\n        path: {}\n        type: File\n",
            q(p)
        );
    }
    if let Some(c) = &cache {
        let _ = write!(
            s,
            "    - name: lb-cache\n      hostPath:\n        path: {}\n        type: DirectoryOrCreate\n",
            q(c)
        );
    }
    Ok(s)
}

fn systemd(e: &Endpoint, o: &Options) -> Result<String, RenderError> {
    absolute("--binary", &o.binary)?;
    let bin = o.binary.display();
    let def = o.definition_path.display();
    let mut s = String::from("[Unit]\n");
    match e.mode {
        Mode::SingleNode => {
            return Err(RenderError::NotForMode {
                kind: Kind::Systemd,
                mode: e.mode,
                why: "a single-node control plane is its own endpoint: nothing else runs",
            })
        }
        Mode::ExternalLb => {
            let lb = e.load_balancer.as_ref().expect("external-lb mode has one");
            // Binding below 1024 needs a capability; above it, none at all.
            let low = |p: u16| p < 1024;
            let caps = if low(lb.listen.port())
                || low(lb.admin.port())
                || lb.metrics.is_some_and(|m| low(m.port()))
            {
                "CAP_NET_BIND_SERVICE"
            } else {
                ""
            };
            let _ = write!(
                s,
                "Description=cpe load balancer for the control-plane endpoint {authority}
Documentation=https://github.com/cpe-dev/cpe
Wants=network-online.target
After=network-online.target

[Service]
# Install as /etc/systemd/system/cpe-lb.service on the load-balancer host, with the
# definition at {def}. SIGHUP reloads the definition.
ExecStart={bin} lb -f {def}
ExecReload=/bin/kill -HUP $MAINPID
Restart=always
RestartSec=1s
# SIGTERM: stop accepting, let connections drain for up to {drain}, exit.
KillSignal=SIGTERM
TimeoutStopSec={stop}
LimitNOFILE=1048576
AmbientCapabilities={caps}
CapabilityBoundingSet={caps}
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes

[Install]
WantedBy=multi-user.target
",
                authority = e.url_authority(),
                drain = duration::format(lb.drain_timeout),
                stop = lb.drain_timeout.as_secs() + 5,
            );
        }
        Mode::VirtualIp => {
            let vip = e.vip.as_ref().expect("virtual-ip mode has one");
            let _ = write!(
                s,
                "Description=cpe virtual IP agent for the control-plane endpoint {authority}
Documentation=https://github.com/cpe-dev/cpe
Wants=network-online.target
After=network-online.target

[Service]
# Install as /etc/systemd/system/cpe-vip.service on every control-plane machine, with
# the definition at {def}. The node name ({node}) is the name the agent campaigns under;
# the definition need not list the machine.
ExecStart={bin} vip -f {def} --node {node}
Restart=always
RestartSec=1s
# SIGTERM: resign the election and remove the VIP so another machine takes over at once.
KillSignal=SIGTERM
TimeoutStopSec=10s
# NET_ADMIN adds and removes {vip_addr} on {iface}; NET_RAW sends gratuitous ARP / NA.
AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW
CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes

[Install]
WantedBy=multi-user.target
",
                authority = e.url_authority(),
                node = o.node,
                vip_addr = vip.address,
                iface = vip.interface,
            );
        }
    }
    Ok(s)
}

/// The definition written back as a canonical `endpoint.yaml`: every value explicit, so
/// the file means the same to any later cpe version whatever its defaults.
pub fn definition(e: &Endpoint) -> String {
    definition_with(e, true)
}

/// [`definition`] with the machine list left out when `machines` is false (Cluster API:
/// the same file on every generated machine, whatever its name and address).
pub fn definition_with(e: &Endpoint, machines: bool) -> String {
    let mut s = String::from("# Control-plane endpoint definition, written by `cpe render`.\n");
    let _ = writeln!(s, "cluster: {}", q(&e.cluster));
    let _ = writeln!(s, "mode: {}", e.mode);
    let _ = writeln!(
        s,
        "endpoint:\n  host: {}\n  port: {}",
        q(&match &e.host {
            Host::Ip(ip) => ip.to_string(),
            Host::Dns(n) => n.clone(),
        }),
        e.port
    );
    let _ = writeln!(
        s,
        "controlPlane:\n  replicas: {}\n  etcd: {}",
        e.replicas,
        match e.etcd_topology {
            cpe_config::EtcdTopology::Stacked => "stacked",
            cpe_config::EtcdTopology::External => "external",
        }
    );
    if machines && !e.machines.is_empty() {
        s.push_str("  machines:\n");
    }
    for m in e.machines.iter().filter(|_| machines) {
        let addr = match m.prefix_len {
            Some(l) => format!("{}/{l}", m.address),
            None => m.address.to_string(),
        };
        let _ = writeln!(
            s,
            "    - name: {}\n      address: {}\n      apiServerPort: {}",
            q(&m.name),
            q(&addr),
            m.api_server_port
        );
    }
    let h = &e.health;
    let _ = writeln!(
        s,
        "healthCheck:\n  protocol: {}\n  path: {}\n  interval: {}\n  timeout: {}\n  rise: {}\n  fall: {}\n  unauthorized: {}",
        match h.protocol {
            cpe_config::Protocol::Https => "https",
            cpe_config::Protocol::Http => "http",
            cpe_config::Protocol::Tcp => "tcp",
        },
        q(&h.path),
        duration::format(h.interval),
        duration::format(h.timeout),
        h.rise,
        h.fall,
        match h.unauthorized {
            cpe_config::Unauthorized::Alive => "alive",
            cpe_config::Unauthorized::Down => "down",
        }
    );
    tls_files(&mut s, &h.ca_file, &h.cert_file, &h.key_file);
    if let Some(v) = &e.vip {
        let _ = writeln!(
            s,
            "virtualIP:\n  interface: {}\n  prefixLength: {}\n  leaseTTL: {}s\n  election: {}\n  admin: {}",
            q(&v.interface),
            v.prefix_len,
            v.lease_ttl.as_secs(),
            q(&v.election),
            q(&v.admin.to_string())
        );
        if let Some(m) = v.metrics {
            let _ = writeln!(s, "  metrics: {}", q(&m.to_string()));
        }
        if let Some(lb) = &v.load_balance {
            let _ = writeln!(s, "  loadBalance: true\n  lbPort: {}", lb.lb_port);
            // Where the in-agent load balancer learns its backends (virtual-ip mode reads
            // only this part of `loadBalancer`).
            if let Some(d) = &lb.discovery {
                let sources: Vec<&str> = d.sources.iter().map(|s| s.as_str()).collect();
                let _ = writeln!(
                    s,
                    "loadBalancer:\n  discovery:\n    sources: [{}]\n    cacheDir: {}",
                    sources.join(", "),
                    q(&d.cache_dir.display().to_string())
                );
                if let Some(k) = &d.kubeconfig {
                    let _ = writeln!(s, "    kubeconfig: {}", q(&k.display().to_string()));
                }
            }
        }
    }
    if let Some(etcd) = &e.etcd {
        s.push_str("etcd:\n");
        if !etcd.endpoints.is_empty() {
            s.push_str("  endpoints:\n");
            for u in &etcd.endpoints {
                let _ = writeln!(s, "    - {}", q(u));
            }
        }
        tls_files(&mut s, &etcd.ca_file, &etcd.cert_file, &etcd.key_file);
    }
    if let Some(lb) = &e.load_balancer {
        let _ = writeln!(
            s,
            "loadBalancer:\n  listen: {}\n  admin: {}\n  maxConnections: {}\n  drainTimeout: {}\n  connectTimeout: {}",
            q(&lb.listen.to_string()),
            q(&lb.admin.to_string()),
            lb.max_connections,
            duration::format(lb.drain_timeout),
            duration::format(lb.connect_timeout)
        );
        if let Some(m) = lb.metrics {
            let _ = writeln!(s, "  metrics: {}", q(&m.to_string()));
        }
    }
    s.push_str(&node_local::definition_section(e));
    s
}
