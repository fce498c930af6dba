//! `cpe version`: what this binary is — version, git revision, build date, compiler,
//! target and TLS provider — for bug reports and for checking what a node runs. The facts
//! come from `build.rs` at compile time; nothing is looked up at run time. (`cpe --version`
//! stays clap's one-line version.)

use std::process::ExitCode;

/// The build facts, fixed at compile time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Build {
    pub version: &'static str,
    pub revision: &'static str,
    pub build_date: &'static str,
    pub rustc: &'static str,
    pub target: &'static str,
    /// The only rustls provider compiled in (aws-lc-rs is kept out of the tree).
    pub tls_provider: &'static str,
}

pub const BUILD: Build = Build {
    version: env!("CARGO_PKG_VERSION"),
    revision: env!("CPE_GIT_REVISION"),
    build_date: env!("CPE_BUILD_DATE"),
    rustc: env!("CPE_RUSTC_VERSION"),
    target: env!("CPE_TARGET"),
    tls_provider: "rustls (ring)",
};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.json {
        println!("{}", serde_json::to_string_pretty(&BUILD)?);
    } else {
        print!("{}", text(&BUILD));
    }
    Ok(ExitCode::SUCCESS)
}

fn text(b: &Build) -> String {
    format!(
        "cpe {}\nrevision:     {}\nbuild date:   {}\nrustc:        {}\ntarget:       {}\nTLS provider: {}\n",
        b.version, b.revision, b.build_date, b.rustc, b.target, b.tls_provider
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_every_fact() {
        let t = text(&BUILD);
        for (k, v) in [
            ("cpe ", BUILD.version),
            ("revision:", BUILD.revision),
            ("build date:", BUILD.build_date),
            ("rustc:", BUILD.rustc),
            ("TLS provider:", "ring"),
        ] {
            assert!(
                t.lines().any(|l| l.starts_with(k) && l.contains(v)),
                "{k} {v}\n{t}"
            );
        }
        assert!(!BUILD.revision.is_empty() && !BUILD.rustc.is_empty());
    }
}
