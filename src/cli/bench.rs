//! `scout bench`: measurements on real data.
//!
//! Never touches the repository it measures.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use super::ask::show_progress;
use super::extract::extract_options;
use super::{open_sources, say, Progress, WalkArgs};
use crate::engine::open::{ModelArgs, RunArgs};
use crate::engine::GenerateParams;
use crate::report;
use crate::tasks::access::Access;
use crate::tasks::extract::extract;
use crate::tasks::extract_score::{read_truth, score, ExtractScore};
use crate::tasks::needle::{needle_bench, NeedleEvent, NeedleKind, NeedleOptions};
use crate::tasks::schema::ExtractSchema;
use crate::tasks::sources::check_sources;

#[derive(Debug, Subcommand)]
pub(super) enum BenchCommand {
    /// Replay a git repository's last commits and print, for each, the share of the
    /// corpus's prompt tokens before the first changed document (what a KV cache can
    /// keep), in path order and in scout's order (least recently changed first), and
    /// the share in documents left unchanged wherever they sit (what KV kept by
    /// document could reuse).
    PrefixStability(StabilityArgs),
    /// How well a model reads your corpus: plant generated facts (needles) at chosen
    /// depths of haystacks cut from the corpus's own text at chosen prompt lengths, ask
    /// for each through the normal ask path, and print a grid of found (the value in
    /// the answer), cited (a valid citation of the planted line) and time.
    Needle(NeedleArgs),
    /// Score `scout extract` against ground truth: per field, exact match (SROIE's
    /// measure) and loose match (case, spaces and number formatting ignored), so
    /// extraction quality has a number for any model.
    Extract(ExtractBenchArgs),
    /// Score `scout audit`: plant vulnerable and safe twins (per CWE and language) at
    /// seeded places in a copy of a real repository, run the audit with the structural
    /// rules alone, the model alone and both, and print per CWE the true- and
    /// false-positive rates, Youden index, precision and F1. `--truth` scores an
    /// external suite the same way.
    Audit(super::bench_audit::AuditBenchArgs),
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
    /// Commits of history that date the documents, as `ingest --git-history` (0: the
    /// whole history).
    #[arg(long, value_name = "COMMITS", default_value_t = crate::ingest::history::DEFAULT_COMMITS)]
    pub(super) git_history: usize,
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
            "{:<14} {:>8} {:>12} {:>11} {:>12} {:>12}",
            "commit", "changed", "tokens", "path order", "scout order", "by document"
        )?;
    }
    let report = crate::tasks::stability::prefix_stability(
        &a.repo,
        a.commits,
        (a.git_history > 0).then_some(a.git_history),
        scratch.path(),
        tokenizer.as_ref(),
        &mut |c| {
            if !a.json {
                // A closed stdout shows at the next write below.
                let _ = writeln!(
                    out,
                    "{:<14} {:>8} {:>12} {:>10.1}% {:>11.1}% {:>11.1}%",
                    c.commit,
                    c.changed_documents,
                    report::thousands(c.total_tokens),
                    c.path_order * 100.0,
                    c.scout_order * 100.0,
                    c.by_document * 100.0
                );
            }
        },
    )?;
    if a.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        writeln!(
            out,
            "median over {} commits: path order {:.1}%, scout's order {:.1}% of the prompt's tokens survive as a prefix; {:.1}% are in documents unchanged (what KV kept by document could reuse)",
            report.commits.len(),
            report.median_path_order * 100.0,
            report.median_scout_order * 100.0,
            report.median_by_document * 100.0
        )?;
    }
    Ok(0)
}

const NEEDLE_AFTER_HELP: &str = "\
Examples:
  scout bench needle ./my-repo
  scout bench needle ./docs --lengths 8k,32k,128k --depths 0,50,100 --kinds fact,distant
  scout bench needle corpus.scout.db --engine openai --model llama4-scout --json > grid.json
  scout bench needle ./my-repo --html needle.html

Each haystack is the corpus's first text and code documents in prompt order (least
recently changed first), cut at a line to the prompt length; PDFs and images are left
out. A `fact` needle is asked about in its own words; a `distant` needle's question
shares no word with it (NoLiMa-style), so only the model can make the link. The same
corpus, seed and grid give the same haystacks, needles, places and prompt boundaries.
The corpus itself is never changed: haystacks are copies in a scratch folder.";

#[derive(Debug, Args)]
#[command(after_help = NEEDLE_AFTER_HELP)]
pub(super) struct NeedleArgs {
    /// A corpus file made by `scout ingest`, or folders and files to read.
    #[arg(required = true, value_name = "SOURCE")]
    sources: Vec<PathBuf>,
    /// Prompt lengths of the haystacks, in tokens of the model (`8k` is 8,000).
    #[arg(long, value_name = "TOKENS,...", value_delimiter = ',', value_parser = super::pack::parse_tokens, default_value = "8k,32k")]
    lengths: Vec<u64>,
    /// Where the needle goes: percent of the haystack's text before it.
    #[arg(long, value_name = "PERCENT,...", value_delimiter = ',', value_parser = clap::value_parser!(u32).range(0..=100), default_value = "0,25,50,75,100")]
    depths: Vec<u32>,
    /// Which needles: `fact` (asked in its own words), `distant` (no word in common).
    #[arg(
        long,
        value_name = "KIND,...",
        value_delimiter = ',',
        value_enum,
        default_value = "fact"
    )]
    kinds: Vec<NeedleKind>,
    /// Needles per cell (length, depth and kind).
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=100))]
    needles: u64,
    /// Seed for the needles, their values and the prompt boundaries.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Most tokens an answer may have.
    #[arg(long, default_value_t = crate::limits::ANSWER_TOKENS)]
    max_tokens: u32,
    /// Print the report (every trial and cell) as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Also write a heat map page (depth by length) with every trial.
    #[arg(long, value_name = "FILE.html")]
    html: Option<PathBuf>,
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

impl NeedleArgs {
    pub(super) fn quiet(&self) -> bool {
        self.quiet
    }
}

pub(super) fn run_needle(a: &NeedleArgs) -> Result<i32> {
    check_sources(&a.sources)?;
    let mut say = say(a.quiet);
    let (mut engine, engine_line) = a.model.engine(&a.run, &mut say)?;
    let (mut corpus, _) = open_sources(&a.sources, &a.walk.options(false), a.quiet, &mut say)?;
    let opts = NeedleOptions {
        lengths: a.lengths.clone(),
        depths: a.depths.clone(),
        kinds: dedup(&a.kinds),
        needles: a.needles as usize,
        seed: a.seed,
        generate: GenerateParams {
            max_tokens: a.max_tokens,
            ..GenerateParams::default()
        },
        rates: crate::tasks::sweep::Rates::in_cache(),
    };
    let cells = opts.lengths.len() * opts.depths.len() * opts.kinds.len();
    say(&format!(
        "scout: {} questions ({cells} cells of {} needle{}), {engine_line}",
        cells * opts.needles,
        opts.needles,
        if opts.needles == 1 { "" } else { "s" }
    ));
    let scratch = tempfile::tempdir().context("making a scratch folder for the haystacks")?;
    let progress = Progress::prefill(a.quiet);
    let report = needle_bench(&mut corpus, engine.as_mut(), scratch.path(), &opts, &mut |e| match e {
        NeedleEvent::Haystack(h) => {
            progress.clear();
            say(&format!(
                "scout: haystack {}: {} prompt tokens in {} documents",
                report::needle::length_label(h.length),
                report::thousands(h.tokens),
                h.documents
            ));
        }
        NeedleEvent::Task(t) => show_progress(&progress, t),
        NeedleEvent::Trial { trial: t, done, of } => {
            progress.clear();
            say(&format!(
                "scout: [{done}/{of}] {} {} depth {}%: {}, {} ({:.1} s)",
                report::needle::length_label(t.length),
                t.kind.as_str(),
                t.depth,
                if t.found { "found" } else { "not found" },
                if t.cited { "cited" } else { "not cited" },
                t.seconds
            ));
        }
    });
    progress.clear();
    let report = report?;
    let mut out = std::io::stdout().lock();
    if a.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        write!(out, "{}", report::needle::text(&report))?;
    }
    if let Some(path) = &a.html {
        std::fs::write(path, report::needle::html(&report)).with_context(|| format!("writing {}", path.display()))?;
        say(&format!("scout: heat map written to {}", path.display()));
    }
    Ok(0)
}

fn dedup(kinds: &[NeedleKind]) -> Vec<NeedleKind> {
    let mut out = Vec::new();
    for &k in kinds {
        if !out.contains(&k) {
            out.push(k);
        }
    }
    out
}

const EXTRACT_AFTER_HELP: &str = "\
Examples:
  scout bench extract tests/data/receipts --truth tests/data/receipts/truth.jsonl
  scout bench extract sroie/images --truth sroie/labels --model big.gguf --json

The truth is a JSONL file, one object per document: its \"file\" (a path, or a name
matched against the end of the extracted path) and its fields; or a folder of
NAME.json files, one object of fields each, for the document whose file stem is NAME
(SROIE's labels/ folder). Every true field counts: a document with no extraction, or a
field not extracted, is a miss.";

#[derive(Debug, Args)]
#[command(after_help = EXTRACT_AFTER_HELP)]
pub(super) struct ExtractBenchArgs {
    /// Scans, PDFs or folders to extract from, or a corpus file.
    #[arg(required = true, value_name = "SOURCE")]
    sources: Vec<PathBuf>,
    /// The true fields: a JSONL file, or a folder of NAME.json key files.
    #[arg(long, value_name = "FILE.jsonl|DIR")]
    truth: PathBuf,
    /// The schema to extract with (receipt, invoice, form, or a JSON Schema file).
    #[arg(long, short, value_name = "NAME|FILE.json", default_value = "receipt")]
    schema: String,
    /// One object per page of each PDF.
    #[arg(long)]
    per_page: bool,
    /// Most tokens one object may have.
    #[arg(long, default_value_t = 768)]
    max_tokens: u32,
    /// Print the score and every field's result as JSON on stdout.
    #[arg(long)]
    json: bool,
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

impl ExtractBenchArgs {
    pub(super) fn quiet(&self) -> bool {
        self.quiet
    }
}

pub(super) fn run_extract_bench(a: &ExtractBenchArgs) -> Result<i32> {
    check_sources(&a.sources)?;
    // Checked before the model loads.
    let truth = read_truth(&a.truth)?;
    let schema = ExtractSchema::load(a.schema.as_str(), &Access::Anywhere)?;
    let mut say = say(a.quiet);
    let (mut engine, engine_line) = a.model.engine(&a.run, &mut say)?;
    let (mut corpus, _) = open_sources(&a.sources, &a.walk.options(true), a.quiet, &mut say)?;
    say(&format!(
        "scout: extracting with the {} schema on {engine_line}, scored against {} documents' truth",
        schema.name,
        truth.len()
    ));
    let progress = Progress::prefill(a.quiet);
    let started = std::time::Instant::now();
    let results = extract(
        &mut corpus,
        engine.as_mut(),
        &schema,
        &extract_options(a.max_tokens, a.per_page),
        &mut |event| show_progress(&progress, event),
        &mut |_| progress.clear(),
    );
    progress.clear();
    let results = results?;
    let seconds = started.elapsed().as_secs_f64();
    let scored = score(&truth, &results);
    let mut out = std::io::stdout().lock();
    if a.json {
        let mut value = serde_json::to_value(&scored)?;
        value["engine"] = engine.backend().into();
        value["model"] = engine.model_id().into();
        value["schema"] = schema.name.clone().into();
        value["seconds"] = seconds.into();
        writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
    } else {
        write!(out, "{}", extract_score_text(&scored, seconds))?;
    }
    Ok(0)
}

fn extract_score_text(s: &ExtractScore, seconds: f64) -> String {
    use std::fmt::Write as _;
    let pct = |n: usize| if s.of == 0 { 0.0 } else { n as f64 * 100.0 / s.of as f64 };
    let mut t = String::new();
    let _ = writeln!(t, "{:<16} {:>9} {:>9} {:>8}", "field", "exact", "loose", "missing");
    for f in &s.fields {
        let _ = writeln!(
            t,
            "{:<16} {:>9} {:>9} {:>8}",
            f.field,
            format!("{}/{}", f.exact, f.of),
            format!("{}/{}", f.loose, f.of),
            f.missing
        );
    }
    let _ = writeln!(
        t,
        "all fields: exact {}/{} ({:.1}%), loose {}/{} ({:.1}%); {} documents scored in {seconds:.0} s",
        s.exact,
        s.of,
        pct(s.exact),
        s.loose,
        s.of,
        pct(s.loose),
        s.documents
    );
    if !s.unmatched.is_empty() {
        let _ = writeln!(t, "no extraction for: {}", s.unmatched.join(", "));
    }
    for r in s.results.iter().filter(|r| !r.exact) {
        let _ = writeln!(
            t,
            "  {} {}: got {:?}, truth {:?}{}",
            r.file,
            r.field,
            r.got,
            r.truth,
            if r.loose { " (loose match)" } else { "" }
        );
    }
    t
}
