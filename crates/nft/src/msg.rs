//! The nfnetlink messages of the steering, built as bytes (pure), and the kernel's answers
//! read back: a batch (begin, table, chains, rules, end) and the `NLMSG_ERROR` acks.
//!
//! Only what one redirect needs is here: tables, base nat chains, and the `payload`,
//! `meta`, `cmp`, `fib`, `immediate` and `redir` expressions, laid out as `nft` itself
//! sends them for `ip daddr VIP tcp dport P fib daddr type local redirect to :LBPORT`
//! (compare `nft --debug=netlink`);
//! golden bytes pin the layout. It does not read rule sets back, nor know any other
//! expression, set or object.

use std::net::IpAddr;

// netlink
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_CREATE: u16 = 0x400;
pub(crate) const NLMSG_ERROR: u16 = 0x2;
const NLA_F_NESTED: u16 = 0x8000;
// nfnetlink
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_NEWRULE: u16 = 6;
// attributes
const NFTA_TABLE_NAME: u16 = 1;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_POLICY: u16 = 5;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
// expressions (each numbers its attributes from 1)
const NFT_REG_1: u32 = 1;
const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
const NFT_PAYLOAD_TRANSPORT_HEADER: u32 = 2;
const NFT_META_L4PROTO: u32 = 16;
const NFT_CMP_EQ: u32 = 0;
/// `fib ... type`: the route type of the looked-up address.
const NFT_FIB_RESULT_ADDRTYPE: u32 = 3;
/// `fib daddr`: look up the destination address (no interface restriction).
const NFTA_FIB_F_DADDR: u32 = 1 << 1;
/// `RTN_LOCAL`: an address of this machine (network namespace).
const RTN_LOCAL: u32 = 2;
const NF_NAT_RANGE_PROTO_SPECIFIED: u32 = 0x2;
const NF_ACCEPT: u32 = 1;
const NF_INET_PRE_ROUTING: u32 = 0;
const NF_INET_LOCAL_OUT: u32 = 3;
/// `priority dstnat`.
const NF_IP_PRI_NAT_DST: i32 = -100;
const IPPROTO_TCP: u8 = 6;

/// The nftables address families cpe uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Ip,
    Ip6,
}

impl Family {
    pub fn of(a: IpAddr) -> Family {
        match a {
            IpAddr::V4(_) => Family::Ip,
            IpAddr::V6(_) => Family::Ip6,
        }
    }

    fn nfproto(self) -> u8 {
        match self {
            Family::Ip => 2,   // NFPROTO_IPV4
            Family::Ip6 => 10, // NFPROTO_IPV6
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Family::Ip => "ip",
            Family::Ip6 => "ip6",
        }
    }
}

/// Attributes, appended in netlink's layout (length, type, value, padding to 4).
#[derive(Default)]
struct Attrs(Vec<u8>);

impl Attrs {
    fn raw(&mut self, kind: u16, value: &[u8]) -> &mut Self {
        let len = 4 + value.len();
        self.0.extend_from_slice(&(len as u16).to_ne_bytes());
        self.0.extend_from_slice(&kind.to_ne_bytes());
        self.0.extend_from_slice(value);
        self.0.resize(self.0.len() + (4 - len % 4) % 4, 0);
        self
    }
    fn str(&mut self, kind: u16, s: &str) -> &mut Self {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        self.raw(kind, &v)
    }
    /// nftables numbers are big-endian.
    fn u32(&mut self, kind: u16, n: u32) -> &mut Self {
        self.raw(kind, &n.to_be_bytes())
    }
    fn nest(&mut self, kind: u16, inner: Attrs) -> &mut Self {
        self.raw(kind | NLA_F_NESTED, &inner.0)
    }
}

fn attrs(f: impl FnOnce(&mut Attrs)) -> Attrs {
    let mut a = Attrs::default();
    f(&mut a);
    a
}

/// A batch of nftables messages, numbered from `seq`.
pub(crate) struct Batch {
    bytes: Vec<u8>,
    next_seq: u32,
    /// Sequence numbers the kernel acknowledges (every message but begin and end).
    pub(crate) acked: Vec<u32>,
}

impl Batch {
    pub(crate) fn new(seq: u32) -> Batch {
        let mut b = Batch {
            bytes: Vec::new(),
            next_seq: seq,
            acked: Vec::new(),
        };
        // Begin and end are nfnetlink's own messages: family unspecified, the subsystem
        // in res_id.
        b.push(
            NFNL_MSG_BATCH_BEGIN,
            NLM_F_REQUEST,
            0,
            &Attrs::default(),
            false,
        );
        b
    }

    fn push(&mut self, kind: u16, flags: u16, family: u8, a: &Attrs, ack: bool) {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        let len = 16 + 4 + a.0.len();
        self.bytes.extend_from_slice(&(len as u32).to_ne_bytes());
        self.bytes.extend_from_slice(&kind.to_ne_bytes());
        self.bytes.extend_from_slice(&flags.to_ne_bytes());
        self.bytes.extend_from_slice(&seq.to_ne_bytes());
        self.bytes.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel's
        self.bytes.push(family);
        self.bytes.push(0); // NFNETLINK_V0
        self.bytes
            .extend_from_slice(&(if ack { 0 } else { NFNL_SUBSYS_NFTABLES }).to_be_bytes());
        self.bytes.extend_from_slice(&a.0);
        if ack {
            self.acked.push(seq);
        }
    }

    fn nft(&mut self, msg: u16, flags: u16, family: Family, a: &Attrs) {
        self.push(
            (NFNL_SUBSYS_NFTABLES << 8) | msg,
            NLM_F_REQUEST | NLM_F_ACK | flags,
            family.nfproto(),
            a,
            true,
        );
    }

    pub(crate) fn add_table(&mut self, family: Family, name: &str) {
        let a = attrs(|a| {
            a.str(NFTA_TABLE_NAME, name);
        });
        self.nft(NFT_MSG_NEWTABLE, NLM_F_CREATE, family, &a);
    }

    pub(crate) fn delete_table(&mut self, family: Family, name: &str) {
        let a = attrs(|a| {
            a.str(NFTA_TABLE_NAME, name);
        });
        self.nft(NFT_MSG_DELTABLE, 0, family, &a);
    }

    /// A base chain `type nat hook HOOK priority dstnat; policy accept`.
    fn add_nat_chain(&mut self, family: Family, table: &str, name: &str, hook: u32) {
        let a = attrs(|a| {
            a.str(NFTA_CHAIN_TABLE, table)
                .str(NFTA_CHAIN_NAME, name)
                .nest(
                    NFTA_CHAIN_HOOK,
                    attrs(|h| {
                        h.u32(NFTA_HOOK_HOOKNUM, hook)
                            .u32(NFTA_HOOK_PRIORITY, NF_IP_PRI_NAT_DST as u32);
                    }),
                )
                .u32(NFTA_CHAIN_POLICY, NF_ACCEPT)
                .str(NFTA_CHAIN_TYPE, "nat");
        });
        self.nft(NFT_MSG_NEWCHAIN, NLM_F_CREATE, family, &a);
    }

    /// `ip daddr VIP tcp dport PORT fib daddr type local redirect to :TO` (or `ip6 daddr`)
    /// in `chain`. The `fib` guard asks the kernel, per packet, whether VIP is an address
    /// of this machine now: once the address is gone (removed, or its lifetime ended while
    /// the agent could not run) the rule matches nothing, whoever left it there.
    fn add_redirect_rule(&mut self, table: &str, chain: &str, r: &crate::Redirect) {
        let family = Family::of(r.vip);
        let (offset, addr) = match r.vip {
            IpAddr::V4(a) => (16, a.octets().to_vec()),
            IpAddr::V6(a) => (24, a.octets().to_vec()),
        };
        let payload = |base, offset, len: usize| {
            expr("payload", |d| {
                d.u32(1, NFT_REG_1) // NFTA_PAYLOAD_DREG
                    .u32(2, base) // BASE
                    .u32(3, offset) // OFFSET
                    .u32(4, len as u32); // LEN
            })
        };
        let cmp_eq = |value: &[u8]| {
            let value = value.to_vec();
            expr("cmp", move |d| {
                d.u32(1, NFT_REG_1) // NFTA_CMP_SREG
                    .u32(2, NFT_CMP_EQ) // OP
                    .nest(
                        3, // DATA
                        attrs(|v| {
                            v.raw(NFTA_DATA_VALUE, &value);
                        }),
                    );
            })
        };
        let exprs = attrs(|l| {
            l.nest(
                NFTA_LIST_ELEM,
                payload(NFT_PAYLOAD_NETWORK_HEADER, offset, addr.len()),
            )
            .nest(NFTA_LIST_ELEM, cmp_eq(&addr))
            .nest(
                NFTA_LIST_ELEM,
                expr("meta", |d| {
                    d.u32(1, NFT_REG_1).u32(2, NFT_META_L4PROTO); // DREG, KEY
                }),
            )
            .nest(NFTA_LIST_ELEM, cmp_eq(&[IPPROTO_TCP]))
            .nest(NFTA_LIST_ELEM, payload(NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2))
            .nest(NFTA_LIST_ELEM, cmp_eq(&r.port.to_be_bytes()))
            .nest(
                NFTA_LIST_ELEM,
                expr("fib", |d| {
                    d.u32(1, NFT_REG_1) // NFTA_FIB_DREG
                        .u32(2, NFT_FIB_RESULT_ADDRTYPE) // RESULT
                        .u32(3, NFTA_FIB_F_DADDR); // FLAGS
                }),
            )
            // The route type is a host-order u32 in the register.
            .nest(NFTA_LIST_ELEM, cmp_eq(&RTN_LOCAL.to_ne_bytes()))
            .nest(
                NFTA_LIST_ELEM,
                expr("immediate", |d| {
                    d.u32(1, NFT_REG_1).nest(
                        2, // NFTA_IMMEDIATE_DATA
                        attrs(|v| {
                            v.raw(NFTA_DATA_VALUE, &r.to_port.to_be_bytes());
                        }),
                    );
                }),
            )
            .nest(
                NFTA_LIST_ELEM,
                expr("redir", |d| {
                    d.u32(1, NFT_REG_1) // NFTA_REDIR_REG_PROTO_MIN
                        .u32(2, NFT_REG_1) // REG_PROTO_MAX
                        .u32(3, NF_NAT_RANGE_PROTO_SPECIFIED); // FLAGS
                }),
            );
        });
        let a = attrs(|a| {
            a.str(NFTA_RULE_TABLE, table)
                .str(NFTA_RULE_CHAIN, chain)
                .nest(NFTA_RULE_EXPRESSIONS, exprs);
        });
        self.nft(
            NFT_MSG_NEWRULE,
            NLM_F_CREATE | 0x800, /* NLM_F_APPEND */
            family,
            &a,
        );
    }

    /// The whole steering for `r`, replacing whatever the table held: add the table (so
    /// the delete cannot fail), delete it, add it again with its chains and rules. One
    /// transaction: the kernel applies all of it or nothing.
    pub(crate) fn replace(&mut self, table: &str, r: &crate::Redirect) {
        let family = Family::of(r.vip);
        self.add_table(family, table);
        self.delete_table(family, table);
        self.add_table(family, table);
        self.add_nat_chain(family, table, "prerouting", NF_INET_PRE_ROUTING);
        self.add_nat_chain(family, table, "output", NF_INET_LOCAL_OUT);
        self.add_redirect_rule(table, "prerouting", r);
        self.add_redirect_rule(table, "output", r);
    }

    pub(crate) fn finish(mut self) -> (Vec<u8>, Vec<u32>) {
        self.push(
            NFNL_MSG_BATCH_END,
            NLM_F_REQUEST,
            0,
            &Attrs::default(),
            false,
        );
        (self.bytes, self.acked)
    }
}

fn expr(name: &str, data: impl FnOnce(&mut Attrs)) -> Attrs {
    attrs(|e| {
        e.str(NFTA_EXPR_NAME, name)
            .nest(NFTA_EXPR_DATA, attrs(data));
    })
}

/// One `NLMSG_ERROR` from the kernel: the sequence number it answers and the errno (0 is
/// an ack).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Answer {
    pub seq: u32,
    pub errno: i32,
}

/// The acks and errors in one datagram (other message types are skipped).
pub(crate) fn answers(mut buf: &[u8]) -> Vec<Answer> {
    let mut out = Vec::new();
    while buf.len() >= 16 {
        let len = u32::from_ne_bytes(buf[0..4].try_into().expect("4 bytes")) as usize;
        let kind = u16::from_ne_bytes(buf[4..6].try_into().expect("2 bytes"));
        if len < 16 || len > buf.len() {
            break;
        }
        // nlmsgerr: the error, then the header of the message it answers.
        if kind == NLMSG_ERROR && len >= 16 + 4 + 16 {
            let error = i32::from_ne_bytes(buf[16..20].try_into().expect("4 bytes"));
            let seq = u32::from_ne_bytes(buf[28..32].try_into().expect("4 bytes"));
            out.push(Answer { seq, errno: -error });
        }
        buf = &buf[(len + 3) & !3..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Redirect;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn attributes_are_padded_to_four_bytes() {
        let a = attrs(|a| {
            a.str(1, "cpe").raw(2, &[6]);
        });
        let mut want = Vec::new();
        want.extend_from_slice(&8u16.to_ne_bytes());
        want.extend_from_slice(&1u16.to_ne_bytes());
        want.extend_from_slice(b"cpe\0");
        want.extend_from_slice(&5u16.to_ne_bytes());
        want.extend_from_slice(&2u16.to_ne_bytes());
        want.extend_from_slice(&[6, 0, 0, 0]);
        assert_eq!(a.0, want);
    }

    /// The rule's expressions as `nft --debug=netlink` shows them for
    /// `ip daddr 10.9.9.9 tcp dport 6443 fib daddr type local redirect to :6444`: the address, the protocol
    /// and the ports are in network order where the kernel compares bytes.
    #[test]
    fn the_rule_carries_address_and_ports_in_network_order() {
        let mut b = Batch::new(100);
        b.add_redirect_rule(
            "cpe",
            "prerouting",
            &Redirect {
                vip: "10.9.9.9".parse().unwrap(),
                port: 6443,
                to_port: 6444,
            },
        );
        let (bytes, acked) = b.finish();
        let h = hex(&bytes);
        assert_eq!(acked, vec![101]);
        for needle in [
            "0a090909",                           // ip daddr 10.9.9.9
            hex(&6443u16.to_be_bytes()).as_str(), // 0x192b
            hex(&6444u16.to_be_bytes()).as_str(),
            hex(b"redir\0").as_str(),
            hex(b"immediate\0").as_str(),
        ] {
            assert!(h.contains(needle), "{needle} in {h}");
        }
        // begin (20 bytes) and end (20 bytes) frame the rule.
        assert_eq!(u32::from_ne_bytes(bytes[0..4].try_into().unwrap()), 20);
        assert_eq!(
            &bytes[bytes.len() - 20 + 4..bytes.len() - 20 + 6],
            &NFNL_MSG_BATCH_END.to_ne_bytes()
        );
        // the rule message: nftables subsystem, NEWRULE, family ip
        let rule = &bytes[20..];
        assert_eq!(
            u16::from_ne_bytes(rule[4..6].try_into().unwrap()),
            (10 << 8) | 6
        );
        assert_eq!(rule[16], 2);
    }

    /// The guard, byte for byte as `nft` sends `fib daddr type local` (x86's byte order):
    /// `fib` with DREG 1, RESULT 3 (ADDRTYPE), FLAGS 2 (DADDR), then `cmp eq` against
    /// RTN_LOCAL (2) in host order, both before the redirect.
    #[cfg(target_endian = "little")]
    #[test]
    fn the_rule_is_guarded_by_fib_daddr_type_local_before_the_redirect() {
        let mut b = Batch::new(1);
        b.add_redirect_rule(
            "cpe",
            "output",
            &Redirect {
                vip: "fd00::9".parse().unwrap(),
                port: 6443,
                to_port: 6444,
            },
        );
        let h = hex(&b.finish().0);
        let fib = concat!(
            "0800", "0100", "66696200", // NFTA_EXPR_NAME "fib"
            "1c00", "0280", // NFTA_EXPR_DATA, nested, 24 bytes inside
            "0800", "0100", "00000001", // NFTA_FIB_DREG reg 1
            "0800", "0200", "00000003", // NFTA_FIB_RESULT addrtype
            "0800", "0300", "00000002", // NFTA_FIB_FLAGS daddr
        );
        let local = concat!(
            "0c00", "0380", // NFTA_CMP_DATA, nested
            "0800", "0100", "02000000", // NFTA_DATA_VALUE RTN_LOCAL, host order
        );
        let at = |needle: &str| h.find(needle).unwrap_or_else(|| panic!("{needle} in {h}"));
        assert!(at(fib) < at(local), "{h}");
        assert!(at(local) < at(&hex(b"immediate\0")), "{h}");
        assert!(at(&hex(&6443u16.to_be_bytes())) < at(fib), "{h}");
        assert_eq!(h.matches(&hex(b"fib\0")).count(), 1);
    }

    #[test]
    fn replace_is_one_transaction_of_seven_messages() {
        let mut b = Batch::new(1);
        b.replace(
            "cpe",
            &Redirect {
                vip: "fd00::9".parse().unwrap(),
                port: 6443,
                to_port: 6444,
            },
        );
        let (bytes, acked) = b.finish();
        assert_eq!(acked, (2..=8).collect::<Vec<_>>());
        let h = hex(&bytes);
        assert!(h.contains("fd000000000000000000000000000009"));
        assert!(h.contains(&hex(b"nat\0")));
    }

    #[test]
    fn answers_are_read_with_their_sequence_and_errno() {
        let mut d = Vec::new();
        for (seq, err) in [(7u32, 0i32), (8, -2)] {
            d.extend_from_slice(&36u32.to_ne_bytes());
            d.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
            d.extend_from_slice(&0u16.to_ne_bytes());
            d.extend_from_slice(&seq.to_ne_bytes());
            d.extend_from_slice(&0u32.to_ne_bytes());
            d.extend_from_slice(&err.to_ne_bytes());
            d.extend_from_slice(&[0; 8]);
            d.extend_from_slice(&seq.to_ne_bytes());
            d.extend_from_slice(&[0; 4]);
        }
        assert_eq!(
            answers(&d),
            vec![Answer { seq: 7, errno: 0 }, Answer { seq: 8, errno: 2 }]
        );
        assert!(answers(&d[..10]).is_empty());
    }
}
