//! What goes on the wire, built and parsed by pure functions over byte slices: gratuitous
//! ARP (request and reply form), the ARP probe, the unsolicited neighbour advertisement and
//! the neighbour solicitation probe, as whole Ethernet frames. Golden-bytes tests pin them.
//! Nothing here opens a socket.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_IPV6: u16 = 0x86dd;
const BROADCAST: [u8; 6] = [0xff; 6];

/// An Ethernet MAC address, shown as `02:00:5e:10:00:01`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Mac(pub [u8; 6]);

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// ARP operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArpOp {
    Request = 1,
    Reply = 2,
}

fn ethernet(dst: [u8; 6], src: Mac, ethertype: u16, out: &mut Vec<u8>) {
    out.extend_from_slice(&dst);
    out.extend_from_slice(&src.0);
    out.extend_from_slice(&ethertype.to_be_bytes());
}

fn arp(
    op: ArpOp,
    sha: Mac,
    spa: Ipv4Addr,
    tha: [u8; 6],
    tpa: Ipv4Addr,
    eth_dst: [u8; 6],
) -> Vec<u8> {
    let mut f = Vec::with_capacity(42);
    ethernet(eth_dst, sha, ETH_P_ARP, &mut f);
    f.extend_from_slice(&[0x00, 0x01, 0x08, 0x00, 6, 4]); // Ethernet, IPv4, sizes
    f.extend_from_slice(&(op as u16).to_be_bytes());
    f.extend_from_slice(&sha.0);
    f.extend_from_slice(&spa.octets());
    f.extend_from_slice(&tha);
    f.extend_from_slice(&tpa.octets());
    f
}

/// Gratuitous ARP for `ip` at `mac`, broadcast. The request form (target hardware address
/// zero) is what Linux, keepalived and most switches expect; the reply form (target
/// hardware address broadcast) catches hosts that ignore gratuitous requests. Both have
/// sender and target protocol address equal to the VIP.
pub fn gratuitous_arp(mac: Mac, ip: Ipv4Addr, op: ArpOp) -> Vec<u8> {
    let tha = match op {
        ArpOp::Request => [0; 6],
        ArpOp::Reply => BROADCAST,
    };
    arp(op, mac, ip, tha, ip, BROADCAST)
}

/// An ARP probe (RFC 5227): "who has `ip`?" from sender address 0.0.0.0, so that asking
/// does not teach anyone's cache anything. Whoever holds `ip` replies to `mac`.
pub fn arp_probe(mac: Mac, ip: Ipv4Addr) -> Vec<u8> {
    arp(
        ArpOp::Request,
        mac,
        Ipv4Addr::UNSPECIFIED,
        [0; 6],
        ip,
        BROADCAST,
    )
}

/// If `frame` is an ARP packet in which someone else claims `ip` (a reply, or a request or
/// announcement with `ip` as sender), the MAC that claims it.
pub fn arp_claim(frame: &[u8], ip: Ipv4Addr, own: Mac) -> Option<Mac> {
    if frame.len() < 42 || u16::from_be_bytes([frame[12], frame[13]]) != ETH_P_ARP {
        return None;
    }
    let a = &frame[14..42];
    if a[0..6] != [0x00, 0x01, 0x08, 0x00, 6, 4] {
        return None;
    }
    let sha = Mac(a[8..14].try_into().ok()?);
    let spa = Ipv4Addr::new(a[14], a[15], a[16], a[17]);
    (spa == ip && sha != own).then_some(sha)
}

/// All-nodes multicast, where unsolicited advertisements go.
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

fn multicast_mac(ip: Ipv6Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x33, 0x33, o[12], o[13], o[14], o[15]]
}

/// The solicited-node multicast address of `ip` (ff02::1:ffXX:XXXX).
pub fn solicited_node(ip: Ipv6Addr) -> Ipv6Addr {
    let o = ip.octets();
    Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | o[13] as u16,
        u16::from_be_bytes([o[14], o[15]]),
    )
}

/// The ICMPv6 checksum: one's complement sum over the pseudo-header (source,
/// destination, upper-layer length, next header 58) and the message.
pub fn icmpv6_checksum(src: Ipv6Addr, dst: Ipv6Addr, msg: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut add = |b: &[u8]| {
        for c in b.chunks(2) {
            let w = if c.len() == 2 {
                u16::from_be_bytes([c[0], c[1]])
            } else {
                u16::from_be_bytes([c[0], 0])
            };
            sum += w as u32;
        }
    };
    add(&src.octets());
    add(&dst.octets());
    add(&(msg.len() as u32).to_be_bytes());
    add(&[0, 0, 0, 58]);
    add(msg);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn ipv6_icmp_frame(
    mac: Mac,
    eth_dst: [u8; 6],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    mut msg: Vec<u8>,
) -> Vec<u8> {
    let ck = icmpv6_checksum(src, dst, &msg);
    msg[2..4].copy_from_slice(&ck.to_be_bytes());
    let mut f = Vec::with_capacity(14 + 40 + msg.len());
    ethernet(eth_dst, mac, ETH_P_IPV6, &mut f);
    f.extend_from_slice(&[0x60, 0, 0, 0]); // version 6, traffic class 0, flow 0
    f.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    f.push(58); // ICMPv6
    f.push(255); // hop limit 255: NDP is refused otherwise (RFC 4861 7.1.2)
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(&msg);
    f
}

/// Unsolicited neighbour advertisement (RFC 4861 7.2.6) for `ip` at `mac`: from `ip` to
/// all-nodes ff02::1, override flag set (replace cached entries), solicited and router
/// flags clear, with the target link-layer address option.
pub fn unsolicited_na(mac: Mac, ip: Ipv6Addr) -> Vec<u8> {
    let mut m = vec![136, 0, 0, 0, 0x20, 0, 0, 0];
    m.extend_from_slice(&ip.octets());
    m.extend_from_slice(&[2, 1]); // target link-layer address, 8 bytes
    m.extend_from_slice(&mac.0);
    ipv6_icmp_frame(mac, multicast_mac(ALL_NODES), ip, ALL_NODES, m)
}

/// A duplicate-address-detection style neighbour solicitation for `ip`: from the
/// unspecified address (so no cache learns anything, and no source link-layer option,
/// as RFC 4861 requires) to the solicited-node group of `ip`. A host holding `ip`
/// answers with an advertisement to all-nodes.
pub fn ns_probe(mac: Mac, ip: Ipv6Addr) -> Vec<u8> {
    let mut m = vec![135, 0, 0, 0, 0, 0, 0, 0];
    m.extend_from_slice(&ip.octets());
    let dst = solicited_node(ip);
    ipv6_icmp_frame(mac, multicast_mac(dst), Ipv6Addr::UNSPECIFIED, dst, m)
}

/// If `frame` is a neighbour advertisement for `ip` from someone else, the MAC it names
/// (its target link-layer option, else the Ethernet source).
pub fn na_claim(frame: &[u8], ip: Ipv6Addr, own: Mac) -> Option<Mac> {
    if frame.len() < 14 + 40 + 24 || u16::from_be_bytes([frame[12], frame[13]]) != ETH_P_IPV6 {
        return None;
    }
    let h = &frame[14..54];
    if h[0] >> 4 != 6 || h[6] != 58 {
        return None;
    }
    let m = &frame[54..];
    if m[0] != 136 || m[1] != 0 {
        return None;
    }
    let target = Ipv6Addr::from(<[u8; 16]>::try_from(&m[8..24]).ok()?);
    if target != ip {
        return None;
    }
    let mut mac = Mac(frame[6..12].try_into().ok()?);
    let mut opts = &m[24..];
    while opts.len() >= 8 {
        let len = opts[1] as usize * 8;
        if len == 0 || len > opts.len() {
            break;
        }
        if opts[0] == 2 && len == 8 {
            mac = Mac(opts[2..8].try_into().ok()?);
        }
        opts = &opts[len..];
    }
    (mac != own).then_some(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: Mac = Mac([0x02, 0x00, 0x5e, 0x10, 0x00, 0x01]);
    const OTHER: Mac = Mac([0x02, 0x00, 0x5e, 0x10, 0x00, 0x99]);

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn gratuitous_arp_request_golden() {
        let f = gratuitous_arp(MAC, Ipv4Addr::new(10, 77, 0, 100), ArpOp::Request);
        assert_eq!(
            hex(&f),
            concat!(
                "ffffffffffff",
                "02005e100001",
                "0806", // Ethernet: broadcast, ARP
                "0001",
                "0800",
                "06",
                "04",
                "0001", // Ethernet/IPv4, request
                "02005e100001",
                "0a4d0064", // sender: our MAC, the VIP
                "000000000000",
                "0a4d0064", // target: zero MAC, the VIP
            )
        );
    }

    #[test]
    fn gratuitous_arp_reply_golden() {
        let f = gratuitous_arp(MAC, Ipv4Addr::new(10, 77, 0, 100), ArpOp::Reply);
        assert_eq!(
            hex(&f),
            concat!(
                "ffffffffffff",
                "02005e100001",
                "0806",
                "0001",
                "0800",
                "06",
                "04",
                "0002",
                "02005e100001",
                "0a4d0064",
                "ffffffffffff",
                "0a4d0064",
            )
        );
    }

    #[test]
    fn arp_probe_golden_and_claims() {
        let vip = Ipv4Addr::new(10, 77, 0, 100);
        let f = arp_probe(MAC, vip);
        assert_eq!(
            hex(&f),
            concat!(
                "ffffffffffff",
                "02005e100001",
                "0806",
                "0001",
                "0800",
                "06",
                "04",
                "0001",
                "02005e100001",
                "00000000",
                "000000000000",
                "0a4d0064",
            )
        );
        // Our own probe (sender 0.0.0.0) and our own announcements claim nothing.
        assert_eq!(arp_claim(&f, vip, MAC), None);
        assert_eq!(
            arp_claim(&gratuitous_arp(MAC, vip, ArpOp::Request), vip, MAC),
            None
        );
        // Another host's reply names its MAC.
        let reply = arp(
            ArpOp::Reply,
            OTHER,
            vip,
            MAC.0,
            Ipv4Addr::UNSPECIFIED,
            MAC.0,
        );
        assert_eq!(arp_claim(&reply, vip, MAC), Some(OTHER));
        // ... but not for another address, and not a truncated frame.
        assert_eq!(arp_claim(&reply, Ipv4Addr::new(10, 77, 0, 101), MAC), None);
        assert_eq!(arp_claim(&reply[..30], vip, MAC), None);
        assert_eq!(OTHER.to_string(), "02:00:5e:10:00:99");
    }

    #[test]
    fn unsolicited_na_golden() {
        let vip: Ipv6Addr = "fd00:77::100".parse().unwrap();
        let f = unsolicited_na(MAC, vip);
        assert_eq!(f.len(), 14 + 40 + 32);
        assert_eq!(
            hex(&f),
            concat!(
                "333300000001",
                "02005e100001",
                "86dd", // to all-nodes multicast MAC
                "60000000",
                "0020",
                "3a",
                "ff",                               // payload 32, ICMPv6, hop limit 255
                "fd000077000000000000000000000100", // from the VIP
                "ff020000000000000000000000000001", // to ff02::1
                "88",
                "00",
                "f99e",
                "20000000",                         // NA, checksum, override flag
                "fd000077000000000000000000000100", // target: the VIP
                "0201",
                "02005e100001", // target link-layer address option
            )
        );
        // The checksum verifies: summing the message with it in place gives zero.
        assert_eq!(icmpv6_checksum(vip, ALL_NODES, &f[54..]), 0);
        assert_eq!(na_claim(&f, vip, MAC), None, "our own advertisement");
        let theirs = unsolicited_na(OTHER, vip);
        assert_eq!(na_claim(&theirs, vip, MAC), Some(OTHER));
        assert_eq!(
            na_claim(&theirs, "fd00:77::101".parse().unwrap(), MAC),
            None
        );
    }

    #[test]
    fn ns_probe_golden() {
        let vip: Ipv6Addr = "fd00:77::1:2345".parse().unwrap();
        assert_eq!(
            solicited_node(vip),
            "ff02::1:ff01:2345".parse::<Ipv6Addr>().unwrap()
        );
        let f = ns_probe(MAC, vip);
        assert_eq!(
            hex(&f),
            concat!(
                "3333ff012345",
                "02005e100001",
                "86dd",
                "60000000",
                "0018",
                "3a",
                "ff",
                "00000000000000000000000000000000", // from ::
                "ff0200000000000000000001ff012345", // solicited-node group
                "87",
                "00",
                "36a4",
                "00000000",
                "fd000077000000000000000000012345",
            )
        );
        assert_eq!(
            icmpv6_checksum(Ipv6Addr::UNSPECIFIED, solicited_node(vip), &f[54..]),
            0
        );
        // A solicitation is not a claim.
        assert_eq!(na_claim(&f, vip, OTHER), None);
    }
}
