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
//!
//! Files: this one opens a corpus (and holds its types); `schema` the
//! tables, `store` the writes, `queries` the reads, `summary` what a run
//! reports.

mod queries;
mod schema;
mod store;
mod summary;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension};

use crate::anchor::Anchor;
use crate::ingest::outline::Symbol;
use crate::ingest::{Document, DocumentKind, ImageInfo, Segment};
use schema::{KEPT_RUNS, KEPT_SKIP_RUNS, SCHEMA, SCHEMA_FINGERPRINT, SET_TOTAL};
pub use summary::{GitSummary, IngestSummary, ListingUse, PeakRss, Upsert};

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
    #[error(
        "{path} is being written by another scout process (an ingest, or an ask over a folder); \
         waited {}s for it to finish. Try again when it has, or use a corpus file of your own.",
        BUSY_WAIT.as_secs()
    )]
    Busy { path: PathBuf },
    #[error("{path} holds documents: its boundary salt cannot change (their prompts were laid out with it)")]
    SaltInUse { path: PathBuf },
}

/// How long a write waits for another process's write to the same corpus.
pub const BUSY_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

impl CorpusError {
    /// An `SQLite` error on the corpus at `path`; a lock another process holds
    /// past [`BUSY_WAIT`] is [`CorpusError::Busy`], not the bare
    /// "database is locked".
    #[must_use]
    pub fn sqlite(path: &Path, source: rusqlite::Error) -> Self {
        if source.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy) {
            Self::Busy { path: path.to_owned() }
        } else {
            Self::Sqlite {
                path: path.to_owned(),
                source,
            }
        }
    }
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

    /// A code document of one segment, lines 1 to its last (tests build
    /// their corpora with it).
    #[must_use]
    pub fn code(path: &str, text: &str) -> Self {
        let anchor = crate::anchor::Anchor::Lines {
            path: path.to_owned(),
            start: 1,
            end: text.lines().count() as u32,
        };
        Self::with_segments(
            path,
            DocumentKind::Code,
            vec![Segment {
                anchor,
                text: text.to_owned(),
            }],
        )
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

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Corpus {
    /// Opens the corpus at `path`, creating it (with a fresh secret salt) if
    /// the file does not exist.
    pub fn open(path: &Path) -> Result<Corpus, CorpusError> {
        let err = |source| CorpusError::sqlite(path, source);
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| CorpusError::Corrupt {
                path: path.to_owned(),
                detail: format!("cannot create folder {}: {e}", parent.display()),
            })?;
        }
        let mut conn = Connection::open(path).map_err(err)?;
        conn.pragma_update(None, "foreign_keys", true).map_err(err)?;
        conn.busy_timeout(BUSY_WAIT).map_err(err)?;
        let header = |conn: &Connection| -> rusqlite::Result<(i64, i32)> {
            Ok((
                conn.pragma_query_value(None, "application_id", |r| r.get(0))?,
                conn.pragma_query_value(None, "user_version", |r| r.get(0))?,
            ))
        };
        let not_a_corpus = |e: rusqlite::Error| {
            if matches!(e, rusqlite::Error::SqliteFailure(..)) {
                CorpusError::NotACorpus { path: path.to_owned() }
            } else {
                err(e)
            }
        };
        // The schema's statements run only when the file's fingerprint of
        // them differs (a new file, or one an older scout wrote): they
        // take half a millisecond, on every open. They run in one
        // transaction with the application id and the meta rows, so a
        // file is a whole corpus or an empty one, never half of one (a
        // kill, or another process making the same file, in between).
        if header(&conn).map_err(not_a_corpus)? != (APPLICATION_ID, SCHEMA_FINGERPRINT) {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(not_a_corpus)?;
            let (app_id, fingerprint) = header(&tx).map_err(err)?;
            if app_id != APPLICATION_ID {
                let tables: i64 = tx
                    .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
                    .map_err(not_a_corpus)?;
                if tables > 0 {
                    return Err(CorpusError::NotACorpus { path: path.to_owned() });
                }
            }
            if fingerprint != SCHEMA_FINGERPRINT {
                tx.execute_batch(SCHEMA).map_err(err)?;
                tx.pragma_update(None, "user_version", SCHEMA_FINGERPRINT)
                    .map_err(err)?;
            }
            tx.pragma_update(None, "application_id", APPLICATION_ID).map_err(err)?;
            let version: Option<String> = tx
                .query_row("SELECT value FROM meta WHERE key='schema'", [], |r| r.get(0))
                .optional()
                .map_err(err)?;
            if version.is_none() {
                tx.execute("INSERT INTO meta VALUES ('schema', ?1)", [SCHEMA_VERSION.to_string()])
                    .map_err(err)?;
                tx.execute("INSERT OR IGNORE INTO meta VALUES ('salt', ?1)", [new_salt()])
                    .map_err(err)?;
            }
            tx.commit().map_err(err)?;
        }
        let version: Option<String> = conn
            .query_row("SELECT value FROM meta WHERE key='schema'", [], |r| r.get(0))
            .optional()
            .map_err(err)?;
        match version.map(|v| v.parse::<i64>()) {
            Some(Ok(v)) if v == SCHEMA_VERSION => {}
            Some(Ok(found)) => {
                return Err(CorpusError::Schema {
                    path: path.to_owned(),
                    found,
                })
            }
            None | Some(Err(_)) => {
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
        CorpusError::sqlite(&self.path, source)
    }

    /// Sets the boundary salt of a corpus that holds no documents yet: a
    /// bench that must lay out the same prompt on every run gives the salt
    /// itself (derived from a secret, so still unknown to file authors).
    pub fn set_salt(&mut self, salt: &str) -> Result<(), CorpusError> {
        if self.document_count()? > 0 {
            return Err(CorpusError::SaltInUse {
                path: self.path.clone(),
            });
        }
        self.set_meta("salt", salt)?;
        salt.clone_into(&mut self.salt);
        Ok(())
    }

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::Skip;
    use crate::ingest::listing::Listing;
    use crate::ingest::WalkItem;

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
        assert_eq!(c.rows_in("skips").unwrap(), KEPT_SKIP_RUNS as u64);
        let last = c.last_skips().unwrap();
        assert_eq!(last.len(), 1);
        assert_eq!(last[0].0, format!("x/bad{}", KEPT_RUNS + 4));
    }

    /// A second writer waited 10 s and failed with the bare "database
    /// is locked"; it waits longer now and says another process holds it.
    #[test]
    fn a_second_writer_is_told_another_process_is_writing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.db");
        let first = Corpus::open(&p).unwrap();
        first.conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        let mut second = Corpus::open(&p).unwrap();
        second.conn.busy_timeout(std::time::Duration::from_millis(50)).unwrap();
        let e = second.store_run(&["x".into()], vec![], false).unwrap_err();
        assert!(matches!(e, CorpusError::Busy { .. }), "{e:?}");
        assert!(e.to_string().contains("another scout process"), "{e}");
        first.conn.execute_batch("ROLLBACK").unwrap();
        second.store_run(&["x".into()], vec![], false).unwrap();
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

    /// Reliability case 28: the schema's statements committed one by one
    /// before the application id was set, so a second process opening the
    /// same new file (or a kill) in that window left a file refused for
    /// ever as "not a scout corpus". Now a file is made in one transaction.
    #[test]
    fn a_corpus_made_by_several_openers_at_once_is_whole_for_each() {
        let dir = tempfile::tempdir().unwrap();
        for round in 0..20 {
            let p = dir.path().join(format!("c{round}.db"));
            let salts: Vec<String> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..6)
                    .map(|_| s.spawn(|| Corpus::open(&p).map(|c| c.salt().to_owned())))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap().unwrap_or_else(|e| panic!("round {round}: {e}")))
                    .collect()
            });
            assert!(salts.iter().all(|s| *s == salts[0]), "one salt: {salts:?}");
        }
    }

    /// A creation that dies before its commit leaves nothing of the schema
    /// behind: the next open makes the corpus.
    #[test]
    fn a_creation_that_dies_before_its_commit_leaves_an_empty_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.db");
        {
            let mut conn = Connection::open(&p).unwrap();
            let tx = conn.transaction().unwrap();
            tx.execute_batch(&SCHEMA[..SCHEMA.len() / 2]).ok();
            // Dropped without a commit, as a killed process's would be.
        }
        assert!(Corpus::open(&p).is_ok());
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
