//! `cpe vip`: runs the built-in virtual IP agent on one control-plane machine.
//!
//! Two ways to say what to run: a definition (`-f endpoint.yaml --node cp1`) or flags for
//! ad-hoc use (`--vip 10.0.0.100/24 --interface eth0 --etcd URL ... --node cp1`). Flags
//! given with `-f` override the file's values (except the VIP and interface, which belong
//! to the definition). This module only resolves them into `cpe_vip::Settings` — checked
//! without touching the host — and runs the agent until SIGTERM or SIGINT.

use anyhow::Context;
use cpe_config::{Endpoint, Mode};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Endpoint definition in virtual-ip mode.
    #[arg(short = 'f', long = "file", value_name = "FILE", conflicts_with_all = ["vip", "interface"])]
    file: Option<PathBuf>,
    /// This machine's name: one of the definition's machines; the value etcd shows as holder.
    #[arg(long, value_name = "NAME")]
    node: String,
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
    /// Health probe interval (default 250ms, or the definition's).
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    health_interval: Option<Duration>,
    /// Health probe timeout (default 500ms, or the definition's).
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    health_timeout: Option<Duration>,
    /// etcd lease TTL: whole seconds, at least 2s. The holder drops the VIP within
    /// TTL - min(TTL/4, 500ms) of its last successful renewal.
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    lease_ttl: Option<Duration>,
    /// etcd election name (key prefix). Default: the definition's, or /cpe/vip/<VIP>.
    #[arg(long, value_name = "NAME")]
    election: Option<String>,
    /// Admin listener (/status, /metrics, /healthz). Default 127.0.0.1:9631 or the definition's.
    #[arg(long, value_name = "ADDR:PORT")]
    admin: Option<SocketAddr>,
    /// How long the takeover probe waits for a foreign host answering for the VIP.
    #[arg(long, value_name = "DURATION", value_parser = duration, default_value = "50ms")]
    probe_wait: Duration,
    /// While holding the VIP, hand etcd's raft leadership to another member when this
    /// machine's member leads, so that losing this machine costs a lease TTL, not an etcd
    /// election plus a TTL.
    #[arg(long, value_name = "on|off", value_parser = on_off, default_value = "on", action = clap::ArgAction::Set)]
    etcd_move_leader: bool,
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

fn duration(s: &str) -> Result<Duration, String> {
    cpe_config::duration::parse(s)
}

/// Parses `ADDR[/PREFIX]`.
fn parse_vip(s: &str) -> Result<(IpAddr, u8), String> {
    let (a, p) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let ip: IpAddr = a
        .parse()
        .map_err(|_| format!("--vip {s}: `{a}` is not an IPv4 or IPv6 address"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix = match p {
        None => max,
        Some(p) => match p.parse::<u8>() {
            Ok(n) if n <= max => n,
            _ => return Err(format!("--vip {s}: prefix length must be 0 to {max}")),
        },
    };
    if ip.is_loopback() || ip.is_multicast() || ip.is_unspecified() {
        return Err(format!(
            "--vip {s}: must be a unicast address on the machines' network"
        ));
    }
    Ok((ip, prefix))
}

fn check_ttl(ttl: Duration) -> Result<Duration, String> {
    if ttl.subsec_nanos() != 0 || ttl < Duration::from_secs(2) {
        return Err(format!(
            "--lease-ttl {}: etcd lease TTLs are whole seconds, at least 2s",
            cpe_config::duration::format(ttl)
        ));
    }
    Ok(ttl)
}

/// What the flags and the definition say, before anything on the host is looked at.
#[derive(Debug, Clone, PartialEq)]
struct Plan {
    node: String,
    vip: IpAddr,
    prefix_len: u8,
    interface: String,
    etcd: Vec<String>,
    etcd_ca: Option<PathBuf>,
    etcd_cert: Option<PathBuf>,
    etcd_key: Option<PathBuf>,
    election: String,
    lease_ttl: Duration,
    admin: SocketAddr,
    /// A URL, or the definition's health check against this address.
    health: HealthPlan,
    health_interval: Duration,
    health_timeout: Duration,
    rise: u32,
    fall: u32,
    unauthorized: cpe_config::Unauthorized,
    health_tls: (Option<PathBuf>, Option<PathBuf>, Option<PathBuf>),
}

#[derive(Debug, Clone, PartialEq)]
enum HealthPlan {
    Url(String),
    Definition(cpe_config::HealthCheck, SocketAddr),
}

const DEFAULT_HEALTH_URL: &str = "https://127.0.0.1:6443/readyz";

fn resolve(a: &Args, def: Option<&Endpoint>) -> Result<Plan, String> {
    let dflt = cpe_config::HealthCheck::default();
    let health_tls = (
        a.health_ca.clone(),
        a.health_cert.clone(),
        a.health_key.clone(),
    );
    if a.node.trim().is_empty() {
        return Err("--node: must be this machine's name".into());
    }
    let mut plan = match def {
        Some(e) => {
            let Some(v) = e.vip.as_ref().filter(|_| e.mode == Mode::VirtualIp) else {
                return Err(format!(
                    "the definition is in {} mode: cpe vip needs virtual-ip mode (virtualIP.interface set)",
                    e.mode
                ));
            };
            let machine = e.machine(&a.node).ok_or_else(|| {
                format!(
                    "--node {}: not a machine of the definition (machines: {})",
                    a.node,
                    e.machines
                        .iter()
                        .map(|m| m.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?;
            let etcd = e.etcd.clone();
            let endpoints = match etcd
                .as_ref()
                .map(|x| x.endpoints.clone())
                .filter(|l| !l.is_empty())
            {
                // This machine's own member first: the nearest, and the one that shares
                // this machine's fate.
                Some(mut l) => {
                    let own = |u: &String| {
                        cpe_election::EndpointUrl::parse(u)
                            .ok()
                            .and_then(|u| u.host.parse::<IpAddr>().ok())
                            == Some(machine.address)
                    };
                    l.sort_by_key(|u| !own(u));
                    l
                }
                // Default: every machine's member, this machine's own first.
                None => std::iter::once(machine)
                    .chain(e.machines.iter().filter(|m| m.name != machine.name))
                    .map(|m| match m.address {
                        IpAddr::V6(a) => format!("https://[{a}]:2379"),
                        a => format!("https://{a}:2379"),
                    })
                    .collect(),
            };
            Plan {
                node: a.node.clone(),
                vip: v.address,
                prefix_len: v.prefix_len,
                interface: v.interface.clone(),
                etcd: endpoints,
                etcd_ca: etcd.as_ref().and_then(|x| x.ca_file.clone()),
                etcd_cert: etcd.as_ref().and_then(|x| x.cert_file.clone()),
                etcd_key: etcd.as_ref().and_then(|x| x.key_file.clone()),
                election: v.election.clone(),
                lease_ttl: v.lease_ttl,
                admin: v.admin,
                health: HealthPlan::Definition(e.health.clone(), machine.api_server()),
                health_interval: e.health.interval,
                health_timeout: e.health.timeout,
                rise: e.health.rise,
                fall: e.health.fall,
                unauthorized: e.health.unauthorized,
                health_tls: (
                    e.health.ca_file.clone(),
                    e.health.cert_file.clone(),
                    e.health.key_file.clone(),
                ),
            }
        }
        None => {
            let vip = a
                .vip
                .as_deref()
                .ok_or("--vip ADDR[/PREFIX] is required without -f")?;
            let (vip, prefix_len) = parse_vip(vip)?;
            let interface = a
                .interface
                .clone()
                .filter(|i| !i.is_empty())
                .ok_or("--interface IF is required without -f")?;
            if a.etcd.is_empty() {
                return Err("--etcd URL[,URL...] is required without -f".into());
            }
            Plan {
                node: a.node.clone(),
                vip,
                prefix_len,
                interface,
                etcd: a.etcd.clone(),
                etcd_ca: None,
                etcd_cert: None,
                etcd_key: None,
                election: format!("/cpe/vip/{vip}"),
                lease_ttl: Duration::from_secs(2),
                admin: cpe_config::DEFAULT_VIP_ADMIN.parse().expect("constant"),
                health: HealthPlan::Url(DEFAULT_HEALTH_URL.into()),
                health_interval: dflt.interval,
                health_timeout: dflt.timeout,
                rise: dflt.rise,
                fall: dflt.fall,
                unauthorized: dflt.unauthorized,
                health_tls: health_tls.clone(),
            }
        }
    };
    // Flags override.
    if !a.etcd.is_empty() {
        plan.etcd = a.etcd.clone();
    }
    for u in &plan.etcd {
        cpe_election::EndpointUrl::parse(u).map_err(|e| format!("--etcd: {e}"))?;
    }
    if a.etcd_ca.is_some() {
        plan.etcd_ca = a.etcd_ca.clone();
    }
    if a.etcd_cert.is_some() || a.etcd_key.is_some() {
        plan.etcd_cert = a.etcd_cert.clone();
        plan.etcd_key = a.etcd_key.clone();
    }
    if let Some(u) = &a.health_url {
        plan.health = HealthPlan::Url(u.clone());
        plan.health_tls = health_tls;
    }
    if let Some(d) = a.health_interval {
        plan.health_interval = d;
    }
    if let Some(d) = a.health_timeout {
        plan.health_timeout = d;
    }
    if let Some(t) = a.lease_ttl {
        plan.lease_ttl = t;
    }
    plan.lease_ttl = check_ttl(plan.lease_ttl)?;
    if let Some(e) = &a.election {
        plan.election = e.clone();
    }
    if let Some(ad) = a.admin {
        plan.admin = ad;
    }
    if plan.health_interval.is_zero() || plan.health_timeout.is_zero() {
        return Err("--health-interval and --health-timeout must be greater than 0".into());
    }
    Ok(plan)
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.guard {
        return guard(&args).await;
    }
    let def = match &args.file {
        Some(f) => Some(cpe_config::load_file(f)?.endpoint),
        None => None,
    };
    let plan = match resolve(&args, def.as_ref()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let etcd = cpe_election::Client::new(
        &plan.etcd,
        cpe_election::TlsFiles {
            ca: plan.etcd_ca.clone(),
            cert: plan.etcd_cert.clone(),
            key: plan.etcd_key.clone(),
        },
        // Per member: below the renewal interval, so a silent member costs one renewal.
        (plan.lease_ttl / 4).max(Duration::from_millis(300)),
    )
    .context("etcd client settings")?;
    let tls = cpe_health::TlsFiles {
        ca_file: plan.health_tls.0.clone(),
        cert_file: plan.health_tls.1.clone(),
        key_file: plan.health_tls.2.clone(),
    };
    let (prober, addr, target) = match &plan.health {
        HealthPlan::Url(u) => (
            cpe_health::Prober::from_url(u, &tls, plan.health_timeout)?,
            None,
            u.clone(),
        ),
        HealthPlan::Definition(hc, addr) => {
            let mut hc = hc.clone();
            hc.timeout = plan.health_timeout;
            let scheme = format!("{:?}", hc.protocol).to_lowercase();
            let target = match hc.protocol {
                cpe_config::Protocol::Tcp => format!("tcp://{addr}"),
                _ => format!("{scheme}://{addr}{}", hc.path),
            };
            (cpe_health::Prober::from_config(&hc)?, Some(*addr), target)
        }
    };
    let settings = cpe_vip::Settings {
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
            target,
            interval: plan.health_interval,
            rules: cpe_health::Rules {
                rise: plan.rise.max(1),
                fall: plan.fall.max(1),
                unauthorized: plan.unauthorized,
            },
        },
        admin: Some(plan.admin),
        probe_wait: args.probe_wait,
        etcd_move_leader: args.etcd_move_leader,
    };
    let guard = spawn_guard(&plan);
    let result = cpe_vip::run(settings, shutdown_signal()).await;
    // Closing the guard's stdin tells it we are done (the address is already removed).
    drop(guard);
    result?;
    Ok(ExitCode::SUCCESS)
}

/// Starts the guard: a second `cpe vip --guard` process whose stdin is a pipe from this
/// one. When this process ends for any reason — SIGKILL and crashes included, which no
/// in-process cleanup survives — the kernel closes the pipe, the guard reads end-of-file and
/// removes the VIP from the interface. Without it a killed holder would keep answering for
/// the VIP while its lease expires and another machine takes over: two holders.
fn spawn_guard(plan: &Plan) -> Option<std::process::Child> {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(
                "cannot start the guard ({e}): a SIGKILLed agent would leave the VIP behind"
            );
            return None;
        }
    };
    let r = std::process::Command::new(exe)
        .args([
            "vip",
            "--guard",
            "--node",
            &plan.node,
            "--interface",
            &plan.interface,
        ])
        .arg("--vip")
        .arg(format!("{}/{}", plan.vip, plan.prefix_len))
        .stdin(std::process::Stdio::piped())
        .spawn();
    match r {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(
                "cannot start the guard ({e}): a SIGKILLed agent would leave the VIP behind"
            );
            None
        }
    }
}

/// The guard's side: wait for end-of-file on stdin (the agent is gone), then remove the
/// VIP. SIGTERM and SIGINT are ignored: a stop signal sent to both processes must not end
/// the guard before the agent has finished its handover.
async fn guard(args: &Args) -> anyhow::Result<ExitCode> {
    use tokio::io::AsyncReadExt;
    use tokio::signal::unix::{signal, SignalKind};
    let (vip, _) =
        parse_vip(args.vip.as_deref().unwrap_or_default()).map_err(anyhow::Error::msg)?;
    let interface = args.interface.clone().unwrap_or_default();
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
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
    let nl = cpe_net::Netlink::connect()?;
    let iface = nl.interface(&interface).await?;
    if nl.remove(iface.index, vip).await? {
        tracing::warn!(%vip, %interface, "cpe vip ended without removing the VIP (killed?): the guard removed it");
    }
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
        assert_eq!(p.health, HealthPlan::Url(DEFAULT_HEALTH_URL.into()));
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
        assert_eq!(
            p.health,
            HealthPlan::Url("http://127.0.0.1:8080/healthz".into())
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
        assert_eq!(err(&[]), "--vip ADDR[/PREFIX] is required without -f");
        assert_eq!(
            err(&["--vip", "10.0.0.300"]),
            "--vip 10.0.0.300: `10.0.0.300` is not an IPv4 or IPv6 address"
        );
        assert_eq!(
            err(&["--vip", "10.0.0.1/33"]),
            "--vip 10.0.0.1/33: prefix length must be 0 to 32"
        );
        assert!(err(&["--vip", "127.0.0.5"]).contains("unicast"));
        assert_eq!(
            err(&["--vip", "10.0.0.1", "--lease-ttl", "1500ms"]),
            "--lease-ttl 1.5s: etcd lease TTLs are whole seconds, at least 2s"
        );
        assert_eq!(
            err(&["--vip", "10.0.0.1", "--lease-ttl", "1s"]),
            "--lease-ttl 1s: etcd lease TTLs are whole seconds, at least 2s"
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
            "--etcd: etcd endpoint `127.0.0.1:2379`: must start with http:// or https://"
        );
        let v = [
            "--vip",
            "10.0.0.1",
            "--node",
            "n1",
            "--etcd",
            "http://127.0.0.1:2379",
        ];
        assert_eq!(
            resolve(&args(&v), None).unwrap_err(),
            "--interface IF is required without -f"
        );
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
        assert_eq!(p.vip, "10.77.0.100".parse::<IpAddr>().unwrap());
        assert_eq!(p.prefix_len, 32);
        assert_eq!(p.interface, "eth0");
        assert_eq!(p.election, "/cpe/vip/prod");
        // kubeadm's etcd certificates by default (the config crate's rule).
        assert_eq!(
            p.etcd_ca.as_deref(),
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
        match &p.health {
            HealthPlan::Definition(hc, addr) => {
                assert_eq!(hc.path, "/readyz");
                assert_eq!(*addr, "10.77.0.12:6443".parse().unwrap());
            }
            other => panic!("{other:?}"),
        }
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
        assert_eq!(p.health, HealthPlan::Url("http://127.0.0.1:8080/".into()));
        let err = resolve(&args(&["-f", "x.yaml", "--node", "cp9"]), Some(&e)).unwrap_err();
        assert_eq!(
            err,
            "--node cp9: not a machine of the definition (machines: cp1, cp2, cp3)"
        );
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
