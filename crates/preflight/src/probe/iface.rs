//! This machine's interfaces: names, up/down, link state and addresses with their prefix
//! lengths, from `getifaddrs(3)` and `/sys/class/net/IF/operstate`. Read-only; no netlink
//! needed for reading. Also the one fact derived from them that needs cpe-net's rule: does
//! an address of the VIP interface have a subnet holding the VIP ([`vip_subnet`]); it is
//! worked out here so that [`crate::decide`] stays free of network crates.

use crate::facts::{Interface, Interfaces, OperState, VipSubnet};
use nix::net::if_::InterfaceFlags;
use nix::sys::socket::SockaddrStorage;
use std::net::IpAddr;

/// Every interface of this network namespace.
pub fn interfaces() -> Result<Interfaces, String> {
    let list = nix::ifaddrs::getifaddrs().map_err(|e| format!("getifaddrs: {e}"))?;
    let mut out: Vec<Interface> = Vec::new();
    for ifa in list {
        let idx = match out.iter().position(|i| i.name == ifa.interface_name) {
            Some(i) => i,
            None => {
                out.push(Interface {
                    name: ifa.interface_name.clone(),
                    admin_up: ifa.flags.contains(InterfaceFlags::IFF_UP),
                    oper: operstate(&ifa.interface_name),
                    addrs: Vec::new(),
                });
                out.len() - 1
            }
        };
        if let (Some(addr), Some(mask)) = (ifa.address.as_ref(), ifa.netmask.as_ref()) {
            if let (Some(ip), Some(len)) = (ip_of(addr), prefix_of(mask)) {
                out[idx].addrs.push((ip, len));
            }
        }
    }
    Ok(Interfaces(out))
}

/// Which address of `interface` (among `ifaces`) has a subnet holding `vip`, by the same
/// rule `cpe vip` applies before adding the address (`cpe_net::covering_subnet`).
/// `NotCovered` also when the interface is missing (that check fails on its own).
pub fn vip_subnet(vip: IpAddr, ifaces: &Interfaces, interface: &str) -> VipSubnet {
    ifaces
        .get(interface)
        .and_then(|i| cpe_net::covering_subnet(vip, &i.addrs))
        .map_or(VipSubnet::NotCovered, |(a, l)| VipSubnet::CoveredBy(a, l))
}

fn ip_of(s: &SockaddrStorage) -> Option<IpAddr> {
    if let Some(v4) = s.as_sockaddr_in() {
        return Some(IpAddr::V4(v4.ip()));
    }
    s.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
}

fn prefix_of(mask: &SockaddrStorage) -> Option<u8> {
    if let Some(v4) = mask.as_sockaddr_in() {
        return Some(u32::from(v4.ip()).count_ones() as u8);
    }
    mask.as_sockaddr_in6()
        .map(|v6| u128::from(v6.ip()).count_ones() as u8)
}

fn operstate(name: &str) -> OperState {
    match std::fs::read_to_string(format!("/sys/class/net/{name}/operstate")) {
        Ok(s) => match s.trim() {
            "up" => OperState::Up,
            "down" => OperState::Down,
            "unknown" => OperState::Unknown,
            _ => OperState::Other,
        },
        Err(_) => OperState::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The subnet rule, from the interface's addresses to the fact the decision takes
    /// (`decide::vip_interface` turns `CoveredBy` into a pass, `NotCovered` into a failure).
    #[test]
    fn vip_subnet_needs_a_same_family_network_containing_it() {
        let fact = |v: &str, addrs: &[&str]| {
            let ifs = Interfaces(vec![Interface {
                name: "eth0".into(),
                admin_up: true,
                oper: OperState::Up,
                addrs: addrs
                    .iter()
                    .map(|a| {
                        let (ip, len) = a.split_once('/').unwrap();
                        (ip.parse().unwrap(), len.parse().unwrap())
                    })
                    .collect(),
            }]);
            vip_subnet(v.parse().unwrap(), &ifs, "eth0")
        };
        let by = |a: &str, l| VipSubnet::CoveredBy(a.parse().unwrap(), l);
        assert_eq!(fact("10.0.0.100", &["10.0.0.11/24"]), by("10.0.0.11", 24));
        assert_eq!(fact("10.0.1.100", &["10.0.0.11/23"]), by("10.0.0.11", 23));
        assert_eq!(fact("10.0.1.100", &["10.0.0.11/24"]), VipSubnet::NotCovered);
        assert_eq!(fact("fd00::100", &["fd00::11/64"]), by("fd00::11", 64));
        assert_eq!(fact("fd00::100", &["10.0.0.11/24"]), VipSubnet::NotCovered);
        // The VIP itself (held here as /32) does not count as the subnet.
        assert_eq!(
            fact("10.0.0.100", &["10.0.0.100/32"]),
            VipSubnet::NotCovered
        );
        assert_eq!(
            fact("10.0.0.100", &["10.0.0.100/32", "10.0.0.11/24"]),
            by("10.0.0.11", 24)
        );
        // A missing interface covers nothing.
        let ifs = Interfaces(Vec::new());
        assert_eq!(
            vip_subnet("10.0.0.100".parse().unwrap(), &ifs, "eth0"),
            VipSubnet::NotCovered
        );
    }

    #[test]
    fn loopback_is_found_up_with_its_address() {
        let ifs = interfaces().unwrap();
        let lo = ifs.get("lo").expect("every namespace has lo");
        assert!(lo.admin_up);
        assert!(
            lo.addrs.contains(&("127.0.0.1".parse().unwrap(), 8)),
            "{lo:?}"
        );
        assert_eq!(
            ifs.with_addr("127.0.0.1".parse().unwrap())
                .map(|i| i.name.as_str()),
            Some("lo")
        );
    }
}
