//! The mode: as written, else inferred as Konvoy infers it (a `virtualIP.interface` means
//! virtual-ip, one replica single-node, anything else external-lb); and the rules that
//! tie the mode to other sections (sections ignored in a mode, the API server port, the
//! single node's address).
//!
//! Pure: no host access. Problems are pushed on the shared [`super::Check`].

use super::{Check, MachineAt};
use crate::input::{self, short, S};
use crate::model::*;
use crate::problem::Problem;

/// The mode, and the rules of a mode written explicitly.
pub(crate) fn check_mode(c: &mut Check, f: &input::File, replicas: Option<u32>) -> Option<Mode> {
    let vip_in = f.virtual_ip.as_ref();
    let interface_in = vip_in.and_then(|v| v.interface.as_ref());
    let interface_written = vip_in.is_some_and(|v| v.interface_written);
    let mode = match &f.mode {
        Some(s) => match s.value.as_str() {
            "external-lb" => Some(Mode::ExternalLb),
            "virtual-ip" => Some(Mode::VirtualIp),
            "single-node" => Some(Mode::SingleNode),
            _ => {
                c.push(
                    Problem::error("mode", short(&s.raw), "must be one of external-lb, virtual-ip, single-node")
                        .at(s.pos)
                        .hint("or leave it out: a virtualIP.interface means virtual-ip, 1 replica means single-node, anything else external-lb"),
                );
                None
            }
        },
        None if interface_written => Some(Mode::VirtualIp),
        None if replicas == Some(1) => Some(Mode::SingleNode),
        None => Some(Mode::ExternalLb),
    };
    if let (Some(m), Some(s)) = (mode, &f.mode) {
        if m == Mode::SingleNode {
            if let Some(n) = replicas.filter(|n| *n != 1) {
                c.push(
                    Problem::error("mode", &s.raw, format!("needs exactly 1 replica, not {n}"))
                        .at(s.pos)
                        .hint("set controlPlane.replicas to 1, or use external-lb or virtual-ip"),
                );
            }
        }
        if m != Mode::VirtualIp {
            if let Some(i) = interface_in {
                c.push(
                    Problem::error(
                        "virtualIP.interface",
                        short(&i.raw),
                        format!("is only used in virtual-ip mode, but mode is {m}"),
                    )
                    .at(i.pos)
                    .hint("remove `mode` to let the interface select virtual-ip mode, or remove the interface"),
                );
            }
        }
    }
    if let Some(m) = mode {
        if m != Mode::VirtualIp && !interface_written {
            if let Some(v) = vip_in {
                c.push(
                    Problem::warning("virtualIP", "", format!("is ignored in {m} mode"))
                        .at(v.pos)
                        .hint("a virtualIP.interface selects virtual-ip mode"),
                );
            }
        }
        if m != Mode::ExternalLb {
            if let Some(l) = &f.load_balancer {
                // The VIP that also load-balances reads `loadBalancer.discovery` (where its
                // in-agent load balancer learns its backends), and nothing else of it.
                let vip_lb = m == Mode::VirtualIp
                    && vip_in
                        .and_then(|v| v.load_balance.as_ref())
                        .is_some_and(|b| b.value);
                let others = l.listen.is_some()
                    || l.admin.is_some()
                    || l.admin_token_file.is_some()
                    || l.metrics.is_some()
                    || l.max_connections.is_some()
                    || l.drain_timeout.is_some()
                    || l.connect_timeout.is_some();
                if !vip_lb {
                    c.push(
                        Problem::warning("loadBalancer", "", format!("is ignored in {m} mode"))
                            .at(l.pos),
                    );
                } else if others {
                    c.push(
                        Problem::warning(
                            "loadBalancer",
                            "",
                            "is ignored in virtual-ip mode except loadBalancer.discovery (where the in-agent load balancer learns its backends)",
                        )
                        .at(l.pos)
                        .hint("the in-agent load balancer listens on virtualIP.lbPort; its status is the agent's"),
                    );
                }
            }
        }
    }
    mode
}

/// Rules that need the mode and the machines: the API server port outside external-lb,
/// the single node's address.
pub(crate) fn cross_rules(
    c: &mut Check,
    mode: Mode,
    port: Option<u16>,
    host: &Option<Host>,
    host_in: Option<&S<String>>,
    machines: &[MachineAt<'_>],
) {
    let mode = Some(mode);
    // The endpoint port is also each machine's API server port (the source document's
    // known limitation) except behind an external load balancer.
    if let (Some(m @ (Mode::VirtualIp | Mode::SingleNode)), Some(p)) = (mode, port) {
        for ma in machines {
            if let Some(s) = &ma.input.api_server_port {
                if ma.machine.api_server_port != p {
                    c.push(
                        Problem::error(
                            format!("controlPlane.machines[{}].apiServerPort", ma.index),
                            &s.raw,
                            format!("must equal the endpoint port {p} in {m} mode"),
                        )
                        .at(s.pos)
                        .hint("the endpoint port is also the API server port on each machine; only an external load balancer may listen on another port"),
                    );
                }
            }
        }
    }

    if mode == Some(Mode::SingleNode) {
        if let (Some(Host::Ip(ip)), Some(s), Some(first)) = (&host, host_in, machines.first()) {
            if *ip != first.machine.address {
                c.push(
                    Problem::error(
                        "endpoint.host",
                        &s.raw,
                        format!(
                            "must be the address of machine `{}` ({}) in single-node mode",
                            first.machine.name, first.machine.address
                        ),
                    )
                    .at(s.pos)
                    .hint("a single-node control plane is its own endpoint: no load balancer, no virtual IP"),
                );
            }
        }
    }
}
