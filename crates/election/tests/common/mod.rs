//! Shared by the election tests, which each start real etcd members on loopback.

use std::net::TcpListener;

/// A loopback port free at this instant (for an etcd client or peer listener).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
