//! Sources a task runs over: one corpus file made by `scout ingest`, or
//! folders and files read (again: only what changed) into a cache corpus
//! of their own in scout's cache folder, one per set of roots.
//!
//! In: paths as the user gave them, and how to walk them. Out: an open
//! corpus, and the summary of the read when there was one.
//! Never prints: progress goes to the caller's `on_file`, notes to `say`.

use std::path::{Path, PathBuf};

use crate::corpus::{Corpus, CorpusError, IngestSummary};
use crate::ingest::WalkOptions;
use crate::model::store;
use crate::tasks::ingest::ingest;

#[derive(Debug, thiserror::Error)]
pub enum SourcesError {
    #[error("{0}: no such file or folder")]
    Missing(PathBuf),
    #[error("{0} is a corpus file; use one corpus file alone, or folders and files")]
    CorpusAmongOthers(PathBuf),
    #[error("removing {path}: {error}")]
    Remove { path: PathBuf, error: std::io::Error },
    #[error(transparent)]
    Corpus(#[from] CorpusError),
}

/// Fails on the first source that does not exist.
pub fn check_sources(paths: &[PathBuf]) -> Result<(), SourcesError> {
    match paths.iter().find(|p| !p.exists()) {
        Some(p) => Err(SourcesError::Missing(p.clone())),
        None => Ok(()),
    }
}

/// The cache corpus for sources read on the fly: one per set of roots (and
/// OCR layout: scans read as rows hold other text than as columns).
#[must_use]
pub fn cache_corpus_path(sources: &[PathBuf], ocr_rows: bool) -> PathBuf {
    let mut h = blake3::Hasher::new();
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

/// The corpus to work on: a corpus file given alone, or folders and files
/// read (incrementally) into their cache corpus, with the read's summary.
pub fn open_sources(
    sources: &[PathBuf],
    walk: &WalkOptions,
    on_file: &mut dyn FnMut(&str),
    say: &mut dyn FnMut(&str),
) -> Result<(Corpus, Option<IngestSummary>), SourcesError> {
    let single_corpus = sources.len() == 1 && sources[0].is_file() && Corpus::is_corpus_file(&sources[0]);
    if single_corpus {
        return Ok((Corpus::open(&sources[0])?, None));
    }
    if let Some(c) = sources.iter().find(|s| s.is_file() && Corpus::is_corpus_file(s)) {
        return Err(SourcesError::CorpusAmongOthers(c.clone()));
    }
    let path = cache_corpus_path(sources, walk.ocr_rows);
    let mut corpus = open_cache(&path, say)?;
    let summary = ingest(&mut corpus, sources, walk, None, on_file)?;
    Ok((corpus, Some(summary)))
}

/// A cache corpus: scout's own, so one an older scout wrote, or one left
/// half-made (by a scout killed while creating it, before creation was one
/// transaction), is rebuilt, not refused.
pub fn open_cache(path: &Path, say: &mut dyn FnMut(&str)) -> Result<Corpus, SourcesError> {
    let why = match Corpus::open(path) {
        Err(CorpusError::Schema { found, .. }) => format!("was written by an older scout (schema {found})"),
        Err(CorpusError::NotACorpus { .. } | CorpusError::Corrupt { .. }) => "is damaged or half-made".to_owned(),
        other => return Ok(other?),
    };
    say(&format!(
        "scout: the cached corpus {} {why}; rebuilding it",
        path.display()
    ));
    for suffix in ["", "-journal", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        match std::fs::remove_file(&file) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                return Err(SourcesError::Remove {
                    path: file.into(),
                    error,
                })
            }
            _ => {}
        }
    }
    Ok(Corpus::open(path)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reliability case 28: a cache corpus left half-made by an older scout
    /// (tables, but no application id) made every later `scout ask` over
    /// the same folder fail with "not a scout corpus".
    #[test]
    fn a_half_made_cache_corpus_is_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.scout.db");
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute_batch(
                "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL); CREATE TABLE documents (id INTEGER)",
            )
            .unwrap();
        assert!(matches!(Corpus::open(&path), Err(CorpusError::NotACorpus { .. })));
        let mut said = Vec::new();
        let corpus = open_cache(&path, &mut |l| said.push(l.to_owned())).unwrap();
        assert_eq!(corpus.document_count().unwrap(), 0);
        assert!(said[0].contains("half-made"), "{said:?}");
    }
}
