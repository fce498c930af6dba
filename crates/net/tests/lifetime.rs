//! The kernel removes an address whose lifetime runs out, and a renewal (adding it again
//! with a new lifetime) moves that moment: the property the VIP holder relies on so that a
//! frozen or killed agent never keeps the VIP past its lease deadline. Real kernel, real
//! netlink, a veth interface in a network namespace of the test's own (root only; fails,
//! never skips, without it).
#![allow(unsafe_code)]

use cpe_net::{Lifetime, Netlink};
use std::net::IpAddr;
use std::process::Command;
use std::time::{Duration, Instant};

/// Runs `f` on a thread of its own inside a fresh network namespace with a veth pair
/// `d0`/`d1` (both up); the namespace goes away with the thread.
fn in_netns<F: FnOnce() + Send + 'static>(f: F) {
    std::thread::spawn(move || {
        // SAFETY: unshare(2) with CLONE_NEWNET changes only this thread's network
        // namespace; no memory is shared with the call.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(
            rc,
            0,
            "unshare(CLONE_NEWNET) failed: {} (this test needs root)",
            std::io::Error::last_os_error()
        );
        for args in [
            &["link", "add", "d0", "type", "veth", "peer", "name", "d1"][..],
            &["link", "set", "d0", "up"],
            &["link", "set", "d1", "up"],
            &["link", "set", "lo", "up"],
        ] {
            let st = Command::new("ip").args(args).status().expect("run ip");
            assert!(st.success(), "ip {args:?}");
        }
        f()
    })
    .join()
    .expect("test thread");
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Polls every 10 ms until `ip` is gone from interface `index`; returns when.
async fn gone_after(nl: &Netlink, index: u32, ip: IpAddr, limit: Duration) -> Duration {
    let start = Instant::now();
    while nl.lifetime(index, ip).await.unwrap().is_some() {
        assert!(start.elapsed() < limit, "{ip} still there after {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    start.elapsed()
}

fn lifetime_case(ip: IpAddr, prefix: u8) {
    in_netns(move || {
        runtime().block_on(async move {
            let nl = Netlink::connect().unwrap();
            let index = nl.interface("d0").await.unwrap().index;

            // Added for 2 s: the kernel removes it by itself.
            let t0 = Instant::now();
            nl.add_for(index, ip, prefix, Lifetime::Seconds(2))
                .await
                .unwrap();
            assert!(matches!(
                nl.lifetime(index, ip).await.unwrap(),
                Some(Lifetime::Seconds(1..=2))
            ));
            gone_after(&nl, index, ip, Duration::from_secs(4)).await;
            let took = t0.elapsed();
            println!("{ip}: lifetime 2 s, removed by the kernel after {took:?}");
            assert!(
                took >= Duration::from_millis(1900),
                "removed early: {took:?}"
            );

            // Renewed at 1 s with another 2 s: still there at 2.5 s, gone by ~3 s.
            let t0 = Instant::now();
            nl.add_for(index, ip, prefix, Lifetime::Seconds(2))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_secs(1)).await;
            nl.add_for(index, ip, prefix, Lifetime::Seconds(2))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(1500)).await;
            assert!(
                nl.lifetime(index, ip).await.unwrap().is_some(),
                "the renewal did not extend the lifetime"
            );
            gone_after(&nl, index, ip, Duration::from_secs(3)).await;
            let took = t0.elapsed();
            println!("{ip}: renewed at 1 s, removed after {took:?}");
            assert!(
                took >= Duration::from_millis(2900),
                "removed early: {took:?}"
            );

            // Forever stays, and a later lifetime on it is honoured (the holder's first
            // renewal after a restart).
            nl.add(index, ip, prefix).await.unwrap();
            assert_eq!(
                nl.lifetime(index, ip).await.unwrap(),
                Some(Lifetime::Forever)
            );
            nl.add_for(index, ip, prefix, Lifetime::Seconds(1))
                .await
                .unwrap();
            gone_after(&nl, index, ip, Duration::from_secs(3)).await;
        })
    });
}

#[test]
fn ipv4_address_with_a_lifetime_is_removed_by_the_kernel_and_renewal_extends_it() {
    lifetime_case("10.99.0.10".parse().unwrap(), 24);
}

#[test]
fn ipv6_address_with_a_lifetime_is_removed_by_the_kernel_and_renewal_extends_it() {
    lifetime_case("fd00:99::10".parse().unwrap(), 64);
}

/// The interface's own IPv6 address may itself have a lifetime (SLAAC, DHCPv6), and with
/// it its subnet route: the VIP's lifetimes, renewals and removal must leave that route
/// alone (the VIP gets no prefix route of its own).
#[test]
fn ipv6_vip_lifetime_leaves_the_subnet_route_alone() {
    in_netns(|| {
        runtime().block_on(async {
            let st = Command::new("ip")
                .args(["-6", "addr", "add", "fd00:98::1/64", "dev", "d0", "nodad"])
                .args(["valid_lft", "100", "preferred_lft", "100"])
                .status()
                .unwrap();
            assert!(st.success());
            let nl = Netlink::connect().unwrap();
            let index = nl.interface("d0").await.unwrap().index;
            let vip: IpAddr = "fd00:98::10".parse().unwrap();
            nl.add_for(index, vip, 64, Lifetime::Seconds(1))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
            nl.add_for(index, vip, 64, Lifetime::Seconds(1))
                .await
                .unwrap();
            gone_after(&nl, index, vip, Duration::from_secs(3)).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            let out = Command::new("ip")
                .args(["-6", "route", "show", "fd00:98::/64", "dev", "d0"])
                .output()
                .unwrap();
            let routes = String::from_utf8_lossy(&out.stdout);
            assert!(
                routes.contains("fd00:98::/64"),
                "the subnet route went with the VIP: {routes:?}"
            );
            assert!(
                routes.contains("expires 9"),
                "its expiry changed: {routes:?}"
            );
        })
    });
}
