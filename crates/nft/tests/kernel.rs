//! The steering against the real kernel, read back with `nft` (the tool is fine in tests,
//! never in the agent). Needs root: each case runs this test binary again inside a fresh
//! network namespace (`ip netns exec`), so the host's rule set is never touched; the
//! guard's case also gets a client namespace behind a veth, to send through `prerouting`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

const INNER: &str = "CPE_NFT_INNER";
/// The client namespace's name, for the inner run of the guard's case.
const CLIENT: &str = "CPE_NFT_CLIENT_NS";

fn ok(c: &mut Command) -> bool {
    c.status().map(|s| s.success()).unwrap_or(false)
}

fn in_namespace(test: &str) {
    run_in_namespace(test, false)
}

/// Runs `test` again inside a fresh namespace; with `client`, a second namespace is
/// joined to it by a veth (`vip0` in the test's, `cli0` in the client's, addresses
/// 10.9.9.2/24 and fd00::2/64 on the client, whose routes send 10.9.9.9 and fd00::9 to
/// 10.9.9.1 and fd00::1 — a client that still sends to a machine that lost the VIP).
fn run_in_namespace(test: &str, client: bool) {
    if std::env::var_os(INNER).is_some() {
        return;
    }
    let ns = format!("cpenft{}{}", std::process::id(), &test[..4]);
    let cli = format!("{ns}c");
    assert!(
        ok(Command::new("ip").args(["netns", "add", &ns])),
        "cannot create a network namespace: these tests need root"
    );
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &ns])
        .arg(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads", "1"])
        .env(INNER, "1");
    if client {
        assert!(ok(Command::new("ip").args(["netns", "add", &cli])));
        let setup = [
            "ip -n NS link add vip0 type veth peer name cli0 netns CLI",
            "ip -n CLI link set lo up",
            "ip -n CLI link set cli0 up",
            "ip -n CLI addr add 10.9.9.2/24 dev cli0",
            "ip -n CLI addr add fd00::2/64 dev cli0 nodad",
            "ip -n CLI route add 10.9.9.9/32 via 10.9.9.1",
            "ip -n CLI route add fd00::9/128 via fd00::1",
        ];
        for line in setup {
            let line = line.replace("NS", &ns).replace("CLI", &cli);
            let args: Vec<&str> = line.split(' ').collect();
            assert!(ok(Command::new(args[0]).args(&args[1..])), "{line}");
        }
        cmd.env(CLIENT, &cli);
    }
    let out = cmd.output().unwrap();
    let _ = Command::new("ip").args(["netns", "del", &ns]).status();
    if client {
        let _ = Command::new("ip").args(["netns", "del", &cli]).status();
    }
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{test} in {ns}:\n{text}");
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
        rs.matches("ip daddr 10.9.9.9 tcp dport 6443 fib daddr type local redirect to :6444")
            .count(),
        2,
        "{rs}"
    );
    assert_eq!(
        r.to_string(),
        "ip daddr 10.9.9.9 tcp dport 6443 fib daddr type local redirect to :6444"
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
        rs.matches("ip6 daddr fd00::9 tcp dport 443 fib daddr type local redirect to :7000")
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

/// `cmd` in this namespace; panics with its output when it fails.
fn sh(line: &str) {
    let args: Vec<&str> = line.split(' ').collect();
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{line}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Listens on `[::]:port` (both families) and answers each connection with `word`.
fn answer(port: u16, word: &'static str) {
    let l = TcpListener::bind(("::", port)).unwrap();
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            let _ = (&c).write_all(word.as_bytes());
        }
    });
}

/// A connection from this machine to `vip:6443`: what the server answered (`lb` for the
/// load balancer's port), or the error.
fn local(vip: &str) -> String {
    let addr = SocketAddr::new(vip.parse().unwrap(), 6443);
    match TcpStream::connect_timeout(&addr, Duration::from_millis(1500)) {
        Ok(mut c) => {
            c.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
            let mut s = String::new();
            match c.read_to_string(&mut s) {
                Ok(_) => s,
                Err(e) => format!("error: {e}"),
            }
        }
        Err(e) => format!("error: {e}"),
    }
}

/// A connection from the client namespace to `vip:6443` (it enters this machine through
/// `prerouting`): what the server answered, or the error.
fn remote(vip: &str) -> String {
    let cli = std::env::var(CLIENT).unwrap();
    let out = Command::new("ip")
        .args(["netns", "exec", &cli, "timeout", "2", "bash", "-c"])
        .arg(format!("cat </dev/tcp/{vip}/6443"))
        .output()
        .unwrap();
    if out.status.success() {
        String::from_utf8_lossy(&out.stdout).into_owned()
    } else {
        format!(
            "error: exit {:?} {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).trim()
        )
    }
}

/// One family of the guard's case: the VIP added with a short lifetime and the rule
/// installed → both clients reach the load balancer's port; the kernel ends the address
/// with the rule still there → neither does; the same rule without the guard (written by
/// `nft`, the control) → both reach it again although the address is gone, so the clients
/// do tell a steering rule from an inert one.
fn guard_case(vip: &str, prefix: u8) {
    let family = cpe_nft::Family::of(vip.parse().unwrap());
    let nodad = if prefix > 32 { " nodad" } else { "" };
    sh(&format!(
        "ip addr add {vip}/{prefix} dev vip0 valid_lft 4 preferred_lft 4{nodad}"
    ));
    let r = cpe_nft::Redirect {
        vip: vip.parse().unwrap(),
        port: 6443,
        to_port: 6444,
    };
    cpe_nft::install(&r).unwrap();
    let (l, rm) = (local(vip), remote(vip));
    println!("{vip} with the address: local {l:?}, remote {rm:?}");
    assert_eq!(l, "lb", "output: the redirect steers while {vip} is local");
    assert_eq!(
        rm, "lb",
        "prerouting: the redirect steers while {vip} is local"
    );

    // The kernel removes the address at its lifetime's end (the agent frozen).
    let t0 = Instant::now();
    while String::from_utf8(
        Command::new("ip")
            .args(["-o", "addr", "show", "dev", "vip0"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .contains(&format!("{vip}/"))
    {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "{vip} never expired"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let rs = ruleset();
    assert_eq!(
        rs.matches(&r.to_string()).count(),
        2,
        "rule still there: {rs}"
    );
    let (l, rm) = (local(vip), remote(vip));
    println!("{vip} expired, guarded rule left: local {l:?}, remote {rm:?}");
    assert!(l.starts_with("error"), "output still steered to {l:?}");
    assert!(
        rm.starts_with("error"),
        "prerouting still steered to {rm:?}"
    );

    // Control: the same rule without the guard still steers without the address.
    assert!(cpe_nft::remove(family).unwrap());
    let f = family.as_str();
    let rule = format!("{f} daddr {vip} tcp dport 6443 redirect to :6444");
    let conf = format!(
        "table {f} cpe {{\n chain prerouting {{ type nat hook prerouting priority dstnat; {rule}; }}\n \
         chain output {{ type nat hook output priority -100; {rule}; }}\n}}\n"
    );
    let mut nft = Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    nft.stdin
        .take()
        .unwrap()
        .write_all(conf.as_bytes())
        .unwrap();
    assert!(nft.wait().unwrap().success(), "{conf}");
    let (l, rm) = (local(vip), remote(vip));
    println!("{vip} expired, unguarded rule (control): local {l:?}, remote {rm:?}");
    assert_eq!(l, "lb", "control: output without the guard");
    assert_eq!(rm, "lb", "control: prerouting without the guard");
    assert!(cpe_nft::remove(family).unwrap());
}

#[test]
fn the_guarded_redirect_steers_only_while_the_vip_is_local() {
    run_in_namespace(
        "the_guarded_redirect_steers_only_while_the_vip_is_local",
        true,
    );
    if std::env::var_os(INNER).is_none() {
        return;
    }
    for line in [
        "ip link set lo up",
        "ip link set vip0 up",
        "ip addr add 10.9.9.1/24 dev vip0",
        "ip addr add fd00::1/64 dev vip0 nodad",
    ] {
        sh(line);
    }
    answer(6444, "lb");
    answer(6443, "api");
    guard_case("10.9.9.9", 24);
    guard_case("fd00::9", 64);
}
