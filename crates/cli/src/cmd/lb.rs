//! `cpe lb`.

use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct Args {}

pub async fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("cpe lb is not built yet")
}
