//! Where one node reaches etcd: the definition's `etcd.endpoints` or the default members
//! (every listed machine's, or this machine's own through loopback when the definition
//! lists no machines or not this one), its own member first, with the TLS files. Pure.
//! Following the member list at run time is `cpe-vip`'s (`members`), not this module's.

use crate::defaults::{ETCD_CLIENT_PORT, KUBEADM_ETCD_CA, KUBEADM_ETCD_CERT, KUBEADM_ETCD_KEY};
use crate::model::*;
use std::net::{IpAddr, SocketAddr};

/// This machine's own etcd member as kubeadm's stacked etcd serves it on every machine
/// (it listens on `127.0.0.1:2379` too, and its certificate names 127.0.0.1).
pub const OWN_ETCD_MEMBER: &str = "https://127.0.0.1:2379";

/// Every etcd client URL for `node`, its own member first: the definition's
/// `etcd.endpoints` (reordered), or by default every listed machine's
/// `https://ADDRESS:2379`. `node` `None` (no machine list, or a node the list does not
/// name: machines come and go) puts this machine's own member first as
/// [`OWN_ETCD_MEMBER`], so a definition without machines gives just that one: `cpe vip`
/// learns the others from etcd's member list. Empty only when etcd is external and the
/// definition lists no endpoint (nothing says where etcd is).
pub fn etcd_endpoints(e: &Endpoint, node: Option<&Machine>) -> Vec<String> {
    let written = e
        .etcd
        .as_ref()
        .map(|x| x.endpoints.clone())
        .filter(|l| !l.is_empty());
    let own = |u: &String| node.is_some_and(|m| url_host(u) == Some(m.address));
    match written {
        Some(mut l) => {
            // Own member first: the nearest, and the one that shares this machine's fate.
            l.sort_by_key(|u| !own(u));
            l
        }
        None if e.mode == Mode::VirtualIp
            || e.etcd.is_some()
            || e.etcd_topology == EtcdTopology::Stacked =>
        {
            let first = match node {
                Some(m) => format!("https://{}", SocketAddr::new(m.address, ETCD_CLIENT_PORT)),
                None if e.etcd_topology == EtcdTopology::Stacked => OWN_ETCD_MEMBER.to_string(),
                None => String::new(),
            };
            let others = e
                .machines
                .iter()
                .filter(|m| node.is_none_or(|n| n.name != m.name))
                .map(|m| format!("https://{}", SocketAddr::new(m.address, ETCD_CLIENT_PORT)));
            std::iter::once(first)
                .filter(|f| !f.is_empty())
                .chain(others)
                .collect()
        }
        None => Vec::new(),
    }
}

/// etcd as one node reaches it: [`etcd_endpoints`] with the definition's TLS files, or
/// kubeadm's when the definition has no `etcd` section (stacked etcd is kubeadm's). `None`
/// when nothing says where etcd is (external etcd without `etcd.endpoints`).
pub fn etcd_for(e: &Endpoint, node: Option<&Machine>) -> Option<Etcd> {
    let endpoints = etcd_endpoints(e, node);
    if endpoints.is_empty() {
        return None;
    }
    let (ca_file, cert_file, key_file) = match &e.etcd {
        Some(x) => (x.ca_file.clone(), x.cert_file.clone(), x.key_file.clone()),
        None => (
            Some(KUBEADM_ETCD_CA.into()),
            Some(KUBEADM_ETCD_CERT.into()),
            Some(KUBEADM_ETCD_KEY.into()),
        ),
    };
    Some(Etcd {
        endpoints,
        ca_file,
        cert_file,
        key_file,
    })
}

/// The host of `https://HOST:PORT/` as an address, when it is one.
fn url_host(u: &str) -> Option<IpAddr> {
    let rest = u
        .strip_prefix("https://")
        .or_else(|| u.strip_prefix("http://"))?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if let Ok(a) = rest.parse::<SocketAddr>() {
        return Some(a.ip());
    }
    rest.rsplit_once(':')?.0.parse().ok()
}
