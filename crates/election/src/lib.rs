//! VIP leader election on etcd v3: leases (grant, keep-alive, revoke) and the election
//! API (campaign, leader, resign), spoken over etcd's JSON gateway (`/v3/...`) with hyper,
//! so that building cpe needs no `protoc`. No home-made consensus: etcd decides who leads.
//! It does not decide when to campaign or resign; that is the VIP state machine.
//!
//! # Layout
//!
//! - [`endpoint`]: `http(s)://host:port` client URLs, parsed and checked without I/O.
//! - [`transport`]: HTTP/1.1 connections (plain or rustls with client certificates) to one
//!   etcd member, kept in a small pool, and failover to the next member.
//! - [`Client`] (this file): the typed calls. Keys and values are base64 on the wire and
//!   int64 are JSON strings; both stay inside this crate.
//!
//! # Semantics worth knowing
//!
//! - `campaign` blocks until this lease's key is the oldest under the election name. It
//!   returns as soon as the previous leader's key is deleted (a resign, or a revoked or
//!   expired lease). Dropping the future closes its connection; etcd then cancels the
//!   campaign and deletes the candidate's key.
//! - Leadership transfer (`move_leader`) must be sent to the current raft leader, so it
//!   and `status_at` go to one named member, without failover.
//! - A keep-alive answered with TTL 0 means the lease no longer exists ([`KeepAlive::Gone`]).
//! - Every call has a per-member timeout; a transport failure or an "unavailable" answer
//!   moves on to the next member. [`Client::failures`] counts such failures so that a caller
//!   blocked in `campaign` on a member that went silent can notice and start over.

pub mod endpoint;
pub mod transport;

pub use endpoint::{EndpointUrl, UrlError};
pub use transport::{TlsFiles, TransportError, Unreachable};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};
use std::time::Duration;

/// Errors of an etcd call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No member answered (each member's reason is listed).
    #[error("etcd unreachable: {0}")]
    Unreachable(#[from] Unreachable),
    /// A member answered with a gRPC error.
    #[error("etcd {call}: {message} (code {code})")]
    Etcd {
        call: &'static str,
        code: i64,
        message: String,
    },
    /// A member answered something that is not the gateway's JSON.
    #[error("etcd {call}: unexpected answer: {detail}")]
    Protocol { call: &'static str, detail: String },
    #[error(transparent)]
    Setup(#[from] TransportError),
}

impl Error {
    /// Can the same call succeed later? Yes when no member answered, or a member answered
    /// that it cannot serve now (cancelled, deadline exceeded, unavailable: etcd's "no
    /// leader" and "request timed out"); no for a refusal (a lease not found, permission
    /// denied), an answer that is not etcd's, or settings that cannot work.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Unreachable(_) => true,
            Error::Etcd { code, .. } => is_retryable_code(*code),
            Error::Protocol { .. } | Error::Setup(_) => false,
        }
    }
}

/// gRPC codes that mean "this member cannot serve now, another may, or this one later":
/// cancelled (1), deadline exceeded (4), unavailable (14).
pub(crate) fn is_retryable_code(code: i64) -> bool {
    matches!(code, 1 | 4 | 14)
}

/// A granted lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub id: i64,
    /// The TTL etcd granted (it raises a too-small request to its minimum).
    pub ttl: Duration,
}

/// The answer to a keep-alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepAlive {
    /// Renewed for this TTL, counted from when etcd's leader handled the request.
    Renewed(Duration),
    /// The lease does not exist any more (expired or revoked).
    Gone,
}

/// The key that proves leadership (what `resign` needs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderKey {
    pub name: Vec<u8>,
    pub key: Vec<u8>,
    pub rev: i64,
    pub lease: i64,
}

/// The current leader of an election, as etcd sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leader {
    /// The value the leader campaigned with (cpe uses the node name).
    pub value: String,
    pub lease: i64,
    pub create_revision: i64,
}

/// A member of the etcd cluster (`/v3/cluster/member/list`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: u64,
    /// Empty while the member has not started (added but not yet joined).
    pub name: String,
    pub client_urls: Vec<String>,
}

/// One member's view (`/v3/maintenance/status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberStatus {
    /// The member that answered.
    pub member_id: u64,
    /// The raft leader it knows (0: none).
    pub leader: u64,
    pub raft_index: u64,
    /// Alarms and errors the member reports (e.g. `NOSPACE`); empty when healthy.
    pub errors: Vec<String>,
}

/// An etcd v3 client for leases and elections, with failover across members.
#[derive(Clone)]
pub struct Client {
    transport: transport::Transport,
    /// Per-member timeout of unary calls.
    timeout: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoints", &self.transport.endpoints())
            .finish()
    }
}

impl Client {
    /// A client for these members. Reads and checks the TLS files now (a wrong path or a
    /// key that does not parse is an error here, not at the first call); makes no
    /// connection yet.
    pub fn new(endpoints: &[String], tls: TlsFiles, timeout: Duration) -> Result<Self, Error> {
        let urls = endpoints
            .iter()
            .map(|s| EndpointUrl::parse(s))
            .collect::<Result<Vec<_>, _>>()
            .map_err(TransportError::Url)?;
        Ok(Client {
            transport: transport::Transport::new(urls, &tls)?,
            timeout,
        })
    }

    /// The members, in the order they are tried.
    pub fn endpoints(&self) -> Vec<String> {
        self.transport.endpoints()
    }

    /// Replaces the members tried (the VIP agent follows etcd's member list). Refused,
    /// leaving the list as it was: an empty list, a URL that is not one, an `https://`
    /// member for a client made without TLS.
    pub fn set_endpoints(&self, endpoints: &[String]) -> Result<(), Error> {
        let urls = endpoints
            .iter()
            .map(|s| EndpointUrl::parse(s))
            .collect::<Result<Vec<_>, _>>()
            .map_err(TransportError::Url)?;
        self.transport.set_endpoints(urls).map_err(Error::Setup)
    }

    /// How many member attempts have failed since the client was made.
    pub fn failures(&self) -> u64 {
        self.transport.failures()
    }

    async fn unary(&self, call: &'static str, path: &str, body: Value) -> Result<Value, Error> {
        let v = self
            .transport
            .post(path, body.to_string(), Some(self.timeout))
            .await
            .map_err(Error::Unreachable)?;
        check(call, v)
    }

    /// `POST /v3/lease/grant`.
    pub async fn grant(&self, ttl: Duration) -> Result<Lease, Error> {
        let secs = ttl.as_secs().max(1);
        let v = self
            .unary(
                "lease grant",
                "/v3/lease/grant",
                json!({ "TTL": secs.to_string() }),
            )
            .await?;
        let id = int(&v, "ID").ok_or_else(|| protocol("lease grant", &v))?;
        let ttl = int(&v, "TTL").ok_or_else(|| protocol("lease grant", &v))?;
        Ok(Lease {
            id,
            ttl: Duration::from_secs(ttl.max(0) as u64),
        })
    }

    /// `POST /v3/lease/keepalive`: one renewal (the gateway streams; one request in, one
    /// result out).
    pub async fn keep_alive(&self, id: i64) -> Result<KeepAlive, Error> {
        let v = self
            .unary(
                "lease keep-alive",
                "/v3/lease/keepalive",
                json!({ "ID": id.to_string() }),
            )
            .await?;
        let r = v.get("result").cloned().unwrap_or(v);
        let r = check("lease keep-alive", r)?;
        match int(&r, "TTL") {
            Some(t) if t > 0 => Ok(KeepAlive::Renewed(Duration::from_secs(t as u64))),
            _ => Ok(KeepAlive::Gone),
        }
    }

    /// `POST /v3/lease/revoke` (3.4 also serves `/v3/kv/lease/revoke`). Revoking deletes
    /// every key attached, so a leader key disappears at once. A lease that is already
    /// gone is not an error.
    pub async fn revoke(&self, id: i64) -> Result<(), Error> {
        match self
            .unary(
                "lease revoke",
                "/v3/lease/revoke",
                json!({ "ID": id.to_string() }),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(Error::Etcd { code: 5, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `POST /v3/election/campaign`: blocks until elected. No timeout: the caller drops the
    /// future to cancel (etcd then deletes the candidate's key).
    pub async fn campaign(&self, name: &str, lease: i64, value: &str) -> Result<LeaderKey, Error> {
        let body = json!({
            "name": B64.encode(name),
            "lease": lease.to_string(),
            "value": B64.encode(value),
        });
        let v = self
            .transport
            .post("/v3/election/campaign", body.to_string(), None)
            .await
            .map_err(Error::Unreachable)?;
        let v = check("campaign", v)?;
        let l = v.get("leader").ok_or_else(|| protocol("campaign", &v))?;
        Ok(LeaderKey {
            name: bytes(l, "name").ok_or_else(|| protocol("campaign", &v))?,
            key: bytes(l, "key").ok_or_else(|| protocol("campaign", &v))?,
            rev: int(l, "rev").unwrap_or(0),
            lease: int(l, "lease").unwrap_or(lease),
        })
    }

    /// `POST /v3/election/leader`: who leads now; `None` when nobody does.
    pub async fn leader(&self, name: &str) -> Result<Option<Leader>, Error> {
        match self
            .unary(
                "election leader",
                "/v3/election/leader",
                json!({ "name": B64.encode(name) }),
            )
            .await
        {
            Ok(v) => {
                let Some(kv) = v.get("kv") else {
                    return Ok(None);
                };
                let value = bytes(kv, "value").unwrap_or_default();
                Ok(Some(Leader {
                    value: String::from_utf8_lossy(&value).into_owned(),
                    lease: int(kv, "lease").unwrap_or(0),
                    create_revision: int(kv, "create_revision").unwrap_or(0),
                }))
            }
            Err(Error::Etcd { message, .. }) if message.contains("no leader") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `POST /v3/election/resign`.
    pub async fn resign(&self, key: &LeaderKey) -> Result<(), Error> {
        let body = json!({ "leader": {
            "name": B64.encode(&key.name),
            "key": B64.encode(&key.key),
            "rev": key.rev.to_string(),
            "lease": key.lease.to_string(),
        }});
        self.unary("election resign", "/v3/election/resign", body)
            .await
            .map(|_| ())
    }
}

impl Client {
    /// `POST /v3/cluster/member/list` (any member).
    pub async fn members(&self) -> Result<Vec<Member>, Error> {
        let v = self
            .unary("member list", "/v3/cluster/member/list", json!({}))
            .await?;
        let list = v
            .get("members")
            .and_then(|m| m.as_array())
            .ok_or_else(|| protocol("member list", &v))?;
        list.iter()
            .map(|m| {
                Ok(Member {
                    id: uint(m, "ID").ok_or_else(|| protocol("member list", &v))?,
                    name: m
                        .get("name")
                        .and_then(|n| n.as_str())
                        .unwrap_or_default()
                        .to_string(),
                    client_urls: m
                        .get("clientURLs")
                        .and_then(|u| u.as_array())
                        .into_iter()
                        .flatten()
                        .filter_map(|u| u.as_str().map(str::to_string))
                        .collect(),
                })
            })
            .collect()
    }

    /// `POST /v3/maintenance/status` on the member at `url` (a client URL), on its own
    /// connection, within the client's per-member timeout.
    pub async fn status_at(&self, url: &str) -> Result<MemberStatus, Error> {
        let v = self
            .at(url, "member status", "/v3/maintenance/status", json!({}))
            .await?;
        let header = v
            .get("header")
            .ok_or_else(|| protocol("member status", &v))?;
        Ok(MemberStatus {
            member_id: uint(header, "member_id").ok_or_else(|| protocol("member status", &v))?,
            leader: uint(&v, "leader").unwrap_or(0),
            raft_index: uint(&v, "raftIndex").unwrap_or(0),
            errors: v
                .get("errors")
                .and_then(|e| e.as_array())
                .into_iter()
                .flatten()
                .map(|e| {
                    e.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| e.to_string())
                })
                .collect(),
        })
    }

    /// `POST /v3/maintenance/transfer-leadership` (gRPC `Maintenance.MoveLeader`) with
    /// `targetID`, sent to the current leader at `leader_url`: any other member answers
    /// `etcdserver: not leader`. Returns once etcd has handed over (the target leads) or
    /// failed to; etcd bounds it by its own election timeout.
    pub async fn move_leader(&self, leader_url: &str, target: u64) -> Result<(), Error> {
        self.at(
            leader_url,
            "move leader",
            "/v3/maintenance/transfer-leadership",
            json!({ "targetID": target.to_string() }),
        )
        .await
        .map(|_| ())
    }

    async fn at(
        &self,
        url: &str,
        call: &'static str,
        path: &str,
        body: Value,
    ) -> Result<Value, Error> {
        let url = EndpointUrl::parse(url).map_err(TransportError::Url)?;
        let v = self
            .transport
            .post_at(&url, path, body.to_string(), self.timeout)
            .await
            .map_err(Error::Unreachable)?;
        check(call, v)
    }
}

/// Turns a gateway error object into [`Error::Etcd`].
fn check(call: &'static str, v: Value) -> Result<Value, Error> {
    if let Some(err) = v.get("error") {
        let message = v
            .get("message")
            .or(Some(err))
            .and_then(|m| m.as_str())
            .unwrap_or("unknown error")
            .to_string();
        let code = v.get("code").and_then(|c| c.as_i64()).unwrap_or(2);
        return Err(Error::Etcd {
            call,
            code,
            message,
        });
    }
    Ok(v)
}

fn protocol(call: &'static str, v: &Value) -> Error {
    let mut detail = v.to_string();
    detail.truncate(200);
    Error::Protocol { call, detail }
}

/// int64 fields come as JSON strings; small ones sometimes as numbers.
fn int(v: &Value, field: &str) -> Option<i64> {
    match v.get(field)? {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

/// uint64 fields (member ids) come as JSON strings.
fn uint(v: &Value, field: &str) -> Option<u64> {
    match v.get(field)? {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

fn bytes(v: &Value, field: &str) -> Option<Vec<u8>> {
    B64.decode(v.get(field)?.as_str()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int64_fields_as_strings_or_numbers() {
        let v = json!({"ID": "4752038679932110087", "TTL": 2, "x": true});
        assert_eq!(int(&v, "ID"), Some(4752038679932110087));
        assert_eq!(int(&v, "TTL"), Some(2));
        assert_eq!(int(&v, "x"), None);
        assert_eq!(int(&v, "missing"), None);
    }

    #[test]
    fn member_ids_are_uint64_strings() {
        let v = json!({"ID": "17641897284381542677", "n": 5, "neg": "-1"});
        assert_eq!(uint(&v, "ID"), Some(17641897284381542677));
        assert_eq!(uint(&v, "n"), Some(5));
        assert_eq!(uint(&v, "neg"), None);
    }

    #[test]
    fn gateway_errors_become_typed() {
        let v = json!({"error":"etcdserver: requested lease not found","message":"etcdserver: requested lease not found","code":5});
        match check("lease revoke", v) {
            Err(Error::Etcd {
                code: 5, message, ..
            }) => {
                assert_eq!(message, "etcdserver: requested lease not found")
            }
            other => panic!("{other:?}"),
        }
        assert!(check("x", json!({"header": {}})).is_ok());
    }

    #[test]
    fn errors_say_whether_a_retry_can_help() {
        let etcd = |code| Error::Etcd {
            call: "lease grant",
            code,
            message: String::new(),
        };
        assert!(etcd(14).is_retryable()); // unavailable: no leader
        assert!(etcd(4).is_retryable()); // deadline exceeded
        assert!(!etcd(5).is_retryable()); // not found
        assert!(!etcd(7).is_retryable()); // permission denied
        let down = Error::from(Unreachable {
            reasons: vec!["https://10.0.0.11:2379: connect: refused".into()],
        });
        assert!(down.is_retryable());
        assert_eq!(
            down.to_string(),
            "etcd unreachable: https://10.0.0.11:2379: connect: refused"
        );
        assert!(!Error::from(TransportError::NoCa).is_retryable());
        let bad = Error::Protocol {
            call: "x",
            detail: String::new(),
        };
        assert!(!bad.is_retryable());
    }

    #[test]
    fn keys_and_values_are_base64() {
        let v = json!({"value": "bjE=", "bad": "!!"});
        assert_eq!(bytes(&v, "value"), Some(b"n1".to_vec()));
        assert_eq!(bytes(&v, "bad"), None);
    }
}
