//! The kernel-facing parts of the VIP: add and remove an address through netlink, and
//! announce it with gratuitous ARP (IPv4) or an unsolicited neighbour advertisement
//! (IPv6) on raw sockets. Packets are built by pure functions (pinned by golden bytes)
//! apart from being sent. It does not decide when to add or announce.
//!
//! # Layout
//!
//! - [`packet`]: frames built and parsed as bytes (pure).
//! - [`raw`]: the `AF_PACKET` socket; the one module allowed `unsafe`.
//! - [`netlink`]: interfaces and addresses through rtnetlink.
//! - this file: [`Announcer`], [`probe`], the subnet rule and the capability check.

pub mod netlink;
pub mod packet;
pub mod raw;

pub use netlink::{Interface, Lifetime, Netlink};
pub use packet::Mac;

use packet::ArpOp;
use std::net::IpAddr;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("interface `{name}` does not exist on this machine (it has: {present})")]
    NoInterface { name: String, present: String },
    #[error("cannot {op}: {source}{}", hint(source))]
    Os {
        op: &'static str,
        source: std::io::Error,
    },
    #[error("cannot {op}: {detail}")]
    Netlink { op: &'static str, detail: String },
    #[error(transparent)]
    OwnAddress(#[from] OwnAddressError),
}

fn hint(e: &std::io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => {
            " (cpe vip needs CAP_NET_ADMIN and CAP_NET_RAW: run it as root or grant them)"
        }
        _ => "",
    }
}

/// Sends the announcements for one address on one interface: gratuitous ARP in request
/// and reply form for IPv4, an unsolicited neighbour advertisement for IPv6.
#[derive(Debug)]
pub struct Announcer {
    sock: raw::PacketSocket,
    frames: Vec<Vec<u8>>,
}

impl Announcer {
    pub fn new(ifindex: u32, mac: Mac, ip: IpAddr) -> Result<Self, NetError> {
        let frames = match ip {
            IpAddr::V4(v4) => vec![
                packet::gratuitous_arp(mac, v4, ArpOp::Request),
                packet::gratuitous_arp(mac, v4, ArpOp::Reply),
            ],
            IpAddr::V6(v6) => vec![packet::unsolicited_na(mac, v6)],
        };
        // Send-only: protocol 0, so the kernel queues nothing for it to read.
        let sock = raw::PacketSocket::open(ifindex, 0).map_err(|source| NetError::Os {
            op: "open a raw socket for announcements",
            source,
        })?;
        Ok(Announcer { sock, frames })
    }

    /// One announcement (all its frames).
    pub fn announce(&self) -> Result<(), NetError> {
        for f in &self.frames {
            self.sock.send(f).map_err(|source| NetError::Os {
                op: "send an announcement",
                source,
            })?;
        }
        Ok(())
    }
}

/// Asks the segment whether anyone already answers for `ip` (ARP probe for IPv4,
/// neighbour solicitation for IPv6) and waits up to `wait` for a claim. Returns the MAC of
/// the first host other than `own` that claims it.
pub async fn probe(
    ifindex: u32,
    own: Mac,
    ip: IpAddr,
    wait: Duration,
) -> Result<Option<Mac>, NetError> {
    let (ethertype, frame) = match ip {
        IpAddr::V4(v4) => (packet::ETH_P_ARP, packet::arp_probe(own, v4)),
        IpAddr::V6(v6) => (packet::ETH_P_IPV6, packet::ns_probe(own, v6)),
    };
    let os = |op| move |source| NetError::Os { op, source };
    let sock = raw::PacketSocket::open(ifindex, ethertype)
        .map_err(os("open a raw socket for the probe"))?;
    sock.send(&frame).map_err(os("send the probe"))?;
    let mut buf = vec![0u8; 2048];
    let listen = async {
        loop {
            let n = sock
                .recv(&mut buf)
                .await
                .map_err(os("receive probe answers"))?;
            let claim = match ip {
                IpAddr::V4(v4) => packet::arp_claim(&buf[..n], v4, own),
                IpAddr::V6(v6) => packet::na_claim(&buf[..n], v6, own),
            };
            if let Some(mac) = claim {
                return Ok::<_, NetError>(Some(mac));
            }
        }
    };
    match tokio::time::timeout(wait, listen).await {
        Ok(r) => r,
        Err(_) => Ok(None),
    }
}

/// The rule "the VIP lies inside the subnet of an address on the interface": the
/// interface address (same family, prefix shorter than the host length) whose subnet holds
/// `vip`, or `None`.
pub fn covering_subnet(vip: IpAddr, addrs: &[(IpAddr, u8)]) -> Option<(IpAddr, u8)> {
    addrs.iter().copied().find(|(a, p)| match (vip, a) {
        (IpAddr::V4(v), IpAddr::V4(a)) if *p < 32 => {
            let mask = u32::MAX.checked_shl(32 - *p as u32).unwrap_or(0);
            u32::from(v) & mask == u32::from(*a) & mask && v != *a
        }
        (IpAddr::V6(v), IpAddr::V6(a)) if *p < 128 && !a.is_unicast_link_local() => {
            let mask = u128::MAX.checked_shl(128 - *p as u32).unwrap_or(0);
            u128::from(v) & mask == u128::from(*a) & mask && v != *a
        }
        _ => false,
    })
}

/// Why this machine's own address cannot be told from the VIP interface.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OwnAddressError {
    #[error("no address on `{interface}` lies in the VIP {vip}'s subnet (it has: {present}): this machine's own address is the one on the VIP interface in the VIP's subnet")]
    None {
        interface: String,
        vip: IpAddr,
        present: String,
    },
    #[error("several addresses on `{interface}` lie in the VIP {vip}'s subnet ({candidates}): cannot tell which is this machine's own; keep one, or list the machine with its address under controlPlane.machines")]
    Several {
        interface: String,
        vip: IpAddr,
        candidates: String,
    },
}

/// This machine's own address: the one address on the VIP interface (`addrs`, as netlink
/// lists them with their prefix lengths) whose subnet holds the VIP — the VIP itself, a
/// host-length prefix and IPv6 link-local addresses never count. Pure; the agent and
/// `cpe preflight` hand it the interface's addresses. `interface` names it in errors.
pub fn own_address(
    vip: IpAddr,
    interface: &str,
    addrs: &[(IpAddr, u8)],
) -> Result<(IpAddr, u8), OwnAddressError> {
    let list = |v: &[(IpAddr, u8)]| {
        v.iter()
            .map(|(a, p)| format!("{a}/{p}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let candidates: Vec<(IpAddr, u8)> = addrs
        .iter()
        .copied()
        .filter(|&(a, p)| a != vip && covering_subnet(vip, &[(a, p)]).is_some())
        .collect();
    match candidates.as_slice() {
        [one] => Ok(*one),
        [] => Err(OwnAddressError::None {
            interface: interface.to_string(),
            vip,
            present: if addrs.is_empty() {
                "no address".into()
            } else {
                list(addrs)
            },
        }),
        many => Err(OwnAddressError::Several {
            interface: interface.to_string(),
            vip,
            candidates: list(many),
        }),
    }
}

/// The capabilities cpe vip needs and this process lacks (`CAP_NET_ADMIN` for netlink
/// address changes, `CAP_NET_RAW` for the raw sockets), read from `/proc/self/status`.
pub fn missing_capabilities() -> Vec<&'static str> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    missing_in(&status)
}

fn missing_in(status: &str) -> Vec<&'static str> {
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    let mut out = Vec::new();
    if eff & (1 << 12) == 0 {
        out.push("CAP_NET_ADMIN");
    }
    if eff & (1 << 13) == 0 {
        out.push("CAP_NET_RAW");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vip_must_be_inside_an_interface_subnet() {
        let addrs: Vec<(IpAddr, u8)> = vec![
            ("10.77.0.11".parse().unwrap(), 24),
            ("fe80::1".parse().unwrap(), 64),
            ("fd00:77::11".parse().unwrap(), 64),
        ];
        let v = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(covering_subnet(v("10.77.0.100"), &addrs), Some(addrs[0]));
        assert_eq!(covering_subnet(v("10.77.1.100"), &addrs), None);
        assert_eq!(
            covering_subnet(v("10.77.0.11"), &addrs),
            None,
            "the machine's own address"
        );
        assert_eq!(covering_subnet(v("fd00:77::100"), &addrs), Some(addrs[2]));
        assert_eq!(covering_subnet(v("fd00:78::100"), &addrs), None);
        assert_eq!(
            covering_subnet(v("fe80::99"), &addrs),
            None,
            "link-local never"
        );
        // A /32 (or a VIP left behind) covers nothing.
        assert_eq!(
            covering_subnet(v("10.77.0.100"), &[(v("10.77.0.100"), 32)]),
            None
        );
        assert_eq!(
            covering_subnet(v("10.1.2.3"), &[(v("10.0.0.1"), 8)]),
            Some((v("10.0.0.1"), 8))
        );
    }

    #[test]
    fn own_address_is_the_one_in_the_vips_subnet() {
        let v = |s: &str| s.parse::<IpAddr>().unwrap();
        let vip = v("10.77.0.100");
        let addrs = vec![
            (v("192.168.1.5"), 24),
            (v("10.77.0.23"), 24),
            (v("10.77.0.100"), 32), // the VIP itself, held
            (v("fe80::1"), 64),
        ];
        assert_eq!(own_address(vip, "eth0", &addrs), Ok((v("10.77.0.23"), 24)));
        // None: the error names the interface, the VIP and what the interface has.
        let e = own_address(vip, "eth0", &[(v("192.168.1.5"), 24)])
            .unwrap_err()
            .to_string();
        assert_eq!(e, "no address on `eth0` lies in the VIP 10.77.0.100's subnet (it has: 192.168.1.5/24): this machine's own address is the one on the VIP interface in the VIP's subnet");
        assert!(own_address(vip, "eth0", &[])
            .unwrap_err()
            .to_string()
            .contains("(it has: no address)"));
        // Several: named, none picked.
        let e = own_address(vip, "br0", &[(v("10.77.0.23"), 24), (v("10.77.0.24"), 16)])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("several addresses on `br0` lie in the VIP 10.77.0.100's subnet (10.77.0.23/24, 10.77.0.24/16)"),
            "{e}"
        );
        // IPv6: link-local never counts.
        let vip6 = v("fd00:77::100");
        let addrs6 = vec![(v("fe80::5"), 64), (v("fd00:77::7"), 64)];
        assert_eq!(
            own_address(vip6, "eth0", &addrs6),
            Ok((v("fd00:77::7"), 64))
        );
    }

    #[test]
    fn capabilities_from_proc_status() {
        let root = "Name:\tcpe\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert!(missing_in(root).is_empty());
        let admin_only = "CapEff:\t0000000000001000\n";
        assert_eq!(missing_in(admin_only), vec!["CAP_NET_RAW"]);
        assert_eq!(
            missing_in("CapEff:\t0000000000000000\n"),
            vec!["CAP_NET_ADMIN", "CAP_NET_RAW"]
        );
        assert_eq!(missing_in(""), vec!["CAP_NET_ADMIN", "CAP_NET_RAW"]);
    }
}
