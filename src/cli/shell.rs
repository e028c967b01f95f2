//! What a shell and `man` need: completion scripts and manual pages, both
//! generated from the clap definitions, so they never drift from `--help`.
//!
//! In: the `Cli` command tree. Out: a completion script on stdout, or man
//! pages (one per command) on stdout or in a folder.
//! Never: reads a corpus, a model or the network.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, CommandFactory};

use super::Cli;

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write `scout.1` and one page per command (`scout-ask.1`, ...) into this
    /// folder instead of printing `scout.1`.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

/// Prints the completion script for one shell.
pub fn run_completions(a: &CompletionsArgs) -> Result<i32> {
    let mut cmd = Cli::command();
    let mut out = std::io::stdout().lock();
    clap_complete::generate(a.shell, &mut cmd, "scout", &mut out);
    out.flush()?;
    Ok(0)
}

/// Prints `scout.1`, or writes every page into a folder.
pub fn run_man(a: &ManArgs) -> Result<i32> {
    let cmd = Cli::command();
    if let Some(dir) = &a.out {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        clap_mangen::generate_to(cmd, dir).with_context(|| format!("writing man pages into {}", dir.display()))?;
        let pages = std::fs::read_dir(dir)?
            .filter(|e| e.as_ref().is_ok_and(|e| e.path().extension().is_some_and(|x| x == "1")))
            .count();
        eprintln!("scout: {pages} man pages in {}", dir.display());
    } else {
        let mut out = std::io::stdout().lock();
        clap_mangen::Man::new(cmd).render(&mut out)?;
        out.flush()?;
    }
    Ok(0)
}
