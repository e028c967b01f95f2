//! `scout audit`: a pipeline's structural rules and the model over a
//! repository, with reports as JSON, SARIF, Markdown and HTML, `--fail-on`
//! and `--baseline`.
//!
//! Never fails a run (--fail-on) on an unverified finding.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;

use super::sweep::{print_plan, SweepArgs};
use super::{open_sources, say, show_progress, Progress, TaskArgs};
use crate::engine::GenerateParams;
use crate::report;
use crate::tasks::access::Access;
use crate::tasks::audit::diff::ChangedLines;
use crate::tasks::audit::{apply_baseline, audit, baseline_ids, plan, AuditOptions, RuleSet};
use crate::tasks::pipeline::Pipeline;
use crate::tasks::sources::check_sources;
use crate::tasks::sweep::Rates;

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  scout audit ./my-repo
  scout audit ./my-repo --pipeline code-review --md review.md
  scout audit ./my-repo --sarif scout.sarif --html report.html --fail-on high
  scout audit ./my-repo --diff origin/main --baseline main.sarif --fail-on high
  scout audit my-repo.scout.db --pipeline my-rules.toml --out report.json
  scout audit ./big-repo --dry-run --json       # the plan (windows, tokens, time), no model call

Built-in pipelines: security (CWE-named checks), code-review, licenses. A pipeline is a
TOML file (see pipelines/security.toml): the files it reads, its instructions, its rules
(id, CWE, default severity) and its severity scale.

The security pipeline's structural rules (ast-grep YAML, pipelines/rules/security/) run
first; each match is a candidate the model judges with the whole window in view, citing
the path from an untrusted source to it. Every finding is checked: its lines must exist
and its quoted code must be in them. Findings are listed by tier: confirmed (rule and
model agree), verified (the model's, its quote found in its lines), candidate (a rule
match the model did not confirm), unverified (kept, capped at info, left out of SARIF and
--fail-on, collapsed in Markdown and HTML unless --show-unverified).

CI: SARIF fingerprints come from the rule, the path and the code, not line numbers, so
they survive edits above a finding; --baseline OLD.sarif reports only new findings.

Exit codes: 0 the audit ran (with or without findings); 1 --fail-on matched a finding
that is not unverified (a rule match counts even when the model dismissed it); 2 an
error, or a window the model could not audit (the rest is still reported).")]
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
    /// Exit with 1 when a finding that is not unverified has this severity or a higher one.
    #[arg(long, value_name = "SEVERITY")]
    pub(super) fail_on: Option<String>,
    /// Also run the structural rules (ast-grep YAML, `.yml`/`.yaml`) in this folder; each
    /// rule names the pipeline rule it checks with `metadata: {scout-rule: ID}`. Repeatable.
    #[arg(long, value_name = "DIR")]
    pub(super) rules: Vec<PathBuf>,
    /// Run no structural rule: the model alone.
    #[arg(long, conflicts_with_all = ["rules", "rules_only"])]
    pub(super) no_rules: bool,
    /// Run the structural rules alone: no model is loaded, every match is a candidate.
    #[arg(long)]
    pub(super) rules_only: bool,
    /// Most rule matches the model judges per window; the rest stay candidates.
    #[arg(long, default_value_t = crate::tasks::audit::DEFAULT_MAX_CANDIDATES, value_name = "N")]
    pub(super) max_candidates: u32,
    /// List unverified findings with the rest (Markdown, HTML) and put them in SARIF.
    #[arg(long)]
    pub(super) show_unverified: bool,
    /// Report only findings on lines changed since this git revision (committed, staged,
    /// unstaged and new files). The files stay whole in the prompt; windows with no changed
    /// file are not read. One folder source, in a git working tree.
    #[arg(long, value_name = "REF")]
    pub(super) diff: Option<String>,
    /// Leave out findings an earlier run's SARIF already has (by fingerprint): only new
    /// findings are reported, written and counted for --fail-on.
    #[arg(long, value_name = "OLD.sarif")]
    pub(super) baseline: Option<PathBuf>,
    /// Most findings the model may report per window.
    #[arg(long, default_value_t = 8)]
    pub(super) max_findings: u32,
    /// Most tokens the model may write per window (its findings JSON).
    #[arg(long, default_value_t = 1536)]
    pub(super) max_tokens: u32,
    #[command(flatten)]
    pub(super) sweep: SweepArgs,
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
    let rules = if a.no_rules {
        RuleSet::default()
    } else {
        RuleSet::load(&pipeline, &a.rules)?
    };
    if a.rules_only && rules.is_empty() {
        bail!(
            "--rules-only: the {} pipeline has no structural rules; add some with --rules DIR",
            pipeline.name
        );
    }
    let baseline = a.baseline.as_ref().map(|p| read_baseline(p)).transpose()?;
    let diff = match (&a.diff, a.sources.as_slice()) {
        (None, _) => None,
        (Some(rev), [folder]) if folder.is_dir() => Some(ChangedLines::since(folder, rev, &folder.to_string_lossy())?),
        (Some(rev), _) => bail!("--diff {rev}: give one folder (a git working tree) as the source"),
    };
    let mut say = say(a.quiet);
    let mut engine = if a.rules_only {
        None
    } else {
        let (engine, line) = a.common.model.engine(&a.common.run, &mut say)?;
        Some((engine, line))
    };
    let (mut corpus, ingest_errors) = open_sources(&a.sources, &a.common.walk.options(false), a.quiet, &mut say)?;
    let structural = if rules.is_empty() {
        "no structural rules".to_owned()
    } else {
        format!("{} structural rules", rules.len())
    };
    match &engine {
        Some((engine, line)) => {
            say(&format!(
                "scout: auditing with the {} pipeline ({} rules, {structural}) on {line}",
                pipeline.name,
                pipeline.rules.len()
            ));
            if !engine.capabilities().json_schema {
                say("scout: this engine cannot constrain output to the findings schema; answers that are not valid JSON are reported as failed windows");
            }
        }
        None => say(&format!(
            "scout: auditing with the {} pipeline's {structural} alone (--rules-only: no model)",
            pipeline.name
        )),
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
        rules: std::sync::Arc::new(rules),
        max_candidates: a.max_candidates,
        diff,
        max_windows: a.sweep.max_windows,
        rates: Rates::in_cache(),
    };
    if a.sweep.dry_run {
        let Some((engine, _)) = &engine else {
            bail!("--dry-run: --rules-only calls no model, so there is no sweep to plan");
        };
        print_plan(&plan(&mut corpus, engine.as_ref(), &opts)?, a.json)?;
        return Ok(if ingest_errors > 0 { 2 } else { 0 });
    }
    let progress = Progress::prefill(a.quiet);
    let result = audit(
        &mut corpus,
        engine
            .as_mut()
            .map(|(e, _)| e.as_mut() as &mut dyn crate::engine::Engine),
        &opts,
        &mut |event| show_progress(&progress, event),
    );
    progress.clear();
    let mut report = result?;
    if let Some(d) = &report.diff {
        say(&format!(
            "scout: --diff {}: {} changed file{} ({} range{}); {} window{} with no changed file not read",
            d.rev,
            d.files,
            if d.files == 1 { "" } else { "s" },
            d.ranges,
            if d.ranges == 1 { "" } else { "s" },
            d.windows_skipped,
            if d.windows_skipped == 1 { "" } else { "s" }
        ));
    }
    if let (Some(known), Some(path)) = (&baseline, &a.baseline) {
        apply_baseline(&mut report, known, &path.display().to_string());
        if let Some(b) = &report.baseline {
            say(&format!(
                "scout: {} finding{} already in {} left out",
                b.known,
                if b.known == 1 { "" } else { "s" },
                b.file
            ));
        }
    }
    let corpus_name = corpus.path().display().to_string();
    let shown = report::audit::Shown {
        unverified: a.show_unverified,
    };
    if let Some(path) = &a.out {
        write_file(path, &(serde_json::to_string_pretty(&report)? + "\n"), a.quiet)?;
    }
    if let Some(path) = &a.sarif {
        // Results are relative to the audited folder when there is one.
        let root = match a.sources.as_slice() {
            [one] if one.is_dir() => one.canonicalize().ok(),
            _ => None,
        };
        let sarif = report::audit::sarif(&report, root.as_deref(), shown);
        write_file(path, &(serde_json::to_string_pretty(&sarif)? + "\n"), a.quiet)?;
    }
    if let Some(path) = &a.md {
        write_file(path, &report::audit::markdown(&report, &corpus_name, shown), a.quiet)?;
    }
    if let Some(path) = &a.html {
        write_file(path, &report::audit::html(&report, &corpus_name, shown), a.quiet)?;
    }
    let mut out = std::io::stdout().lock();
    if a.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        write!(out, "{}", report::audit::text(&report, shown))?;
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
            .any(|f| f.gates() && opts.pipeline.severity_rank(&f.severity) <= bar)
    });
    Ok(i32::from(failing))
}

/// The finding ids of an earlier run's SARIF log.
fn read_baseline(path: &std::path::Path) -> Result<std::collections::HashSet<String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("--baseline {}", path.display()))?;
    let sarif: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("--baseline {}: not a SARIF (JSON) file", path.display()))?;
    if sarif["runs"].as_array().is_none() {
        bail!("--baseline {}: not a SARIF log (no `runs`)", path.display());
    }
    Ok(baseline_ids(&sarif))
}

pub(super) fn write_file(path: &std::path::Path, text: &str, quiet: bool) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    if !quiet {
        eprintln!("scout: wrote {}", path.display());
    }
    Ok(())
}
