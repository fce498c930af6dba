//! The three runs: which facts to gather for a definition, gathered concurrently where
//! they are independent, each handed to its decision. This is the only module that knows
//! both the probes and the decisions; it decides nothing itself.

use crate::decide::{self, OTHER_PORTS};
use crate::facts::{Connect, Dad, Http};
use crate::probe::{self, tls::TlsFiles};
use crate::report::{Check, Report};
use cpe_config::{Endpoint, EtcdTopology, Host, Machine, Mode};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::task::JoinSet;

/// Settings of `cpe preflight --local`.
#[derive(Clone, Debug)]
pub struct Local {
    /// The machine this is run on, by its name in the definition.
    pub node: String,
    /// etcd runs elsewhere: do not check 2379/2380 here, do check the etcd endpoints.
    pub external_etcd: bool,
    /// The cluster already has etcd (joining a machine): check the etcd endpoints even
    /// when etcd is stacked.
    pub etcd_exists: bool,
    /// Connect / request timeout.
    pub timeout: Duration,
    /// How long the ARP/NDP probe waits for an answer.
    pub dad_wait: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("--node {node:?}: no machine of that name in the definition (it has {known})")]
    UnknownNode { node: String, known: String },
    #[error("cannot read this machine's interfaces: {0}")]
    Interfaces(String),
    /// A node the definition does not list, and no single own address on the VIP
    /// interface in the VIP's subnet.
    #[error("{0}")]
    OwnAddress(String),
}

fn label(m: &Machine) -> String {
    format!("{} ({})", m.name, m.address)
}

/// `cpe preflight --local --node NAME`, run on the control-plane machine itself.
pub async fn local(ep: &Endpoint, opts: &Local) -> Result<Report, RunError> {
    let ifaces = probe::iface::interfaces().map_err(RunError::Interfaces)?;
    // Machines come and go: in virtual-ip mode a node the definition does not list (or a
    // definition without machines) is checked at its own address, the one on the VIP
    // interface in the VIP's subnet, as `cpe vip` finds it.
    let own;
    let m = match (ep.machine(&opts.node), &ep.vip) {
        (Some(m), _) => m,
        (None, Some(vip)) if ep.mode == Mode::VirtualIp => {
            let addrs = ifaces
                .get(&vip.interface)
                .map(|i| i.addrs.clone())
                .unwrap_or_default();
            let (address, len) = cpe_net::own_address(vip.address, &vip.interface, &addrs)
                .map_err(|e| RunError::OwnAddress(e.to_string()))?;
            own = Machine {
                name: opts.node.clone(),
                address,
                prefix_len: Some(len),
                api_server_port: ep.port,
            };
            &own
        }
        (None, _) => {
            return Err(RunError::UnknownNode {
                node: opts.node.clone(),
                known: ep
                    .machines
                    .iter()
                    .map(|m| m.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
        }
    };
    let mut report = Report::new("preflight --local", ep);

    // The ARP/NDP probe waits for answers: start it first, check ports meanwhile.
    let dad = ep.vip.as_ref().map(|vip| {
        let (iface, addr, wait) = (vip.interface.clone(), vip.address, opts.dad_wait);
        tokio::spawn(async move { probe::dad::probe(&iface, addr, wait).await })
    });

    let mut checks = vec![decide::node_address(m, &ifaces)];
    let external = opts.external_etcd || ep.etcd_topology == EtcdTopology::External;
    let mut ports = vec![decide::api_server_port(m.api_server_port)];
    ports.extend(
        OTHER_PORTS
            .iter()
            .copied()
            .filter(|p| !(external && p.etcd)),
    );
    // The load-balancing VIP's load balancer listens on lbPort on every machine.
    if let Some(lb) = ep.vip.as_ref().and_then(|v| v.load_balance.as_ref()) {
        ports.push(decide::vip_lb_port(lb.lb_port));
    }
    for spec in &ports {
        checks.push(decide::port(spec, &probe::ports::bind_all(spec.port)));
    }

    if let Some(vip) = &ep.vip {
        let subnet = probe::iface::vip_subnet(vip.address, &ifaces, &vip.interface);
        checks.extend(decide::vip_interface(vip, &ifaces, subnet));
        let held_here = ifaces.with_addr(vip.address).is_some();
        let dad = match dad {
            Some(h) => h
                .await
                .unwrap_or_else(|e| Dad::NotChecked(format!("probe task: {e}"))),
            None => Dad::NotChecked("no VIP".into()),
        };
        // Without the interface there is nothing to probe; the interface check failed.
        if ifaces.get(&vip.interface).is_some() {
            checks.push(decide::vip_dad(vip, held_here, &dad));
        }
        checks.push(match probe::caps::caps() {
            Ok(c) => decide::capabilities(&c),
            Err(e) => Check::warn(
                "vip.capabilities",
                "CAP_NET_ADMIN and CAP_NET_RAW",
                format!("not checked: {e}"),
                "check by hand: grep Cap /proc/self/status",
            ),
        });
    }
    report.push(format!("{} — this machine", label(m)), checks);

    if let Some(etcd) = &ep.etcd {
        if (external || opts.etcd_exists) && !etcd.endpoints.is_empty() {
            report.push("etcd", etcd_checks(ep, opts.timeout).await);
        }
    }
    Ok(report)
}

async fn etcd_checks(ep: &Endpoint, timeout: Duration) -> Vec<Check> {
    let Some(etcd) = &ep.etcd else {
        return Vec::new();
    };
    let files = TlsFiles {
        ca: etcd.ca_file.clone(),
        cert: etcd.cert_file.clone(),
        key: etcd.key_file.clone(),
    };
    let mut set = JoinSet::new();
    for (i, url) in etcd.endpoints.iter().enumerate() {
        let (url, files) = (url.clone(), files.clone());
        set.spawn(async move {
            let s = probe::etcd::status(&url, &files, timeout).await;
            (i, decide::etcd(&url, &s))
        });
    }
    collect(set).await
}

async fn collect(mut set: JoinSet<(usize, Check)>) -> Vec<Check> {
    let mut v = Vec::new();
    while let Some(r) = set.join_next().await {
        if let Ok(x) = r {
            v.push(x);
        }
    }
    v.sort_by_key(|(i, _)| *i);
    v.into_iter().map(|(_, c)| c).collect()
}

/// Settings of `cpe preflight` from an admin machine.
#[derive(Clone, Debug)]
pub struct Remote {
    pub timeout: Duration,
}

/// `cpe preflight` from an admin machine: every machine reachable with its API server port
/// still free, and the endpoint itself ready to be taken.
pub async fn remote(ep: &Endpoint, opts: &Remote) -> Report {
    let mut report = Report::new("preflight", ep);
    // The machines and the endpoint are probed at the same time: a run costs one timeout
    // at most, however many targets do not answer.
    let (seen, endpoint_checks) = tokio::join!(
        machine_connects(ep, opts.timeout),
        endpoint_remote(ep, opts.timeout)
    );
    for (i, c) in seen {
        let m = &ep.machines[i];
        report.push(
            label(m),
            vec![decide::reachable(m, &c), decide::api_port_unused(m, &c)],
        );
    }
    if !endpoint_checks.is_empty() {
        report.push(format!("endpoint {}", ep.url_authority()), endpoint_checks);
    }
    report
}

async fn machine_connects(ep: &Endpoint, timeout: Duration) -> Vec<(usize, Connect)> {
    let mut set = JoinSet::new();
    for (i, m) in ep.machines.iter().enumerate() {
        let m = m.clone();
        set.spawn(async move { (i, probe::net::connect(m.api_server(), timeout).await) });
    }
    let mut seen: Vec<(usize, Connect)> = Vec::new();
    while let Some(Ok(r)) = set.join_next().await {
        seen.push(r);
    }
    seen.sort_by_key(|(i, _)| *i);
    seen
}

async fn endpoint_remote(ep: &Endpoint, timeout: Duration) -> Vec<Check> {
    match ep.mode {
        Mode::ExternalLb => {
            let resolved = match &ep.host {
                Host::Ip(ip) => Ok(vec![*ip]),
                Host::Dns(n) => probe::net::resolve(n, ep.port, timeout).await,
            };
            let mut v = vec![decide::endpoint_resolves(&ep.host, &resolved)];
            if let Ok(addrs) = &resolved {
                for ip in addrs {
                    let addr = SocketAddr::new(*ip, ep.port);
                    let c = probe::net::connect(addr, timeout).await;
                    let is_cpe = c == Connect::Accepted && is_cpe_lb(ep, *ip, timeout).await;
                    v.push(decide::lb_port(addr, &c, is_cpe));
                }
            }
            v
        }
        Mode::VirtualIp => match &ep.vip {
            Some(vip) => {
                let addr = SocketAddr::new(vip.address, ep.port);
                vec![decide::vip_unused(
                    addr,
                    &probe::net::connect(addr, timeout).await,
                )]
            }
            None => Vec::new(),
        },
        // The machine is the endpoint: its own checks say it all.
        Mode::SingleNode => Vec::new(),
    }
}

/// Is the listener at the endpoint a `cpe lb`? Its admin listener says so in `/status`.
/// Where to ask: the configured admin address when it is a specific address; the LB's
/// address on the admin port when it listens on the wildcard; a loopback admin address only
/// when the LB is this very machine (it cannot be reached from anywhere else).
async fn is_cpe_lb(ep: &Endpoint, lb_ip: IpAddr, timeout: Duration) -> bool {
    let Some(lb) = &ep.load_balancer else {
        return false;
    };
    let admin = lb.admin;
    let ask = if admin.ip().is_unspecified() {
        Some(SocketAddr::new(lb_ip, admin.port()))
    } else if admin.ip().is_loopback() {
        let here = lb_ip.is_loopback()
            || probe::iface::interfaces().is_ok_and(|i| i.with_addr(lb_ip).is_some());
        here.then_some(admin)
    } else {
        Some(admin)
    };
    let Some(addr) = ask else {
        return false;
    };
    matches!(
        probe::tls::request(addr, None, "GET", "/status", None, timeout).await,
        Http::Status { code: 200, body } if looks_like_cpe_lb(&body, ep.port)
    )
}

/// `cpe lb`'s `/status` says `"kind": "lb"` and the address it listens on: it is a cpe
/// load balancer for this endpoint when that address has the endpoint port.
pub fn looks_like_cpe_lb(body: &str, port: u16) -> bool {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(body) else {
        return false;
    };
    v["kind"] == "lb"
        && v["listen"]
            .as_str()
            .and_then(|l| l.parse::<SocketAddr>().ok())
            .is_some_and(|l| l.port() == port)
}

/// Settings of `cpe check`.
#[derive(Clone, Debug)]
pub struct CheckOpts {
    pub tls: TlsFiles,
    pub timeout: Duration,
}

/// `cpe check`: once the cluster exists, the endpoint answers `/readyz`, each machine's API
/// server answers directly, and the certificates name the endpoint host.
pub async fn check(ep: &Endpoint, opts: &CheckOpts) -> Report {
    let mut report = Report::new("check", ep);
    // `/readyz` goes through cpe-health's prober, the one `cpe lb` uses. It does not verify
    // the certificate (no CA given to it): readiness is one check, the certificate another,
    // so a misnamed certificate shows up once, where it belongs.
    let hc = cpe_config::HealthCheck {
        ca_file: None,
        cert_file: opts.tls.cert.clone(),
        key_file: opts.tls.key.clone(),
        timeout: opts.timeout,
        ..ep.health.clone()
    };
    let prober = cpe_health::Prober::from_config(&hc).map_err(|e| e.to_string());

    // The endpoint and every machine at once, each with its two checks at once: a run
    // costs one timeout at most.
    let endpoint = async {
        let resolved = match &ep.host {
            Host::Ip(ip) => Ok(vec![*ip]),
            Host::Dns(n) => probe::net::resolve(n, ep.port, opts.timeout).await,
        };
        match &resolved {
            Ok(addrs) if !addrs.is_empty() => {
                let addr = SocketAddr::new(addrs[0], ep.port);
                let title = format!("{} answers {}", ep.url_authority(), ep.health.path);
                target_checks(ep, opts, &prober, addr, title, "endpoint").await
            }
            _ => vec![decide::endpoint_resolves(&ep.host, &resolved)],
        }
    };
    let machines = async {
        let mut set = JoinSet::new();
        for (i, m) in ep.machines.iter().enumerate() {
            let (ep, opts, prober, addr) =
                (ep.clone(), opts.clone(), prober.clone(), m.api_server());
            set.spawn(async move {
                let title = format!("{addr} answers {}", ep.health.path);
                let checks = target_checks(&ep, &opts, &prober, addr, title, "machine").await;
                (i, checks)
            });
        }
        let mut per: Vec<(usize, Vec<Check>)> = Vec::new();
        while let Some(Ok(r)) = set.join_next().await {
            per.push(r);
        }
        per.sort_by_key(|(i, _)| *i);
        per
    };
    let (endpoint, machines) = tokio::join!(endpoint, machines);
    report.push(format!("endpoint {}", ep.url_authority()), endpoint);
    for (i, checks) in machines {
        report.push(label(&ep.machines[i]), checks);
    }
    report
}

/// `/readyz` and the certificate at one address (`kind`: `endpoint` or `machine`).
async fn target_checks(
    ep: &Endpoint,
    opts: &CheckOpts,
    prober: &Result<cpe_health::Prober, String>,
    addr: SocketAddr,
    title: String,
    kind: &str,
) -> Vec<Check> {
    let host_text = match &ep.host {
        Host::Ip(ip) => ip.to_string(),
        Host::Dns(n) => n.clone(),
    };
    let (r, cert) = tokio::join!(
        readyz(prober, addr),
        probe::tls::peer_cert(addr, &host_text, &opts.tls, opts.timeout)
    );
    vec![
        decide::readyz(
            &format!("{kind}.readyz"),
            title,
            &ep.health.path,
            &r,
            ep.health.unauthorized,
        ),
        decide::cert_names(&format!("{kind}.certificate"), addr, &ep.host, &cert),
    ]
}

async fn readyz(prober: &Result<cpe_health::Prober, String>, addr: SocketAddr) -> Http {
    match prober {
        Ok(p) => from_observation(&p.probe(addr).await.outcome),
        Err(e) => Http::Other(e.clone()),
    }
}

/// cpe-health's outcome as the fact the decision reads.
pub fn from_observation(o: &cpe_health::Outcome) -> Http {
    use cpe_health::{Failure, Outcome};
    match o {
        Outcome::Ready => Http::Status {
            code: 200,
            body: String::new(),
        },
        Outcome::NotReady { status } | Outcome::Unauthorized { status } => Http::Status {
            code: *status,
            body: String::new(),
        },
        Outcome::Failed(f) => match f {
            Failure::Refused => Http::Connect(Connect::Refused),
            Failure::ConnectTimeout => Http::Connect(Connect::Timeout),
            Failure::Connect(e) => Http::Connect(Connect::Error(e.clone())),
            Failure::Tls(e) => Http::Tls(e.clone()),
            other => Http::Other(other.to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpe_lb_status_is_recognised() {
        let lb = r#"{"kind":"lb","backends":[],"listen":"0.0.0.0:6443"}"#;
        assert!(looks_like_cpe_lb(lb, 6443));
        assert!(!looks_like_cpe_lb(lb, 7443));
        assert!(!looks_like_cpe_lb(
            r#"{"kind":"vip","listen":"0.0.0.0:6443"}"#,
            6443
        ));
        assert!(!looks_like_cpe_lb("<html>", 6443));
    }
}
