//! `scout bench`: measurements on real data.
//!
//! Never touches the repository it measures.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use super::say;
use crate::engine::open::ModelArgs;
use crate::report;

#[derive(Debug, Subcommand)]
pub(super) enum BenchCommand {
    /// Replay a git repository's last commits and print, for each, the share of the
    /// corpus's prompt tokens before the first changed document (what a KV cache can
    /// keep), in path order and in scout's order (least recently changed first).
    PrefixStability(StabilityArgs),
}

#[derive(Debug, Args)]
pub(super) struct StabilityArgs {
    /// The repository (its history is read; its working tree is left alone: the
    /// commits are checked out in a scratch worktree).
    #[arg(long, value_name = "PATH")]
    pub(super) repo: PathBuf,
    /// How many of the latest commits (first parents) to replay.
    #[arg(long, default_value_t = 20)]
    pub(super) commits: usize,
    /// Print the report as JSON.
    #[arg(long)]
    pub(super) json: bool,
    #[command(flatten)]
    pub(super) model: ModelArgs,
}

pub(super) fn run_stability(a: &StabilityArgs) -> Result<i32> {
    let (tokenizer, _) = a.model.tokenizer(&mut say(false))?;
    let scratch = tempfile::tempdir().context("making a scratch folder")?;
    let mut out = std::io::stdout().lock();
    if !a.json {
        writeln!(
            out,
            "{:<14} {:>8} {:>12} {:>11} {:>12}",
            "commit", "changed", "tokens", "path order", "scout order"
        )?;
    }
    let report =
        crate::tasks::stability::prefix_stability(&a.repo, a.commits, scratch.path(), tokenizer.as_ref(), &mut |c| {
            if !a.json {
                // A closed stdout shows at the next write below.
                let _ = writeln!(
                    out,
                    "{:<14} {:>8} {:>12} {:>10.1}% {:>11.1}%",
                    c.commit,
                    c.changed_documents,
                    report::thousands(c.total_tokens),
                    c.path_order * 100.0,
                    c.scout_order * 100.0
                );
            }
        })?;
    if a.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        writeln!(
            out,
            "median over {} commits: path order {:.1}%, scout's order {:.1}% of the prompt's tokens survive",
            report.commits.len(),
            report.median_path_order * 100.0,
            report.median_scout_order * 100.0
        )?;
    }
    Ok(0)
}
