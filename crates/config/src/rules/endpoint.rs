//! The endpoint host: an IP literal or a DNS name, with hints for the usual slips.
//!
//! Pure: no host access. Problems are pushed on the shared [`super::Check`].

use super::*;

pub(crate) fn check_host(c: &mut Check, s: &S<String>) -> Option<Host> {
    let v = s.value.as_str();
    if let Ok(ip) = v.parse::<IpAddr>() {
        if is_unicast(ip) {
            ipv6_with_port(c, s, ip);
            return Some(Host::Ip(ip));
        }
        c.push(
            Problem::error("endpoint.host", &s.raw, "must be a unicast address")
                .at(s.pos)
                .hint(
                    "not 0.0.0.0, ::, a multicast or the broadcast address: clients connect to it",
                ),
        );
        return None;
    }
    if is_dns_name(v) {
        return Some(Host::Dns(v.to_string()));
    }
    let hint =
        if v.starts_with('[') && v.ends_with(']') && v[1..v.len() - 1].parse::<IpAddr>().is_ok() {
            "write an IPv6 address without brackets".to_string()
        } else if v.contains("://") {
            "write only the host, without a scheme or path".to_string()
        } else if v.rsplit_once(':').is_some_and(|(h, p)| {
            p.parse::<u16>().is_ok() && (is_dns_name(h) || h.parse::<IpAddr>().is_ok())
        }) {
            "write the port in endpoint.port, not in the host".to_string()
        } else {
            "a DNS name has labels of a-z, 0-9 and '-' separated by dots, e.g. lb.example.com"
                .to_string()
        };
    c.push(
        Problem::error(
            "endpoint.host",
            short(&s.raw),
            "must be an IP address or an RFC 1123 DNS name",
        )
        .at(s.pos)
        .hint(hint),
    );
    None
}

/// `cluster`: a lowercase RFC 1123 name (it names the Cluster object and the election key).
pub(crate) fn check_cluster(c: &mut Check, v: Option<&S<String>>) -> String {
    match v {
        None => DEFAULT_CLUSTER.to_string(),
        Some(s) if is_object_name(&s.value) && s.value.len() <= 63 => s.value.clone(),
        Some(s) => {
            c.push(
                Problem::error(
                    "cluster",
                    short(&s.raw),
                    "must be a lowercase RFC 1123 name of at most 63 characters (a-z, 0-9, '-', '.')",
                )
                .at(s.pos)
                .hint("it names the Cluster object and the election key, e.g. prod-eu1"),
            );
            DEFAULT_CLUSTER.to_string()
        }
    }
}

/// `endpoint.host`: required; an IP literal or a DNS name.
pub(crate) fn check_required_host(
    c: &mut Check,
    f: &input::File,
    host_in: Option<&S<String>>,
) -> Option<Host> {
    let ep = f.endpoint.as_ref();
    match host_in {
        None if f.is_broken("endpoint.host") => None,
        None => {
            c.push(
                Problem::error("endpoint.host", "", "is required")
                    .at(ep.and_then(|e| e.pos).or(f.pos))
                    .hint("the load balancer's address or DNS name, the virtual IP, or the single machine's address"),
            );
            None
        }
        Some(s) => check_host(c, s),
    }
}

/// `fd00::10:6443` is a valid IPv6 address, but most likely `fd00::10` with the port
/// written after it: warned, with how to write a port.
fn ipv6_with_port(c: &mut Check, s: &S<String>, ip: IpAddr) {
    let Some((addr, last)) = s.value.rsplit_once(':') else {
        return;
    };
    let looks_like_port = ip.is_ipv6()
        && last.len() >= 3
        && last.bytes().all(|b| b.is_ascii_digit())
        && last.parse::<u16>().is_ok_and(|p| p >= 443)
        && addr.parse::<std::net::Ipv6Addr>().is_ok();
    if looks_like_port {
        c.push(
            Problem::warning(
                "endpoint.host",
                short(&s.raw),
                format!("is taken as the IPv6 address {ip}; if `{last}` is meant as a port, it does not belong here"),
            )
            .at(s.pos)
            .hint(format!(
                "write the host without a port (host: {addr}) and the port in endpoint.port (port: {last}); URLs write it [{addr}]:{last}"
            )),
        );
    }
}
