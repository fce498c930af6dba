//! The node-local preset of `cpe lb` (`--node-local`, the definition's `nodeLocal:`):
//! a load balancer on every node, listening on loopback only (`127.0.0.1` and `[::1]`,
//! one port), that the node's own kubelet, kube-proxy and CNI agents dial as
//! `https://localhost:7445` instead of the control-plane endpoint.
//!
//! A preset over [`LbFlags`], not a second load balancer: what differs from `cpe lb` is
//! only where it listens (loopback, both families, [`DEFAULT_NODE_LOCAL_LISTEN`]), where
//! its admin listener is ([`DEFAULT_NODE_LOCAL_ADMIN`], loopback), what it starts from
//! (the definition's machines, or its endpoint when it lists none: the seed set that
//! discovery replaces), how many connections it takes ([`NODE_LOCAL_MAX_CONNECTIONS`])
//! and how many worker threads run them (one: see `cpe_lb::LbConfig::from_plan`).
//! Health checks, drain, discovery and the cache are `cpe lb`'s own.
//!
//! Pure: no host access. It does not decide which backends are discovered (that is
//! discovery's) nor bind anything.

use crate::model::*;
use crate::plan::{lb_plan_over, LbPlan};
use crate::problem::Problem;
use crate::rules::discovery::DiscoveryFlags;
use crate::rules::node_local::{loopback_hint, other_loopback, LOOPBACK_RULE};
use crate::rules::{lb::Backend, Check};
use crate::LbFlags;

/// Connections at once: a node's own components hold a few dozen (the pods' API clients
/// go through the `kubernetes` Service, not through here). A runaway client on the node
/// cannot take more than this.
pub const NODE_LOCAL_MAX_CONNECTIONS: usize = 1024;

impl LbFlags {
    /// The base plan of the preset: from the definition's `nodeLocal` section, or from
    /// the flags with the preset's defaults.
    pub(crate) fn node_local_base(&self, c: &mut Check, def: Option<&Endpoint>) -> Option<LbPlan> {
        let mut plan = match def {
            Some(e) => from_definition(c, e)?,
            None => {
                let mut f = self.clone();
                f.listen
                    .get_or_insert_with(|| DEFAULT_NODE_LOCAL_LISTEN.to_string());
                let mut plan = f.ad_hoc(c)?;
                plan.admin = Some(DEFAULT_NODE_LOCAL_ADMIN.parse().expect("constant"));
                plan
            }
        };
        plan.max_connections = NODE_LOCAL_MAX_CONNECTIONS;
        Some(plan)
    }

    /// The discovery flags as the preset reads them: with a definition and no
    /// `--discover`, the kubernetes source is implied when a kubeconfig is known
    /// (`--kubeconfig` or `KUBECONFIG`); ad hoc, the flags as typed (static seeds are a
    /// valid node-local set).
    pub(crate) fn discovery_flags(&self, def: Option<&Endpoint>) -> DiscoveryFlags {
        let mut f = self.discovery.clone();
        if self.node_local && def.is_some() && f.discover.is_empty() && self.kubeconfig_known() {
            f.discover = vec!["kubernetes".into()];
        }
        f
    }

    fn kubeconfig_known(&self) -> bool {
        self.discovery.kubeconfig.is_some()
            || self
                .discovery
                .kubeconfig_env
                .as_deref()
                .is_some_and(|v| !v.is_empty())
    }

    /// The preset's rules over the finished plan: listen and admin on loopback (named as
    /// the user wrote them), the other family's loopback added.
    pub(crate) fn node_local_rules(
        &self,
        c: &mut Check,
        plan: &mut LbPlan,
        def: Option<&Endpoint>,
    ) {
        if !plan.listen.ip().is_loopback() {
            let (field, value) = match &self.listen {
                Some(v) => ("--listen", v.clone()),
                None => ("nodeLocal.listen", plan.listen.to_string()),
            };
            c.push(
                Problem::error(field, value, LOOPBACK_RULE).hint(loopback_hint(plan.listen.port())),
            );
        }
        if let Some(a) = plan.admin.filter(|a| !a.ip().is_loopback()) {
            let (field, value) = match &self.admin {
                Some(v) => ("--admin", v.clone()),
                None if def.is_some() => ("nodeLocal.admin", a.to_string()),
                None => ("--admin", a.to_string()),
            };
            c.push(
                Problem::error(field, value, "must be a loopback address with --node-local (or `off`)")
                    .hint(format!("the default is {DEFAULT_NODE_LOCAL_ADMIN}; scrape /metrics from the node itself")),
            );
        }
        // With a definition the preset follows the cluster (see `discovery_flags`).
        if def.is_some() && plan.discovery.is_none() && !self.kubeconfig_known() {
            c.push(
                Problem::error("--kubeconfig", "", "is required with --node-local -f: the node-local load balancer follows the control plane through the kubernetes EndpointSlices")
                    .hint("`cpe render --kind node-local-kubeconfig` writes one (the kubelet's client certificate), or set KUBECONFIG"),
            );
        }
        plan.listen_also = vec![other_loopback(plan.listen)];
        plan.node_local = true;
    }
}

/// From a definition with `nodeLocal.enabled: true`, in any mode.
fn from_definition(c: &mut Check, e: &Endpoint) -> Option<LbPlan> {
    let Some(nl) = &e.node_local else {
        c.push(
            Problem::error("--node-local", "", "the definition has no `nodeLocal` section with `enabled: true`")
                .hint("add `nodeLocal: {enabled: true}` to the definition, or run without -f: cpe lb --node-local --backend HOST:PORT ..."),
        );
        return None;
    };
    let mut lb = LoadBalancer::with_listen(nl.listen);
    lb.admin = nl.admin;
    Some(lb_plan_over(lb, e.health.clone(), seeds(e)))
}

/// What the node-local load balancer starts from: every machine's API server, or, when
/// the definition lists none (Cluster API machines come and go), the control-plane
/// endpoint itself (a VIP or an external load balancer), which discovery then replaces
/// with the API servers behind it.
pub fn seeds(e: &Endpoint) -> Vec<Backend> {
    let mut out: Vec<Backend> = Vec::new();
    for m in &e.machines {
        let b = Backend::from_addr(m.api_server());
        if !out.contains(&b) {
            out.push(b);
        }
    }
    if out.is_empty() {
        let host = match &e.host {
            Host::Ip(ip) => ip.to_string(),
            Host::Dns(n) => n.trim_end_matches('.').to_string(),
        };
        out.push(Backend { host, port: e.port });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::PlanError;

    fn flags(backends: &[&str]) -> LbFlags {
        LbFlags {
            node_local: true,
            backends: backends.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn errors(e: PlanError) -> Vec<String> {
        e.render(None)
    }

    #[test]
    fn ad_hoc_defaults_to_loopback_7445_both_families_one_admin_on_9632() {
        let p = flags(&["10.0.0.11:6443"]).plan_for(None).unwrap();
        assert_eq!(p.listen.to_string(), "127.0.0.1:7445");
        assert_eq!(
            p.listen_also,
            vec!["::1".parse::<std::net::IpAddr>().unwrap()]
        );
        assert_eq!(p.admin.unwrap().to_string(), "127.0.0.1:9632");
        assert!(p.node_local);
        assert_eq!(p.max_connections, NODE_LOCAL_MAX_CONNECTIONS);
        let mut f = flags(&["10.0.0.11:6443"]);
        f.listen = Some("[::1]:7000".into());
        let p = f.plan_for(None).unwrap();
        assert_eq!(
            p.listen_also,
            vec!["127.0.0.1".parse::<std::net::IpAddr>().unwrap()]
        );
    }

    #[test]
    fn a_non_loopback_listen_or_admin_is_refused_naming_the_flag() {
        let mut f = flags(&["10.0.0.11:6443"]);
        f.listen = Some("0.0.0.0:7445".into());
        f.admin = Some("10.0.0.5:9632".into());
        let e = errors(f.plan_for(None).unwrap_err());
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e[0].starts_with(
                "error: --listen = 0.0.0.0:7445: must be a loopback address (127.0.0.0/8 or ::1)"
            ),
            "{e:?}"
        );
        assert!(
            e[1].starts_with(
                "error: --admin = 10.0.0.5:9632: must be a loopback address with --node-local"
            ),
            "{e:?}"
        );
        let e = errors(flags(&[]).plan_for(None).unwrap_err());
        assert!(
            e[0].starts_with("error: --backend: is required without -f"),
            "{e:?}"
        );
    }

    #[test]
    fn from_a_definition_discovery_of_the_kubernetes_source_is_implied() {
        let text = "endpoint:\n  host: cp.example.com\ncontrolPlane:\n  replicas: 3\n  machines:\n    - {name: cp1, address: 10.0.0.11}\n    - {name: cp2, address: 10.0.0.12}\n    - {name: cp3, address: 10.0.0.13}\nnodeLocal:\n  enabled: true\n";
        let e = crate::load_str(text).unwrap().endpoint;
        let err = errors(flags(&[]).plan_for(Some(&e)).unwrap_err());
        assert!(
            err[0].starts_with("error: --kubeconfig: is required with --node-local -f"),
            "{err:?}"
        );
        let mut f = flags(&[]);
        f.discovery.kubeconfig = Some("/etc/cpe/node-local.kubeconfig".into());
        let d = f.plan_for(Some(&e)).unwrap().discovery.unwrap();
        assert_eq!(d.sources, [crate::rules::discovery::Source::Kubernetes]);
        // Ad hoc, the flags decide: static seeds are a node-local set too.
        assert!(flags(&["10.0.0.11:6443"])
            .plan_for(None)
            .unwrap()
            .discovery
            .is_none());
    }

    #[test]
    fn from_a_definition_seeds_are_the_machines_or_else_the_endpoint() {
        let text = "endpoint:\n  host: cp.example.com\ncontrolPlane:\n  replicas: 3\n  machines:\n    - {name: cp1, address: 10.0.0.11}\n    - {name: cp2, address: 10.0.0.12}\n    - {name: cp3, address: 10.0.0.13}\nnodeLocal:\n  enabled: true\n  listen: 127.0.0.1:7000\n";
        let e = crate::load_str(text).unwrap().endpoint;
        let mut f = flags(&[]);
        f.discovery.kubeconfig_env = Some("/etc/cpe/node-local.kubeconfig".into());
        let p = f.plan_for(Some(&e)).unwrap();
        assert_eq!(p.listen.to_string(), "127.0.0.1:7000");
        let names: Vec<String> = p.backends.iter().map(|b| b.to_string()).collect();
        assert_eq!(
            names,
            ["10.0.0.11:6443", "10.0.0.12:6443", "10.0.0.13:6443"]
        );
        let mut e2 = e.clone();
        e2.machines.clear();
        assert_eq!(seeds(&e2)[0].to_string(), "cp.example.com:6443");
        let mut e3 = e;
        e3.node_local = None;
        let err = errors(flags(&[]).plan_for(Some(&e3)).unwrap_err());
        assert!(
            err[0].contains("--node-local: the definition has no `nodeLocal` section"),
            "{err:?}"
        );
    }
}
