//! `cpe vip`: runs the built-in virtual IP agent on one control-plane machine.
//!
//! Two ways to say what to run: a definition (`-f endpoint.yaml --node cp1`) or flags for
//! ad-hoc use (`--vip 10.0.0.100/24 --interface eth0 --etcd URL ... --node cp1`). Flags
//! given with `-f` override the file's values (except the VIP and interface, which belong
//! to the definition). cpe-config checks and resolves both into a [`cpe_config::VipPlan`]
//! (the same rules as `cpe plan`, problems naming the flag or the file's line); this
//! module only maps clap's values onto [`cpe_config::VipFlags`], the plan onto
//! `cpe_vip::Settings`, and runs the agent until SIGTERM or SIGINT.
//!
//! Machines come and go: `--node` defaults to `NODE_NAME`, then the host name, and a node
//! the definition does not list (or a definition without machines) runs with its own
//! address, the one on the VIP interface in the VIP's subnet (`cpe_net`, by netlink).
//! Started before kubeadm has written the etcd certificates, it waits for them.
//!
//! With `--load-balance`, the in-agent load balancer's backends are discovered as `cpe lb
//! --discover`'s (`--discover`, `--kubeconfig`, `--cache-dir`; by default, without machines
//! and `--backend`, from the agent's own etcd member list, seeded with this machine's own
//! API server, whose address is looked up here like the health check's).

use anyhow::Context;
use cpe_config::{HealthTarget, VipFlags, VipPlan};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Endpoint definition in virtual-ip mode.
    #[arg(short = 'f', long = "file", value_name = "FILE", conflicts_with_all = ["vip", "interface"])]
    file: Option<PathBuf>,
    /// This machine's name: the value etcd shows as holder. Default: the NODE_NAME
    /// environment variable (the static pod sets it from spec.nodeName), else the host name.
    /// Any name: a definition need not list the machine.
    #[arg(long, value_name = "NAME", env = "NODE_NAME")]
    node: Option<String>,
    /// The virtual IP, IPv4 or IPv6, with the prefix length to add it with (default /32 or /128).
    #[arg(long, value_name = "ADDR[/PREFIX]")]
    vip: Option<String>,
    /// Interface that carries the VIP (the one with an address in the VIP's subnet).
    #[arg(long, value_name = "IF")]
    interface: Option<String>,
    /// etcd client URLs, tried in order (put this machine's own member first).
    #[arg(long, value_name = "URL[,URL...]", value_delimiter = ',')]
    etcd: Vec<String>,
    /// CA of the etcd members' certificates (needed for https:// URLs).
    #[arg(long, value_name = "FILE")]
    etcd_ca: Option<PathBuf>,
    /// Client certificate for etcd (with --etcd-key).
    #[arg(long, value_name = "FILE")]
    etcd_cert: Option<PathBuf>,
    /// Client key for etcd (with --etcd-cert).
    #[arg(long, value_name = "FILE")]
    etcd_key: Option<PathBuf>,
    /// What must pass for this machine to hold the VIP. Default: this machine's API server
    /// `/readyz` (https://127.0.0.1:6443/readyz without a definition). Any http(s):// or tcp:// URL.
    #[arg(long, value_name = "URL")]
    health_url: Option<String>,
    /// CA to verify the health URL's certificate (default: not verified).
    #[arg(long, value_name = "FILE")]
    health_ca: Option<PathBuf>,
    /// Client certificate and key for the health URL (API servers without anonymous access).
    #[arg(long, value_name = "FILE", requires = "health_key")]
    health_cert: Option<PathBuf>,
    /// Key of --health-cert.
    #[arg(long, value_name = "FILE", requires = "health_cert")]
    health_key: Option<PathBuf>,
    /// Health probe interval (default 250ms, or the definition's; at least 10ms).
    #[arg(long, value_name = "DURATION")]
    health_interval: Option<String>,
    /// Health probe timeout (default 500ms, or the definition's).
    #[arg(long, value_name = "DURATION")]
    health_timeout: Option<String>,
    /// etcd lease TTL: whole seconds, at least 2s. The holder drops the VIP within
    /// TTL - min(TTL/4, 500ms) of its last successful renewal.
    #[arg(long, value_name = "DURATION")]
    lease_ttl: Option<String>,
    /// etcd election name (key prefix). Default: the definition's, or /cpe/vip/<VIP>.
    #[arg(long, value_name = "NAME")]
    election: Option<String>,
    /// Admin listener (/status, /metrics, /healthz). Default 127.0.0.1:9631 or the definition's.
    #[arg(long, value_name = "ADDR:PORT")]
    admin: Option<String>,
    /// File holding the admin token (`Authorization: Bearer`; required when the admin
    /// listener is not loopback). Default: the definition's virtualIP.adminTokenFile.
    #[arg(long, value_name = "FILE")]
    admin_token_file: Option<PathBuf>,
    /// A second listener with /metrics and the probes only (no /status, no actions), e.g.
    /// the node address for Prometheus while --admin stays on loopback. Default: the
    /// definition's virtualIP.metrics, else none.
    #[arg(long, value_name = "ADDR:PORT|off")]
    metrics: Option<String>,
    /// How long the takeover probe waits for a foreign host answering for the VIP.
    #[arg(long, value_name = "DURATION", value_parser = cpe_config::duration::parse, default_value = "50ms")]
    probe_wait: Duration,
    /// While holding the VIP, hand etcd's raft leadership to another member when this
    /// machine's member leads, so that losing this machine costs a lease TTL, not an etcd
    /// election plus a TTL.
    #[arg(long, value_name = "on|off", value_parser = on_off, default_value = "on", action = clap::ArgAction::Set)]
    etcd_move_leader: bool,
    /// Keep the etcd endpoints current from etcd's member list (every 2 s), the first
    /// endpoint (this machine's own member) always kept first: members added or removed by
    /// a rolling upgrade are followed without a restart.
    #[arg(long, value_name = "on|off", value_parser = on_off, default_value = "on", action = clap::ArgAction::Set)]
    etcd_follow_members: bool,
    /// Also load-balance: run `cpe lb`'s load balancer on --lb-port (on every machine) and,
    /// while holding the VIP, redirect VIP:6443 (the endpoint port) to it (nftables).
    /// Healthy while the load balancer has a backend up. Default: the definition's
    /// virtualIP.loadBalance.
    #[arg(long)]
    load_balance: bool,
    /// A backend of the load balancer (an API server), repeatable; with discovery, a seed.
    /// Default: every machine of the definition; without machines, this machine's own API
    /// server as the seed of the `etcd` source (below).
    #[arg(long = "backend", value_name = "HOST:PORT")]
    backends: Vec<String>,
    /// The load balancer's port on every machine (default 6444, or virtualIP.lbPort).
    #[arg(long, value_name = "PORT")]
    lb_port: Option<i64>,
    /// Where the load balancer learns its backends at run time, as `cpe lb --discover`:
    /// `etcd` (the member list of this agent's own etcd, --etcd and its TLS; an API server
    /// on each member's host at the endpoint port) and/or `kubernetes` (the `kubernetes`
    /// EndpointSlices, with --kubeconfig). Repeatable. Default: the definition's
    /// loadBalancer.discovery; without machines and --backend, `etcd`.
    #[arg(long = "discover", value_name = "SOURCE", value_parser = ["kubernetes", "etcd"])]
    discover: Vec<String>,
    /// Kubeconfig of the `kubernetes` source [default: $KUBECONFIG].
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// Where the load balancer's last good backend set is cached (vip-lb-PORT.json, apart
    /// from `cpe lb`'s lb-PORT.json) [default: /var/lib/cpe].
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Internal: run as the guard of a parent `cpe vip` (see `spawn_guard`).
    #[arg(long, hide = true)]
    guard: bool,
}

fn on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("`{s}`: must be `on` or `off`")),
    }
}

impl Args {
    /// The flags as typed, for cpe-config to check and lay over the definition.
    fn flags(&self) -> VipFlags {
        VipFlags {
            node: self
                .node
                .clone()
                .filter(|n| !n.trim().is_empty())
                .unwrap_or_else(host_name),
            vip: self.vip.clone(),
            interface: self.interface.clone(),
            etcd: self.etcd.clone(),
            etcd_ca: self.etcd_ca.clone(),
            etcd_cert: self.etcd_cert.clone(),
            etcd_key: self.etcd_key.clone(),
            health_url: self.health_url.clone(),
            health_ca: self.health_ca.clone(),
            health_cert: self.health_cert.clone(),
            health_key: self.health_key.clone(),
            health_interval: self.health_interval.clone(),
            health_timeout: self.health_timeout.clone(),
            lease_ttl: self.lease_ttl.clone(),
            election: self.election.clone(),
            admin: self.admin.clone(),
            admin_token_file: self.admin_token_file.clone(),
            metrics: self.metrics.clone(),
            load_balance: self.load_balance,
            backends: self.backends.clone(),
            lb_port: self.lb_port,
            discovery: cpe_config::DiscoveryFlags {
                discover: self.discover.clone(),
                kubeconfig: self.kubeconfig.clone(),
                kubeconfig_env: std::env::var("KUBECONFIG").ok(),
                cache_dir: self.cache_dir.clone(),
                // The etcd source is the agent's own etcd (--etcd and its TLS).
                ..Default::default()
            },
        }
    }
}

/// The host name (`--node`'s last default), from the kernel; empty when unreadable (the
/// plan then says `--node` is needed).
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// A node the definition does not list (or a definition without machines) probes its own
/// address: the one on the VIP interface in the VIP's subnet, read by netlink now.
/// The load balancer with nothing else to start from is seeded with this machine's own
/// API server at that address too.
async fn own_address(plan: &mut VipPlan) -> anyhow::Result<()> {
    let seed_own = plan.load_balance.as_ref().is_some_and(|l| l.seed_own);
    if !matches!(plan.health, HealthTarget::OwnAddress(_)) && !seed_own {
        return Ok(());
    }
    let nl = cpe_net::Netlink::connect()?;
    let (addr, len) = nl.own_address(&plan.interface, plan.vip).await?;
    if let HealthTarget::OwnAddress(port) = plan.health {
        tracing::info!(node = %plan.node, address = %format!("{addr}/{len}"), interface = %plan.interface,
            "this machine's own address (on the VIP interface, in the VIP's subnet): the health check targets it");
        plan.health = HealthTarget::Machine(std::net::SocketAddr::new(addr, port));
    }
    if let Some(l) = plan.load_balance.as_mut().filter(|l| l.seed_own) {
        let own = cpe_config::Backend::from_addr(std::net::SocketAddr::new(addr, l.port));
        tracing::info!(seed = %own, "the load balancer starts from this machine's own API server; discovery gives the others");
        if !l.backends.contains(&own) {
            l.backends.push(own);
        }
    }
    Ok(())
}

/// During `kubeadm init` or `join` the agent may start before kubeadm has written the etcd
/// client certificates: wait for them (a line every 30 s), rather than exit and be
/// restarted. Any other problem with the files (unreadable, not PEM) is found when the
/// client is made, and exits.
async fn wait_for_etcd_files(plan: &VipPlan) {
    if !plan.etcd.iter().any(|u| u.starts_with("https://")) {
        return;
    }
    let files: Vec<&std::path::Path> = [&plan.etcd_tls.ca, &plan.etcd_tls.cert, &plan.etcd_tls.key]
        .into_iter()
        .flatten()
        .map(|p| p.as_path())
        .collect();
    let missing = || -> Vec<String> {
        files
            .iter()
            .filter(|p| matches!(std::fs::metadata(p), Err(e) if e.kind() == std::io::ErrorKind::NotFound))
            .map(|p| p.display().to_string())
            .collect()
    };
    let started = std::time::Instant::now();
    let mut said: Option<std::time::Instant> = None;
    loop {
        let m = missing();
        if m.is_empty() {
            if said.is_some() {
                tracing::info!(waited = ?started.elapsed(), "the etcd client certificate files are there: starting");
            }
            return;
        }
        if said.is_none_or(|t| t.elapsed() >= Duration::from_secs(30)) {
            tracing::info!(missing = ?m,
                "waiting for the etcd client certificate files (kubeadm writes them during init and join)");
            said = Some(std::time::Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The agent's settings for a plan: the etcd client, the prober and its rules. The only
/// place that knows both shapes (kept small so that `Settings` can move).
fn settings(plan: &VipPlan, args: &Args) -> anyhow::Result<cpe_vip::Settings> {
    let etcd = cpe_election::Client::new(
        &plan.etcd,
        plan.etcd_tls.clone(),
        // Per member: below the renewal interval, so a silent member costs one renewal.
        (plan.lease_ttl / 4).max(Duration::from_millis(300)),
    )
    .context("etcd client settings")?;
    let hc = &plan.health_check;
    let (prober, addr) = match &plan.health {
        HealthTarget::Url(u) => (
            cpe_health::Prober::from_url(u, &plan.health_tls, hc.timeout)?,
            None,
        ),
        HealthTarget::Machine(addr) => (cpe_health::Prober::from_config(hc)?, Some(*addr)),
        HealthTarget::OwnAddress(_) => anyhow::bail!("internal: the own address was not looked up"),
    };
    Ok(cpe_vip::Settings {
        node: plan.node.clone(),
        vip: plan.vip,
        prefix_len: plan.prefix_len,
        interface: plan.interface.clone(),
        election: plan.election.clone(),
        lease_ttl: plan.lease_ttl,
        etcd,
        health: cpe_vip::HealthCheck {
            prober,
            addr,
            target: plan.health.describe(hc),
            interval: hc.interval,
            rules: cpe_health::Rules {
                rise: hc.rise.max(1),
                fall: hc.fall.max(1),
                unauthorized: hc.unauthorized,
            },
        },
        admin: Some(plan.admin),
        admin_token: plan
            .admin_token_file
            .as_deref()
            .map(cpe_admin::Token::read)
            .transpose()?,
        metrics: plan.metrics,
        probe_wait: args.probe_wait,
        etcd_move_leader: args.etcd_move_leader,
        etcd_follow_members: args.etcd_follow_members,
        load_balance: plan
            .load_balance
            .as_ref()
            .zip(plan.lb_plan())
            .map(|(l, lb)| cpe_vip::balance::LoadBalance {
                port: l.port,
                lb: cpe_lb::LbConfig::from_plan(&lb),
                // The definition's machines, else --backend or this machine's own API server.
                seed_origin: if args.backends.is_empty() && !l.seed_own {
                    cpe_lb::discovery::decide::Origin::File
                } else {
                    cpe_lb::discovery::decide::Origin::Seed
                },
                timing: cpe_lb::discovery::Timing {
                    etcd_interval: cpe_vip::balance::ETCD_INTERVAL,
                    ..Default::default()
                },
            }),
    })
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.guard {
        return guard(&args).await;
    }
    // `-f FILE`, or the definition carried inline by a one-file pod (`CPE_DEFINITION`,
    // `cpe render --kind static-pod --inline`), written to a private file first.
    let file = match &args.file {
        Some(f) => Some(f.clone()),
        None => super::inline::definition_file_from_env()?,
    };
    let resolved = match args.flags().resolve(file.as_deref()) {
        Ok(r) => r,
        Err(e) => {
            for line in e.render(file.as_deref()) {
                eprintln!("{line}");
            }
            // An invalid definition fails like `cpe preflight` (1); a flag is a usage error.
            let code = match e {
                cpe_config::PlanError::Load(_) => 1,
                cpe_config::PlanError::Invalid(_) => 2,
            };
            return Ok(ExitCode::from(code));
        }
    };
    // The definition's warnings, as `cpe plan` prints them.
    let name = file.as_ref().map(|f| f.display().to_string());
    for w in &resolved.warnings {
        eprintln!("{}", w.render(name.as_deref()));
    }
    let mut plan = resolved.plan;
    own_address(&mut plan).await?;
    // Before the certificates exist there is nothing to do; a signal still ends the wait.
    tokio::select! {
        _ = wait_for_etcd_files(&plan) => {}
        _ = shutdown_signal() => return Ok(ExitCode::SUCCESS),
    }
    let settings = settings(&plan, &args)?;
    let mut guard = spawn_guard(&plan);
    let pipe = guard.as_mut().and_then(|g| g.stdin.take());
    let result = cpe_vip::run_with(settings, pipe, shutdown_signal()).await;
    // Closing the guard's stdin tells it we are done (the address is already removed).
    drop(guard);
    result?;
    Ok(ExitCode::SUCCESS)
}

/// Starts the guard (`cpe vip --guard`, see [`cpe_vip::guard`]) for this plan's VIP.
fn spawn_guard(plan: &VipPlan) -> Option<std::process::Child> {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(
                "cannot start the guard ({e}): a SIGKILLed agent would leave the VIP behind"
            );
            return None;
        }
    };
    let args = [
        "vip".to_string(),
        "--guard".into(),
        "--node".into(),
        plan.node.clone(),
        "--interface".into(),
        plan.interface.clone(),
        "--vip".into(),
        format!("{}/{}", plan.vip, plan.prefix_len),
    ];
    // The etcd it may release the agent's election key and lease on (see cpe_vip::guard).
    let mut args = args.to_vec();
    args.push("--etcd".into());
    args.push(plan.etcd.join(","));
    for (flag, path) in [
        ("--etcd-ca", &plan.etcd_tls.ca),
        ("--etcd-cert", &plan.etcd_tls.cert),
        ("--etcd-key", &plan.etcd_tls.key),
    ] {
        if let Some(p) = path {
            args.push(flag.into());
            args.push(p.to_string_lossy().into_owned());
        }
    }
    cpe_vip::guard::spawn(&exe, &args)
}

/// `cpe vip --guard`: the guard's process.
async fn guard(args: &Args) -> anyhow::Result<ExitCode> {
    let text = args.vip.as_deref().unwrap_or_default();
    let (vip, _) = cpe_config::validate::parse_address(text)
        .map_err(|e| anyhow::anyhow!("--vip {text}: {e}"))?;
    // Without etcd flags (a guard started by an older agent) it only removes the address.
    let etcd = if args.etcd.is_empty() {
        None
    } else {
        match cpe_election::Client::new(
            &args.etcd,
            cpe_config::TlsFiles::new(
                args.etcd_ca.clone(),
                args.etcd_cert.clone(),
                args.etcd_key.clone(),
            ),
            Duration::from_millis(500),
        ) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!("guard: etcd client: {e}: it will only remove the address");
                None
            }
        }
    };
    cpe_vip::guard::run(vip, args.interface.as_deref().unwrap_or_default(), etcd).await?;
    Ok(ExitCode::SUCCESS)
}

/// SIGTERM (systemd, kubelet, a drain) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser)]
    struct T {
        #[command(flatten)]
        a: Args,
    }

    fn args(s: &[&str]) -> Args {
        T::try_parse_from(std::iter::once("cpe").chain(s.iter().copied()))
            .unwrap()
            .a
    }

    #[test]
    fn etcd_move_leader_is_on_by_default_and_switchable() {
        let base = [
            "--vip",
            "10.77.0.100/24",
            "--interface",
            "eth0",
            "--node",
            "n1",
        ];
        assert!(args(&base).etcd_move_leader);
        let with = |v: &'static str| -> Vec<&str> {
            base.iter()
                .copied()
                .chain(["--etcd-move-leader", v])
                .collect()
        };
        assert!(!args(&with("off")).etcd_move_leader);
        assert!(args(&with("on")).etcd_move_leader);
        let bad = with("maybe");
        let e = T::try_parse_from(std::iter::once("cpe").chain(bad.iter().copied()))
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("--etcd-move-leader") && e.contains("maybe") && e.contains("`on` or `off`"),
            "{e}"
        );
    }

    #[test]
    fn load_balance_flags_reach_the_settings() {
        let a = args(&[
            "--vip",
            "10.77.0.100/24",
            "--interface",
            "eth0",
            "--node",
            "n1",
            "--etcd",
            "http://10.77.0.11:2379",
            "--load-balance",
            "--backend",
            "10.77.0.11:6443",
            "--backend",
            "10.77.0.12:6443",
            "--lb-port",
            "7443",
        ]);
        let plan = resolve(&a, None).unwrap();
        let s = settings(&plan, &a).unwrap();
        let lb = s.load_balance.expect("load balancing");
        assert_eq!(lb.port, 6443);
        assert_eq!(lb.lb.listen, "0.0.0.0:7443".parse().unwrap());
        assert_eq!(lb.lb.backends.len(), 2);
        assert_eq!(lb.lb.admin, None);
        // without --load-balance: the VIP only
        let plain = args(&[
            "--vip",
            "10.77.0.100/24",
            "--interface",
            "eth0",
            "--node",
            "n1",
            "--etcd",
            "http://10.77.0.11:2379",
        ]);
        let plan = resolve(&plain, None).unwrap();
        assert!(settings(&plan, &plain).unwrap().load_balance.is_none());
    }

    fn resolve(a: &Args, def: Option<&cpe_config::Endpoint>) -> Result<VipPlan, String> {
        a.flags()
            .plan_for(def)
            .map_err(|e| e.render(None).join("\n"))
    }

    #[test]
    fn ad_hoc_flags_resolve_with_defaults() {
        let a = args(&[
            "--vip",
            "10.77.0.100/24",
            "--interface",
            "eth0",
            "--node",
            "n1",
            "--etcd",
            "http://127.0.0.1:2379,http://10.77.0.12:2379",
        ]);
        let p = resolve(&a, None).unwrap();
        assert_eq!((p.vip, p.prefix_len), ("10.77.0.100".parse().unwrap(), 24));
        assert_eq!(p.etcd.len(), 2);
        assert_eq!(p.lease_ttl, Duration::from_secs(2));
        assert_eq!(p.election, "/cpe/vip/10.77.0.100");
        assert_eq!(p.admin, "127.0.0.1:9631".parse().unwrap());
        assert_eq!(
            p.health,
            HealthTarget::Url(cpe_config::plan::DEFAULT_HEALTH_URL.into())
        );
        let a = args(&[
            "--vip",
            "fd00:77::100",
            "--interface",
            "eth0",
            "--node",
            "n1",
            "--etcd",
            "http://[::1]:2379",
            "--lease-ttl",
            "3s",
            "--health-url",
            "http://127.0.0.1:8080/healthz",
            "--admin",
            "127.0.0.1:9700",
        ]);
        let p = resolve(&a, None).unwrap();
        assert_eq!(p.prefix_len, 128);
        assert_eq!(p.lease_ttl, Duration::from_secs(3));
        assert_eq!(p.admin, "127.0.0.1:9700".parse().unwrap());
        assert_eq!(
            p.health,
            HealthTarget::Url("http://127.0.0.1:8080/healthz".into())
        );
    }

    #[test]
    fn bad_flags_name_the_flag_value_and_rule() {
        let base = [
            "--interface",
            "eth0",
            "--node",
            "n1",
            "--etcd",
            "http://127.0.0.1:2379",
        ];
        let err = |extra: &[&str]| {
            let v: Vec<&str> = base.iter().copied().chain(extra.iter().copied()).collect();
            resolve(&args(&v), None).unwrap_err()
        };
        assert_eq!(
            err(&[]),
            "error: --vip: is required without -f\n  hint: ADDR[/PREFIX], e.g. --vip 10.0.0.10/24"
        );
        assert_eq!(
            err(&["--vip", "10.0.0.300"]),
            "error: --vip = 10.0.0.300: must be an IP address, optionally with a prefix length (10.0.0.11 or 10.0.0.11/24)"
        );
        assert_eq!(
            err(&["--vip", "10.0.0.1/33"]),
            "error: --vip = 10.0.0.1/33: has prefix length /33, which must be 0 to 32"
        );
        assert!(err(&["--vip", "127.0.0.5"]).contains("unicast"));
        let ttl = "must be a whole number of seconds, at least 2s\n  hint: etcd lease TTLs are whole seconds and etcd grants no less than about 2s; the default is 2s";
        assert_eq!(
            err(&["--vip", "10.0.0.1", "--lease-ttl", "1500ms"]),
            format!("error: --lease-ttl = 1500ms: {ttl}")
        );
        assert_eq!(
            err(&["--vip", "10.0.0.1", "--lease-ttl", "1s"]),
            format!("error: --lease-ttl = 1s: {ttl}")
        );
        // The file's 10 ms minimum holds for the flag too.
        assert_eq!(
            err(&["--vip", "10.0.0.1", "--health-interval", "1ms"]),
            "error: --health-interval = 1ms: must be at least 10ms"
        );
        let v = [
            "--vip",
            "10.0.0.1",
            "--interface",
            "eth0",
            "--node",
            "n1",
            "--etcd",
            "127.0.0.1:2379",
        ];
        assert_eq!(
            resolve(&args(&v), None).unwrap_err(),
            "error: --etcd = 127.0.0.1:2379: must be an http:// or https:// URL with a host and a port\n  hint: e.g. https://10.0.0.11:2379"
        );
        let v = [
            "--vip",
            "10.0.0.1",
            "--node",
            "n1",
            "--etcd",
            "http://127.0.0.1:2379",
        ];
        assert!(resolve(&args(&v), None)
            .unwrap_err()
            .starts_with("error: --interface: is required without -f"));
        // -f conflicts with --vip (clap's usage error, exit 2).
        assert!(
            T::try_parse_from(["cpe", "-f", "x.yaml", "--vip", "10.0.0.1", "--node", "n"]).is_err()
        );
    }

    const DEF: &str = "cluster: prod\nendpoint:\n  host: 10.77.0.100\nvirtualIP:\n  interface: eth0\ncontrolPlane:\n  replicas: 3\n  machines:\n    - {name: cp1, address: 10.77.0.11}\n    - {name: cp2, address: 10.77.0.12}\n    - {name: cp3, address: 10.77.0.13}\n";

    #[test]
    fn a_definition_resolves_node_etcd_and_health() {
        let e = cpe_config::load_str(DEF).unwrap().endpoint;
        let p = resolve(&args(&["-f", "x.yaml", "--node", "cp2"]), Some(&e)).unwrap();
        assert_eq!(p.vip, "10.77.0.100".parse::<std::net::IpAddr>().unwrap());
        assert_eq!(p.prefix_len, 32);
        assert_eq!(p.interface, "eth0");
        assert_eq!(p.election, "/cpe/vip/prod");
        // kubeadm's etcd certificates by default (the config crate's rule).
        assert_eq!(
            p.etcd_tls.ca.as_deref(),
            Some(std::path::Path::new("/etc/kubernetes/pki/etcd/ca.crt"))
        );
        assert_eq!(
            p.etcd,
            vec![
                "https://10.77.0.12:2379",
                "https://10.77.0.11:2379",
                "https://10.77.0.13:2379"
            ]
        );
        assert_eq!(p.health_check.path, "/readyz");
        assert_eq!(
            p.health,
            HealthTarget::Machine("10.77.0.12:6443".parse().unwrap())
        );
        let p = resolve(
            &args(&[
                "-f",
                "x.yaml",
                "--node",
                "cp2",
                "--etcd",
                "http://127.0.0.1:2379",
                "--health-url",
                "http://127.0.0.1:8080/",
            ]),
            Some(&e),
        )
        .unwrap();
        assert_eq!(p.etcd, vec!["http://127.0.0.1:2379"]);
        assert_eq!(p.health, HealthTarget::Url("http://127.0.0.1:8080/".into()));
        // Machines come and go: a node the list does not name is accepted (with a
        // warning), its own address found at start.
        let r = args(&["-f", "x.yaml", "--node", "cp9"])
            .flags()
            .resolve_over(&e)
            .unwrap();
        assert_eq!(r.plan.health, HealthTarget::OwnAddress(6443));
        assert_eq!(r.plan.etcd[0], "https://127.0.0.1:2379");
        assert!(r.warnings[0].render(None).contains(
            "--node = cp9: is not a machine of the definition (machines: cp1, cp2, cp3): accepted"
        ));
        // Without --node: NODE_NAME (clap's env), else the host name; never empty here.
        let a = args(&["-f", "x.yaml"]);
        assert!(!a.flags().node.is_empty());
        assert!(!args(&["-f", "x.yaml", "--etcd-follow-members", "off"]).etcd_follow_members);
        assert!(args(&["-f", "x.yaml"]).etcd_follow_members);
    }

    #[test]
    fn a_definition_in_another_mode_is_refused() {
        let lb = DEF.replace(
            "host: 10.77.0.100\nvirtualIP:\n  interface: eth0\n",
            "host: lb.example.com\n",
        );
        let e = cpe_config::load_str(&lb).unwrap().endpoint;
        let err = resolve(&args(&["-f", "x.yaml", "--node", "cp1"]), Some(&e)).unwrap_err();
        assert!(
            err.contains("external-lb mode: cpe vip needs virtual-ip mode"),
            "{err}"
        );
    }
}
