//! `scout batch`: a JSONL file of jobs run to a JSONL file of results,
//! resumable.
//!
//! Never runs a job twice across --resume.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use super::{open_sources, say, Progress, TaskArgs};
use crate::corpus::Corpus;
use crate::engine::open::EngineKind;
use crate::ingest::WalkOptions;
use crate::limits::ANSWER_TOKENS;

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
pub(super) struct BatchArgs {
    /// The jobs file (JSON lines).
    #[arg(value_name = "JOBS.jsonl")]
    pub(super) jobs: PathBuf,
    /// The results file (JSON lines, one per job, in the order they finish).
    #[arg(long, value_name = "FILE.jsonl")]
    pub(super) out: PathBuf,
    /// Continue a run that stopped: skip jobs that have a result, run the rest.
    #[arg(long)]
    pub(super) resume: bool,
    /// Jobs run at once, each worker with its own engine (for the openai engine and
    /// several endpoints; with llamacpp each worker loads its own copy of the model).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub(super) concurrency: usize,
    /// A folder jobs may read from (repeatable). Default: the current folder.
    #[arg(long, value_name = "DIR")]
    pub(super) root: Vec<PathBuf>,
    /// Where the batch's state is kept. Default: OUT.state.db.
    #[arg(long, value_name = "FILE")]
    pub(super) state: Option<PathBuf>,
    /// Most tokens per answer when a job does not say (ask and chat jobs).
    #[arg(long, default_value_t = ANSWER_TOKENS)]
    pub(super) max_tokens: u32,
    /// Consecutive ask jobs over one corpus answered together (llamacpp): the corpus is
    /// read once and each question forks its KV into its own sequence, the answers
    /// decoding side by side. Each sequence has its own KV stream, so memory grows with
    /// N. 1 answers them one by one.
    #[arg(long, value_name = "N", default_value_t = crate::limits::FORKED_QUESTIONS)]
    pub(super) fork: usize,
    /// No progress on stderr.
    #[arg(long, short)]
    pub(super) quiet: bool,
    #[command(flatten)]
    pub(super) common: TaskArgs,
}

pub(super) fn run_batch_cli(a: &BatchArgs) -> Result<i32> {
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
    // Jobs read only under the batch's roots, however links resolve.
    let walk = WalkOptions {
        confine: Some(roots.clone()),
        ..a.common.walk.options(false)
    };
    let extract_walk = WalkOptions {
        confine: Some(roots.clone()),
        ..a.common.walk.options(true)
    };
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
        let run = crate::engine::open::RunArgs {
            resident_contexts: true,
            ..a.common.run.clone()
        };
        let (engine, _) = a.common.model.engine(&run, &mut |_| {})?;
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
