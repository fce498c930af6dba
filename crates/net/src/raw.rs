//! An `AF_PACKET` raw socket bound to one interface and one ethertype: sends whole
//! Ethernet frames built by [`crate::packet`] and receives frames for the probe. This is
//! the only module with `unsafe` (the socket calls libc does not wrap safely); every block
//! says why it is sound. It does not build or parse packets.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use tokio::io::unix::AsyncFd;

/// A raw link-layer socket on one interface for one ethertype.
pub struct PacketSocket {
    fd: AsyncFd<OwnedFd>,
}

impl std::fmt::Debug for PacketSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacketSocket")
            .field("fd", &self.fd.get_ref().as_raw_fd())
            .finish()
    }
}

impl PacketSocket {
    /// Opens and binds the socket (needs `CAP_NET_RAW`). Must run inside a tokio runtime.
    /// `ethertype` selects what [`PacketSocket::recv`] gets; 0 receives nothing, for a
    /// socket that only sends (the kernel then queues no copy of every ARP on the segment).
    pub fn open(ifindex: u32, ethertype: u16) -> io::Result<Self> {
        let proto = ethertype.to_be();
        // SAFETY: plain socket(2) call with constant arguments; the result is checked
        // before it is used as a descriptor.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                proto as libc::c_int,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh, valid descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: the pointer and length describe `sll`, which lives across the call.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is an open socket owned by the AsyncFd from here on; OwnedFd
        // always returns that same descriptor and closes it only when dropped with it.
        let fd = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
            .map_err(|e| e.into_parts().1)?;
        Ok(PacketSocket { fd })
    }

    /// Sends one whole Ethernet frame out of the bound interface.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: the pointer and length describe `frame`, borrowed for the call.
        let n = unsafe {
            libc::send(
                self.fd.get_ref().as_raw_fd(),
                frame.as_ptr() as *const libc::c_void,
                frame.len(),
                0,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Receives the next frame into `buf`, returning its length.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.fd.readable().await?;
            let r = guard.try_io(|fd| {
                // SAFETY: the pointer and length describe `buf`, borrowed mutably for
                // the call; the kernel writes at most `buf.len()` bytes.
                let n = unsafe {
                    libc::recv(
                        fd.get_ref().as_raw_fd(),
                        buf.as_mut_ptr() as *mut libc::c_void,
                        buf.len(),
                        0,
                    )
                };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match r {
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }
}
