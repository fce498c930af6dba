//! `cpe preflight`.

use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct Args {}

pub async fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("cpe preflight is not built yet")
}
