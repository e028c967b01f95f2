//! Walking sources: folders (with .gitignore rules) and single files.
//!
//! Files are read on parallel worker threads; each becomes one
//! [`WalkItem`] (a document, a file known unchanged, or a counted skip)
//! sent to the caller in the order the workers finish. Walk errors
//! (unreadable folders, symlink loops, vanished files) are skips, never
//! dropped. A file whose size and modification time match what the corpus
//! already holds is not read again.

mod images;
mod replay;
mod visit;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{mpsc, Arc};

use ignore::overrides::OverrideBuilder;
use ignore::{WalkBuilder, WalkState};

pub use super::item::{KnownFile, KnownFiles, WalkItem, WalkOptions, Walked};
use super::listing::Entry;
use super::read::{mtime_ns, now_ns, read_entry};
use super::{Document, Skip, SkipReason};
pub use replay::check_listing;
use replay::{key_for, replay_listing, Recording};
use visit::{inodes, may_be_excluded_folder, visit, walk_error, Folders, Known, Visit, Visited};

/// The path a user would open: the root as they named it, joined with the
/// path below it, with forward slashes and no leading `./`. Bytes that are
/// not UTF-8 are written as `\xNN` (and a literal backslash as `\\`), so a
/// name stays lossless and distinct.
#[must_use]
pub fn display_path(path: &Path) -> String {
    let s = lossless(path);
    let s = s.strip_prefix("./").unwrap_or(&s);
    s.to_owned()
}

#[cfg(unix)]
fn lossless(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_os_str().as_bytes();
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(&chunk.valid().replace('\\', "\\\\"));
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02X}");
        }
    }
    out
}

#[cfg(not(unix))]
fn lossless(path: &Path) -> String {
    path.to_string_lossy().replace('\\', "/")
}

/// Walks every root on worker threads and hands each file to `on_item` as
/// it is done.
pub fn walk(roots: &[PathBuf], opts: &WalkOptions, on_item: impl FnMut(WalkItem)) {
    walk_then(roots, opts, &|_| {}, on_item);
}

/// [`walk`], with `each_document` run on every document read, on the
/// worker thread that read it (before `on_item` sees it).
pub fn walk_then(
    roots: &[PathBuf],
    opts: &WalkOptions,
    each_document: &(dyn Fn(&Document) + Sync),
    mut on_item: impl FnMut(WalkItem),
) {
    walk_batches(roots, opts, each_document, |batch| {
        batch.into_iter().for_each(&mut on_item);
    });
}

/// [`walk_then`], handing items over in batches: files found unchanged
/// are gathered by each worker (a re-ingest of a large tree would
/// otherwise wake the receiving thread once per file, which costs more
/// than the file's stat); a document or a skip goes at once, with what
/// was gathered before it.
///
/// When [`WalkOptions::listing`] still holds for these roots and options,
/// its entries are read instead of walking the tree; otherwise the walk
/// records a listing for the next time, when it can.
pub fn walk_batches(
    roots: &[PathBuf],
    opts: &WalkOptions,
    each_document: &(dyn Fn(&Document) + Sync),
    mut on_batch: impl FnMut(Vec<WalkItem>),
) -> Walked {
    let started_ns = now_ns();
    let excluded = real_excluded(opts);
    let excluded_inodes = inodes(&excluded);
    let excluded_names: Vec<String> = excluded
        .iter()
        .filter_map(|x| Some(x.file_name()?.to_str()?.to_owned()))
        .collect();
    let key = key_for(roots, opts, &excluded);
    // Checked by the caller just before (see `check_listing`): only that
    // it is a listing for this walk is checked again.
    let replay = opts.listing.as_ref().filter(|l| key.as_deref() == Some(l.key.as_str()));
    let recording = std::sync::Mutex::new(Recording {
        spoiled: key.is_none() || replay.is_some(),
        ..Recording::default()
    });
    let corpus_bytes = AtomicU64::new(0);
    let (tx, rx) = mpsc::channel::<Vec<WalkItem>>();
    let (image_tx, image_rx) = mpsc::channel::<images::Image>();
    let image_rx = std::sync::Mutex::new(image_rx);
    std::thread::scope(|scope| {
        let images = opts.ocr_lang.is_some().then_some(image_tx);
        if images.is_some() {
            for _ in 0..images::threads(walkers(opts)) {
                let (tx, image_rx, corpus_bytes) = (tx.clone(), &image_rx, &corpus_bytes);
                scope.spawn(move || images::read_images(image_rx, opts, corpus_bytes, each_document, &tx));
            }
        }
        // The image threads end when the walk is done: `ctx` holds the
        // only sender of their queue, and goes with the walk's thread.
        let ctx = Context {
            opts,
            excluded: &excluded,
            excluded_inodes: &excluded_inodes,
            excluded_names: &excluded_names,
            corpus_bytes: &corpus_bytes,
            each_document,
            images,
        };
        let recording = &recording;
        scope.spawn(move || match replay {
            Some(listing) => replay_listing(listing, &ctx, &tx),
            None => {
                for root in roots {
                    walk_root(root, &ctx, recording, &tx);
                }
            }
        });
        for batch in rx {
            on_batch(batch);
        }
    });
    let recording = recording
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    Walked {
        listing: key.and_then(|key| recording.finish(key, roots, opts, started_ns)),
        replayed: replay.is_some(),
    }
}

/// What every worker of one walk shares.
struct Context<'a> {
    opts: &'a WalkOptions,
    /// Real paths of the files and folders never to read, and the
    /// folders' inode numbers.
    excluded: &'a [PathBuf],
    excluded_inodes: &'a [u64],
    /// Their file names.
    excluded_names: &'a [String],
    corpus_bytes: &'a AtomicU64,
    each_document: &'a (dyn Fn(&Document) + Sync),
    /// Where image files go to be read (see `images`); none with OCR off.
    images: Option<mpsc::Sender<images::Image>>,
}

/// The walk's worker threads (`WalkOptions::threads`, 0 for one per core).
fn walkers(opts: &WalkOptions) -> usize {
    match opts.threads {
        0 => std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        n => n,
    }
}

/// The real paths of the files and folders `opts` says never to read
/// (those that exist: a corpus not made yet has none).
fn real_excluded(opts: &WalkOptions) -> Vec<PathBuf> {
    opts.exclude.iter().filter_map(|p| p.canonicalize().ok()).collect()
}

/// Unchanged files gathered before a batch is sent.
const UNCHANGED_BATCH: usize = 256;

/// A worker's items not yet sent; sent when dropped (the worker is done).
struct Batch {
    items: Vec<WalkItem>,
    tx: mpsc::Sender<Vec<WalkItem>>,
}

impl Batch {
    /// Adds `item`, sending the batch when it is due; false when the
    /// receiver has gone (the walk should stop).
    fn push(&mut self, item: WalkItem) -> bool {
        let due = !matches!(item, WalkItem::Unchanged { .. } | WalkItem::UnchangedListed { .. })
            || self.items.len() + 1 >= UNCHANGED_BATCH;
        self.items.push(item);
        !due || self.send()
    }

    fn send(&mut self) -> bool {
        self.items.is_empty() || self.tx.send(std::mem::take(&mut self.items)).is_ok()
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        self.send();
    }
}

fn overrides(root: &Path, opts: &WalkOptions) -> Result<Option<ignore::overrides::Override>, String> {
    if opts.include.is_empty() && opts.exclude_globs.is_empty() {
        return Ok(None);
    }
    let base = if root.is_dir() {
        root
    } else {
        root.parent().unwrap_or(root)
    };
    let mut ov = OverrideBuilder::new(base);
    for g in &opts.include {
        ov.add(g).map_err(|e| format!("--include {g}: {e}"))?;
    }
    for g in &opts.exclude_globs {
        ov.add(&format!("!{g}")).map_err(|e| format!("--exclude {g}: {e}"))?;
    }
    ov.build().map(Some).map_err(|e| e.to_string())
}

/// The ignore file in folder `dir` that is over `limit` bytes, with its size.
fn oversized_ignore_file(dir: &Path, limit: u64) -> Option<(PathBuf, u64)> {
    [".gitignore", ".ignore"].iter().find_map(|name| {
        let path = dir.join(name);
        let bytes = std::fs::metadata(&path).ok()?.len();
        (bytes > limit).then_some((path, bytes))
    })
}

/// The skip for a folder not walked because of its ignore file.
fn ignore_too_large(dir: &Path, (file, bytes): &(PathBuf, u64), limit: u64) -> Skip {
    Skip {
        path: display_path(dir),
        reason: SkipReason::IgnoreTooLarge,
        detail: format!(
            "its {} is {bytes} bytes, over the {limit}-byte limit (--max-ignore-size); the folder is not read",
            file.file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
        ),
    }
}

/// The walker for `root` with the ignore rules and globs of `opts`.
/// Folders whose ignore file is over the limit are not entered (the ignore
/// crate reads a folder's ignore file as it enters it); their skips go to
/// `oversized`. Folders for which `prune` holds are not entered either.
fn builder(
    root: &Path,
    opts: &WalkOptions,
    oversized: Option<Arc<std::sync::Mutex<Vec<Skip>>>>,
    prune: impl Fn(&ignore::DirEntry) -> bool + Send + Sync + 'static,
) -> Result<WalkBuilder, String> {
    let mut builder = WalkBuilder::new(root);
    builder
        .hidden(!opts.hidden)
        .follow_links(opts.follow_links)
        .git_ignore(!opts.no_ignore)
        .git_global(!opts.no_ignore)
        .git_exclude(!opts.no_ignore)
        .ignore(!opts.no_ignore)
        .parents(!opts.no_ignore)
        // .gitignore is honoured even outside a git repository: users
        // point scout at exported trees and tarballs too.
        .require_git(false)
        .threads(opts.threads);
    if let Some(o) = overrides(root, opts)? {
        builder.overrides(o);
    }
    // One filter: a later filter_entry would replace this one.
    let (check_ignore, limit) = (!opts.no_ignore, opts.limits.max_ignore_bytes);
    builder.filter_entry(move |e| {
        if !e.file_type().is_some_and(|t| t.is_dir()) {
            return true;
        }
        if prune(e) {
            return false;
        }
        match oversized_ignore_file(e.path(), limit).filter(|_| check_ignore) {
            None => true,
            Some(found) => {
                if let Some(sink) = &oversized {
                    sink.lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(ignore_too_large(e.path(), &found, limit));
                }
                false
            }
        }
    });
    Ok(builder)
}

/// How many files a walk of `roots` will hand over (folders the walk
/// skips and files it cannot stat aside): a quick pass without reading,
/// for a progress bar's length.
#[must_use]
pub fn count_files(roots: &[PathBuf], opts: &WalkOptions) -> u64 {
    let excluded = real_excluded(opts);
    let excluded_inodes = inodes(&excluded);
    roots
        .iter()
        .filter_map(|root| {
            // scout's cache folder is not walked into (as in the walk),
            // nor a folder whose ignore file is over the limit.
            let (excluded, excluded_inodes) = (excluded.clone(), excluded_inodes.clone());
            let prune = move |e: &ignore::DirEntry| {
                may_be_excluded_folder(&Visit::of(e), &excluded_inodes)
                    && e.path().canonicalize().is_ok_and(|c| excluded.contains(&c))
            };
            builder(root, opts, None, prune).ok()
        })
        .flat_map(|b| b.build())
        .filter(|e| e.as_ref().is_ok_and(|e| e.file_type().is_some_and(|t| !t.is_dir())))
        .count() as u64
}

fn walk_root(
    root: &Path,
    ctx: &Context<'_>,
    recording: &std::sync::Mutex<Recording>,
    tx: &mpsc::Sender<Vec<WalkItem>>,
) {
    // The root's own ignore file is read before any entry is filtered.
    if !ctx.opts.no_ignore && root.is_dir() {
        let limit = ctx.opts.limits.max_ignore_bytes;
        if let Some(found) = oversized_ignore_file(root, limit) {
            spoil(recording);
            let _ = tx.send(vec![WalkItem::Skip(ignore_too_large(root, &found, limit))]);
            return;
        }
    }
    let oversized = Arc::new(std::sync::Mutex::new(Vec::new()));
    let builder = match builder(root, ctx.opts, Some(Arc::clone(&oversized)), |_| false) {
        Ok(b) => b,
        Err(detail) => {
            spoil(recording);
            let _ = tx.send(vec![WalkItem::Skip(Skip {
                path: display_path(root),
                reason: SkipReason::Unreadable,
                detail,
            })]);
            return;
        }
    };
    builder.build_parallel().run(|| {
        let mut worker = Worker {
            batch: Batch {
                items: Vec::new(),
                tx: tx.clone(),
            },
            folders: Folders::default(),
            seen: Recording {
                spoiled: recording
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .spoiled,
                ..Recording::default()
            },
            recording,
        };
        Box::new(move |entry| {
            let e = match entry {
                Ok(e) => e,
                Err(err) => {
                    worker.seen.spoiled = true;
                    return worker.send(walk_error(root, &err));
                }
            };
            let v = Visit::of(&e);
            let visited = visit(&v, ctx, &mut worker.folders);
            if !worker.seen.spoiled {
                if matches!(visited, Visited::Folder) {
                    worker.seen.folder(v.path, v.depth, ctx.opts);
                } else {
                    let shown = match &visited {
                        Visited::Item(item) | Visited::SkipFolder(item) => {
                            item.paths().next().unwrap_or_default().to_owned()
                        }
                        Visited::Unchanged(shown) | Visited::Deferred(shown) => shown.clone().into_owned(),
                        Visited::Folder => display_path(v.path),
                    };
                    let entry = Entry::new(v.path, &shown, v.depth, v.ino, v.is_dir, v.is_file, v.is_symlink);
                    worker.seen.entries.push((shown, entry));
                }
            }
            match visited {
                Visited::Folder | Visited::Deferred(_) => WalkState::Continue,
                Visited::Unchanged(shown) => worker.send(WalkItem::Unchanged {
                    path: shown.into_owned(),
                }),
                Visited::Item(item) => worker.send(item),
                Visited::SkipFolder(item) => match worker.send(item) {
                    WalkState::Continue => WalkState::Skip,
                    quit => quit,
                },
            }
        })
    });
    let oversized = std::mem::take(&mut *oversized.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    if !oversized.is_empty() {
        // The listing would leave these folders out without a word on a
        // later run: walk again each time, so each run reports them.
        spoil(recording);
        let _ = tx.send(oversized.into_iter().map(WalkItem::Skip).collect());
    }
}

/// Keeps this walk from recording a listing.
fn spoil(recording: &std::sync::Mutex<Recording>) {
    recording
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .spoiled = true;
}

/// One walk worker's state; what it saw joins the walk's recording when
/// it is done.
struct Worker<'a> {
    batch: Batch,
    folders: Folders,
    seen: Recording,
    recording: &'a std::sync::Mutex<Recording>,
}

impl Worker<'_> {
    /// Hands `item` on; quits the walk when no one receives any more
    /// (which leaves it incomplete: nothing is recorded).
    fn send(&mut self, item: WalkItem) -> WalkState {
        if self.batch.push(item) {
            WalkState::Continue
        } else {
            self.seen.spoiled = true;
            WalkState::Quit
        }
    }
}

impl Drop for Worker<'_> {
    fn drop(&mut self) {
        let seen = std::mem::take(&mut self.seen);
        self.recording
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .merge(seen);
    }
}

#[cfg(test)]
mod tests;
