//! Ingest into a corpus: walk, store, count tokens.
//!
//! In: roots, walk options, an optional tokenizer. Out: the run's summary.
//! Never reads a file twice in one run, and never stores a document
//! without its token total when a tokenizer was given.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use std::time::Duration;

use crate::corpus::{Corpus, CorpusError, GitSummary, IngestSummary, ListingUse, StoredDocument};
use crate::ingest::{check_listing, display_path, git, history, walk_batches, Document, WalkItem, WalkOptions};

use crate::prompt::{count_block, count_units, render_document, Tokenizer, LAYOUT_VERSION};

/// Walks `roots` into `corpus` (only changed files are rewritten), then
/// counts the corpus's tokens as laid out in a prompt, with `tokenizer`.
/// `on_file` is called with each path as it is read, for progress.
pub fn ingest(
    corpus: &mut Corpus,
    roots: &[PathBuf],
    opts: &WalkOptions,
    tokenizer: Option<&dyn Tokenizer>,
    on_file: &mut dyn FnMut(&str),
) -> Result<IngestSummary, CorpusError> {
    let ready = || tokenizer;
    let get: Option<&TokenizerWhenReady<'_>> = tokenizer.map(|_| &ready as _);
    ingest_while_loading(corpus, roots, opts, get, on_file)
}

/// Waits for a tokenizer being loaded elsewhere; `None` when it could not
/// be loaded.
pub type TokenizerWhenReady<'t> = dyn Fn() -> Option<&'t dyn Tokenizer> + Sync + 't;

/// [`ingest`] with a tokenizer that may still be loading (on another
/// thread, while the walk begins): `tokenizer` is called when the first
/// read document is to be counted, or after the walk, and waits for it.
/// When it gives `None`, nothing is counted.
pub fn ingest_while_loading<'t>(
    corpus: &mut Corpus,
    roots: &[PathBuf],
    opts: &WalkOptions,
    tokenizer: Option<&TokenizerWhenReady<'t>>,
    on_file: &mut dyn FnMut(&str),
) -> Result<IngestSummary, CorpusError> {
    let mut opts = opts.clone();
    opts.exclude.push(corpus.path().to_owned());
    // Stored text depends on redaction: if the setting changed, read
    // every file again.
    let recorded = corpus.keeps_secrets()?;
    let same_redaction = recorded.is_none_or(|keep| keep == opts.keep_secrets);
    let kept_listing = corpus.walk_listing()?;
    // The listing's folders are stat'ed while the documents written since
    // it was kept are read.
    let (touched, listing) = std::thread::scope(|scope| {
        let check = kept_listing
            .as_deref()
            .filter(|_| !opts.rescan)
            .map(|bytes| scope.spawn(|| check_listing(roots, &opts, bytes)));
        let touched = check.as_ref().map(|_| corpus.touched_files()).transpose();
        let listing = check.and_then(|c| c.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)));
        (touched, listing)
    });
    let touched = touched?.unwrap_or_default();
    // A listing that holds says what the corpus holds for each file; a
    // walk looks each one up in the corpus's documents.
    opts.listing = listing.map(|mut listing| {
        if same_redaction {
            listing.update_known(&touched);
        } else {
            listing.forget_known();
        }
        std::sync::Arc::new(listing)
    });
    if opts.listing.is_none() && same_redaction {
        opts.known = std::sync::Arc::new(corpus.known_files()?);
    }
    let git_reads = start_git(corpus, roots, &opts.history)?;
    let tokenizer = || tokenizer.and_then(|wait| wait());
    // With a cheap counter, each document is counted by the walker that
    // read it, instead of after the walk. (Decided at the first document:
    // the tokenizer may be loading until then.)
    let early: std::sync::OnceLock<Option<&dyn Tokenizer>> = std::sync::OnceLock::new();
    let salt = corpus.salt().to_owned();
    let counted = std::sync::Mutex::new(Vec::new());
    let count = |doc: &Document| {
        if let Some(tok) = *early.get_or_init(|| tokenizer().filter(|t| t.counts_are_cheap())) {
            let block = render_document(&StoredDocument::from(doc), &salt);
            let n = u64::from(count_block(&block, tok).total());
            counted
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push((doc.path.clone(), n));
        }
    };
    let root_names: Vec<String> = roots.iter().map(|r| display_path(r)).collect();
    let (to_store, stored) = std::sync::mpsc::channel();
    let (summary, walked) = std::thread::scope(|scope| {
        // Documents are written as they arrive, while the walkers read the
        // rest (in the order the workers finish; listings sort by path).
        // The totals counted while walking go into the run's own
        // transaction (the walk is over when the store asks for them).
        let (early, counted) = (&early, &counted);
        let totals = move || {
            let tok = (*early.get()?)?;
            let counted = std::mem::take(&mut *counted.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
            Some((totals_key(tok), counted))
        };
        let (store_in, root_names) = (&mut *corpus, &root_names);
        let store = scope.spawn(move || {
            store_in.store_run_with_totals(root_names, stored.into_iter().flatten(), !same_redaction, totals)
        });
        let walked = walk_batches(roots, &opts, &count, |batch| {
            for path in batch.iter().flat_map(WalkItem::paths) {
                on_file(path);
            }
            // A store that stopped early has an error, which join returns.
            let _ = to_store.send(batch);
        });
        drop(to_store);
        let summary = store.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (summary, walked)
    });
    let mut summary = summary?;
    // Kept once the run is stored; a listing that no longer holds goes.
    summary.listing = if walked.replayed {
        // Once many documents were written since the listing was kept,
        // it is kept again with what the corpus now holds.
        if touched.len() > TOUCHED_BEFORE_KEEPING_AGAIN {
            if let Some(listing) = opts.listing.take() {
                corpus.set_walk_listing(Some(&mut std::sync::Arc::unwrap_or_clone(listing)))?;
            }
        }
        ListingUse::Used
    } else if let Some(mut listing) = walked.listing {
        corpus.set_walk_listing(Some(&mut listing))?;
        ListingUse::Recorded
    } else {
        if kept_listing.is_some() {
            corpus.set_walk_listing(None)?;
        }
        ListingUse::NotRecorded
    };
    // Recorded after the run is stored: a crash in between costs one more
    // full read, never text stored under the wrong setting.
    if recorded != Some(opts.keep_secrets) {
        corpus.set_keeps_secrets(opts.keep_secrets)?;
    }
    summary.git = finish_git(corpus, git_reads)?;
    if let Some(tok) = tokenizer() {
        summary.tokens = tokens_of(corpus, tok, summary.documents)?;
    }
    summary.peak_rss = crate::corpus::PeakRss::now();
    // The PDF workers are done with: ended here, not left to exit with
    // this process.
    opts.pdf_isolation.stop_workers();
    // The known files and the listing of a large tree take a millisecond
    // to free: not on the way to the answer.
    drop_in_background(opts);
    Ok(summary)
}

/// Documents written since the walk listing was kept, past which a
/// re-ingest that took the listing keeps it again (reading every
/// document's size and time, a few milliseconds for a large tree), so
/// that later ones need not look up so many.
const TOUCHED_BEFORE_KEEPING_AGAIN: usize = 256;

/// Drops `value` on a thread of its own (one that the process may end
/// before it is done); here when no thread can be had.
fn drop_in_background<T: Send + 'static>(value: T) {
    let _ = std::thread::Builder::new().spawn(move || drop(value));
}

/// Longest a repository's history may take to read.
const GIT_LOG_SECONDS: u64 = 120;

/// History read for one repository, while the walk went on.
struct GitRead {
    repo: git::Repo,
    key: String,
    since: Option<String>,
    changes: Changes,
}

/// What reading a repository's history gave.
enum Changes {
    /// Nothing to read: the recorded commit is the current one.
    None,
    /// The commits since the recorded one.
    Since(HashMap<String, git::FileHistory>),
    /// The history at HEAD, for a corpus that has none recorded.
    Whole(history::History),
    /// git failed or ran past its time.
    Failed,
}

/// For sources inside git repositories, reads each one's history on a
/// thread of its own, while the walk goes on: on the first ingest, the
/// history as `opts` bounds it (or as an earlier ingest of the checkout
/// kept it); later, only the commits since the recorded one; nothing when
/// the commit is the same. Finding the repositories runs git too, so that
/// is on the thread as well.
fn start_git(
    corpus: &Corpus,
    roots: &[PathBuf],
    opts: &history::HistoryOptions,
) -> Result<std::thread::JoinHandle<Vec<GitRead>>, CorpusError> {
    let recorded = corpus.meta_starting("git_")?;
    let roots = roots.to_vec();
    let opts = opts.clone();
    Ok(std::thread::spawn(move || {
        let mut repos: Vec<git::Repo> = roots.iter().filter_map(|r| git::repo(r)).collect();
        repos.dedup_by(|a, b| a.top == b.top);
        let (recorded, opts) = (&recorded, &opts);
        // Several repositories' histories are read at once.
        std::thread::scope(|scope| {
            let reads: Vec<_> = repos
                .into_iter()
                .map(|repo| {
                    scope.spawn(move || {
                        let key = format!("git_head:{}", repo.top.display());
                        // A corpus that recorded times but not commit
                        // counts (an older scout's) reads the whole
                        // history once more.
                        let since = recorded
                            .get(&key)
                            .filter(|_| recorded.contains_key(&counts_key(&repo)))
                            .cloned();
                        let limit = Duration::from_secs(GIT_LOG_SECONDS);
                        let changes = match since.as_deref() {
                            Some(head) if head == repo.head => Changes::None,
                            Some(since) if git::is_ancestor(&repo, since) => {
                                git::last_changes(&repo, Some(since), None, limit)
                                    .map_or(Changes::Failed, |log| Changes::Since(log.files))
                            }
                            // Not recorded, or recorded at a commit HEAD
                            // does not descend from (another branch).
                            _ => history::history(&repo, opts, limit).map_or(Changes::Failed, Changes::Whole),
                        };
                        let since = match changes {
                            Changes::Whole(_) => None,
                            _ => since,
                        };
                        GitRead {
                            repo,
                            key,
                            since,
                            changes,
                        }
                    })
                })
                .collect();
            reads
                .into_iter()
                .map(|read| read.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
                .collect()
        })
    }))
}

/// The meta key saying a repository's commit counts are recorded.
fn counts_key(repo: &git::Repo) -> String {
    format!("git_counts:{}", repo.top.display())
}

/// Dates each document by its last commit and records the commits read,
/// for the prefix-stable order. Documents outside the history keep their
/// file times.
fn finish_git(
    corpus: &mut Corpus,
    reads: std::thread::JoinHandle<Vec<GitRead>>,
) -> Result<Vec<GitSummary>, CorpusError> {
    let mut out = Vec::new();
    let reads = reads.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    for read in reads {
        let mut summary = GitSummary {
            repository: read.repo.top.display().to_string(),
            commit: read.repo.head.clone(),
            incremental: read.since.is_some(),
            ..GitSummary::default()
        };
        let changes = match read.changes {
            Changes::None => None,
            Changes::Since(files) => Some(files),
            Changes::Whole(history) => {
                summary.history = Some(history.source);
                summary.bounded = history.bounded;
                Some(history.files)
            }
            Changes::Failed => {
                summary.error = Some(format!("git log failed or ran past {GIT_LOG_SECONDS} s"));
                None
            }
        };
        if let Some(changes) = changes {
            // Each folder is resolved once (links in it, `..`), not each file.
            let mut folders: HashMap<PathBuf, Option<PathBuf>> = HashMap::new();
            let mut relative = |path: &str| -> Option<String> {
                let path = Path::new(path);
                let folder = folders
                    .entry(path.parent()?.to_owned())
                    .or_insert_with_key(|f| {
                        std::fs::canonicalize(if f.as_os_str().is_empty() {
                            Path::new(".")
                        } else {
                            f.as_path()
                        })
                        .ok()
                    })
                    .as_ref()?;
                let rel = folder.join(path.file_name()?);
                Some(
                    rel.strip_prefix(&read.repo.top)
                        .ok()?
                        .to_string_lossy()
                        .replace('\\', "/"),
                )
            };
            let dated: Vec<(String, i64, u32)> = corpus
                .document_kinds()?
                .into_iter()
                .filter_map(|(path, _)| {
                    let h = changes.get(&relative(&path)?)?;
                    Some((path, h.last, h.commits))
                })
                .collect();
            summary.dated = dated.len() as u64;
            corpus.set_history(&dated, read.since.is_some())?;
            corpus.set_meta(&read.key, &read.repo.head)?;
            corpus.set_meta(&counts_key(&read.repo), "1")?;
        }
        out.push(summary);
    }
    Ok(out)
}

/// What cached document totals were counted with.
fn totals_key(tokenizer: &dyn Tokenizer) -> String {
    format!("{}:{LAYOUT_VERSION}", tokenizer.tokenizer_id())
}

/// Tokens each document takes in a prompt (with its boundary and
/// markers), exact for `tokenizer`; cached in the corpus. In path order:
/// (path, kind, tokens).
pub fn document_tokens(
    corpus: &mut Corpus,
    tokenizer: &dyn Tokenizer,
) -> Result<Vec<(String, String, u64)>, CorpusError> {
    let key = count_missing(corpus, tokenizer)?;
    let totals = corpus.document_token_totals(&key)?;
    Ok(corpus
        .document_kinds()?
        .into_iter()
        .map(|(path, kind)| {
            let n = totals.get(&path).copied().unwrap_or(0);
            (path, kind, n)
        })
        .collect())
}

/// The tokens of the whole corpus, as [`document_tokens`] adds them up
/// (without listing every document: a re-ingest of a large tree ends
/// with this).
pub fn corpus_tokens(corpus: &mut Corpus, tokenizer: &dyn Tokenizer) -> Result<u64, CorpusError> {
    let documents = corpus.document_count()?;
    tokens_of(corpus, tokenizer, documents)
}

/// [`corpus_tokens`] of a corpus known to hold `documents` documents.
fn tokens_of(corpus: &mut Corpus, tokenizer: &dyn Tokenizer, documents: u64) -> Result<u64, CorpusError> {
    let key = totals_key(tokenizer);
    let (counted, sum) = corpus.document_token_sum(&key)?;
    if counted == documents {
        return Ok(sum);
    }
    count_missing(corpus, tokenizer)?;
    Ok(corpus.document_token_sum(&key)?.1)
}

/// Counts the documents that have no total for `tokenizer` yet and
/// records theirs; returns the key the totals are kept under. Totals are
/// kept per document and cleared when it is rewritten, so a re-ingest
/// renders and counts only what changed.
fn count_missing(corpus: &mut Corpus, tokenizer: &dyn Tokenizer) -> Result<String, CorpusError> {
    let key = totals_key(tokenizer);
    let missing = corpus.documents_without_totals(&key)?;
    if !missing.is_empty() {
        let docs = corpus.documents_at(&missing)?;
        let blocks: Vec<_> = docs.iter().map(|d| render_document(d, corpus.salt())).collect();
        let counts = count_units(&blocks, corpus, tokenizer)?;
        let fresh: Vec<(String, u64)> = docs
            .iter()
            .zip(&counts)
            .map(|(d, c)| (d.path.clone(), u64::from(c.total())))
            .collect();
        corpus.store_document_token_totals(&key, &fresh)?;
    }
    Ok(key)
}
