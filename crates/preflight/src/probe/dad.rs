//! Duplicate address detection for the VIP: is anyone on the link already answering for
//! it? One ARP probe (IPv4, RFC 5227: sender address 0.0.0.0, so asking leaves no trace in
//! anyone's neighbour table) or neighbour solicitation (IPv6, from the unspecified
//! address), sent and awaited by cpe-net's raw-socket probe, the one `cpe vip` uses before
//! it takes the address. This module only finds the interface's index and MAC and turns
//! the answer into a fact.

use crate::facts::Dad;
use std::net::IpAddr;
use std::time::Duration;

/// Probes `addr` on `interface`, waiting up to `wait` for a claim. Needs `CAP_NET_RAW`;
/// without it (or without the interface) the fact is "not checked", with the reason.
pub async fn probe(interface: &str, addr: IpAddr, wait: Duration) -> Dad {
    let (index, mac) = match link(interface) {
        Ok(v) => v,
        Err(e) => return Dad::NotChecked(e),
    };
    match cpe_net::probe(index, mac, addr, wait).await {
        Ok(None) => Dad::Silent,
        Ok(Some(mac)) => Dad::Answered {
            mac: mac.to_string(),
        },
        Err(e) => Dad::NotChecked(e.to_string()),
    }
}

/// The interface's index and MAC address, from sysfs.
fn link(interface: &str) -> Result<(u32, cpe_net::Mac), String> {
    let read = |what: &str| {
        std::fs::read_to_string(format!("/sys/class/net/{interface}/{what}"))
            .map(|s| s.trim().to_string())
            .map_err(|e| format!("interface {interface}: {what}: {e}"))
    };
    let index = read("ifindex")?
        .parse()
        .map_err(|e| format!("interface {interface}: ifindex: {e}"))?;
    let mac = parse_mac(&read("address")?)
        .ok_or_else(|| format!("interface {interface} has no Ethernet address"))?;
    Ok((index, mac))
}

fn parse_mac(s: &str) -> Option<cpe_net::Mac> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for b in out.iter_mut() {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(cpe_net::Mac(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sysfs_macs() {
        assert_eq!(
            parse_mac("02:ab:00:00:00:01"),
            Some(cpe_net::Mac([2, 0xab, 0, 0, 0, 1]))
        );
        assert_eq!(parse_mac("02:ab:00:00:00"), None);
        assert_eq!(parse_mac("02:ab:00:00:00:01:ff"), None);
        assert_eq!(parse_mac("zz:ab:00:00:00:01"), None);
    }

    #[test]
    fn a_missing_interface_is_not_checked() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let d = rt.block_on(probe(
            "nosuchif0",
            "10.0.0.1".parse().unwrap(),
            Duration::from_millis(10),
        ));
        assert!(
            matches!(d, Dad::NotChecked(ref e) if e.contains("nosuchif0")),
            "{d:?}"
        );
    }
}
