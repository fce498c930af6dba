//! The listening sockets: one per worker on the same address (`SO_REUSEPORT`), with the
//! options accepted sockets inherit, the port claimed first so that no other process can
//! silently share it; the admin listener; and the file-descriptor limit the connection
//! limit needs.
//!
//! It does not accept connections (that is `conn.rs`, on the workers) or run threads.

use std::io;
use std::net::SocketAddr;
use tokio::net::TcpListener;
use tracing::warn;

/// A listening socket with the options accepted sockets inherit.
fn listen_socket(
    addr: SocketAddr,
    reuse_port: bool,
    backlog: u32,
) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    // A restarted cpe must not wait out TIME_WAIT from its previous life.
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    // Accepted sockets inherit these on Linux: no per-connection system calls for them.
    socket.set_tcp_nodelay(true)?;
    socket.set_keepalive(true)?;
    let _ = socket.set_tcp_keepalive(&crate::forward::keepalive());
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog as i32)?;
    Ok(socket.into())
}

/// `count` listening sockets on `addr`, one per worker. With more than one they share
/// the port through `SO_REUSEPORT` and the kernel spreads new connections over them, so
/// each worker accepts on its own socket with no lock and no thundering herd.
///
/// `SO_REUSEPORT` would also let us join a port that another process (of the same user)
/// already listens on with the same option, silently splitting its traffic. So the port
/// is first taken by a plain socket: if anything listens there, that bind fails with
/// "address in use", as a single listener would. It also turns port 0 into the real port.
pub(crate) fn bind_listeners(
    addr: SocketAddr,
    backlog: u32,
    count: usize,
) -> io::Result<Vec<std::net::TcpListener>> {
    if count <= 1 {
        return Ok(vec![listen_socket(addr, false, backlog)?]);
    }
    let addr = {
        let probe = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            None,
        )?;
        probe.set_reuse_address(true)?;
        probe.bind(&addr.into())?;
        probe
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("bound socket has no IP address"))?
    };
    (0..count)
        .map(|_| listen_socket(addr, true, backlog))
        .collect()
}

/// The `also` addresses at `primary`'s port, `count` sockets each, joined to the
/// primary's: element `i` of the result holds worker `i`'s sockets, one per address.
///
/// An address the host does not have — `[::1]` with IPv6 disabled
/// (`EADDRNOTAVAIL`), no IPv6 at all (`EAFNOSUPPORT`) — is skipped with a warning: the
/// primary still serves, and clients that resolve `localhost` to it fall back to the
/// other family at once (connect fails immediately, there is nothing to wait for). An
/// address another process holds is an error, as for the primary: a stranger answering
/// on `localhost`'s other family would receive this node's API traffic.
pub(crate) fn bind_also(
    primary: Vec<std::net::TcpListener>,
    listen: SocketAddr,
    also: &[std::net::IpAddr],
    backlog: u32,
    count: usize,
) -> Result<(Vec<Vec<std::net::TcpListener>>, Vec<SocketAddr>), crate::LbError> {
    let mut per_worker: Vec<Vec<std::net::TcpListener>> =
        primary.into_iter().map(|l| vec![l]).collect();
    let mut bound = Vec::new();
    for ip in also {
        let addr = SocketAddr::new(*ip, listen.port());
        match bind_listeners(addr, backlog, count) {
            Ok(ls) => {
                for (w, l) in per_worker.iter_mut().zip(ls) {
                    w.push(l);
                }
                bound.push(addr);
            }
            Err(e) if family_unavailable(&e) => warn!(
                address = %addr,
                error = %e,
                "not listening on {addr}: this host has no such address (IPv6 disabled?); serving on {listen} only"
            ),
            Err(error) => return Err(crate::LbError::Listen { addr, error }),
        }
    }
    Ok((per_worker, bound))
}

/// The host lacks the address or its family (not: someone else holds it).
fn family_unavailable(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::AddrNotAvailable
        || e.raw_os_error() == Some(nix::errno::Errno::EAFNOSUPPORT as i32)
}

/// One listener on the caller's runtime (the admin listener).
pub(crate) fn bind_listener(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    TcpListener::from_std(listen_socket(addr, false, backlog)?)
}

/// Descriptors kept for the load balancer's own work when clients press: health checks,
/// backend connects of accepted connections, the admin listener (at most
/// [`cpe_admin::DEFAULT_MAX_CONNECTIONS`]), logs and DNS.
pub const FD_RESERVE: u64 = 64 + cpe_admin::DEFAULT_MAX_CONNECTIONS as u64;

/// The soft descriptor limit less [`FD_RESERVE`] (read now: call after
/// [`raise_fd_limit`]). A client connection whose descriptor number reaches it is closed
/// at once: the kernel hands out the lowest free number, so a descriptor numbered `n`
/// means `0..n` are all taken and fewer than the reserve are left.
pub(crate) fn fd_ceiling() -> u64 {
    use nix::sys::resource::{getrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, _)) => soft
            .saturating_sub(FD_RESERVE)
            .max(FD_RESERVE.min(soft / 2)),
        Err(_) => u64::MAX,
    }
}

/// Each proxied connection costs two file descriptors: raises the soft limit towards the
/// hard one so that `max_connections` can be reached, and warns when the hard limit is too
/// low.
pub fn raise_fd_limit(max_connections: usize) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let want = (max_connections as u64)
        .saturating_mul(2)
        .saturating_add(256);
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let target = want.min(hard);
        if target > soft {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, target, hard);
        }
        if want > hard {
            warn!(
                max_connections,
                fd_limit = hard,
                "the file descriptor limit is below 2 x max connections + 256: raise it (ulimit -n, LimitNOFILE)"
            );
        }
    }
}
