//! `cpe demo`.

use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct Args {}

pub async fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("cpe demo is not built yet")
}
