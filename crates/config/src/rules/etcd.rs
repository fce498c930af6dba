//! The `etcd` section: endpoint URLs and TLS files, with kubeadm's files by default in virtual-ip mode.
//!
//! Pure: no host access. Problems are pushed on the shared [`super::Check`].

use super::*;

pub(crate) fn check_etcd(
    c: &mut Check,
    e: Option<&input::EtcdIn>,
    mode: Option<Mode>,
) -> Option<Etcd> {
    if let Some(e) = e {
        c.pair("etcd", &e.cert_file, &e.key_file);
    }
    let mut endpoints = Vec::new();
    match e.and_then(|e| e.endpoints.as_ref()) {
        Some(list) if list.value.is_empty() => c.push(
            Problem::error("etcd.endpoints", "", "must list at least one etcd endpoint")
                .at(list.pos)
                .hint("or leave it out: in virtual-ip mode every machine's https://ADDRESS:2379 is used"),
        ),
        Some(list) => {
            for (i, s) in list.value.iter().enumerate() {
                if is_etcd_url(&s.value) {
                    endpoints.push(s.value.clone());
                } else {
                    c.push(
                        Problem::error(
                            format!("etcd.endpoints[{i}]"),
                            short(&s.raw),
                            "must be an http:// or https:// URL with a host and a port",
                        )
                        .at(s.pos)
                        .hint("e.g. https://10.0.0.11:2379"),
                    );
                }
            }
        }
        None => {}
    }
    let files_given = e.is_some_and(|e| e.ca_file.is_some() || e.cert_file.is_some());
    let (mut ca_file, mut cert_file, mut key_file) = match e {
        Some(e) => (
            c.path("etcd.caFile", &e.ca_file),
            c.path("etcd.certFile", &e.cert_file),
            c.path("etcd.keyFile", &e.key_file),
        ),
        None => (None, None, None),
    };
    if mode != Some(Mode::VirtualIp) {
        return e.map(|_| Etcd {
            endpoints,
            ca_file,
            cert_file,
            key_file,
        });
    }
    // VIP mode: the election runs on the control plane's own (stacked) etcd by default,
    // with kubeadm's health-check client certificate. The endpoints stay empty, meaning
    // every machine's https://ADDRESS:2379: `cpe vip` puts its own machine's member first,
    // which a list fixed here could not.
    let https = endpoints.is_empty() || endpoints.iter().any(|u| u.starts_with("https://"));
    if !files_given && https {
        ca_file = Some(PathBuf::from(KUBEADM_ETCD_CA));
        cert_file = Some(PathBuf::from(KUBEADM_ETCD_CERT));
        key_file = Some(PathBuf::from(KUBEADM_ETCD_KEY));
    }
    Some(Etcd {
        endpoints,
        ca_file,
        cert_file,
        key_file,
    })
}

/// Virtual-ip mode with external etcd and no machine list: nothing says where the
/// election's etcd is (with stacked etcd it is this machine's own member,
/// `https://127.0.0.1:2379`; with a machine list, every machine's).
pub(crate) fn vip_needs_etcd(
    c: &mut Check,
    f: &input::File,
    etcd: Option<&Etcd>,
    topology: EtcdTopology,
    no_machines: bool,
) {
    let written = etcd.is_some_and(|e| !e.endpoints.is_empty()) || f.is_broken("etcd.endpoints");
    if topology != EtcdTopology::External || !no_machines || written {
        return;
    }
    let cp = f.control_plane.as_ref();
    let pos = cp
        .and_then(|c| c.etcd.as_ref())
        .and_then(|s| s.pos)
        .or(f.etcd.as_ref().and_then(|e| e.pos))
        .or(cp.and_then(|c| c.pos))
        .or(f.pos);
    c.push(
        Problem::error(
            "etcd.endpoints",
            "",
            "is required in virtual-ip mode when etcd is external and no machines are listed",
        )
        .at(pos)
        .hint("list the external etcd's client URLs, e.g. https://10.0.0.21:2379; the agents learn the other members from etcd's member list"),
    );
}

/// `http://HOST:PORT` or `https://HOST:PORT` (an optional trailing `/`).
pub fn is_etcd_url(u: &str) -> bool {
    let Some(rest) = u
        .strip_prefix("https://")
        .or_else(|| u.strip_prefix("http://"))
    else {
        return false;
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.parse::<SocketAddr>().is_ok() {
        return true;
    }
    match rest.rsplit_once(':') {
        Some((h, p)) => {
            p.parse::<u16>().is_ok_and(|p| p > 0)
                && (is_dns_name(h) || h.parse::<std::net::Ipv4Addr>().is_ok())
        }
        None => false,
    }
}
