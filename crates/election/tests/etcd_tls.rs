//! The election client against a real etcd that requires TLS client certificates, as a
//! kubeadm control plane's etcd does: the right CA and client certificate work; a wrong CA,
//! or no client certificate, fail with an error that says TLS and names the flags to check.

mod common;

use common::free_port;
use cpe_election::{Client, TlsFiles};
use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Etcd(Child);
impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn make_ca(dir: &Path, name: &str) -> (PathBuf, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec![]).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(rcgen::DnType::CommonName, name);
    let cert = p.self_signed(&key).unwrap();
    let path = dir.join(format!("{name}.pem"));
    std::fs::write(&path, cert.pem()).unwrap();
    (path, Issuer::new(p, key))
}

fn leaf(
    dir: &Path,
    name: &str,
    issuer: &Issuer<'static, KeyPair>,
    usage: &[ExtendedKeyUsagePurpose],
) -> (PathBuf, PathBuf) {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    p.distinguished_name.push(rcgen::DnType::CommonName, name);
    p.extended_key_usages = usage.to_vec();
    let cert = p.signed_by(&key, issuer).unwrap();
    let (c, k) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_right_and_wrong() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ca_path, ca) = make_ca(d, "etcd-ca");
    let (other_ca_path, other) = make_ca(d, "other-ca");
    // etcd 3.4's gateway dials etcd's own gRPC with the server certificate, so it needs
    // client authentication too (kubeadm's etcd server certificates have both).
    let (server_crt, server_key) = leaf(
        d,
        "server",
        &ca,
        &[
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
    );
    let (client_crt, client_key) = leaf(d, "client", &ca, &[ExtendedKeyUsagePurpose::ClientAuth]);
    let (rogue_crt, rogue_key) = leaf(d, "rogue", &other, &[ExtendedKeyUsagePurpose::ClientAuth]);

    let (cport, pport) = (free_port(), free_port());
    let url = format!("https://127.0.0.1:{cport}");
    let peer = format!("http://127.0.0.1:{pport}");
    let child = Command::new("etcd")
        .args(["--name", "tls", "--data-dir"])
        .arg(d.join("data"))
        .args([
            "--listen-client-urls",
            &url,
            "--advertise-client-urls",
            &url,
        ])
        .args([
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
        ])
        .args(["--initial-cluster", &format!("tls={peer}")])
        .arg("--cert-file")
        .arg(&server_crt)
        .arg("--key-file")
        .arg(&server_key)
        .arg("--trusted-ca-file")
        .arg(&ca_path)
        .arg("--client-cert-auth")
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(d.join("etcd.log")).unwrap(),
        ))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `etcd` ({e}): install Debian's etcd-server"));
    let _etcd = Etcd(child);

    let good = Client::new(
        std::slice::from_ref(&url),
        TlsFiles {
            ca: Some(ca_path.clone()),
            cert: Some(client_crt),
            key: Some(client_key),
        },
        Duration::from_secs(1),
    )
    .unwrap();
    let t0 = Instant::now();
    let lease = loop {
        match good.grant(Duration::from_secs(2)).await {
            Ok(l) => break l,
            Err(e) => {
                assert!(
                    t0.elapsed() < Duration::from_secs(20),
                    "etcd over TLS never answered: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let key = good
        .campaign("/cpe-test/tls", lease.id, "n1")
        .await
        .unwrap();
    assert_eq!(
        good.leader("/cpe-test/tls").await.unwrap().unwrap().value,
        "n1"
    );
    good.resign(&key).await.unwrap();
    good.revoke(lease.id).await.unwrap();

    // The members' certificate is not signed by the CA we were given.
    let wrong_ca = Client::new(
        std::slice::from_ref(&url),
        TlsFiles {
            ca: Some(other_ca_path),
            cert: None,
            key: None,
        },
        Duration::from_secs(1),
    )
    .unwrap();
    let e = wrong_ca
        .grant(Duration::from_secs(2))
        .await
        .unwrap_err()
        .to_string();
    eprintln!("wrong CA: {e}");
    assert!(
        e.contains("TLS handshake") && e.contains("--etcd-ca"),
        "{e}"
    );

    // etcd does not accept our client certificate (another CA), or none at all.
    for (cert, key) in [(Some(rogue_crt), Some(rogue_key)), (None, None)] {
        let c = Client::new(
            std::slice::from_ref(&url),
            TlsFiles {
                ca: Some(ca_path.clone()),
                cert,
                key,
            },
            Duration::from_secs(1),
        )
        .unwrap();
        let e = c
            .grant(Duration::from_secs(2))
            .await
            .unwrap_err()
            .to_string();
        eprintln!("client certificate refused: {e}");
        assert!(
            e.starts_with("etcd unreachable:") && e.contains(&url) && e.contains("--etcd-cert"),
            "{e}"
        );
    }
}
