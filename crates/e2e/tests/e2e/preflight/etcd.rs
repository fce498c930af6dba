//! `cpe preflight --local` against a real etcd: plain, with TLS, and with client
//! certificates required, on a PKI shaped like kubeadm's.

use super::*;
use cpe_testkit::{require_programs, require_root, Net};

/// An etcd PKI shaped like kubeadm's: a CA, a server certificate for `ip` with both the
/// serverAuth and clientAuth usages (etcd 3.4's own HTTP gateway dials etcd with the server
/// certificate, so with client-certificate auth on it must be usable as a client too; the
/// stand-in API server's test PKI issues serverAuth-only certificates), and a client
/// certificate. Files: ca.crt, server.crt, server.key, client.crt, client.key.
fn etcd_pki(dir: &Path, ip: &str) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose as Eku, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    std::fs::create_dir_all(dir).unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "pf etcd-ca");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    std::fs::write(dir.join("ca.crt"), ca_cert.pem()).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    for (name, names, usages) in [
        (
            "server",
            vec![ip.to_string(), "127.0.0.1".to_string()],
            vec![Eku::ServerAuth, Eku::ClientAuth],
        ),
        ("client", vec![], vec![Eku::ClientAuth]),
    ] {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(names).unwrap();
        p.distinguished_name
            .push(DnType::CommonName, format!("pf etcd {name}"));
        p.extended_key_usages = usages;
        let cert = p.signed_by(&key, &issuer).unwrap();
        std::fs::write(dir.join(format!("{name}.crt")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
    }
}

#[test]
fn local_etcd_with_and_without_tls() {
    require_root();
    require_programs(&["etcd", "ip"]);
    let net = Net::new("pfe").unwrap();
    let cp1 = net.add_host("cp1", 11).unwrap();
    let e1 = net.add_host("etcd1", 21).unwrap();
    let dir = tempdir();
    let pki = dir.path().join("pki");
    cpe_apiserver::Pki::generate(&[e1.addr.to_string()])
        .unwrap()
        .write_to(&pki)
        .unwrap();
    let other = dir.path().join("other");
    cpe_apiserver::Pki::generate(&[e1.addr.to_string()])
        .unwrap()
        .write_to(&other)
        .unwrap();

    // `tls`: the CA to verify etcd with; the client certificate comes from `client`.
    let definition_with = |endpoints: &str, tls: Option<&Path>, client: Option<&Path>| {
        let mut s = format!(
            "cluster: pf\nendpoint:\n  host: lb.example.com\ncontrolPlane:\n  replicas: 3\n  etcd: external\n  machines:\n    - {{name: cp1, address: {}}}\n    - {{name: cp2, address: 10.1.0.2}}\n    - {{name: cp3, address: 10.1.0.3}}\netcd:\n  endpoints: [\"{endpoints}\"]\n",
            cp1.addr
        );
        if let Some(d) = tls {
            s += &format!("  caFile: {}\n", d.join("ca.crt").display());
        }
        if let Some(c) = client {
            s += &format!(
                "  certFile: {}\n  keyFile: {}\n",
                c.join("client.crt").display(),
                c.join("client.key").display()
            );
        }
        s
    };
    let definition = |endpoints: &str, tls: Option<&Path>| {
        definition_with(endpoints, tls, tls.map(|_| pki.as_path()))
    };
    let run = |name: &str, text: String| {
        let p = write(dir.path(), name, &text);
        cpe(
            &cp1,
            &[
                "preflight",
                "-f",
                p.to_str().unwrap(),
                "--local",
                "--node",
                "cp1",
                "-o",
                "json",
                // Generous: a loaded CI machine must not turn a slow handshake into a failure.
                "--timeout",
                "5s",
            ],
        )
    };

    // Plain HTTP etcd answers.
    let mut plain = etcd(&e1, dir.path(), 12379, None, false);
    let url = format!("http://{}:12379", e1.addr);
    let (code, r, out) = run("plain.yaml", definition(&url, None));
    assert_eq!(code, 0, "{out}");
    let c = find(&r, "etcd", "etcd.status");
    assert_eq!(c["status"], "pass", "{out}");
    assert!(c["reason"].as_str().unwrap().contains("etcd 3."), "{c}");
    // etcd is external: its ports are not checked on the machine.
    assert!(!has(&r, "port.2379"), "{out}");
    plain.kill();
    let (code, r, out) = run("plain.yaml", definition(&url, None));
    assert_eq!(code, 1, "{out}");
    assert!(
        find(&r, "etcd", "etcd.status")["reason"]
            .as_str()
            .unwrap()
            .contains("refused"),
        "{out}"
    );

    // TLS etcd, verified against the test CA, with the client certificate sent.
    let _tls = etcd(&e1, dir.path(), 22379, Some(&pki), false);
    let url = format!("https://{}:22379", e1.addr);
    let (code, r, out) = run("tls.yaml", definition(&url, Some(&pki)));
    assert_eq!(code, 0, "{out}");
    assert_eq!(status(&r, "etcd", "etcd.status"), "pass", "{out}");

    // The wrong CA: etcd's certificate is not trusted.
    let (code, r, out) = run("wrongca.yaml", definition(&url, Some(&other)));
    assert_eq!(code, 1, "{out}");
    let c = find(&r, "etcd", "etcd.status");
    assert!(c["reason"].as_str().unwrap().contains("TLS"), "{c}");

    // etcd as kubeadm runs it: client-certificate auth on. The right client certificate
    // passes; none, or one from another CA, is refused by etcd.
    let kpki = dir.path().join("etcd-pki");
    etcd_pki(&kpki, &e1.addr.to_string());
    let _strict = etcd(&e1, dir.path(), 32379, Some(&kpki), true);
    let strict = format!("https://{}:32379", e1.addr);
    let (code, r, out) = run(
        "strict.yaml",
        definition_with(&strict, Some(&kpki), Some(&kpki)),
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(status(&r, "etcd", "etcd.status"), "pass", "{out}");
    for (name, client) in [("nocert.yaml", None), ("foreign.yaml", Some(pki.as_path()))] {
        let (code, r, out) = run(name, definition_with(&strict, Some(&kpki), client));
        assert_eq!(code, 1, "{out}");
        let c = find(&r, "etcd", "etcd.status");
        assert_eq!(c["status"], "fail", "{out}");
        // Refused at the TLS layer, and said so (not "nothing listens").
        assert!(c["reason"].as_str().unwrap().contains("TLS"), "{name}: {c}");
        assert!(
            c["fix"].as_str().unwrap().contains("etcd.certFile"),
            "{name}: {c}"
        );
    }

    // Plain HTTP to the TLS port.
    let (code, r, out) = run(
        "mismatch.yaml",
        definition(&url.replace("https", "http"), None),
    );
    assert_eq!(code, 1, "{out}");
    assert_eq!(status(&r, "etcd", "etcd.status"), "fail", "{out}");
}
