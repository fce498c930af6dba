//! The `virtualIP` section and the virtual IP itself: a free unicast address in the
//! subnet of every machine, the interface, the lease TTL (whole seconds, at least 2 s),
//! the election key and the admin listener. The field rules ([`lease_ttl`],
//! [`election`], [`interface`], [`prefix_len`]) take the field's name, so that
//! `cpe vip`'s flags are held to them too, named as typed.
//!
//! Pure: no host access. Problems are pushed on the shared [`super::Check`].

use super::*;

/// The `virtualIP` section in virtual-ip mode (the endpoint host is the virtual IP).
pub(crate) fn check_vip(
    c: &mut Check,
    vip_in: Option<&input::VirtualIpIn>,
    host: &Option<Host>,
    host_in: Option<&S<String>>,
    machines: &[MachineAt<'_>],
    cluster: &str,
    f: &input::File,
) -> Option<VirtualIp> {
    let address = check_vip_address(c, host, host_in, machines);
    let interface = match vip_in.and_then(|v| v.interface.as_ref()) {
        Some(s) => interface(c, "virtualIP.interface", s),
        None if f.is_broken("virtualIP.interface") => None,
        None => {
            c.push(
                Problem::error("virtualIP.interface", "", "is required in virtual-ip mode")
                    .at(vip_in.and_then(|v| v.pos).or(f.mode.as_ref().and_then(|m| m.pos)).or(f.pos))
                    .hint("the interface that carries the machines' addresses, e.g. eth0 (`ip -br addr`)"),
            );
            None
        }
    };
    let lease_ttl = vip_in
        .and_then(|v| v.lease_ttl.as_ref())
        .map_or(DEFAULT_LEASE_TTL, |s| lease_ttl(c, "virtualIP.leaseTTL", s));
    let election = vip_in.and_then(|v| v.election.as_ref()).map_or_else(
        || format!("/cpe/vip/{cluster}"),
        |s| election(c, "virtualIP.election", s),
    );
    let admin = c.socket(
        "virtualIP.admin",
        &vip_in.and_then(|v| v.admin.clone()),
        DEFAULT_VIP_ADMIN,
    );
    let admin_token_file = c.path(
        "virtualIP.adminTokenFile",
        &vip_in.and_then(|v| v.admin_token_file.clone()),
    );
    admin_exposure(
        c,
        ("virtualIP.admin", &vip_in.and_then(|v| v.admin.clone())),
        "virtualIP.adminTokenFile",
        admin,
        admin_token_file.is_some(),
    );
    let metrics = vip_in.and_then(|v| v.metrics.as_ref()).and_then(|m| {
        metrics_listener(
            c,
            "virtualIP.metrics",
            m,
            &[("virtualIP.admin", Some(admin))],
        )
    });
    let prefix_len = match (address, vip_in.and_then(|v| v.prefix_length.as_ref())) {
        (Some(a), Some(s)) => prefix_len(c, "virtualIP.prefixLength", a, s),
        (Some(a), None) => full_prefix(a),
        (None, _) => 32,
    };
    Some(VirtualIp {
        address: address?,
        prefix_len,
        interface: interface?,
        lease_ttl,
        election,
        admin,
        admin_token_file,
        metrics,
        // laid over by `rules::resolve` (it needs the endpoint port): `load_balance`
        load_balance: None,
    })
}

/// `virtualIP.loadBalance` and `virtualIP.lbPort`: the load balancer's port on every
/// machine, which the VIP's `port` is redirected to on the holder.
pub(crate) fn check_load_balance(
    c: &mut Check,
    vip_in: Option<&input::VirtualIpIn>,
    endpoint_port: Option<u16>,
    admin: Option<SocketAddr>,
) -> Option<VipLoadBalance> {
    let on = vip_in
        .and_then(|v| v.load_balance.as_ref())
        .is_some_and(|b| b.value);
    let lb_port_in = vip_in.and_then(|v| v.lb_port.clone());
    if !on {
        if let Some(s) = &lb_port_in {
            c.push(
                Problem::warning(
                    "virtualIP.lbPort",
                    short(&s.raw),
                    "has no effect without `loadBalance: true`",
                )
                .at(s.pos),
            );
        }
        return None;
    }
    let lb_port = c.port("virtualIP.lbPort", &lb_port_in, DEFAULT_VIP_LB_PORT)?;
    let raw = lb_port_in.map(|s| (short(&s.raw), s.pos));
    lb_port_rule(c, "virtualIP.lbPort", raw, lb_port, endpoint_port, admin).then_some(
        VipLoadBalance {
            lb_port,
            discovery: None,
        },
    )
}

/// The load balancer's port is taken on every machine (all addresses): not the
/// endpoint port (the API servers', which the redirect sends away from), not the admin
/// listener's, not etcd's. Returns whether it holds.
pub(crate) fn lb_port_rule(
    c: &mut Check,
    field: &str,
    raw: Option<(String, Option<Pos>)>,
    lb_port: u16,
    endpoint_port: Option<u16>,
    admin: Option<SocketAddr>,
) -> bool {
    let clash = if Some(lb_port) == endpoint_port {
        Some("the endpoint port (every API server listens there)")
    } else if Some(lb_port) == admin.map(|a| a.port()) {
        Some("the admin listener's port")
    } else if lb_port == 2379 || lb_port == 2380 {
        Some("an etcd port")
    } else {
        None
    };
    let Some(what) = clash else { return true };
    let (value, pos) = raw.unwrap_or_else(|| (lb_port.to_string(), None));
    c.push(
        Problem::error(field, value, format!("must differ from {what}"))
            .at(pos)
            .hint(format!(
                "the load balancer listens on this port on every machine; the default is {DEFAULT_VIP_LB_PORT}"
            )),
    );
    false
}

/// The endpoint host as a virtual IP: an IP literal, not a machine's address, in the
/// subnet of every machine that has one written (one problem per subnet or family).
fn check_vip_address(
    c: &mut Check,
    host: &Option<Host>,
    host_in: Option<&S<String>>,
    machines: &[MachineAt<'_>],
) -> Option<IpAddr> {
    let host_pos = host_in.and_then(|s| s.pos);
    let host_raw = host_in.map(|s| short(&s.raw)).unwrap_or_default();
    let address = match host {
        Some(Host::Ip(ip)) => Some(*ip),
        Some(Host::Dns(_)) => {
            c.push(
                Problem::error(
                    "endpoint.host",
                    &host_raw,
                    "must be an IP address (the virtual IP) in virtual-ip mode, not a DNS name",
                )
                .at(host_pos)
                .hint("a free address in the control-plane machines' subnet, e.g. 10.0.0.10"),
            );
            None
        }
        None => None,
    };
    // A loopback VIP would never leave the machine (the flag `--vip` always refused it).
    if let Some(vip) = address.filter(|a| a.is_loopback()) {
        c.push(
            Problem::error(
                "endpoint.host",
                &host_raw,
                "must not be a loopback address: the virtual IP is on the machines' network",
            )
            .at(host_pos)
            .hint(format!(
                "a free address in the control-plane machines' subnet, not {vip}"
            )),
        );
        return None;
    }
    if let Some(vip) = address {
        if let Some(m) = machines.iter().find(|m| m.machine.address == vip) {
            c.push(
                Problem::error(
                    "endpoint.host",
                    &host_raw,
                    format!("is the address of machine `{}`: the virtual IP must be a free address", m.machine.name),
                )
                .at(host_pos)
                .hint("pick an unused address in the machines' subnet; the VIP moves between machines, a machine's own address cannot"),
            );
        }
        // One problem per subnet (or family), naming every machine in it: three machines
        // on one /24 give one message, not three.
        let mut groups: Vec<(String, String, Vec<&Machine>)> = Vec::new();
        for m in machines {
            let ma = m.machine.address;
            let found = if ma.is_ipv4() != vip.is_ipv4() {
                Some((
                    format!("is an {} address, but", family(vip)),
                    family(ma).to_string(),
                ))
            } else if let Some(len) = m.machine.prefix_len {
                let net = IpNet::new(ma, len).expect("length checked").trunc();
                if !net.contains(&vip) {
                    Some(("is outside the subnet".to_string(), net.to_string()))
                } else {
                    network_or_broadcast(vip, &net).map(|which| {
                        (
                            format!("is the {which} address of the subnet"),
                            net.to_string(),
                        )
                    })
                }
            } else {
                None // no subnet written: preflight checks the interface's subnet
            };
            if let Some((what, net)) = found {
                match groups.iter_mut().find(|g| g.0 == what && g.1 == net) {
                    Some(g) => g.2.push(&m.machine),
                    None => groups.push((what, net, vec![&m.machine])),
                }
            }
        }
        for (what, net, ms) in groups {
            let names = ms
                .iter()
                .map(|m| match m.prefix_len {
                    Some(l) => format!("`{}` ({}/{l})", m.name, m.address),
                    None => format!("`{}` ({})", m.name, m.address),
                })
                .collect::<Vec<_>>()
                .join(", ");
            let machines_word = if ms.len() == 1 { "machine" } else { "machines" };
            #[allow(clippy::collapsible_else_if)]
            let rule = if what.ends_with("but") {
                if ms.len() == 1 {
                    format!("{what} machine {names} has an {net} address")
                } else {
                    format!("{what} machines {names} have {net} addresses")
                }
            } else {
                format!("{what} {net} of {machines_word} {names}")
            };
            let hint = if what.contains("network") || what.contains("broadcast") {
                "pick a free host address in the subnet"
            } else if what.ends_with("but") {
                "the virtual IP lives in the machines' own network: use the same address family"
            } else {
                "the virtual IP must be a free address in the layer-2 network of every control-plane machine"
            };
            c.push(
                Problem::error("endpoint.host", &host_raw, rule)
                    .at(host_pos)
                    .hint(hint),
            );
        }
    }

    address
}

/// `/32` or `/128`: the prefix a VIP is added with unless one is written.
pub(crate) fn full_prefix(a: IpAddr) -> u8 {
    if a.is_ipv4() {
        32
    } else {
        128
    }
}

/// An interface name (1 to 15 bytes, no '/', ':' or whitespace).
pub(crate) fn interface(c: &mut Check, field: &str, s: &S<String>) -> Option<String> {
    if is_interface_name(&s.value) {
        return Some(s.value.clone());
    }
    c.push(
        Problem::error(
            field,
            short(&s.raw),
            "must be an interface name: 1 to 15 characters, no '/', ':' or whitespace",
        )
        .at(s.pos)
        .hint("the interface that carries the machines' addresses, e.g. eth0 (`ip -br addr`)"),
    );
    None
}

/// The etcd lease TTL: whole seconds (etcd's unit), at least [`MIN_LEASE_TTL`]. Below it
/// etcd would grant a longer lease than the agent times its own loss of the VIP by, so a
/// shorter one is an error, from a file and from `--lease-ttl` alike. On error the
/// default is returned (the problem is recorded).
pub(crate) fn lease_ttl(c: &mut Check, field: &str, s: &S<String>) -> Duration {
    match duration::parse(&s.value) {
        Err(rule) => {
            c.error(field, s, rule.to_string());
            DEFAULT_LEASE_TTL
        }
        Ok(d) if d.subsec_nanos() != 0 || d < MIN_LEASE_TTL => {
            c.push(
                Problem::error(
                    field,
                    short(&s.raw),
                    format!(
                        "must be a whole number of seconds, at least {}",
                        duration::format(MIN_LEASE_TTL)
                    ),
                )
                .at(s.pos)
                .hint("etcd lease TTLs are whole seconds and etcd grants no less than about 2s; the default is 2s"),
            );
            DEFAULT_LEASE_TTL
        }
        Ok(d) => d,
    }
}

/// The election's etcd key prefix: starts with `/`, no whitespace.
pub(crate) fn election(c: &mut Check, field: &str, s: &S<String>) -> String {
    if s.value.starts_with('/') && !s.value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return s.value.clone();
    }
    c.error(
        field,
        s,
        "must be an etcd key prefix starting with / and without spaces",
    );
    String::new()
}

/// A prefix length for the virtual IP's family.
pub(crate) fn prefix_len(c: &mut Check, field: &str, a: IpAddr, s: &S<i64>) -> u8 {
    let max = full_prefix(a);
    if (0..=i64::from(max)).contains(&s.value) {
        return s.value as u8;
    }
    c.error(
        field,
        s,
        format!("must be 0 to {max} for an {} virtual IP", family(a)),
    );
    max
}
