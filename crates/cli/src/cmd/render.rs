//! `cpe render`: writes the artifacts that wire the endpoint into a cluster (kubeadm,
//! Cluster API, the VIP agent's static pod, a systemd unit) to stdout. The definition is
//! checked exactly as `cpe plan` checks it; an invalid one is reported on stderr and
//! nothing is rendered. Exit 0 rendered, 1 invalid definition, 2 usage error (including a
//! kind that does not apply to the definition's mode).

use super::plan::{counts, problems_text, Source};
use cpe_config::Severity;
use cpe_render::{Kind, Options};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum KindArg {
    /// kubeadm ClusterConfiguration: controlPlaneEndpoint and apiServer.certSANs.
    Kubeadm,
    /// Cluster API Cluster (spec.controlPlaneEndpoint) and KubeadmControlPlane (replicas;
    /// in virtual-ip mode the VIP agent's static pod and the definition in files).
    Capi,
    /// The VIP agent's static pod for /etc/kubernetes/manifests/ (virtual-ip mode only).
    StaticPod,
    /// A systemd unit running `cpe lb` (external-lb) or `cpe vip` (virtual-ip).
    Systemd,
    /// The node-local load balancer's static pod (nodeLocal.enabled; docs/node-local.md).
    NodeLocal,
    /// The kubeconfig the node-local load balancer's discovery reads.
    NodeLocalKubeconfig,
    /// The Role letting nodes read the `kubernetes` EndpointSlices (apply once).
    NodeLocalRbac,
    /// ServiceAccount, Role and RoleBinding for `cpe lb --discover kubernetes`.
    Rbac,
}

impl From<KindArg> for Kind {
    fn from(k: KindArg) -> Kind {
        match k {
            KindArg::Kubeadm => Kind::Kubeadm,
            KindArg::Capi => Kind::Capi,
            KindArg::StaticPod => Kind::StaticPod,
            KindArg::Systemd => Kind::Systemd,
            KindArg::NodeLocal => Kind::NodeLocal,
            KindArg::NodeLocalKubeconfig => Kind::NodeLocalKubeconfig,
            KindArg::NodeLocalRbac => Kind::NodeLocalRbac,
            KindArg::Rbac => Kind::Rbac,
        }
    }
}

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  cpe render -f endpoint.yaml --kind kubeadm > cluster-configuration.yaml
  cpe render -f endpoint.yaml --kind static-pod > /etc/kubernetes/manifests/cpe-vip.yaml
  cpe render -f endpoint.yaml --kind static-pod --inline --image-registry registry.example:5000
  cpe render -f endpoint.yaml --kind systemd > /etc/systemd/system/cpe-lb.service
  cpe render -f endpoint.yaml --kind rbac | kubectl apply -f -
  cpe render -f endpoint.yaml --kind capi --capi-version v1beta2 \\
    --infrastructure-kind VSphereMachineTemplate \\
    --infrastructure-api-version infrastructure.cluster.x-k8s.io/v1beta1

The artifact goes to stdout, warnings and problems to stderr.
Exit status: 0 rendered, 1 invalid or unreadable definition, 2 usage error (including a kind
that does not apply to the definition's mode, e.g. static-pod without a virtual IP).")]
pub struct Args {
    #[command(flatten)]
    pub source: Source,
    /// What to render.
    #[arg(short = 'k', long, value_enum)]
    pub kind: KindArg,
    /// Image of the VIP agent's static pod (static-pod, capi), in full; overrides
    /// --image-registry. [default: REGISTRY/cpe:<this cpe's version>, what scripts/release.sh builds]
    #[arg(long, value_name = "IMAGE")]
    pub image: Option<String>,
    /// Registry the released image was pushed to: the pod runs REGISTRY/cpe:<this cpe's
    /// version>. Empty for the bare `cpe:<version>` the release archive is tagged with.
    #[arg(long, value_name = "REGISTRY", default_value = cpe_render::DEFAULT_REGISTRY)]
    pub image_registry: String,
    /// Put the definition inside the static pod (environment variable CPE_DEFINITION)
    /// instead of mounting it from the host: one file to install, plus the etcd
    /// certificates kubeadm already wrote (static-pod, capi).
    #[arg(long)]
    pub inline: bool,
    /// Where the definition is installed on each machine; the static pod mounts it and the
    /// systemd unit reads it.
    #[arg(long, value_name = "PATH", default_value = cpe_render::DEFAULT_DEFINITION_PATH)]
    pub definition_path: PathBuf,
    /// Where the cpe binary is installed (systemd).
    #[arg(long, value_name = "PATH", default_value = cpe_render::DEFAULT_BINARY)]
    pub binary: PathBuf,
    /// Node name `cpe vip` runs as in the systemd unit; `%H` is systemd's host name.
    #[arg(long, value_name = "NAME", default_value = "%H")]
    pub node: String,
    /// spec.version of the KubeadmControlPlane (capi).
    #[arg(long, value_name = "VERSION", default_value = cpe_render::DEFAULT_KUBERNETES_VERSION)]
    pub kubernetes_version: String,
    /// Namespace of the Cluster API objects (capi).
    #[arg(long, value_name = "NAMESPACE", default_value = "default")]
    pub namespace: String,
    /// Kind of your infrastructure provider's machine template, e.g. VSphereMachineTemplate
    /// (capi; with --infrastructure-api-version). Without it the KubeadmControlPlane says
    /// in a comment what to fill in.
    #[arg(long, value_name = "KIND", requires = "infrastructure_api_version")]
    pub infrastructure_kind: Option<String>,
    /// API version of that template, GROUP/VERSION, e.g.
    /// infrastructure.cluster.x-k8s.io/v1beta1 (capi; with --infrastructure-kind).
    #[arg(long, value_name = "GROUP/VERSION", requires = "infrastructure_kind")]
    pub infrastructure_api_version: Option<String>,
    /// Cluster API version to write (capi): v1beta1 (Cluster API up to 1.10, still served
    /// by 1.11) or v1beta2 (Cluster API 1.11's).
    #[arg(long, value_name = "VERSION", value_enum, default_value_t = CapiVersionArg::V1beta1)]
    pub capi_version: CapiVersionArg,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapiVersionArg {
    V1beta1,
    V1beta2,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let checked = args.source.check();
    let label = args.source.label();
    let Some(endpoint) = checked.endpoint.as_ref() else {
        eprintln!(
            "{}{label}: invalid definition, nothing rendered ({})",
            problems_text(&label, &checked.problems),
            counts(&checked)
        );
        return Ok(ExitCode::from(1));
    };
    let warnings: Vec<_> = checked
        .problems
        .iter()
        .filter(|p| p.severity == Severity::Warning)
        .cloned()
        .collect();
    eprint!("{}", problems_text(&label, &warnings));
    for w in cpe_render::warnings(endpoint, args.kind.into()) {
        eprintln!("warning: {w}");
    }
    let infrastructure = match (&args.infrastructure_kind, &args.infrastructure_api_version) {
        (Some(k), Some(v)) => match cpe_render::InfrastructureRef::new(k, v) {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(ExitCode::from(2));
            }
        },
        _ => None,
    };
    let options = Options {
        image: args
            .image
            .unwrap_or_else(|| cpe_render::image(&args.image_registry)),
        definition_path: args.definition_path,
        binary: args.binary,
        node: args.node,
        kubernetes_version: args.kubernetes_version,
        namespace: args.namespace,
        inline: args.inline,
        infrastructure,
        capi_version: match args.capi_version {
            CapiVersionArg::V1beta1 => cpe_render::CapiVersion::V1beta1,
            CapiVersionArg::V1beta2 => cpe_render::CapiVersion::V1beta2,
        },
    };
    match cpe_render::render(endpoint, args.kind.into(), &options) {
        Ok(text) => {
            let _ = std::io::stdout().write_all(text.as_bytes());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(2))
        }
    }
}
