//! Can a port be bound, and if not, who holds it.
//!
//! The bind test is the one kubeadm's preflight makes (`net.Listen("tcp", ":PORT")` in
//! Go): a listening socket on the IPv6 wildcard with `IPV6_V6ONLY` off, so that it also
//! conflicts with any IPv4 listener, and `SO_REUSEADDR` on as Go sets it, so that
//! connections lingering in TIME_WAIT do not count as "in use". Without IPv6 it binds
//! `0.0.0.0`. The socket is closed at once.
//!
//! The holder is found the way `ss -p` finds it: the socket's inode from
//! `/proc/net/tcp{,6}` (this network namespace's sockets), then the process whose
//! `/proc/PID/fd/*` links to `socket:[INODE]`. Processes whose descriptors cannot be read
//! (another user, when not root) are simply not named.

use crate::facts::{Bind, Holder};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

/// Binds `port` on all addresses and says what happened.
pub fn bind_all(port: u16) -> Bind {
    match try_bind(port) {
        Ok(()) => Bind::Free,
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Bind::InUse {
            holders: holders(port),
        },
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Bind::Denied,
        Err(e) => Bind::Error(e.to_string()),
    }
}

fn try_bind(port: u16) -> io::Result<()> {
    match listen(
        Domain::IPV6,
        SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)),
    ) {
        // No IPv6 on this host (module not loaded, or disabled): the IPv4 wildcard is all
        // there is.
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc_codes::EAFNOSUPPORT) | Some(libc_codes::EADDRNOTAVAIL)
            ) =>
        {
            listen(
                Domain::IPV4,
                SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)),
            )
        }
        other => other,
    }
}

/// The two errno values we branch on (kept here rather than pulling in libc for them).
mod libc_codes {
    pub const EAFNOSUPPORT: i32 = 97;
    pub const EADDRNOTAVAIL: i32 = 99;
}

fn listen(domain: Domain, addr: SocketAddr) -> io::Result<()> {
    let s = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    if domain == Domain::IPV6 {
        s.set_only_v6(false)?;
    }
    s.set_reuse_address(true)?;
    s.bind(&SockAddr::from(addr))?;
    s.listen(1)?;
    Ok(())
}

/// The processes holding a TCP socket bound to `port` in this network namespace.
pub fn holders(port: u16) -> Vec<Holder> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(table) {
            inodes.extend(socket_inodes(&text, port));
        }
    }
    if inodes.is_empty() {
        return Vec::new();
    }
    let mut out: Vec<Holder> = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return out;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path())
                .ok()
                .and_then(|l| l.to_str().and_then(parse_socket_link))
                .is_some_and(|ino| inodes.contains(&ino))
        });
        if holds {
            let name = std::fs::read_to_string(p.path().join("comm"))
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "?".into());
            out.push(Holder { pid, name });
        }
    }
    out.sort_by_key(|h| h.pid);
    out
}

/// `socket:[12345]` → 12345.
fn parse_socket_link(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The inodes of the sockets in a `/proc/net/tcp{,6}` table whose local port is `port`
/// (listening or merely bound: either makes a bind fail). Inode 0 is a socket no process
/// owns any more (TIME_WAIT), skipped.
pub fn socket_inodes(table: &str, port: u16) -> Vec<u64> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local = f.get(1)?;
            let (_, p) = local.rsplit_once(':')?;
            let p = u16::from_str_radix(p, 16).ok()?;
            let state = *f.get(3)?;
            // 0A LISTEN, 07 CLOSE (bound, not listening/connected).
            if p != port || !(state == "0A" || state == "07") {
                return None;
            }
            let inode: u64 = f.get(9)?.parse().ok()?;
            (inode != 0).then_some(inode)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1923 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 34567 1 0000000000000000 100 0 0 10 0
   1: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1111 1 0000000000000000 100 0 0 10 0
   2: 0100007F:1923 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 999 1 0000000000000000 100 0 0 10 0
   3: 0100007F:1923 0100007F:C351 06 00000000:00000000 03:00000000 00000000     0        0 0 3 0000000000000000
";

    #[test]
    fn finds_listening_inodes_on_the_port_only() {
        // 0x1923 = 6435; the established (01) and TIME_WAIT (06) rows do not count.
        assert_eq!(socket_inodes(TCP, 6435), vec![34567]);
        assert_eq!(socket_inodes(TCP, 22), vec![1111]);
        assert!(socket_inodes(TCP, 6443).is_empty());
        assert!(socket_inodes("", 6443).is_empty());
    }

    #[test]
    fn parses_socket_links() {
        assert_eq!(parse_socket_link("socket:[34567]"), Some(34567));
        assert_eq!(parse_socket_link("pipe:[34567]"), None);
        assert_eq!(parse_socket_link("/dev/null"), None);
    }

    #[test]
    fn a_real_listener_is_found_with_its_process() {
        // Port 0: the kernel picks a free one; then our own listener must be reported
        // as in use, held by this very process.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        match bind_all(port) {
            Bind::InUse { holders } => {
                let me = std::process::id();
                assert!(holders.iter().any(|h| h.pid == me), "{holders:?}");
            }
            other => panic!("expected in use, got {other:?}"),
        }
        drop(l);
        assert_eq!(bind_all(port), Bind::Free);
    }
}
