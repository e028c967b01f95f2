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

/// A cache corpus: scout's own, so an older layout is rebuilt, not refused.
fn open_cache(path: &Path, say: &mut dyn FnMut(&str)) -> Result<Corpus, SourcesError> {
    match Corpus::open(path) {
        Err(CorpusError::Schema { found, .. }) => {
            say(&format!(
                "scout: the cached corpus was written by an older scout (schema {found}); rebuilding it"
            ));
            std::fs::remove_file(path).map_err(|error| SourcesError::Remove {
                path: path.to_owned(),
                error,
            })?;
            Ok(Corpus::open(path)?)
        }
        other => Ok(other?),
    }
}
