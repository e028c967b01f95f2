//! What the commands that may sweep many windows (`ask`, `audit`) share:
//! `--dry-run`, `--max-windows` and the plan a dry run prints.

use std::io::Write;

use anyhow::Result;
use clap::Args;

use crate::report;
use crate::tasks::sweep::SweepPlan;

#[derive(Debug, Args, Clone, Copy)]
pub(super) struct SweepArgs {
    /// Print the plan (windows, prompt tokens, what the KV cache holds, how the calls go
    /// out, a time estimate from the last run of this model and engine) and stop: no
    /// model call. With --json, the plan as JSON.
    #[arg(long)]
    pub(super) dry_run: bool,
    /// Refuse a sweep of more windows than this (for extract: documents or pages), with
    /// its plan, before any model call (exit 2): a guard against a sweep of hours over a
    /// corpus larger than meant.
    #[arg(long, value_name = "N")]
    pub(super) max_windows: Option<usize>,
}

/// A dry run's plan on stdout: as text, or as `{"plan": ...}` with `json`.
pub(super) fn print_plan(plan: &SweepPlan, json: bool) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "plan": plan }))?
        )?;
    } else {
        writeln!(out, "{}", report::sweep::sweep_text(plan))?;
    }
    Ok(())
}
