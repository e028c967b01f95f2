//! `scout bench audit`: vulnerable and safe twins planted in a copy of a
//! real corpus, the audit run in each mode, every twin scored.
//!
//! Never changes the source: the twins go into a copy in a scratch folder.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;

use super::ask::show_progress;
use super::{open_sources, say, Progress, WalkArgs};
use crate::engine::open::{ModelArgs, RunArgs};
use crate::engine::GenerateParams;
use crate::report;
use crate::tasks::access::Access;
use crate::tasks::audit::{audit, AuditOptions, RuleSet};
use crate::tasks::audit_bench::{copy_tree, plant, read_truth, score, AuditBench, Mode, DEFAULT_CWES};
use crate::tasks::pipeline::Pipeline;

const AFTER_HELP: &str = "\
Examples:
  scout bench audit ./my-repo --modes rules            # seconds: the structural rules alone
  scout bench audit ./my-repo --twins 200 --seed 7     # rules, the model, and both
  scout bench audit ./suite --truth truth.jsonl --json # an external suite, no planting
  scout bench audit ./my-repo --engine openai --endpoint http://gpu:8000/v1 --html audit.html

Twins are small files, one function each, planted in folders that already hold code of
their language (the tree's languages, drawn by how much of the tree is in each): half
vulnerable, half their safe twins, which differ only by the fix (bound parameters, an
argument list instead of a shell, a normalised path checked against its root). Some
vulnerable forms are ones the shipped rules do not match (a path built in a helper
function), so that rules alone can miss. A twin counts as found when a finding of its
rule lands in its file: in `rules` mode a structural match; in `model` mode (no rules
run) a model finding that is not unverified; in `both` mode a confirmed or verified
finding, or a rule match the model did not dismiss with a cited line that checks out.
The same tree and seed give the same twins in the same places. The source is copied to
a scratch folder first and never changed.

--truth FILE scores an external suite instead: JSONL, one line per file,
{\"path\": \"src/a.py\", \"cwe\": \"CWE-89\", \"vulnerable\": true, \"lines\": [5, 9]}
(lines optional), paths relative to the source folder.";

#[derive(Debug, Args)]
#[command(after_help = AFTER_HELP)]
pub(super) struct AuditBenchArgs {
    /// The folder to plant twins in (copied first; never changed).
    #[arg(value_name = "FOLDER")]
    source: PathBuf,
    /// How many twins to plant: half vulnerable, half safe.
    #[arg(long, default_value_t = 200)]
    twins: usize,
    /// The CWEs to plant, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = DEFAULT_CWES.map(String::from))]
    cwes: Vec<String>,
    /// Seed of the twins' places, languages and names.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Modes to run: rules (no model), model (no rules), both.
    #[arg(long, value_delimiter = ',', default_value = "rules,model,both")]
    modes: Vec<Mode>,
    /// Score an external suite's files instead of planting (JSONL; see below).
    #[arg(long, value_name = "FILE.jsonl")]
    truth: Option<PathBuf>,
    /// The audit pipeline.
    #[arg(long, short, default_value = "security", value_name = "NAME|FILE.toml")]
    pipeline: String,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Write the result as one self-contained HTML page.
    #[arg(long, value_name = "FILE.html")]
    html: Option<PathBuf>,
    /// Most tokens the model may write per window.
    #[arg(long, default_value_t = 1536)]
    max_tokens: u32,
    /// No progress on stderr.
    #[arg(long, short)]
    quiet: bool,
    #[command(flatten)]
    walk: WalkArgs,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    run: RunArgs,
}

impl AuditBenchArgs {
    pub(super) fn quiet(&self) -> bool {
        self.quiet
    }
}

pub(super) fn run_audit_bench(a: &AuditBenchArgs) -> Result<i32> {
    if !a.source.is_dir() {
        bail!(
            "{}: scout bench audit plants twins in a folder; give one",
            a.source.display()
        );
    }
    let pipeline = Pipeline::load(a.pipeline.as_str(), &Access::Anywhere)?;
    let rules = Arc::new(RuleSet::load(&pipeline, &[])?);
    let mut modes = a.modes.clone();
    modes.sort_unstable();
    modes.dedup();
    let mut say = say(a.quiet);
    let scratch = tempfile::tempdir().context("making a scratch folder")?;
    let name = a
        .source
        .canonicalize()?
        .file_name()
        .map_or_else(|| "source".to_owned(), |n| n.to_string_lossy().into_owned());
    let copy = scratch.path().join(&name);
    let copied = copy_tree(&a.source, &copy)?;
    let (truth, planted) = match &a.truth {
        Some(file) => {
            let rule_of = |cwe: &str| {
                pipeline
                    .rules
                    .iter()
                    .find(|r| r.cwe.as_deref() == Some(cwe))
                    .map(|r| r.id.clone())
            };
            (read_truth(file, &rule_of)?, false)
        }
        None => (plant(&copy, a.twins, &a.cwes, a.seed)?, true),
    };
    say(&format!(
        "scout: {} {} files scored in a copy of {} ({copied} files)",
        truth.len(),
        if planted { "planted" } else { "listed" },
        a.source.display()
    ));
    let mut engine = if modes.iter().any(|m| *m != Mode::Rules) {
        let (engine, line) = a.model.engine(&a.run, &mut say)?;
        say(&format!("scout: the model modes run on {line}"));
        Some(engine)
    } else {
        None
    };
    let walk = a.walk.options(false);
    let (mut corpus, _) = open_sources(std::slice::from_ref(&copy), &walk, a.quiet, &mut say)?;
    // The copy's cache corpus goes with the scratch folder.
    let cache = crate::tasks::sources::cache_corpus_path(std::slice::from_ref(&copy), walk.ocr_rows);
    let mut scores = Vec::new();
    for mode in &modes {
        let opts = AuditOptions {
            pipeline: pipeline.clone(),
            generate: GenerateParams {
                max_tokens: a.max_tokens,
                repeat_penalty: 1.0,
                ..GenerateParams::default()
            },
            max_findings: 8,
            rules: if *mode == Mode::Model {
                Arc::new(RuleSet::default())
            } else {
                Arc::clone(&rules)
            },
            max_candidates: crate::tasks::audit::DEFAULT_MAX_CANDIDATES,
            diff: None,
            max_windows: None,
            rates: crate::tasks::sweep::Rates::default(),
        };
        say(&format!("scout: audit, mode {}", mode.label()));
        let progress = Progress::prefill(a.quiet);
        let started = Instant::now();
        let engine = if *mode == Mode::Rules {
            None
        } else {
            engine.as_mut().map(|e| e.as_mut() as &mut dyn crate::engine::Engine)
        };
        let report = audit(&mut corpus, engine, &opts, &mut |e| show_progress(&progress, e));
        progress.clear();
        let report = report?;
        scores.push(score(
            &truth,
            &report,
            &copy.to_string_lossy(),
            *mode,
            started.elapsed().as_secs_f64(),
        ));
    }
    let result = AuditBench {
        seed: a.seed,
        planted,
        truth,
        files_in_corpus: usize::try_from(corpus.document_count()?).unwrap_or(usize::MAX),
        modes: scores,
        engine: engine
            .as_ref()
            .map_or_else(|| "none".to_owned(), |e| e.backend().to_owned()),
        model: engine
            .as_ref()
            .map_or_else(|| "none".to_owned(), |e| e.model_id().to_owned()),
    };
    drop(corpus);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", cache.display()));
    }
    if let Some(path) = &a.html {
        super::audit::write_file(path, &report::audit_bench::html(&result), a.quiet)?;
    }
    let mut out = std::io::stdout().lock();
    if a.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&result)?)?;
    } else {
        write!(out, "{}", report::audit_bench::text(&result))?;
    }
    Ok(0)
}
