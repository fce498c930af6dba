//! The guard: a second process that removes the VIP when the agent's process ends
//! without removing it (SIGKILL, a crash). The agent starts it ([`spawn`]) with a pipe
//! on its stdin; when the agent ends for any reason the kernel closes the pipe, the guard
//! ([`run`]) reads end-of-file and removes the VIP from the interface. Without it a
//! killed holder would keep answering for the VIP while its lease expires and another
//! machine takes over: two holders.
//!
//! It does not decide anything about holding the VIP, and it does not parse a command
//! line: the CLI passes the command that runs [`run`] in the child.

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

/// The guard's side: waits for end-of-file on stdin (the agent is gone), then removes
/// `vip` from `interface`. SIGTERM and SIGINT are ignored: a stop signal sent to both
/// processes must not end the guard before the agent has finished its handover.
pub async fn run(vip: IpAddr, interface: &str) -> Result<(), GuardError> {
    use tokio::io::AsyncReadExt;
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(GuardError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(GuardError::Signals)?;
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 64];
    loop {
        tokio::select! {
            r = stdin.read(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            },
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
    // Load-balancing mode: the redirect goes before the address, as in the agent.
    crate::balance::remove_left_redirect(vip);
    let nl = cpe_net::Netlink::connect()?;
    let iface = nl.interface(interface).await?;
    if nl.remove(iface.index, vip).await? {
        tracing::warn!(%vip, %interface, "cpe vip ended without removing the VIP (killed?): the guard removed it");
    }
    Ok(())
}
