//! Helpers shared by the `cpe` binary's loopback tests (no root): the binary under test
//! and a free loopback port.
#![allow(dead_code)] // each test binary uses what it needs

use std::net::{SocketAddr, TcpListener};
use std::process::Command;

/// The `cpe` binary built for these tests.
pub fn cpe() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cpe"))
}

/// A loopback address whose port was free a moment ago.
pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}
