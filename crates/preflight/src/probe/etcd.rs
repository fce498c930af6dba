//! Does an etcd client URL answer? A `POST /v3/maintenance/status` through etcd's JSON
//! gateway (etcd 3.4 and later), over TLS with the given CA and client certificate for
//! `https://` URLs. The same request `etcdctl endpoint status` makes, without gRPC.

use crate::facts::{Connect, EtcdStatus, Http};
use crate::probe::tls::{self, TlsFiles};
use std::net::SocketAddr;
use std::time::Duration;

/// `https://10.0.0.11:2379` → (tls?, host, port).
pub fn parse_url(url: &str) -> Result<(bool, String, u16), String> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(format!(
            "{url:?}: an etcd URL starts with http:// or https://"
        ));
    };
    let authority = rest.split('/').next().unwrap_or("");
    let (host, port) = if let Some(r) = authority.strip_prefix('[') {
        let (h, p) = r.split_once(']').ok_or(format!("{url:?}: unclosed ["))?;
        (h.to_string(), p.strip_prefix(':').unwrap_or(""))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p),
            None => (authority.to_string(), ""),
        }
    };
    let port = if port.is_empty() {
        2379
    } else {
        port.parse()
            .map_err(|_| format!("{url:?}: port {port:?} is not a number"))?
    };
    if host.is_empty() {
        return Err(format!("{url:?}: no host"));
    }
    Ok((tls, host, port))
}

pub async fn status(url: &str, files: &TlsFiles, timeout: Duration) -> EtcdStatus {
    let (use_tls, host, port) = match parse_url(url) {
        Ok(v) => v,
        Err(e) => return EtcdStatus::Credentials(e),
    };
    let addr: SocketAddr = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, port),
        Err(_) => match crate::probe::net::resolve(&host, port, timeout).await {
            Ok(v) if !v.is_empty() => SocketAddr::new(v[0], port),
            Ok(_) => {
                return EtcdStatus::Connect(Connect::Error(format!("{host} resolves to nothing")))
            }
            Err(e) => return EtcdStatus::Connect(Connect::Error(format!("{host}: {e}"))),
        },
    };
    let tls_params = if use_tls {
        let config = match tls::client_config(files, true) {
            Ok(c) => c,
            Err(e) => return EtcdStatus::Credentials(e),
        };
        let name = match tls::server_name(&host) {
            Ok(n) => n,
            Err(e) => return EtcdStatus::Credentials(e),
        };
        Some((config, name))
    } else {
        None
    };
    let r = tls::request(
        addr,
        tls_params,
        "POST",
        "/v3/maintenance/status",
        Some("{}".into()),
        timeout,
    )
    .await;
    from_http(r)
}

fn from_http(r: Http) -> EtcdStatus {
    match r {
        Http::Status { code: 200, body } => match parse_status(&body) {
            Some(s) => s,
            None => EtcdStatus::Http { status: 200, body },
        },
        Http::Status { code, body } => EtcdStatus::Http { status: code, body },
        Http::Connect(c) => EtcdStatus::Connect(c),
        Http::Tls(e) => EtcdStatus::Tls(e),
        Http::Other(e) => EtcdStatus::Connect(Connect::Error(e)),
    }
}

/// The gateway's JSON: 64-bit ids are strings (`"leader":"10276657743932975437"`).
pub fn parse_status(body: &str) -> Option<EtcdStatus> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let version = v.get("version")?.as_str()?.to_string();
    let leader = v.get("leader").map(|l| match l {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    });
    Some(EtcdStatus::Ok { version, leader })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("https://10.0.0.11:2379").unwrap(),
            (true, "10.0.0.11".into(), 2379)
        );
        assert_eq!(
            parse_url("http://etcd.local").unwrap(),
            (false, "etcd.local".into(), 2379)
        );
        assert_eq!(
            parse_url("https://[fd00::1]:12379/").unwrap(),
            (true, "fd00::1".into(), 12379)
        );
        assert!(parse_url("10.0.0.11:2379").is_err());
        assert!(parse_url("http://h:port").is_err());
        assert!(parse_url("http://:2379").is_err());
    }

    #[test]
    fn status_bodies() {
        let body = r#"{"header":{"cluster_id":"14841639068965178418","member_id":"10276657743932975437","revision":"1","raft_term":"2"},"version":"3.4.23","dbSize":"20480","leader":"10276657743932975437","raftIndex":"4","raftTerm":"2","raftAppliedIndex":"4","dbSizeInUse":"20480"}"#;
        assert_eq!(
            parse_status(body),
            Some(EtcdStatus::Ok {
                version: "3.4.23".into(),
                leader: Some("10276657743932975437".into())
            })
        );
        assert_eq!(parse_status("{}"), None);
        assert_eq!(parse_status("not json"), None);
        assert!(matches!(
            from_http(Http::Status {
                code: 200,
                body: "x".into()
            }),
            EtcdStatus::Http { status: 200, .. }
        ));
    }
}
