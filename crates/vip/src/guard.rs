//! The guard: a second process that removes the VIP when the agent's process ends
//! without removing it (SIGKILL, a crash). The agent starts it ([`spawn`]) with a pipe
//! on its stdin; when the agent ends for any reason the kernel closes the pipe, the guard
//! ([`run`]) reads end-of-file and removes the VIP from the interface. Without it a
//! killed holder would keep answering for the VIP while its lease expires and another
//! machine takes over: two holders.
//!
//! After removing the address it releases the dead agent's place in the election, so the
//! next holder is elected at once instead of a lease TTL later. The agent tells it, one
//! JSON line per change on the same pipe ([`Owned`]), which lease is its own and with
//! which value it campaigns. The guard never revokes a lease another process holds: in
//! one etcd transaction it deletes the election key `E/<lease hex>` only if that key is
//! still attached to that lease *with this agent's value*, and only when that succeeded
//! does it revoke the lease (which also removes the health key under it). A lease that
//! was already lost (expired while the agent was frozen or cut off) has no key any more,
//! so nothing is done; a lease granted since but not yet told to the guard is not known
//! to it, so it is left to expire. Etcd lease ids are not reused while etcd runs, so the
//! lease the transaction found holding our key is still ours a millisecond later.
//!
//! It does not decide anything about holding the VIP, and it does not parse a command
//! line: the CLI passes the command that runs [`run`] in the child.

use crate::peers;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Why the guard could not remove the VIP.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error("guard: {0}")]
    Net(#[from] cpe_net::NetError),
    #[error("guard: cannot install the signal handlers: {0}")]
    Signals(std::io::Error),
}

/// Starts `exe args...` as the guard with a pipe on its stdin; the returned child's stdin
/// is closed when it is dropped (the agent is done). `None` (with a warning) when it
/// cannot start: the agent still runs, without that safety.
pub fn spawn(exe: &Path, args: &[String]) -> Option<Child> {
    match Command::new(exe).args(args).stdin(Stdio::piped()).spawn() {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(
                "cannot start the guard ({e}): a SIGKILLed agent would leave the VIP behind"
            );
            None
        }
    }
}

/// What the agent tells the guard it owns: its lease (`None`: none), the election key
/// that lease campaigns with and the value it campaigns with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owned {
    pub lease: Option<i64>,
    pub key: String,
    pub value: String,
}

impl Owned {
    /// The line the agent writes for `lease` in `election` as `node` with `value`.
    pub fn line(lease: Option<i64>, election: &str, node: &str, value: &str) -> String {
        let _ = node;
        let o = Owned {
            lease,
            key: lease.map_or_else(String::new, |l| peers::campaign_key(election, l)),
            value: value.to_string(),
        };
        serde_json::to_string(&o).unwrap_or_default() + "\n"
    }

    /// The last complete line of what the agent wrote (`None`: nothing usable).
    pub fn last(text: &str) -> Option<Owned> {
        text.lines()
            .rev()
            .find_map(|l| serde_json::from_str::<Owned>(l.trim()).ok())
    }
}

/// The guard's side: waits for end-of-file on stdin (the agent is gone), then removes
/// `vip` from `interface` and, with `etcd`, releases the agent's place in the election
/// (see the module header). SIGTERM and SIGINT are ignored: a stop signal sent to both
/// processes must not end the guard before the agent has finished its handover.
pub async fn run(
    vip: IpAddr,
    interface: &str,
    etcd: Option<cpe_election::Client>,
) -> Result<(), GuardError> {
    use tokio::io::AsyncReadExt;
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(GuardError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(GuardError::Signals)?;
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 4096];
    let mut text = String::new();
    let mut owned: Option<Owned> = None;
    loop {
        tokio::select! {
            r = stdin.read(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    text.push_str(&String::from_utf8_lossy(&buf[..n]));
                    if let Some(end) = text.rfind('\n') {
                        if let Some(o) = Owned::last(&text[..end]) {
                            owned = Some(o);
                        }
                        text.drain(..=end);
                    }
                }
            },
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
    // Load-balancing mode: the redirect goes before the address, as in the agent.
    crate::balance::remove_left_redirect(vip);
    let nl = cpe_net::Netlink::connect()?;
    let iface = nl.interface(interface).await?;
    let removed = nl.remove(iface.index, vip).await?;
    if removed {
        tracing::warn!(%vip, %interface, "cpe vip ended without removing the VIP (killed?): the guard removed it");
    }
    // Then the election: only the dead agent's own key, only if still its own.
    if let (
        Some(etcd),
        Some(Owned {
            lease: Some(lease),
            key,
            value,
        }),
    ) = (etcd, owned)
    {
        let release = async {
            match etcd.delete_if_held(&key, lease, &value, &[]).await {
                Ok(true) => match etcd.revoke(lease).await {
                    Ok(()) => tracing::warn!("the guard released the dead agent's election key and revoked its lease {lease:x}: the next holder is elected now"),
                    Err(e) => tracing::warn!("the guard deleted the dead agent's election key; revoking lease {lease:x}: {e} (it expires on its own)"),
                },
                Ok(false) => tracing::info!("lease {lease:x} no longer holds this agent's election key: nothing to release"),
                Err(e) => tracing::warn!("the guard could not release lease {lease:x}: {e} (it expires on its own)"),
            }
        };
        if tokio::time::timeout(std::time::Duration::from_secs(5), release)
            .await
            .is_err()
        {
            tracing::warn!(
                "the guard gave up releasing lease {lease:x} after 5 s (it expires on its own)"
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agent_tells_the_guard_its_lease_key_and_value_one_line_each() {
        let a = Owned::line(Some(0x2a), "/cpe/vip/x", "cp1", "{\"node\":\"cp1\"}");
        let b = Owned::line(None, "/cpe/vip/x", "cp1", "{\"node\":\"cp1\"}");
        assert!(a.ends_with('\n') && !a.trim_end().contains('\n'));
        let o = Owned::last(&a).unwrap();
        assert_eq!(o.lease, Some(0x2a));
        assert_eq!(o.key, "/cpe/vip/x/2a");
        assert_eq!(o.value, "{\"node\":\"cp1\"}");
        // The last complete line wins: a lease given up is no longer the guard's to release.
        assert_eq!(Owned::last(&(a.clone() + &b)).unwrap().lease, None);
        assert_eq!(Owned::last(&(b + &a)).unwrap().lease, Some(0x2a));
        assert_eq!(Owned::last("garbage\n"), None);
    }
}
