//! The corpus file's tables, and the fingerprint that says whether a file's
//! statements already ran.
//!
//! Never runs a statement: `Corpus::open` does.

pub(super) const SCHEMA: &str = "
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

/// Ingest runs whose summaries a corpus keeps.
pub(super) const KEPT_RUNS: i64 = 20;

/// Ingest runs whose skips (one row per skipped path) a corpus keeps: a
/// tree of 100k skipped files re-ingested 21 times left 2M rows (121 MB)
/// when skips were kept as long as summaries. The summaries keep the counts.
pub(super) const KEPT_SKIP_RUNS: i64 = 2;

/// Records one document's prompt tokens: (tokens, key, path).
pub(super) const SET_TOTAL: &str = "UPDATE documents SET tokens = ?1, tokens_key = ?2 WHERE path = ?3";

/// [`SCHEMA`]'s fingerprint (FNV-1a, 31 bits), kept as the corpus file's
/// `user_version` once its statements have run.
pub(super) const SCHEMA_FINGERPRINT: i32 = {
    let bytes = SCHEMA.as_bytes();
    let mut hash: u32 = 0x811c_9dc5;
    let mut i = 0;
    while i < bytes.len() {
        hash = (hash ^ bytes[i] as u32).wrapping_mul(0x0100_0193);
        i += 1;
    }
    (hash & 0x7fff_ffff) as i32
};
