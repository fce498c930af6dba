//! The decisions: observed facts in, a [`Check`] out (pass / warn / fail, the reason and
//! the fix). Pure functions; the unit tests below walk every branch. The probes that gather
//! the facts live in [`crate::probe`] and never decide anything; facts that need a rule
//! from an I/O crate (the VIP's subnet, by cpe-net's rule) arrive already worked out, so
//! nothing here links one.

use crate::facts::*;
use crate::report::Check;
use cpe_config::{Host, Machine, Unauthorized, VirtualIp};
use std::net::{IpAddr, SocketAddr};

/// A control-plane port and who normally owns it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortSpec {
    pub port: u16,
    /// `API server / endpoint`, `etcd client`, ...
    pub role: &'static str,
    /// The process that owns it on a working control-plane machine (`kube-apiserver`).
    pub owner: &'static str,
    pub etcd: bool,
}

/// The ports of a kubeadm control-plane machine other than the API server's (which is
/// the endpoint port, from the definition).
pub const OTHER_PORTS: [PortSpec; 5] = [
    PortSpec {
        port: 2379,
        role: "etcd client",
        owner: "etcd",
        etcd: true,
    },
    PortSpec {
        port: 2380,
        role: "etcd peer",
        owner: "etcd",
        etcd: true,
    },
    PortSpec {
        port: 10250,
        role: "kubelet",
        owner: "kubelet",
        etcd: false,
    },
    PortSpec {
        port: 10257,
        role: "kube-controller-manager",
        owner: "kube-controller-manager",
        etcd: false,
    },
    PortSpec {
        port: 10259,
        role: "kube-scheduler",
        owner: "kube-scheduler",
        etcd: false,
    },
];

/// The API server port of this machine, which the source document's known limitation
/// makes the endpoint port too.
pub fn api_server_port(port: u16) -> PortSpec {
    PortSpec {
        port,
        role: "API server / endpoint",
        owner: "kube-apiserver",
        etcd: false,
    }
}

/// The port of the load-balancing VIP's load balancer (`virtualIP.lbPort`, default 6444):
/// `cpe vip --load-balance` listens on it on every address of every control-plane machine.
pub fn vip_lb_port(port: u16) -> PortSpec {
    PortSpec {
        port,
        role: "the VIP's load balancer, virtualIP.lbPort",
        owner: "cpe",
        etcd: false,
    }
}

fn holders_text(holders: &[Holder]) -> String {
    holders
        .iter()
        .map(|h| h.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Can a listener bind `spec.port` on all addresses?
pub fn port(spec: &PortSpec, bind: &Bind) -> Check {
    let id = format!("port.{}", spec.port);
    let title = format!("port {} ({}) free", spec.port, spec.role);
    match bind {
        Bind::Free => Check::pass(id, title, "a listener can bind it on all addresses"),
        Bind::InUse { holders } => {
            let reason = if holders.is_empty() {
                "in use (the system does not say by which process; try `ss -ltnp`)".to_string()
            } else {
                format!("in use: held by {}", holders_text(holders))
            };
            let fix = if spec.owner == "cpe" {
                let by_cpe = holders.iter().any(|h| h.name == "cpe");
                format!(
                    "{}the load balancer of a load-balancing VIP listens on port {p} on every \
                     address of every control-plane machine: stop what holds it, or set \
                     virtualIP.lbPort (or --lb-port) to a free port",
                    if by_cpe {
                        "a cpe process holds it (a `cpe vip --load-balance` of this cluster \
                         already running, or a `cpe lb` on this port?): "
                    } else {
                        ""
                    },
                    p = spec.port
                )
            } else if holders.iter().any(|h| h.name.starts_with(spec.owner)) {
                format!(
                    "{} already runs here: this machine is already part of a cluster; \
                     `kubeadm reset` it or pick another machine{}",
                    spec.owner,
                    if spec.etcd {
                        " (if this etcd is the cluster's external etcd, use --external-etcd)"
                    } else {
                        ""
                    }
                )
            } else if holders.iter().any(|h| h.name == "cpe") {
                format!(
                    "a cpe process listens on port {}: run `cpe lb` on a host that is not a \
                     control-plane machine, or on another port",
                    spec.port
                )
            } else if spec.owner == "kube-apiserver" {
                format!(
                    "stop what holds port {p}, or choose another endpoint port: the endpoint \
                     port is also the API server port on every control-plane machine",
                    p = spec.port
                )
            } else if spec.etcd {
                format!(
                    "stop what holds port {}, or use --external-etcd if etcd runs elsewhere",
                    spec.port
                )
            } else {
                format!("stop what holds port {}", spec.port)
            };
            Check::fail(id, title, reason, fix)
        }
        Bind::Denied => Check::fail(
            id,
            title,
            "permission denied binding it",
            "run preflight as root (the API server runs as root)",
        ),
        Bind::Error(e) => Check::fail(
            id,
            title,
            format!("cannot bind it: {e}"),
            "see the error; the API server will meet the same",
        ),
    }
}

/// Is the `--node` machine's address one of this host's addresses? (Catches a wrong
/// `--node`, or a definition with the wrong address.)
pub fn node_address(m: &Machine, ifaces: &Interfaces) -> Check {
    let id = "node.address";
    let title = format!("{} is this machine", m.address);
    match ifaces.with_addr(m.address) {
        Some(i) => Check::pass(id, title, format!("{} carries {}", i.name, m.address)),
        None => Check::fail(
            id,
            title,
            format!("no interface of this machine has {}", m.address),
            format!(
                "run this on {} itself, or correct its address in the definition",
                m.name
            ),
        ),
    }
}

/// The VIP interface: exists, is up, has an address in the VIP's subnet (`subnet`, the
/// fact gathered with the interfaces). A missing interface gives one failure (the other
/// two cannot be told).
pub fn vip_interface(vip: &VirtualIp, ifaces: &Interfaces, subnet: VipSubnet) -> Vec<Check> {
    let name = &vip.interface;
    let Some(i) = ifaces.get(name) else {
        let known: Vec<&str> = ifaces.0.iter().map(|i| i.name.as_str()).collect();
        return vec![Check::fail(
            "vip.interface",
            format!("interface {name} exists"),
            format!(
                "no interface {name} here (this machine has {})",
                known.join(", ")
            ),
            "set virtualIP.interface to the interface that carries the machines' addresses",
        )];
    };
    let mut out = vec![Check::pass(
        "vip.interface",
        format!("interface {name} exists"),
        "found",
    )];
    let up_title = format!("interface {name} up");
    out.push(match (i.admin_up, i.oper) {
        (false, _) => Check::fail(
            "vip.interface.up",
            up_title,
            "administratively down",
            format!("ip link set {name} up"),
        ),
        (true, OperState::Up) => Check::pass("vip.interface.up", up_title, "up, carrier present"),
        (true, OperState::Unknown) => Check::pass(
            "vip.interface.up",
            up_title,
            "up (this kind of interface reports no carrier state)",
        ),
        (true, OperState::Down) => Check::fail(
            "vip.interface.up",
            up_title,
            "up but no carrier (cable, switch port or peer down)",
            format!("check the link of {name}"),
        ),
        (true, OperState::Other) => Check::warn(
            "vip.interface.up",
            up_title,
            "up, but the link state is neither up nor down (dormant or lower layer down)",
            format!("check `ip link show {name}`"),
        ),
    });
    let subnet_title = format!("{name} in the subnet of {}", vip.address);
    let same_family: Vec<String> = i
        .addrs
        .iter()
        .filter(|(a, _)| a.is_ipv4() == vip.address.is_ipv4())
        .filter(|(a, _)| *a != vip.address)
        .map(|(a, l)| format!("{a}/{l}"))
        .collect();
    out.push(match subnet {
        VipSubnet::CoveredBy(a, l) => Check::pass(
            "vip.interface.subnet",
            subnet_title,
            format!("{a}/{l} contains {}", vip.address),
        ),
        VipSubnet::NotCovered => Check::fail(
            "vip.interface.subnet",
            subnet_title,
            if same_family.is_empty() {
                format!("{name} has no address of the VIP's family")
            } else {
                format!(
                    "{name} has {}; none contains {}",
                    same_family.join(", "),
                    vip.address
                )
            },
            "the VIP must be a free address in the control-plane machines' layer-2 subnet: \
                 pick one there, or set virtualIP.interface to the interface on that subnet",
        ),
    });
    out
}

/// Is anyone already answering for the VIP on the link? `held_here` says the VIP is
/// already an address of this machine.
pub fn vip_dad(vip: &VirtualIp, held_here: bool, dad: &Dad) -> Check {
    let (proto, what) = if vip.address.is_ipv4() {
        ("ARP", "address")
    } else {
        ("NDP", "address")
    };
    let id = "vip.dad";
    let title = format!("{} unused on {} ({proto})", vip.address, vip.interface);
    if held_here {
        return Check::warn(
            id,
            title,
            format!("this machine already has {} on an interface", vip.address),
            "a cpe vip already running here holds it, or it was left behind: \
             `ip addr del` it unless cpe vip runs",
        );
    }
    match dad {
        Dad::Silent => Check::pass(id, title, format!("no answer to {proto} probes")),
        Dad::Answered { mac } => Check::fail(
            id,
            title,
            format!(
                "{mac} answers {proto} for {}: the {what} is in use",
                vip.address
            ),
            "pick a free address for the VIP (or stop what holds it)",
        ),
        Dad::NotChecked(why) => Check::warn(
            id,
            title,
            format!("not checked: {why}"),
            if vip.address.is_ipv4() {
                format!(
                    "run preflight as root (the probe needs CAP_NET_RAW), or check by hand: \
                     arping -D -I {} {}",
                    vip.interface, vip.address
                )
            } else {
                format!(
                    "run preflight as root (the probe needs CAP_NET_RAW), or check by hand: \
                     ndisc6 {} {}",
                    vip.address, vip.interface
                )
            },
        ),
    }
}

/// Would `cpe vip` run here have the capabilities it needs?
pub fn capabilities(caps: &Caps) -> Check {
    let id = "vip.capabilities";
    let title = "CAP_NET_ADMIN and CAP_NET_RAW";
    let names = [
        (CAP_NET_ADMIN, "CAP_NET_ADMIN"),
        (CAP_NET_RAW, "CAP_NET_RAW"),
    ];
    let unbound: Vec<&str> = names
        .iter()
        .filter(|(c, _)| !caps.in_bounding(*c))
        .map(|(_, n)| *n)
        .collect();
    let missing: Vec<&str> = names
        .iter()
        .filter(|(c, _)| !caps.has_effective(*c))
        .map(|(_, n)| *n)
        .collect();
    if !unbound.is_empty() {
        Check::fail(
            id,
            title,
            format!(
                "{} cannot be had here at all (not in the bounding set: a container without them?)",
                unbound.join(" and ")
            ),
            "run cpe vip on the host, or give the container NET_ADMIN and NET_RAW",
        )
    } else if !missing.is_empty() {
        Check::warn(
            id,
            title,
            format!("this process lacks {}", missing.join(" and ")),
            "run cpe vip as root, or with AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW \
             (the rendered systemd unit does)",
        )
    } else {
        Check::pass(
            id,
            title,
            "present (adding the VIP needs NET_ADMIN, announcing it NET_RAW)",
        )
    }
}

/// Does this etcd endpoint answer a status request with the given certificates?
pub fn etcd(url: &str, status: &EtcdStatus) -> Check {
    let id = "etcd.status";
    let title = format!("etcd {url} answers");
    match status {
        EtcdStatus::Ok { version, leader } => match leader.as_deref() {
            Some(l) if l != "0" && !l.is_empty() => {
                Check::pass(id, title, format!("etcd {version}, leader {l}"))
            }
            _ => Check::fail(
                id,
                title,
                format!("etcd {version} answers but has no leader (quorum lost?)"),
                "bring enough etcd members back for a quorum",
            ),
        },
        EtcdStatus::Connect(c) => {
            let reason = match c {
                Connect::Refused => "connection refused: nothing listens there".to_string(),
                Connect::Timeout => "no answer within the timeout".to_string(),
                Connect::Unreachable(e) | Connect::Error(e) => e.clone(),
                Connect::Accepted => "connected, then nothing".to_string(),
            };
            Check::fail(
                id,
                title,
                reason,
                "start etcd, or correct etcd.endpoints in the definition",
            )
        }
        EtcdStatus::Tls(e) => Check::fail(
            id,
            title,
            format!("TLS handshake failed: {e}"),
            "give etcd.caFile, etcd.certFile and etcd.keyFile that etcd trusts \
             (kubeadm: /etc/kubernetes/pki/etcd/ca.crt, healthcheck-client.crt/.key); \
             an http:// URL for a plain-HTTP etcd",
        ),
        EtcdStatus::Http { status, body } => Check::fail(
            id,
            title,
            format!("HTTP {status}: {}", short(body)),
            "is this an etcd client URL (port 2379)? etcd 3.4 or later is needed",
        ),
        EtcdStatus::Credentials(e) => Check::fail(
            id,
            title,
            e.clone(),
            "fix etcd.caFile / certFile / keyFile in the definition",
        ),
    }
}

fn short(s: &str) -> String {
    let s = s.trim();
    if s.chars().count() > 120 {
        format!("{}…", s.chars().take(120).collect::<String>())
    } else {
        s.to_string()
    }
}

/// From the admin machine: does the machine answer at all? One TCP connect to its API
/// server port: a reset proves the machine is up as well as a listener does.
pub fn reachable(m: &Machine, c: &Connect) -> Check {
    let id = "machine.reachable";
    let title = format!("{} reachable", m.address);
    match c {
        Connect::Accepted | Connect::Refused => {
            Check::pass(id, title, format!("answered on port {}", m.api_server_port))
        }
        Connect::Timeout => Check::fail(
            id,
            title,
            format!("no answer on port {} within the timeout", m.api_server_port),
            format!(
                "check that {} is up and its address is right; a firewall must let port {} in \
                 (kubelets, the load balancer and kubectl connect to it)",
                m.name, m.api_server_port
            ),
        ),
        Connect::Unreachable(e) | Connect::Error(e) => Check::fail(
            id,
            title,
            e.clone(),
            format!(
                "check that {} is up, its address is right, and a route leads to it",
                m.name
            ),
        ),
    }
}

/// From the admin machine: nothing answers yet on the machine's API server port.
pub fn api_port_unused(m: &Machine, c: &Connect) -> Check {
    let id = format!("machine.port.{}", m.api_server_port);
    let title = format!("nothing answers on {}", m.api_server());
    match c {
        Connect::Refused => Check::pass(id, title, "connection refused: the port is free"),
        Connect::Accepted => Check::fail(
            id,
            title,
            "a listener already accepts connections there",
            format!(
                "run `cpe preflight --local --node {}` on {} to name the process; the \
                 endpoint port is also the API server port on every control-plane machine",
                m.name, m.name
            ),
        ),
        Connect::Timeout | Connect::Unreachable(_) | Connect::Error(_) => Check::warn(
            id,
            title,
            "unknown: the machine did not answer",
            "see the reachability check",
        ),
    }
}

/// External-LB mode: the endpoint host resolves.
pub fn endpoint_resolves(host: &Host, r: &Result<Vec<IpAddr>, String>) -> Check {
    let id = "endpoint.resolves";
    let title = format!("{host} resolves");
    match (host, r) {
        (Host::Ip(ip), _) => Check::pass(id, title, format!("an IP address: {ip}")),
        (_, Ok(addrs)) if !addrs.is_empty() => Check::pass(
            id,
            title,
            format!(
                "to {}",
                addrs
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        (_, Ok(_)) => Check::fail(
            id,
            title,
            "resolves to no address",
            "add an A/AAAA record for the load balancer",
        ),
        (_, Err(e)) => Check::fail(
            id,
            title,
            format!("does not resolve: {e}"),
            "add a DNS record (or /etc/hosts entry on every machine) for the load balancer",
        ),
    }
}

/// External-LB mode: the endpoint port at the LB is free, or a cpe load balancer already
/// listens there (`is_cpe`: its admin listener answered as one).
pub fn lb_port(addr: SocketAddr, c: &Connect, is_cpe: bool) -> Check {
    let id = "endpoint.lb";
    let title = format!("{addr} free or a cpe load balancer");
    match c {
        Connect::Refused => Check::pass(
            id,
            title,
            "free (start `cpe lb` there before kubeadm init: init talks to the endpoint)",
        ),
        Connect::Accepted if is_cpe => {
            Check::pass(id, title, "a cpe load balancer already listens")
        }
        Connect::Accepted => Check::warn(
            id,
            title,
            "something that is not cpe lb (or whose admin listener is not reachable) listens",
            "if it is your load balancer, make it forward to every control-plane machine's \
             API server port and health-check /readyz; otherwise free the port",
        ),
        Connect::Timeout => Check::warn(
            id,
            title,
            "no answer within the timeout (host down, or a firewall drops the port)",
            "bring the load-balancer host up and let the endpoint port in",
        ),
        Connect::Unreachable(e) | Connect::Error(e) => Check::warn(
            id,
            title,
            e.clone(),
            "bring the load-balancer host up and let the endpoint port in",
        ),
    }
}

/// VIP mode, from the admin machine: nothing answers on the VIP yet. A refused connect
/// is a host answering for the address, so it fails like an accepted one.
pub fn vip_unused(addr: SocketAddr, c: &Connect) -> Check {
    let id = "vip.unused";
    let title = format!("nothing answers on {addr}");
    match c {
        Connect::Timeout | Connect::Unreachable(_) => {
            Check::pass(id, title, "no host answered for the VIP")
        }
        Connect::Accepted => Check::fail(
            id,
            title,
            "a listener accepts connections on the VIP",
            "the VIP is in use: pick a free address (or stop cpe vip / keepalived if one runs)",
        ),
        Connect::Refused => Check::fail(
            id,
            title,
            "a host answered (connection refused): the address is in use",
            "pick a free address for the VIP",
        ),
        Connect::Error(e) => Check::warn(
            id,
            title,
            format!("could not tell: {e}"),
            "run `cpe preflight --local` on a control-plane machine (it probes ARP/NDP)",
        ),
    }
}

/// `cpe check`: does `what` answer the health path with 200?
pub fn readyz(id: &str, title: String, path: &str, r: &Http, unauthorized: Unauthorized) -> Check {
    match r {
        Http::Status { code: 200, .. } => Check::pass(id, title, format!("{path}: 200")),
        Http::Status {
            code: code @ (401 | 403),
            ..
        } => match unauthorized {
            Unauthorized::Alive => Check::warn(
                id,
                title,
                format!("{path}: {code}: the API server answers but readiness is not known"),
                "give --cert/--key (or allow anonymous /readyz) to see readiness",
            ),
            Unauthorized::Down => Check::fail(
                id,
                title,
                format!("{path}: {code}"),
                "give --cert/--key that the API server accepts",
            ),
        },
        Http::Status { code, body } => Check::fail(
            id,
            title,
            if body.trim().is_empty() {
                format!("{path}: {code}")
            } else {
                format!("{path}: {code}: {}", short(body))
            },
            "the API server is not ready: see its log (`kubectl get --raw '/readyz?verbose'`)",
        ),
        Http::Connect(Connect::Refused) => Check::fail(
            id,
            title,
            "connection refused",
            "nothing listens: is the API server (or the load balancer / VIP agent) running?",
        ),
        Http::Connect(Connect::Timeout) => Check::fail(
            id,
            title,
            "no answer within the timeout",
            "host down, VIP not held, or a firewall drops the port",
        ),
        Http::Connect(c) => Check::fail(
            id,
            title,
            format!("{c:?}"),
            "check the address and the route to it",
        ),
        Http::Tls(e) => Check::fail(
            id,
            title,
            format!("TLS: {e}"),
            "give --ca with the cluster CA (/etc/kubernetes/pki/ca.crt); a load balancer must \
             pass TLS through, never terminate it",
        ),
        Http::Other(e) => Check::fail(id, title, e.clone(), "see the error"),
    }
}

/// `cpe check`: the certificate presented at `addr` names the endpoint host.
pub fn cert_names(id: &str, addr: SocketAddr, host: &Host, cert: &Result<PeerCert, Http>) -> Check {
    let title = format!("certificate at {addr} names {host}");
    let host_bare = match host {
        Host::Ip(ip) => ip.to_string(),
        Host::Dns(n) => n.trim_end_matches('.').to_string(),
    };
    match cert {
        Err(e) => Check::fail(
            id,
            title,
            format!(
                "no certificate to look at: {}",
                match e {
                    Http::Tls(t) => format!("TLS: {t}"),
                    Http::Connect(c) => format!("{c:?}"),
                    Http::Other(o) => o.clone(),
                    Http::Status { code, .. } => format!("HTTP {code}"),
                }
            ),
            "the API server must answer TLS on its port",
        ),
        Ok(c) => {
            if let Some(Err(e)) = &c.chain {
                return Check::fail(
                    id,
                    title,
                    format!("not signed by the given CA: {e}"),
                    "give the cluster CA with --ca (kubeadm: /etc/kubernetes/pki/ca.crt)",
                );
            }
            let names = if c.dns_names.is_empty() {
                "no DNS names".to_string()
            } else {
                format!("DNS names {}", c.dns_names.join(", "))
            };
            let signed = if c.chain.is_some() {
                ", signed by the given CA"
            } else {
                ""
            };
            if c.names_endpoint {
                Check::pass(
                    id,
                    title,
                    format!("{host_bare} is among its names ({names}){signed}"),
                )
            } else {
                Check::fail(
                    id,
                    title,
                    format!(
                        "{host_bare} is not among its names ({names}): clients connecting \
                             through the endpoint will refuse it"
                    ),
                    format!(
                        "add {host_bare} to the API server certificate's names (kubeadm: \
                         ClusterConfiguration apiServer.certSANs, then regenerate with \
                         `kubeadm init phase certs apiserver`) on every control-plane machine"
                    ),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Status;
    use std::time::Duration;

    fn machine() -> Machine {
        Machine {
            name: "cp1".into(),
            address: "10.0.0.11".parse().unwrap(),
            prefix_len: None,
            api_server_port: 6443,
        }
    }

    fn vip(addr: &str) -> VirtualIp {
        VirtualIp {
            address: addr.parse().unwrap(),
            prefix_len: 32,
            interface: "eth0".into(),
            lease_ttl: Duration::from_secs(2),
            election: "/cpe/vip/k".into(),
            admin: "127.0.0.1:9631".parse().unwrap(),
            admin_token_file: None,
            metrics: None,
            load_balance: None,
        }
    }

    fn iface(name: &str, up: bool, oper: OperState, addrs: &[&str]) -> Interface {
        Interface {
            name: name.into(),
            admin_up: up,
            oper,
            addrs: addrs
                .iter()
                .map(|a| {
                    let (ip, len) = a.split_once('/').unwrap();
                    (ip.parse().unwrap(), len.parse().unwrap())
                })
                .collect(),
        }
    }

    fn holder(pid: u32, name: &str) -> Holder {
        Holder {
            pid,
            name: name.into(),
        }
    }

    #[test]
    fn free_port_passes() {
        let c = port(&api_server_port(6443), &Bind::Free);
        assert_eq!(c.status, Status::Pass);
        assert_eq!(c.id, "port.6443");
    }

    #[test]
    fn port_in_use_names_the_holder_and_the_fix_fits_the_holder() {
        let api = api_server_port(6443);
        let c = port(
            &api,
            &Bind::InUse {
                holders: vec![holder(42, "nginx")],
            },
        );
        assert_eq!(c.status, Status::Fail);
        assert!(c.reason.contains("held by pid 42 (nginx)"), "{}", c.reason);
        assert!(c.fix.contains("also the API server port"), "{}", c.fix);

        let c = port(
            &api,
            &Bind::InUse {
                holders: vec![holder(7, "kube-apiserver")],
            },
        );
        assert!(c.fix.contains("kubeadm reset"), "{}", c.fix);

        let c = port(
            &OTHER_PORTS[1],
            &Bind::InUse {
                holders: vec![holder(8, "etcd")],
            },
        );
        assert!(
            c.fix.contains("kubeadm reset") && c.fix.contains("--external-etcd"),
            "{}",
            c.fix
        );

        let c = port(
            &api,
            &Bind::InUse {
                holders: vec![holder(7, "cpe")],
            },
        );
        assert!(c.fix.contains("cpe lb"), "{}", c.fix);

        let c = port(
            &OTHER_PORTS[0],
            &Bind::InUse {
                holders: vec![holder(9, "python3")],
            },
        );
        assert!(c.fix.contains("--external-etcd"), "{}", c.fix);

        let c = port(&OTHER_PORTS[2], &Bind::InUse { holders: vec![] });
        assert!(c.reason.contains("does not say"), "{}", c.reason);
        assert_eq!(c.fix, "stop what holds port 10250");
    }

    #[test]
    fn the_vip_load_balancer_port_names_the_field_and_the_holder() {
        let spec = vip_lb_port(6444);
        let c = port(&spec, &Bind::Free);
        assert_eq!(c.status, Status::Pass);
        assert_eq!(c.id, "port.6444");
        assert!(c.title.contains("virtualIP.lbPort"), "{}", c.title);
        let c = port(
            &spec,
            &Bind::InUse {
                holders: vec![holder(4242, "haproxy")],
            },
        );
        assert_eq!(c.status, Status::Fail);
        assert!(c.reason.contains("pid 4242 (haproxy)"), "{}", c.reason);
        let fix = c.fix.clone();
        assert!(
            fix.contains("virtualIP.lbPort") && fix.contains("--lb-port"),
            "{fix}"
        );
        assert!(!fix.contains("kubeadm reset"), "{fix}");
        let c = port(
            &spec,
            &Bind::InUse {
                holders: vec![holder(7, "cpe")],
            },
        );
        assert!(c.fix.contains("cpe vip --load-balance"), "{}", c.fix);
        let c = port(&spec, &Bind::InUse { holders: vec![] });
        assert!(c.reason.contains("ss -ltnp"), "{}", c.reason);
    }

    #[test]
    fn denied_and_other_bind_errors_fail() {
        assert_eq!(
            port(&api_server_port(443), &Bind::Denied).status,
            Status::Fail
        );
        let c = port(&api_server_port(6443), &Bind::Error("boom".into()));
        assert_eq!(c.status, Status::Fail);
        assert!(c.reason.contains("boom"));
    }

    #[test]
    fn node_address_must_be_local() {
        let here = Interfaces(vec![iface("eth0", true, OperState::Up, &["10.0.0.11/24"])]);
        assert_eq!(node_address(&machine(), &here).status, Status::Pass);
        let elsewhere = Interfaces(vec![iface("eth0", true, OperState::Up, &["10.0.0.12/24"])]);
        let c = node_address(&machine(), &elsewhere);
        assert_eq!(c.status, Status::Fail);
        assert!(c.fix.contains("cp1"));
    }

    #[test]
    fn missing_interface_is_one_failure_naming_the_ones_present() {
        let ifs = Interfaces(vec![iface(
            "lo",
            true,
            OperState::Unknown,
            &["127.0.0.1/8"],
        )]);
        let cs = vip_interface(&vip("10.0.0.100"), &ifs, VipSubnet::NotCovered);
        assert_eq!(cs.len(), 1);
        assert_eq!(cs[0].status, Status::Fail);
        assert!(cs[0].reason.contains("lo"), "{}", cs[0].reason);
    }

    #[test]
    fn interface_up_states() {
        let v = vip("10.0.0.100");
        let st = |up, oper| {
            let ifs = Interfaces(vec![iface("eth0", up, oper, &["10.0.0.11/24"])]);
            let subnet = VipSubnet::CoveredBy("10.0.0.11".parse().unwrap(), 24);
            vip_interface(&v, &ifs, subnet)[1].status
        };
        assert_eq!(st(true, OperState::Up), Status::Pass);
        assert_eq!(st(true, OperState::Unknown), Status::Pass);
        assert_eq!(st(true, OperState::Down), Status::Fail);
        assert_eq!(st(true, OperState::Other), Status::Warn);
        assert_eq!(st(false, OperState::Up), Status::Fail);
        assert_eq!(st(false, OperState::Down), Status::Fail);
    }

    #[test]
    fn vip_subnet_check_names_the_covering_address_or_what_the_interface_has() {
        // The rule itself (which address covers the VIP) is applied where the facts are
        // gathered: `probe::iface::vip_subnet` and its test.
        let sub = |v: &str, addrs: &[&str], subnet: VipSubnet| {
            let ifs = Interfaces(vec![iface("eth0", true, OperState::Up, addrs)]);
            vip_interface(&vip(v), &ifs, subnet)[2].clone()
        };
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let c = sub(
            "10.0.1.100",
            &["10.0.0.11/23"],
            VipSubnet::CoveredBy(ip("10.0.0.11"), 23),
        );
        assert_eq!(c.status, Status::Pass);
        assert!(
            c.reason.contains("10.0.0.11/23 contains 10.0.1.100"),
            "{}",
            c.reason
        );
        let c = sub("10.0.1.100", &["10.0.0.11/24"], VipSubnet::NotCovered);
        assert_eq!(c.status, Status::Fail);
        assert!(c.reason.contains("10.0.0.11/24"), "{}", c.reason);
        assert!(
            c.title.contains("eth0 in the subnet of 10.0.1.100"),
            "{}",
            c.title
        );
        let c = sub(
            "fd00::100",
            &["fd00::11/64"],
            VipSubnet::CoveredBy(ip("fd00::11"), 64),
        );
        assert_eq!(c.status, Status::Pass);
        let c = sub("fd00::100", &["10.0.0.11/24"], VipSubnet::NotCovered);
        assert_eq!(c.status, Status::Fail);
        assert!(
            c.reason.contains("no address of the VIP's family"),
            "{}",
            c.reason
        );
        // The VIP itself (held here as /32) is not listed as what the interface has.
        let c = sub("10.0.0.100", &["10.0.0.100/32"], VipSubnet::NotCovered);
        assert_eq!(c.status, Status::Fail);
        assert!(
            c.reason.contains("no address of the VIP's family"),
            "{}",
            c.reason
        );
    }

    #[test]
    fn dad_outcomes() {
        let v = vip("10.0.0.100");
        assert_eq!(vip_dad(&v, false, &Dad::Silent).status, Status::Pass);
        let c = vip_dad(
            &v,
            false,
            &Dad::Answered {
                mac: "02:00:00:00:00:01".into(),
            },
        );
        assert_eq!(c.status, Status::Fail);
        assert!(c.reason.contains("02:00:00:00:00:01"));
        assert_eq!(
            vip_dad(&v, false, &Dad::NotChecked("x".into())).status,
            Status::Warn
        );
        // Held here wins over whatever the probe said (the kernel answers for itself).
        assert_eq!(vip_dad(&v, true, &Dad::Silent).status, Status::Warn);
        assert!(vip_dad(&vip("fd00::1"), false, &Dad::Silent)
            .title
            .contains("NDP"));
    }

    #[test]
    fn capabilities_cases() {
        let both = (1u64 << CAP_NET_ADMIN) | (1 << CAP_NET_RAW);
        let c = |eff, bnd| {
            capabilities(&Caps {
                effective: eff,
                bounding: bnd,
            })
            .status
        };
        assert_eq!(c(both, both), Status::Pass);
        assert_eq!(c(0, both), Status::Warn);
        assert_eq!(c(1 << CAP_NET_ADMIN, both), Status::Warn);
        assert_eq!(c(0, 1 << CAP_NET_ADMIN), Status::Fail);
        let r = capabilities(&Caps {
            effective: 0,
            bounding: 1 << CAP_NET_ADMIN,
        });
        assert!(r.reason.contains("CAP_NET_RAW") && !r.reason.contains("CAP_NET_ADMIN"));
    }

    #[test]
    fn etcd_outcomes() {
        let ok = |leader: Option<&str>| EtcdStatus::Ok {
            version: "3.4.23".into(),
            leader: leader.map(String::from),
        };
        assert_eq!(
            etcd("u", &ok(Some("8e9e05c52164694d"))).status,
            Status::Pass
        );
        assert_eq!(etcd("u", &ok(Some("0"))).status, Status::Fail);
        assert_eq!(etcd("u", &ok(None)).status, Status::Fail);
        let c = etcd("u", &EtcdStatus::Connect(Connect::Refused));
        assert!(c.reason.contains("refused"));
        let c = etcd("u", &EtcdStatus::Tls("unknown issuer".into()));
        assert_eq!(c.status, Status::Fail);
        assert!(c.fix.contains("etcd.caFile"));
        assert_eq!(
            etcd(
                "u",
                &EtcdStatus::Http {
                    status: 404,
                    body: "nope".into()
                }
            )
            .status,
            Status::Fail
        );
    }

    #[test]
    fn remote_machine_checks() {
        let m = machine();
        assert_eq!(reachable(&m, &Connect::Refused).status, Status::Pass);
        assert_eq!(reachable(&m, &Connect::Accepted).status, Status::Pass);
        assert_eq!(reachable(&m, &Connect::Timeout).status, Status::Fail);
        assert_eq!(
            reachable(&m, &Connect::Unreachable("no route".into())).status,
            Status::Fail
        );
        assert_eq!(api_port_unused(&m, &Connect::Refused).status, Status::Pass);
        let c = api_port_unused(&m, &Connect::Accepted);
        assert_eq!(c.status, Status::Fail);
        assert!(c.fix.contains("--local --node cp1"));
        assert_eq!(api_port_unused(&m, &Connect::Timeout).status, Status::Warn);
    }

    #[test]
    fn endpoint_resolution() {
        let dns = Host::Dns("lb.example.com".into());
        assert_eq!(
            endpoint_resolves(&dns, &Ok(vec!["10.0.0.5".parse().unwrap()])).status,
            Status::Pass
        );
        assert_eq!(endpoint_resolves(&dns, &Ok(vec![])).status, Status::Fail);
        assert_eq!(
            endpoint_resolves(&dns, &Err("NXDOMAIN".into())).status,
            Status::Fail
        );
        let ip = Host::Ip("10.0.0.5".parse().unwrap());
        assert_eq!(
            endpoint_resolves(&ip, &Err("unused".into())).status,
            Status::Pass
        );
    }

    #[test]
    fn lb_port_free_or_cpe() {
        let a: SocketAddr = "10.0.0.5:6443".parse().unwrap();
        assert_eq!(lb_port(a, &Connect::Refused, false).status, Status::Pass);
        assert_eq!(lb_port(a, &Connect::Accepted, true).status, Status::Pass);
        assert_eq!(lb_port(a, &Connect::Accepted, false).status, Status::Warn);
        assert_eq!(lb_port(a, &Connect::Timeout, false).status, Status::Warn);
    }

    #[test]
    fn vip_unused_from_afar() {
        let a: SocketAddr = "10.0.0.100:6443".parse().unwrap();
        assert_eq!(vip_unused(a, &Connect::Timeout).status, Status::Pass);
        assert_eq!(
            vip_unused(a, &Connect::Unreachable("x".into())).status,
            Status::Pass
        );
        assert_eq!(vip_unused(a, &Connect::Refused).status, Status::Fail);
        assert_eq!(vip_unused(a, &Connect::Accepted).status, Status::Fail);
        assert_eq!(
            vip_unused(a, &Connect::Error("x".into())).status,
            Status::Warn
        );
    }

    #[test]
    fn readyz_outcomes() {
        let r = |h: Http, u| readyz("i", "t".into(), "/readyz", &h, u).status;
        let st = |code| Http::Status {
            code,
            body: String::new(),
        };
        assert_eq!(r(st(200), Unauthorized::Alive), Status::Pass);
        assert_eq!(r(st(503), Unauthorized::Alive), Status::Fail);
        assert_eq!(r(st(401), Unauthorized::Alive), Status::Warn);
        assert_eq!(r(st(403), Unauthorized::Down), Status::Fail);
        assert_eq!(
            r(Http::Connect(Connect::Refused), Unauthorized::Alive),
            Status::Fail
        );
        assert_eq!(r(Http::Tls("x".into()), Unauthorized::Alive), Status::Fail);
    }

    #[test]
    fn cert_names_cases() {
        let a: SocketAddr = "10.0.0.11:6443".parse().unwrap();
        let host = Host::Dns("lb.example.com.".into());
        let cert = |names: bool, chain: Option<Result<(), String>>| {
            Ok(PeerCert {
                dns_names: vec!["kubernetes".into(), "cp1".into()],
                names_endpoint: names,
                chain,
            })
        };
        let c = cert_names("i", a, &host, &cert(true, None));
        assert_eq!(c.status, Status::Pass);
        let c = cert_names("i", a, &host, &cert(false, Some(Ok(()))));
        assert_eq!(c.status, Status::Fail);
        assert!(
            c.reason.contains("lb.example.com is not among"),
            "{}",
            c.reason
        );
        assert!(c.reason.contains("kubernetes, cp1"), "{}", c.reason);
        assert!(c.fix.contains("certSANs"));
        let c = cert_names(
            "i",
            a,
            &host,
            &cert(true, Some(Err("unknown issuer".into()))),
        );
        assert_eq!(c.status, Status::Fail);
        assert!(c.reason.contains("not signed by the given CA"));
        let c = cert_names("i", a, &host, &Err(Http::Connect(Connect::Refused)));
        assert_eq!(c.status, Status::Fail);
    }
}
