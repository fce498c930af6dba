//! The VIP's port steering in the kernel, for `cpe vip --load-balance`: an nftables table
//! `cpe` (family `ip` for an IPv4 VIP, `ip6` for an IPv6 one) with two base nat chains at
//! `prerouting` and `output` (priority dstnat), each holding one rule
//! `ip daddr VIP tcp dport PORT fib daddr type local redirect to :LBPORT` (`ip6 daddr` for
//! IPv6), so clients of VIP:PORT — remote ones and this machine's own — reach the load
//! balancer on LBPORT.
//!
//! The guard `fib daddr type local` ([`GUARD`]) is looked up by the kernel for every new
//! connection: the rule steers only while VIP is an address of this machine. The address
//! carries a kernel lifetime that ends at the lease deadline, so a rule left behind by an
//! agent that cannot run (frozen, starved) turns inert by itself when the kernel removes
//! the address: packets for the VIP then take their normal route (to the next holder)
//! instead of this machine's load balancer. Connections redirected before keep their
//! conntrack translation until they end.
//!
//! It speaks nfnetlink itself (`NETLINK_NETFILTER`, one batch per change, every message
//! acknowledged and checked), because the agent ships as one static binary that runs no
//! other program (no `nft`), and the crates that wrap nftables either run `nft -j`
//! (`nftables`), link the C libnftnl (`nftnl`) or are GPL (`rustables`). The few
//! expressions needed are built in [`msg`], pinned by tests; what `nft list ruleset`
//! shows for them is checked by the root test in `tests/`.
//!
//! It does not decide when to steer (the VIP agent installs after adding the address and
//! removes before removing it; the guard is the kernel's backstop, not the agent's
//! order), does not touch any other table, and reads nothing back from the kernel but
//! acknowledgements.

mod msg;

pub use msg::Family;

use std::io::{Read, Write};
use std::net::IpAddr;
use std::time::Duration;

/// The table every rule of cpe lives in (one per family).
pub const TABLE: &str = "cpe";

/// The guard every redirect rule carries, as `nft list ruleset` prints it: the rule only
/// matches while the VIP is an address of this machine.
pub const GUARD: &str = "fib daddr type local";

const NETLINK_NETFILTER: i32 = 12;

/// Where clients of the VIP are sent: TCP to `vip:port` goes to this machine's `to_port`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Redirect {
    pub vip: IpAddr,
    pub port: u16,
    pub to_port: u16,
}

impl std::fmt::Display for Redirect {
    /// As `nft` writes it:
    /// `ip daddr 10.0.0.100 tcp dport 6443 fib daddr type local redirect to :6444`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} daddr {} tcp dport {} {GUARD} redirect to :{}",
            Family::of(self.vip).as_str(),
            self.vip,
            self.port,
            self.to_port
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("cannot open a netfilter netlink socket: {source}{}", hint(.source))]
    Socket { source: std::io::Error },
    #[error("nftables {op}: {source}{}", hint(.source))]
    Io {
        op: &'static str,
        source: std::io::Error,
    },
    #[error("nftables {op}: the kernel refused it: {source}{}", hint(.source))]
    Refused {
        op: &'static str,
        source: std::io::Error,
    },
    #[error("nftables {op}: no answer from the kernel within {timeout:?}")]
    NoAnswer { op: &'static str, timeout: Duration },
}

fn hint(e: &std::io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => " (needs CAP_NET_ADMIN)",
        Some(libc::ENOENT) | Some(libc::EOPNOTSUPP) => {
            " (the kernel lacks nf_tables nat, redirect or fib support: CONFIG_NFT_NAT, \
             CONFIG_NFT_REDIR, CONFIG_NFT_FIB_IPV4/IPV6)"
        }
        _ => "",
    }
}

const TIMEOUT: Duration = Duration::from_secs(2);

/// Installs the steering for `r`, replacing whatever the `cpe` table of its family held,
/// in one transaction (the kernel applies all of it or nothing). Safe to repeat.
pub fn install(r: &Redirect) -> Result<(), NftError> {
    let mut b = msg::Batch::new(seq_base());
    b.replace(TABLE, r);
    transact("install the VIP redirect", b)
}

/// Removes the `cpe` table of `family` with its chains and rules. `Ok(false)` when there
/// was none.
pub fn remove(family: Family) -> Result<bool, NftError> {
    let mut b = msg::Batch::new(seq_base());
    b.delete_table(family, TABLE);
    match transact("remove the VIP redirect", b) {
        Ok(()) => Ok(true),
        Err(NftError::Refused { source, .. }) if source.raw_os_error() == Some(libc::ENOENT) => {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// Removes the `cpe` tables of both families (what an earlier run may have left).
/// Returns the families that had one.
pub fn remove_all() -> Result<Vec<Family>, NftError> {
    let mut had = Vec::new();
    for f in [Family::Ip, Family::Ip6] {
        if remove(f)? {
            had.push(f);
        }
    }
    Ok(had)
}

fn seq_base() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.subsec_nanos() | 1)
}

/// Sends one batch and waits for the ack of every message in it; the first error wins
/// (the kernel applied nothing of the batch then).
fn transact(op: &'static str, batch: msg::Batch) -> Result<(), NftError> {
    let (bytes, acked) = batch.finish();
    let sock = socket2::Socket::new(
        socket2::Domain::from(libc::AF_NETLINK),
        socket2::Type::RAW,
        Some(socket2::Protocol::from(NETLINK_NETFILTER)),
    )
    .map_err(|source| NftError::Socket { source })?;
    sock.set_read_timeout(Some(TIMEOUT))
        .map_err(|source| NftError::Socket { source })?;
    // Unbound and unconnected: the kernel binds it on send and it talks to the kernel.
    (&sock)
        .write_all(&bytes)
        .map_err(|source| NftError::Io { op, source })?;
    let mut pending = acked;
    let mut first_error: Option<i32> = None;
    let mut buf = vec![0u8; 64 * 1024];
    while !pending.is_empty() {
        let n = match (&sock).read(&mut buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(NftError::NoAnswer {
                    op,
                    timeout: TIMEOUT,
                })
            }
            Err(source) => return Err(NftError::Io { op, source }),
        };
        for a in msg::answers(&buf[..n]) {
            if let Some(i) = pending.iter().position(|s| *s == a.seq) {
                pending.remove(i);
                if a.errno != 0 && first_error.is_none() {
                    first_error = Some(a.errno);
                }
            }
        }
        // A refused batch is aborted as a whole: after the first error the kernel may
        // not answer the rest.
        if first_error.is_some() {
            break;
        }
    }
    match first_error {
        None => Ok(()),
        Some(errno) => Err(NftError::Refused {
            op,
            source: std::io::Error::from_raw_os_error(errno),
        }),
    }
}
