//! Plain keys next to the election, over the same JSON gateway: a key put under a lease
//! (the agents' published health), a prefix read in creation order (the health keys and
//! the election's queue of candidates), and a delete guarded by the key's lease and value
//! (the guard's "only if the election key is still ours").
//!
//! It does not know what the keys mean: the VIP agent names and reads them.

use crate::{bytes, check, int, protocol, Client, Error};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::json;

/// One key as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
    /// The lease the key is attached to (0: none).
    pub lease: i64,
    pub create_revision: i64,
}

/// The end of the range of keys that start with `prefix` (etcd's `range_end`: the prefix
/// with its last byte incremented, trailing 0xff bytes dropped; `\0` for "every key").
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

impl Client {
    /// `POST /v3/kv/put`: `key` = `value`, attached to `lease` (0: no lease).
    pub async fn put(&self, key: &str, value: &str, lease: i64) -> Result<(), Error> {
        let mut body = json!({ "key": B64.encode(key), "value": B64.encode(value) });
        if lease != 0 {
            body["lease"] = json!(lease.to_string());
        }
        self.unary("put", "/v3/kv/put", body).await.map(|_| ())
    }

    /// `POST /v3/kv/range` over every key starting with `prefix`, oldest first (creation
    /// revision ascending), as a linearizable read.
    pub async fn range_prefix(&self, prefix: &str) -> Result<Vec<KeyValue>, Error> {
        let body = json!({
            "key": B64.encode(prefix),
            "range_end": B64.encode(prefix_end(prefix.as_bytes())),
            "sort_order": "ASCEND",
            "sort_target": "CREATE",
        });
        let v = self.unary("range", "/v3/kv/range", body).await?;
        let Some(kvs) = v.get("kvs") else {
            return Ok(Vec::new()); // no key: the gateway omits the empty list
        };
        let kvs = kvs.as_array().ok_or_else(|| protocol("range", &v))?;
        kvs.iter()
            .map(|kv| {
                Ok(KeyValue {
                    key: String::from_utf8_lossy(
                        &bytes(kv, "key").ok_or_else(|| protocol("range", &v))?,
                    )
                    .into_owned(),
                    value: String::from_utf8_lossy(&bytes(kv, "value").unwrap_or_default())
                        .into_owned(),
                    lease: int(kv, "lease").unwrap_or(0),
                    create_revision: int(kv, "create_revision").unwrap_or(0),
                })
            })
            .collect()
    }

    /// `POST /v3/kv/txn`: deletes `key` and `also` only if `key` exists attached to
    /// `lease` with exactly `value`, in one transaction. Returns whether it did.
    pub async fn delete_if_held(
        &self,
        key: &str,
        lease: i64,
        value: &str,
        also: &[&str],
    ) -> Result<bool, Error> {
        let mut success = vec![json!({ "request_delete_range": { "key": B64.encode(key) } })];
        success.extend(
            also.iter()
                .map(|k| json!({ "request_delete_range": { "key": B64.encode(k) } })),
        );
        let body = json!({
            "compare": [
                { "key": B64.encode(key), "target": "LEASE", "result": "EQUAL", "lease": lease.to_string() },
                { "key": B64.encode(key), "target": "VALUE", "result": "EQUAL", "value": B64.encode(value) },
            ],
            "success": success,
        });
        let v = self.unary("txn", "/v3/kv/txn", body).await?;
        let v = check("txn", v)?;
        // The gateway omits false booleans.
        Ok(v.get("succeeded")
            .and_then(|s| s.as_bool())
            .unwrap_or(false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends_are_the_next_key_after_every_key_with_the_prefix() {
        assert_eq!(prefix_end(b"/cpe/vip/a."), b"/cpe/vip/a/".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
        assert_eq!(prefix_end(b""), vec![0]);
    }
}
