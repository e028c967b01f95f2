//! Batch: a JSONL file of jobs run to a JSONL file of results, resumable
//! after a crash.
//!
//! A job is scout's own (`{"id", "task": "ask"|"audit"|"extract", "corpus"
//! or "paths", ...}`) or a line of the OpenAI batch input format
//! (`{"custom_id", "method", "url": "/v1/chat/completions", "body"}`),
//! whose result is written in the OpenAI batch output format.
//!
//! Job state lives in `SQLite` beside the results: a result is committed
//! there first, then appended to the JSONL file in one write. On
//! `--resume`, a half-written last line is cut off, committed results
//! missing from the file are appended, and only jobs without a result
//! run, so every job ends with exactly one result line. Jobs over the same
//! corpus run together, so its prefix is read once and reused.
//!
//! Never writes a result line before its result is committed, and never
//! reads a path (or pipeline or schema) outside the batch's roots.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::corpus::Corpus;
use crate::engine::{Cancel, Engine, GenerateParams};
use crate::limits::{MAX_JOB_LINE_BYTES, MAX_QUESTION_BYTES};
pub use crate::tasks::access::allowed_path;
use crate::tasks::access::{Access, Named};
use crate::tasks::ask::{ask, ask_many, AskOptions};
use crate::tasks::audit::{audit, AuditOptions};
use crate::tasks::chat::chat;
use crate::tasks::extract::{extract, ExtractOptions};
use crate::tasks::pipeline::Pipeline;
use crate::tasks::schema::ExtractSchema;

/// Where a job's documents come from; jobs with equal sources share a
/// corpus (and its KV).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// A corpus file made by `scout ingest`.
    Corpus(PathBuf),
    /// Folders and files, read into a cache corpus.
    Paths(Vec<PathBuf>),
}

/// A job as it will run. Pipelines and schemas are loaded when the line is
/// read (a built-in, a file under the roots, or given inline), so what was
/// checked is what runs.
#[derive(Debug, Clone)]
pub enum JobSpec {
    Ask {
        source: Source,
        question: String,
        /// As for `ask --pipeline/--schema`.
        pipeline: Option<Pipeline>,
        schema: Option<ExtractSchema>,
        max_tokens: Option<u32>,
    },
    Audit {
        source: Source,
        pipeline: Pipeline,
        max_findings: Option<u32>,
        max_tokens: Option<u32>,
    },
    Extract {
        source: Source,
        schema: ExtractSchema,
        per_page: bool,
        max_tokens: Option<u32>,
    },
    /// An OpenAI batch line: a chat completion run as it is.
    Chat { body: Value },
    /// A line that cannot run; it finishes as failed with this reason.
    Invalid { error: String },
}

impl JobSpec {
    #[must_use]
    pub fn source(&self) -> Option<&Source> {
        match self {
            JobSpec::Ask { source, .. } | JobSpec::Audit { source, .. } | JobSpec::Extract { source, .. } => {
                Some(source)
            }
            JobSpec::Chat { .. } | JobSpec::Invalid { .. } => None,
        }
    }

    fn task(&self) -> &'static str {
        match self {
            JobSpec::Ask { .. } => "ask",
            JobSpec::Audit { .. } => "audit",
            JobSpec::Extract { .. } => "extract",
            JobSpec::Chat { .. } => "chat",
            JobSpec::Invalid { .. } => "invalid",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Job {
    /// The job's id (`id`, or the OpenAI format's `custom_id`).
    pub id: String,
    /// Line number in the jobs file (1-based).
    pub line: usize,
    /// Written in the OpenAI batch output format.
    pub openai: bool,
    pub spec: JobSpec,
}

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Db {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("the jobs file has no jobs")]
    NoJobs,
    #[error("line {line}: job id {id:?} is used again (first on line {first}); ids must be unique")]
    DuplicateId { id: String, line: usize, first: usize },
    #[error("{state} holds the state of an earlier run of this batch: add --resume to continue it, or delete it (and {out}) to start over")]
    StateExists { state: String, out: String },
    #[error(
        "{out} exists and no batch state is beside it; refusing to overwrite it (remove it, or choose another --out)"
    )]
    OutExists { out: String },
    #[error("{path}, line {line}: not a result line scout wrote (no JSON with an id); remove or fix it, then resume")]
    ForeignLine { path: String, line: usize },
    #[error("nothing to resume: {state} does not exist")]
    NothingToResume { state: String },
    #[error("the jobs file changed since this batch began (its hash differs from the one in {state}); start over with a new --out, or restore the file")]
    JobsChanged { state: String },
}

/// A scout job line as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScoutLine {
    id: Value,
    task: String,
    #[serde(default)]
    corpus: Option<String>,
    #[serde(default)]
    paths: Vec<String>,
    #[serde(default)]
    question: Option<String>,
    #[serde(default)]
    pipeline: Option<Named>,
    #[serde(default)]
    schema: Option<Named>,
    #[serde(default)]
    per_page: bool,
    #[serde(default)]
    max_findings: Option<u32>,
    #[serde(default)]
    max_tokens: Option<u32>,
}

fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn parse_scout(v: Value, roots: &[PathBuf]) -> Result<(String, JobSpec), (Option<String>, String)> {
    let id_if_any = v.get("id").and_then(id_text);
    let line: ScoutLine = serde_json::from_value(v).map_err(|e| (id_if_any, e.to_string()))?;
    let id = id_text(&line.id).ok_or((None, "`id` must be a non-empty string or a number".to_owned()))?;
    let fail = |m: String| (Some(id.clone()), m);
    let source = match (&line.corpus, line.paths.as_slice()) {
        (Some(c), []) => Source::Corpus(allowed_path(c, roots).map_err(fail)?),
        (None, [_, ..]) => {
            let mut paths = line
                .paths
                .iter()
                .map(|p| allowed_path(p, roots))
                .collect::<Result<Vec<_>, _>>()
                .map_err(fail)?;
            paths.sort();
            Source::Paths(paths)
        }
        (Some(_), [_, ..]) => return Err(fail("give `corpus` or `paths`, not both".to_owned())),
        (None, []) => {
            return Err(fail(
                "a job needs `corpus` (a corpus file) or `paths` (files and folders)".to_owned(),
            ))
        }
    };
    // A job names pipelines and schemas as a request does: built in,
    // under the roots, or inline; never any file the process can read.
    let access = Access::Under(roots.to_vec());
    let pipeline = |named: Named| Pipeline::load(named, &access).map_err(|e| fail(e.to_string()));
    let schema = |named: Named| ExtractSchema::load(named, &access).map_err(|e| fail(e.to_string()));
    let spec = match line.task.as_str() {
        "ask" => JobSpec::Ask {
            source,
            question: match line.question.filter(|q| !q.trim().is_empty()) {
                None => return Err(fail("an ask job needs a `question`".to_owned())),
                Some(q) if q.len() > MAX_QUESTION_BYTES => {
                    return Err(fail(format!(
                        "the question is {} bytes, over the {MAX_QUESTION_BYTES}-byte limit",
                        q.len()
                    )))
                }
                Some(q) => q,
            },
            pipeline: line.pipeline.map(pipeline).transpose()?,
            schema: line.schema.map(schema).transpose()?,
            max_tokens: line.max_tokens,
        },
        "audit" => JobSpec::Audit {
            source,
            pipeline: pipeline(line.pipeline.unwrap_or_else(|| "security".into()))?,
            max_findings: line.max_findings,
            max_tokens: line.max_tokens,
        },
        "extract" => JobSpec::Extract {
            source,
            schema: schema(line.schema.ok_or_else(|| {
                fail("an extract job needs a `schema` (receipt, invoice, form, a file or the schema itself)".to_owned())
            })?)?,
            per_page: line.per_page,
            max_tokens: line.max_tokens,
        },
        other => return Err(fail(format!("unknown task {other:?}: use ask, audit or extract"))),
    };
    Ok((id, spec))
}

/// Parses a jobs file. Lines that cannot run become `Invalid` jobs (they
/// finish as failed, with the reason), so one bad line does not stop the
/// batch; duplicate ids stop it before anything runs.
pub fn parse_jobs(text: &str, roots: &[PathBuf]) -> Result<Vec<Job>, BatchError> {
    let mut jobs = Vec::new();
    let mut first_line: HashMap<String, usize> = HashMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let parsed: Result<Value, String> = if raw.len() > MAX_JOB_LINE_BYTES {
            Err(format!(
                "the line is {} bytes, over the {MAX_JOB_LINE_BYTES}-byte limit for one job; not read",
                raw.len()
            ))
        } else {
            serde_json::from_str(raw).map_err(|e| format!("not JSON: {e}"))
        };
        let (id, openai, spec) = match parsed {
            Err(e) => (format!("line-{line}"), false, JobSpec::Invalid { error: e }),
            Ok(v) if v.get("custom_id").is_some() => {
                let id = v
                    .get("custom_id")
                    .and_then(id_text)
                    .unwrap_or_else(|| format!("line-{line}"));
                let spec = if v["url"] != "/v1/chat/completions" {
                    JobSpec::Invalid {
                        error: format!("url {}: only /v1/chat/completions is supported", v["url"]),
                    }
                } else if v.get("method").is_some_and(|m| m != "POST") {
                    JobSpec::Invalid {
                        error: "method must be POST".to_owned(),
                    }
                } else if !v["body"]["messages"].is_array() {
                    JobSpec::Invalid {
                        error: "body.messages must be an array".to_owned(),
                    }
                } else {
                    JobSpec::Chat {
                        body: v["body"].clone(),
                    }
                };
                (id, true, spec)
            }
            Ok(v) => match parse_scout(v, roots) {
                Ok((id, spec)) => (id, false, spec),
                Err((id, error)) => (
                    id.unwrap_or_else(|| format!("line-{line}")),
                    false,
                    JobSpec::Invalid { error },
                ),
            },
        };
        if let Some(&first) = first_line.get(&id) {
            return Err(BatchError::DuplicateId { id, line, first });
        }
        first_line.insert(id.clone(), line);
        jobs.push(Job { id, line, openai, spec });
    }
    if jobs.is_empty() {
        return Err(BatchError::NoJobs);
    }
    Ok(jobs)
}

/// The batch's state: which jobs are finished, with their result lines.
pub struct BatchState {
    conn: Connection,
    path: String,
}

impl BatchState {
    /// Opens (with `resume`) or creates the state for the jobs file whose
    /// content hashes to `jobs_hash`, with results going to `out`.
    pub fn open(path: &Path, out: &Path, jobs_hash: &str, resume: bool) -> Result<Self, BatchError> {
        let name = path.display().to_string();
        let exists = path.exists();
        if exists && !resume {
            return Err(BatchError::StateExists {
                state: name,
                out: out.display().to_string(),
            });
        }
        if !exists && resume {
            return Err(BatchError::NothingToResume { state: name });
        }
        if !exists && out.exists() {
            return Err(BatchError::OutExists {
                out: out.display().to_string(),
            });
        }
        let db = |source| BatchError::Db {
            path: name.clone(),
            source,
        };
        let conn = Connection::open(path).map_err(db)?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             PRAGMA synchronous=FULL;
             CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS results (
                 job_id TEXT PRIMARY KEY,
                 ok INTEGER NOT NULL,
                 line TEXT NOT NULL,
                 finished_at INTEGER NOT NULL
             );",
        )
        .map_err(db)?;
        let stored: Option<String> = conn
            .query_row("SELECT value FROM meta WHERE key = 'jobs_hash'", [], |r| r.get(0))
            .optional()
            .map_err(db)?;
        match stored {
            Some(h) if h != jobs_hash => return Err(BatchError::JobsChanged { state: name }),
            Some(_) => {}
            None => {
                conn.execute("INSERT INTO meta VALUES ('jobs_hash', ?1)", [jobs_hash])
                    .map_err(db)?;
            }
        }
        Ok(Self { conn, path: name })
    }

    fn db(&self) -> impl Fn(rusqlite::Error) -> BatchError + '_ {
        |source| BatchError::Db {
            path: self.path.clone(),
            source,
        }
    }

    /// Finished jobs: id -> (ok, result line).
    pub fn finished(&self) -> Result<HashMap<String, (bool, String)>, BatchError> {
        let mut stmt = self
            .conn
            .prepare("SELECT job_id, ok, line FROM results")
            .map_err(self.db())?;
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get::<_, String>(0)?, (r.get::<_, bool>(1)?, r.get::<_, String>(2)?)))
            })
            .map_err(self.db())?;
        rows.collect::<Result<_, _>>().map_err(self.db())
    }

    /// Commits one job's result.
    pub fn record(&self, id: &str, ok: bool, line: &str) -> Result<(), BatchError> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
        self.conn
            .execute(
                "INSERT OR REPLACE INTO results VALUES (?1, ?2, ?3, ?4)",
                params![id, ok, line, now],
            )
            .map_err(self.db())?;
        Ok(())
    }
}

/// The results file, appended one whole line per write.
pub struct ResultsFile {
    file: File,
    path: String,
}

impl ResultsFile {
    /// Opens `path` for appending, first cutting off a half-written last
    /// line (a crash mid-write). Returns it with the ids already in it.
    pub fn open(path: &Path) -> Result<(Self, HashSet<String>), BatchError> {
        let name = path.display().to_string();
        let io = |source| BatchError::Io {
            path: name.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(io)?;
        let mut text = Vec::new();
        file.read_to_end(&mut text).map_err(io)?;
        let whole = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        if whole < text.len() {
            file.set_len(whole as u64).map_err(io)?;
            file.seek(SeekFrom::End(0)).map_err(io)?;
        }
        // Every whole line must be a result this code wrote: an id it cannot
        // read would make a finished job run again.
        let mut ids = HashSet::new();
        for (i, line) in String::from_utf8_lossy(&text[..whole]).lines().enumerate() {
            let id = serde_json::from_str::<Value>(line)
                .ok()
                .and_then(|v| v.get("custom_id").or_else(|| v.get("id")).and_then(id_text));
            match id {
                Some(id) => {
                    ids.insert(id);
                }
                None => {
                    return Err(BatchError::ForeignLine {
                        path: name,
                        line: i + 1,
                    })
                }
            }
        }
        Ok((Self { file, path: name }, ids))
    }

    /// Appends one result line and flushes it to disk.
    pub fn append(&mut self, line: &str) -> Result<(), BatchError> {
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        self.file
            .write_all(&bytes)
            .and_then(|()| self.file.sync_data())
            .map_err(|source| BatchError::Io {
                path: self.path.clone(),
                source,
            })
    }
}

/// Opens a corpus file a job names (`corpus`): only files `scout ingest`
/// made, never any other file opened as a database.
pub fn open_corpus_file(path: &Path) -> anyhow::Result<Corpus> {
    if !Corpus::is_corpus_file(path) {
        anyhow::bail!("{} is not a corpus file made by `scout ingest`", path.display());
    }
    Ok(Corpus::open(path)?)
}

/// Opens a job's corpus: the source, and whether it is for extraction.
pub type Opener<'o> = dyn Fn(&Source, bool) -> anyhow::Result<Corpus> + Sync + 'o;

/// What a worker needs to run jobs: an engine and a way to open a job's
/// corpus.
pub struct Worker<'a> {
    pub engine: Box<dyn Engine>,
    /// Opens (reading files as needed) the corpus of a source; `true`
    /// when it is for extraction (scans are then read as rows).
    pub open: &'a Opener<'a>,
    /// Most tokens per answer when a job does not say.
    pub max_tokens: u32,
    /// Consecutive ask jobs over one corpus answered together (1: one by
    /// one).
    pub fork: usize,
    corpus: Option<((Source, bool), Corpus)>,
}

impl<'a> Worker<'a> {
    #[must_use]
    pub fn new(engine: Box<dyn Engine>, open: &'a Opener<'a>, max_tokens: u32) -> Self {
        Self {
            engine,
            open,
            max_tokens,
            fork: crate::limits::FORKED_QUESTIONS,
            corpus: None,
        }
    }

    /// The corpus of `source`, kept open for the next job (jobs come
    /// grouped by source).
    fn corpus<'c>(
        slot: &'c mut Option<((Source, bool), Corpus)>,
        open: &Opener<'_>,
        source: &Source,
        for_extract: bool,
    ) -> Result<&'c mut Corpus, String> {
        let key = (source.clone(), for_extract);
        if slot.as_ref().is_none_or(|(k, _)| *k != key) {
            *slot = None;
            let c = open(source, for_extract).map_err(|e| format!("{e:#}"))?;
            *slot = Some((key, c));
        }
        Ok(&mut slot.as_mut().expect("set above").1)
    }

    /// An ask job's options.
    fn ask_options(job: &Job, default_max_tokens: u32) -> Result<AskOptions, String> {
        let JobSpec::Ask {
            question,
            pipeline,
            schema,
            max_tokens,
            ..
        } = &job.spec
        else {
            return Err("not an ask job".into());
        };
        Ok(AskOptions {
            question: question.clone(),
            generate: GenerateParams {
                max_tokens: max_tokens.unwrap_or(default_max_tokens),
                ..GenerateParams::default()
            },
            pipeline: pipeline.clone(),
            schema: schema.clone(),
            rates: crate::tasks::sweep::Rates::in_cache(),
            ..AskOptions::default()
        })
    }

    /// Runs ask jobs over one source together ([`ask_many`]: questions
    /// whose corpus fits one window fork its KV and decode side by side).
    pub fn run_asks(&mut self, jobs: &[&Job]) -> Vec<Result<Value, String>> {
        let Some(source) = jobs.first().and_then(|j| j.spec.source()).cloned() else {
            return Vec::new();
        };
        let mut outcomes: Vec<Option<Result<Value, String>>> = jobs.iter().map(|_| None).collect();
        let mut opts = Vec::new();
        let mut at = Vec::new();
        for (i, job) in jobs.iter().enumerate() {
            match Self::ask_options(job, self.max_tokens) {
                Ok(o) => {
                    opts.push(o);
                    at.push(i);
                }
                Err(e) => outcomes[i] = Some(Err(e)),
            }
        }
        match Self::corpus(&mut self.corpus, self.open, &source, false) {
            Ok(corpus) => {
                let answers = ask_many(corpus, self.engine.as_mut(), &opts, &mut |_| {});
                for (i, answer) in at.into_iter().zip(answers) {
                    outcomes[i] = Some(
                        answer
                            .map_err(|e| e.to_string())
                            .and_then(|r| serde_json::to_value(r).map_err(|e| e.to_string())),
                    );
                }
            }
            Err(e) => {
                for i in at {
                    outcomes[i] = Some(Err(e.clone()));
                }
            }
        }
        outcomes
            .into_iter()
            .map(|o| o.expect("every job has an outcome"))
            .collect()
    }

    /// Runs one job: its result, or why it failed.
    pub fn run(&mut self, job: &Job) -> Result<Value, String> {
        let quiet = &mut |_: crate::tasks::run::TaskEvent<'_>| {};
        let generate = |max: Option<u32>, default: u32, repeat_penalty: f32| GenerateParams {
            max_tokens: max.unwrap_or(default),
            repeat_penalty,
            ..GenerateParams::default()
        };
        let engine = self.engine.as_mut();
        let value = match &job.spec {
            JobSpec::Invalid { error } => return Err(error.clone()),
            JobSpec::Chat { body } => {
                return chat(engine, body, self.max_tokens, None, Cancel::default(), &mut |_| {}).map(|(v, _)| v)
            }
            JobSpec::Ask { source, .. } => {
                let opts = Self::ask_options(job, self.max_tokens)?;
                let corpus = Self::corpus(&mut self.corpus, self.open, source, false)?;
                serde_json::to_value(ask(corpus, engine, &opts, quiet).map_err(|e| e.to_string())?)
            }
            JobSpec::Audit {
                source,
                pipeline,
                max_findings,
                max_tokens,
            } => {
                let corpus = Self::corpus(&mut self.corpus, self.open, source, false)?;
                let opts = AuditOptions::new(
                    pipeline.clone(),
                    generate(*max_tokens, 1536, 1.0),
                    max_findings.unwrap_or(8),
                )
                .map_err(|e| e.to_string())?;
                serde_json::to_value(audit(corpus, Some(engine), &opts, quiet).map_err(|e| e.to_string())?)
            }
            JobSpec::Extract {
                source,
                schema,
                per_page,
                max_tokens,
            } => {
                let corpus = Self::corpus(&mut self.corpus, self.open, source, true)?;
                let opts = ExtractOptions {
                    generate: generate(*max_tokens, 768, 1.0),
                    per_page: *per_page,
                    max_windows: None,
                    rates: crate::tasks::sweep::Rates::in_cache(),
                };
                let objects = extract(corpus, engine, schema, &opts, quiet, &mut |_| {}).map_err(|e| e.to_string())?;
                let failed = objects.iter().filter(|o| !o.valid).count();
                let value = serde_json::to_value(&objects).map_err(|e| e.to_string())?;
                if failed > 0 {
                    // The objects are kept in the error, so nothing is lost.
                    return Err(format!(
                        "{failed} of {} objects failed or did not validate: {value}",
                        objects.len()
                    ));
                }
                Ok(value)
            }
        };
        value.map_err(|e| e.to_string())
    }
}

/// A job's result line, in its own format.
fn result_line(job: &Job, outcome: &Result<Value, String>, ms: u64) -> String {
    let value = if job.openai {
        let request_id = blake3::hash(job.id.as_bytes()).to_hex()[..24].to_owned();
        match outcome {
            Ok(body) => json!({
                "id": format!("batch_req_{request_id}"),
                "custom_id": job.id,
                "response": {"status_code": 200, "request_id": request_id, "body": body},
                "error": null,
            }),
            Err(message) => json!({
                "id": format!("batch_req_{request_id}"),
                "custom_id": job.id,
                "response": null,
                "error": {"code": "scout_job_failed", "message": message},
            }),
        }
    } else {
        match outcome {
            Ok(result) => json!({"id": job.id, "task": job.spec.task(), "status": "ok", "result": result, "ms": ms}),
            Err(error) => json!({"id": job.id, "task": job.spec.task(), "status": "failed", "error": error, "ms": ms}),
        }
    };
    value.to_string()
}

/// How far a batch is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchProgress {
    pub total: usize,
    pub done: usize,
    pub failed: usize,
    /// Finished in an earlier run (with --resume).
    pub earlier: usize,
}

/// Runs every job that has no result yet, with `concurrency` workers made
/// by `make_worker`, committing each result to `state` and appending it to
/// `out`. Jobs over one source go to one worker, in file order.
pub fn run_batch<'a, S: std::hash::BuildHasher>(
    jobs: &[Job],
    state: &mut BatchState,
    out: &mut ResultsFile,
    in_file: &HashSet<String, S>,
    concurrency: usize,
    make_worker: &(dyn Fn() -> anyhow::Result<Worker<'a>> + Sync),
    on_progress: &(dyn Fn(BatchProgress, Option<&str>) + Sync),
) -> Result<BatchProgress, BatchError> {
    let finished = state.finished()?;
    let mut progress = BatchProgress {
        total: jobs.len(),
        ..BatchProgress::default()
    };
    // Committed results the file lacks (a crash between the two writes).
    for job in jobs {
        if let Some((ok, line)) = finished.get(&job.id) {
            if !in_file.contains(&job.id) {
                out.append(line)?;
            }
            progress.done += 1;
            progress.earlier += 1;
            progress.failed += usize::from(!ok);
        }
    }
    // Pending jobs grouped by source, groups in order of first appearance.
    let mut groups: Vec<(Option<Source>, Vec<&Job>)> = Vec::new();
    for job in jobs.iter().filter(|j| !finished.contains_key(&j.id)) {
        let key = job.spec.source().cloned();
        match groups.iter_mut().find(|(k, _)| *k == key && k.is_some()) {
            Some((_, list)) => list.push(job),
            None => groups.push((key, vec![job])),
        }
    }
    on_progress(progress, None);
    if groups.is_empty() {
        return Ok(progress);
    }
    let queue: Mutex<VecDeque<Vec<&Job>>> = Mutex::new(groups.into_iter().map(|(_, g)| g).collect());
    let shared = Mutex::new((progress, &mut *state, &mut *out, None::<BatchError>));
    let workers = concurrency.max(1);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                let mut worker = match make_worker() {
                    Ok(w) => Some(w),
                    Err(e) => {
                        let mut guard = shared.lock().expect("not poisoned");
                        guard.3.get_or_insert(BatchError::Io {
                            path: "engine".to_owned(),
                            source: std::io::Error::other(format!("{e:#}")),
                        });
                        None
                    }
                };
                let Some(worker) = worker.as_mut() else { return };
                loop {
                    let Some(group) = queue.lock().expect("not poisoned").pop_front() else {
                        break;
                    };
                    let mut next = 0;
                    while next < group.len() {
                        if shared.lock().expect("not poisoned").3.is_some() {
                            return;
                        }
                        // A run of ask jobs (one source: the group's) is
                        // answered together, forking the corpus's KV.
                        let asks = group[next..]
                            .iter()
                            .take(worker.fork.max(1))
                            .take_while(|j| matches!(j.spec, JobSpec::Ask { .. }))
                            .count();
                        let chunk = &group[next..next + asks.max(1)];
                        next += chunk.len();
                        let started = Instant::now();
                        let outcomes = if chunk.len() > 1 {
                            worker.run_asks(chunk)
                        } else {
                            vec![worker.run(chunk[0])]
                        };
                        let ms = started.elapsed().as_millis() as u64;
                        for (job, outcome) in chunk.iter().zip(outcomes) {
                            let line = result_line(job, &outcome, ms);
                            let mut guard = shared.lock().expect("not poisoned");
                            let (progress, state, out, error) = &mut *guard;
                            // Committed first, then appended: a crash between
                            // the two is repaired on --resume.
                            if let Err(e) = state
                                .record(&job.id, outcome.is_ok(), &line)
                                .and_then(|()| out.append(&line))
                            {
                                error.get_or_insert(e);
                                return;
                            }
                            progress.done += 1;
                            progress.failed += usize::from(outcome.is_err());
                            on_progress(*progress, Some(&job.id));
                        }
                    }
                }
            });
        }
    });
    let (progress, _, _, error) = shared.into_inner().expect("not poisoned");
    match error {
        Some(e) => Err(e),
        None => Ok(progress),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roots() -> Vec<PathBuf> {
        vec![std::env::current_dir().unwrap().canonicalize().unwrap()]
    }

    #[test]
    fn job_lines_parse_and_bad_ones_become_failures() {
        let text = r#"{"id": "a", "task": "ask", "paths": ["tests/data/needle"], "question": "q?"}
{"id": 2, "task": "audit", "corpus": "Cargo.toml", "pipeline": "code-review"}
{"custom_id": "c1", "method": "POST", "url": "/v1/chat/completions", "body": {"messages": [{"role": "user", "content": "hi"}]}}

{"id": "u", "task": "ask", "paths": ["https://example.invalid/x"], "question": "q"}
{"id": "o", "task": "ask", "paths": ["/etc"], "question": "q"}
{"id": "t", "task": "summarise", "paths": ["src"]}
{"custom_id": "e", "url": "/v1/embeddings", "body": {"input": "x"}}
not json
"#;
        let jobs = parse_jobs(text, &roots()).unwrap();
        assert_eq!(jobs.len(), 8);
        assert!(matches!(&jobs[0].spec, JobSpec::Ask { question, .. } if question == "q?"));
        assert!(matches!(&jobs[1].spec, JobSpec::Audit { pipeline, .. } if pipeline.name == "code-review"));
        assert_eq!(jobs[1].id, "2");
        assert!(jobs[2].openai && matches!(jobs[2].spec, JobSpec::Chat { .. }));
        let error = |i: usize| match &jobs[i].spec {
            JobSpec::Invalid { error } => error.clone(),
            other => panic!("{other:?}"),
        };
        assert!(error(3).contains("never fetched"), "{}", error(3));
        assert!(error(4).contains("outside the allowed roots"), "{}", error(4));
        assert!(error(5).contains("unknown task"), "{}", error(5));
        assert!(error(6).contains("only /v1/chat/completions"), "{}", error(6));
        assert_eq!(jobs[7].id, "line-9");
        let dup = "{\"id\": \"a\", \"task\": \"ask\", \"paths\": [\"src\"], \"question\": \"q\"}\n".repeat(2);
        assert!(matches!(
            parse_jobs(&dup, &roots()),
            Err(BatchError::DuplicateId { line: 2, first: 1, .. })
        ));
        assert!(matches!(parse_jobs("\n\n", &roots()), Err(BatchError::NoJobs)));
    }

    /// Reliability case 35: a 50 MB job line took 1.98 GB to parse, and a
    /// 1 GB question was tokenized whole before any check. A line past the
    /// limit is a failed job, never parsed; a long question fails its job.
    #[test]
    fn oversized_lines_and_questions_fail_their_job_alone() {
        let huge = format!(
            "{{\"id\": \"h\", \"task\": \"ask\", \"paths\": [\"src\"], \"question\": \"{}\"}}",
            "x".repeat(MAX_JOB_LINE_BYTES)
        );
        let long_question = format!(
            "{{\"id\": \"q\", \"task\": \"ask\", \"paths\": [\"src\"], \"question\": \"{}\"}}",
            "y".repeat(MAX_QUESTION_BYTES + 1)
        );
        let ok = r#"{"id": "ok", "task": "ask", "paths": ["src"], "question": "q?"}"#;
        let text = format!("{huge}\n{long_question}\n{ok}\n");
        let jobs = parse_jobs(&text, &roots()).unwrap();
        assert_eq!(jobs.len(), 3);
        assert!(
            matches!(&jobs[0].spec, JobSpec::Invalid { error } if error.contains("over the")),
            "{:?}",
            jobs[0].id
        );
        assert_eq!(jobs[0].id, "line-1", "the line was not parsed for its id");
        assert!(matches!(&jobs[1].spec, JobSpec::Invalid { error } if error.contains("question is")));
        assert!(matches!(&jobs[2].spec, JobSpec::Ask { .. }));
    }

    #[test]
    fn result_lines_in_both_formats() {
        let jobs = parse_jobs(
            "{\"id\": \"q1\", \"task\": \"ask\", \"paths\": [\"src\"], \"question\": \"q\"}\n\
             {\"custom_id\": \"c1\", \"url\": \"/v1/chat/completions\", \"body\": {\"messages\": []}}\n",
            &roots(),
        )
        .unwrap();
        let ok = Ok(json!({"answer": "42"}));
        let failed = Err("the model failed".to_owned());
        let lines: Vec<Value> = [
            result_line(&jobs[0], &ok, 12),
            result_line(&jobs[0], &failed, 3),
            result_line(&jobs[1], &Ok(json!({"object": "chat.completion"})), 5),
            result_line(&jobs[1], &failed, 5),
        ]
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
        insta::assert_json_snapshot!("batch_result_lines", lines);
    }

    #[test]
    fn a_half_written_line_is_cut_and_lines_are_found_by_id() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        std::fs::write(&path, "{\"id\":\"a\"}\n{\"custom_id\":\"b\"}\n{\"id\":\"c\",\"resu").unwrap();
        let (mut out, ids) = ResultsFile::open(&path).unwrap();
        assert_eq!(ids, ["a", "b"].map(String::from).into_iter().collect());
        out.append("{\"id\":\"c\"}").unwrap();
        let other = dir.path().join("other.jsonl");
        std::fs::write(&other, "{\"id\":\"a\"}\nnot a result\n").unwrap();
        assert!(matches!(
            ResultsFile::open(&other),
            Err(BatchError::ForeignLine { line: 2, .. })
        ));
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"id\":\"a\"}\n{\"custom_id\":\"b\"}\n{\"id\":\"c\"}\n"
        );
    }

    #[test]
    fn committed_results_missing_from_the_file_are_written_on_resume() {
        // A crash after the commit and before the append: the state has
        // the result, the file does not.
        let dir = tempfile::tempdir().unwrap();
        let (state_path, out_path) = (dir.path().join("s.db"), dir.path().join("o.jsonl"));
        let jobs = parse_jobs(
            "{\"custom_id\": \"a\", \"url\": \"/v1/chat/completions\", \"body\": {\"messages\": []}}\n\
             {\"custom_id\": \"b\", \"url\": \"/v1/chat/completions\", \"body\": {\"messages\": []}}\n",
            &roots(),
        )
        .unwrap();
        let mut state = BatchState::open(&state_path, &out_path, "h", false).unwrap();
        state.record("a", true, "{\"custom_id\":\"a\"}").unwrap();
        state.record("b", false, "{\"custom_id\":\"b\"}").unwrap();
        std::fs::write(&out_path, "{\"custom_id\":\"a\"}\n{\"custom_id\":\"b").unwrap();
        let (mut out, in_file) = ResultsFile::open(&out_path).unwrap();
        let never = || -> anyhow::Result<Worker<'_>> { panic!("no job is left to run") };
        let p = run_batch(&jobs, &mut state, &mut out, &in_file, 2, &never, &|_, _| {}).unwrap();
        assert_eq!((p.total, p.done, p.failed, p.earlier), (2, 2, 1, 2));
        assert_eq!(
            std::fs::read_to_string(&out_path).unwrap(),
            "{\"custom_id\":\"a\"}\n{\"custom_id\":\"b\"}\n"
        );
    }

    #[test]
    fn state_refuses_to_clobber_or_to_resume_another_batch() {
        let dir = tempfile::tempdir().unwrap();
        let (state, out) = (dir.path().join("s.db"), dir.path().join("o.jsonl"));
        assert!(matches!(
            BatchState::open(&state, &out, "h1", true),
            Err(BatchError::NothingToResume { .. })
        ));
        let s = BatchState::open(&state, &out, "h1", false).unwrap();
        s.record("a", true, "{}").unwrap();
        drop(s);
        assert!(matches!(
            BatchState::open(&state, &out, "h1", false),
            Err(BatchError::StateExists { .. })
        ));
        assert!(matches!(
            BatchState::open(&state, &out, "h2", true),
            Err(BatchError::JobsChanged { .. })
        ));
        let s = BatchState::open(&state, &out, "h1", true).unwrap();
        assert_eq!(s.finished().unwrap()["a"], (true, "{}".to_owned()));
        std::fs::remove_file(&state).unwrap();
        std::fs::write(&out, "x\n").unwrap();
        assert!(matches!(
            BatchState::open(&state, &out, "h1", false),
            Err(BatchError::OutExists { .. })
        ));
    }
}
