//! The admin listener shared by `cpe lb` and `cpe vip`: a small HTTP/1.1 server for
//! `/metrics` (Prometheus text) and `/status` (JSON), and the matching client that
//! `cpe status` uses. It knows nothing about load balancing or VIPs: the caller hands it a
//! function from path to response. Bind it to loopback by default; it has no auth.
//!
//! What every agent shares is answered here, around the caller's function ([`route`]):
//! `/livez`, `/readyz` and `/healthz` (the caller's own answer when it has one, else a
//! fallback), and `/metrics` gets the build and process metrics of [`process`] appended.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response as HttpResponse};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

pub mod process;
pub use process::set_build_info;

/// What a route returns.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Response {
    /// A JSON body, already rendered by the caller (this crate does not depend on serde).
    pub fn json(body: String) -> Self {
        Response {
            status: 200,
            content_type: "application/json",
            body,
        }
    }
    pub fn text(body: String) -> Self {
        Response {
            status: 200,
            content_type: "text/plain; charset=utf-8",
            body,
        }
    }
    /// Prometheus text exposition format.
    pub fn metrics(body: String) -> Self {
        Response {
            status: 200,
            content_type: "application/openmetrics-text; version=1.0.0; charset=utf-8",
            body,
        }
    }
}

/// Maps a request path (without query) to a response; `None` is 404.
pub type Handler = Arc<dyn Fn(&str) -> Option<Response> + Send + Sync>;

/// Maps a `POST` (path, body) to a response; `None` is 404. For operator actions such as
/// maintenance: the admin listener is on loopback by default and has no auth.
pub type Actions = Arc<dyn Fn(&str, &str) -> Option<Response> + Send + Sync>;

/// The largest `POST` body an action accepts.
const MAX_ACTION_BODY: usize = 1024;

/// Serves admin requests on `listener` until `shutdown` completes. Each connection gets
/// its own task; a slow client cannot hold up the others. `GET` only.
pub async fn serve(listener: TcpListener, handler: Handler, shutdown: impl Future<Output = ()>) {
    serve_with_actions(listener, handler, None, shutdown).await
}

/// As [`serve`], and `POST` requests go to `actions`.
pub async fn serve_with_actions(
    listener: TcpListener,
    handler: Handler,
    actions: Option<Actions>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            _ = &mut shutdown => return,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let handler = handler.clone();
        let actions = actions.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let handler = handler.clone();
                let actions = actions.clone();
                async move {
                    let path = req.uri().path().to_string();
                    let not_found = || Response {
                        status: 404,
                        content_type: "text/plain",
                        body: format!("no such path: {path}\n"),
                    };
                    let r = match (req.method().clone(), actions) {
                        (hyper::Method::GET, _) => route(&handler, &path).unwrap_or_else(not_found),
                        (hyper::Method::POST, Some(actions)) => {
                            match http_body_util::Limited::new(req.into_body(), MAX_ACTION_BODY)
                                .collect()
                                .await
                            {
                                Ok(b) => {
                                    let body = String::from_utf8_lossy(&b.to_bytes()).into_owned();
                                    actions(&path, body.trim()).unwrap_or_else(not_found)
                                }
                                Err(_) => Response {
                                    status: 413,
                                    content_type: "text/plain",
                                    body: format!("body larger than {MAX_ACTION_BODY} bytes\n"),
                                },
                            }
                        }
                        _ => Response {
                            status: 405,
                            content_type: "text/plain",
                            body: "method not allowed\n".into(),
                        },
                    };
                    HttpResponse::builder()
                        .status(r.status)
                        .header("content-type", r.content_type)
                        .body(Full::new(Bytes::from(r.body)))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// A `GET`: the caller's handler, with what every agent answers the same way.
///
/// - `/metrics`: the handler's text with `cpe_build_info` and the process metrics
///   inserted before `# EOF` (see [`process`]).
/// - `/livez`, `/readyz`: the handler's answer for that path when it has one, else its
///   `/healthz`, else 200 `ok` (the listener answering means the process and its runtime
///   are alive, which is all a handler without a check of its own can say).
/// - `/healthz`: the handler's, else 200 `ok`.
pub fn route(handler: &Handler, path: &str) -> Option<Response> {
    let ok = || Response::text("ok\n".into());
    match path {
        "/metrics" => handler(path).map(|mut r| {
            if r.status == 200 {
                r.body = process::append_to(&r.body);
            }
            r
        }),
        "/livez" | "/readyz" => handler(path)
            .or_else(|| handler("/healthz"))
            .or_else(|| Some(ok())),
        "/healthz" => handler(path).or_else(|| Some(ok())),
        _ => handler(path),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the admin listener at {0}: {1} (is cpe running, with --admin {0}?)")]
    Connect(SocketAddr, std::io::Error),
    #[error("admin listener at {0}: {1}")]
    Http(SocketAddr, String),
    #[error("admin listener at {addr} answered {status}: {}", .body.trim())]
    Status {
        addr: SocketAddr,
        status: u16,
        body: String,
    },
}

/// `GET path` on an admin listener; returns the body of a 200 answer.
pub async fn get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<String, ClientError> {
    request(addr, hyper::Method::GET, path, "", timeout).await
}

/// `POST path` with `body` on an admin listener; returns the body of a 200 answer.
pub async fn post(
    addr: SocketAddr,
    path: &str,
    body: &str,
    timeout: Duration,
) -> Result<String, ClientError> {
    request(addr, hyper::Method::POST, path, body, timeout).await
}

async fn request(
    addr: SocketAddr,
    method: hyper::Method,
    path: &str,
    body: &str,
    timeout: Duration,
) -> Result<String, ClientError> {
    let work = async {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| ClientError::Connect(addr, e))?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ClientError::Http(addr, e.to_string()))?;
        tokio::spawn(conn);
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", addr.to_string())
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| ClientError::Http(addr, e.to_string()))?;
        let resp = send
            .send_request(req)
            .await
            .map_err(|e| ClientError::Http(addr, e.to_string()))?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Http(addr, e.to_string()))?
            .to_bytes();
        let body = String::from_utf8_lossy(&body).into_owned();
        if status == 200 {
            Ok(body)
        } else {
            Err(ClientError::Status { addr, status, body })
        }
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(ClientError::Http(
            addr,
            format!("no answer within {timeout:?}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn serves_routes_and_404() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let handler: Handler =
            Arc::new(|p| (p == "/status").then(|| Response::json("{\"ok\":true}".to_string())));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(l, handler, async {
            let _ = rx.await;
        }));
        assert_eq!(
            get(addr, "/status", Duration::from_secs(2)).await.unwrap(),
            "{\"ok\":true}"
        );
        let err = get(addr, "/nope", Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(
            matches!(err, ClientError::Status { status: 404, .. }),
            "{err}"
        );
        tx.send(()).unwrap();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn probes_and_process_metrics_for_every_handler() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        // An agent with metrics and its own /readyz, but no /livez or /healthz.
        let handler: Handler = Arc::new(|p| match p {
            "/metrics" => Some(Response::metrics(
                "# TYPE cpe_x gauge\ncpe_x 1\n# EOF\n".into(),
            )),
            "/readyz" => Some(Response {
                status: 503,
                content_type: "text/plain",
                body: "not ready\n".into(),
            }),
            _ => None,
        });
        let server = tokio::spawn(serve(l, handler, std::future::pending()));
        let t = Duration::from_secs(2);
        assert_eq!(get(addr, "/livez", t).await.unwrap(), "ok\n");
        assert_eq!(get(addr, "/healthz", t).await.unwrap(), "ok\n");
        let err = get(addr, "/readyz", t).await.unwrap_err();
        assert!(
            matches!(err, ClientError::Status { status: 503, .. }),
            "{err}"
        );
        let m = get(addr, "/metrics", t).await.unwrap();
        for name in [
            "cpe_x 1",
            "cpe_build_info{version=",
            "process_resident_memory_bytes ",
            "process_open_fds ",
            "process_cpu_seconds_total ",
        ] {
            assert!(m.contains(name), "{name} missing:\n{m}");
        }
        assert!(m.ends_with("# EOF\n"), "{m}");
        server.abort();

        // A handler with a /healthz of its own: /livez and /readyz follow it.
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let handler: Handler = Arc::new(|p| {
            (p == "/healthz").then(|| Response {
                status: 503,
                content_type: "text/plain",
                body: "stuck\n".into(),
            })
        });
        let server = tokio::spawn(serve(l, handler, std::future::pending()));
        for p in ["/livez", "/readyz", "/healthz"] {
            let err = get(addr, p, t).await.unwrap_err();
            assert!(
                matches!(err, ClientError::Status { status: 503, .. }),
                "{p}: {err}"
            );
        }
        server.abort();
    }

    #[tokio::test]
    async fn posts_go_to_actions_only_when_given() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let handler: Handler = Arc::new(|_| None);
        let actions: Actions =
            Arc::new(|p, b| (p == "/echo").then(|| Response::text(format!("{p} {b}"))));
        let server = tokio::spawn(serve_with_actions(
            l,
            handler,
            Some(actions),
            std::future::pending(),
        ));
        let t = Duration::from_secs(2);
        assert_eq!(post(addr, "/echo", " on\n", t).await.unwrap(), "/echo on");
        let big = "x".repeat(MAX_ACTION_BODY + 1);
        let err = post(addr, "/echo", &big, t).await.unwrap_err();
        assert!(
            matches!(err, ClientError::Status { status: 413, .. }),
            "{err}"
        );
        server.abort();

        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let server = tokio::spawn(serve(l, Arc::new(|_| None), std::future::pending()));
        let err = post(addr, "/echo", "on", t).await.unwrap_err();
        assert!(
            matches!(err, ClientError::Status { status: 405, .. }),
            "{err}"
        );
        server.abort();
    }
}
