//! The server's corpora: where they live, which of them may be served, and
//! the routes that make, list, inspect, read and delete them.
//!
//! In: corpus ids and paths from requests; the server's roots and its
//! corpora folder (`--corpora`, shared across runs of the server).
//! Out: open corpora for the task routes; JSON for the corpus routes.
//! Never: serves a corpus that holds a document from outside the roots the
//! server runs with now (a corpus made by a server with other roots stays
//! on disk, listed as not served, until it is replaced or deleted); makes
//! a corpus over an existing id unless the request says `replace` or `add`.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::{json_event, on_engine, ApiError, ApiResult, App};
use crate::corpus::{Corpus, CorpusError};
use crate::tasks::access::{allowed_path, shown_under_roots};

/// The corpora one server keeps, under its roots.
pub(super) struct Corpora {
    dir: PathBuf,
    roots: Vec<PathBuf>,
    /// Ids being made now; a second request for one is refused (409)
    /// rather than writing into the same file.
    making: Mutex<HashSet<String>>,
}

/// Why a corpus is not served: documents read from outside the roots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Outside {
    pub count: usize,
    pub example: String,
}

impl std::fmt::Display for Outside {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} of its documents lie outside this server's roots (first: {})",
            self.count, self.example
        )
    }
}

/// Documents of `corpus` whose path lies outside `roots` (`None`: all lie
/// under them).
pub(super) fn outside_documents(corpus: &Corpus, roots: &[PathBuf]) -> Result<Option<Outside>, CorpusError> {
    let mut outside: Option<Outside> = None;
    for (path, _) in corpus.document_kinds()? {
        if !shown_under_roots(&path, roots) {
            let o = outside.get_or_insert_with(|| Outside {
                count: 0,
                example: path.clone(),
            });
            o.count += 1;
        }
    }
    Ok(outside)
}

pub(super) fn check_id(id: &str) -> ApiResult<()> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && !id.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad(
            "a corpus id is 1-64 letters, digits, '-', '_' or '.', not starting with '.'",
        ))
    }
}

impl Corpora {
    pub(super) fn new(dir: PathBuf, roots: Vec<PathBuf>) -> Self {
        Self {
            dir,
            roots,
            making: Mutex::new(HashSet::new()),
        }
    }

    /// The file of corpus `id` (a checked id).
    pub(super) fn path(&self, id: &str) -> ApiResult<PathBuf> {
        check_id(id)?;
        Ok(self.dir.join(format!("{id}.scout.db")))
    }

    /// Corpus `id`, if it exists and every document in it lies under the
    /// server's roots (else 403, saying why and what to do).
    pub(super) fn open(&self, id: &str) -> ApiResult<Corpus> {
        let path = self.path(id)?;
        if !path.exists() {
            return Err(ApiError::not_found(format!(
                "no corpus {id:?}; create it with POST /v1/corpora"
            )));
        }
        let corpus = Corpus::open(&path).map_err(ApiError::internal)?;
        if let Some(outside) = outside_documents(&corpus, &self.roots).map_err(ApiError::internal)? {
            return Err(ApiError::new(StatusCode::FORBIDDEN, not_served(id, &outside)));
        }
        Ok(corpus)
    }

    /// Every corpus in the folder: (id, bytes, why it is not served).
    pub(super) fn list(&self) -> ApiResult<Vec<(String, u64, Option<String>)>> {
        let mut list = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(ApiError::internal)? {
            let Ok(entry) = entry else { continue };
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(id) = name.strip_suffix(".scout.db") else {
                continue;
            };
            let bytes = entry.metadata().map_or(0, |m| m.len());
            let why = match Corpus::open(&entry.path()) {
                Ok(c) => match outside_documents(&c, &self.roots) {
                    Ok(None) => None,
                    Ok(Some(o)) => Some(o.to_string()),
                    Err(e) => Some(e.to_string()),
                },
                Err(e) => Some(e.to_string()),
            };
            list.push((id.to_owned(), bytes, why));
        }
        list.sort();
        Ok(list)
    }

    /// Lines for the server's start: each corpus it will not serve, and why.
    pub(super) fn unserved(&self) -> Vec<String> {
        self.list()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(id, _, why)| why.map(|why| format!("corpus {id:?} is not served: {why}")))
            .collect()
    }

    /// Marks `id` as being made until the guard is dropped; `None` when
    /// another request is making it.
    fn making(self: &Arc<Self>, id: &str) -> Option<Making> {
        let mut set = self.making.lock().ok()?;
        set.insert(id.to_owned()).then(|| Making {
            corpora: Arc::clone(self),
            id: id.to_owned(),
        })
    }
}

fn not_served(id: &str, outside: &Outside) -> String {
    format!(
        "corpus {id:?} is not served: {outside}; make it again from paths under the roots \
         (POST /v1/corpora with \"replace\": true) or delete it"
    )
}

/// Removes a corpus file and its `SQLite` journal files.
fn remove_corpus_files(path: &Path) -> std::io::Result<()> {
    for suffix in ["", "-journal", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        match std::fs::remove_file(PathBuf::from(p)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// An id being made; dropped when the request ends, however it ends.
struct Making {
    corpora: Arc<Corpora>,
    id: String,
}

impl Drop for Making {
    fn drop(&mut self) {
        if let Ok(mut set) = self.corpora.making.lock() {
            set.remove(&self.id);
        }
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct CreateCorpus {
    id: String,
    paths: Vec<String>,
    #[serde(default)]
    stream: bool,
    /// Make the corpus again from `paths` when the id exists.
    #[serde(default)]
    replace: bool,
    /// Add `paths` to the existing corpus (re-reading what changed).
    #[serde(default)]
    add: bool,
}

pub(super) async fn create_corpus(State(app): State<Arc<App>>, Json(body): Json<CreateCorpus>) -> ApiResult<Response> {
    let path = app.corpora.path(&body.id)?;
    if body.paths.is_empty() {
        return Err(ApiError::bad("`paths` lists the files and folders to read"));
    }
    if body.replace && body.add {
        return Err(ApiError::bad("give `replace` or `add`, not both"));
    }
    let paths = body
        .paths
        .iter()
        .map(|p| allowed_path(p, &app.opts.roots))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiError::new(StatusCode::FORBIDDEN, e))?;
    let making = app.corpora.making(&body.id).ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "corpus {:?} is being made by another request; try again when it is done",
                body.id
            ),
        )
    })?;
    // The folder is the server's own: a file there that is no whole corpus
    // (left half-made by an older scout) is removed, not a 500 for ever.
    if path.exists() {
        if let Err(CorpusError::NotACorpus { .. } | CorpusError::Corrupt { .. }) = Corpus::open(&path) {
            tracing::warn!("{}: not a whole corpus; removed", path.display());
            remove_corpus_files(&path).map_err(ApiError::internal)?;
        }
    }
    let existed = path.exists();
    if existed && !body.replace {
        let existing = Corpus::open(&path).map_err(ApiError::internal)?;
        if !body.add {
            let roots = existing.ingest_roots().map_err(ApiError::internal)?;
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "corpus {:?} exists (read from {}); send \"replace\": true to make it again from these paths, \
                     or \"add\": true to add them to it",
                    body.id,
                    roots.join(", ")
                ),
            ));
        }
        if let Some(outside) = outside_documents(&existing, &app.opts.roots).map_err(ApiError::internal)? {
            return Err(ApiError::new(StatusCode::CONFLICT, not_served(&body.id, &outside)));
        }
    }
    if existed && body.replace {
        remove_corpus_files(&path).map_err(ApiError::internal)?;
    }
    let walk = app.opts.walk.clone();
    let id = body.id.clone();
    let status = if existed && body.add {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let run = move |on_file: &mut dyn FnMut(&str)| -> ApiResult<Value> {
        let _making = making;
        let mut corpus = Corpus::open(&path).map_err(ApiError::internal)?;
        let summary =
            crate::tasks::ingest::ingest(&mut corpus, &paths, &walk, None, on_file).map_err(ApiError::internal)?;
        let mut v = serde_json::to_value(&summary).unwrap_or(Value::Null);
        v["id"] = json!(id);
        Ok(v)
    };
    if !body.stream {
        let v = tokio::task::spawn_blocking(move || run(&mut |_| {}))
            .await
            .map_err(ApiError::internal)??;
        return Ok((status, Json(v)).into_response());
    }
    let (tx, rx) = mpsc::channel::<Result<Event, Infallible>>(64);
    tokio::task::spawn_blocking(move || {
        let mut files = 0u64;
        let mut last = Instant::now();
        let outcome = run(&mut |p| {
            files += 1;
            if last.elapsed() > Duration::from_millis(200) {
                last = Instant::now();
                let _ = tx.blocking_send(Ok(json_event("progress", &json!({"files": files, "path": p}))));
            }
        });
        let event = match outcome {
            Ok(v) => json_event("done", &v),
            Err(e) => json_event("error", &json!({"message": e.message})),
        };
        let _ = tx.blocking_send(Ok(event));
    });
    Ok(Sse::new(ReceiverStream::new(rx)).into_response())
}

pub(super) async fn list_corpora(State(app): State<Arc<App>>) -> ApiResult<Json<Value>> {
    let corpora = Arc::clone(&app.corpora);
    let list = tokio::task::spawn_blocking(move || corpora.list())
        .await
        .map_err(ApiError::internal)??;
    let data: Vec<Value> = list
        .into_iter()
        .map(|(id, bytes, why)| match why {
            None => json!({"id": id, "bytes": bytes, "served": true}),
            Some(why) => json!({"id": id, "bytes": bytes, "served": false, "reason": why}),
        })
        .collect();
    Ok(Json(json!({"data": data})))
}

/// A corpus's documents with their prompt tokens (counted by the served
/// model, cached in the corpus), and what its latest ingest skipped.
pub(super) async fn inspect_corpus(
    State(app): State<Arc<App>>,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<Json<Value>> {
    let corpora = Arc::clone(&app.corpora);
    if !corpora.path(&id)?.exists() {
        return Err(ApiError::not_found(format!("no corpus {id:?}")));
    }
    let v = on_engine(&app, move |engine, _| {
        let internal = ApiError::internal;
        let mut corpus = corpora.open(&id)?;
        let docs = corpus.documents().map_err(internal)?;
        let tokens: HashMap<String, u64> = crate::tasks::ingest::document_tokens(&mut corpus, &*engine)
            .map_err(internal)?
            .into_iter()
            .map(|(p, _, n)| (p, n))
            .collect();
        let documents: Vec<Value> = docs
            .iter()
            .map(|d| {
                json!({"path": d.path, "kind": d.kind.as_str(), "bytes": d.bytes, "extent": d.extent(),
                       "tokens": tokens.get(&d.path), "language": d.language, "title": d.title})
            })
            .collect();
        let heads: std::collections::BTreeMap<String, String> = corpus
            .meta_starting("git_head:")
            .map_err(internal)?
            .into_iter()
            .map(|(key, commit)| (key["git_head:".len()..].to_owned(), commit))
            .collect();
        let skips: Vec<Value> = corpus
            .last_skips()
            .map_err(internal)?
            .into_iter()
            .map(|(path, reason, detail)| json!({"path": path, "reason": reason, "detail": detail}))
            .collect();
        Ok(json!({
            "id": id,
            "documents": documents,
            "tokens": tokens.values().sum::<u64>(),
            "bytes": docs.iter().map(|d| d.bytes).sum::<u64>(),
            "skips": skips,
            "roots": corpus.ingest_roots().map_err(internal)?,
            // The commit each repository was read at (ingest records
            // them by repository), and the commit alone when there is one.
            "git_head": (heads.len() == 1).then(|| heads.values().next().cloned()).flatten(),
            "git_heads": heads,
        }))
    })
    .await?;
    Ok(Json(v))
}

/// Deletes a corpus, served or not (the way to clear one another server
/// made under other roots).
pub(super) async fn delete_corpus(State(app): State<Arc<App>>, UrlPath(id): UrlPath<String>) -> ApiResult<StatusCode> {
    let path = app.corpora.path(&id)?;
    if !path.exists() {
        return Err(ApiError::not_found(format!("no corpus {id:?}")));
    }
    let _making = app.corpora.making(&id).ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            format!("corpus {id:?} is being made; delete it when that is done"),
        )
    })?;
    remove_corpus_files(&path).map_err(ApiError::internal)?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
pub(super) struct SourceQuery {
    path: String,
}

/// A document's text by segment, for the page to show cited lines.
pub(super) async fn source(
    State(app): State<Arc<App>>,
    UrlPath(id): UrlPath<String>,
    Query(q): Query<SourceQuery>,
) -> ApiResult<Json<Value>> {
    let corpora = Arc::clone(&app.corpora);
    tokio::task::spawn_blocking(move || {
        let corpus = corpora.open(&id)?;
        let wanted: HashSet<String> = [q.path.clone()].into();
        let docs = corpus.documents_at(&wanted).map_err(ApiError::internal)?;
        let doc = docs
            .into_iter()
            .next()
            .ok_or_else(|| ApiError::not_found(format!("no document {:?} in corpus {id:?}", q.path)))?;
        let segments: Vec<Value> = doc
            .segments
            .iter()
            .map(|s| json!({"anchor": s.anchor, "text": s.text}))
            .collect();
        Ok(Json(
            json!({"path": doc.path, "kind": doc.kind.as_str(), "segments": segments}),
        ))
    })
    .await
    .map_err(ApiError::internal)?
}

#[derive(Debug, Deserialize)]
pub(super) struct ImageQuery {
    path: String,
    #[serde(default)]
    page: Option<u32>,
}

/// The scan behind a citation, for the page to outline the cited region
/// on: an image document's file (read from under the roots), or a scanned
/// PDF page's image as stored in the corpus.
pub(super) async fn image(
    State(app): State<Arc<App>>,
    UrlPath(id): UrlPath<String>,
    Query(q): Query<ImageQuery>,
) -> ApiResult<Response> {
    use crate::document::DocumentKind;
    let corpora = Arc::clone(&app.corpora);
    let roots = app.opts.roots.clone();
    tokio::task::spawn_blocking(move || {
        let corpus = corpora.open(&id)?;
        let wanted: HashSet<String> = [q.path.clone()].into();
        let internal = ApiError::internal;
        let missing = || ApiError::not_found(format!("no scan for {:?} in corpus {id:?}", q.path));
        let doc = corpus
            .documents_at(&wanted)
            .map_err(internal)?
            .into_iter()
            .next()
            .ok_or_else(missing)?;
        let bytes = match doc.kind {
            // The copy the corpus keeps (what the model read), else the
            // file (corpora ingested before images were kept).
            DocumentKind::Image => {
                if let Some(bytes) = corpus.page_image(doc.id, 1).map_err(internal)? {
                    bytes
                } else {
                    let file = allowed_path(&doc.path, &roots).map_err(|e| ApiError::new(StatusCode::FORBIDDEN, e))?;
                    std::fs::read(&file).map_err(|e| ApiError::not_found(format!("{}: {e}", doc.path)))?
                }
            }
            DocumentKind::Pdf => corpus
                .page_image(doc.id, q.page.unwrap_or(1))
                .map_err(internal)?
                .ok_or_else(missing)?,
            DocumentKind::Text | DocumentKind::Code => return Err(missing()),
        };
        // By content, not name: a PDF's page images are JPEG or PNG.
        let kind = crate::ingest::image::mime_type(&bytes);
        Ok(([(header::CONTENT_TYPE, kind)], Body::from(bytes)).into_response())
    })
    .await
    .map_err(ApiError::internal)?
}
