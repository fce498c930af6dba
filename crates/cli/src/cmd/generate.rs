//! `cpe generate completions|man DIR` (hidden): writes shell completions (bash, zsh, fish)
//! and man pages (one per subcommand) generated from the CLI definition itself, so they
//! always match the binary that wrote them. The release script runs it; operators get the
//! results in the release tarball. It writes files only into DIR and prints what it wrote.

use anyhow::Context;
use clap_complete::Shell;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub what: What,
}

#[derive(clap::Subcommand, Debug)]
pub enum What {
    /// Shell completions: DIR/cpe.bash, DIR/_cpe (zsh), DIR/cpe.fish.
    Completions {
        /// Directory to write into (created if missing).
        dir: PathBuf,
    },
    /// Man pages: DIR/cpe.1 and DIR/cpe-<subcommand>.1 for every visible subcommand.
    Man {
        /// Directory to write into (created if missing).
        dir: PathBuf,
    },
}

/// `command` is the whole CLI (`Cli::command()`), passed in so this module does not
/// depend on `main.rs`.
pub fn run(args: Args, command: clap::Command) -> anyhow::Result<ExitCode> {
    let written = match args.what {
        What::Completions { dir } => completions(command, &dir)?,
        What::Man { dir } => man(command, &dir)?,
    };
    for p in written {
        println!("{}", p.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes the bash, zsh and fish completions; returns the files written.
pub fn completions(mut command: clap::Command, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut out = Vec::new();
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let p = clap_complete::generate_to(shell, &mut command, "cpe", dir)
            .with_context(|| format!("writing {shell} completions into {}", dir.display()))?;
        out.push(p);
    }
    Ok(out)
}

/// Writes `cpe.1` and one page per visible subcommand (`cpe-render.1`, ...); returns them.
pub fn man(command: clap::Command, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut command = command;
    command.build();
    let mut out = Vec::new();
    write_page(&command, "cpe", dir, &mut out)?;
    // clap's own `help` subcommand needs no page of its own.
    for sub in command
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let name = format!("cpe-{}", sub.get_name());
        let page = sub.clone().display_name(name.clone());
        write_page(&page, &name, dir, &mut out)?;
    }
    Ok(out)
}

fn write_page(
    command: &clap::Command,
    name: &str,
    dir: &Path,
    out: &mut Vec<PathBuf>,
) -> anyhow::Result<()> {
    let path = dir.join(format!("{name}.1"));
    let mut buf = Vec::new();
    clap_mangen::Man::new(command.clone())
        .render(&mut buf)
        .with_context(|| format!("rendering {name}.1"))?;
    std::fs::write(&path, buf).with_context(|| format!("writing {}", path.display()))?;
    out.push(path);
    Ok(())
}
