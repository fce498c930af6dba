//! What to do with a discovery answer, and which backend set the load balancer runs on:
//! pure functions of the answers, tested here without sockets, files or a clock.
//!
//! - [`judge`]: one source's answer → [`Verdict::Apply`] (a non-empty set, each backend
//!   once) or [`Verdict::Keep`] with the [`Fault`] that keeps the last good set. An empty,
//!   failed, forbidden, unparsable or stalled answer never removes a backend.
//! - [`compose`]: the set to run on from the seeds, the cached set and each source's last
//!   good set, every backend with its [`Origin`]s. Once any source has answered, its sets
//!   (all sources' together) replace the seeds and the cache: after a rolling upgrade no
//!   seed may be left in the set. Before that: the seeds and the cache together, so a
//!   restart with every seed gone still reaches the cached machines.
//!
//! It does not talk to the API or etcd, read or write the cache, or apply a set: the
//! watch loops (`kube.rs`, `etcd.rs`), `cache.rs` and the runner (`mod.rs`) do.

use crate::BackendSpec;
use cpe_config::DiscoverySource as Source;

/// Where a backend of the running set came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// `--backend`.
    Seed,
    /// `controlPlane.machines` of the definition (`-f`).
    File,
    Kubernetes,
    Etcd,
    /// The last good set cached on disk by a previous run.
    Cache,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Seed => "seed",
            Origin::File => "file",
            Origin::Kubernetes => "kubernetes",
            Origin::Etcd => "etcd",
            Origin::Cache => "cache",
        }
    }

    pub fn of(source: Source) -> Origin {
        match source {
            Source::Kubernetes => Origin::Kubernetes,
            Source::Etcd => Origin::Etcd,
        }
    }
}

/// Why an answer was not applied. Each keeps the last good set.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Fault {
    /// No connection, TLS failure, timeout, connection closed.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// 401: the credentials were refused.
    #[error("unauthorized (HTTP 401): the kubeconfig's credentials were refused")]
    Unauthorized,
    /// 403: RBAC does not allow the read.
    #[error("forbidden (HTTP 403): {0}")]
    Forbidden(String),
    /// Another HTTP status.
    #[error("HTTP {status}: {message}")]
    Http { status: u16, message: String },
    /// The answer parsed, but listed no usable backend.
    #[error("empty answer: {0}")]
    Empty(String),
    /// The answer is not what the API promises.
    #[error("unparsable answer: {0}")]
    Unparsable(String),
    /// The watch sent nothing and did not end by its own timeout.
    #[error("watch stalled: nothing received for {0:?} past the watch timeout")]
    Stalled(std::time::Duration),
    /// The source cannot run at all (a kubeconfig that does not parse, bad etcd TLS files).
    #[error("cannot start: {0}")]
    Setup(String),
}

impl Fault {
    /// A short label for metrics (`cpe_lb_discovery_faults{reason=...}`).
    pub fn reason(&self) -> &'static str {
        match self {
            Fault::Unreachable(_) => "unreachable",
            Fault::Unauthorized => "unauthorized",
            Fault::Forbidden(_) => "forbidden",
            Fault::Http { .. } => "http",
            Fault::Empty(_) => "empty",
            Fault::Unparsable(_) => "unparsable",
            Fault::Stalled(_) => "stalled",
            Fault::Setup(_) => "setup",
        }
    }
}

/// What to do with one answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// This source's set is now this (each backend once, in the order answered).
    Apply(Vec<BackendSpec>),
    /// Keep the source's last good set; the fault is shown in `/status` and metrics.
    Keep(Fault),
}

/// Judges one answer of a source.
pub fn judge(answer: Result<Vec<BackendSpec>, Fault>) -> Verdict {
    match answer {
        Err(f) => Verdict::Keep(f),
        Ok(list) => {
            let mut out: Vec<BackendSpec> = Vec::new();
            for b in list {
                if !out.contains(&b) {
                    out.push(b);
                }
            }
            if out.is_empty() {
                Verdict::Keep(Fault::Empty("no ready address".into()))
            } else {
                Verdict::Apply(out)
            }
        }
    }
}

/// One backend of the set to run on, with where it came from (one origin or more).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub spec: BackendSpec,
    pub origins: Vec<Origin>,
}

/// What the set is composed from.
#[derive(Clone, Debug, Default)]
pub struct Inputs<'a> {
    pub seeds: &'a [BackendSpec],
    /// [`Origin::Seed`] or [`Origin::File`].
    pub seed_origin: Option<Origin>,
    /// The cached set read at start (empty: none or unusable).
    pub cache: &'a [BackendSpec],
    /// Each running source's last good set (`None`: no good answer yet).
    pub sources: &'a [(Source, Option<&'a [BackendSpec]>)],
}

/// The set to run on (never empty when the seeds are not).
pub fn compose(i: &Inputs<'_>) -> Vec<Member> {
    let mut out: Vec<Member> = Vec::new();
    let mut add =
        |spec: &BackendSpec, origin: Origin| match out.iter_mut().find(|m| m.spec == *spec) {
            Some(m) if !m.origins.contains(&origin) => m.origins.push(origin),
            Some(_) => {}
            None => out.push(Member {
                spec: spec.clone(),
                origins: vec![origin],
            }),
        };
    let discovered: Vec<_> = i
        .sources
        .iter()
        .filter_map(|(s, set)| set.map(|set| (*s, set)))
        .collect();
    if discovered.is_empty() {
        for s in i.seeds {
            add(s, i.seed_origin.unwrap_or(Origin::Seed));
        }
        for s in i.cache {
            add(s, Origin::Cache);
        }
    } else {
        for (source, set) in discovered {
            for s in set {
                add(s, Origin::of(source));
            }
        }
    }
    out
}

/// Whether two sets are the same members with the same origins (order aside).
pub fn same(a: &[Member], b: &[Member]) -> bool {
    a.len() == b.len() && a.iter().all(|m| b.contains(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs(list: &[&str]) -> Vec<BackendSpec> {
        list.iter()
            .map(|s| BackendSpec::parse(s).unwrap())
            .collect()
    }

    #[test]
    fn an_empty_or_failed_answer_keeps_the_last_good_set() {
        assert_eq!(
            judge(Ok(vec![])),
            Verdict::Keep(Fault::Empty("no ready address".into()))
        );
        for f in [
            Fault::Unreachable("connection refused".into()),
            Fault::Forbidden("endpointslices is forbidden".into()),
            Fault::Unauthorized,
            Fault::Unparsable("expected value at line 1".into()),
            Fault::Stalled(std::time::Duration::from_secs(3)),
        ] {
            assert_eq!(judge(Err(f.clone())), Verdict::Keep(f));
        }
    }

    #[test]
    fn an_answer_is_applied_each_backend_once() {
        let v = judge(Ok(specs(&[
            "10.0.0.1:6443",
            "10.0.0.2:6443",
            "10.0.0.1:6443",
        ])));
        assert_eq!(
            v,
            Verdict::Apply(specs(&["10.0.0.1:6443", "10.0.0.2:6443"]))
        );
    }

    #[test]
    fn before_any_answer_the_seeds_and_the_cache_together() {
        let seeds = specs(&["10.0.0.1:6443"]);
        let cache = specs(&["10.0.0.4:6443", "10.0.0.1:6443"]);
        let srcs = [(Source::Kubernetes, None)];
        let set = compose(&Inputs {
            seeds: &seeds,
            seed_origin: Some(Origin::Seed),
            cache: &cache,
            sources: &srcs,
        });
        assert_eq!(
            set,
            vec![
                Member {
                    spec: seeds[0].clone(),
                    origins: vec![Origin::Seed, Origin::Cache]
                },
                Member {
                    spec: cache[0].clone(),
                    origins: vec![Origin::Cache]
                },
            ]
        );
    }

    #[test]
    fn an_answer_replaces_seeds_and_cache_and_sources_are_joined() {
        let seeds = specs(&["10.0.0.1:6443"]);
        let cache = specs(&["10.0.0.9:6443"]);
        let k = specs(&["10.0.0.2:6443", "10.0.0.3:6443"]);
        let e = specs(&["10.0.0.3:6443", "10.0.0.4:6443"]);
        let srcs = [
            (Source::Kubernetes, Some(&k[..])),
            (Source::Etcd, Some(&e[..])),
        ];
        let set = compose(&Inputs {
            seeds: &seeds,
            seed_origin: Some(Origin::File),
            cache: &cache,
            sources: &srcs,
        });
        let names: Vec<_> = set
            .iter()
            .map(|m| (m.spec.to_string(), m.origins.clone()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("10.0.0.2:6443".into(), vec![Origin::Kubernetes]),
                (
                    "10.0.0.3:6443".into(),
                    vec![Origin::Kubernetes, Origin::Etcd]
                ),
                ("10.0.0.4:6443".into(), vec![Origin::Etcd]),
            ]
        );
        // One source that has not answered yet does not bring the seeds back.
        let srcs = [(Source::Kubernetes, Some(&k[..])), (Source::Etcd, None)];
        let set = compose(&Inputs {
            seeds: &seeds,
            seed_origin: None,
            cache: &cache,
            sources: &srcs,
        });
        assert_eq!(set.len(), 2);
        assert!(set.iter().all(|m| m.origins == [Origin::Kubernetes]));
    }

    #[test]
    fn same_ignores_order_but_not_origins() {
        let a = Member {
            spec: specs(&["10.0.0.1:6443"])[0].clone(),
            origins: vec![Origin::Seed],
        };
        let b = Member {
            spec: specs(&["10.0.0.2:6443"])[0].clone(),
            origins: vec![Origin::Kubernetes],
        };
        assert!(same(&[a.clone(), b.clone()], &[b.clone(), a.clone()]));
        let a2 = Member {
            origins: vec![Origin::Kubernetes],
            ..a.clone()
        };
        assert!(!same(&[a, b.clone()], &[a2, b]));
    }
}
