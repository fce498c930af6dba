//! `loadBalancer.discovery` and the `cpe lb` discovery flags (`--discover`,
//! `--kubeconfig`, `--etcd`, `--etcd-ca/--etcd-cert/--etcd-key`, `--cache-dir`): which
//! sources a load balancer learns its backends from at run time, and what each needs.
//!
//! One rule set for the file and the flags: a source is `kubernetes` or `etcd`; the
//! `kubernetes` source needs a kubeconfig (one file, not a `KUBECONFIG` list); the `etcd`
//! source needs endpoints (`etcd.endpoints`, or every machine's `https://ADDRESS:2379` in a
//! file; `--etcd` with flags) and, for `https://` endpoints, a client certificate and key.
//! In virtual-ip mode with `loadBalance: true` the same section and flags configure the
//! in-agent load balancer (`cpe vip --load-balance`); its `etcd` source is the agent's own
//! etcd (endpoints and TLS of the election), so the etcd rules here are the agent's
//! ([`crate::vip_lb`] fills them in), and its cache file is `vip-lb-PORT.json`.
//!
//! Pure: no file is read, no variable looked up (the CLI hands `KUBECONFIG` over).

use super::*;
use crate::flags;
use crate::tls::TlsFiles;

/// Where `cpe lb` keeps its last good backend set by default.
pub const DEFAULT_CACHE_DIR: &str = "/var/lib/cpe";
/// The API server port of backends learned from etcd when nothing says otherwise.
pub const DEFAULT_API_PORT: u16 = 6443;
/// The cache file's name before `-PORT.json`: `cpe lb`'s.
pub const LB_CACHE_PREFIX: &str = "lb";
/// The cache file's name before `-PORT.json` for the load balancer inside `cpe vip`, so
/// that a `cpe lb` and a `cpe vip --load-balance` on one machine never share a file even
/// when they listen on the same port number (on different addresses).
pub const VIP_LB_CACHE_PREFIX: &str = "vip-lb";

/// A discovery source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The `kubernetes` EndpointSlices (or Endpoints) in `default`.
    Kubernetes,
    /// The etcd member list: each member's client-URL host at the API server port.
    Etcd,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Kubernetes => "kubernetes",
            Source::Etcd => "etcd",
        }
    }

    pub fn parse(s: &str) -> Option<Source> {
        match s {
            "kubernetes" => Some(Source::Kubernetes),
            "etcd" => Some(Source::Etcd),
            _ => None,
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What discovery runs with, resolved (at least one source).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Discovery {
    /// Each source once, in the order given.
    pub sources: Vec<Source>,
    /// The kubeconfig of the `kubernetes` source (set when it is listed).
    pub kubeconfig: Option<PathBuf>,
    /// etcd client URLs of the `etcd` source (non-empty when it is listed).
    pub etcd: Vec<String>,
    pub etcd_tls: TlsFiles,
    /// Where the last good set is cached (`PREFIX-PORT.json` inside).
    pub cache_dir: PathBuf,
    /// The cache file's prefix: [`LB_CACHE_PREFIX`] or [`VIP_LB_CACHE_PREFIX`].
    pub cache_prefix: &'static str,
    /// The port of backends learned from etcd (the API server port).
    pub api_port: u16,
}

impl Discovery {
    pub fn has(&self, s: Source) -> bool {
        self.sources.contains(&s)
    }
}

/// The file's `loadBalancer.discovery` (with the `etcd` section for the etcd source).
/// `agent_etcd`: the in-agent load balancer of `cpe vip`, whose etcd source uses the
/// agent's etcd (left empty here, no etcd rule of this section applies).
pub(crate) fn check_file(
    c: &mut Check,
    f: &input::File,
    machines: &[SocketAddr],
    port: u16,
    agent_etcd: bool,
) -> Option<Discovery> {
    let d = f.load_balancer.as_ref()?.discovery.as_ref()?;
    let mut sources = Vec::new();
    // Where `etcd` was written, for the problems about it.
    let mut etcd_at = 0;
    match &d.sources {
        None => c.push(
            Problem::error("loadBalancer.discovery.sources", "", "is required")
                .at(d.pos)
                .hint("list kubernetes, etcd or both, e.g. sources: [kubernetes]"),
        ),
        Some(list) if list.value.is_empty() => c.push(
            Problem::error(
                "loadBalancer.discovery.sources",
                "",
                "must list at least one source",
            )
            .at(list.pos)
            .hint("kubernetes, etcd; or leave loadBalancer.discovery out"),
        ),
        Some(list) => {
            for (i, s) in list.value.iter().enumerate() {
                if s.value == "etcd" {
                    etcd_at = i;
                }
                match Source::parse(&s.value) {
                    Some(src) if !sources.contains(&src) => sources.push(src),
                    Some(_) => {}
                    None => c.error(
                        format!("loadBalancer.discovery.sources[{i}]"),
                        s,
                        "must be kubernetes or etcd",
                    ),
                }
            }
        }
    }
    let kubeconfig = c.path("loadBalancer.discovery.kubeconfig", &d.kubeconfig);
    if sources.contains(&Source::Kubernetes) && kubeconfig.is_none() && d.kubeconfig.is_none() {
        c.push(
            Problem::error(
                "loadBalancer.discovery.kubeconfig",
                "",
                "is required with the kubernetes source",
            )
            .at(d.pos)
            .hint("a kubeconfig for the ServiceAccount of `cpe render --kind rbac`"),
        );
    }
    let cache_dir = c
        .path("loadBalancer.discovery.cacheDir", &d.cache_dir)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CACHE_DIR));
    let e = f.etcd.as_ref();
    let mut etcd: Vec<String> = e
        .and_then(|e| e.endpoints.as_ref())
        .map(|l| {
            l.value
                .iter()
                .filter(|s| is_etcd_url(&s.value))
                .map(|s| s.value.clone())
                .collect()
        })
        .unwrap_or_default();
    if agent_etcd {
        etcd.clear();
    } else if etcd.is_empty() {
        etcd = machines
            .iter()
            .map(|a| format!("https://{}", SocketAddr::new(a.ip(), ETCD_CLIENT_PORT)))
            .collect();
    }
    let path = |v: Option<&S<String>>| v.map(|s| PathBuf::from(&s.value));
    let etcd_tls = TlsFiles::new(
        path(e.and_then(|e| e.ca_file.as_ref())),
        path(e.and_then(|e| e.cert_file.as_ref())),
        path(e.and_then(|e| e.key_file.as_ref())),
    );
    if sources.contains(&Source::Etcd) && !agent_etcd {
        let i = etcd_at;
        let https = etcd.iter().any(|u| u.starts_with("https://"));
        if https && etcd_tls.ca.is_none() {
            c.push(
                Problem::error(
                    format!("loadBalancer.discovery.sources[{i}]"),
                    "etcd",
                    "needs etcd.caFile (the CA of the etcd members' certificates)",
                )
                .at(d.pos)
                .hint("kubeadm's /etc/kubernetes/pki/etcd/ca.crt"),
            );
        }
        if https && (etcd_tls.cert.is_none() || etcd_tls.key.is_none()) {
            c.push(
                Problem::error(
                    format!("loadBalancer.discovery.sources[{i}]"),
                    "etcd",
                    "needs etcd.certFile and etcd.keyFile (a client certificate of the etcd CA)",
                )
                .at(d.pos)
                .hint("kubeadm's /etc/kubernetes/pki/apiserver-etcd-client.crt and .key"),
            );
        }
    }
    if sources.is_empty() {
        return None;
    }
    Some(Discovery {
        sources,
        kubeconfig,
        etcd,
        etcd_tls: if agent_etcd {
            TlsFiles::default()
        } else {
            etcd_tls
        },
        cache_dir,
        cache_prefix: if agent_etcd {
            VIP_LB_CACHE_PREFIX
        } else {
            LB_CACHE_PREFIX
        },
        api_port: machines.first().map_or(port, |a| a.port()),
    })
}

/// The discovery flags as typed (part of [`crate::LbFlags`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DiscoveryFlags {
    /// `--discover kubernetes|etcd`, repeatable.
    pub discover: Vec<String>,
    /// `--kubeconfig FILE`.
    pub kubeconfig: Option<PathBuf>,
    /// The `KUBECONFIG` variable, used when `--kubeconfig` is not given.
    pub kubeconfig_env: Option<String>,
    /// `--etcd URL`, repeatable (or comma-separated).
    pub etcd: Vec<String>,
    pub etcd_ca: Option<PathBuf>,
    pub etcd_cert: Option<PathBuf>,
    pub etcd_key: Option<PathBuf>,
    /// `--cache-dir DIR`.
    pub cache_dir: Option<PathBuf>,
}

impl DiscoveryFlags {
    fn given(&self) -> bool {
        !self.discover.is_empty()
            || self.kubeconfig.is_some()
            || !self.etcd.is_empty()
            || self.etcd_ca.is_some()
            || self.etcd_cert.is_some()
            || self.etcd_key.is_some()
            || self.cache_dir.is_some()
    }
}

/// Lays the flags over the definition's discovery (`base`); `api_port` is the port of
/// backends learned from etcd when the definition does not say (the first seed's).
pub(crate) fn overlay(
    c: &mut Check,
    base: Option<Discovery>,
    f: &DiscoveryFlags,
    api_port: u16,
) -> Option<Discovery> {
    if !f.given() {
        return base;
    }
    let mut d = base.unwrap_or(Discovery {
        sources: Vec::new(),
        kubeconfig: None,
        etcd: Vec::new(),
        etcd_tls: TlsFiles::default(),
        cache_dir: PathBuf::from(DEFAULT_CACHE_DIR),
        cache_prefix: LB_CACHE_PREFIX,
        api_port,
    });
    if !f.discover.is_empty() {
        d.sources.clear();
        for s in &f.discover {
            match Source::parse(s) {
                Some(src) if !d.sources.contains(&src) => d.sources.push(src),
                Some(_) => {}
                None => c.push(Problem::error(
                    "--discover",
                    short(s),
                    "must be kubernetes or etcd",
                )),
            }
        }
    }
    let named = |flag: &str| -> Problem {
        Problem::error(flag, "", "is used only with --discover")
            .hint("add --discover kubernetes or --discover etcd")
    };
    if d.sources.is_empty() {
        for (flag, set) in [
            ("--kubeconfig", f.kubeconfig.is_some()),
            ("--etcd", !f.etcd.is_empty()),
            ("--cache-dir", f.cache_dir.is_some()),
        ] {
            if set {
                c.push(named(flag));
            }
        }
        return None;
    }
    if let Some(k) = &f.kubeconfig {
        d.kubeconfig = flags::path(c, "--kubeconfig", &Some(k.clone()));
    }
    if d.has(Source::Kubernetes) && d.kubeconfig.is_none() {
        match f.kubeconfig_env.as_deref().filter(|v| !v.is_empty()) {
            Some(list) if list.contains(':') => c.push(
                Problem::error(
                    "KUBECONFIG",
                    short(list),
                    "is a list of files; discovery reads one kubeconfig",
                )
                .hint("give the file with --kubeconfig FILE"),
            ),
            Some(one) => d.kubeconfig = Some(PathBuf::from(one)),
            None => c.push(
                Problem::error("--kubeconfig", "", "is required with --discover kubernetes")
                    .hint("or set KUBECONFIG; a kubeconfig for the ServiceAccount of `cpe render --kind rbac`"),
            ),
        }
    }
    if !f.etcd.is_empty() {
        d.etcd.clear();
        for u in f.etcd.iter().flat_map(|u| u.split(',')) {
            let u = u.trim();
            if is_etcd_url(u) {
                if !d.etcd.iter().any(|e| e == u) {
                    d.etcd.push(u.to_string());
                }
            } else {
                c.push(
                    Problem::error(
                        "--etcd",
                        short(u),
                        "must be an http:// or https:// URL with a host and a port",
                    )
                    .hint("e.g. https://10.0.0.11:2379"),
                );
            }
        }
    }
    flags::pair(
        c,
        ("--etcd-cert", &f.etcd_cert),
        ("--etcd-key", &f.etcd_key),
    );
    if f.etcd_ca.is_some() {
        d.etcd_tls.ca = flags::path(c, "--etcd-ca", &f.etcd_ca);
    }
    if f.etcd_cert.is_some() && f.etcd_key.is_some() {
        d.etcd_tls.cert = flags::path(c, "--etcd-cert", &f.etcd_cert);
        d.etcd_tls.key = flags::path(c, "--etcd-key", &f.etcd_key);
    }
    if d.has(Source::Etcd) {
        if d.etcd.is_empty() && f.etcd.is_empty() {
            c.push(
                Problem::error("--etcd", "", "is required with --discover etcd")
                    .hint("e.g. --etcd https://10.0.0.11:2379 --etcd-ca ... --etcd-cert ... --etcd-key ..."),
            );
        }
        let https = d.etcd.iter().any(|u| u.starts_with("https://"));
        if https && d.etcd_tls.ca.is_none() && f.etcd_ca.is_none() {
            c.push(
                Problem::error(
                    "--etcd-ca",
                    "",
                    "is required with --discover etcd and https:// endpoints",
                )
                .hint("the CA of the etcd members' certificates, e.g. /etc/kubernetes/pki/etcd/ca.crt"),
            );
        }
        if https
            && (d.etcd_tls.cert.is_none() || d.etcd_tls.key.is_none())
            && f.etcd_cert.is_none()
            && f.etcd_key.is_none()
        {
            c.push(
                Problem::error(
                    "--etcd-cert",
                    "",
                    "is required with --discover etcd and https:// endpoints (with --etcd-key)",
                )
                .hint("kubeadm's /etc/kubernetes/pki/apiserver-etcd-client.crt and .key"),
            );
        }
    } else if !f.etcd.is_empty() {
        c.push(named("--etcd"));
    }
    if !d.has(Source::Kubernetes) && f.kubeconfig.is_some() {
        c.push(named("--kubeconfig"));
    }
    if let Some(dir) = &f.cache_dir {
        if let Some(p) = flags::path(c, "--cache-dir", &Some(dir.clone())) {
            d.cache_dir = p;
        }
    }
    Some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> (Option<crate::Endpoint>, Vec<Problem>) {
        let c = crate::check_str(text);
        (c.endpoint, c.problems)
    }

    const LB: &str = "cluster: c\nendpoint: {host: lb.example, port: 6443}\nmode: external-lb\ncontrolPlane:\n  replicas: 3\n  machines:\n  - {name: cp1, address: 10.0.0.11}\n  - {name: cp2, address: 10.0.0.12}\n  - {name: cp3, address: 10.0.0.13}\n";

    #[test]
    fn the_definition_says_where_backends_come_from() {
        let (e, ps) = file(&format!(
            "{LB}loadBalancer:\n  discovery:\n    sources: [kubernetes, etcd]\n    kubeconfig: /etc/cpe/lb.kubeconfig\netcd:\n  caFile: /ca\n  certFile: /c\n  keyFile: /k\n"
        ));
        assert!(
            ps.iter().all(|p| p.severity != crate::Severity::Error),
            "{ps:?}"
        );
        let d = e.unwrap().load_balancer.unwrap().discovery.unwrap();
        assert_eq!(d.sources, [Source::Kubernetes, Source::Etcd]);
        assert_eq!(
            d.etcd[0], "https://10.0.0.11:2379",
            "every machine's member by default"
        );
        assert_eq!(d.cache_dir, PathBuf::from(DEFAULT_CACHE_DIR));
        assert_eq!(d.api_port, 6443);
    }

    #[test]
    fn definition_problems_name_the_field_and_line() {
        let (_, ps) = file(&format!(
            "{LB}loadBalancer:\n  discovery:\n    sources: [dns, etcd]\n    cacheDir: /var/lib/cpe\n"
        ));
        let fields: Vec<_> = ps.iter().map(|p| p.field.as_str()).collect();
        assert!(
            fields.contains(&"loadBalancer.discovery.sources[0]"),
            "{ps:?}"
        );
        assert!(
            fields.contains(&"loadBalancer.discovery.sources[1]"),
            "etcd without certificates: {ps:?}"
        );
        let (_, ps) = file(&format!(
            "{LB}loadBalancer:\n  discovery:\n    sources: [kubernetes]\n    typo: 1\n"
        ));
        let fields: Vec<_> = ps.iter().map(|p| p.field.as_str()).collect();
        assert!(
            fields.contains(&"loadBalancer.discovery.kubeconfig"),
            "{ps:?}"
        );
        assert!(fields.contains(&"loadBalancer.discovery.typo"), "{ps:?}");
        assert!(ps.iter().all(|p| p.pos.is_some()), "{ps:?}");
    }

    fn run(f: &DiscoveryFlags) -> (Option<Discovery>, Vec<Problem>) {
        let mut c = Check::default();
        let d = overlay(&mut c, None, f, 6443);
        (d, c.problems)
    }

    #[test]
    fn no_flags_no_discovery() {
        assert_eq!(run(&DiscoveryFlags::default()), (None, vec![]));
    }

    #[test]
    fn kubernetes_takes_the_flag_then_the_variable() {
        let f = DiscoveryFlags {
            discover: vec!["kubernetes".into()],
            kubeconfig_env: Some("/etc/k.conf".into()),
            ..Default::default()
        };
        let (d, ps) = run(&f);
        assert!(ps.is_empty(), "{ps:?}");
        let d = d.unwrap();
        assert_eq!(d.kubeconfig, Some(PathBuf::from("/etc/k.conf")));
        assert_eq!(d.cache_dir, PathBuf::from(DEFAULT_CACHE_DIR));
        let f = DiscoveryFlags {
            kubeconfig: Some("/x".into()),
            cache_dir: Some("/tmp/c".into()),
            ..f
        };
        let d = run(&f).0.unwrap();
        assert_eq!(d.kubeconfig, Some(PathBuf::from("/x")));
        assert_eq!(d.cache_dir, PathBuf::from("/tmp/c"));
    }

    #[test]
    fn each_problem_names_the_flag() {
        let (_, ps) = run(&DiscoveryFlags {
            discover: vec!["dns".into()],
            ..Default::default()
        });
        assert_eq!(ps[0].field, "--discover");
        assert!(ps[0].rule.contains("kubernetes or etcd"));
        let (_, ps) = run(&DiscoveryFlags {
            discover: vec!["kubernetes".into()],
            ..Default::default()
        });
        assert_eq!(ps[0].field, "--kubeconfig");
        let (_, ps) = run(&DiscoveryFlags {
            discover: vec!["kubernetes".into()],
            kubeconfig_env: Some("/a:/b".into()),
            ..Default::default()
        });
        assert_eq!(ps[0].field, "KUBECONFIG");
        let (_, ps) = run(&DiscoveryFlags {
            discover: vec!["etcd".into()],
            etcd: vec!["https://10.0.0.1:2379".into()],
            ..Default::default()
        });
        assert_eq!(ps[0].field, "--etcd-ca");
        assert_eq!(ps[1].field, "--etcd-cert");
        let (_, ps) = run(&DiscoveryFlags {
            etcd: vec!["10.0.0.1".into()],
            discover: vec!["etcd".into()],
            ..Default::default()
        });
        assert_eq!(ps[0].field, "--etcd");
        let (_, ps) = run(&DiscoveryFlags {
            cache_dir: Some("/c".into()),
            ..Default::default()
        });
        assert_eq!(ps[0].field, "--cache-dir");
        assert!(ps[0].rule.contains("only with --discover"));
    }

    #[test]
    fn etcd_over_http_needs_no_certificate() {
        let (d, ps) = run(&DiscoveryFlags {
            discover: vec!["etcd".into(), "etcd".into()],
            etcd: vec!["http://127.0.0.1:2379,http://127.0.0.2:2379".into()],
            ..Default::default()
        });
        assert!(ps.is_empty(), "{ps:?}");
        let d = d.unwrap();
        assert_eq!(d.sources, [Source::Etcd]);
        assert_eq!(d.etcd.len(), 2);
        assert_eq!(d.api_port, 6443);
    }
}
