//! The text crossing the VIP testbed's edges: tcpdump's ARP lines as the client saw them
//! ([`parse_arp_claim`]) and the keepalived configuration of the peer it is compared with
//! ([`keepalived_conf`]). Pure string work; running tcpdump and keepalived is the
//! testbed's.

use std::net::Ipv4Addr;

/// One tcpdump line (`-n -e -tt`) claiming `vip` for a MAC: a reply `VIP is-at MAC`, or a
/// gratuitous request `who-has VIP tell VIP` (the claimant is the Ethernet source). Returns
/// the MAC and the Unix time.
pub fn parse_arp_claim(line: &str, vip: &str) -> Option<(String, f64)> {
    let mut words = line.split_whitespace();
    let t: f64 = words.next()?.parse().ok()?;
    let src = words.next()?.to_lowercase();
    let is_at = format!("Reply {vip} is-at ");
    if let Some(i) = line.find(&is_at) {
        let mac = line[i + is_at.len()..]
            .split([',', ' '])
            .next()?
            .to_lowercase();
        return Some((mac, t));
    }
    if line.contains(&format!("Request who-has {vip} tell {vip},"))
        || line.contains(&format!(
            "Request who-has {vip} (ff:ff:ff:ff:ff:ff) tell {vip},"
        ))
    {
        return Some((src, t));
    }
    None
}

/// The keepalived configuration used as the peer: VRRP with `advert_int 1`, priorities
/// 200/150/100 (preemption on, keepalived's default, as in the kubeadm HA recipe), and a
/// `vrrp_script` that curls the local /readyz every second, `fall 2`, `rise 2`, no weight (a
/// failing check puts the instance in FAULT, which gives the VIP up at once).
pub fn keepalived_conf(
    name: &str,
    vip: Ipv4Addr,
    prefix: u8,
    priority: u32,
    readyz: &str,
) -> String {
    format!(
        r#"global_defs {{
  router_id {name}
  script_user root
  enable_script_security
  vrrp_garp_master_delay 0
}}
vrrp_script chk_apiserver {{
  script "/usr/bin/curl -sfk -m 1 {readyz}"
  interval 1
  timeout 1
  fall 2
  rise 2
}}
vrrp_instance VI_1 {{
  state BACKUP
  interface eth0
  virtual_router_id 51
  priority {priority}
  advert_int 1
  virtual_ipaddress {{
    {vip}/{prefix} dev eth0
  }}
  track_script {{
    chk_apiserver
  }}
}}
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arp_claims_are_replies_and_gratuitous_requests_for_the_vip_only() {
        let vip = "10.1.2.100";
        let reply = "1700000000.250000 aa:bb:cc:00:00:02 > 11:22:33:44:55:66, ethertype ARP (0x0806), length 42: Reply 10.1.2.100 is-at aa:bb:cc:00:00:02, length 28";
        let garp = "1700000000.5 AA:BB:CC:00:00:03 > ff:ff:ff:ff:ff:ff, ethertype ARP (0x0806), length 42: Request who-has 10.1.2.100 tell 10.1.2.100, length 28";
        let ask = "1700000000.6 11:22:33:44:55:66 > ff:ff:ff:ff:ff:ff, ethertype ARP (0x0806), length 42: Request who-has 10.1.2.100 tell 10.1.2.50, length 28";
        let other = "1700000000.7 aa:bb:cc:00:00:02 > 11:22:33:44:55:66, ethertype ARP (0x0806), length 42: Reply 10.1.2.11 is-at aa:bb:cc:00:00:02, length 28";
        assert_eq!(
            parse_arp_claim(reply, vip),
            Some(("aa:bb:cc:00:00:02".into(), 1700000000.25))
        );
        assert_eq!(
            parse_arp_claim(garp, vip),
            Some(("aa:bb:cc:00:00:03".into(), 1700000000.5))
        );
        assert_eq!(parse_arp_claim(ask, vip), None);
        assert_eq!(parse_arp_claim(other, vip), None);
        assert_eq!(parse_arp_claim("tcpdump: listening on eth0", vip), None);
    }
}
