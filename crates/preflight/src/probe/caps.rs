//! The capabilities this process has, from `/proc/self/status` (`CapEff`, `CapBnd`).
//! Reading a file rather than calling `capget(2)` keeps this crate free of `unsafe`.

use crate::facts::Caps;

pub fn caps() -> Result<Caps, String> {
    let text = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("/proc/self/status: {e}"))?;
    parse_status(&text).ok_or_else(|| "/proc/self/status has no CapEff/CapBnd lines".into())
}

pub fn parse_status(text: &str) -> Option<Caps> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
    };
    Some(Caps {
        effective: field("CapEff:")?,
        bounding: field("CapBnd:")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::{CAP_NET_ADMIN, CAP_NET_RAW};

    #[test]
    fn parses_root_and_unprivileged() {
        let root = "Name:\tcpe\nCapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\nCapEff:\t000001ffffffffff\nCapBnd:\t000001ffffffffff\n";
        let c = parse_status(root).unwrap();
        assert!(c.has_effective(CAP_NET_ADMIN) && c.has_effective(CAP_NET_RAW));
        let user = "CapEff:\t0000000000000000\nCapBnd:\t000001ffffffffff\n";
        let c = parse_status(user).unwrap();
        assert!(!c.has_effective(CAP_NET_RAW) && c.in_bounding(CAP_NET_RAW));
        // Docker's default set: NET_RAW (bit 13) but not NET_ADMIN (bit 12).
        let docker = "CapEff:\t00000000a80425fb\nCapBnd:\t00000000a80425fb\n";
        let c = parse_status(docker).unwrap();
        assert!(c.in_bounding(CAP_NET_RAW) && !c.in_bounding(CAP_NET_ADMIN));
        assert!(parse_status("Name: x\n").is_none());
    }

    #[test]
    fn reads_this_process() {
        assert!(caps().is_ok());
    }
}
