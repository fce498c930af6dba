//! The `nodeLocal` section: the node-local load balancer (`cpe lb --node-local`) that
//! every node may run so that its own components dial `https://localhost:7445` instead of
//! the control-plane endpoint. The rules: `enabled` is `true` or `false`; `listen` and
//! `admin` are loopback addresses (the load balancer serves this machine's own processes
//! and nobody else: a node-local port reachable from the network would be an unaudited
//! second entrance to the API); they differ; the listen port is not the endpoint port
//! (on a control-plane machine the API server holds it on every address).
//!
//! Pure: no host access. It works in every mode: the control plane keeps its endpoint for
//! outside clients (a VIP, an external LB), node-local only changes what the nodes' own
//! components dial. Problems are pushed on the shared [`super::Check`].

use super::*;

/// What a non-loopback address breaks, said once for the file's fields and the flags.
pub const LOOPBACK_RULE: &str =
    "must be a loopback address (127.0.0.0/8 or ::1): the node-local load balancer serves this machine's own components only";

/// The `nodeLocal` section, resolved: `None` when absent or not enabled.
pub(crate) fn check_node_local(
    c: &mut Check,
    f: &input::File,
    mode: Option<Mode>,
    endpoint_port: Option<u16>,
) -> Option<NodeLocal> {
    let n = f.node_local.as_ref()?;
    let enabled = n.enabled.as_ref().is_some_and(|e| e.value);
    let listen = c.socket("nodeLocal.listen", &n.listen, DEFAULT_NODE_LOCAL_LISTEN);
    let admin = c.socket("nodeLocal.admin", &n.admin, DEFAULT_NODE_LOCAL_ADMIN);
    for (field, written, addr) in [
        ("nodeLocal.listen", &n.listen, listen),
        ("nodeLocal.admin", &n.admin, admin),
    ] {
        if let Some(s) = written {
            if s.value.parse::<SocketAddr>().is_ok() && !addr.ip().is_loopback() {
                c.push(
                    Problem::error(field, short(&s.raw), LOOPBACK_RULE)
                        .at(s.pos)
                        .hint(loopback_hint(addr.port())),
                );
            }
        }
    }
    if admin == listen {
        match (&n.admin, &n.listen) {
            (Some(s), _) => c.error("nodeLocal.admin", s, "must differ from nodeLocal.listen"),
            (None, Some(s)) => c.error(
                "nodeLocal.listen",
                s,
                format!("must differ from nodeLocal.admin ({DEFAULT_NODE_LOCAL_ADMIN} by default)"),
            ),
            (None, None) => {}
        }
    }
    if let (Some(s), Some(p)) = (&n.listen, endpoint_port) {
        if listen.port() == p && s.value.parse::<SocketAddr>().is_ok() {
            c.push(
                Problem::warning(
                    "nodeLocal.listen",
                    short(&s.raw),
                    format!("uses the endpoint port {p}: on a control-plane machine the API server already listens there on every address"),
                )
                .at(s.pos)
                .hint("use another port (7445 by default) so that control-plane machines can run it too"),
            );
        }
    }
    if !enabled {
        let written = n.listen.as_ref().or(n.admin.as_ref());
        if let (Some(s), false) = (written, f.is_broken("nodeLocal.enabled")) {
            c.push(
                Problem::warning(
                    "nodeLocal",
                    short(&s.raw),
                    "is ignored: nodeLocal.enabled is not true",
                )
                .at(n.pos)
                .hint("write `enabled: true` to render and run the node-local load balancer"),
            );
        }
        return None;
    }
    if mode == Some(Mode::SingleNode) {
        c.push(
            Problem::warning(
                "nodeLocal.enabled",
                "true",
                "single-node mode has one API server: the node-local load balancer has nothing to balance",
            )
            .at(n.enabled.as_ref().and_then(|e| e.pos)),
        );
    }
    Some(NodeLocal { listen, admin })
}

/// The hint of a non-loopback node-local address.
pub fn loopback_hint(port: u16) -> String {
    format!(
        "listen on 127.0.0.1:{port} (it listens on [::1]:{port} too); a load balancer for other machines is `cpe lb` without --node-local"
    )
}

/// The other family's loopback at the same port: `[::1]` for an IPv4 loopback address,
/// `127.0.0.1` for `::1`. Kubernetes components dial `localhost`, which the host may
/// resolve to either.
pub fn other_loopback(listen: SocketAddr) -> IpAddr {
    match listen.ip() {
        IpAddr::V4(_) => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        IpAddr::V6(_) => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
    }
}

#[cfg(test)]
mod tests {
    use crate::load::check_str;
    use crate::model::DEFAULT_NODE_LOCAL_LISTEN;

    const BASE: &str = "endpoint:\n  host: cp.example.com\ncontrolPlane:\n  replicas: 3\n  machines:\n    - {name: cp1, address: 10.0.0.11}\n    - {name: cp2, address: 10.0.0.12}\n    - {name: cp3, address: 10.0.0.13}\n";

    fn problems(extra: &str) -> Vec<String> {
        check_str(&format!("{BASE}{extra}"))
            .problems
            .iter()
            .map(|p| p.render(Some("f")))
            .collect()
    }

    #[test]
    fn enabled_with_defaults_listens_on_loopback_7445() {
        let c = check_str(&format!("{BASE}nodeLocal:\n  enabled: true\n"));
        assert!(c.problems.is_empty(), "{:?}", c.problems);
        let n = c.endpoint.unwrap().node_local.unwrap();
        assert_eq!(n.listen.to_string(), DEFAULT_NODE_LOCAL_LISTEN);
        assert_eq!(n.admin.to_string(), "127.0.0.1:9632");
    }

    #[test]
    fn absent_or_disabled_is_none() {
        assert!(check_str(BASE).endpoint.unwrap().node_local.is_none());
        let c = check_str(&format!("{BASE}nodeLocal:\n  enabled: false\n"));
        assert!(c.endpoint.unwrap().node_local.is_none());
        assert_eq!(
            problems("nodeLocal:\n  listen: 127.0.0.1:7000\n"),
            vec!["f:9:1: warning: nodeLocal = 127.0.0.1:7000: is ignored: nodeLocal.enabled is not true\n  hint: write `enabled: true` to render and run the node-local load balancer"]
        );
    }

    #[test]
    fn a_non_loopback_listen_or_admin_is_refused_naming_field_value_and_rule() {
        let ps = problems(
            "nodeLocal:\n  enabled: true\n  listen: 0.0.0.0:7445\n  admin: 10.0.0.5:9632\n",
        );
        assert_eq!(ps.len(), 2, "{ps:?}");
        assert!(ps[0].starts_with("f:11:11: error: nodeLocal.listen = 0.0.0.0:7445: must be a loopback address (127.0.0.0/8 or ::1)"), "{}", ps[0]);
        assert!(
            ps[1].starts_with(
                "f:12:10: error: nodeLocal.admin = 10.0.0.5:9632: must be a loopback address"
            ),
            "{}",
            ps[1]
        );
    }

    #[test]
    fn ipv6_loopback_other_loopback_ports_and_types() {
        let c = check_str(&format!("{BASE}nodeLocal:\n  enabled: true\n  listen: \"[::1]:7000\"\n  admin: 127.0.0.2:9000\n"));
        assert!(c.problems.is_empty(), "{:?}", c.problems);
        assert_eq!(
            c.endpoint.unwrap().node_local.unwrap().listen.to_string(),
            "[::1]:7000"
        );
        let ps = problems("nodeLocal:\n  enabled: yes please\n  listen: localhost:7445\n");
        assert!(
            ps[0].contains("nodeLocal.enabled = yes please: must be true or false, not text"),
            "{ps:?}"
        );
        assert!(
            ps[1].contains("nodeLocal.listen = localhost:7445: must be an IP address and port"),
            "{ps:?}"
        );
        let ps = problems("nodeLocal:\n  enabled: true\n  listen: 127.0.0.1:9632\n");
        assert!(ps[0].contains("error: nodeLocal.listen = 127.0.0.1:9632: must differ from nodeLocal.admin (127.0.0.1:9632 by default)"), "{ps:?}");
        let ps = problems("nodeLocal:\n  enabled: true\n  listen: 127.0.0.1:6443\n");
        assert!(
            ps[0].contains(
                "warning: nodeLocal.listen = 127.0.0.1:6443: uses the endpoint port 6443"
            ),
            "{ps:?}"
        );
    }
}
