//! Addresses and links through rtnetlink (0.24, pinned): look an interface up (index,
//! MAC, up or down, addresses), add the VIP (IPv6 with `IFA_F_NODAD`, so it is usable at
//! once instead of after a second of duplicate-address detection), remove it, and check
//! whether it is still there. The agent polls this every 200 ms rather than subscribing to
//! address and link events: one dump of one interface costs microseconds and a poll cannot
//! miss an event.
//!
//! An address can be given a lifetime ([`Lifetime`]): the kernel itself removes it when the
//! lifetime runs out, so a holder that is frozen, starved or killed together with its guard
//! still loses the VIP at its lease deadline without running an instruction. Adding an
//! address that is already there replaces its lifetime (`NLM_F_REPLACE`), which is how a
//! renewal extends it. It decides nothing: how long a lifetime is comes from the caller.

use crate::packet::Mac;
use crate::NetError;
use futures_util::TryStreamExt;
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage, CacheInfo};
use netlink_packet_route::link::{LinkAttribute, LinkFlags};
use std::net::IpAddr;

/// One interface as the kernel sees it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub index: u32,
    pub mac: Mac,
    /// Administratively up and carrier present (`UP,LOWER_UP`).
    pub up: bool,
    /// Addresses with prefix lengths.
    pub addrs: Vec<(IpAddr, u8)>,
}

/// How long the kernel keeps an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// Until removed (the kernel's `forever`).
    Forever,
    /// Removed by the kernel this many seconds after it was (re)set; at least 1 (the
    /// kernel refuses a valid lifetime of 0).
    Seconds(u32),
}

/// The kernel's "infinite" lifetime (`INFINITY_LIFE_TIME`).
const INFINITY_LIFE_TIME: u32 = u32::MAX;

impl Lifetime {
    /// The longest whole-second lifetime that ends no later than `remaining` from now, or
    /// `None` when less than one second is left (no lifetime can express it: the caller
    /// must remove the address instead).
    pub fn within(remaining: std::time::Duration) -> Option<Lifetime> {
        let secs = remaining.as_secs().min(u64::from(INFINITY_LIFE_TIME - 1));
        (secs >= 1).then_some(Lifetime::Seconds(secs as u32))
    }

    fn cache_info(self) -> Option<CacheInfo> {
        let Lifetime::Seconds(s) = self else {
            return None;
        };
        let mut c = CacheInfo::default();
        // Preferred as long as valid: an IPv6 address stays usable as a source (not
        // "deprecated") until the moment it goes.
        c.ifa_valid = s.clamp(1, INFINITY_LIFE_TIME - 1);
        c.ifa_preferred = c.ifa_valid;
        Some(c)
    }
}

/// A netlink route socket. Cheap to clone.
#[derive(Clone)]
pub struct Netlink {
    handle: rtnetlink::Handle,
}

impl std::fmt::Debug for Netlink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Netlink")
    }
}

fn nl_err(op: &'static str, e: rtnetlink::Error) -> NetError {
    match e {
        rtnetlink::Error::NetlinkError(m) => NetError::Os {
            op,
            source: m.to_io(),
        },
        other => NetError::Netlink {
            op,
            detail: other.to_string(),
        },
    }
}

impl Netlink {
    /// Opens the socket; its connection task runs on the current tokio runtime.
    pub fn connect() -> Result<Self, NetError> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(|source| NetError::Os {
            op: "open a netlink socket",
            source,
        })?;
        tokio::spawn(conn);
        Ok(Netlink { handle })
    }

    /// The interface called `name`, or [`NetError::NoInterface`] listing the ones there are.
    pub async fn interface(&self, name: &str) -> Result<Interface, NetError> {
        let mut links = self.handle.link().get().execute();
        let mut names = Vec::new();
        let mut found = None;
        while let Some(l) = links
            .try_next()
            .await
            .map_err(|e| nl_err("list links", e))?
        {
            let mut lname = None;
            let mut mac = Mac::default();
            for a in &l.attributes {
                match a {
                    LinkAttribute::IfName(n) => lname = Some(n.clone()),
                    LinkAttribute::Address(b) if b.len() == 6 => {
                        mac = Mac(b[..].try_into().expect("6 bytes"))
                    }
                    _ => {}
                }
            }
            let Some(lname) = lname else { continue };
            if lname == name {
                let f = l.header.flags;
                found = Some((
                    l.header.index,
                    mac,
                    f.contains(LinkFlags::Up) && f.contains(LinkFlags::LowerUp),
                ));
            }
            names.push(lname);
        }
        let Some((index, mac, up)) = found else {
            return Err(NetError::NoInterface {
                name: name.to_string(),
                present: names.join(", "),
            });
        };
        Ok(Interface {
            name: name.to_string(),
            index,
            mac,
            up,
            addrs: self.addresses(index).await?,
        })
    }

    /// This machine's own address on `interface`: the one address there whose subnet
    /// holds `vip` ([`crate::own_address`], the rule), read by netlink now. Errors name the
    /// interface and what it has.
    pub async fn own_address(
        &self,
        interface: &str,
        vip: IpAddr,
    ) -> Result<(IpAddr, u8), NetError> {
        let i = self.interface(interface).await?;
        crate::own_address(vip, &i.name, &i.addrs).map_err(NetError::OwnAddress)
    }

    /// Whether interface `index` is up (`UP,LOWER_UP`) and its addresses: one link request
    /// (not a dump of every link, which on a node with many pods is long) and one address
    /// dump filtered to the interface.
    pub async fn state(&self, index: u32) -> Result<(bool, Vec<(IpAddr, u8)>), NetError> {
        let mut links = self.handle.link().get().match_index(index).execute();
        let up = match links
            .try_next()
            .await
            .map_err(|e| nl_err("read the link", e))?
        {
            Some(l) => {
                let f = l.header.flags;
                f.contains(LinkFlags::Up) && f.contains(LinkFlags::LowerUp)
            }
            None => false,
        };
        Ok((up, self.addresses(index).await?))
    }

    /// Addresses on interface `index`.
    pub async fn addresses(&self, index: u32) -> Result<Vec<(IpAddr, u8)>, NetError> {
        let mut s = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        let mut out = Vec::new();
        while let Some(m) = s
            .try_next()
            .await
            .map_err(|e| nl_err("list addresses", e))?
        {
            if let Some(a) = address_of(&m) {
                out.push((a, m.header.prefix_len));
            }
        }
        Ok(out)
    }

    /// Adds `ip/prefix` to interface `index` for ever; already present is fine (its
    /// lifetime is left as it is).
    pub async fn add(&self, index: u32, ip: IpAddr, prefix: u8) -> Result<(), NetError> {
        self.add_for(index, ip, prefix, Lifetime::Forever).await
    }

    /// Adds `ip/prefix` to interface `index` with `lifetime`. With a finite lifetime an
    /// address already there gets the new lifetime (this is how a renewal extends it);
    /// with [`Lifetime::Forever`] an address already there is left as it is.
    pub async fn add_for(
        &self,
        index: u32,
        ip: IpAddr,
        prefix: u8,
        lifetime: Lifetime,
    ) -> Result<(), NetError> {
        let mut req = self.handle.address().add(index, ip, prefix);
        if ip.is_ipv6() {
            // With a lifetime, no prefix route of its own: the kernel would give the
            // subnet's route (shared with the interface's own address, which the VIP must
            // lie in) the address's expiry when that route already expires (SLAAC,
            // DHCPv6), and drop it with the VIP.
            let flags = match lifetime {
                Lifetime::Forever => AddressFlags::Nodad,
                Lifetime::Seconds(_) => AddressFlags::Nodad | AddressFlags::Noprefixroute,
            };
            req.message_mut()
                .attributes
                .push(AddressAttribute::Flags(flags));
        }
        if let Some(ci) = lifetime.cache_info() {
            req.message_mut()
                .attributes
                .push(AddressAttribute::CacheInfo(ci));
            req = req.replace();
        }
        match req.execute().await {
            Ok(()) => Ok(()),
            Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code().abs() == libc::EEXIST => Ok(()),
            Err(e) => Err(nl_err("add the address", e)),
        }
    }

    /// The remaining valid lifetime of `ip` on interface `index` in seconds as the kernel
    /// reports it (`None`: not there; `Some(Lifetime::Forever)`: no lifetime).
    pub async fn lifetime(&self, index: u32, ip: IpAddr) -> Result<Option<Lifetime>, NetError> {
        for m in self.matching(index, ip).await? {
            if address_of(&m) != Some(ip) {
                continue;
            }
            for a in &m.attributes {
                if let AddressAttribute::CacheInfo(c) = a {
                    return Ok(Some(if c.ifa_valid == INFINITY_LIFE_TIME {
                        Lifetime::Forever
                    } else {
                        Lifetime::Seconds(c.ifa_valid)
                    }));
                }
            }
            return Ok(Some(Lifetime::Forever));
        }
        Ok(None)
    }

    /// The kernel's messages for `ip` on interface `index` (none when it is not there).
    async fn matching(&self, index: u32, ip: IpAddr) -> Result<Vec<AddressMessage>, NetError> {
        self.handle
            .address()
            .get()
            .set_link_index_filter(index)
            .set_address_filter(ip)
            .execute()
            .try_collect()
            .await
            .map_err(|e| nl_err("list addresses", e))
    }

    /// Removes `ip` from interface `index`. Returns whether it was there.
    pub async fn remove(&self, index: u32, ip: IpAddr) -> Result<bool, NetError> {
        let mut removed = false;
        for m in self.matching(index, ip).await? {
            match self.handle.address().del(m).execute().await {
                Ok(()) => removed = true,
                Err(rtnetlink::Error::NetlinkError(m))
                    if matches!(m.raw_code().abs(), libc::EADDRNOTAVAIL | libc::ENOENT) => {}
                Err(e) => return Err(nl_err("remove the address", e)),
            }
        }
        Ok(removed)
    }
}

fn address_of(m: &AddressMessage) -> Option<IpAddr> {
    // IFA_LOCAL is the interface's own address on point-to-point links; IFA_ADDRESS
    // otherwise (and for IPv6 always).
    let mut addr = None;
    for a in &m.attributes {
        match a {
            AddressAttribute::Local(ip) => return Some(*ip),
            AddressAttribute::Address(ip) => addr = Some(*ip),
            _ => {}
        }
    }
    addr
}

#[cfg(test)]
mod tests {
    use super::Lifetime;
    use std::time::Duration;

    #[test]
    fn a_lifetime_never_ends_after_the_time_it_is_given() {
        assert_eq!(Lifetime::within(Duration::from_millis(999)), None);
        assert_eq!(Lifetime::within(Duration::ZERO), None);
        assert_eq!(
            Lifetime::within(Duration::from_millis(1000)),
            Some(Lifetime::Seconds(1))
        );
        assert_eq!(
            Lifetime::within(Duration::from_millis(2999)),
            Some(Lifetime::Seconds(2))
        );
        // Never the kernel's "forever" by accident.
        assert_eq!(
            Lifetime::within(Duration::from_secs(u64::MAX)),
            Some(Lifetime::Seconds(u32::MAX - 1))
        );
    }

    #[test]
    fn forever_sends_no_cache_info_and_seconds_are_preferred_while_valid() {
        assert!(Lifetime::Forever.cache_info().is_none());
        let c = Lifetime::Seconds(3).cache_info().unwrap();
        assert_eq!((c.ifa_valid, c.ifa_preferred), (3, 3));
    }
}
