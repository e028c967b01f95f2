//! The corpus store: one `SQLite` file per corpus.
//!
//! In: documents and skips from `ingest`. Out: documents with their
//! segments in a stable order, the corpus's secret salt, cached token
//! counts. Re-ingest only rewrites documents whose content hash changed.
//! Every write of an ingest run happens in one transaction, so a crash never
//! leaves a half-written corpus.
//!
//! Never knows about prompts or engines: token counts are stored under an
//! opaque tokenizer id and an opaque text hash.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::Serialize;

use crate::anchor::Anchor;
#[cfg(test)]
use crate::document::Skip;
use crate::ingest::listing::Listing;
use crate::ingest::outline::Symbol;
use crate::ingest::secrets::SecretFinding;
use crate::ingest::{Document, DocumentKind, ImageInfo, KnownFile, KnownFiles, Segment, WalkItem};
use crate::model::vision::llama4_tiling;

/// Bumped whenever the tables change shape; an older file is refused with a
/// clear message rather than misread.
pub const SCHEMA_VERSION: i64 = 3;

/// The application id `SQLite` stores in the file header ("scou").
const APPLICATION_ID: i64 = 0x7363_6f75;

#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    #[error("corpus store {path}: {source}")]
    Sqlite { path: PathBuf, source: rusqlite::Error },
    #[error("{path} is not a scout corpus (it is some other SQLite file)")]
    NotACorpus { path: PathBuf },
    #[error("{path} was written by a scout with corpus schema {found}; this one reads schema {SCHEMA_VERSION}. Re-ingest into a new file.")]
    Schema { path: PathBuf, found: i64 },
    #[error("corpus store {path}: {detail}")]
    Corrupt { path: PathBuf, detail: String },
}

/// A document as stored, with its segments in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDocument {
    pub id: i64,
    pub path: String,
    pub kind: DocumentKind,
    pub language: Option<String>,
    pub content_hash: String,
    pub bytes: u64,
    pub modified: i64,
    pub replaced_chars: u64,
    pub image: Option<ImageInfo>,
    pub segments: Vec<Segment>,
    /// Definitions, from the tree-sitter outline (source files), or a
    /// PDF's bookmarks with pages in place of lines.
    pub symbols: Vec<Symbol>,
    /// A PDF's title from its metadata.
    pub title: Option<String>,
    /// Commits that changed it, when it is in a git repository's history
    /// (0 otherwise): breaks ties in the prompt order.
    pub commits: u32,
}

/// A document as it will be stored (id 0: not stored yet), so that it
/// can be rendered and counted before the corpus holds it.
impl From<&Document> for StoredDocument {
    fn from(doc: &Document) -> Self {
        Self {
            id: 0,
            path: doc.path.clone(),
            kind: doc.kind,
            language: doc.language.map(str::to_owned),
            content_hash: doc.content_hash.clone(),
            bytes: doc.bytes,
            modified: doc.modified,
            replaced_chars: doc.replaced_chars,
            image: doc.image,
            segments: doc.segments.clone(),
            symbols: doc.symbols.clone(),
            title: doc.title.clone(),
            commits: 0,
        }
    }
}

impl StoredDocument {
    /// A document of `kind` with these segments and nothing else (tests
    /// build their corpora with it).
    #[must_use]
    pub fn with_segments(path: &str, kind: DocumentKind, segments: Vec<Segment>) -> Self {
        Self {
            id: 0,
            path: path.to_owned(),
            kind,
            language: None,
            content_hash: String::new(),
            bytes: segments.iter().map(|s| s.text.len() as u64).sum(),
            modified: 0,
            replaced_chars: 0,
            image: None,
            segments,
            symbols: Vec::new(),
            title: None,
            commits: 0,
        }
    }

    /// Number of lines (text) or pages (PDF) the document has; 0 for images.
    #[must_use]
    pub fn extent(&self) -> u32 {
        match self.segments.last().map(|s| &s.anchor) {
            Some(Anchor::Lines { end, .. }) => *end,
            Some(a) => a.page().unwrap_or(0),
            None => 0,
        }
    }
}

/// What happened to one document on re-ingest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upsert {
    Added,
    Changed,
    Unchanged,
}

/// Counts from one ingest run, as printed and as JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IngestSummary {
    pub documents: u64,
    pub segments: u64,
    pub tokens: u64,
    pub bytes: u64,
    pub added: u64,
    pub changed: u64,
    /// Read again (modification time moved) but with the same content.
    pub unchanged: u64,
    /// Not read at all: same size and modification time as stored.
    pub reused: u64,
    pub removed: u64,
    pub replaced_chars: u64,
    pub by_kind: BTreeMap<String, u64>,
    pub skipped: BTreeMap<String, u64>,
    pub errors: u64,
    pub skips: Vec<crate::document::Skip>,
    /// Secrets redacted in the documents read this run.
    pub secrets: Vec<SecretFinding>,
    /// Secrets redacted in the whole corpus.
    pub secrets_in_corpus: u64,
    /// Prompt tokens the corpus's images would take as Llama 4 vision
    /// tiles (336 px tiles, up to 16 plus a global tile).
    pub llama4_image_tokens: u64,
    /// Images and scanned PDF pages read this run, by OCR outcome: `ok`,
    /// `no_text`, or the reason there is none (`ocr_unavailable`,
    /// `ocr_timeout`, `ocr_failed`, `ocr_off`, `unsupported_image`,
    /// `blank_page` (a PDF page with neither text nor an image),
    /// `too_many_pixels`).
    pub ocr: BTreeMap<String, u64>,
    /// Source files read this run that got an outline.
    pub outlined: u64,
    /// Source files kept as plain text because their parse timed out or
    /// was mostly errors, by reason.
    pub outline_fallbacks: BTreeMap<String, u64>,
    /// Git repositories the sources lie in: the commit ingested, and how
    /// many documents took their last-change time from its history.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub git: Vec<GitSummary>,
    /// Whether the sources were walked, or the last walk's listing stood
    /// in for a walk (no folder changed since).
    pub listing: ListingUse,
    /// Peak resident memory, in bytes, of scout itself and of the largest
    /// helper process it waited for (PDF workers, tesseract), measured
    /// when the run ends; 0 where the system does not say.
    pub peak_rss: PeakRss,
}

/// What became of the listing a walk records (see
/// [`crate::ingest::listing`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ListingUse {
    /// The last walk's listing still held and was used: the tree was not
    /// walked (its files were still checked one by one).
    Used,
    /// The tree was walked, and its listing kept for the next ingest.
    Recorded,
    /// The tree was walked, and no listing kept: a walk error, a folder or
    /// ignore file changed in the 2 seconds before the walk, --follow, a
    /// root that is a file, or a `.git` file (a worktree or submodule).
    #[default]
    NotRecorded,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PeakRss {
    pub scout_bytes: u64,
    pub helpers_bytes: u64,
}

impl PeakRss {
    /// The peaks so far: scout's own from `/proc/self/status` (`VmHWM`;
    /// getrusage's would include the process scout was forked from, since
    /// Linux keeps that high-water mark across exec), the helpers' from
    /// getrusage.
    #[must_use]
    pub fn now() -> Self {
        #[cfg(unix)]
        {
            use nix::sys::resource::{getrusage, UsageWho};
            // Linux reports kilobytes.
            let peak = |who| getrusage(who).map_or(0, |u| u64::try_from(u.max_rss()).unwrap_or(0) * 1024);
            let own = std::fs::read_to_string("/proc/self/status")
                .ok()
                .and_then(|status| {
                    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
                    line.split_whitespace().nth(1)?.parse::<u64>().ok()
                })
                .map_or_else(|| peak(UsageWho::RUSAGE_SELF), |kb| kb * 1024);
            Self {
                scout_bytes: own,
                helpers_bytes: peak(UsageWho::RUSAGE_CHILDREN),
            }
        }
        #[cfg(not(unix))]
        Self::default()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GitSummary {
    pub repository: String,
    pub commit: String,
    /// Documents dated from history this run.
    pub dated: u64,
    /// Whether only the commits since the last ingest were read.
    pub incremental: bool,
    /// Why history could not be read, if it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

pub struct Corpus {
    conn: Connection,
    path: PathBuf,
    salt: String,
}

impl std::fmt::Debug for Corpus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Corpus")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Ingest runs whose summaries and skips a corpus keeps.
const KEPT_RUNS: i64 = 20;

/// Records one document's prompt tokens: (tokens, key, path).
const SET_TOTAL: &str = "UPDATE documents SET tokens = ?1, tokens_key = ?2 WHERE path = ?3";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    language TEXT,
    content_hash TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    modified INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    replaced_chars INTEGER NOT NULL,
    width INTEGER,
    height INTEGER,
    title TEXT,
    -- The document's prompt tokens, and what they were counted with
    -- (tokenizer and layout version); a rewritten row starts without.
    tokens INTEGER,
    tokens_key TEXT
);
-- Counts and sizes by kind, and the token total, read these instead of
-- the whole table (an ingest's summary ends with both).
CREATE INDEX IF NOT EXISTS documents_kind_bytes ON documents (kind, bytes);
DROP INDEX IF EXISTS documents_by_kind;
CREATE INDEX IF NOT EXISTS documents_tokens ON documents (tokens_key, tokens);
CREATE TABLE IF NOT EXISTS segments (
    doc_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    ord INTEGER NOT NULL,
    line_start INTEGER,
    line_end INTEGER,
    page INTEGER,
    x INTEGER,
    y INTEGER,
    w INTEGER,
    h INTEGER,
    text TEXT NOT NULL,
    PRIMARY KEY (doc_id, ord)
);
CREATE TABLE IF NOT EXISTS secrets (
    doc_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    line INTEGER NOT NULL,
    page INTEGER,
    kind TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS symbols (
    doc_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    start_line INTEGER NOT NULL,
    end_line INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS ocr_lines (
    doc_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    page INTEGER NOT NULL,
    x INTEGER NOT NULL,
    y INTEGER NOT NULL,
    w INTEGER NOT NULL,
    h INTEGER NOT NULL,
    confidence REAL NOT NULL,
    text TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS token_counts (
    text_hash TEXT NOT NULL,
    tokenizer TEXT NOT NULL,
    tokens INTEGER NOT NULL,
    PRIMARY KEY (text_hash, tokenizer)
);
CREATE TABLE IF NOT EXISTS ingest_runs (
    id INTEGER PRIMARY KEY,
    roots TEXT NOT NULL,
    started INTEGER NOT NULL,
    summary TEXT
);
-- Commits that changed each document's file (from git history, by the
-- document's path); kept apart from documents so a rewritten row keeps it.
CREATE TABLE IF NOT EXISTS git_commits (
    path TEXT PRIMARY KEY,
    commits INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS page_images (
    doc_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    page INTEGER NOT NULL,
    bytes BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS skips (
    run_id INTEGER NOT NULL REFERENCES ingest_runs(id) ON DELETE CASCADE,
    path TEXT NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL
);
-- A document's rows in these tables go with it (ON DELETE CASCADE), and a
-- run's skips with the run: without an index on the key, every rewritten
-- or removed document scanned the whole of each table (symbols: tens of
-- thousands of rows, 2-3 ms a document).
CREATE INDEX IF NOT EXISTS symbols_doc ON symbols (doc_id);
CREATE INDEX IF NOT EXISTS secrets_doc ON secrets (doc_id);
CREATE INDEX IF NOT EXISTS ocr_lines_doc ON ocr_lines (doc_id);
CREATE INDEX IF NOT EXISTS page_images_doc ON page_images (doc_id);
CREATE INDEX IF NOT EXISTS skips_run ON skips (run_id);
-- Documents written or removed since the walk listing was kept (which
-- holds each file's size and time as they were then): a re-ingest takes
-- these few from the documents table and the rest from the listing.
-- Logged only while a listing is kept; emptied when one is kept again.
CREATE TABLE IF NOT EXISTS documents_touched (path TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS documents_touched_insert AFTER INSERT ON documents
    WHEN EXISTS (SELECT 1 FROM meta WHERE key = 'walk_listing')
    BEGIN INSERT OR IGNORE INTO documents_touched VALUES (NEW.path); END;
CREATE TRIGGER IF NOT EXISTS documents_touched_delete AFTER DELETE ON documents
    WHEN EXISTS (SELECT 1 FROM meta WHERE key = 'walk_listing')
    BEGIN INSERT OR IGNORE INTO documents_touched VALUES (OLD.path); END;
CREATE TRIGGER IF NOT EXISTS documents_touched_update
    AFTER UPDATE OF path, kind, bytes, mtime_ns, width, height ON documents
    WHEN EXISTS (SELECT 1 FROM meta WHERE key = 'walk_listing')
    BEGIN
        INSERT OR IGNORE INTO documents_touched VALUES (OLD.path);
        INSERT OR IGNORE INTO documents_touched VALUES (NEW.path);
    END;
-- Whether a document's page images are kept decides whether it is known.
CREATE TRIGGER IF NOT EXISTS documents_touched_images_insert AFTER INSERT ON page_images
    WHEN EXISTS (SELECT 1 FROM meta WHERE key = 'walk_listing')
    BEGIN INSERT OR IGNORE INTO documents_touched SELECT path FROM documents WHERE id = NEW.doc_id; END;
CREATE TRIGGER IF NOT EXISTS documents_touched_images_delete AFTER DELETE ON page_images
    WHEN EXISTS (SELECT 1 FROM meta WHERE key = 'walk_listing')
    BEGIN INSERT OR IGNORE INTO documents_touched SELECT path FROM documents WHERE id = OLD.doc_id; END;
";

/// [`SCHEMA`]'s fingerprint (FNV-1a, 31 bits), kept as the corpus file's
/// `user_version` once its statements have run.
const SCHEMA_FINGERPRINT: i32 = {
    let bytes = SCHEMA.as_bytes();
    let mut hash: u32 = 0x811c_9dc5;
    let mut i = 0;
    while i < bytes.len() {
        hash = (hash ^ bytes[i] as u32).wrapping_mul(0x0100_0193);
        i += 1;
    }
    (hash & 0x7fff_ffff) as i32
};

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Corpus {
    /// Opens the corpus at `path`, creating it (with a fresh secret salt) if
    /// the file does not exist.
    pub fn open(path: &Path) -> Result<Corpus, CorpusError> {
        let err = |source| CorpusError::Sqlite {
            path: path.to_owned(),
            source,
        };
        let existed = path.exists();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| CorpusError::Corrupt {
                path: path.to_owned(),
                detail: format!("cannot create folder {}: {e}", parent.display()),
            })?;
        }
        let conn = Connection::open(path).map_err(err)?;
        conn.pragma_update(None, "foreign_keys", true).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(err)?;
        let app_id: i64 = conn
            .pragma_query_value(None, "application_id", |r| r.get(0))
            .map_err(err)?;
        if existed && app_id != APPLICATION_ID {
            let tables: i64 = conn
                .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
                .map_err(|e| {
                    if matches!(e, rusqlite::Error::SqliteFailure(..)) {
                        CorpusError::NotACorpus { path: path.to_owned() }
                    } else {
                        err(e)
                    }
                })?;
            if tables > 0 {
                return Err(CorpusError::NotACorpus { path: path.to_owned() });
            }
        }
        // The schema's statements run only when the file's fingerprint of
        // them differs (a new file, or one an older scout wrote): they
        // take half a millisecond, on every open.
        let fingerprint: i32 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(err)?;
        if fingerprint != SCHEMA_FINGERPRINT {
            conn.execute_batch(SCHEMA).map_err(err)?;
            conn.pragma_update(None, "user_version", SCHEMA_FINGERPRINT)
                .map_err(err)?;
        }
        if app_id != APPLICATION_ID {
            conn.pragma_update(None, "application_id", APPLICATION_ID)
                .map_err(err)?;
        }
        let version: Option<String> = conn
            .query_row("SELECT value FROM meta WHERE key='schema'", [], |r| r.get(0))
            .optional()
            .map_err(err)?;
        match version.map(|v| v.parse::<i64>()) {
            None => {
                conn.execute("INSERT INTO meta VALUES ('schema', ?1)", [SCHEMA_VERSION.to_string()])
                    .map_err(err)?;
            }
            Some(Ok(v)) if v == SCHEMA_VERSION => {}
            Some(Ok(found)) => {
                return Err(CorpusError::Schema {
                    path: path.to_owned(),
                    found,
                })
            }
            Some(Err(_)) => {
                return Err(CorpusError::Corrupt {
                    path: path.to_owned(),
                    detail: "unreadable schema version".into(),
                })
            }
        }
        let salt: Option<String> = conn
            .query_row("SELECT value FROM meta WHERE key='salt'", [], |r| r.get(0))
            .optional()
            .map_err(err)?;
        let salt = if let Some(s) = salt {
            s
        } else {
            let s = new_salt();
            conn.execute("INSERT INTO meta VALUES ('salt', ?1)", [&s])
                .map_err(err)?;
            s
        };
        Ok(Corpus {
            conn,
            path: path.to_owned(),
            salt,
        })
    }

    /// Whether `path` is a scout corpus file (by `SQLite` header and
    /// application id), without creating anything.
    #[must_use]
    pub fn is_corpus_file(path: &Path) -> bool {
        // The header only: a corpus file can be gigabytes.
        let mut bytes = Vec::with_capacity(100);
        let read = std::fs::File::open(path)
            .and_then(|f| std::io::Read::read_to_end(&mut std::io::Read::take(f, 100), &mut bytes));
        if read.is_err() {
            return false;
        }
        // SQLite header: magic string, application id at offset 68 (BE).
        bytes.len() == 100
            && bytes.starts_with(b"SQLite format 3\0")
            && i64::from(u32::from_be_bytes([bytes[68], bytes[69], bytes[70], bytes[71]])) == APPLICATION_ID
    }

    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The per-corpus secret that goes into every document boundary, so a
    /// file cannot write a boundary that closes its own block.
    #[must_use]
    pub fn salt(&self) -> &str {
        &self.salt
    }

    fn err(&self, source: rusqlite::Error) -> CorpusError {
        CorpusError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// Stores one ingest run: every document (only changed ones rewritten),
    /// every skip, and the removal of documents under `roots` that are no
    /// longer there. One transaction: all of it lands or none.
    pub fn store_run(
        &mut self,
        roots: &[String],
        items: impl IntoIterator<Item = WalkItem>,
        rewrite_all: bool,
    ) -> Result<IngestSummary, CorpusError> {
        self.store_run_with_totals(roots, items, rewrite_all, || None)
    }

    /// [`Corpus::store_run`], also recording the prompt token totals that
    /// `totals` gives once the items are all in (key, then (path, tokens),
    /// as [`Corpus::store_document_token_totals`] takes them) in the same
    /// transaction.
    pub fn store_run_with_totals(
        &mut self,
        roots: &[String],
        items: impl IntoIterator<Item = WalkItem>,
        rewrite_all: bool,
        totals: impl FnOnce() -> Option<(String, Vec<(String, u64)>)>,
    ) -> Result<IngestSummary, CorpusError> {
        let path = self.path.clone();
        let err = |source| CorpusError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        tx.execute(
            "INSERT INTO ingest_runs (roots, started) VALUES (?1, ?2)",
            params![serde_json::to_string(roots).unwrap_or_default(), now()],
        )
        .map_err(err)?;
        let run_id = tx.last_insert_rowid();
        // Only the latest runs are kept: each holds its summary and skips,
        // which would otherwise grow the corpus with every re-ingest.
        tx.execute("DELETE FROM skips WHERE run_id <= ?1", [run_id - KEPT_RUNS])
            .map_err(err)?;
        tx.execute("DELETE FROM ingest_runs WHERE id <= ?1", [run_id - KEPT_RUNS])
            .map_err(err)?;
        let mut summary = IngestSummary::default();
        // Most runs see about as many paths as the corpus holds.
        let mut seen = rustc_hash::FxHashSet::with_capacity_and_hasher(
            rows_in(&tx, "documents").map_err(err)? as usize,
            rustc_hash::FxBuildHasher,
        );
        // Unchanged files of a listing, by their places in it.
        let mut listed = Vec::new();
        for item in items {
            match item {
                WalkItem::Unchanged { path } => {
                    seen.insert(path);
                    summary.reused += 1;
                }
                WalkItem::UnchangedListed { listing, entries } => {
                    summary.reused += entries.len() as u64;
                    listed.push((listing, entries));
                }
                WalkItem::Document(doc) => {
                    seen.insert(doc.path.clone());
                    match upsert_document(&tx, &doc, rewrite_all).map_err(err)? {
                        Upsert::Added => summary.added += 1,
                        Upsert::Changed => summary.changed += 1,
                        Upsert::Unchanged => summary.unchanged += 1,
                    }
                    summary.replaced_chars += doc.replaced_chars;
                    summary.secrets.extend(doc.secrets.iter().cloned());
                    for outcome in &doc.ocr_outcomes {
                        *summary.ocr.entry((*outcome).to_owned()).or_default() += 1;
                    }
                    if let Some(reason) = doc.outline_failure {
                        *summary.outline_fallbacks.entry(reason.to_owned()).or_default() += 1;
                    } else if !doc.symbols.is_empty() {
                        summary.outlined += 1;
                    }
                }
                WalkItem::Skip(skip) => {
                    // A file that is now skipped but was a document before
                    // must leave the corpus (it may have become too large).
                    seen.remove(&skip.path);
                    tx.execute(
                        "INSERT INTO skips VALUES (?1, ?2, ?3, ?4)",
                        params![run_id, skip.path, skip.reason.as_str(), skip.detail],
                    )
                    .map_err(err)?;
                    *summary.skipped.entry(skip.reason.as_str().to_owned()).or_default() += 1;
                    if skip.reason.is_error() {
                        summary.errors += 1;
                    }
                    summary.skips.push(skip);
                }
            }
        }
        if let Some((key, totals)) = totals() {
            let mut stmt = tx.prepare_cached(SET_TOTAL).map_err(err)?;
            for (path, n) in &totals {
                stmt.execute(params![*n as i64, key, path]).map_err(err)?;
            }
        }
        summary.removed = remove_missing(&tx, roots, &seen, &listed).map_err(err)?;
        // Items come in the order the walkers finish; reports list by path.
        summary.skips.sort_by(|a, b| a.path.cmp(&b.path));
        summary.secrets.sort_by(|a, b| a.path.cmp(&b.path));
        // The run's skips are rows of their own, not written twice.
        let skips = std::mem::take(&mut summary.skips);
        let stored = serde_json::to_string(&summary).unwrap_or_default();
        summary.skips = skips;
        tx.execute(
            "UPDATE ingest_runs SET summary = ?1 WHERE id = ?2",
            params![stored, run_id],
        )
        .map_err(err)?;
        tx.commit().map_err(err)?;
        self.fill_totals(&mut summary)?;
        Ok(summary)
    }

    /// What the corpus holds after a run: documents by kind, bytes,
    /// segments, secrets, image tokens. One pass over the documents and
    /// index lookups for the rest: a re-ingest of a large tree ends with
    /// this, and each pass costs a millisecond or two.
    fn fill_totals(&self, summary: &mut IngestSummary) -> Result<(), CorpusError> {
        // From the index on (kind, bytes): no sort, no table scan.
        let mut stmt = self
            .conn
            .prepare("SELECT kind, count(*), coalesce(sum(bytes), 0) FROM documents GROUP BY kind")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)? as u64,
                    r.get::<_, i64>(2)? as u64,
                ))
            })
            .map_err(|e| self.err(e))?;
        let kinds: Vec<(String, u64, u64)> = rows.collect::<Result<_, _>>().map_err(|e| self.err(e))?;
        summary.documents = kinds.iter().map(|k| k.1).sum();
        summary.bytes = kinds.iter().map(|k| k.2).sum();
        summary.by_kind = kinds.into_iter().map(|(kind, n, _)| (kind, n)).collect();
        summary.llama4_image_tokens = self.llama4_image_tokens()?;
        summary.segments = self.rows_in("segments")?;
        summary.secrets_in_corpus = self.rows_in("secrets")?;
        Ok(())
    }

    /// How many rows `table` (one of the schema's) holds.
    fn rows_in(&self, table: &str) -> Result<u64, CorpusError> {
        rows_in(&self.conn, table).map_err(|e| self.err(e))
    }

    /// Every document with its segments, ordered by path.
    pub fn documents(&self) -> Result<Vec<StoredDocument>, CorpusError> {
        self.documents_matching(None)
    }

    /// The OCR lines of a document (an image, or a scanned PDF's pages),
    /// in reading order.
    pub fn ocr_lines(&self, doc_id: i64) -> Result<Vec<crate::ingest::ocr::OcrLine>, CorpusError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT page, x, y, w, h, confidence, text FROM ocr_lines WHERE doc_id = ?1 ORDER BY rowid")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([doc_id], |r| {
                Ok(crate::ingest::ocr::OcrLine {
                    page: r.get(0)?,
                    // Blocks are not stored; lines keep their reading order.
                    block: 0,
                    x: r.get(1)?,
                    y: r.get(2)?,
                    w: r.get(3)?,
                    h: r.get(4)?,
                    confidence: r.get::<_, f64>(5)? as f32,
                    text: r.get(6)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// The image of a scanned PDF page (JPEG or PNG bytes), when the
    /// page was a scan.
    pub fn page_image(&self, doc_id: i64, page: u32) -> Result<Option<Vec<u8>>, CorpusError> {
        self.conn
            .query_row(
                "SELECT bytes FROM page_images WHERE doc_id = ?1 AND page = ?2",
                params![doc_id, page],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// What the latest ingest run skipped: (path, reason, detail).
    pub fn last_skips(&self) -> Result<Vec<(String, String, String)>, CorpusError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT path, reason, detail FROM skips
                 WHERE run_id = (SELECT MAX(id) FROM ingest_runs) ORDER BY path",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// The documents at `paths`, with their segments, ordered by path; only
    /// their rows are read.
    pub fn documents_at(&self, paths: &HashSet<String>) -> Result<Vec<StoredDocument>, CorpusError> {
        self.documents_matching(Some(paths))
    }

    fn documents_matching(&self, only: Option<&HashSet<String>>) -> Result<Vec<StoredDocument>, CorpusError> {
        let mut docs: Vec<StoredDocument> = Vec::new();
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, d.path, kind, language, content_hash, bytes, modified, replaced_chars, width, height, title,
                        COALESCE(g.commits, 0)
                 FROM documents d LEFT JOIN git_commits g ON g.path = d.path ORDER BY d.path",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                let kind: String = r.get(2)?;
                let width: Option<i64> = r.get(8)?;
                let height: Option<i64> = r.get(9)?;
                Ok(StoredDocument {
                    id: r.get(0)?,
                    path: r.get(1)?,
                    kind: DocumentKind::parse(&kind).unwrap_or(DocumentKind::Text),
                    language: r.get(3)?,
                    content_hash: r.get(4)?,
                    bytes: r.get::<_, i64>(5)? as u64,
                    modified: r.get(6)?,
                    replaced_chars: r.get::<_, i64>(7)? as u64,
                    image: width.zip(height).map(|(w, h)| ImageInfo {
                        width: w as u32,
                        height: h as u32,
                    }),
                    segments: Vec::new(),
                    symbols: Vec::new(),
                    title: r.get(10)?,
                    commits: r.get::<_, i64>(11)? as u32,
                })
            })
            .map_err(|e| self.err(e))?;
        for row in rows {
            docs.push(row.map_err(|e| self.err(e))?);
        }
        // With a filter, the wanted ids go into a temporary table that the
        // segment and symbol queries join, so only their rows are read.
        let scope = if let Some(paths) = only {
            docs.retain(|d| paths.contains(&d.path));
            self.conn
                .execute_batch("CREATE TEMP TABLE IF NOT EXISTS wanted (id INTEGER PRIMARY KEY); DELETE FROM wanted;")
                .map_err(|e| self.err(e))?;
            let mut ins = self
                .conn
                .prepare_cached("INSERT INTO wanted VALUES (?1)")
                .map_err(|e| self.err(e))?;
            for d in &docs {
                ins.execute([d.id]).map_err(|e| self.err(e))?;
            }
            " WHERE doc_id IN (SELECT id FROM wanted)"
        } else {
            ""
        };
        let index: BTreeMap<i64, usize> = docs.iter().enumerate().map(|(i, d)| (d.id, i)).collect();
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT doc_id, line_start, line_end, page, x, y, w, h, text FROM segments{scope} ORDER BY doc_id, ord"
            ))
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                let bbox = (
                    r.get::<_, Option<u32>>(4)?,
                    r.get::<_, Option<u32>>(5)?,
                    r.get::<_, Option<u32>>(6)?,
                    r.get::<_, Option<u32>>(7)?,
                );
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Option<u32>>(1)?,
                    r.get::<_, Option<u32>>(2)?,
                    r.get::<_, Option<u32>>(3)?,
                    bbox,
                    r.get::<_, String>(8)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        for row in rows {
            let (doc_id, start, end, page, bbox, text) = row.map_err(|e| self.err(e))?;
            let Some(&i) = index.get(&doc_id) else { continue };
            let path = docs[i].path.clone();
            let anchor = match (start, end, page, bbox) {
                (Some(start), Some(end), _, _) => Anchor::Lines { path, start, end },
                (_, _, Some(page), (Some(x), Some(y), Some(w), Some(h))) => Anchor::Region { path, page, x, y, w, h },
                (_, _, Some(page), _) => Anchor::Page { path, page },
                _ => Anchor::Document { path },
            };
            docs[i].segments.push(Segment { anchor, text });
        }
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT doc_id, name, kind, start_line, end_line FROM symbols{scope} ORDER BY doc_id, start_line, end_line DESC"
            ))
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    Symbol {
                        name: r.get(1)?,
                        kind: r.get(2)?,
                        start_line: r.get(3)?,
                        end_line: r.get(4)?,
                    },
                ))
            })
            .map_err(|e| self.err(e))?;
        for row in rows {
            let (doc_id, sym) = row.map_err(|e| self.err(e))?;
            if let Some(&i) = index.get(&doc_id) {
                docs[i].symbols.push(sym);
            }
        }
        Ok(docs)
    }

    /// Every document's path and kind, without reading its text.
    pub fn document_kinds(&self) -> Result<Vec<(String, String)>, CorpusError> {
        let mut stmt = self
            .conn
            .prepare("SELECT path, kind FROM documents ORDER BY path")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// The roots its kept ingest runs read, as they were given, each once,
    /// in the order first read.
    pub fn ingest_roots(&self) -> Result<Vec<String>, CorpusError> {
        let mut stmt = self
            .conn
            .prepare("SELECT roots FROM ingest_runs ORDER BY id")
            .map_err(|e| self.err(e))?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0)).map_err(|e| self.err(e))?;
        let mut roots: Vec<String> = Vec::new();
        for run in rows {
            let run = run.map_err(|e| self.err(e))?;
            for root in serde_json::from_str::<Vec<String>>(&run).unwrap_or_default() {
                if !roots.contains(&root) {
                    roots.push(root);
                }
            }
        }
        Ok(roots)
    }

    /// Prompt token totals already counted under `key`, by path.
    pub fn document_token_totals(&self, key: &str) -> Result<HashMap<String, u64>, CorpusError> {
        let mut stmt = self
            .conn
            .prepare("SELECT path, tokens FROM documents WHERE tokens_key = ?1 AND tokens IS NOT NULL")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([key], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Documents with no prompt token total counted under `key`.
    pub fn documents_without_totals(&self, key: &str) -> Result<HashSet<String>, CorpusError> {
        let mut stmt = self
            .conn
            .prepare("SELECT path FROM documents WHERE tokens_key IS NOT ?1 OR tokens IS NULL")
            .map_err(|e| self.err(e))?;
        let rows = stmt.query_map([key], |r| r.get(0)).map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// How many documents have a prompt token total counted under `key`,
    /// and the sum of those totals.
    pub fn document_token_sum(&self, key: &str) -> Result<(u64, u64), CorpusError> {
        self.conn
            .query_row(
                "SELECT count(*), coalesce(sum(tokens), 0) FROM documents WHERE tokens_key = ?1 AND tokens IS NOT NULL",
                [key],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
            )
            .map_err(|e| self.err(e))
    }

    /// How many documents the corpus holds.
    pub fn document_count(&self) -> Result<u64, CorpusError> {
        self.rows_in("documents")
    }

    /// Records prompt token totals (path, tokens) counted under `key`.
    pub fn store_document_token_totals(&mut self, key: &str, totals: &[(String, u64)]) -> Result<(), CorpusError> {
        self.execute_many(SET_TOTAL, totals.iter().map(|(p, n)| (*n as i64, key, p.as_str())))
    }

    /// Runs `sql` once per row of parameters, all in one transaction.
    fn execute_many<P: rusqlite::Params>(
        &mut self,
        sql: &str,
        rows: impl Iterator<Item = P>,
    ) -> Result<(), CorpusError> {
        let path = self.path.clone();
        let err = |source| CorpusError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        {
            let mut stmt = tx.prepare_cached(sql).map_err(err)?;
            for row in rows {
                stmt.execute(row).map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }

    /// Size and modification time of every stored file, by path: a walk
    /// skips reading files that still match. An image whose own bytes the
    /// corpus lacks (ingested by a scout that kept only scanned PDF pages)
    /// is left out, so it is read again and its bytes kept (not one over the
    /// pixel limit, which is never kept).
    pub fn known_files(&self) -> Result<KnownFiles, CorpusError> {
        known_files(&self.conn).map_err(|e| self.err(e))
    }

    /// The documents written or removed since the walk listing was kept,
    /// with what the corpus now holds for each (as [`Corpus::known_files`]
    /// gives it; `None` when nothing): to bring the listing up to date.
    pub fn touched_files(&self) -> Result<Vec<(String, Option<KnownFile>)>, CorpusError> {
        let query = format!(
            "SELECT t.path, d.bytes, d.mtime_ns FROM documents_touched t
             LEFT JOIN documents d ON d.path = t.path AND ({KNOWN})"
        );
        let mut stmt = self.conn.prepare(&query).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([crate::limits::MAX_SCAN_PIXELS as i64], |r| {
                let known = match (r.get::<_, Option<i64>>(1)?, r.get::<_, Option<i64>>(2)?) {
                    (Some(bytes), Some(mtime_ns)) => Some(KnownFile {
                        bytes: bytes as u64,
                        mtime_ns,
                    }),
                    _ => None,
                };
                Ok((r.get::<_, String>(0)?, known))
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Llama 4 vision tokens for every image in the corpus.
    pub fn llama4_image_tokens(&self) -> Result<u64, CorpusError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT width, height FROM documents WHERE kind = 'image' AND width IS NOT NULL AND height IS NOT NULL",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, u32>(0)?, r.get::<_, u32>(1)?)))
            .map_err(|e| self.err(e))?;
        let mut total = 0u64;
        for row in rows {
            let (w, h) = row.map_err(|e| self.err(e))?;
            total += u64::from(llama4_tiling(w, h).tokens);
        }
        Ok(total)
    }

    /// Whether the stored text keeps secrets (`true`) or has them redacted;
    /// `None` for a corpus never ingested into.
    /// A value from the corpus's metadata.
    pub fn meta(&self, key: &str) -> Result<Option<String>, CorpusError> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Every meta value whose key starts with `prefix`, by key.
    pub fn meta_starting(&self, prefix: &str) -> Result<HashMap<String, String>, CorpusError> {
        let mut stmt = self
            .conn
            .prepare("SELECT key, value FROM meta WHERE substr(key, 1, length(?1)) = ?1")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([prefix], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    pub fn set_meta(&self, key: &str, value: &str) -> Result<(), CorpusError> {
        self.conn
            .execute("INSERT OR REPLACE INTO meta VALUES (?1, ?2)", [key, value])
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Sets documents' git history, by path, in one transaction: the
    /// last-change time (seconds) and the commits that changed them, which
    /// are added to those recorded when `add` (a read of only the newer
    /// commits). Paths not in the corpus are passed over.
    pub fn set_history(&mut self, history: &[(String, i64, u32)], add: bool) -> Result<(), CorpusError> {
        let err = |e: rusqlite::Error| CorpusError::Corrupt {
            path: self.path.clone(),
            detail: e.to_string(),
        };
        let tx = self.conn.transaction().map_err(err)?;
        {
            let mut stmt = tx
                .prepare("UPDATE documents SET modified = ?1 WHERE path = ?2")
                .map_err(err)?;
            let mut commits = tx
                .prepare(if add {
                    "INSERT INTO git_commits VALUES (?1, ?2)
                     ON CONFLICT(path) DO UPDATE SET commits = commits + excluded.commits"
                } else {
                    "INSERT OR REPLACE INTO git_commits VALUES (?1, ?2)"
                })
                .map_err(err)?;
            for (path, t, n) in history {
                stmt.execute(params![t, path]).map_err(err)?;
                commits.execute(params![path, n]).map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }

    pub fn keeps_secrets(&self) -> Result<Option<bool>, CorpusError> {
        let v: Option<String> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'keep_secrets'", [], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))?;
        Ok(v.map(|v| v == "1"))
    }

    pub fn set_keeps_secrets(&self, keep: bool) -> Result<(), CorpusError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO meta VALUES ('keep_secrets', ?1)",
                [if keep { "1" } else { "0" }],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// The listing of the sources the last full walk recorded (see
    /// [`crate::ingest::listing`]), as bytes.
    pub fn walk_listing(&self) -> Result<Option<Vec<u8>>, CorpusError> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = 'walk_listing'", [], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Keeps (or, with `None`, drops) the listing of the last walk, with
    /// what the corpus holds for each of its files (set in `listing` too).
    /// Kept as a blob in the text column (`SQLite` keeps a blob as it is).
    pub fn set_walk_listing(&mut self, listing: Option<&mut Listing>) -> Result<(), CorpusError> {
        let path = self.path.clone();
        let err = |source| CorpusError::Sqlite {
            path: path.clone(),
            source,
        };
        // What the listing says of the files, and the log of what changed
        // since, agree: read, kept and emptied in one transaction.
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err)?;
        match listing {
            Some(listing) => {
                listing.set_known(&known_files(&tx).map_err(err)?);
                tx.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('walk_listing', ?1)",
                    [listing.to_bytes()],
                )
            }
            None => tx.execute("DELETE FROM meta WHERE key = 'walk_listing'", []),
        }
        .map_err(err)?;
        tx.execute("DELETE FROM documents_touched", []).map_err(err)?;
        tx.commit().map_err(err)
    }

    /// Cached token counts for `hashes` under `tokenizer`.
    pub fn token_counts(&self, tokenizer: &str, hashes: &[String]) -> Result<Vec<Option<u32>>, CorpusError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT tokens FROM token_counts WHERE text_hash = ?1 AND tokenizer = ?2")
            .map_err(|e| self.err(e))?;
        hashes
            .iter()
            .map(|h| {
                stmt.query_row(params![h, tokenizer], |r| r.get::<_, u32>(0))
                    .optional()
                    .map_err(|e| self.err(e))
            })
            .collect()
    }

    /// Stores token counts (text hash, tokens) under `tokenizer`.
    pub fn store_token_counts(&mut self, tokenizer: &str, counts: &[(String, u32)]) -> Result<(), CorpusError> {
        self.execute_many(
            "INSERT OR REPLACE INTO token_counts VALUES (?1, ?2, ?3)",
            counts.iter().map(|(hash, tokens)| (hash.as_str(), tokenizer, *tokens)),
        )
    }
}

fn new_salt() -> String {
    let mut bytes = [0u8; 8];
    // Without OS randomness, fall back to a hash of time and process: the
    // salt must be unpredictable to file authors, not cryptographically
    // perfect.
    if getrandom::fill(&mut bytes).is_err() {
        let seed = format!("{:?}{}", std::time::SystemTime::now(), std::process::id());
        bytes.copy_from_slice(&blake3::hash(seed.as_bytes()).as_bytes()[..8]);
    }
    blake3::hash(&bytes).to_hex()[..16].to_owned()
}

fn upsert_document(tx: &Transaction<'_>, doc: &Document, rewrite: bool) -> rusqlite::Result<Upsert> {
    // Cached statements: one upsert per file, tens of thousands of rows.
    let existing: Option<(i64, String)> = tx
        .prepare_cached("SELECT id, content_hash FROM documents WHERE path = ?1")?
        .query_row([&doc.path], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let outcome = match &existing {
        Some((_, hash)) if *hash == doc.content_hash && !rewrite => {
            // Same bytes: keep segments; only the modification time may move.
            // Same bytes: not a change, so the document keeps its place in
            // the order (`modified`, maybe from git history); only the
            // stat fast path's time moves.
            tx.prepare_cached("UPDATE documents SET mtime_ns = ?1 WHERE path = ?2")?
                .execute(params![doc.mtime_ns, doc.path])?;
            // Images the corpus did not keep before (an older scout's).
            if let Some((id, _)) = &existing {
                let kept: bool = tx
                    .prepare_cached("SELECT EXISTS (SELECT 1 FROM page_images WHERE doc_id = ?1)")?
                    .query_row([id], |r| r.get(0))?;
                if !kept {
                    let mut stmt = tx.prepare_cached("INSERT INTO page_images VALUES (?1, ?2, ?3)")?;
                    for (page, bytes) in &doc.page_images {
                        stmt.execute(params![id, page, bytes])?;
                    }
                }
            }
            return Ok(Upsert::Unchanged);
        }
        Some((id, _)) => {
            tx.prepare_cached("DELETE FROM documents WHERE id = ?1")?
                .execute([id])?;
            Upsert::Changed
        }
        None => Upsert::Added,
    };
    tx.prepare_cached(
        "INSERT INTO documents (path, kind, language, content_hash, bytes, modified, mtime_ns, replaced_chars, width, height, title)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
            doc.path,
            doc.kind.as_str(),
            doc.language,
            doc.content_hash,
            doc.bytes as i64,
            doc.modified,
            doc.mtime_ns,
            doc.replaced_chars as i64,
            doc.image.map(|i| i.width),
            doc.image.map(|i| i.height),
            doc.title,
    ])?;
    let id = tx.last_insert_rowid();
    let mut stmt = tx.prepare_cached("INSERT INTO symbols VALUES (?1, ?2, ?3, ?4, ?5)")?;
    for sym in &doc.symbols {
        stmt.execute(params![id, sym.name, sym.kind, sym.start_line, sym.end_line])?;
    }
    let mut stmt = tx.prepare_cached("INSERT INTO secrets VALUES (?1, ?2, ?3, ?4)")?;
    for f in &doc.secrets {
        stmt.execute(params![id, f.line, f.page, f.kind])?;
    }
    let mut stmt = tx.prepare_cached("INSERT INTO segments VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)")?;
    for (ord, seg) in doc.segments.iter().enumerate() {
        let (start, end, page, bbox) = match seg.anchor {
            Anchor::Lines { start, end, .. } => (Some(start), Some(end), None, None),
            Anchor::Page { page, .. } => (None, None, Some(page), None),
            Anchor::Region { page, x, y, w, h, .. } => (None, None, Some(page), Some((x, y, w, h))),
            Anchor::Document { .. } => (None, None, None, None),
        };
        stmt.execute(params![
            id,
            ord as i64,
            start,
            end,
            page,
            bbox.map(|b| b.0),
            bbox.map(|b| b.1),
            bbox.map(|b| b.2),
            bbox.map(|b| b.3),
            seg.text
        ])?;
    }
    let mut stmt = tx.prepare_cached("INSERT INTO page_images VALUES (?1, ?2, ?3)")?;
    for (page, bytes) in &doc.page_images {
        stmt.execute(params![id, page, bytes])?;
    }
    let mut stmt = tx.prepare_cached("INSERT INTO ocr_lines VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")?;
    for line in &doc.ocr_lines {
        stmt.execute(params![
            id,
            line.page,
            line.x,
            line.y,
            line.w,
            line.h,
            f64::from(line.confidence),
            line.text
        ])?;
    }
    Ok(outcome)
}

/// Which documents a walk may find unchanged by size and time (see
/// [`Corpus::known_files`]), for `documents d`, with the pixel limit as
/// `?1`.
const KNOWN: &str = "d.kind != 'image' OR d.width IS NULL OR d.width * d.height > ?1
    OR EXISTS (SELECT 1 FROM page_images p WHERE p.doc_id = d.id)";

fn known_files(conn: &rusqlite::Connection) -> rusqlite::Result<KnownFiles> {
    let mut stmt = conn.prepare(&format!("SELECT path, bytes, mtime_ns FROM documents d WHERE {KNOWN}"))?;
    let rows = stmt.query_map([crate::limits::MAX_SCAN_PIXELS as i64], |r| {
        Ok((
            r.get::<_, String>(0)?,
            KnownFile {
                bytes: r.get::<_, i64>(1)? as u64,
                mtime_ns: r.get(2)?,
            },
        ))
    })?;
    // Sized once: growing a map of a large tree rehashes it a dozen times.
    let mut known =
        KnownFiles::with_capacity_and_hasher(rows_in(conn, "documents")? as usize, rustc_hash::FxBuildHasher);
    for row in rows {
        let (path, file) = row?;
        known.insert(path, file);
    }
    Ok(known)
}

/// How many rows `table` (one of the schema's) holds. Documents are
/// counted on their smallest index: left to choose, `SQLite` counts them
/// on the index of their paths, seven times the size (a re-ingest of a
/// large tree counts them three times).
fn rows_in(conn: &rusqlite::Connection, table: &str) -> rusqlite::Result<u64> {
    let from = if table == "documents" {
        "documents INDEXED BY documents_kind_bytes"
    } else {
        table
    };
    conn.query_row(&format!("SELECT count(*) FROM {from}"), [], |r| r.get::<_, i64>(0))
        .map(|n| n as u64)
}

/// Deletes documents that lie under one of `roots` but were not seen in
/// this run (deleted or now skipped files): not in `seen`, nor among the
/// `listed` files of a listing. Documents under other roots are left
/// alone: ingesting a second folder adds to a corpus.
fn remove_missing(
    tx: &Transaction<'_>,
    roots: &[String],
    seen: &rustc_hash::FxHashSet<String>,
    listed: &[(std::sync::Arc<Listing>, Vec<u32>)],
) -> rusqlite::Result<u64> {
    // Every path seen is a document by now (a file found unchanged was
    // one, a file read has just been stored), and a listing names each
    // file once: when there are as many documents as paths seen, none is
    // missing.
    let listed_count: usize = listed.iter().map(|(_, entries)| entries.len()).sum();
    if rows_in(tx, "documents")? as usize == seen.len() + listed_count {
        return Ok(0);
    }
    let listed: rustc_hash::FxHashSet<&str> = listed
        .iter()
        .flat_map(|(listing, entries)| entries.iter().map(|&i| listing.shown(&listing.entries[i as usize])))
        .collect();
    let mut stmt = tx.prepare("SELECT id, path FROM documents")?;
    let all: Vec<(i64, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut removed = 0;
    for (id, path) in all {
        let under = roots.iter().any(|root| {
            root.is_empty()
                || root == "."
                || path == *root
                || path.starts_with(&format!("{}/", root.trim_end_matches('/')))
        });
        if under && !seen.contains(&path) && !listed.contains(path.as_str()) {
            tx.execute("DELETE FROM documents WHERE id = ?1", [id])?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(path: &str, text: &str) -> Document {
        let mut d = Document::new(
            path.into(),
            DocumentKind::Text,
            blake3::hash(text.as_bytes()).to_hex().to_string(),
            text.len() as u64,
            1,
        );
        d.segments = crate::ingest::split_text(path, text);
        d
    }

    #[test]
    fn documents_written_after_the_listing_was_kept_are_logged_until_it_is_kept_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Corpus::open(&dir.path().join("c.db")).unwrap();
        let store = |c: &mut Corpus, docs: &[(&str, &str)]| {
            let items = docs.iter().map(|(p, t)| WalkItem::Document(Box::new(doc(p, t))));
            c.store_run(&["r".into()], items.collect::<Vec<_>>(), false).unwrap();
        };
        let listing = || {
            let entry = |p: &str| {
                (
                    p.to_owned(),
                    crate::ingest::listing::Entry::new(Path::new(p), p, 1, None, false, true, false),
                )
            };
            Listing::new("k".into(), Vec::new(), vec![entry("r/a"), entry("r/b")])
        };
        // No listing kept: nothing is logged.
        store(&mut c, &[("r/a", "one\n"), ("r/b", "two\n")]);
        assert!(c.touched_files().unwrap().is_empty());
        let mut kept = listing();
        c.set_walk_listing(Some(&mut kept)).unwrap();
        let known = c.known_files().unwrap();
        assert_eq!(kept.entries[0].known, known.get("r/a").copied());
        assert!(kept.entries[1].known.is_some());
        // A rewritten document and a removed one, with what the corpus now
        // holds of each.
        store(&mut c, &[("r/a", "one, longer\n")]);
        let touched = c.touched_files().unwrap();
        assert_eq!(
            touched,
            [
                ("r/a".to_owned(), c.known_files().unwrap().get("r/a").copied()),
                ("r/b".to_owned(), None)
            ]
        );
        assert_eq!(touched[0].1.map(|k| k.bytes), Some(12));
        kept.update_known(&touched);
        assert_eq!(kept.entries[1].known, None);
        // Kept again: the log starts over; dropped: nothing is logged.
        c.set_walk_listing(Some(&mut listing())).unwrap();
        assert!(c.touched_files().unwrap().is_empty());
        c.set_walk_listing(None).unwrap();
        store(&mut c, &[("r/a", "one\n")]);
        assert!(c.touched_files().unwrap().is_empty());
    }

    #[test]
    fn reingest_rewrites_only_what_changed_and_removes_what_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Corpus::open(&dir.path().join("c.db")).unwrap();
        let s = c
            .store_run(
                &["r".into()],
                vec![
                    WalkItem::Document(Box::new(doc("r/a", "one\n"))),
                    WalkItem::Document(Box::new(doc("r/b", "two\n"))),
                ],
                false,
            )
            .unwrap();
        assert_eq!((s.added, s.documents, s.segments), (2, 2, 2));
        let s = c
            .store_run(
                &["r".into()],
                vec![
                    WalkItem::Document(Box::new(doc("r/a", "one\n"))),
                    WalkItem::Document(Box::new(doc("r/c", "three\n"))),
                ],
                false,
            )
            .unwrap();
        assert_eq!((s.added, s.unchanged, s.removed, s.documents), (1, 1, 1, 2));
        let s = c
            .store_run(
                &["r".into()],
                vec![
                    WalkItem::Document(Box::new(doc("r/a", "ONE\n"))),
                    WalkItem::Document(Box::new(doc("r/c", "three\n"))),
                ],
                false,
            )
            .unwrap();
        assert_eq!((s.changed, s.unchanged), (1, 1));
        let docs = c.documents().unwrap();
        assert_eq!(
            docs.iter().map(|d| d.path.as_str()).collect::<Vec<_>>(),
            vec!["r/a", "r/c"]
        );
        assert_eq!(docs[0].segments[0].text, "ONE\n");
    }

    use crate::document::SkipReason;

    #[test]
    fn other_roots_are_kept_and_skips_counted() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Corpus::open(&dir.path().join("c.db")).unwrap();
        c.store_run(
            &["x".into()],
            vec![WalkItem::Document(Box::new(doc("x/a", "a\n")))],
            false,
        )
        .unwrap();
        let skip = Skip {
            path: "y/bad".into(),
            reason: SkipReason::Unreadable,
            detail: "denied".into(),
        };
        let s = c
            .store_run(
                &["y".into()],
                vec![WalkItem::Document(Box::new(doc("y/b", "b\n"))), WalkItem::Skip(skip)],
                false,
            )
            .unwrap();
        assert_eq!((s.documents, s.removed, s.errors), (2, 0, 1));
        assert_eq!(s.skipped.get("unreadable"), Some(&1));
    }

    #[test]
    fn only_the_latest_runs_keep_their_skips_and_summaries() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Corpus::open(&dir.path().join("c.db")).unwrap();
        for run in 0..KEPT_RUNS + 5 {
            let skip = Skip {
                path: format!("x/bad{run}"),
                reason: SkipReason::Binary,
                detail: "NUL byte".into(),
            };
            c.store_run(&["x".into()], vec![WalkItem::Skip(skip)], false).unwrap();
        }
        let runs = c.rows_in("ingest_runs").unwrap();
        assert_eq!(runs, KEPT_RUNS as u64);
        assert_eq!(c.rows_in("skips").unwrap(), runs);
        let last = c.last_skips().unwrap();
        assert_eq!(last.len(), 1);
        assert_eq!(last[0].0, format!("x/bad{}", KEPT_RUNS + 4));
    }

    #[test]
    fn salt_is_kept_and_other_sqlite_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.db");
        let salt = Corpus::open(&p).unwrap().salt().to_owned();
        assert_eq!(salt.len(), 16);
        assert_eq!(Corpus::open(&p).unwrap().salt(), salt);
        assert!(Corpus::is_corpus_file(&p));
        let other = dir.path().join("other.db");
        Connection::open(&other)
            .unwrap()
            .execute_batch("CREATE TABLE t (x)")
            .unwrap();
        assert!(matches!(Corpus::open(&other), Err(CorpusError::NotACorpus { .. })));
        assert!(!Corpus::is_corpus_file(&other));
    }

    #[test]
    fn token_counts_are_cached_per_tokenizer() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Corpus::open(&dir.path().join("c.db")).unwrap();
        c.store_token_counts("tokA", &[("h1".into(), 7)]).unwrap();
        assert_eq!(
            c.token_counts("tokA", &["h1".into(), "h2".into()]).unwrap(),
            vec![Some(7), None]
        );
        assert_eq!(c.token_counts("tokB", &["h1".into()]).unwrap(), vec![None]);
    }
}
