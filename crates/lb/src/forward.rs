//! Moving bytes between a client and a backend, untouched.
//!
//! Each direction is a loop of "wait until readable, read, write all" on the two sockets
//! directly (no split halves, no framing). The buffer is taken only while bytes flow and
//! given back as soon as the socket is drained: an idle connection (a watch, `logs -f`)
//! holds no buffer at all, which is what keeps 10,000 idle connections small.
//! `tokio::io::copy_bidirectional` would hold two 8 KiB buffers per connection for its
//! whole life.
//!
//! Half-close: end of stream from one side becomes `shutdown(SHUT_WR)` on the other, and
//! the opposite direction keeps flowing until it ends too (once both have ended, closing
//! the sockets sends the FINs). Bytes the peer sent just before its FIN go out with
//! `MSG_MORE`, so they leave in one segment with the FIN passed on. An error (reset) on
//! either side ends both.
//!
//! Bulk: when one read fills the whole buffer, the flow is bulk and the direction switches
//! to `splice(2)` through a pipe (see [`splice`]): the bytes then move socket → pipe →
//! socket inside the kernel, never copied to user space. It switches back when reads get
//! small again, closing the pipe, so idle connections hold no pipe either.
//!
//! Byte counts go to the caller's [`Tally`] in batches (every [`FLUSH`] bytes, and what is
//! left when the connection ends or is cut by a drain), so a per-backend counter shared by
//! the workers is written once per 64 KiB, not once per read.
//!
//! It does not time out idle connections (long watches are the normal case) and does not
//! parse anything.

use socket2::SockRef;
use std::io;
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Bytes read at once. Large enough that bulk transfers make few system calls; only
/// connections moving data at this instant hold one.
const BUF: usize = 64 * 1024;

/// TCP keepalive: a peer that vanished without a FIN or RST is noticed in about a minute
/// and a half instead of never, and NAT/conntrack state stays fresh on idle watches.
pub fn tune(s: &TcpStream) {
    let _ = s.set_nodelay(true);
    let _ = SockRef::from(s).set_tcp_keepalive(&keepalive());
}

/// Idle 30 s before the first probe, then every 10 s (the kernel's default count of 9).
/// Interval and time only: one system call less per connection than setting the count.
pub fn keepalive() -> socket2::TcpKeepalive {
    socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(30))
        .with_interval(Duration::from_secs(10))
}

/// Bytes moved each way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Moved {
    pub to_backend: u64,
    pub to_client: u64,
}

/// Where the bytes moved are counted (per backend, in `cpe lb`).
pub trait Tally {
    fn add(&self, to_backend: u64, to_client: u64);
}

/// Counting nothing (tests, benchmarks of the forwarding alone).
impl Tally for () {
    fn add(&self, _: u64, _: u64) {}
}

/// Bytes counted locally before they are handed to the [`Tally`].
pub const FLUSH: u64 = 64 * 1024;

/// Bytes moved and not yet handed to the tally; hands them over when dropped, so a
/// connection cut by a drain (its future dropped) is counted too.
struct Unflushed<'a, T: Tally> {
    tally: &'a T,
    to_backend: u64,
    to_client: u64,
}

impl<T: Tally> Unflushed<'_, T> {
    fn flush(&mut self) {
        if self.to_backend > 0 || self.to_client > 0 {
            self.tally.add(self.to_backend, self.to_client);
            self.to_backend = 0;
            self.to_client = 0;
        }
    }
}

impl<T: Tally> Drop for Unflushed<'_, T> {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Forwards until both directions have ended, or either fails.
///
/// One hand-written poll loop for both directions, driven by the sockets' readiness
/// (`poll_read_ready` / `poll_write_ready`) rather than by stored `readable()` futures:
/// an idle connection costs two small [`Dir`] states, not four readiness futures.
pub async fn both_ways(
    client: &TcpStream,
    backend: &TcpStream,
    tally: &impl Tally,
) -> io::Result<Moved> {
    let mut up = Dir::default();
    let mut down = Dir::default();
    let mut counted = Unflushed {
        tally,
        to_backend: 0,
        to_client: 0,
    };
    std::future::poll_fn(|cx| {
        let before = (up.total, down.total);
        let r = poll_both(cx, client, backend, &mut up, &mut down);
        counted.to_backend += up.total - before.0;
        counted.to_client += down.total - before.1;
        if counted.to_backend + counted.to_client >= FLUSH {
            counted.flush();
        }
        r
    })
    .await?;
    Ok(Moved {
        to_backend: up.total,
        to_client: down.total,
    })
}

/// One wake-up of [`both_ways`]: both directions polled, half-closes passed on.
fn poll_both(
    cx: &mut Context<'_>,
    client: &TcpStream,
    backend: &TcpStream,
    up: &mut Dir,
    down: &mut Dir,
) -> Poll<io::Result<()>> {
    if !up.eof {
        if let Poll::Ready(Err(e)) = poll_dir(cx, client, backend, up) {
            return Poll::Ready(Err(e));
        }
    }
    if !down.eof {
        if let Poll::Ready(Err(e)) = poll_dir(cx, backend, client, down) {
            return Poll::Ready(Err(e));
        }
    }
    pass_half_close(up, backend, down);
    pass_half_close(down, client, up);
    if up.done && down.done {
        Poll::Ready(Ok(()))
    } else {
        Poll::Pending
    }
}

/// End of stream read in direction `d`: tell the other side with `shutdown(SHUT_WR)`,
/// unless the opposite direction has ended too: the connection is then over, and
/// closing both sockets sends the FINs anyway (one system call less).
fn pass_half_close(d: &mut Dir, to: &TcpStream, other: &Dir) {
    if !d.eof || d.done {
        return;
    }
    if !other.eof {
        let _ = SockRef::from(to).shutdown(Shutdown::Write);
    }
    d.done = true;
}

/// Use `splice(2)` for bulk flows (Linux). A switch for benchmarks and for kernels where
/// it misbehaves (`cpe lb --no-splice`).
static SPLICE: AtomicBool = AtomicBool::new(cfg!(target_os = "linux"));

/// Bytes moved by `splice(2)` since start (all connections), for `/status` and tests.
static SPLICED: AtomicU64 = AtomicU64::new(0);

pub fn spliced_bytes() -> u64 {
    SPLICED.load(Ordering::Relaxed)
}

pub fn set_splice(on: bool) {
    SPLICE.store(on && cfg!(target_os = "linux"), Ordering::Relaxed);
}

/// One direction's state.
#[derive(Default)]
struct Dir {
    /// Bytes read and not yet all written (`pos` of them written). Held only while
    /// bytes flow.
    buf: Option<Vec<u8>>,
    pos: usize,
    /// Bulk mode: bytes sit in the pipe (`in_pipe` of them) between the two sockets.
    #[cfg(target_os = "linux")]
    pipe: Option<splice::Pipe>,
    #[cfg(target_os = "linux")]
    in_pipe: usize,
    /// The last splice was small: leave bulk mode once the pipe is empty.
    #[cfg(target_os = "linux")]
    leave_pipe: bool,
    /// The bytes in `buf` are the last: the peer closed after them.
    last: bool,
    /// End of stream read; the half-close is passed on by [`pass_half_close`].
    eof: bool,
    done: bool,
    total: u64,
}

fn poll_dir(
    cx: &mut Context<'_>,
    from: &TcpStream,
    to: &TcpStream,
    d: &mut Dir,
) -> Poll<io::Result<()>> {
    loop {
        // 1. Write out what was read, before reading more.
        if let Some(b) = &d.buf {
            if d.pos < b.len() {
                ready!(to.poll_write_ready(cx))?;
                let sent = if d.last {
                    // The sender closed after these bytes: hold them back (MSG_MORE) so
                    // that they leave in one segment with the FIN that follows.
                    to.try_io(Interest::WRITABLE, || {
                        SockRef::from(to)
                            .send_with_flags(&b[d.pos..], libc::MSG_MORE | libc::MSG_NOSIGNAL)
                    })
                } else {
                    to.try_write(&b[d.pos..])
                };
                match sent {
                    Ok(n) => d.pos += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Poll::Ready(Err(e)),
                }
                continue;
            }
            // All written. A short read means the flow is not bulk: give the buffer back
            // while waiting. A full one means bulk: switch to splice when allowed.
            if b.len() < BUF {
                d.buf = None;
            } else {
                #[cfg(target_os = "linux")]
                if SPLICE.load(Ordering::Relaxed) {
                    if let Ok(p) = splice::Pipe::new() {
                        d.pipe = Some(p);
                        d.buf = None;
                    }
                }
            }
        }
        #[cfg(target_os = "linux")]
        if let Some(p) = &d.pipe {
            if d.in_pipe > 0 {
                ready!(to.poll_write_ready(cx))?;
                match to.try_io(Interest::WRITABLE, || p.to_socket(to, d.in_pipe)) {
                    Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Ok(m) => {
                        d.in_pipe -= m;
                        SPLICED.fetch_add(m as u64, Ordering::Relaxed);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Poll::Ready(Err(e)),
                }
                continue;
            }
            if d.leave_pipe {
                d.pipe = None;
                d.leave_pipe = false;
                continue;
            }
            // 2a. Bulk: socket -> pipe.
            ready!(from.poll_read_ready(cx))?;
            match from.try_io(Interest::READABLE, || p.from_socket(from)) {
                Ok(0) => {
                    end_of_stream(d);
                    return Poll::Ready(Ok(()));
                }
                Ok(n) => {
                    d.in_pipe = n;
                    d.total += n as u64;
                    d.leave_pipe = n < splice::SMALL;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            continue;
        }
        // 2b. Read into a buffer taken now (capacity only, never zeroed).
        ready!(from.poll_read_ready(cx))?;
        let closing = peer_closed(cx, from);
        let b = d.buf.get_or_insert_with(|| Vec::with_capacity(BUF));
        b.clear();
        d.pos = 0;
        // A read shorter than the buffer means the socket is drained: clear its
        // readiness now (as tokio's own `poll_read` does) instead of paying one more
        // `read` that returns EAGAIN. Data arriving meanwhile raises a new event, so no
        // wake-up is lost.
        let mut got: io::Result<usize> = Ok(0);
        let _ = from.try_io(Interest::READABLE, || {
            got = from.try_read_buf(b);
            match &got {
                Ok(n) if *n > 0 && *n < BUF => Err(io::ErrorKind::WouldBlock.into()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    Err(io::ErrorKind::WouldBlock.into())
                }
                _ => Ok(()),
            }
        });
        match got {
            Ok(0) => {
                d.buf = None;
                end_of_stream(d);
                return Poll::Ready(Ok(()));
            }
            Ok(n) => {
                d.total += n as u64;
                d.last = closing && n < BUF;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => d.buf = None,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Poll::Ready(Err(e)),
        }
    }
}

/// Has the peer's FIN arrived (epoll said `EPOLLRDHUP` with the data)? Then a short read
/// has taken the last bytes. Asked only when the socket is known readable, so the
/// readiness future answers at once from the flags tokio already holds (no system call,
/// no waiter registered).
fn peer_closed(cx: &mut Context<'_>, s: &TcpStream) -> bool {
    let ready = std::pin::pin!(s.ready(Interest::READABLE));
    matches!(std::future::Future::poll(ready, cx), Poll::Ready(Ok(r)) if r.is_read_closed())
}

/// End of stream from one side: nothing more to read; [`pass_half_close`] tells the
/// other side.
fn end_of_stream(d: &mut Dir) {
    d.eof = true;
}

#[cfg(target_os = "linux")]
pub mod splice {
    //! Zero-copy forwarding with `splice(2)`: socket → pipe → socket, driven by tokio's
    //! readiness of the two sockets. The pipe is always drained completely before the
    //! next read, so it never needs polling itself.

    use nix::fcntl::{splice, OFlag, SpliceFFlags};
    use std::io;
    use std::os::fd::{AsFd, OwnedFd};
    use tokio::net::TcpStream;

    /// Bytes asked for per splice: the pipe's capacity, raised from the default 64 KiB so
    /// that a bulk flow makes fewer system calls.
    const CHUNK: usize = 256 * 1024;
    /// A splice that moved less than this means the flow is no longer bulk.
    pub const SMALL: usize = 4096;

    pub struct Pipe {
        r: OwnedFd,
        w: OwnedFd,
    }

    impl Pipe {
        pub fn new() -> io::Result<Pipe> {
            let (r, w) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
            // Best effort: an unprivileged process may be capped by pipe-max-size.
            let _ = nix::fcntl::fcntl(&w, nix::fcntl::FcntlArg::F_SETPIPE_SZ(CHUNK as i32));
            Ok(Pipe { r, w })
        }
    }

    fn flags() -> SpliceFFlags {
        SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK
    }

    impl Pipe {
        /// socket -> pipe, at most the pipe's capacity; 0 at end of stream.
        pub fn from_socket(&self, from: &TcpStream) -> io::Result<usize> {
            splice(from.as_fd(), None, self.w.as_fd(), None, CHUNK, flags())
                .map_err(io::Error::from)
        }

        /// pipe -> socket, at most `len`.
        pub fn to_socket(&self, to: &TcpStream, len: usize) -> io::Result<usize> {
            splice(self.r.as_fd(), None, to.as_fd(), None, len, flags()).map_err(io::Error::from)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (s, _) = l.accept().await.unwrap();
        (c, s)
    }

    /// client <-> [a | forward | b] <-> backend
    #[tokio::test]
    async fn bytes_pass_both_ways_and_half_close_propagates() {
        let (mut client, a) = pair().await;
        let (b, mut backend) = pair().await;
        let fwd = tokio::spawn(async move { both_ways(&a, &b, &()).await });

        // 1 MiB up, then the client half-closes; the backend sees EOF and still answers.
        let payload: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
        let p2 = payload.clone();
        let writer = tokio::spawn(async move {
            client.write_all(&p2).await.unwrap();
            client.shutdown().await.unwrap();
            client
        });
        let mut got = Vec::new();
        backend.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, payload);
        backend.write_all(b"answer after half-close").await.unwrap();
        backend.shutdown().await.unwrap();
        let mut client = writer.await.unwrap();
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.unwrap();
        assert_eq!(answer, b"answer after half-close");
        let moved = fwd.await.unwrap().unwrap();
        assert_eq!(moved.to_backend, payload.len() as u64);
        assert_eq!(moved.to_client, 23);
        #[cfg(target_os = "linux")]
        assert!(
            spliced_bytes() > 0,
            "1 MiB in one direction never switched to splice"
        );
    }

    /// HTTP/1.1 with `Connection: close`: the backend answers and closes at once. The
    /// answer leaves with the FIN (MSG_MORE, then the half-close) and must arrive whole,
    /// followed by end of stream, while the client is still open.
    #[tokio::test]
    async fn an_answer_followed_by_the_backends_close_arrives_whole_then_eof() {
        let (mut client, a) = pair().await;
        let (b, mut backend) = pair().await;
        let fwd = tokio::spawn(async move { both_ways(&a, &b, &()).await });
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let mut req = [0u8; 18];
        backend.read_exact(&mut req).await.unwrap();
        let answer: Vec<u8> = (0..3000).map(|i| (i % 253) as u8).collect();
        backend.write_all(&answer).await.unwrap();
        drop(backend);
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut got))
            .await
            .expect("the answer was held back")
            .unwrap();
        assert_eq!(got, answer);
        drop(client);
        let moved = tokio::time::timeout(Duration::from_secs(5), fwd)
            .await
            .expect("forwarder hung after both sides closed")
            .unwrap()
            .unwrap();
        assert_eq!(moved.to_client, 3000);
    }

    /// The client half-closes first; the backend then answers and closes. Both directions
    /// have ended, so no shutdown is sent: dropping the sockets (as the connection task
    /// does) must still deliver the answer and the end of stream.
    #[tokio::test]
    async fn when_both_sides_have_closed_dropping_the_sockets_delivers_the_rest() {
        let (mut client, a) = pair().await;
        let (b, mut backend) = pair().await;
        let fwd = tokio::spawn(async move {
            let r = both_ways(&a, &b, &()).await;
            drop((a, b));
            r
        });
        client.write_all(b"request").await.unwrap();
        client.shutdown().await.unwrap();
        let mut req = Vec::new();
        backend.read_to_end(&mut req).await.unwrap();
        assert_eq!(req, b"request");
        backend.write_all(b"last words").await.unwrap();
        drop(backend);
        let moved = fwd.await.unwrap().unwrap();
        assert_eq!((moved.to_backend, moved.to_client), (7, 10));
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut got))
            .await
            .expect("the last bytes were not delivered")
            .unwrap();
        assert_eq!(got, b"last words");
    }

    #[tokio::test]
    async fn a_reset_ends_both_directions() {
        let (client, a) = pair().await;
        let (b, backend) = pair().await;
        let fwd = tokio::spawn(async move { both_ways(&a, &b, &()).await });
        // The backend dies abruptly (RST): the forwarder ends, the client sees the end.
        SockRef::from(&backend)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(backend);
        let r = tokio::time::timeout(Duration::from_secs(5), fwd)
            .await
            .expect("forwarder hung after a reset")
            .unwrap();
        // Either an error (reset) or a clean end if the RST came as EOF first.
        let _ = r;
        let mut client = client;
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut buf))
            .await
            .expect("client not told");
    }
}

#[cfg(test)]
mod size {
    /// What an idle proxied connection costs in user space is mostly this future: keep it
    /// small (10,000 idle connections x 256 bytes is under 2.5 MiB).
    #[tokio::test]
    async fn the_forwarding_state_of_a_connection_stays_small() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = tokio::net::TcpStream::connect(l.local_addr().unwrap())
            .await
            .unwrap();
        let (b, _) = l.accept().await.unwrap();
        let f = super::both_ways(&a, &b, &());
        let size = std::mem::size_of_val(&f);
        assert!(size <= 256, "both_ways future is {size} bytes");
    }
}
