//! Raw rtnetlink dumps from sockets opened inside other network namespaces.
//!
//! A socket belongs to the namespace it was created in, whatever thread later uses it. So
//! [`NlSocket::open_in`] creates it on a short-lived thread that first enters the namespace
//! (`setns(2)`); afterwards one observer thread can dump the addresses of every host back to
//! back, a fraction of a millisecond apart, without forking `ip` hundreds of times a second.
//! That closeness matters: sampling hosts far apart in time could report two holders of a VIP
//! that was only moving.
//!
//! Only what the observers need: IPv4 addresses (`RTM_GETADDR`) and neighbour entries
//! (`RTM_GETNEIGH`). Messages are parsed by hand (a header, a fixed struct, attributes).

use anyhow::{bail, Context, Result};
use std::io::Read;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const RTM_NEWADDR: u16 = 20;
const RTM_GETADDR: u16 = 22;
const RTM_NEWNEIGH: u16 = 28;
const RTM_GETNEIGH: u16 = 30;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const IFA_LOCAL: u16 = 2;
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;

/// A NETLINK_ROUTE socket bound to one namespace.
#[derive(Debug)]
pub struct NlSocket {
    sock: socket2::Socket,
    seq: u32,
    buf: Vec<u8>,
}

/// One neighbour entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbour {
    pub dst: Ipv4Addr,
    /// Lower-case `aa:bb:..`; empty when the entry has none (INCOMPLETE, FAILED).
    pub mac: String,
    /// NUD_* bits (0x02 REACHABLE, 0x04 STALE, 0x08 DELAY, 0x10 PROBE, 0x20 FAILED, ...).
    pub state: u16,
}

impl NlSocket {
    /// Opens a socket inside the namespace at `ns_path` (e.g. `/run/netns/NAME`).
    pub fn open_in(ns_path: &Path) -> Result<NlSocket> {
        let path = ns_path.to_path_buf();
        let sock = std::thread::spawn(move || -> Result<socket2::Socket> {
            enter_netns(&path)?;
            let s = socket2::Socket::new(
                socket2::Domain::from(libc::AF_NETLINK),
                socket2::Type::RAW,
                Some(socket2::Protocol::from(libc::NETLINK_ROUTE)),
            )?;
            Ok(s)
        })
        .join()
        .map_err(|_| anyhow::anyhow!("netlink opener thread panicked"))??;
        sock.set_read_timeout(Some(Duration::from_secs(2)))?;
        Ok(NlSocket {
            sock,
            seq: 0,
            buf: vec![0; 64 * 1024],
        })
    }

    /// Every IPv4 address on every interface of the namespace.
    pub fn ipv4_addrs(&mut self) -> Result<Vec<Ipv4Addr>> {
        // struct ifaddrmsg { family, prefixlen, flags, scope: u8; index: u32 }
        let body = [libc::AF_INET as u8, 0, 0, 0, 0, 0, 0, 0];
        let mut out = Vec::new();
        self.dump(RTM_GETADDR, &body, |ty, payload| {
            if ty == RTM_NEWADDR && payload.len() >= 8 {
                for (t, v) in attrs(&payload[8..]) {
                    if t == IFA_LOCAL && v.len() == 4 {
                        out.push(Ipv4Addr::new(v[0], v[1], v[2], v[3]));
                    }
                }
            }
        })?;
        Ok(out)
    }

    /// Every IPv4 neighbour entry of the namespace.
    pub fn ipv4_neighbours(&mut self) -> Result<Vec<Neighbour>> {
        // struct ndmsg { family, pad1: u8; pad2: u16; ifindex: i32; state: u16; flags, type: u8 }
        let mut body = [0u8; 12];
        body[0] = libc::AF_INET as u8;
        let mut out = Vec::new();
        self.dump(RTM_GETNEIGH, &body, |ty, payload| {
            if ty == RTM_NEWNEIGH && payload.len() >= 12 {
                let state = u16::from_ne_bytes([payload[8], payload[9]]);
                let mut dst = None;
                let mut mac = String::new();
                for (t, v) in attrs(&payload[12..]) {
                    if t == NDA_DST && v.len() == 4 {
                        dst = Some(Ipv4Addr::new(v[0], v[1], v[2], v[3]));
                    }
                    if t == NDA_LLADDR {
                        mac = v
                            .iter()
                            .map(|b| format!("{b:02x}"))
                            .collect::<Vec<_>>()
                            .join(":");
                    }
                }
                if let Some(dst) = dst {
                    out.push(Neighbour { dst, mac, state });
                }
            }
        })?;
        Ok(out)
    }

    fn dump(&mut self, ty: u16, body: &[u8], mut each: impl FnMut(u16, &[u8])) -> Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let len = 16 + body.len();
        let mut req = Vec::with_capacity(len);
        req.extend_from_slice(&(len as u32).to_ne_bytes());
        req.extend_from_slice(&ty.to_ne_bytes());
        req.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
        req.extend_from_slice(&seq.to_ne_bytes());
        req.extend_from_slice(&0u32.to_ne_bytes());
        req.extend_from_slice(body);
        // Unconnected and unbound: the kernel autobinds and sends to itself (portid 0).
        self.sock.send(&req).context("netlink send")?;
        loop {
            let n = (&self.sock).read(&mut self.buf).context("netlink recv")?;
            let mut off = 0;
            while off + 16 <= n {
                let b = &self.buf[off..n];
                let mlen = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
                let mty = u16::from_ne_bytes([b[4], b[5]]);
                let mseq = u32::from_ne_bytes([b[8], b[9], b[10], b[11]]);
                if mlen < 16 || mlen > b.len() {
                    bail!("malformed netlink message (length {mlen})");
                }
                if mseq == seq {
                    match mty {
                        NLMSG_DONE => return Ok(()),
                        NLMSG_ERROR => {
                            let code = i32::from_ne_bytes([b[16], b[17], b[18], b[19]]);
                            if code != 0 {
                                bail!("netlink error {code}");
                            }
                            return Ok(());
                        }
                        _ => each(mty, &b[16..mlen]),
                    }
                }
                off += (mlen + 3) & !3;
            }
        }
    }
}

/// Route attributes (type, value) of a netlink payload, nested attributes not expanded.
fn attrs(mut b: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while b.len() >= 4 {
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        let ty = u16::from_ne_bytes([b[2], b[3]]) & 0x3fff;
        if len < 4 || len > b.len() {
            break;
        }
        out.push((ty, &b[4..len]));
        let next = (len + 3) & !3;
        if next >= b.len() {
            break;
        }
        b = &b[next..];
    }
    out
}

/// Moves the calling thread into the network namespace at `ns_path`. Only that thread (and
/// threads it starts afterwards) is affected; sockets it creates belong to that namespace.
pub fn enter_netns(ns_path: &Path) -> Result<()> {
    let f = std::fs::File::open(ns_path)
        .with_context(|| format!("opening namespace {}", ns_path.display()))?;
    nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
        .with_context(|| format!("setns into {}", ns_path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attrs_walks_aligned_attributes_and_stops_at_garbage() {
        // IFA_LOCAL 10.0.0.1 (len 8), then a 5-byte attribute padded to 8, then a truncated one.
        let mut b = vec![8, 0, 2, 0, 10, 0, 0, 1];
        b.extend_from_slice(&[5, 0, 3, 0, 7, 0, 0, 0]);
        b.extend_from_slice(&[9, 0, 1, 0]);
        let a = attrs(&b);
        assert_eq!(a.len(), 2);
        assert_eq!(a[0], (2, &[10u8, 0, 0, 1][..]));
        assert_eq!(a[1], (3, &[7u8][..]));
    }
}
