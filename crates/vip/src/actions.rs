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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{Holder, PeerRow, Snapshot};
    use std::time::SystemTime;

    fn snap(role: Role, peers: &[(&str, bool, Option<usize>)]) -> Snapshot {
        Snapshot {
            node: "cp1".into(),
            vip: "10.0.0.100/24".into(),
            interface: "eth0".into(),
            election: "/cpe/vip/x".into(),
            lease_ttl: Duration::from_secs(2),
            etcd_endpoints: vec![],
            health_target: "https://127.0.0.1:6443/readyz".into(),
            role,
            holding: role == Role::Holder,
            since: SystemTime::now(),
            holder: Holder::Node("cp2".into()),
            last_transition: None,
            lease: None,
            healthy: true,
            health_detail: String::new(),
            waiting_for: None,
            foreign_mac: None,
            transitions: 0,
            etcd_leader_moves: 0,
            etcd_leader: None,
            fail_open: false,
            peers: peers
                .iter()
                .map(|(n, h, p)| PeerRow {
                    node: n.to_string(),
                    state: if *h { "up" } else { "down" }.into(),
                    healthy: *h,
                    since_unix_ms: 0,
                    reason: String::new(),
                    position: *p,
                })
                .collect(),
            peers_error: None,
            handover: None,
            hold_off_left: None,
        }
    }

    fn handover(rx: &mut mpsc::UnboundedReceiver<Event>) -> Option<Input> {
        match rx.try_recv() {
            Ok(Event::Command(i)) => Some(i),
            _ => None,
        }
    }

    #[test]
    fn requests_the_holder_cannot_do_are_refused_at_once_with_the_reason() {
        let status = StatusCell::new(snap(Role::Candidate, &[]));
        let (tx, mut rx) = mpsc::unbounded_channel();
        let act = actions(status.clone(), tx);
        let r = act("/resign", "").unwrap();
        assert_eq!(r.status, 409);
        assert!(
            r.body
                .contains("cp1 does not hold the VIP (role candidate) (etcd names cp2"),
            "{}",
            r.body
        );
        assert!(act("/prefer", "cp3").unwrap().status == 409);
        // Holding, but nobody else healthy and campaigning: resign is refused.
        status.set(snap(
            Role::Holder,
            &[
                ("cp1", false, Some(0)),
                ("cp2", true, None),
                ("cp3", false, Some(1)),
            ],
        ));
        let r = act("/resign", "").unwrap();
        assert_eq!(r.status, 409);
        assert!(
            r.body
                .contains("no other candidate is healthy and campaigning"),
            "{}",
            r.body
        );
        assert_eq!(act("/resign", "5 parsecs").unwrap().status, 400);
        assert_eq!(act("/prefer", "cp1").unwrap().status, 409, "not to itself");
        assert_eq!(act("/prefer", "").unwrap().status, 400);
        assert!(act("/elsewhere", "").is_none(), "404");
        assert!(handover(&mut rx).is_none(), "nothing was passed on");
    }

    #[test]
    fn accepted_requests_go_to_the_machine() {
        let status = StatusCell::new(snap(
            Role::Holder,
            &[("cp1", true, Some(0)), ("cp2", true, Some(1))],
        ));
        let (tx, mut rx) = mpsc::unbounded_channel();
        let act = actions(status, tx);
        let r = act("/resign", "5s").unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(r.body.contains("(cp2 now)"), "{}", r.body);
        assert_eq!(
            handover(&mut rx),
            Some(Input::Handover {
                to: None,
                hold_off: Some(Duration::from_secs(5))
            })
        );
        let r = act("/resign", "").unwrap();
        assert_eq!(r.status, 200);
        assert!(matches!(
            handover(&mut rx),
            Some(Input::Handover { hold_off: Some(d), .. }) if d == DEFAULT_HOLD_OFF
        ));
        let r = act("/prefer", "cp3").unwrap();
        assert!(
            r.body.contains("once it is healthy and campaigning"),
            "{}",
            r.body
        );
        assert_eq!(
            handover(&mut rx),
            Some(Input::Handover {
                to: Some("cp3".into()),
                hold_off: None
            })
        );
    }

    /// Through a real admin listener with a token: the issue-14 rules apply to the moves.
    #[tokio::test]
    async fn moves_need_the_token_when_one_is_set() {
        let status = StatusCell::new(snap(
            Role::Holder,
            &[("cp1", true, Some(0)), ("cp2", true, Some(1))],
        ));
        let (tx, mut rx) = mpsc::unbounded_channel();
        let act = actions(status, tx);
        let handler: cpe_admin::Handler = Arc::new(|_| None);
        let token = cpe_admin::Token::new("0123456789abcdef-secret").unwrap();
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(cpe_admin::serve_with(
            l,
            handler,
            Some(act),
            cpe_admin::Options::with_token(Some(token.clone())),
            std::future::pending(),
        ));
        let t = Duration::from_secs(3);
        match cpe_admin::post(addr, "/resign", "", t).await {
            Err(cpe_admin::ClientError::Status { status: 401, .. }) => {}
            other => panic!("{other:?}"),
        }
        assert!(handover(&mut rx).is_none());
        let wrong = cpe_admin::Token::new("not-the-right-token").unwrap();
        assert!(
            cpe_admin::post_with_token(addr, "/resign", "", Some(&wrong), t)
                .await
                .is_err()
        );
        let ok = cpe_admin::post_with_token(addr, "/resign", "", Some(&token), t)
            .await
            .unwrap();
        assert!(ok.contains("handing the VIP over"), "{ok}");
        assert!(handover(&mut rx).is_some());
    }
}
