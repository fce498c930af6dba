//! The admin listener's routes: `GET /metrics`, `GET /status` (the document is
//! [`crate::status`]'s) and `POST /maintenance/<backend>` with `on` or `off`. The server
//! itself is `cpe-admin`'s; this module only maps paths to [`LbHandle`] calls.
//!
//! It holds no state and does no I/O of its own.

use crate::LbHandle;
use std::sync::Arc;

/// The read routes and the actions, for `cpe_admin::serve_with_actions`.
pub(crate) fn routes(h: LbHandle) -> (cpe_admin::Handler, cpe_admin::Actions) {
    let read = h.clone();
    let handler: cpe_admin::Handler = Arc::new(move |path| match path {
        "/metrics" => Some(cpe_admin::Response::metrics(read.metrics_text())),
        "/status" => Some(cpe_admin::Response::json(
            serde_json::to_string_pretty(&read.status()).unwrap_or_default(),
        )),
        _ => None,
    });
    // POST /maintenance/<backend> with `on` or `off`: the operator's maintenance.
    let actions: cpe_admin::Actions = Arc::new(move |path, body| {
        let backend = path.strip_prefix("/maintenance/")?;
        let on = match body {
            "on" => true,
            "off" => false,
            other => {
                return Some(cpe_admin::Response {
                    status: 400,
                    content_type: "text/plain",
                    body: format!("body `{other}`: write `on` or `off`\n"),
                })
            }
        };
        Some(match h.set_maintenance(backend, on) {
            Ok(()) => cpe_admin::Response::text(format!(
                "{backend}: maintenance {}\n",
                if on { "on" } else { "off" }
            )),
            Err(e) => cpe_admin::Response {
                status: 404,
                content_type: "text/plain",
                body: format!("{e}\n"),
            },
        })
    });
    (handler, actions)
}
