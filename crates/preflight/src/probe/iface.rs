//! This machine's interfaces: names, up/down, link state and addresses with their prefix
//! lengths, from `getifaddrs(3)` and `/sys/class/net/IF/operstate`. Read-only; no netlink
//! needed for reading.

use crate::facts::{Interface, Interfaces, OperState};
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
