//! The `kubernetes` source: list, then watch, the `kubernetes` EndpointSlices in `default`
//! (`discovery.k8s.io/v1`, label `kubernetes.io/service-name=kubernetes`), or the core/v1
//! `kubernetes` Endpoints where the server has no v1 slices (a 404 on the slice list:
//! Kubernetes 1.20 and older), through the load balancer's own healthy backends.
//!
//! Each round picks a backend that is up (rotating on failure; any member when none is up),
//! connects to its address, verifies the certificate with the kubeconfig's CA
//! (`kubeconfig.rs`), lists, then watches from the list's `resourceVersion` with
//! `timeoutSeconds`. Every list and every watch event yields the whole set again
//! ([`slices_set`], [`endpoints_set`]: ready addresses at the `https` port), reported to
//! the runner, which judges it. A watch that neither sends nor ends within its timeout
//! plus a grace is reported as stalled and started again with a fresh list.
//!
//! Plain HTTP/1.1 over hyper and rustls (the stack the health checks use) instead of
//! kube-rs: see docs/discovery.md for why.

use super::decide::Fault;
use super::kubeconfig::Kube;
use super::Report;
use crate::BackendSpec;
use bytes::Bytes;
use cpe_config::DiscoverySource as Source;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// The two APIs that list the API servers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    /// `discovery.k8s.io/v1` EndpointSlices labelled `kubernetes.io/service-name=kubernetes`.
    Slices,
    /// core/v1 Endpoints named `kubernetes`.
    Endpoints,
}

impl Api {
    pub fn as_str(self) -> &'static str {
        match self {
            Api::Slices => "discovery.k8s.io/v1 EndpointSlice",
            Api::Endpoints => "v1 Endpoints",
        }
    }

    fn list_path(self) -> &'static str {
        match self {
            Api::Slices => "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3Dkubernetes",
            Api::Endpoints => "/api/v1/namespaces/default/endpoints?fieldSelector=metadata.name%3Dkubernetes",
        }
    }
}

/// Connect and TLS handshake together may take this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A list answer may take this long (headers and body).
const LIST_TIMEOUT: Duration = Duration::from_secs(5);
/// At most this much of a list answer is read.
const MAX_LIST: usize = 4 << 20;
/// Between failed rounds.
const BACKOFF: [Duration; 4] = [
    Duration::from_millis(250),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(5),
];

// ---- the objects, as far as discovery reads them -----------------------------------

#[derive(Deserialize)]
struct Meta {
    #[serde(default)]
    name: String,
    #[serde(rename = "resourceVersion", default)]
    resource_version: String,
}

#[derive(Deserialize)]
struct List<T> {
    metadata: Meta,
    items: Vec<T>,
}

#[derive(Deserialize)]
struct Slice {
    metadata: Meta,
    #[serde(rename = "addressType")]
    address_type: String,
    #[serde(default)]
    endpoints: Option<Vec<SliceEndpoint>>,
    #[serde(default)]
    ports: Option<Vec<Port>>,
}

#[derive(Deserialize)]
struct SliceEndpoint {
    addresses: Vec<String>,
    #[serde(default)]
    conditions: Option<Conditions>,
}

#[derive(Deserialize)]
struct Conditions {
    ready: Option<bool>,
}

#[derive(Deserialize)]
struct Port {
    name: Option<String>,
    port: Option<i64>,
}

#[derive(Deserialize)]
struct Endpoints {
    metadata: Meta,
    #[serde(default)]
    subsets: Option<Vec<Subset>>,
}

#[derive(Deserialize)]
struct Subset {
    #[serde(default)]
    addresses: Option<Vec<Address>>,
    #[serde(default)]
    ports: Option<Vec<Port>>,
}

#[derive(Deserialize)]
struct Address {
    ip: String,
}

#[derive(Deserialize)]
struct Event {
    #[serde(rename = "type")]
    kind: String,
    object: serde_json::Value,
}

/// The API server port: the port named `https`, else the only one.
fn https_port(ports: &[Port]) -> Option<u16> {
    let p = ports
        .iter()
        .find(|p| p.name.as_deref() == Some("https"))
        .or(if ports.len() == 1 {
            ports.first()
        } else {
            None
        })?;
    u16::try_from(p.port?).ok().filter(|p| *p != 0)
}

fn spec(ip: &str, port: u16) -> Result<BackendSpec, Fault> {
    let ip: std::net::IpAddr = ip
        .parse()
        .map_err(|_| Fault::Unparsable(format!("`{ip}` is not an IP address")))?;
    Ok(BackendSpec::from_addr(SocketAddr::new(ip, port)))
}

/// The backends of a set of slices: ready (or unknown) addresses of IPv4/IPv6 slices at
/// their `https` port. FQDN slices are skipped.
fn slices_set<'a>(slices: impl Iterator<Item = &'a Slice>) -> Result<Vec<BackendSpec>, Fault> {
    let mut out = Vec::new();
    for s in slices {
        if s.address_type != "IPv4" && s.address_type != "IPv6" {
            continue;
        }
        let Some(port) = https_port(s.ports.as_deref().unwrap_or(&[])) else {
            continue;
        };
        for e in s.endpoints.iter().flatten() {
            if e.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                continue;
            }
            for a in &e.addresses {
                out.push(spec(a, port)?);
            }
        }
    }
    Ok(out)
}

/// The backends of the `kubernetes` Endpoints: every ready address of every subset at
/// the subset's `https` port.
fn endpoints_set(e: Option<&Endpoints>) -> Result<Vec<BackendSpec>, Fault> {
    let mut out = Vec::new();
    for s in e.and_then(|e| e.subsets.as_ref()).into_iter().flatten() {
        let Some(port) = https_port(s.ports.as_deref().unwrap_or(&[])) else {
            continue;
        };
        for a in s.addresses.iter().flatten() {
            out.push(spec(&a.ip, port)?);
        }
    }
    Ok(out)
}

/// What the source knows: the objects by name, the version to watch from.
#[derive(Default)]
pub(crate) struct Objects {
    slices: BTreeMap<String, Slice>,
    endpoints: Option<Endpoints>,
    version: String,
}

fn unparsable(e: serde_json::Error) -> Fault {
    Fault::Unparsable(e.to_string())
}

impl Objects {
    /// A list answer's body.
    pub(crate) fn from_list(api: Api, body: &[u8]) -> Result<Objects, Fault> {
        let mut o = Objects::default();
        match api {
            Api::Slices => {
                let l: List<Slice> = serde_json::from_slice(body).map_err(unparsable)?;
                o.version = l.metadata.resource_version;
                for s in l.items {
                    o.slices.insert(s.metadata.name.clone(), s);
                }
            }
            Api::Endpoints => {
                let l: List<Endpoints> = serde_json::from_slice(body).map_err(unparsable)?;
                o.version = l.metadata.resource_version;
                o.endpoints = l
                    .items
                    .into_iter()
                    .find(|e| e.metadata.name == "kubernetes");
            }
        }
        Ok(o)
    }

    /// One watch event line. `Ok(false)`: the watch must start again (an `ERROR` event,
    /// e.g. 410 Gone).
    pub(crate) fn apply(&mut self, api: Api, line: &[u8]) -> Result<bool, Fault> {
        let ev: Event = serde_json::from_slice(line).map_err(unparsable)?;
        if ev.kind == "ERROR" {
            return Ok(false);
        }
        let version = ev
            .object
            .pointer("/metadata/resourceVersion")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string();
        if ev.kind == "BOOKMARK" {
            self.version = version;
            return Ok(true);
        }
        let deleted = match ev.kind.as_str() {
            "ADDED" | "MODIFIED" => false,
            "DELETED" => true,
            other => return Err(Fault::Unparsable(format!("watch event type `{other}`"))),
        };
        match api {
            Api::Slices => {
                let s: Slice = serde_json::from_value(ev.object).map_err(unparsable)?;
                if deleted {
                    self.slices.remove(&s.metadata.name);
                } else {
                    self.slices.insert(s.metadata.name.clone(), s);
                }
            }
            Api::Endpoints => {
                let e: Endpoints = serde_json::from_value(ev.object).map_err(unparsable)?;
                if e.metadata.name == "kubernetes" {
                    self.endpoints = (!deleted).then_some(e);
                }
            }
        }
        self.version = version;
        Ok(true)
    }

    /// The set these objects list.
    pub(crate) fn set(&self, api: Api) -> Result<Vec<BackendSpec>, Fault> {
        match api {
            Api::Slices => slices_set(self.slices.values()),
            Api::Endpoints => endpoints_set(self.endpoints.as_ref()),
        }
    }
}

// ---- the connection ------------------------------------------------------------------

type Response = hyper::Response<hyper::body::Incoming>;

/// `GET path` on a new connection to `addr`, verified and authenticated per `kube`.
async fn get(kube: &Kube, addr: SocketAddr, path: &str) -> Result<Response, Fault> {
    let unreachable =
        |what: &str, e: &dyn std::fmt::Display| Fault::Unreachable(format!("{addr}: {what}: {e}"));
    let tls = kube.tls(addr.ip()).map_err(Fault::Setup)?;
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| unreachable("connect", &e))?;
        let _ = tcp.set_nodelay(true);
        tokio_rustls::TlsConnector::from(tls)
            .connect(kube.sni(), tcp)
            .await
            .map_err(|e| unreachable("TLS", &e))
    })
    .await
    .map_err(|_| unreachable("connect", &format!("no answer within {CONNECT_TIMEOUT:?}")))??;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| unreachable("HTTP", &e))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut req = hyper::Request::get(path)
        .header(http::header::HOST, addr.to_string())
        .header(http::header::ACCEPT, "application/json")
        .header(http::header::USER_AGENT, "cpe-lb-discovery");
    if let Some(t) = &kube.token {
        req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = req
        .body(Empty::<Bytes>::new())
        .map_err(|e| Fault::Setup(e.to_string()))?;
    let resp = send
        .send_request(req)
        .await
        .map_err(|e| unreachable("request", &e))?;
    match resp.status().as_u16() {
        200 => Ok(resp),
        code => {
            let body = tokio::time::timeout(Duration::from_secs(2), resp.into_body().collect())
                .await
                .ok()
                .and_then(|b| b.ok())
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let message = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| {
                    v.get("message")
                        .and_then(|m| m.as_str())
                        .map(str::to_string)
                })
                .unwrap_or_else(|| {
                    String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned()
                });
            Err(match code {
                401 => Fault::Unauthorized,
                403 => Fault::Forbidden(message),
                _ => Fault::Http {
                    status: code,
                    message,
                },
            })
        }
    }
}

async fn list(kube: &Kube, addr: SocketAddr, api: Api) -> Result<Objects, Fault> {
    tokio::time::timeout(LIST_TIMEOUT, async {
        let resp = get(kube, addr, api.list_path()).await?;
        let mut body = resp.into_body();
        let mut buf = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|e| Fault::Unreachable(format!("{addr}: reading the list: {e}")))?;
            if let Some(d) = frame.data_ref() {
                buf.extend_from_slice(d);
                if buf.len() > MAX_LIST {
                    return Err(Fault::Unparsable(format!(
                        "the list is larger than {MAX_LIST} bytes"
                    )));
                }
            }
        }
        Objects::from_list(api, &buf)
    })
    .await
    .map_err(|_| Fault::Unreachable(format!("{addr}: no list answer within {LIST_TIMEOUT:?}")))?
}

/// What the runner tells the source each round: where it may connect.
pub(crate) type Backends = Box<dyn Fn() -> Vec<SocketAddr> + Send + Sync>;

/// Runs the source until the channel closes: list, watch, report; on failure report,
/// back off, try the next backend.
/// The kubeconfig is read again before each round (a rotated token file is followed); one
/// that no longer reads is a fault, and the last good one is used.
pub(crate) async fn run(
    mut kube: Kube,
    path: Option<std::path::PathBuf>,
    backends: Backends,
    watch_timeout: Duration,
    tx: mpsc::Sender<Report>,
) {
    let grace = watch_timeout / 2 + Duration::from_secs(1);
    let mut turn = 0usize;
    let mut failures = 0usize;
    let mut api = Api::Slices;
    while !tx.is_closed() {
        if let Some(p) = &path {
            match Kube::load(p) {
                Ok(k) => kube = k,
                Err(e) => {
                    let f = Fault::Setup(e.to_string());
                    if tx.send(Report::fault(Source::Kubernetes, f)).await.is_err() {
                        return;
                    }
                }
            }
        }
        let candidates = backends();
        let result = if candidates.is_empty() {
            Err(Fault::Unreachable("no backend to ask".into()))
        } else {
            let addr = candidates[turn % candidates.len()];
            round(&kube, addr, &mut api, watch_timeout, grace, &tx).await
        };
        let fault = match result {
            Ok(()) => {
                failures = 0;
                continue;
            }
            Err(f) => f,
        };
        let stalled = matches!(fault, Fault::Stalled(_));
        if tx
            .send(Report::fault(Source::Kubernetes, fault))
            .await
            .is_err()
        {
            return;
        }
        if !stalled {
            turn = turn.wrapping_add(1);
            tokio::time::sleep(BACKOFF[failures.min(BACKOFF.len() - 1)]).await;
            failures += 1;
        }
    }
}

/// One list and one watch through `addr`. `Ok`: the watch ended by itself (time for the
/// next); `Err`: what went wrong (the list's or answer's fault, or a stall).
async fn round(
    kube: &Kube,
    addr: SocketAddr,
    api: &mut Api,
    watch_timeout: Duration,
    grace: Duration,
    tx: &mpsc::Sender<Report>,
) -> Result<(), Fault> {
    // The v1 slices first on every list, so an upgraded server is followed.
    let mut objects = match list(kube, addr, Api::Slices).await {
        Ok(o) => {
            *api = Api::Slices;
            o
        }
        Err(Fault::Http { status: 404, .. }) => {
            *api = Api::Endpoints;
            list(kube, addr, Api::Endpoints).await?
        }
        Err(f) => return Err(f),
    };
    let report = |set| Report::answer(Source::Kubernetes, set, addr, api.as_str());
    if tx.send(report(objects.set(*api))).await.is_err() {
        return Ok(());
    }
    let path = format!(
        "{}&watch=1&allowWatchBookmarks=true&timeoutSeconds={}&resourceVersion={}",
        api.list_path(),
        watch_timeout.as_secs().max(1),
        objects.version
    );
    let resp = tokio::time::timeout(LIST_TIMEOUT, get(kube, addr, &path))
        .await
        .map_err(|_| {
            Fault::Unreachable(format!("{addr}: no watch answer within {LIST_TIMEOUT:?}"))
        })??;
    let mut body = resp.into_body();
    let mut buf: Vec<u8> = Vec::new();
    let deadline = tokio::time::Instant::now() + watch_timeout.max(Duration::from_secs(1)) + grace;
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return Err(Fault::Stalled(grace)),
            Ok(None) => return Ok(()),
            Ok(Some(Err(e))) => return Err(Fault::Unreachable(format!("{addr}: watch: {e}"))),
            Ok(Some(Ok(f))) => f,
        };
        let Some(data) = frame.data_ref() else {
            continue;
        };
        buf.extend_from_slice(data);
        if buf.len() > MAX_LIST {
            return Err(Fault::Unparsable("a watch event larger than 4 MiB".into()));
        }
        while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            if line.iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            if !objects.apply(*api, &line)? {
                return Ok(());
            }
            if tx.send(report(objects.set(*api))).await.is_err() {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SLICES: &str = r#"{"kind":"EndpointSliceList","apiVersion":"discovery.k8s.io/v1","metadata":{"resourceVersion":"7"},"items":[
      {"metadata":{"name":"kubernetes","resourceVersion":"5"},"addressType":"IPv4",
       "endpoints":[{"addresses":["10.0.0.1"],"conditions":{"ready":true}},{"addresses":["10.0.0.2"]},{"addresses":["10.0.0.3"],"conditions":{"ready":false}}],
       "ports":[{"name":"https","port":6443,"protocol":"TCP"}]}]}"#;

    fn names(set: Vec<BackendSpec>) -> Vec<String> {
        set.iter().map(|b| b.to_string()).collect()
    }

    #[test]
    fn slices_list_ready_addresses_at_the_https_port() {
        let o = Objects::from_list(Api::Slices, SLICES.as_bytes()).unwrap();
        assert_eq!(o.version, "7");
        assert_eq!(
            names(o.set(Api::Slices).unwrap()),
            ["10.0.0.1:6443", "10.0.0.2:6443"]
        );
    }

    #[test]
    fn watch_events_change_the_set() {
        let mut o = Objects::from_list(Api::Slices, SLICES.as_bytes()).unwrap();
        let ev = r#"{"type":"MODIFIED","object":{"metadata":{"name":"kubernetes","resourceVersion":"9"},"addressType":"IPv4","endpoints":[{"addresses":["10.0.0.4"]}],"ports":[{"name":"https","port":6443}]}}"#;
        assert!(o.apply(Api::Slices, ev.as_bytes()).unwrap());
        assert_eq!(o.version, "9");
        assert_eq!(names(o.set(Api::Slices).unwrap()), ["10.0.0.4:6443"]);
        let del = r#"{"type":"DELETED","object":{"metadata":{"name":"kubernetes","resourceVersion":"10"},"addressType":"IPv4"}}"#;
        assert!(o.apply(Api::Slices, del.as_bytes()).unwrap());
        assert!(
            o.set(Api::Slices).unwrap().is_empty(),
            "judged empty by the runner"
        );
        let gone = r#"{"type":"ERROR","object":{"kind":"Status","code":410}}"#;
        assert!(!o.apply(Api::Slices, gone.as_bytes()).unwrap());
        assert!(o.apply(Api::Slices, b"garbage").is_err());
    }

    #[test]
    fn endpoints_of_the_old_api() {
        let list = r#"{"kind":"EndpointsList","metadata":{"resourceVersion":"3"},"items":[{"metadata":{"name":"kubernetes"},
          "subsets":[{"addresses":[{"ip":"10.0.0.1"},{"ip":"fd00::2"}],"ports":[{"name":"https","port":6443,"protocol":"TCP"}]}]}]}"#;
        let o = Objects::from_list(Api::Endpoints, list.as_bytes()).unwrap();
        assert_eq!(
            names(o.set(Api::Endpoints).unwrap()),
            ["10.0.0.1:6443", "[fd00::2]:6443"]
        );
        let empty = r#"{"metadata":{"resourceVersion":"3"},"items":[]}"#;
        let o = Objects::from_list(Api::Endpoints, empty.as_bytes()).unwrap();
        assert!(o.set(Api::Endpoints).unwrap().is_empty());
    }

    #[test]
    fn garbage_is_unparsable() {
        for body in [
            "",
            "<html>",
            r#"{"items":"x"}"#,
            r#"{"metadata":{},"items":[{"metadata":{"name":"k"},"addressType":"IPv4","endpoints":[{"addresses":["nope"]}],"ports":[{"name":"https","port":1}]}]}"#,
        ] {
            let r =
                Objects::from_list(Api::Slices, body.as_bytes()).and_then(|o| o.set(Api::Slices));
            assert!(matches!(r, Err(Fault::Unparsable(_))), "{body}");
        }
    }
}
