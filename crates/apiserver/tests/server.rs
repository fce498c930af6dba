//! The stand-in API server over real loopback sockets: the shutdown sequence (on paused
//! time), TLS against the generated CA, name checks, client certificates, ALPN, the watch
//! stream and the readiness switch.

use cpe_apiserver::client::{self, ClientError, Conn, Target, Watch};
use cpe_apiserver::{tls, Config, Pki, Running, Server, TlsSettings};
use std::time::Duration;

fn plain(addr: std::net::SocketAddr) -> Target {
    Target {
        addr,
        tls: None,
        timeout: Duration::from_secs(5),
    }
}

fn tls_target(addr: std::net::SocketAddr, pki: &Pki, name: &str) -> Target {
    Target {
        addr,
        tls: Some((
            tls::client_config(&pki.ca_cert_pem, None, &[b"http/1.1"]).unwrap(),
            tls::server_name(name).unwrap(),
        )),
        timeout: Duration::from_secs(5),
    }
}

/// Trusts `pki`'s CA for "localhost" and presents the given client certificate.
fn client_cert_target(addr: std::net::SocketAddr, pki: &Pki, cert: &str, key: &str) -> Target {
    Target {
        addr,
        tls: Some((
            tls::client_config(&pki.ca_cert_pem, Some((cert, key)), &[]).unwrap(),
            tls::server_name("localhost").unwrap(),
        )),
        timeout: Duration::from_secs(5),
    }
}

/// A TLS connection to `running` as "localhost", offering one ALPN protocol.
async fn tls_connect(
    running: &Running,
    pki: &Pki,
    alpn: &[u8],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let config = tls::client_config(&pki.ca_cert_pem, None, &[alpn]).unwrap();
    let tcp = tokio::net::TcpStream::connect(running.local_addr())
        .await
        .unwrap();
    tokio_rustls::TlsConnector::from(config)
        .connect(tls::server_name("localhost").unwrap(), tcp)
        .await
        .unwrap()
}

async fn start(config: Config) -> Running {
    Server::bind(config).await.unwrap().spawn()
}

fn local(name: &str) -> Config {
    Config::new("127.0.0.1:0".parse().unwrap(), name, None)
}

fn with_tls(name: &str, pki: &Pki, client_ca: bool) -> Config {
    Config::new(
        "127.0.0.1:0".parse().unwrap(),
        name,
        Some(TlsSettings {
            cert_pem: pki.server.cert_pem.clone(),
            key_pem: pki.server.key_pem.clone(),
            client_ca_pem: client_ca.then(|| pki.ca_cert_pem.clone()),
        }),
    )
}

#[tokio::test(start_paused = true)]
async fn shutdown_sequence_readyz_503_while_serving_then_refused() {
    let mut config = local("cp1");
    config.shutdown_delay = Duration::from_secs(10);
    config.shutdown_grace = Duration::from_secs(1);
    let running = start(config).await;
    let addr = running.local_addr();
    let target = plain(addr);
    let handle = running.handle();

    // Before: ready; a keep-alive connection and a watch opened now must live through the delay.
    assert_eq!(client::get(&target, "/readyz").await.unwrap().status, 200);
    let mut keepalive = Conn::open(&target).await.unwrap();
    assert_eq!(keepalive.get("/version").await.unwrap().status, 200);
    let mut watch = Watch::start(&target, "/debug/stream").await.unwrap();
    assert_eq!(watch.status, 200);

    handle.shutdown();
    assert!(!handle.is_ready());
    // During the delay: /readyz says 503 with the reason, everything else is still served,
    // on new connections and on the open ones.
    let r = client::get(&target, "/readyz").await.unwrap();
    assert_eq!(r.status, 503);
    assert!(
        String::from_utf8_lossy(&r.body).contains("shutting down"),
        "{:?}",
        r.body
    );
    assert_eq!(client::get(&target, "/livez").await.unwrap().status, 200);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let v = client::get(&target, "/version").await.unwrap();
    assert_eq!(v.status, 200);
    assert_eq!(v.backend.as_deref(), Some("cp1"));
    assert_eq!(keepalive.get("/readyz").await.unwrap().status, 503);
    assert_eq!(keepalive.get("/version").await.unwrap().status, 200);
    assert!(
        watch.next().await.unwrap().is_some(),
        "the watch still sends during the delay"
    );

    // After the delay: the watch ends cleanly, the listener is gone, the server task ends.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let mut ended = false;
    for _ in 0..100 {
        match watch.next().await {
            Ok(Some(_)) => continue,
            Ok(None) => {
                ended = true;
                break;
            }
            Err(e) => panic!("the watch must end cleanly, not with {e}"),
        }
    }
    assert!(ended, "the watch stream did not end after the delay");
    match client::get(&target, "/readyz").await {
        Err(ClientError::Connect { source, .. }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::ConnectionRefused)
        }
        other => panic!("expected connection refused after the delay, got {other:?}"),
    }
    tokio::time::timeout(Duration::from_secs(5), running.wait())
        .await
        .expect("the server stops after delay + grace")
        .unwrap();
    assert!(
        keepalive.get("/version").await.is_err(),
        "keep-alive connection closed"
    );
}

#[tokio::test(start_paused = true)]
async fn the_watch_stream_keeps_sending_numbered_events() {
    let mut config = local("cp2");
    config.stream_interval = Duration::from_millis(200);
    let running = start(config).await;
    let target = plain(running.local_addr());
    let mut watch = Watch::start(&target, "/api/v1/namespaces/default/pods?watch=true")
        .await
        .unwrap();
    assert_eq!(watch.status, 200);
    assert_eq!(watch.backend.as_deref(), Some("cp2"));
    let mut buf = Vec::new();
    let mut events = Vec::new();
    while events.len() < 50 {
        buf.extend_from_slice(&watch.next().await.unwrap().expect("stream ended"));
        while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
            events.push(v);
        }
    }
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["type"], "BOOKMARK");
        assert_eq!(
            e["object"]["metadata"]["resourceVersion"],
            (i + 1).to_string()
        );
        assert_eq!(
            e["object"]["metadata"]["annotations"]["cpe.dev/backend"],
            "cp2"
        );
    }
    running.kill().await;
}

#[tokio::test]
async fn tls_verifies_against_the_generated_ca_for_each_name() {
    let pki = Pki::generate(&["localhost", "127.0.0.1", "cp1.example.test"]).unwrap();
    let running = start(with_tls("cp1", &pki, false)).await;
    for name in ["localhost", "127.0.0.1", "cp1.example.test"] {
        let r = client::get(&tls_target(running.local_addr(), &pki, name), "/readyz")
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(r.status, 200);
        assert_eq!(&r.body[..], b"ok");
        assert_eq!(r.backend.as_deref(), Some("cp1"));
    }
    running.kill().await;
}

#[tokio::test]
async fn a_certificate_lacking_the_name_fails_verification() {
    // The server's certificate names only cp1.example.test, not the address we dial.
    let pki = Pki::generate(&["cp1.example.test"]).unwrap();
    let running = start(with_tls("cp1", &pki, false)).await;
    for name in ["127.0.0.1", "lb.example.test"] {
        match client::get(&tls_target(running.local_addr(), &pki, name), "/readyz").await {
            Err(ClientError::Tls { source, .. }) => {
                let msg = source.to_string();
                assert!(msg.contains("not valid for name"), "{name}: {msg}");
            }
            other => panic!("{name}: expected a name-check failure, got {other:?}"),
        }
    }
    // And a CA that did not issue it is not trusted either.
    let other = Pki::generate(&["cp1.example.test"]).unwrap();
    match client::get(
        &tls_target(running.local_addr(), &other, "cp1.example.test"),
        "/readyz",
    )
    .await
    {
        Err(ClientError::Tls { source, .. }) => {
            assert!(source.to_string().contains("UnknownIssuer"), "{source}")
        }
        other => panic!("expected an unknown-issuer failure, got {other:?}"),
    }
    running.kill().await;
}

#[tokio::test]
async fn client_certificates_are_optional_but_verified() {
    let pki = Pki::generate(&["localhost"]).unwrap();
    let running = start(with_tls("cp1", &pki, true)).await;
    let addr = running.local_addr();
    // No client certificate: let in (anonymous, like /readyz on a real API server).
    assert_eq!(
        client::get(&tls_target(addr, &pki, "localhost"), "/readyz")
            .await
            .unwrap()
            .status,
        200
    );
    // Our client certificate: let in.
    let with_cert = client_cert_target(addr, &pki, &pki.client.cert_pem, &pki.client.key_pem);
    assert_eq!(
        client::get(&with_cert, "/version").await.unwrap().status,
        200
    );
    // A client certificate from another CA: refused.
    let stranger = Pki::generate(&["localhost"]).unwrap();
    let bad = client_cert_target(
        addr,
        &pki,
        &stranger.client.cert_pem,
        &stranger.client.key_pem,
    );
    assert!(
        client::get(&bad, "/version").await.is_err(),
        "a stranger's client certificate was accepted"
    );
    running.kill().await;
}

#[tokio::test]
async fn alpn_offers_h2_and_http11() {
    let pki = Pki::generate(&["localhost"]).unwrap();
    let running = start(with_tls("cp1", &pki, false)).await;
    for (offer, want) in [(&b"h2"[..], &b"h2"[..]), (b"http/1.1", b"http/1.1")] {
        let tls = tls_connect(&running, &pki, offer).await;
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(want));
    }
    running.kill().await;
}

#[tokio::test]
async fn readiness_switch_by_post_and_by_handle() {
    let mut config = local("cp3");
    config.start_ready = false;
    let running = start(config).await;
    let target = plain(running.local_addr());
    let handle = running.handle();
    let mut conn = Conn::open(&target).await.unwrap();
    assert_eq!(conn.get("/readyz").await.unwrap().status, 503);
    assert_eq!(conn.get("/healthz").await.unwrap().status, 503);
    assert_eq!(conn.get("/livez").await.unwrap().status, 200);
    assert_eq!(conn.post("/debug/ready", "true").await.unwrap().status, 200);
    assert_eq!(conn.get("/readyz").await.unwrap().status, 200);
    assert_eq!(
        conn.post("/debug/ready", "maybe").await.unwrap().status,
        400
    );
    handle.set_ready(false);
    assert_eq!(conn.get("/readyz").await.unwrap().status, 503);
    assert!(handle.toggle_ready());
    assert_eq!(conn.get("/readyz").await.unwrap().status, 200);
    let who = conn.get("/debug/whoami").await.unwrap();
    assert_eq!(&who.body[..], b"cp3\n");
    let missing = conn.get("/api/v1/nodes").await.unwrap();
    assert_eq!(missing.status, 404);
    assert!(handle.requests() >= 10);
    running.kill().await;
}

#[tokio::test]
async fn kill_drops_the_listener_and_open_connections_at_once() {
    let mut config = local("cp1");
    config.shutdown_delay = Duration::from_secs(3600);
    let running = start(config).await;
    let target = plain(running.local_addr());
    let mut conn = Conn::open(&target).await.unwrap();
    assert_eq!(conn.get("/version").await.unwrap().status, 200);
    let mut watch = Watch::start(&target, "/debug/stream").await.unwrap();
    running.kill().await;
    assert!(matches!(
        client::get(&target, "/readyz").await,
        Err(ClientError::Connect { .. })
    ));
    assert!(conn.get("/version").await.is_err());
    // The watch ends (an error or EOF) instead of hanging.
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match watch.next().await {
                Ok(Some(_)) => continue,
                other => return other.map(|_| ()),
            }
        }
    })
    .await;
    assert!(end.is_ok(), "the watch hung after a kill");
}

#[tokio::test]
async fn bad_tls_material_fails_before_binding() {
    let config = Config::new(
        "127.0.0.1:0".parse().unwrap(),
        "cp1",
        Some(TlsSettings {
            cert_pem: "not pem".into(),
            key_pem: "not pem".into(),
            client_ca_pem: None,
        }),
    );
    let err = Server::bind(config).await.err().expect("bad PEM accepted");
    assert!(err.to_string().contains("server certificate"), "{err}");
}

#[tokio::test]
async fn http2_requests_and_a_watch_over_tls() {
    use http_body_util::{BodyExt, Empty};
    let pki = Pki::generate(&["localhost"]).unwrap();
    let running = start(with_tls("cp1", &pki, false)).await;
    let tls = tls_connect(&running, &pki, b"h2").await;
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = |path: &str| {
        http::Request::get(format!("https://localhost{path}"))
            .body(Empty::<bytes::Bytes>::new())
            .unwrap()
    };
    let v = send.send_request(req("/version")).await.unwrap();
    assert_eq!(v.status(), 200);
    assert_eq!(v.version(), http::Version::HTTP_2);
    let body = v.into_body().collect().await.unwrap().to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["gitVersion"], cpe_apiserver::GIT_VERSION);
    // A watch and a plain request multiplexed on the same connection.
    let mut watch = send
        .send_request(req("/debug/stream"))
        .await
        .unwrap()
        .into_body();
    let first = watch.frame().await.unwrap().unwrap().into_data().unwrap();
    assert!(first.starts_with(b"{"), "{first:?}");
    let r = send.send_request(req("/readyz")).await.unwrap();
    assert_eq!(r.status(), 200);
    running.kill().await;
}
