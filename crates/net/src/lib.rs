//! The kernel-facing parts of the VIP: add and remove an address through netlink, and
//! announce it with gratuitous ARP (IPv4) or an unsolicited neighbour advertisement
//! (IPv6) on raw sockets. Packets are built by pure functions (pinned by golden bytes)
//! apart from being sent. It does not decide when to add or announce.
