//! The VIP side of the discovery tests: generated machine names, the one definition every
//! agent runs from (virtual-ip mode, no machine list), starting an agent with `NODE_NAME`,
//! and a status-code probe. It does not judge anything: `discovery.rs` does.

use cpe_testkit::kube::KubeBed;

/// A machine name as Cluster API generates them (short: a bridge port name is
/// `p-<name>`, at most 15 bytes).
pub fn generated_name(salt: usize) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
        ^ std::process::id().rotate_left(7)
        ^ (salt as u32).wrapping_mul(2654435761);
    let alphabet = b"bcdfghjklmnpqrstvwxz2456789";
    let suffix: String = (0..5)
        .map(|i| alphabet[((n >> (i * 5)) as usize) % alphabet.len()] as char)
        .collect();
    format!("cp-{suffix}")
}

/// The one definition every VIP agent runs from: virtual-ip mode, no machine list.
pub fn vip_definition(dir: &std::path::Path, vip: std::net::Ipv4Addr) -> std::path::PathBuf {
    let text = format!(
        "cluster: kubebed\nendpoint:\n  host: {vip}\n  port: 6443\nvirtualIP:\n  interface: eth0\n  leaseTTL: 2s\n  admin: 127.0.0.1:7446\ncontrolPlane:\n  replicas: 3\n"
    );
    let p = dir.join("endpoint.yaml");
    std::fs::write(&p, text).unwrap();
    p
}

/// `cpe vip -f DEFINITION` on `host` with `NODE_NAME` (no `--node`), from its own etcd
/// member (the testkit's etcd is plain HTTP).
pub fn start_agent(
    bed: &KubeBed,
    host: &cpe_testkit::Host,
    def: &std::path::Path,
) -> cpe_testkit::Child {
    let mut cmd = host.command(cpe_e2e::cpe_bin());
    cmd.env("NODE_NAME", &host.name).args([
        "vip",
        "-f",
        &def.to_string_lossy(),
        "--etcd",
        "http://127.0.0.1:2379",
    ]);
    let log = bed.dir().join(format!("agent-{}.log", host.name));
    cpe_testkit::Child::spawn(&format!("cpe vip {}", host.name), cmd, &log).unwrap()
}

pub fn status_code(host: &cpe_testkit::Host, url: &str) -> Option<u16> {
    let out = host
        .exec(
            "curl",
            &[
                "-sk",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-m",
                "1",
                url,
            ],
        )
        .ok()?;
    out.trim().parse().ok().filter(|c| *c != 0)
}
