//! Batches over HTTP: a JSONL body of jobs run in the background on an
//! engine of its own, with its status and results by id.
//!
//! In: the jobs (as `scout batch` reads them, paths under the roots). Out:
//! a batch id at once (202), then its status and results file.
//! Never runs more batches at once than `--batches` (a request past that
//! gets 429), so batches cannot multiply engines and memory without bound.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::Value;

use super::{corpora, ApiError, ApiResult, App};
use crate::corpus::Corpus;
use crate::tasks::batch::{open_corpus_file, parse_jobs, run_batch, BatchState, ResultsFile, Source, Worker};

#[derive(Debug, Clone, serde::Serialize)]
pub(super) struct BatchStatus {
    id: String,
    status: &'static str,
    total: usize,
    done: usize,
    failed: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// The batches a server knows, and how many run now.
pub(super) struct Batches {
    pub(super) table: Mutex<HashMap<String, BatchStatus>>,
    running: Arc<AtomicUsize>,
    pub(super) limit: usize,
}

/// A running batch's place among the `--batches`; freed when dropped.
pub(super) struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Batches {
    pub(super) fn new(limit: usize) -> Self {
        Self {
            table: Mutex::new(HashMap::new()),
            running: Arc::new(AtomicUsize::new(0)),
            limit: limit.max(1),
        }
    }

    /// A place for one more running batch, if there is one.
    fn slot(&self) -> Option<Slot> {
        self.running
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < self.limit).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(Arc::clone(&self.running)))
    }
}

pub(super) async fn create_batch(State(app): State<Arc<App>>, body: String) -> ApiResult<(StatusCode, Json<Value>)> {
    let jobs = parse_jobs(&body, &app.opts.roots).map_err(|e| ApiError::bad(e.to_string()))?;
    let slot = app.batches.slot().ok_or_else(|| {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "{} batch(es) are running, the most this server runs at once (--batches); retry after the Retry-After seconds",
                app.batches.limit
            ),
        )
    })?;
    let mut raw = [0u8; 8];
    getrandom::fill(&mut raw).map_err(ApiError::internal)?;
    let id = format!("batch_{}", raw.iter().map(|b| format!("{b:02x}")).collect::<String>());
    let dir = app.opts.data_dir.join("batches").join(&id);
    std::fs::create_dir_all(&dir).map_err(ApiError::internal)?;
    std::fs::write(dir.join("jobs.jsonl"), &body).map_err(ApiError::internal)?;
    let status = BatchStatus {
        id: id.clone(),
        status: "running",
        total: jobs.len(),
        done: 0,
        failed: 0,
        error: None,
    };
    if let Ok(mut b) = app.batches.table.lock() {
        b.insert(id.clone(), status.clone());
    }
    let app2 = Arc::clone(&app);
    let hash = blake3::hash(body.as_bytes()).to_hex().to_string();
    let data_dir = app.opts.data_dir.clone();
    let (walk, extract_walk) = (app.opts.walk.clone(), app.opts.extract_walk.clone());
    let roots = app.opts.roots.clone();
    let factory = Arc::clone(&app.factory);
    let max_tokens = app.opts.max_tokens;
    std::thread::spawn(move || {
        let _slot = slot;
        let set = |f: &dyn Fn(&mut BatchStatus)| {
            if let Ok(mut b) = app2.batches.table.lock() {
                if let Some(s) = b.get_mut(&id) {
                    f(s);
                }
            }
        };
        let out = dir.join("results.jsonl");
        // Corpora of path jobs are cached beside the batches.
        let open = |source: &Source, for_extract: bool| -> anyhow::Result<Corpus> {
            match source {
                Source::Corpus(p) => {
                    // A corpus file under the roots may still hold text
                    // read from elsewhere (made by `scout ingest`).
                    let c = open_corpus_file(p)?;
                    match corpora::outside_documents(&c, &roots)? {
                        None => Ok(c),
                        Some(outside) => anyhow::bail!("{}: {outside}", p.display()),
                    }
                }
                Source::Paths(paths) => {
                    let key = blake3::hash(format!("{paths:?}{for_extract}").as_bytes()).to_hex();
                    let cache = data_dir.join("batches").join(format!("{}.scout.db", &key[..16]));
                    let mut c = Corpus::open(&cache)?;
                    let w = if for_extract { &extract_walk } else { &walk };
                    crate::tasks::ingest::ingest(&mut c, paths, w, None, &mut |_| {})?;
                    Ok(c)
                }
            }
        };
        let outcome = (|| -> anyhow::Result<()> {
            let mut state = BatchState::open(&dir.join("state.db"), &out, &hash, false)?;
            let (mut file, in_file) = ResultsFile::open(&out)?;
            let make = || -> anyhow::Result<Worker<'_>> { Ok(Worker::new(factory()?, &open, max_tokens)) };
            run_batch(&jobs, &mut state, &mut file, &in_file, 1, &make, &|p, _| {
                set(&|s| {
                    s.done = p.done;
                    s.failed = p.failed;
                });
            })?;
            Ok(())
        })();
        set(&|s| match &outcome {
            Ok(()) => s.status = "done",
            Err(e) => {
                s.status = "failed";
                s.error = Some(format!("{e:#}"));
            }
        });
    });
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::to_value(&status).unwrap_or(Value::Null)),
    ))
}

pub(super) async fn batch_status(State(app): State<Arc<App>>, UrlPath(id): UrlPath<String>) -> ApiResult<Json<Value>> {
    let b = app
        .batches
        .table
        .lock()
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "batch table poisoned"))?;
    let s = b
        .get(&id)
        .ok_or_else(|| ApiError::not_found(format!("no batch {id:?}")))?;
    Ok(Json(serde_json::to_value(s).unwrap_or(Value::Null)))
}

pub(super) async fn batch_results(State(app): State<Arc<App>>, UrlPath(id): UrlPath<String>) -> ApiResult<Response> {
    corpora::check_id(&id)?;
    let path = app.opts.data_dir.join("batches").join(&id).join("results.jsonl");
    let text = std::fs::read(&path).map_err(|_| ApiError::not_found(format!("no results for batch {id:?}")))?;
    Ok(([(header::CONTENT_TYPE, "application/jsonl")], Body::from(text)).into_response())
}
