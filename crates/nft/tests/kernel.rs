//! The steering against the real kernel, read back with `nft` (the tool is fine in tests,
//! never in the agent). Needs root: each case runs this test binary again inside a fresh
//! network namespace (`ip netns exec`), so the host's rule set is never touched.

use std::process::Command;

const INNER: &str = "CPE_NFT_INNER";

fn in_namespace(test: &str) {
    if std::env::var_os(INNER).is_some() {
        return;
    }
    let ns = format!("cpenft{}{}", std::process::id(), &test[..4]);
    let ok = |c: &mut Command| c.status().map(|s| s.success()).unwrap_or(false);
    assert!(
        ok(Command::new("ip").args(["netns", "add", &ns])),
        "cannot create a network namespace: these tests need root"
    );
    let out = Command::new("ip")
        .args(["netns", "exec", &ns])
        .arg(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads", "1"])
        .env(INNER, "1")
        .output()
        .unwrap();
    let _ = Command::new("ip").args(["netns", "del", &ns]).status();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{test} in {ns}:\n{text}");
    assert!(text.contains("1 passed"), "{text}");
}

fn ruleset() -> String {
    let out = Command::new("nft")
        .args(["list", "ruleset"])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn ipv4_redirect_reads_back_as_nft_writes_it() {
    in_namespace("ipv4_redirect_reads_back_as_nft_writes_it");
    if std::env::var_os(INNER).is_none() {
        return;
    }
    assert!(cpe_nft::remove_all().unwrap().is_empty());
    let r = cpe_nft::Redirect {
        vip: "10.9.9.9".parse().unwrap(),
        port: 6443,
        to_port: 6444,
    };
    cpe_nft::install(&r).unwrap();
    // twice: the second replaces the first (one rule per chain, not two)
    cpe_nft::install(&r).unwrap();
    let rs = ruleset();
    println!("{rs}");
    assert!(rs.contains("table ip cpe"), "{rs}");
    assert!(
        rs.contains("type nat hook prerouting priority dstnat; policy accept;"),
        "{rs}"
    );
    assert!(
        rs.contains("type nat hook output priority -100; policy accept;"),
        "{rs}"
    );
    assert_eq!(
        rs.matches("ip daddr 10.9.9.9 tcp dport 6443 redirect to :6444")
            .count(),
        2,
        "{rs}"
    );
    assert_eq!(
        r.to_string(),
        "ip daddr 10.9.9.9 tcp dport 6443 redirect to :6444"
    );
    assert!(cpe_nft::remove(cpe_nft::Family::Ip).unwrap());
    assert!(!cpe_nft::remove(cpe_nft::Family::Ip).unwrap());
    assert!(!ruleset().contains("cpe"));
}

#[test]
fn ipv6_redirect_and_stale_tables_are_removed() {
    in_namespace("ipv6_redirect_and_stale_tables_are_removed");
    if std::env::var_os(INNER).is_none() {
        return;
    }
    let r6 = cpe_nft::Redirect {
        vip: "fd00::9".parse().unwrap(),
        port: 443,
        to_port: 7000,
    };
    cpe_nft::install(&r6).unwrap();
    cpe_nft::install(&cpe_nft::Redirect {
        vip: "10.1.1.1".parse().unwrap(),
        port: 6443,
        to_port: 6444,
    })
    .unwrap();
    // a table of someone else's stays
    let ok = Command::new("nft")
        .args(["add", "table", "ip", "other"])
        .status()
        .unwrap();
    assert!(ok.success());
    let rs = ruleset();
    println!("{rs}");
    assert_eq!(
        rs.matches("ip6 daddr fd00::9 tcp dport 443 redirect to :7000")
            .count(),
        2,
        "{rs}"
    );
    let had = cpe_nft::remove_all().unwrap();
    assert_eq!(had, vec![cpe_nft::Family::Ip, cpe_nft::Family::Ip6]);
    let rs = ruleset();
    assert!(!rs.contains("cpe"), "{rs}");
    assert!(rs.contains("table ip other"), "{rs}");
}
