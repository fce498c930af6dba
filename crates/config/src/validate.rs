//! The path the rest of cpe has always imported the rules by (`cpe_config::validate::…`):
//! it re-exports loading ([`crate::load`]), the defaults ([`crate::defaults`]) and the
//! rules with their name predicates ([`crate::rules`]). It holds no code of its own.

pub use crate::defaults::*;
pub use crate::load::*;
pub use crate::rules::{
    check, etcd::is_etcd_url, is_dns_name, is_interface_name, is_object_name, parse_address,
    AddressError,
};
