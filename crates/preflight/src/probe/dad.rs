//! Duplicate address detection for the VIP: is anyone on the link already answering for
//! it? Kept behind this one function so that the source of the answer can change.
//!
//! Today it runs `arping -D` (Debian `iputils-arping`): ARP probes with a zero sender
//! address, as RFC 5227 prescribes, so that asking leaves no trace in anyone's neighbour
//! table. `cpe-net` will provide the same probe over its own raw sockets (and the IPv6
//! neighbour-solicitation one); this function then calls it instead. IPv6 is reported as
//! not checked until then.

use crate::facts::Dad;
use std::net::IpAddr;
use std::process::Command;
use std::time::Duration;

/// Probes `addr` on `interface`, waiting up to `wait` for an answer (at least 1 s: arping
/// counts in whole seconds).
pub fn probe(interface: &str, addr: IpAddr, wait: Duration) -> Dad {
    let IpAddr::V4(v4) = addr else {
        return Dad::NotChecked("the IPv6 neighbour-solicitation probe is not built yet".into());
    };
    let secs = wait.as_secs().max(1);
    let out = Command::new("arping")
        .args(["-D", "-I", interface, "-c", "2", "-w"])
        .arg(secs.to_string())
        .arg(v4.to_string())
        .output();
    match out {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Dad::NotChecked("`arping` is not installed (Debian iputils-arping)".into())
        }
        Err(e) => Dad::NotChecked(format!("cannot run arping: {e}")),
        Ok(o) => {
            let stdout = String::from_utf8_lossy(&o.stdout);
            if let Some(mac) = reply_mac(&stdout) {
                return Dad::Answered { mac };
            }
            match o.status.code() {
                Some(0) => Dad::Silent,
                // Exit 1 with a reply is handled above; exit 1 without a parsable reply
                // line still means a reply came.
                Some(1) if stdout.contains("reply") => Dad::Answered {
                    mac: "a host".into(),
                },
                _ => Dad::NotChecked(format!(
                    "arping failed: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                )),
            }
        }
    }
}

/// The MAC address in arping's `Unicast reply from 10.0.0.100 [02:00:00:00:00:01]  0.6ms`.
fn reply_mac(stdout: &str) -> Option<String> {
    stdout
        .lines()
        .find(|l| l.contains("reply from"))
        .and_then(|l| {
            let start = l.find('[')? + 1;
            let end = l[start..].find(']')? + start;
            Some(l[start..end].to_ascii_lowercase())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_reply_line() {
        let out = "ARPING 10.0.0.100 from 0.0.0.0 eth0\nUnicast reply from 10.0.0.100 [02:AB:00:00:00:01]  0.640ms\nSent 1 probes (1 broadcast(s))\nReceived 1 response(s)\n";
        assert_eq!(reply_mac(out).as_deref(), Some("02:ab:00:00:00:01"));
        assert_eq!(reply_mac("Sent 2 probes\nReceived 0 response(s)\n"), None);
    }
}
