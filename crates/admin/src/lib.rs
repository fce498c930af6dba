//! The admin listener shared by `cpe lb` and `cpe vip`: a small HTTP/1.1 server for
//! `/metrics` (Prometheus text) and `/status` (JSON), and the matching client that
//! `cpe status` uses. It knows nothing about load balancing or VIPs: the caller hands it a
//! function from path to response. Who may do what is [`access()`]'s: every request's
//! `Host` must name the listener (DNS rebinding), a state-changing request must carry no
//! `Origin` (a browser's cross-site request) and, when a token is set,
//! `Authorization: Bearer TOKEN`. The listener caps its connections and times out slow
//! and idle ones (see [`serve_with`]), so it cannot take the descriptors the agent needs.
//!
//! What every agent shares is answered here, around the caller's function ([`route`]):
//! `/livez`, `/readyz` and `/healthz` (the caller's own answer when it has one, else a
//! fallback), and `/metrics` gets the build and process metrics of [`process`] appended.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response as HttpResponse};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

pub mod access;
pub mod process;
pub use access::{access, Options, Refusal, Seen, Token, TokenError, DEFAULT_MAX_CONNECTIONS};
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
/// maintenance: who may reach them is [`access()`]'s decision, made before they are called.
pub type Actions = Arc<dyn Fn(&str, &str) -> Option<Response> + Send + Sync>;

/// The largest `POST` body an action accepts.
const MAX_ACTION_BODY: usize = 1024;

/// The largest request head read (request line and headers).
const MAX_HEAD: usize = 16 * 1024;

/// Serves admin requests on `listener` until `shutdown` completes, with the default
/// [`Options`] (no token: the listener must be on loopback). `GET` only.
pub async fn serve(listener: TcpListener, handler: Handler, shutdown: impl Future<Output = ()>) {
    serve_with(listener, handler, None, Options::default(), shutdown).await
}

/// As [`serve`], and `POST` requests go to `actions`.
pub async fn serve_with_actions(
    listener: TcpListener,
    handler: Handler,
    actions: Option<Actions>,
    shutdown: impl Future<Output = ()>,
) {
    serve_with(listener, handler, actions, Options::default(), shutdown).await
}

/// Serves admin requests on `listener` until `shutdown` completes: `GET` to `handler`
/// (through [`route`]), `POST` to `actions` (405 without). Each connection gets its own
/// task, at most [`Options::max_connections`] at once (past it a new connection is closed
/// at once), each limited in time ([`Options::header_timeout`] for every request head,
/// [`Options::max_lifetime`] in all), so idle or slow clients cannot hold the process's
/// file descriptors. Every request passes [`access()`] first (Host, Origin, token).
pub async fn serve_with(
    listener: TcpListener,
    handler: Handler,
    actions: Option<Actions>,
    options: Options,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let options = Arc::new(options);
    let places = Arc::new(tokio::sync::Semaphore::new(options.max_connections.max(1)));
    let mut last_full_log: Option<std::time::Instant> = None;
    loop {
        let (stream, peer) = tokio::select! {
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
        // Past the cap the connection is closed now: nothing waits for a place, so a
        // flood of idle connections costs this listener its cap, not the process's
        // descriptors.
        let Ok(place) = places.clone().try_acquire_owned() else {
            if last_full_log.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                tracing::warn!(
                    limit = options.max_connections,
                    %peer,
                    "admin listener: connection limit reached, closing new connections"
                );
                last_full_log = Some(std::time::Instant::now());
            }
            drop(stream);
            continue;
        };
        let Ok(local) = stream.local_addr() else {
            continue;
        };
        let handler = handler.clone();
        let actions = actions.clone();
        let options = options.clone();
        tokio::spawn(async move {
            let _place = place;
            let (lifetime, header_timeout) = (options.max_lifetime, options.header_timeout);
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let handler = handler.clone();
                let actions = actions.clone();
                let options = options.clone();
                async move {
                    let r = answer(req, local, &handler, actions, &options).await;
                    let mut b = HttpResponse::builder()
                        .status(r.status)
                        .header("content-type", r.content_type);
                    if r.status == 401 {
                        b = b.header("www-authenticate", "Bearer");
                    }
                    b.body(Full::new(Bytes::from(r.body)))
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                // Runs while hyper waits for a request head: the first one and each one
                // on a kept-alive connection, so an idle or slowloris client is closed.
                .header_read_timeout(header_timeout)
                .max_buf_size(MAX_HEAD)
                .serve_connection(TokioIo::new(stream), svc);
            let _ = tokio::time::timeout(lifetime, conn).await;
        });
    }
}

/// One request's answer: [`access()`] first, then the route or the action.
async fn answer(
    req: Request<Incoming>,
    local: SocketAddr,
    handler: &Handler,
    actions: Option<Actions>,
    options: &Options,
) -> Response {
    let path = req.uri().path().to_string();
    let header = |name: &str| {
        req.headers()
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    let seen = Seen {
        method_changes_state: req.method() != hyper::Method::GET
            && req.method() != hyper::Method::HEAD,
        host: header("host"),
        origin: header("origin"),
        authorization: header("authorization"),
    };
    if let Err(refusal) = access(local, &seen, options.token.as_ref()) {
        return refusal.response();
    }
    let not_found = || Response {
        status: 404,
        content_type: "text/plain",
        body: format!("no such path: {path}\n"),
    };
    match (req.method().clone(), actions) {
        (hyper::Method::GET, _) => route(handler, &path).unwrap_or_else(not_found),
        (hyper::Method::POST, Some(actions)) => {
            let body = http_body_util::Limited::new(req.into_body(), MAX_ACTION_BODY).collect();
            match tokio::time::timeout(options.header_timeout, body).await {
                Ok(Ok(b)) => {
                    let body = String::from_utf8_lossy(&b.to_bytes()).into_owned();
                    actions(&path, body.trim()).unwrap_or_else(not_found)
                }
                Ok(Err(_)) => Response {
                    status: 413,
                    content_type: "text/plain",
                    body: format!("body larger than {MAX_ACTION_BODY} bytes\n"),
                },
                Err(_) => Response {
                    status: 408,
                    content_type: "text/plain",
                    body: "body not received in time\n".into(),
                },
            }
        }
        _ => Response {
            status: 405,
            content_type: "text/plain",
            body: "method not allowed\n".into(),
        },
    }
}

/// The paths a metrics-only listener answers: what Prometheus and the kubelet's probes
/// read. `/status` (the topology) and every action stay on the admin listener.
pub const METRICS_PATHS: [&str; 4] = ["/metrics", "/livez", "/readyz", "/healthz"];

/// Serves `handler`'s [`METRICS_PATHS`] only, `GET` only, until `shutdown` completes: the
/// listener an operator may bind on the node address for an in-cluster Prometheus while
/// the admin listener (with `/status` and the actions) stays on loopback. The same
/// [`access()`] rules and limits as the admin listener apply.
pub async fn serve_metrics(
    listener: TcpListener,
    handler: Handler,
    shutdown: impl Future<Output = ()>,
) {
    let only: Handler = Arc::new(move |path: &str| {
        if METRICS_PATHS.contains(&path) {
            handler(path)
        } else {
            None
        }
    });
    serve_with(listener, only, None, Options::default(), shutdown).await
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
    #[error("admin listener at {0}: the answer is larger than {MAX_ANSWER} bytes: is this a cpe admin listener?")]
    TooLarge(SocketAddr),
}

/// The largest answer the client reads (a `/status` of thousands of backends is far
/// below it); a server that streams more is cut off, not buffered.
pub const MAX_ANSWER: usize = 4 * 1024 * 1024;

/// `GET path` on an admin listener; returns the body of a 200 answer.
pub async fn get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<String, ClientError> {
    request(addr, hyper::Method::GET, path, "", None, timeout).await
}

/// `POST path` with `body` on an admin listener; returns the body of a 200 answer.
pub async fn post(
    addr: SocketAddr,
    path: &str,
    body: &str,
    timeout: Duration,
) -> Result<String, ClientError> {
    request(addr, hyper::Method::POST, path, body, None, timeout).await
}

/// As [`post`], with `Authorization: Bearer TOKEN` when a token is given.
pub async fn post_with_token(
    addr: SocketAddr,
    path: &str,
    body: &str,
    token: Option<&Token>,
    timeout: Duration,
) -> Result<String, ClientError> {
    request(addr, hyper::Method::POST, path, body, token, timeout).await
}

/// One request, answered within `timeout` (connect, head and body together) and read up
/// to [`MAX_ANSWER`] bytes.
async fn request(
    addr: SocketAddr,
    method: hyper::Method,
    path: &str,
    body: &str,
    token: Option<&Token>,
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
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", addr.to_string());
        if let Some(t) = token {
            req = req.header("authorization", t.header());
        }
        let req = req
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| ClientError::Http(addr, e.to_string()))?;
        let resp = send
            .send_request(req)
            .await
            .map_err(|e| ClientError::Http(addr, e.to_string()))?;
        let status = resp.status().as_u16();
        let body = http_body_util::Limited::new(resp.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    ClientError::TooLarge(addr)
                } else {
                    ClientError::Http(addr, e.to_string())
                }
            })?
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

    /// Writes `raw` as one request and returns the status line's code (0: closed
    /// without an answer).
    async fn raw_status(addr: SocketAddr, raw: &str) -> u16 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(raw.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
            .await
            .expect("an answer in time")
            .unwrap_or(0);
        let head = String::from_utf8_lossy(&buf[..n]);
        head.split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0)
    }

    /// Issue 14, item 2: a web page on the host cannot change state (cross-site POST,
    /// DNS rebinding), a POST needs the token when one is set, GETs stay open.
    #[tokio::test]
    async fn cross_site_and_unauthenticated_posts_are_refused() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = hits.clone();
        let actions: Actions = Arc::new(move |_, _| {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Some(Response::text("done\n".into()))
        });
        let handler: Handler =
            Arc::new(|p| (p == "/status" || p == "/metrics").then(|| Response::json("{}".into())));
        let token = Token::new("a-token-of-twenty-chars").unwrap();
        let server = tokio::spawn(serve_with(
            l,
            handler,
            Some(actions),
            Options::with_token(Some(token.clone())),
            std::future::pending(),
        ));
        let host = addr.to_string();
        // What a browser sends for a page's <form enctype=text/plain> or fetch(no-cors).
        let browser = |host: &str, extra: &str| {
            format!(
                "POST /maintenance/10.0.0.2:6443 HTTP/1.1\r\nHost: {host}\r\nOrigin: https://evil.example\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n{extra}Connection: close\r\n\r\non"
            )
        };
        assert_eq!(raw_status(addr, &browser("evil.example:80", "")).await, 421);
        assert_eq!(raw_status(addr, &browser(&host, "")).await, 403);
        // Even a rebinding page that somehow had the token is refused on Host.
        let with_token = format!("Authorization: {}\r\n", token.header());
        assert_eq!(
            raw_status(addr, &browser("evil.example", &with_token)).await,
            421
        );
        let t = Duration::from_secs(2);
        for (tok, want) in [
            (None, 401),
            (Some(Token::new("the-wrong-token-value").unwrap()), 401),
        ] {
            let err = post_with_token(addr, "/maintenance/x", "on", tok.as_ref(), t)
                .await
                .unwrap_err();
            assert!(
                matches!(err, ClientError::Status { status, .. } if status == want),
                "{err}"
            );
        }
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0);
        assert_eq!(
            post_with_token(addr, "/maintenance/x", "on", Some(&token), t)
                .await
                .unwrap(),
            "done\n"
        );
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
        // GETs need no token, but the Host check holds for them too (rebinding).
        for p in ["/metrics", "/status", "/healthz", "/livez"] {
            get(addr, p, t).await.unwrap_or_else(|e| panic!("{p}: {e}"));
        }
        let rebound =
            "GET /status HTTP/1.1\r\nHost: evil.example:9630\r\nConnection: close\r\n\r\n";
        assert_eq!(raw_status(addr, rebound).await, 421);
        server.abort();
    }

    /// Issue 14, item 3: idle and slow connections cannot pile up. Past the cap a new
    /// connection is closed at once; an idle one is closed after the header timeout; the
    /// listener answers again as soon as places free up.
    #[tokio::test]
    async fn connections_are_capped_and_idle_ones_time_out() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let options = Options {
            max_connections: 4,
            header_timeout: Duration::from_millis(400),
            ..Options::default()
        };
        let server = tokio::spawn(serve_with(
            l,
            Arc::new(|_| None),
            None,
            options,
            std::future::pending(),
        ));
        let mut idle = Vec::new();
        for _ in 0..4 {
            let mut s = TcpStream::connect(addr).await.unwrap();
            // A slowloris: half a request head, never finished.
            s.write_all(b"GET /healthz HTTP/1.1\r\nHo").await.unwrap();
            idle.push(s);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        // The fifth is closed at once, unanswered.
        let mut extra = TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_millis(300), extra.read(&mut buf))
            .await
            .expect("closed at once, not left waiting")
            .unwrap_or(0);
        assert_eq!(n, 0);
        // The slow ones are closed by the header timeout...
        for s in &mut idle {
            let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
                .await
                .expect("closed by the header timeout")
                .unwrap_or(0);
            // hyper may answer 408 before closing; either way the connection ends.
            if n > 0 {
                assert!(String::from_utf8_lossy(&buf[..n]).contains("408"));
            }
        }
        drop(idle);
        // ...and the listener answers again.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            get(addr, "/healthz", Duration::from_secs(2)).await.unwrap(),
            "ok\n"
        );
        // An idle kept-alive connection (one request done) is closed too.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let n = s.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut rest))
            .await
            .expect("an idle kept-alive connection is closed")
            .ok();
        server.abort();
    }

    /// Issue 14, item 5: the client reads at most MAX_ANSWER bytes of an answer.
    #[tokio::test]
    async fn the_client_cuts_off_an_endless_answer() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                .await;
            let chunk = format!("{:x}\r\n{}\r\n", 65536, "x".repeat(65536));
            while s.write_all(chunk.as_bytes()).await.is_ok() {}
        });
        let err = get(addr, "/status", Duration::from_secs(10))
            .await
            .unwrap_err();
        assert!(matches!(err, ClientError::TooLarge(_)), "{err}");
        server.abort();
    }
}
