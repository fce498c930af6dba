//! The `kubernetes` EndpointSlices (`discovery.k8s.io/v1`) and Endpoints (core/v1) of the
//! stand-in, list and watch, with switches for discovery tests: the endpoint set can be
//! changed at run time (`POST /debug/endpoints` with `ADDR:PORT,...`, or
//! [`crate::Handle::set_endpoints`]) and a fault can be set (`POST /debug/discovery-fault`
//! with `none`, `unreachable`, `forbidden`, `empty`, `garbage` or `stall`).
//!
//! Shapes follow kube-apiserver's: one slice per port (named `kubernetes`, then
//! `kubernetes-PORT`), port `https`, addresses ready; the Endpoints object has one subset
//! per port. A watch honours `timeoutSeconds` and `resourceVersion` (an older version gets
//! the current objects at once). Without v1 slices (`v1_slices: false`, like 1.20) the
//! slice path answers 404. With a token set, the discovery paths want it as a bearer token
//! (401 otherwise). It is not an object store: only these two resources exist.

use bytes::Bytes;
use http::{header, Response, StatusCode};
use http_body_util::BodyExt;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::routes::Body;

/// A fault of the discovery paths.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    None,
    /// The connection is closed without an answer.
    Unreachable,
    /// 403 with a Kubernetes Status.
    Forbidden,
    /// The objects list no address.
    Empty,
    /// 200 with a body that is not JSON.
    Garbage,
    /// Lists answer; watches send nothing and never end by their timeout.
    Stall,
}

impl Fault {
    pub fn parse(s: &str) -> Option<Fault> {
        Some(match s.trim() {
            "none" => Fault::None,
            "unreachable" => Fault::Unreachable,
            "forbidden" => Fault::Forbidden,
            "empty" => Fault::Empty,
            "garbage" => Fault::Garbage,
            "stall" => Fault::Stall,
            _ => return None,
        })
    }
}

/// What the stand-in serves about itself as the cluster's API servers.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// The `kubernetes` endpoints (empty: the server's own address).
    pub endpoints: Vec<SocketAddr>,
    /// Serve `discovery.k8s.io/v1` slices (false: 404, as Kubernetes 1.20).
    pub no_v1_slices: bool,
    /// Bearer token the discovery paths require.
    pub token: Option<String>,
}

pub(crate) struct Kube {
    set: Mutex<Vec<SocketAddr>>,
    fault: Mutex<Fault>,
    /// The resource version: bumped on every change of the set or the fault.
    version: watch::Sender<u64>,
    no_v1_slices: bool,
    token: Option<String>,
    /// Cancelled (and replaced) to end every open watch.
    cut: Mutex<CancellationToken>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Api {
    Slices,
    Endpoints,
}

impl Kube {
    pub(crate) fn new(s: &Settings, own: SocketAddr) -> Kube {
        let set = if s.endpoints.is_empty() {
            vec![own]
        } else {
            s.endpoints.clone()
        };
        Kube {
            set: Mutex::new(set),
            fault: Mutex::new(Fault::None),
            version: watch::channel(1).0,
            no_v1_slices: s.no_v1_slices,
            token: s.token.clone(),
            cut: Mutex::new(CancellationToken::new()),
        }
    }

    pub(crate) fn set_endpoints(&self, set: Vec<SocketAddr>) {
        *self.set.lock().unwrap_or_else(|e| e.into_inner()) = set;
        self.version.send_modify(|v| *v += 1);
    }

    pub(crate) fn set_fault(&self, f: Fault) {
        *self.fault.lock().unwrap_or_else(|e| e.into_inner()) = f;
        self.version.send_modify(|v| *v += 1);
        if matches!(f, Fault::Unreachable | Fault::Forbidden) {
            // Open watches end, so clients come back and meet the fault.
            let mut cut = self.cut.lock().unwrap_or_else(|e| e.into_inner());
            cut.cancel();
            *cut = CancellationToken::new();
        }
    }

    fn fault(&self) -> Fault {
        *self.fault.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn api(path: &str) -> Option<Api> {
        match path {
            "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices" => Some(Api::Slices),
            "/api/v1/namespaces/default/endpoints" => Some(Api::Endpoints),
            _ => None,
        }
    }

    /// Whether this request gets its connection closed (the `unreachable` fault).
    pub(crate) fn drops(&self, uri: &http::Uri) -> bool {
        Kube::api(uri.path()).is_some() && self.fault() == Fault::Unreachable
    }

    /// The objects by name at the current set.
    fn objects(&self, api: Api, version: u64) -> BTreeMap<String, serde_json::Value> {
        let set = if self.fault() == Fault::Empty {
            Vec::new()
        } else {
            self.set.lock().unwrap_or_else(|e| e.into_inner()).clone()
        };
        let mut by_port: BTreeMap<u16, Vec<SocketAddr>> = BTreeMap::new();
        for a in set {
            by_port.entry(a.port()).or_default().push(a);
        }
        let rv = version.to_string();
        let mut out = BTreeMap::new();
        match api {
            Api::Slices => {
                if by_port.is_empty() {
                    by_port.insert(6443, Vec::new());
                }
                for (i, (port, addrs)) in by_port.iter().enumerate() {
                    let name = if i == 0 {
                        "kubernetes".to_string()
                    } else {
                        format!("kubernetes-{port}")
                    };
                    let family = if addrs.iter().any(|a| a.is_ipv6()) {
                        "IPv6"
                    } else {
                        "IPv4"
                    };
                    let endpoints: Vec<_> = addrs
                        .iter()
                        .map(|a| serde_json::json!({"addresses": [a.ip().to_string()], "conditions": {"ready": true}}))
                        .collect();
                    out.insert(
                        name.clone(),
                        serde_json::json!({
                            "kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1",
                            "metadata": {"name": name, "namespace": "default", "resourceVersion": rv,
                                "labels": {"kubernetes.io/service-name": "kubernetes", "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}},
                            "addressType": family,
                            "endpoints": if addrs.is_empty() { serde_json::Value::Null } else { endpoints.into() },
                            "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
                        }),
                    );
                }
            }
            Api::Endpoints => {
                let subsets: Vec<_> = by_port
                    .iter()
                    .map(|(port, addrs)| {
                        serde_json::json!({
                            "addresses": addrs.iter().map(|a| serde_json::json!({"ip": a.ip().to_string()})).collect::<Vec<_>>(),
                            "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
                        })
                    })
                    .collect();
                let mut e = serde_json::json!({
                    "kind": "Endpoints", "apiVersion": "v1",
                    "metadata": {"name": "kubernetes", "namespace": "default", "resourceVersion": rv},
                });
                if !subsets.is_empty() {
                    e["subsets"] = subsets.into();
                }
                out.insert("kubernetes".into(), e);
            }
        }
        out
    }

    /// Answers a discovery path (`None`: not one).
    pub(crate) fn respond(
        self: &Arc<Self>,
        uri: &http::Uri,
        headers: &http::HeaderMap,
    ) -> Option<Response<Body>> {
        let api = Kube::api(uri.path())?;
        let query = uri.query().unwrap_or("");
        let param = |k: &str| {
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
        };
        if let Some(t) = &self.token {
            let ok = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.strip_prefix("Bearer ") == Some(t.as_str()));
            if !ok {
                return Some(status(
                    StatusCode::UNAUTHORIZED,
                    "Unauthorized",
                    "Unauthorized",
                ));
            }
        }
        if api == Api::Slices && self.no_v1_slices {
            return Some(status(
                StatusCode::NOT_FOUND,
                "NotFound",
                "the server could not find the requested resource",
            ));
        }
        match self.fault() {
            Fault::Forbidden => {
                let what = match api {
                    Api::Slices => "endpointslices.discovery.k8s.io",
                    Api::Endpoints => "endpoints",
                };
                return Some(status(
                    StatusCode::FORBIDDEN,
                    "Forbidden",
                    &format!("{what} is forbidden: User \"system:serviceaccount:kube-system:cpe-lb\" cannot list resource in API group in the namespace \"default\""),
                ));
            }
            Fault::Garbage => {
                return Some(
                    Response::builder()
                        .status(StatusCode::OK)
                        .header(header::CONTENT_TYPE, "application/json")
                        .body(full("<html>this is not JSON"))
                        .expect("static parts"),
                )
            }
            _ => {}
        }
        let version = *self.version.borrow();
        if param("watch").is_some_and(|w| w == "1" || w == "true") {
            let timeout = param("timeoutSeconds")
                .and_then(|t| t.parse::<u64>().ok())
                .map(Duration::from_secs);
            let from: u64 = param("resourceVersion")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            return Some(self.watch(api, from, timeout));
        }
        let items: Vec<_> = self.objects(api, version).into_values().collect();
        let kind = match api {
            Api::Slices => ("EndpointSliceList", "discovery.k8s.io/v1"),
            Api::Endpoints => ("EndpointsList", "v1"),
        };
        let list = serde_json::json!({
            "kind": kind.0, "apiVersion": kind.1,
            "metadata": {"resourceVersion": version.to_string()},
            "items": items,
        });
        Some(
            Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "application/json")
                .body(full(list.to_string()))
                .expect("static parts"),
        )
    }

    fn watch(self: &Arc<Self>, api: Api, from: u64, timeout: Option<Duration>) -> Response<Body> {
        let (tx, rx) = mpsc::channel::<Bytes>(16);
        let mut changes = self.version.subscribe();
        let cut = self.cut.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let stall = self.fault() == Fault::Stall;
        let kube = self.clone();
        tokio::spawn(async move {
            let mut known: BTreeMap<String, serde_json::Value> = BTreeMap::new();
            let mut fresh = from != 0;
            if fresh {
                // The client has the objects at `from`: it needs what changed since.
                known = kube.objects(api, from);
            }
            let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
            let sleep = async move {
                match deadline {
                    Some(d) if !stall => tokio::time::sleep_until(d).await,
                    _ => std::future::pending().await,
                }
            };
            tokio::pin!(sleep);
            let mut send_now = *changes.borrow_and_update() != from;
            loop {
                if send_now && !stall && kube.fault() != Fault::Stall {
                    let version = *changes.borrow();
                    for line in kube.events(api, version, &mut known, &mut fresh) {
                        if tx.send(line).await.is_err() {
                            return;
                        }
                    }
                }
                tokio::select! {
                    _ = &mut sleep => return,
                    _ = cut.cancelled() => return,
                    _ = tx.closed() => return,
                    r = changes.changed() => {
                        if r.is_err() { return; }
                        send_now = true;
                    }
                }
            }
        });
        Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/json")
            .body(ChannelBody { rx }.boxed())
            .expect("static parts")
    }

    /// The watch events from `known` to the objects at `version` (ADDED, MODIFIED,
    /// DELETED), or a garbage line under the `garbage` fault.
    fn events(
        &self,
        api: Api,
        version: u64,
        known: &mut BTreeMap<String, serde_json::Value>,
        fresh: &mut bool,
    ) -> Vec<Bytes> {
        if self.fault() == Fault::Garbage {
            return vec![Bytes::from_static(b"{this is not a watch event\n")];
        }
        let now = self.objects(api, version);
        let mut out = Vec::new();
        for (name, obj) in &now {
            let kind = match known.get(name) {
                None => "ADDED",
                Some(o) if o != obj || !*fresh => "MODIFIED",
                Some(_) => continue,
            };
            out.push(event(kind, obj));
        }
        for (name, obj) in known.iter() {
            if !now.contains_key(name) {
                let mut o = obj.clone();
                o["metadata"]["resourceVersion"] = version.to_string().into();
                out.push(event("DELETED", &o));
            }
        }
        *known = now;
        *fresh = true;
        out
    }
}

fn event(kind: &str, obj: &serde_json::Value) -> Bytes {
    let mut line = serde_json::json!({"type": kind, "object": obj}).to_string();
    line.push('\n');
    Bytes::from(line)
}

fn full(body: impl Into<Bytes>) -> Body {
    http_body_util::Full::new(body.into()).boxed()
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    let v = serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code.as_u16(),
    });
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "application/json")
        .body(full(v.to_string()))
        .expect("static parts")
}

/// A body fed by the watch task; it ends when the task does.
struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        self.rx
            .poll_recv(cx)
            .map(|b| b.map(|b| Ok(hyper::body::Frame::data(b))))
    }
}

/// Parses `ADDR:PORT,ADDR:PORT` (commas, spaces or newlines between).
pub fn parse_set(text: &str) -> Result<Vec<SocketAddr>, String> {
    text.split([',', ' ', '\n'])
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            s.trim()
                .parse()
                .map_err(|_| format!("`{s}` is not ADDR:PORT"))
        })
        .collect()
}
