//! `cpe check` against stand-in API servers: `/readyz` through the VIP and each machine,
//! and the endpoint's name missing from a certificate.

use super::*;
use cpe_testkit::{require_programs, require_root, Net};

/// A stand-in API server (`cpe test-apiserver`) inside `host` on all addresses, port 6443,
/// with the given certificate.
fn apiserver(host: &Host, dir: &Path, cert_dir: &Path, ca: &Path, extra: &[&str]) -> Child {
    let mut args: Vec<String> = [
        "test-apiserver",
        "--listen",
        "0.0.0.0:6443",
        "--name",
        &host.name,
        "--cert",
        &cert_dir.join("server.crt").display().to_string(),
        "--key",
        &cert_dir.join("server.key").display().to_string(),
        "--client-ca",
        &ca.display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    let mut c = host
        .spawn(
            &format!("apiserver-{}", host.name),
            &dir.join(format!("apiserver-{}.log", host.name)),
            cpe_bin(),
            &args,
        )
        .unwrap();
    wait_listening(host, &format!("{}:6443", host.addr), &mut c);
    c
}

fn write_cert(dir: &Path, ck: &cpe_apiserver::CertKey) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("server.crt"), &ck.cert_pem).unwrap();
    std::fs::write(dir.join("server.key"), &ck.key_pem).unwrap();
    dir.to_path_buf()
}

#[test]
fn check_readyz_and_certificate_names() {
    require_root();
    require_programs(&["ip"]);
    let net = Net::new("pfc").unwrap();
    let admin = net.add_host("admin", 5).unwrap();
    let cp1 = net.add_host("cp1", 11).unwrap();
    let cp2 = net.add_host("cp2", 12).unwrap();
    let cp3 = net.add_host("cp3", 13).unwrap();
    let dir = tempdir();
    let vip = net.addr(100).to_string();

    // One cluster CA. cp1 and cp3 carry the VIP among their names; cp2's certificate was
    // made without it (the classic misconfiguration: certSANs forgotten on one machine).
    let pki = cpe_apiserver::Pki::generate(&[vip.clone(), cp1.addr.to_string()]).unwrap();
    let pki_dir = dir.path().join("pki");
    pki.write_to(&pki_dir).unwrap();
    let ca = pki_dir.join("ca.crt");
    let cp2_dir = write_cert(
        &dir.path().join("cp2"),
        &pki.issue_server(&["cp2".to_string(), cp2.addr.to_string()])
            .unwrap(),
    );
    let cp3_dir = write_cert(
        &dir.path().join("cp3"),
        &pki.issue_server(&[vip.clone(), cp3.addr.to_string()])
            .unwrap(),
    );
    let _a1 = apiserver(&cp1, dir.path(), &pki_dir, &ca, &[]);
    let _a2 = apiserver(&cp2, dir.path(), &cp2_dir, &ca, &[]);
    // cp3 is up but not ready: /readyz answers 503.
    let _a3 = apiserver(&cp3, dir.path(), &cp3_dir, &ca, &["--not-ready"]);
    // cp1 holds the VIP, as the VIP agent would.
    cp1.exec("ip", &["addr", "add", &format!("{vip}/32"), "dev", "eth0"])
        .unwrap();

    let def = write(
        dir.path(),
        "vip.yaml",
        &format!(
            "cluster: pf\nendpoint:\n  host: {vip}\nvirtualIP:\n  interface: eth0\ncontrolPlane:\n  replicas: 3\n  machines:\n    - {{name: cp1, address: {}}}\n    - {{name: cp2, address: {}}}\n    - {{name: cp3, address: {}}}\n",
            cp1.addr, cp2.addr, cp3.addr
        ),
    );
    let def = def.to_str().unwrap();
    let client = |f: &str| pki_dir.join(f).display().to_string();
    let (cert, key) = (client("client.crt"), client("client.key"));
    let ca_s = ca.display().to_string();
    let creds = ["--ca", &ca_s, "--cert", &cert, "--key", &key];
    let (_, _, table) = cpe(&admin, &[&["check", "-f", def][..], &creds].concat());
    println!("{table}");
    let (code, r, out) = cpe(
        &admin,
        &[&["check", "-f", def, "-o", "json"][..], &creds].concat(),
    );
    assert_eq!(code, 1, "{out}");
    assert_eq!(status(&r, "endpoint", "endpoint.readyz"), "pass", "{out}");
    assert_eq!(
        status(&r, "endpoint", "endpoint.certificate"),
        "pass",
        "{out}"
    );
    assert_eq!(status(&r, "cp1", "machine.readyz"), "pass", "{out}");
    assert_eq!(status(&r, "cp1", "machine.certificate"), "pass", "{out}");
    assert_eq!(status(&r, "cp2", "machine.readyz"), "pass", "{out}");
    let c = find(&r, "cp2", "machine.certificate");
    assert_eq!(c["status"], "fail", "{out}");
    let reason = c["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("{vip} is not among its names")),
        "{reason}"
    );
    assert!(reason.contains("cp2"), "lists the names it has: {reason}");
    assert!(c["fix"].as_str().unwrap().contains("certSANs"), "{c}");
    let c = find(&r, "cp3", "machine.readyz");
    assert_eq!(c["status"], "fail", "{out}");
    assert!(c["reason"].as_str().unwrap().contains("503"), "{c}");
    assert_eq!(status(&r, "cp3", "machine.certificate"), "pass", "{out}");
    assert_eq!(r["summary"]["failed"], 2, "{out}");

    // Another cluster's CA: every certificate is reported as not signed by it.
    let other = dir.path().join("other");
    cpe_apiserver::Pki::generate(&["x.test"])
        .unwrap()
        .write_to(&other)
        .unwrap();
    let other_ca = other.join("ca.crt").display().to_string();
    let (code, r, out) = cpe(
        &admin,
        &["check", "-f", def, "--ca", &other_ca, "-o", "json"],
    );
    assert_eq!(code, 1, "{out}");
    let c = find(&r, "endpoint", "endpoint.certificate");
    assert!(
        c["reason"]
            .as_str()
            .unwrap()
            .contains("not signed by the given CA"),
        "{c}"
    );

    // The VIP is dropped (no holder): the endpoint no longer answers.
    cp1.exec("ip", &["addr", "del", &format!("{vip}/32"), "dev", "eth0"])
        .unwrap();
    let (code, r, out) = cpe(
        &admin,
        &["check", "-f", def, "--timeout", "1s", "-o", "json"],
    );
    assert_eq!(code, 1, "{out}");
    assert_eq!(status(&r, "endpoint", "endpoint.readyz"), "fail", "{out}");
    // The table form has the summary line.
    let (_, _, out) = cpe(&admin, &["check", "-f", def, "--timeout", "1s"]);
    assert!(out.contains("FAIL  10."), "{out}");
    assert!(out.contains("failed"), "{out}");
}
