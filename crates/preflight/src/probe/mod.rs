//! The probes: each gathers one kind of fact from the host or the network and returns it
//! as plain data ([`crate::facts`]). None of them decides pass or fail.

pub mod caps;
pub mod dad;
pub mod etcd;
pub mod iface;
pub mod net;
pub mod ports;
pub mod tls;
