//! The agent's admin actions (`POST` on its admin listener, sent by `cpe status`):
//!
//! - `POST /resign` with the hold-off as body (`30s`; empty: 30 s): the holder hands the
//!   VIP to the healthiest candidate, then stays out of the election for the hold-off.
//! - `POST /prefer` with a node name: the holder hands the VIP to that node as soon as it
//!   is healthy and campaigning.
//!
//! Who may call them is cpe-admin's [`access`](cpe_admin::access()) (the `Host` names the
//! listener, no `Origin`, the bearer token when one is set — required off loopback), done
//! before these run. They answer at once from the latest `/status` snapshot (200 when the
//! request is passed on, 409 when it cannot be done here, naming why); the state machine
//! re-checks when it acts. They decide nothing themselves.

use crate::machine::{Input, Role};
use crate::status::StatusCell;
use crate::tasks::Event;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// The default `--hold-off` of `cpe status --resign`.
pub const DEFAULT_HOLD_OFF: Duration = Duration::from_secs(30);

fn answer(status: u16, body: String) -> cpe_admin::Response {
    cpe_admin::Response {
        status,
        content_type: "text/plain; charset=utf-8",
        body: body + "\n",
    }
}

/// The `POST` routes, passing accepted requests to the driver.
pub(crate) fn actions(status: StatusCell, tx: mpsc::UnboundedSender<Event>) -> cpe_admin::Actions {
    Arc::new(move |path, body| {
        let snap = status.get();
        let not_holder = || {
            let holder = match &snap.holder {
                crate::status::Holder::Node(h) => format!(" (etcd names {h}: ask its agent)"),
                _ => String::new(),
            };
            answer(
                409,
                format!(
                    "{} does not hold the VIP (role {}){holder}",
                    snap.node,
                    snap.role.as_str()
                ),
            )
        };
        let input = match path {
            "/resign" => {
                let hold_off = if body.is_empty() {
                    DEFAULT_HOLD_OFF
                } else {
                    match cpe_config::duration::parse(body) {
                        Ok(d) => d,
                        Err(e) => {
                            return Some(answer(400, format!("hold-off `{body}`: {e}")));
                        }
                    }
                };
                if snap.role != Role::Holder {
                    return Some(not_holder());
                }
                let Some(to) = snap
                    .peers
                    .iter()
                    .find(|p| p.node != snap.node && p.healthy && p.position.is_some())
                else {
                    return Some(answer(
                        409,
                        format!(
                            "no other candidate is healthy and campaigning: {} keeps the VIP",
                            snap.node
                        ),
                    ));
                };
                let msg = format!(
                    "{}: handing the VIP over to the healthiest candidate ({} now), then not campaigning for {hold_off:?}",
                    snap.node, to.node
                );
                (
                    Input::Handover {
                        to: None,
                        hold_off: Some(hold_off),
                    },
                    msg,
                )
            }
            "/prefer" => {
                let node = body.trim();
                if node.is_empty() {
                    return Some(answer(400, "prefer: give a node name as the body".into()));
                }
                if node == snap.node {
                    return Some(answer(
                        409,
                        format!("{node} is this agent: ask the holder to prefer another node"),
                    ));
                }
                if snap.role != Role::Holder {
                    return Some(not_holder());
                }
                let now = snap
                    .peers
                    .iter()
                    .any(|p| p.node == node && p.healthy && p.position.is_some());
                let msg = format!(
                    "{}: handing the VIP over to {node} {}",
                    snap.node,
                    if now {
                        "now (healthy and campaigning)"
                    } else {
                        "once it is healthy and campaigning (it is not now)"
                    }
                );
                (
                    Input::Handover {
                        to: Some(node.to_string()),
                        hold_off: None,
                    },
                    msg,
                )
            }
            _ => return None,
        };
        let (input, msg) = input;
        Some(match tx.send(Event::Command(input)) {
            Ok(()) => answer(200, msg),
            Err(_) => answer(503, "the agent is shutting down".into()),
        })
    })
}
