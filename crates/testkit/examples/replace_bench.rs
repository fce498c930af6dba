//! The rolling replacement (issue 10) as a benchmark: three machines with real etcd and
//! kube-apiserver replaced one by one by machines with new names and addresses, through
//! `cpe lb --discover kubernetes` (seeded with the first machine only) and, in a fresh
//! testbed of the same shape, through HAProxy with the static list of the original three
//! (it cannot follow the replacement). Prints, per load balancer: failed `/version`
//! requests (one every 50 ms, fresh connections), failed `kubectl get --raw /readyz`, and
//! per new machine the time from its API server's first `/readyz` 200 to the LB's first
//! proxied connection to it. `bench/replace.sh` calls it.
//!
//! Usage: replace_bench --cpe PATH [--lbs cpe,haproxy]

use anyhow::{bail, Context, Result};
use cpe_testkit::kube::{replace, ApiOptions, KubeBed, API_PORT};
use std::path::PathBuf;

fn main() -> Result<()> {
    let mut cpe: Option<PathBuf> = None;
    let mut lbs = vec!["cpe".to_string(), "haproxy".to_string()];
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--cpe" => cpe = Some(val()?.into()),
            "--lbs" => lbs = val()?.split(',').map(String::from).collect(),
            other => bail!(
                "unknown argument {other:?} (usage: replace_bench --cpe PATH [--lbs cpe,haproxy])"
            ),
        }
    }
    let cpe = cpe.context("--cpe PATH is required")?;
    for lb in &lbs {
        let mut bed = KubeBed::start("kbbench", &["cp-a", "cp-b", "cp-c"], ApiOptions::default())?;
        bed.apply_discovery_rbac()?;
        let (child, admin) = match lb.as_str() {
            "cpe" => {
                let cache = bed.dir().join("lb-cache");
                std::fs::create_dir_all(&cache)?;
                let seed = bed.api_addr("cp-a")?;
                let c = replace::start_cpe_lb(&bed, &cpe, &[seed], &cache, &[], "lb")?;
                // Let discovery find the other two before the replacement starts.
                std::thread::sleep(std::time::Duration::from_secs(3));
                (c, Some(replace::LB_ADMIN.parse()?))
            }
            "haproxy" => {
                let all: Vec<String> = bed
                    .addrs()
                    .iter()
                    .map(|a| format!("{a}:{API_PORT}"))
                    .collect();
                (replace::start_haproxy(&bed, &all)?, None)
            }
            other => bail!("--lbs: unknown load balancer {other:?} (cpe, haproxy)"),
        };
        let out = replace::rolling_replacement(&mut bed, &["cp-d", "cp-e", "cp-f"], admin)?;
        let label = match lb.as_str() {
            "cpe" => "cpe lb --discover kubernetes",
            _ => "haproxy (static list)",
        };
        print!("{}", out.summary(label));
        drop(child);
    }
    Ok(())
}
