//! Setting the demo up, before any traffic: the run's private directory, the certificates,
//! the three stand-in API servers on ports the kernel picks, and the load balancer in front
//! of them, ready once it sees all three up.
//!
//! The directory is new for every run (`tempfile`, a random name, mode 0700, created with
//! `mkdir`, which never follows a symlink planted in its place) and holds only the CA
//! certificate, the one file the load balancer's health checker and a user's `curl` need;
//! the private keys stay in memory. It is removed when the returned [`TempDir`] drops, on
//! every exit path of `run` (the signals are handled there, not here).
//!
//! What it does not do: drive the servers after they started (that is the script's, in
//! `show`), or send any traffic.

use super::{view, NAMES};
use anyhow::Context;
use cpe_apiserver::{Config, Pki, Running, Server, TlsSettings};
use cpe_health::State;
use cpe_lb::{BackendSpec, Lb, LbConfig, LbError, LbHandle};
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::script::Pace;

/// A fresh directory only this user can enter, under `$TMPDIR`, named `cpe-demo-XXXXXX`.
pub fn private_dir() -> anyhow::Result<TempDir> {
    tempfile::Builder::new()
        .prefix("cpe-demo-")
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
        .context("creating the demo's private temporary directory")
}

/// One stand-in API server as the demo drives it.
pub struct Slot {
    pub name: String,
    pub config: Config,
    pub running: Option<Running>,
    pub server: view::Server,
}

impl Slot {
    pub fn addr(&self) -> SocketAddr {
        self.config.listen
    }
}

/// The load balancer's task; it ends when its stop token is cancelled.
pub type LbTask = JoinHandle<Result<(), LbError>>;

/// The load balancer as it runs in this process.
pub struct Front {
    pub handle: LbHandle,
    pub endpoint: SocketAddr,
    pub admin: Option<SocketAddr>,
    pub stop: CancellationToken,
    pub task: LbTask,
}

/// Everything set-up started.
pub struct Stage {
    /// The CA the clients verify the endpoint against.
    pub ca_cert_pem: String,
    /// Where the CA lies on disk, inside the private directory.
    pub ca_path: PathBuf,
    pub slots: Vec<Slot>,
    pub front: Front,
}

/// Certificates into `dir`, the servers, the load balancer; returns once the load
/// balancer sees every server up.
pub async fn stage(dir: &Path, pace: Pace) -> anyhow::Result<Stage> {
    // Certificates: one CA, one server certificate naming localhost and 127.0.0.1 shared
    // by the three servers (a cluster's API servers all carry the endpoint's name).
    let pki =
        Pki::generate(&["localhost", "127.0.0.1"]).context("generating the demo's certificates")?;
    let ca_path = dir.join(cpe_apiserver::pki::CA_CERT);
    write_new(&ca_path, &pki.ca_cert_pem)?;
    let slots = start_servers(&pki, pace).await?;
    let front = start_lb(&slots, &ca_path).await?;
    wait_up(&front.handle, &slots).await?;
    Ok(Stage {
        ca_cert_pem: pki.ca_cert_pem,
        ca_path,
        slots,
        front,
    })
}

/// Writes a file that must not exist yet: `O_CREAT | O_EXCL`, which fails on any name
/// already there, a symlink (even a dangling one) included, so nothing is written through one.
fn write_new(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// Three stand-in API servers on ports the kernel picks; a restart rebinds the same port.
async fn start_servers(pki: &Pki, pace: Pace) -> anyhow::Result<Vec<Slot>> {
    let mut slots = Vec::new();
    for name in NAMES {
        let mut config = Config::new(
            "127.0.0.1:0".parse()?,
            name,
            Some(TlsSettings {
                cert_pem: pki.server.cert_pem.clone(),
                key_pem: pki.server.key_pem.clone(),
                client_ca_pem: Some(pki.ca_cert_pem.clone()),
            }),
        );
        config.shutdown_delay = pace.shutdown_delay;
        config.shutdown_grace = pace.shutdown_grace;
        config.stream_interval = Duration::from_millis(250);
        let server = Server::bind(config.clone())
            .await
            .with_context(|| format!("starting stand-in API server {name}"))?;
        config.listen = server.local_addr();
        slots.push(Slot {
            name: name.to_string(),
            config,
            running: Some(server.spawn()),
            server: view::Server::Serving,
        });
    }
    Ok(slots)
}

/// The load balancer in front, with its admin listener so `cpe status` works meanwhile.
async fn start_lb(slots: &[Slot], ca_path: &Path) -> anyhow::Result<Front> {
    let mut lb_config = LbConfig::new(
        "127.0.0.1:0".parse()?,
        slots
            .iter()
            .map(|s| BackendSpec::from_addr(s.addr()))
            .collect(),
    );
    lb_config.admin = Some("127.0.0.1:0".parse()?);
    lb_config.health.ca_file = Some(ca_path.to_path_buf());
    let lb = Lb::bind(lb_config)
        .await
        .context("starting the load balancer")?;
    let handle = lb.handle();
    let endpoint = lb.local_addr();
    let admin = lb.admin_addr();
    let stop = CancellationToken::new();
    let task = tokio::spawn(lb.run(stop.clone().cancelled_owned()));
    Ok(Front {
        handle,
        endpoint,
        admin,
        stop,
        task,
    })
}

/// The state the load balancer gives the backend at `addr`, if it has one.
pub fn lb_state_of(states: &[(String, State)], addr: SocketAddr) -> Option<State> {
    let name = BackendSpec::from_addr(addr).to_string();
    states.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

/// Traffic starts once the load balancer sees every server up.
async fn wait_up(lb: &LbHandle, slots: &[Slot]) -> anyhow::Result<()> {
    let ready_by = Instant::now() + Duration::from_secs(10);
    while !slots
        .iter()
        .all(|s| lb_state_of(&lb.states(), s.addr()) == Some(State::Up))
    {
        if Instant::now() > ready_by {
            anyhow::bail!(
                "the load balancer did not see the three stand-in servers up within 10 s: {:?}",
                lb.states()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}
