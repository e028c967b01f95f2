//! `scout audit`: a pipeline's rules over a repository, with reports as
//! JSON, SARIF, Markdown and HTML, and `--fail-on`.
//!
//! Never fails a run (--fail-on) on an unverified finding.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;

use super::{open_sources, say, show_progress, Progress, TaskArgs};
use crate::engine::GenerateParams;
use crate::report;
use crate::tasks::access::Access;
use crate::tasks::audit::{audit, AuditOptions};
use crate::tasks::pipeline::Pipeline;
use crate::tasks::sources::check_sources;

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  scout audit ./my-repo
  scout audit ./my-repo --pipeline code-review --md review.md
  scout audit ./my-repo --sarif scout.sarif --html report.html --fail-on high
  scout audit my-repo.scout.db --pipeline my-rules.toml --out report.json

Built-in pipelines: security (CWE-named checks), code-review, licenses. A pipeline is a
TOML file (see pipelines/security.toml): the files it reads, its instructions, its rules
(id, CWE, default severity) and its severity scale.

Every finding is checked: its lines must exist and its quoted code must be in them.
Findings that fail are kept and marked unverified, with the reason.

Exit codes: 0 the audit ran (with or without findings); 1 --fail-on matched a verified
finding; 2 an error, or a window the model could not audit (the rest is still reported).")]
pub(super) struct AuditArgs {
    /// A corpus file made by `scout ingest`, or folders and files to read on the fly.
    #[arg(required = true, value_name = "SOURCE")]
    pub(super) sources: Vec<PathBuf>,
    /// The pipeline: a built-in name (security, code-review, licenses) or a TOML file.
    #[arg(long, short, default_value = "security", value_name = "NAME|FILE.toml")]
    pub(super) pipeline: String,
    /// Write the report as JSON (schemas/audit-report.schema.json).
    #[arg(long, value_name = "FILE.json")]
    pub(super) out: Option<PathBuf>,
    /// Write the findings as SARIF 2.1.0, for code-scanning tools.
    #[arg(long, value_name = "FILE.sarif")]
    pub(super) sarif: Option<PathBuf>,
    /// Write the report as Markdown.
    #[arg(long, value_name = "FILE.md")]
    pub(super) md: Option<PathBuf>,
    /// Write the report as one self-contained HTML page (sortable findings, the cited
    /// code, a chart by rule and severity).
    #[arg(long, value_name = "FILE.html")]
    pub(super) html: Option<PathBuf>,
    /// Print the JSON report on stdout instead of the summary.
    #[arg(long)]
    pub(super) json: bool,
    /// Exit with 1 when a verified finding has this severity or a higher one.
    #[arg(long, value_name = "SEVERITY")]
    pub(super) fail_on: Option<String>,
    /// Most findings the model may report per window.
    #[arg(long, default_value_t = 8)]
    pub(super) max_findings: u32,
    /// Most tokens the model may write per window (its findings JSON).
    #[arg(long, default_value_t = 1536)]
    pub(super) max_tokens: u32,
    /// Print each step's token counts and the usage line on stderr.
    #[arg(long, short)]
    pub(super) verbose: bool,
    /// No progress on stderr.
    #[arg(long, short)]
    pub(super) quiet: bool,
    #[command(flatten)]
    pub(super) common: TaskArgs,
}

pub(super) fn run_audit(a: &AuditArgs) -> Result<i32> {
    check_sources(&a.sources)?;
    let pipeline = Pipeline::load(a.pipeline.as_str(), &Access::Anywhere)?;
    if let Some(level) = &a.fail_on {
        if !pipeline.severities.contains(level) {
            bail!(
                "--fail-on {level}: the {} pipeline's severities are {}",
                pipeline.name,
                pipeline.severities.join(", ")
            );
        }
    }
    let mut say = say(a.quiet);
    let (mut engine, engine_line) = a.common.model.engine(&a.common.run, &mut say)?;
    let (mut corpus, ingest_errors) = open_sources(&a.sources, &a.common.walk.options(false), a.quiet, &mut say)?;
    say(&format!(
        "scout: auditing with the {} pipeline ({} rules) on {engine_line}",
        pipeline.name,
        pipeline.rules.len()
    ));
    if !engine.capabilities().json_schema {
        say("scout: this engine cannot constrain output to the findings schema; answers that are not valid JSON are reported as failed windows");
    }
    let opts = AuditOptions {
        pipeline,
        generate: GenerateParams {
            max_tokens: a.max_tokens,
            // Findings quote code, which repeats itself: no penalty.
            repeat_penalty: 1.0,
            ..GenerateParams::default()
        },
        max_findings: a.max_findings.max(1),
    };
    let progress = Progress::prefill(a.quiet);
    let result = audit(&mut corpus, engine.as_mut(), &opts, &mut |event| {
        show_progress(&progress, event);
    });
    progress.clear();
    let report = result?;
    let corpus_name = corpus.path().display().to_string();
    if let Some(path) = &a.out {
        write_file(path, &(serde_json::to_string_pretty(&report)? + "\n"), a.quiet)?;
    }
    if let Some(path) = &a.sarif {
        // Results are relative to the audited folder when there is one.
        let root = match a.sources.as_slice() {
            [one] if one.is_dir() => one.canonicalize().ok(),
            _ => None,
        };
        let sarif = report::audit::sarif(&report, root.as_deref());
        write_file(path, &(serde_json::to_string_pretty(&sarif)? + "\n"), a.quiet)?;
    }
    if let Some(path) = &a.md {
        write_file(path, &report::audit::markdown(&report, &corpus_name), a.quiet)?;
    }
    if let Some(path) = &a.html {
        write_file(path, &report::audit::html(&report, &corpus_name), a.quiet)?;
    }
    let mut out = std::io::stdout().lock();
    if a.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        write!(out, "{}", report::audit::text(&report))?;
    }
    if a.verbose && !a.quiet {
        let u = &report.usage;
        eprintln!(
            "scout: {} calls, {} prompt + {} completion tokens; KV: {} reused, {} restored, {} prefilled; {:.1} s",
            u.calls,
            u.prompt_tokens,
            u.completion_tokens,
            report.kv.reused_tokens,
            report.kv.restored_tokens,
            report.kv.prefilled_tokens,
            report.timings.total_ms as f64 / 1000.0
        );
    }
    if ingest_errors > 0 || report.summary.failed_windows > 0 {
        return Ok(2);
    }
    let failing = a.fail_on.as_ref().is_some_and(|level| {
        let bar = opts.pipeline.severity_rank(level);
        report
            .findings
            .iter()
            .any(|f| f.verified && opts.pipeline.severity_rank(&f.severity) <= bar)
    });
    Ok(i32::from(failing))
}

pub(super) fn write_file(path: &std::path::Path, text: &str, quiet: bool) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    if !quiet {
        eprintln!("scout: wrote {}", path.display());
    }
    Ok(())
}
