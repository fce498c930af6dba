//! What each request gets: health endpoints, `/version`, the debug endpoints and the
//! watch-like stream. Decided from the path, the method and a snapshot of the server's
//! state; no sockets here.
//!
//! Health semantics follow kube-apiserver's: `/livez` stays 200 while the process runs
//! (a liveness failure would get it restarted, which is wrong during a graceful shutdown);
//! `/readyz` and `/healthz` turn 503 when the server is not ready or shutting down, which
//! is what load balancers and the VIP agent look at.

use bytes::Bytes;
use http::{header, Method, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use std::convert::Infallible;
use std::future::Future as _;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio_util::sync::WaitForCancellationFutureOwned;

use crate::server::Shared;

pub type Body = BoxBody<Bytes, Infallible>;

/// The response header naming the backend that answered.
pub const BACKEND_HEADER: &str = "x-cpe-backend";

/// The `gitVersion` reported by `/version`.
pub const GIT_VERSION: &str = "v1.31.0-cpe-standin";

fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into()).boxed()
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(full(body))
        .expect("static response parts are valid")
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(full(value.to_string()))
        .expect("static response parts are valid")
}

/// The Kubernetes version object, shaped so that `kubectl version` accepts it.
pub fn version_json() -> serde_json::Value {
    serde_json::json!({
        "major": "1",
        "minor": "31",
        "gitVersion": GIT_VERSION,
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.22.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

fn status_json(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    json(
        code,
        &serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": message, "reason": reason, "code": code.as_u16(),
        }),
    )
}

fn is_watch(query: Option<&str>) -> bool {
    query
        .unwrap_or("")
        .split('&')
        .any(|kv| kv == "watch=true" || kv == "watch=1")
}

/// Answers one request. The body of a POST is read by the caller (`body` is its bytes).
pub(crate) fn respond(
    shared: &Arc<Shared>,
    method: &Method,
    uri: &http::Uri,
    body: &[u8],
) -> Response<Body> {
    let path = uri.path();
    let mut resp = match (method, path) {
        (&Method::GET | &Method::HEAD, "/livez") => text(StatusCode::OK, "ok"),
        (&Method::GET | &Method::HEAD, "/readyz" | "/healthz") => match shared.not_ready_reason() {
            None => text(StatusCode::OK, "ok"),
            Some(reason) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("[-]{reason}\n{} check failed", &path[1..]),
            ),
        },
        (&Method::GET, "/version") => json(StatusCode::OK, &version_json()),
        (&Method::GET, "/debug/whoami") => text(StatusCode::OK, format!("{}\n", shared.name)),
        (&Method::POST, "/debug/ready") => match std::str::from_utf8(body).map(str::trim) {
            Ok("true") => {
                shared.ready.store(true, Ordering::SeqCst);
                text(StatusCode::OK, "ready\n")
            }
            Ok("false") => {
                shared.ready.store(false, Ordering::SeqCst);
                text(StatusCode::OK, "not ready\n")
            }
            _ => text(StatusCode::BAD_REQUEST, "body must be `true` or `false`\n"),
        },
        (&Method::POST, "/debug/endpoints") => {
            match crate::endpoints::parse_set(&String::from_utf8_lossy(body)) {
                Ok(set) => {
                    shared.kube.set_endpoints(set);
                    text(StatusCode::OK, "endpoints set\n")
                }
                Err(e) => text(StatusCode::BAD_REQUEST, format!("{e}\n")),
            }
        }
        (&Method::POST, "/debug/discovery-fault") => {
            match crate::endpoints::Fault::parse(&String::from_utf8_lossy(body)) {
                Some(f) => {
                    shared.kube.set_fault(f);
                    text(StatusCode::OK, "fault set\n")
                }
                None => text(
                    StatusCode::BAD_REQUEST,
                    "body must be none, unreachable, forbidden, empty, garbage or stall\n",
                ),
            }
        }
        (&Method::GET, "/debug/stream") => watch(shared),
        (&Method::GET, p) if p.starts_with("/api") && is_watch(uri.query()) => watch(shared),
        (&Method::GET, _) => status_json(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("the stand-in API server does not serve {path}"),
        ),
        _ => status_json(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            &format!("{method} {path} is not supported by the stand-in API server"),
        ),
    };
    resp.headers_mut().insert(
        BACKEND_HEADER,
        http::HeaderValue::from_str(&shared.name).unwrap_or(http::HeaderValue::from_static("?")),
    );
    resp
}

fn watch(shared: &Arc<Shared>) -> Response<Body> {
    let mut tick = tokio::time::interval(shared.stream_interval);
    // Late ticks are not made up for: a stalled reader gets the next event, not a burst.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let body = WatchBody {
        tick,
        closed: Box::pin(shared.closing.clone().cancelled_owned()),
        seq: 0,
        name: shared.name.clone(),
    };
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.boxed())
        .expect("static response parts are valid")
}

/// A body that yields one JSON watch event per tick, forever, until the server closes
/// connections at the end of its shutdown sequence (then it ends cleanly, as
/// kube-apiserver ends watches).
struct WatchBody {
    tick: tokio::time::Interval,
    closed: Pin<Box<WaitForCancellationFutureOwned>>,
    seq: u64,
    name: Arc<str>,
}

/// One event line of the stream, as a Kubernetes watch event (a BOOKMARK on a Pod).
pub fn watch_event(name: &str, seq: u64) -> String {
    let v = serde_json::json!({
        "type": "BOOKMARK",
        "object": {
            "kind": "Pod", "apiVersion": "v1",
            "metadata": {
                "resourceVersion": seq.to_string(),
                "annotations": { "cpe.dev/backend": name },
            },
        },
    });
    format!("{v}\n")
}

impl hyper::body::Body for WatchBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        if this.closed.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        match this.tick.poll_tick(cx) {
            Poll::Ready(_) => {
                this.seq += 1;
                let line = watch_event(&this.name, this.seq);
                Poll::Ready(Some(Ok(hyper::body::Frame::data(Bytes::from(line)))))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The default interval between two events of the stream.
pub const DEFAULT_STREAM_INTERVAL: Duration = Duration::from_millis(500);
