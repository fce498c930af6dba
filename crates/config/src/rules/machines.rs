//! The control plane: the replica count rules and each machine (name, address, API server port), duplicates reported on the later one.
//!
//! Pure: no host access. Problems are pushed on the shared [`super::Check`].

use super::*;

pub(crate) fn replica_rules(c: &mut Check, n: u32, s: &S<i64>, topology: EtcdTopology) {
    if n.is_multiple_of(2) && topology == EtcdTopology::Stacked {
        c.push(
            Problem::error(
                "controlPlane.replicas",
                &s.raw,
                "cannot be an even number when etcd is stacked",
            )
            .at(s.pos)
            .hint(format!(
                "{n} machines tolerate {} failure{} like {}: use {} or {}",
                (n - 1) / 2,
                if (n - 1) / 2 == 1 { "" } else { "s" },
                n - 1,
                n - 1,
                n + 1
            )),
        );
    }
    if n == 1 {
        c.push(
            Problem::warning(
                "controlPlane.replicas",
                &s.raw,
                "a single-node control plane is not for production",
            )
            .at(s.pos)
            .hint("it tolerates no failure: when the machine is down, so is the cluster"),
        );
        c.push(
            Problem::warning(
                "controlPlane.replicas",
                &s.raw,
                "a single-node control plane cannot be upgraded in place",
            )
            .at(s.pos)
            .hint("machines are replaced, not upgraded, and there is no second machine to take over; use 3 replicas to be able to upgrade"),
        );
    }
    if n > 7 && topology == EtcdTopology::Stacked {
        c.push(
            Problem::warning(
                "controlPlane.replicas",
                &s.raw,
                "more than 7 etcd members make every write slower",
            )
            .at(s.pos)
            .hint("every write waits for a quorum; 7 machines already tolerate 3 failures"),
        );
    }
}

pub(crate) fn check_machines<'a>(
    c: &mut Check,
    list: &'a [input::MachineIn],
    port: u16,
) -> Vec<MachineAt<'a>> {
    let mut out: Vec<MachineAt<'a>> = Vec::new();
    // Indexes into `out`, so that a 1 MiB file of machines is checked in linear time.
    let mut by_name: std::collections::HashMap<String, usize> = Default::default();
    let mut by_address: std::collections::HashMap<IpAddr, usize> = Default::default();
    for (i, m) in list.iter().enumerate() {
        let field = format!("controlPlane.machines[{i}]");
        let name = match &m.name {
            Some(s) if is_object_name(&s.value) => Some(s.value.clone()),
            Some(s) => {
                c.push(
                    Problem::error(
                        format!("{field}.name"),
                        short(&s.raw),
                        "must be a lowercase RFC 1123 name (a-z, 0-9, '-', '.')",
                    )
                    .at(s.pos)
                    .hint("the machine's node name, e.g. cp1"),
                );
                None
            }
            None => {
                c.push(Problem::error(format!("{field}.name"), "", "is required").at(m.pos));
                None
            }
        };
        let address = match &m.address {
            Some(s) => match parse_address(&s.value) {
                Ok((ip, _)) if !is_unicast(ip) => {
                    c.error(format!("{field}.address"), s, "must be a unicast address");
                    None
                }
                Ok((ip, Some(len))) => {
                    let net = IpNet::new(ip, len).expect("length checked").trunc();
                    match network_or_broadcast(ip, &net) {
                        Some(which) => {
                            c.error(
                                format!("{field}.address"),
                                s,
                                format!("is the {which} address of {net}, not a machine's"),
                            );
                            None
                        }
                        None => Some((ip, Some(len))),
                    }
                }
                Ok(a) => Some(a),
                Err(rule) => {
                    let mut p =
                        Problem::error(format!("{field}.address"), short(&s.raw), rule.to_string())
                            .at(s.pos);
                    if is_dns_name(&s.value) {
                        p = p.hint("a DNS name is not accepted here: cpe matches machines, backends and the virtual IP's subnet by address");
                    }
                    c.push(p);
                    None
                }
            },
            None => {
                c.push(Problem::error(format!("{field}.address"), "", "is required").at(m.pos));
                None
            }
        };
        let api_server_port = c.port(&format!("{field}.apiServerPort"), &m.api_server_port, port);

        // Duplicates are reported on the later one, naming the earlier.
        if let (Some(n), Some(s)) = (&name, &m.name) {
            if let Some(o) = by_name.get(n).map(|&k| &out[k]) {
                c.push(
                    Problem::error(
                        format!("{field}.name"),
                        &s.raw,
                        format!(
                            "is already the name of controlPlane.machines[{}]{}",
                            o.index,
                            line_of(o.input.name.as_ref().and_then(|s| s.pos))
                        ),
                    )
                    .at(s.pos)
                    .hint("every machine needs its own name"),
                );
            }
        }
        if let (Some((ip, _)), Some(s)) = (&address, &m.address) {
            if let Some(o) = by_address.get(ip).map(|&k| &out[k]) {
                c.push(
                    Problem::error(
                        format!("{field}.address"),
                        &s.raw,
                        format!(
                            "is already the address of controlPlane.machines[{}] (`{}`){}",
                            o.index,
                            o.machine.name,
                            line_of(o.input.address.as_ref().and_then(|s| s.pos))
                        ),
                    )
                    .at(s.pos)
                    .hint("every machine needs its own address"),
                );
            }
        }
        if let (Some(name), Some((address, prefix_len)), Some(api_server_port)) =
            (name, address, api_server_port)
        {
            by_name.entry(name.clone()).or_insert(out.len());
            by_address.entry(address).or_insert(out.len());
            out.push(MachineAt {
                index: i,
                input: m,
                machine: Machine {
                    name,
                    address,
                    prefix_len,
                    api_server_port,
                },
            });
        }
    }
    out
}

/// The machine count: at least `replicas` listed. In virtual-ip mode the list may be left
/// out altogether (Cluster API replaces machines with new names and addresses: nothing may
/// assume a fixed list; `replicas` still says the intended size); a list that is written
/// is held to the rule in every mode.
pub(crate) fn count_rule(
    c: &mut Check,
    f: &input::File,
    replicas: Option<u32>,
    mode: Option<Mode>,
) {
    let cp = f.control_plane.as_ref();
    let replicas_in = cp.and_then(|c| c.replicas.as_ref());
    let machines_in = cp.and_then(|c| c.machines.as_ref());
    let written = machines_in.is_some() || f.is_broken("controlPlane.machines");
    if mode == Some(Mode::VirtualIp) && !written {
        return;
    }
    if let (Some(n), false) = (replicas, f.is_broken("controlPlane.machines")) {
        let listed = cp.map_or(0, |c| c.machines_listed);
        if listed < n as usize {
            let mut p = Problem::error(
                "controlPlane.machines",
                listed.to_string(),
                format!(
                    "lists {listed} machine{}, fewer than the {n} replicas",
                    if listed == 1 { "" } else { "s" }
                ),
            )
            .hint("list every control-plane machine with its name and address; machines beyond the replicas are spares");
            p.pos = machines_in
                .and_then(|m| m.pos)
                .or(replicas_in.and_then(|r| r.pos))
                .or(cp.and_then(|c| c.pos))
                .or(f.pos);
            c.push(p);
        }
    }
}

pub(crate) fn line_of(pos: Option<Pos>) -> String {
    pos.map(|p| format!(" on line {}", p.line))
        .unwrap_or_default()
}

/// The control plane resolved: the replica count (`None` when it breaks a rule), the etcd
/// topology and the machines that passed their own rules.
pub(crate) struct ControlPlane<'a> {
    pub(crate) replicas: Option<u32>,
    pub(crate) topology: EtcdTopology,
    pub(crate) machines: Vec<MachineAt<'a>>,
}

/// `controlPlane`: replicas, etcd topology, each machine, and the machine count.
pub(crate) fn check_control_plane<'a>(
    c: &mut Check,
    f: &'a input::File,
    port: u16,
) -> ControlPlane<'a> {
    let cp = f.control_plane.as_ref();
    let replicas_in = cp.and_then(|c| c.replicas.as_ref());
    let replicas: Option<u32> = match replicas_in {
        None if f.is_broken("controlPlane.replicas") || f.is_broken("controlPlane") => None,
        // The brief calls replicas required; Konvoy's flag defaults to 3. A definition
        // without it is accepted with Konvoy's default, and told to say so.
        None => {
            c.push(
                Problem::warning(
                    "controlPlane.replicas",
                    "",
                    format!("is not given: {DEFAULT_REPLICAS} is assumed (Konvoy's --control-plane-replicas default)"),
                )
                .at(cp.and_then(|c| c.pos).or(f.pos))
                .hint("write the number of control-plane machines: 3, 5 or 7 (1 for a test cluster)"),
            );
            Some(DEFAULT_REPLICAS)
        }
        Some(s) if s.value < 1 => {
            c.push(
                Problem::error("controlPlane.replicas", &s.raw, "must be greater than 0")
                    .at(s.pos)
                    .hint("3, 5 or 7 machines tolerate 1, 2 or 3 failures"),
            );
            None
        }
        Some(s) if s.value > MAX_REPLICAS => {
            c.error(
                "controlPlane.replicas",
                s,
                format!("must be at most {MAX_REPLICAS}"),
            );
            None
        }
        Some(s) => Some(s.value as u32),
    };
    let etcd_topology = match cp.and_then(|c| c.etcd.as_ref()) {
        None => EtcdTopology::Stacked,
        Some(s) if s.value == "stacked" => EtcdTopology::Stacked,
        Some(s) if s.value == "external" => EtcdTopology::External,
        Some(s) => {
            c.error("controlPlane.etcd", s, "must be `stacked` or `external`");
            EtcdTopology::Stacked
        }
    };
    if let (Some(n), Some(s)) = (replicas, replicas_in) {
        replica_rules(c, n, s, etcd_topology);
    }
    // Machines, each on its own; then duplicates and the count.
    let machines_in = cp.and_then(|c| c.machines.as_ref());
    let machines = machines_in
        .map(|ms| check_machines(c, &ms.value, port))
        .unwrap_or_default();
    ControlPlane {
        replicas,
        topology: etcd_topology,
        machines,
    }
}
