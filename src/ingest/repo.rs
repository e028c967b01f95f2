//! Walking sources: folders (with .gitignore rules) and single files.
//!
//! Files are read on parallel worker threads; each becomes one
//! [`WalkItem`] (a document, a file known unchanged, or a counted skip)
//! sent to the caller in the order the workers finish. Walk errors
//! (unreadable folders, symlink loops, vanished files) are skips, never
//! dropped. A file whose size and modification time match what the corpus
//! already holds is not read again.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, UNIX_EPOCH};

use ignore::overrides::OverrideBuilder;
use ignore::{WalkBuilder, WalkState};

use crate::limits::{Limits, BINARY_SNIFF_BYTES, MAX_SCAN_PIXELS};

use super::image::{self, ImageFailure, IMAGE_EXTENSIONS};
use super::listing::{self, Entry, Listing, Watched};
use super::ocr;
use super::outline::{self, OutlineFailure};
use super::pdf;
use super::secrets::{self, SecretFinding};
use super::text::{code_language, decode, split_text};
use super::{Document, DocumentKind, Segment, Skip, SkipReason};
use crate::anchor::Anchor;

/// Files the corpus holds, by display path (a fast hash: a re-ingest
/// looks up every file of the tree).
pub type KnownFiles = rustc_hash::FxHashMap<String, KnownFile>;

/// What the corpus already knows of a file, to skip re-reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownFile {
    pub bytes: u64,
    pub mtime_ns: i64,
}

/// How to walk.
#[derive(Debug, Clone, Default)]
pub struct WalkOptions {
    /// Also read hidden files and folders (dot-files).
    pub hidden: bool,
    /// Follow symbolic links (loops are recorded as skips).
    pub follow_links: bool,
    /// Also read files that .gitignore and friends exclude.
    pub no_ignore: bool,
    /// Only files matching one of these globs (gitignore syntax, relative
    /// to each root); empty means all.
    pub include: Vec<String>,
    /// Never files matching these globs.
    pub exclude_globs: Vec<String>,
    pub limits: Limits,
    /// Files and folders never to ingest: the corpus store and its journal,
    /// scout's own cache folder.
    pub exclude: Vec<PathBuf>,
    /// Files already in the corpus, by display path.
    pub known: Arc<KnownFiles>,
    /// Worker threads (0: one per core).
    pub threads: usize,
    /// Store secrets as they are instead of redacting them.
    pub keep_secrets: bool,
    /// Where PDFs are parsed (a worker process for the CLI).
    pub pdf_isolation: pdf::PdfIsolation,
    /// OCR for images: tesseract's languages (`eng`, `eng+deu`); `None`
    /// turns OCR off.
    pub ocr_lang: Option<String>,
    /// Read scanned pages as rows across the page (receipts, forms,
    /// tables) instead of detecting columns.
    pub ocr_rows: bool,
    /// The listing the last walk of these roots recorded, found to hold
    /// just before the walk by [`check_listing`]: its entries are taken
    /// instead of walking the tree, with what the corpus holds for each
    /// file ([`WalkOptions::known`] is not consulted for them).
    pub listing: Option<Arc<Listing>>,
    /// Walk the tree even when the corpus's listing of the last walk
    /// still holds (for file systems whose folder times cannot be
    /// trusted).
    pub rescan: bool,
}

/// How a walk went, besides the items it handed over.
#[derive(Debug, Default)]
pub struct Walked {
    /// The listing this walk recorded, for the next one (`None` when it
    /// replayed one, or could not record: see [`super::listing`]).
    pub listing: Option<Listing>,
    /// Whether the entries came from [`WalkOptions::listing`] instead of
    /// a walk.
    pub replayed: bool,
}

/// One file, as the walk saw it.
#[derive(Debug, Clone, PartialEq)]
pub enum WalkItem {
    Document(Box<Document>),
    /// Same size and modification time as in the corpus: not read again.
    Unchanged {
        path: String,
    },
    /// Files of the listing a walk took instead of walking, by their
    /// places in it, found unchanged as [`WalkItem::Unchanged`] is (handed
    /// over many at a time, without a path each).
    UnchangedListed {
        listing: Arc<Listing>,
        entries: Vec<u32>,
    },
    Skip(Skip),
}

impl WalkItem {
    /// The path of each file this item stands for: one, or for
    /// [`WalkItem::UnchangedListed`] many.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        let (one, listed) = match self {
            WalkItem::Document(d) => (Some(d.path.as_str()), None),
            WalkItem::Unchanged { path } => (Some(path.as_str()), None),
            WalkItem::Skip(s) => (Some(s.path.as_str()), None),
            WalkItem::UnchangedListed { listing, entries } => (None, Some((listing, entries))),
        };
        one.into_iter().chain(
            listed
                .into_iter()
                .flat_map(|(listing, entries)| entries.iter().map(|&i| listing.shown(&listing.entries[i as usize]))),
        )
    }
}

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
    std::thread::scope(|scope| {
        let ctx = Context {
            opts,
            excluded: &excluded,
            excluded_inodes: &excluded_inodes,
            excluded_names: &excluded_names,
            corpus_bytes: &corpus_bytes,
            each_document,
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
}

/// The real paths of the files and folders `opts` says never to read
/// (those that exist: a corpus not made yet has none).
fn real_excluded(opts: &WalkOptions) -> Vec<PathBuf> {
    opts.exclude.iter().filter_map(|p| p.canonicalize().ok()).collect()
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// The listing kept as `bytes`, when it still holds for a walk of `roots`
/// with `opts`: what [`WalkOptions::listing`] takes. (Every folder the
/// listing names is stat'ed: a few milliseconds for a large tree, which
/// the caller may spend while it does something else.)
#[must_use]
pub fn check_listing(roots: &[PathBuf], opts: &WalkOptions, bytes: &[u8]) -> Option<Listing> {
    let excluded = real_excluded(opts);
    let key = key_for(roots, opts, &excluded)?;
    Listing::read_if_holds(bytes, &key)
}

/// What a listing of `roots` walked with `opts` is kept under; `None`
/// when no listing can stand in for such a walk (links followed, a root
/// that is a file, or not Unix, where folder times are not checked).
fn key_for(roots: &[PathBuf], opts: &WalkOptions, excluded: &[PathBuf]) -> Option<String> {
    if opts.follow_links || !cfg!(unix) || !roots.iter().all(|r| r.is_dir()) {
        return None;
    }
    let real: Vec<PathBuf> = roots.iter().map(|r| r.canonicalize().ok()).collect::<Option<_>>()?;
    Some(format!(
        "roots={roots:?} real={real:?} hidden={} no_ignore={} include={:?} exclude={:?} never={excluded:?} env={}",
        opts.hidden,
        opts.no_ignore,
        opts.include,
        opts.exclude_globs,
        listing::environment_key(),
    ))
}

/// Hands the entries of a listing that still holds to the same per-entry
/// logic as a walk, on as many threads as a walk would use.
fn replay_listing(listing: &Arc<Listing>, ctx: &Context<'_>, tx: &mpsc::Sender<Vec<WalkItem>>) {
    let threads = match ctx.opts.threads {
        0 => std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        n => n,
    };
    // Threads take runs of entries in turn (a changed file read on one
    // does not hold the others up); entries are in path order, so a run
    // lies in few folders.
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let mut batch = Batch {
                    items: Vec::new(),
                    tx: tx.clone(),
                };
                let mut folders = Folders::default();
                // Unchanged files go by their places in the listing, many
                // at a time: most of a tree is unchanged.
                let mut unchanged = Vec::new();
                let hand_over = |unchanged: &mut Vec<u32>, batch: &mut Batch| {
                    unchanged.is_empty()
                        || batch.push(WalkItem::UnchangedListed {
                            listing: Arc::clone(listing),
                            entries: std::mem::take(unchanged),
                        })
                };
                loop {
                    let start = next.fetch_add(REPLAY_RUN, Ordering::Relaxed);
                    let Some(run) = listing
                        .entries
                        .get(start..listing.entries.len().min(start + REPLAY_RUN))
                    else {
                        hand_over(&mut unchanged, &mut batch);
                        return;
                    };
                    for (i, e) in (start..).zip(run) {
                        let v = Visit {
                            path: listing.path(e),
                            shown: Some(listing.shown(e)),
                            depth: e.depth as usize,
                            ino: (e.ino != 0).then_some(e.ino),
                            is_dir: e.is_dir,
                            is_file: e.is_file,
                            is_symlink: e.is_symlink,
                            known: Known::Listed(e.known),
                        };
                        let item = match visit(&v, ctx, &mut folders) {
                            Visited::Folder | Visited::Nothing => continue,
                            Visited::Unchanged(_) => {
                                unchanged.push(i as u32);
                                continue;
                            }
                            Visited::SkipFolder(item) | Visited::Item(item) => item,
                        };
                        if !batch.push(item) {
                            return;
                        }
                    }
                    if unchanged.len() >= UNCHANGED_BATCH * 16 && !hand_over(&mut unchanged, &mut batch) {
                        return;
                    }
                }
            });
        }
    });
}

/// Entries a replay thread takes at a time.
const REPLAY_RUN: usize = 128;

/// What a walk saw, gathered by its workers for a [`Listing`].
#[derive(Default)]
struct Recording {
    /// Nothing is to be recorded: an error, a walk cut short, or no key.
    spoiled: bool,
    watched: Vec<Watched>,
    /// Each with its shown path.
    entries: Vec<(String, Entry)>,
}

impl Recording {
    /// Takes in what one worker saw.
    fn merge(&mut self, mut other: Recording) {
        self.spoiled |= other.spoiled;
        if !self.spoiled {
            self.watched.append(&mut other.watched);
            self.entries.append(&mut other.entries);
        }
    }

    /// Notes a folder the walk entered, with the ignore files in it that
    /// could decide what is taken from it (an ignore file that is not
    /// there need not be watched: making one changes the folder).
    fn folder(&mut self, path: &Path, depth: usize, opts: &WalkOptions) {
        if self.spoiled {
            return;
        }
        self.watched.push(Watched::now(path.to_owned(), depth == 0));
        if opts.no_ignore {
            return;
        }
        for name in listing::IGNORE_FILES {
            let w = Watched::now(path.join(name), true);
            if w.stamp.is_some() {
                self.watched.push(w);
            }
        }
        match std::fs::metadata(path.join(".git")) {
            Err(_) => {}
            Ok(m) if m.is_dir() => self.watched.push(Watched::now(path.join(".git/info/exclude"), true)),
            // A `.git` file points at a git folder elsewhere, whose
            // exclude file is not watched: no listing.
            Ok(_) => self.spoiled = true,
        }
    }

    /// The listing, with the ignore files above each root and git's
    /// global ones; `None` when it cannot be trusted: spoiled, or some
    /// stamp too close to the walk's start to show a later change.
    fn finish(mut self, key: String, roots: &[PathBuf], opts: &WalkOptions, started_ns: i64) -> Option<Listing> {
        if self.spoiled {
            return None;
        }
        if !opts.no_ignore {
            for root in roots {
                let real = root.canonicalize().ok()?;
                for dir in real.ancestors().skip(1) {
                    for name in listing::IGNORE_FILES {
                        self.watched.push(Watched::now(dir.join(name), true));
                    }
                    let git = dir.join(".git");
                    match std::fs::metadata(&git) {
                        Ok(m) if !m.is_dir() => return None,
                        // A folder here is watched only for being the
                        // same folder (git changes its times all along).
                        Ok(_) => self.watched.push(Watched::identity(git, true)),
                        Err(_) => self.watched.push(Watched::now(git, true)),
                    }
                    self.watched.push(Watched::now(dir.join(".git/info/exclude"), true));
                }
            }
            self.watched.extend(
                listing::global_ignore_paths()
                    .into_iter()
                    .map(|p| Watched::now(p, true)),
            );
        }
        if self.watched.iter().any(|w| w.is_racy(started_ns)) {
            return None;
        }
        Some(Listing::new(key, self.watched, self.entries))
    }
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

/// The walker for `root` with the ignore rules and globs of `opts`.
fn builder(root: &Path, opts: &WalkOptions) -> Result<WalkBuilder, String> {
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
        .filter_map(|root| builder(root, opts).ok())
        .flat_map(|mut b| {
            // scout's cache folder is not walked into (as in the walk).
            let (excluded, excluded_inodes) = (excluded.clone(), excluded_inodes.clone());
            b.filter_entry(move |e| {
                !(e.file_type().is_some_and(|t| t.is_dir())
                    && may_be_excluded_folder(&Visit::of(e), &excluded_inodes)
                    && e.path().canonicalize().is_ok_and(|c| excluded.contains(&c)))
            });
            b.build()
        })
        .filter(|e| e.as_ref().is_ok_and(|e| e.file_type().is_some_and(|t| !t.is_dir())))
        .count() as u64
}

fn walk_root(
    root: &Path,
    ctx: &Context<'_>,
    recording: &std::sync::Mutex<Recording>,
    tx: &mpsc::Sender<Vec<WalkItem>>,
) {
    let builder = match builder(root, ctx.opts) {
        Ok(b) => b,
        Err(detail) => {
            recording
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .spoiled = true;
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
                        Visited::Unchanged(shown) => shown.clone().into_owned(),
                        _ => display_path(v.path),
                    };
                    let entry = Entry::new(v.path, &shown, v.depth, v.ino, v.is_dir, v.is_file, v.is_symlink);
                    worker.seen.entries.push((shown, entry));
                }
            }
            match visited {
                Visited::Folder | Visited::Nothing => WalkState::Continue,
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

/// One entry, as the walker gave it or a [`Listing`] recorded it.
struct Visit<'a> {
    path: &'a Path,
    /// `path` as reports show it, when known ([`display_path`] otherwise).
    shown: Option<&'a str>,
    depth: usize,
    ino: Option<u64>,
    /// A folder (or, with --follow, a link to one).
    is_dir: bool,
    is_file: bool,
    /// The path itself is a symbolic link.
    is_symlink: bool,
    known: Known,
}

/// What the corpus holds for an entry's file, as far as its visit knows.
#[derive(Clone, Copy)]
enum Known {
    /// To be looked up in [`WalkOptions::known`] (a walk).
    LookUp,
    /// As a listing says: its size and time, or no document.
    Listed(Option<KnownFile>),
}

impl Visit<'_> {
    fn of(e: &ignore::DirEntry) -> Visit<'_> {
        Visit {
            path: e.path(),
            shown: None,
            depth: e.depth(),
            ino: e.ino(),
            is_dir: e.file_type().is_some_and(|t| t.is_dir()),
            is_file: e.file_type().is_some_and(|t| t.is_file()),
            is_symlink: e.path_is_symlink(),
            known: Known::LookUp,
        }
    }
}

impl Visit<'_> {
    fn shown(&self) -> String {
        self.shown.map_or_else(|| display_path(self.path), str::to_owned)
    }
}

/// What became of one entry.
enum Visited<'a> {
    /// A folder to walk into.
    Folder,
    /// A folder not to walk into, and why.
    SkipFolder(WalkItem),
    /// A file with the same size and modification time as in the corpus
    /// (by its shown path): not read again.
    Unchanged(Cow<'a, str>),
    Item(WalkItem),
    /// Neither file nor folder (a socket, a device): passed over.
    Nothing,
}

/// Decides what one entry is, and reads it when it is a file: the logic a
/// walk and a listing's replay share.
fn visit<'a>(v: &Visit<'a>, ctx: &Context<'_>, folders: &mut Folders) -> Visited<'a> {
    let canonical = || v.path.canonicalize().ok();
    let excluded = ctx.excluded;
    if v.is_dir {
        if may_be_excluded_folder(v, ctx.excluded_inodes) && canonical().is_some_and(|c| excluded.contains(&c)) {
            return Visited::SkipFolder(WalkItem::Skip(Skip {
                path: v.shown(),
                reason: SkipReason::CorpusFile,
                detail: "scout's own cache folder, not read".into(),
            }));
        }
        return Visited::Folder;
    }
    let item = if v.is_symlink && !ctx.opts.follow_links {
        WalkItem::Skip(Skip {
            path: v.shown(),
            reason: SkipReason::Symlink,
            detail: "a symbolic link, not followed (--follow follows links)".into(),
        })
    } else if !v.is_file {
        return Visited::Nothing;
    } else if may_be_excluded(v, ctx.excluded_names)
        && canonical().is_some_and(|c| {
            excluded
                .iter()
                .any(|x| c == *x || is_journal_of(&c, x) || c.starts_with(x))
        })
    {
        WalkItem::Skip(Skip {
            path: v.shown(),
            reason: SkipReason::CorpusFile,
            detail: "scout's own store or cache".into(),
        })
    } else {
        let shown = v.shown.map_or_else(|| Cow::Owned(display_path(v.path)), Cow::Borrowed);
        let known = match v.known {
            Known::LookUp => ctx.opts.known.get(shown.as_ref()).copied(),
            Known::Listed(known) => known,
        };
        if let Some(known) = known {
            if folders.size_and_time(v.path) == Some((known.bytes, known.mtime_ns)) {
                ctx.corpus_bytes.fetch_add(known.bytes, Ordering::Relaxed);
                return Visited::Unchanged(shown);
            }
        }
        read_entry(v.path, shown.into_owned(), ctx.opts, ctx.corpus_bytes)
    };
    if let WalkItem::Document(doc) = &item {
        (ctx.each_document)(doc);
    }
    Visited::Item(item)
}

fn walk_error(root: &Path, err: &ignore::Error) -> WalkItem {
    let loop_child = find_loop(err);
    let path = loop_child
        .clone()
        .or_else(|| walk_error_path(err))
        .map_or_else(|| display_path(root), |p| display_path(&p));
    let reason = if loop_child.is_some() {
        SkipReason::SymlinkLoop
    } else {
        SkipReason::Unreadable
    };
    WalkItem::Skip(Skip {
        path,
        reason,
        detail: err.to_string(),
    })
}

fn find_loop(err: &ignore::Error) -> Option<PathBuf> {
    match err {
        ignore::Error::Loop { child, .. } => Some(child.clone()),
        ignore::Error::WithPath { err, .. }
        | ignore::Error::WithDepth { err, .. }
        | ignore::Error::WithLineNumber { err, .. } => find_loop(err),
        _ => None,
    }
}

/// Whether a folder could be one of the excluded ones without its real
/// path being looked up (a system call per path component): on Unix, only
/// a root, a symbolic link, or a folder with an excluded one's inode
/// number (which the walk knows without a system call) can be.
fn may_be_excluded_folder(v: &Visit<'_>, excluded_inodes: &[u64]) -> bool {
    v.depth == 0 || v.is_symlink || v.ino.is_none_or(|i| excluded_inodes.contains(&i))
}

/// The inode numbers of `paths` that exist (none off Unix).
fn inodes(paths: &[PathBuf]) -> Vec<u64> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        paths
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.ino())
            .collect()
    }
    #[cfg(not(unix))]
    {
        let _ = paths;
        Vec::new()
    }
}

/// Whether a file could be one of `excluded` (or a journal beside one)
/// without its real path being looked up, which costs a system call per
/// path component: only a root, a symbolic link, or a file whose name is
/// an excluded one's can be (a file inside an excluded folder is never
/// reached, the folder being skipped).
fn may_be_excluded(v: &Visit<'_>, excluded_names: &[String]) -> bool {
    if v.depth == 0 || v.is_symlink {
        return true;
    }
    let Some(name) = split_name(v.path).and_then(|(_, n)| n.to_str()) else {
        return true;
    };
    excluded_names.iter().any(|x| {
        name.strip_prefix(x)
            .is_some_and(|rest| rest.is_empty() || is_journal_suffix(rest))
    })
}

/// `SQLite` writes `NAME-journal` and `NAME-wal` beside the store.
fn is_journal_of(candidate: &Path, store: &Path) -> bool {
    let (Some(c), Some(s)) = (candidate.to_str(), store.to_str()) else {
        return false;
    };
    c.strip_prefix(s).is_some_and(is_journal_suffix)
}

/// What `SQLite` appends to a store's name for the files beside it.
fn is_journal_suffix(rest: &str) -> bool {
    matches!(rest, "-journal" | "-wal" | "-shm")
}

fn walk_error_path(err: &ignore::Error) -> Option<PathBuf> {
    match err {
        ignore::Error::WithPath { path, .. } => Some(path.clone()),
        ignore::Error::WithDepth { err, .. } | ignore::Error::WithLineNumber { err, .. } => walk_error_path(err),
        ignore::Error::Loop { child, .. } => Some(child.clone()),
        _ => None,
    }
}

fn extension(path: &Path) -> String {
    path.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default()
}

/// What OCR made of one page: segments, lines, secrets redacted.
type PageText = (Vec<Segment>, Vec<ocr::OcrLine>, Vec<SecretFinding>);

/// OCR of one page image: its text blocks as region-anchored segments of
/// `page`, its lines, and the secrets redacted from them; or the outcome
/// that explains why there is no text.
fn ocr_page(path: &str, page: u32, image: &[u8], opts: &WalkOptions) -> Result<PageText, &'static str> {
    let Some(lang) = &opts.ocr_lang else {
        return Err("ocr_off");
    };
    let lines =
        ocr::ocr(image, lang, opts.ocr_rows, Duration::from_secs(opts.limits.ocr_seconds)).map_err(|f| f.reason())?;
    if lines.is_empty() {
        return Err("no_text");
    }
    let mut blocks: Vec<Vec<&ocr::OcrLine>> = Vec::new();
    for line in &lines {
        match blocks.last_mut() {
            Some(b) if b[0].block == line.block => b.push(line),
            _ => blocks.push(vec![line]),
        }
    }
    let mut segments = Vec::new();
    let mut found_all = Vec::new();
    for block in blocks {
        let (x, y, w, h) = ocr::union(&block);
        let text: String = block.iter().map(|l| format!("{}\n", l.text)).collect();
        let (text, found) = if opts.keep_secrets {
            (text, Vec::new())
        } else {
            secrets::redact(path, &text)
        };
        found_all.extend(found.into_iter().map(|f| SecretFinding { page: Some(page), ..f }));
        segments.push(Segment {
            anchor: Anchor::Region {
                path: path.to_owned(),
                page,
                x,
                y,
                w,
                h,
            },
            text,
        });
    }
    let lines = lines
        .into_iter()
        .map(|l| {
            let text = if opts.keep_secrets {
                l.text
            } else {
                secrets::redact(path, &l.text).0
            };
            ocr::OcrLine { page, text, ..l }
        })
        .collect();
    Ok((segments, lines, found_all))
}

/// An image file: its upright size, and OCR blocks as its segments; with
/// no text (or no OCR), one placeholder segment stands for the image.
fn read_image(doc: &mut Document, bytes: &[u8], opts: &WalkOptions) -> Result<(), (SkipReason, String)> {
    // Only the header is read before the size is checked: an image bomb
    // (a few KB claiming 100,000 x 100,000 pixels) is kept, never decoded.
    let outcome = match image::open(bytes, MAX_SCAN_PIXELS) {
        Err(ImageFailure::Unreadable(detail)) => {
            return Err((SkipReason::ImageError, format!("unreadable image: {detail}")));
        }
        Err(ImageFailure::TooLarge(_)) => {
            doc.image = image::probe(bytes).ok();
            Err("too_many_pixels")
        }
        Ok(opened) => {
            doc.image = Some(opened.info);
            // Kept for engines that read images (they see it where it
            // stands) and for showing a citation of it.
            doc.page_images.push((1, bytes.to_vec()));
            if opts.ocr_lang.is_none() {
                Err("ocr_off")
            } else {
                match image::for_ocr(bytes, &opened) {
                    Ok(pixels) => ocr_page(&doc.path, 1, &pixels, opts),
                    Err(ImageFailure::TooLarge(_)) => Err("too_many_pixels"),
                    Err(ImageFailure::Unreadable(_)) => Err("unsupported_image"),
                }
            }
        }
    };
    match outcome {
        Ok((segments, lines, found)) => {
            doc.segments = segments;
            doc.ocr_lines = lines;
            doc.secrets.extend(found);
            doc.ocr_outcomes.push("ok");
        }
        Err(outcome) => {
            doc.segments = vec![Segment {
                anchor: Anchor::Document { path: doc.path.clone() },
                text: String::new(),
            }];
            doc.ocr_outcomes.push(outcome);
        }
    }
    Ok(())
}

/// Scanned PDF pages: each page's placeholder segment is replaced by the
/// OCR blocks of its image.
fn read_scanned_pages(doc: &mut Document, scans: Vec<(u32, Result<Vec<u8>, String>)>, opts: &WalkOptions) {
    for (page, image) in scans {
        let outcome = match image {
            Err(why) if why == pdf::BLANK_PAGE => Err("blank_page"),
            Err(_) => Err("unsupported_image"),
            Ok(bytes) => {
                let outcome = ocr_page(&doc.path, page, &bytes, opts);
                doc.page_images.push((page, bytes));
                outcome
            }
        };
        match outcome {
            Ok((segments, lines, found)) => {
                let at = doc
                    .segments
                    .iter()
                    .position(|s| matches!(s.anchor, Anchor::Page { page: p, .. } if p == page));
                if let Some(at) = at {
                    doc.segments.splice(at..=at, segments);
                }
                doc.ocr_lines.extend(lines);
                doc.secrets.extend(found);
                doc.ocr_outcomes.push("ok");
            }
            Err(outcome) => doc.ocr_outcomes.push(outcome),
        }
    }
}

/// `path` as its folder and its file name, as [`Path::parent`] and
/// [`Path::file_name`] give them; `None` for a path without both. Split at
/// the last `/` on Unix when that is the same (no trailing slash, no `.` or
/// `..` at the end: never in a walked path), which spares parsing every
/// component of every path of a large tree twice over.
fn split_name(path: &Path) -> Option<(&Path, &std::ffi::OsStr)> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let bytes = path.as_os_str().as_bytes();
        if let Some(i) = bytes.iter().rposition(|&b| b == b'/') {
            let (dir, name) = (&bytes[..i], &bytes[i + 1..]);
            let clean = !dir.is_empty() && !dir.ends_with(b"/") && !dir.ends_with(b"/.");
            if clean && !matches!(name, b"" | b"." | b"..") {
                return Some((
                    Path::new(std::ffi::OsStr::from_bytes(dir)),
                    std::ffi::OsStr::from_bytes(name),
                ));
            }
        }
    }
    path.parent().zip(path.file_name())
}

/// Folders a worker has open to stat files in, the latest first. A stat
/// relative to its folder spares the kernel the walk down the whole path,
/// most of the cost of checking that a large tree has not changed.
#[derive(Default)]
struct Folders(Vec<(PathBuf, std::fs::File)>);

impl Folders {
    /// Folders kept open per worker (a worker takes files from a few
    /// folders in turn).
    const KEPT: usize = 8;

    /// Size and modification time (ns since the epoch, as [`mtime_ns`]
    /// gives it) of the file at `path`, links followed; `None` when the
    /// file cannot be stat'ed.
    #[cfg(unix)]
    fn size_and_time(&mut self, path: &Path) -> Option<(u64, i64)> {
        use nix::fcntl::AtFlags;
        let at = match split_name(path).filter(|(d, _)| !d.as_os_str().is_empty()) {
            None => None,
            Some((dir, name)) => match self.0.iter().position(|(d, _)| d.as_os_str() == dir.as_os_str()) {
                Some(i) => Some((i, name)),
                // A folder that cannot be opened (no read permission)
                // is stat'ed through by path.
                None => self.open(dir).map(|f| {
                    self.0.truncate(Self::KEPT - 1);
                    self.0.insert(0, (dir.to_owned(), f));
                    (0, name)
                }),
            },
        };
        let Some((i, name)) = at else {
            return std::fs::metadata(path).ok().map(|m| (m.len(), mtime_ns(&m)));
        };
        let st = nix::sys::stat::fstatat(&self.0[i].1, name, AtFlags::empty()).ok()?;
        let ns = if st.st_mtime < 0 {
            0
        } else {
            st.st_mtime * 1_000_000_000 + st.st_mtime_nsec
        };
        Some((st.st_size as u64, ns))
    }

    #[cfg(not(unix))]
    fn size_and_time(&mut self, path: &Path) -> Option<(u64, i64)> {
        std::fs::metadata(path).ok().map(|m| (m.len(), mtime_ns(&m)))
    }

    /// Opens the folder `dir`: from its parent when that is open (files
    /// come in path order, so a subfolder's parent usually is), which
    /// spares the kernel the walk down the whole path.
    #[cfg(unix)]
    fn open(&self, dir: &Path) -> Option<std::fs::File> {
        use nix::fcntl::OFlag;
        let from_parent = split_name(dir).and_then(|(parent, name)| {
            let (_, fd) = self.0.iter().find(|(d, _)| d.as_os_str() == parent.as_os_str())?;
            let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
            nix::fcntl::openat(fd, name, flags, nix::sys::stat::Mode::empty()).ok()
        });
        from_parent.map_or_else(|| std::fs::File::open(dir).ok(), |fd| Some(fd.into()))
    }
}

/// Stored in place of a file's modification time when that time cannot
/// show a later change (see [`is_recent`]): the next walk reads the file
/// again. No real time is stored as -1 ([`mtime_ns`] gives 0 before the
/// epoch).
pub const UNTRUSTED_MTIME: i64 = -1;

/// Whether a file modified at `mtime_ns` (just read) could be written
/// again, to the same size, without its time changing: then its time
/// says nothing about a later edit (git's "racy" entries). Times in the
/// future are recent too. (How close: [`listing::RACY_NS`].)
fn is_recent(mtime_ns: i64) -> bool {
    mtime_ns > now_ns() - listing::RACY_NS
}

fn mtime_ns(meta: &std::fs::Metadata) -> i64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as i64)
}

/// Reads a file whole, checking that it did not change while it was read
/// (size and modification time before and after); tries once more if it
/// did.
fn read_stable(path: &Path) -> Result<(Vec<u8>, std::fs::Metadata), (SkipReason, String)> {
    read_stable_with(path, |p| std::fs::read(p))
}

/// [`read_stable`] with the read itself given (tests change the file
/// while "reading" it).
fn read_stable_with(
    path: &Path,
    mut read: impl FnMut(&Path) -> std::io::Result<Vec<u8>>,
) -> Result<(Vec<u8>, std::fs::Metadata), (SkipReason, String)> {
    let unreadable = |e: std::io::Error| (SkipReason::Unreadable, e.to_string());
    for _ in 0..2 {
        let before = std::fs::metadata(path).map_err(unreadable)?;
        let bytes = read(path).map_err(unreadable)?;
        let after = std::fs::metadata(path).map_err(unreadable)?;
        if before.len() == after.len() && mtime_ns(&before) == mtime_ns(&after) && bytes.len() as u64 == after.len() {
            return Ok((bytes, after));
        }
    }
    Err((SkipReason::Changing, "the file changed while it was read, twice".into()))
}

/// Reads one file into a walk item: a document, unchanged, or a skip.
fn read_entry(path: &Path, shown: String, opts: &WalkOptions, corpus_bytes: &AtomicU64) -> WalkItem {
    match read_file(path, &shown, opts, corpus_bytes) {
        Ok(item) => item,
        Err((reason, detail)) => WalkItem::Skip(Skip {
            path: shown,
            reason,
            detail,
        }),
    }
}

fn read_file(
    path: &Path,
    shown: &str,
    opts: &WalkOptions,
    corpus_bytes: &AtomicU64,
) -> Result<WalkItem, (SkipReason, String)> {
    let limits = &opts.limits;
    let meta = std::fs::metadata(path).map_err(|e| (SkipReason::Unreadable, e.to_string()))?;
    let ext = extension(path);
    let is_pdf = ext == "pdf";
    let cap = if is_pdf {
        limits.max_pdf_bytes
    } else {
        limits.max_file_bytes
    };
    if meta.len() > cap {
        return Err((SkipReason::TooLarge, format!("{} bytes, limit {cap}", meta.len())));
    }
    let before = corpus_bytes.fetch_add(meta.len(), Ordering::Relaxed);
    if before + meta.len() > limits.max_corpus_bytes {
        return Err((
            SkipReason::CorpusFull,
            format!("corpus limit of {} bytes reached", limits.max_corpus_bytes),
        ));
    }
    let (bytes, meta) = read_stable(path)?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err((SkipReason::Empty, "no content".into()));
    }
    let modified_ns = mtime_ns(&meta);
    let mut doc = Document::new(
        shown.to_owned(),
        DocumentKind::Text,
        blake3::hash(&bytes).to_hex().to_string(),
        bytes.len() as u64,
        modified_ns,
    );
    if is_recent(modified_ns) {
        doc.mtime_ns = UNTRUSTED_MTIME;
    }
    if is_pdf || bytes.starts_with(b"%PDF-") {
        doc.kind = DocumentKind::Pdf;
        let content = pdf::extract(
            shown,
            bytes,
            Duration::from_secs(limits.pdf_extract_seconds),
            &opts.pdf_isolation,
        )
        .map_err(|f| (f.reason, f.detail))?;
        doc.segments = content.pages;
        doc.symbols = content.sections;
        doc.title = content.title;
        if !opts.keep_secrets {
            for seg in &mut doc.segments {
                let (clean, found) = secrets::redact(shown, &seg.text);
                if let Anchor::Page { page, .. } = seg.anchor {
                    doc.secrets
                        .extend(found.into_iter().map(|f| SecretFinding { page: Some(page), ..f }));
                }
                seg.text = clean;
            }
        }
        read_scanned_pages(&mut doc, content.scans, opts);
        return Ok(WalkItem::Document(Box::new(doc)));
    }
    if IMAGE_EXTENSIONS.contains(&ext.as_str()) {
        doc.kind = DocumentKind::Image;
        read_image(&mut doc, &bytes, opts)?;
        return Ok(WalkItem::Document(Box::new(doc)));
    }
    // UTF-16 text is full of NUL bytes; its byte-order mark says what it is.
    let is_utf16 = bytes.starts_with(b"\xFF\xFE") || bytes.starts_with(b"\xFE\xFF");
    if !is_utf16 {
        // The first bytes decide most files; a NUL further on (a binary
        // with a text-like header) is found by the full scan, which costs
        // little beside decoding.
        if bytes[..bytes.len().min(BINARY_SNIFF_BYTES)].contains(&0) {
            return Err((SkipReason::Binary, "NUL byte in the first 8 KiB".into()));
        }
        if let Some(at) = bytes.iter().position(|&b| b == 0) {
            return Err((SkipReason::Binary, format!("NUL byte at offset {at}")));
        }
    }
    let (text, replaced) = decode(&bytes);
    let text = if opts.keep_secrets {
        text
    } else {
        let (clean, found) = secrets::redact(shown, &text);
        doc.secrets = found;
        clean
    };
    doc.replaced_chars = replaced;
    doc.language = code_language(shown);
    if doc.language.is_some() {
        doc.kind = DocumentKind::Code;
    }
    if let Some(language) = doc.language {
        match outline::outline(language, &text, Duration::from_millis(limits.parse_millis)) {
            Ok(symbols) => doc.symbols = symbols.unwrap_or_default(),
            Err(OutlineFailure::Timeout) => doc.outline_failure = Some("timeout"),
            Err(OutlineFailure::MostlyErrors) => doc.outline_failure = Some("mostly_errors"),
        }
    }
    doc.segments = split_text(shown, &text);
    Ok(WalkItem::Document(Box::new(doc)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk_all(root: &Path, opts: &WalkOptions) -> (Vec<Document>, Vec<Skip>, Vec<String>) {
        let (mut docs, mut skips, mut unchanged) = (Vec::new(), Vec::new(), Vec::new());
        walk(&[root.to_path_buf()], opts, |item| match item {
            WalkItem::Document(d) => docs.push(*d),
            WalkItem::Skip(s) => skips.push(s),
            WalkItem::Unchanged { path } => unchanged.push(path),
            listed @ WalkItem::UnchangedListed { .. } => unchanged.extend(listed.paths().map(str::to_owned)),
        });
        docs.sort_by(|a, b| a.path.cmp(&b.path));
        skips.sort_by(|a, b| a.path.cmp(&b.path));
        (docs, skips, unchanged)
    }

    fn name(p: &str) -> &str {
        p.rsplit('/').next().unwrap()
    }

    #[test]
    fn every_file_is_a_document_or_a_counted_skip() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("a.rs"), "fn main() {}\n").unwrap();
        std::fs::write(root.join("notes.md"), "# Notes\nhello\n").unwrap();
        std::fs::write(root.join("blob.txt"), b"abc\0def").unwrap();
        std::fs::write(root.join("empty.txt"), b"  \n").unwrap();
        std::fs::write(root.join("big.txt"), vec![b'x'; 2000]).unwrap();
        std::fs::write(root.join(".hidden"), "secret").unwrap();
        std::fs::write(root.join("ignored.log"), "noise").unwrap();
        std::fs::write(root.join(".gitignore"), "*.log\n").unwrap();
        std::fs::write(root.join("store.db"), "not really").unwrap();
        std::fs::write(root.join("store.db-wal"), "its journal").unwrap();
        // Another name for the store: found by its real path.
        std::os::unix::fs::symlink(root.join("store.db"), root.join("alias.db")).unwrap();
        // scout's cache folder, and another name for it.
        std::fs::create_dir_all(root.join("sub/cache")).unwrap();
        std::fs::write(root.join("sub/cache/kept.txt"), "cached").unwrap();
        std::os::unix::fs::symlink(root.join("sub/cache"), root.join("cache-link")).unwrap();
        let opts = WalkOptions {
            limits: Limits {
                max_file_bytes: 1000,
                ..Limits::default()
            },
            exclude: vec![root.join("store.db"), root.join("sub/cache")],
            ..WalkOptions::default()
        };
        let (docs, skips, _) = walk_all(root, &opts);
        let names: Vec<&str> = docs.iter().map(|d| name(&d.path)).collect();
        assert_eq!(names, vec!["a.rs", "notes.md"]);
        assert_eq!(docs[0].kind, DocumentKind::Code);
        assert_eq!(docs[1].kind, DocumentKind::Text);
        let reasons: Vec<(&str, SkipReason)> = skips.iter().map(|s| (name(&s.path), s.reason)).collect();
        assert_eq!(
            reasons,
            vec![
                ("alias.db", SkipReason::Symlink),
                ("big.txt", SkipReason::TooLarge),
                ("blob.txt", SkipReason::Binary),
                ("cache-link", SkipReason::Symlink),
                ("empty.txt", SkipReason::Empty),
                ("store.db", SkipReason::CorpusFile),
                ("store.db-wal", SkipReason::CorpusFile),
                ("cache", SkipReason::CorpusFile),
            ]
        );
        // The quick count for the progress bar sees the same files (and
        // none in scout's cache folder).
        assert_eq!(count_files(&[root.to_path_buf()], &opts), 9);
        // Followed, the link is found to be the store by its real path.
        let follow = WalkOptions {
            follow_links: true,
            ..opts
        };
        let (docs, skips, _) = walk_all(root, &follow);
        for link in ["alias.db", "cache-link"] {
            assert!(
                skips
                    .iter()
                    .any(|s| name(&s.path) == link && s.reason == SkipReason::CorpusFile),
                "{link}: {skips:?}"
            );
        }
        assert!(!docs.iter().any(|d| d.path.contains("kept.txt")), "{docs:?}");
    }

    #[test]
    fn a_path_splits_into_folder_and_name_as_path_methods_split_it() {
        for p in [
            "a/b", "./a/b", "./x", "x", "/a", "/a/b", "a/./b", "a/../b", "a//b", "a/b/", "a/..", "a/.", "..", "/", "",
        ] {
            let p = Path::new(p);
            assert_eq!(split_name(p), p.parent().zip(p.file_name()), "{}", p.display());
        }
    }

    #[test]
    fn sizes_and_times_from_open_folders_equal_a_plain_stat() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mut paths = Vec::new();
        for d in 0..(Folders::KEPT + 3) {
            let sub = root.join(format!("d{d}"));
            std::fs::create_dir(&sub).unwrap();
            for f in 0..3 {
                let p = sub.join(format!("f{f}.txt"));
                std::fs::write(&p, "x".repeat(d * 10 + f)).unwrap();
                paths.push(p);
            }
        }
        std::os::unix::fs::symlink(root.join("d0/f1.txt"), root.join("link.txt")).unwrap();
        paths.push(root.join("link.txt"));
        let mut folders = Folders::default();
        // Twice round, more folders than are kept open: some are opened
        // again.
        for p in paths.iter().chain(&paths) {
            let m = std::fs::metadata(p).unwrap();
            assert_eq!(
                folders.size_and_time(p),
                Some((m.len(), mtime_ns(&m))),
                "{}",
                p.display()
            );
        }
        assert!(folders.0.len() <= Folders::KEPT);
        assert_eq!(folders.size_and_time(&root.join("d0/missing")), None);
        // A bare name (no folder in the path) is stat'ed as it is.
        assert_eq!(folders.size_and_time(Path::new("no-such-file-here")), None);
    }

    #[test]
    fn a_file_that_changes_while_read_is_read_again_or_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.txt");
        std::fs::write(&path, "first\n").unwrap();
        // Every read races a writer: skipped as changing, after one retry.
        let mut reads = 0;
        let appending = |p: &Path| {
            reads += 1;
            let bytes = std::fs::read(p);
            let mut f = std::fs::OpenOptions::new().append(true).open(p).unwrap();
            std::io::Write::write_all(&mut f, b"more\n").unwrap();
            bytes
        };
        let err = read_stable_with(&path, appending).unwrap_err();
        assert_eq!(err.0, SkipReason::Changing);
        assert_eq!(reads, 2);
        // Only the first read races: the second, stable one is kept.
        let mut first = true;
        let once = |p: &Path| {
            let bytes = std::fs::read(p);
            if std::mem::take(&mut first) {
                std::fs::write(p, "rewritten, longer\n").unwrap();
            }
            bytes
        };
        let (bytes, meta) = read_stable_with(&path, once).unwrap();
        assert_eq!(bytes, b"rewritten, longer\n");
        assert_eq!(meta.len(), bytes.len() as u64);
    }

    #[test]
    fn display_paths_keep_the_root_as_given() {
        assert_eq!(display_path(Path::new("./src/a.rs")), "src/a.rs");
        assert_eq!(display_path(Path::new("examples/demo/x.py")), "examples/demo/x.py");
    }

    #[cfg(unix)]
    #[test]
    fn non_utf8_names_are_kept_lossless() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let raw = std::ffi::OsStr::from_bytes(b"caf\xE9.txt");
        std::fs::write(dir.path().join(raw), "menu\n").unwrap();
        let (docs, skips, _) = walk_all(dir.path(), &WalkOptions::default());
        assert!(skips.is_empty(), "{skips:?}");
        assert!(docs[0].path.ends_with("/caf\\xE9.txt"), "{}", docs[0].path);
        // A literal backslash cannot be mistaken for an escaped byte.
        assert_eq!(display_path(Path::new("a\\xE9")), "a\\\\xE9");
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_loop_is_recorded_and_the_walk_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        std::fs::write(sub.join("real.md"), "real\n").unwrap();
        std::os::unix::fs::symlink(dir.path(), sub.join("loop")).unwrap();
        let opts = WalkOptions {
            follow_links: true,
            ..WalkOptions::default()
        };
        let (docs, skips, _) = walk_all(dir.path(), &opts);
        assert_eq!(docs.len(), 1, "{docs:?}");
        assert_eq!(skips.len(), 1, "{skips:?}");
        assert_eq!(skips[0].reason, SkipReason::SymlinkLoop);
        assert!(!skips[0].reason.is_error());
    }

    #[test]
    fn utf16_files_are_text_not_binary() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = b"\xFF\xFE".to_vec();
        bytes.extend("Hello from Windows\r\n".encode_utf16().flat_map(u16::to_le_bytes));
        std::fs::write(dir.path().join("win.txt"), bytes).unwrap();
        let (docs, skips, _) = walk_all(dir.path(), &WalkOptions::default());
        assert!(skips.is_empty(), "{skips:?}");
        assert_eq!(docs[0].segments[0].text, "Hello from Windows\n");
    }

    #[test]
    fn include_and_exclude_globs_select_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("vendor")).unwrap();
        std::fs::write(dir.path().join("a.py"), "a\n").unwrap();
        std::fs::write(dir.path().join("b.md"), "b\n").unwrap();
        std::fs::write(dir.path().join("vendor/c.py"), "c\n").unwrap();
        let opts = WalkOptions {
            include: vec!["*.py".into()],
            exclude_globs: vec!["vendor/**".into()],
            ..WalkOptions::default()
        };
        let (docs, _, _) = walk_all(dir.path(), &opts);
        assert_eq!(docs.iter().map(|d| name(&d.path)).collect::<Vec<_>>(), vec!["a.py"]);
    }

    /// Sets the modification time of `path` an hour back.
    fn backdate(path: &Path) {
        let hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(hour_ago)
            .unwrap();
    }

    #[test]
    fn files_that_match_the_corpus_are_not_read_again() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("same.md"), "same\n").unwrap();
        std::fs::write(dir.path().join("edited.md"), "before\n").unwrap();
        backdate(&dir.path().join("same.md"));
        backdate(&dir.path().join("edited.md"));
        let (first, _, _) = walk_all(dir.path(), &WalkOptions::default());
        assert!(first.iter().all(|d| d.mtime_ns > 0), "old times are kept");
        let known: KnownFiles = first
            .iter()
            .map(|d| {
                (
                    d.path.clone(),
                    KnownFile {
                        bytes: d.bytes,
                        mtime_ns: d.mtime_ns,
                    },
                )
            })
            .collect();
        std::fs::write(dir.path().join("edited.md"), "after, longer\n").unwrap();
        let opts = WalkOptions {
            known: Arc::new(known),
            ..WalkOptions::default()
        };
        let (docs, _, unchanged) = walk_all(dir.path(), &opts);
        assert_eq!(unchanged.iter().map(|p| name(p)).collect::<Vec<_>>(), vec!["same.md"]);
        assert_eq!(
            docs.iter().map(|d| name(&d.path)).collect::<Vec<_>>(),
            vec!["edited.md"]
        );
    }

    /// Every item of a walk (or a listing's replay), as `kind path`, by
    /// path; and how the walk went.
    fn walked(roots: &[PathBuf], opts: &WalkOptions) -> (Vec<String>, Walked) {
        let mut items = Vec::new();
        let walked = walk_batches(roots, opts, &|_| {}, |batch| {
            items.extend(batch.into_iter().flat_map(|item| match item {
                WalkItem::Document(d) => vec![format!("document {}", d.path)],
                WalkItem::Unchanged { path } => vec![format!("unchanged {path}")],
                listed @ WalkItem::UnchangedListed { .. } => listed.paths().map(|p| format!("unchanged {p}")).collect(),
                WalkItem::Skip(s) => vec![format!("{} {}", s.reason.as_str(), s.path)],
            }));
        });
        items.sort_by(|a, b| a.split_once(' ').unwrap().1.cmp(b.split_once(' ').unwrap().1));
        (items, walked)
    }

    /// The known files of a walk's documents (as a corpus would hold them;
    /// the paths are absolute).
    fn known_of(items: &[String]) -> KnownFiles {
        items
            .iter()
            .filter_map(|i| i.strip_prefix("document "))
            .map(|p| {
                let m = std::fs::metadata(p).unwrap();
                let known = KnownFile {
                    bytes: m.len(),
                    mtime_ns: mtime_ns(&m),
                };
                (p.to_owned(), known)
            })
            .collect()
    }

    /// A tree old enough for a walk to record its listing: folders
    /// changed in the last 2 seconds are not trusted, and a folder's
    /// change time cannot be set back.
    #[cfg(unix)]
    fn settled_tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("tree");
        std::fs::create_dir_all(root.join("src/deep")).unwrap();
        std::fs::write(root.join(".gitignore"), "*.log\n").unwrap();
        std::fs::write(root.join("README.md"), "# tree\n").unwrap();
        std::fs::write(root.join("build.log"), "ignored\n").unwrap();
        std::fs::write(root.join("src/lib.rs"), "pub fn f() {}\n").unwrap();
        std::fs::write(root.join("src/deep/mod.rs"), "pub fn g() {}\n").unwrap();
        std::fs::write(root.join("src/empty.txt"), "").unwrap();
        std::os::unix::fs::symlink("lib.rs", root.join("src/link.rs")).unwrap();
        for f in [
            ".gitignore",
            "README.md",
            "build.log",
            "src/lib.rs",
            "src/deep/mod.rs",
            "src/empty.txt",
        ] {
            backdate(&root.join(f));
        }
        std::thread::sleep(Duration::from_millis(2_100));
        dir
    }

    #[cfg(unix)]
    #[test]
    fn a_listing_stands_in_for_the_walk_until_a_folder_or_ignore_file_changes() {
        let dir = settled_tree();
        let root = dir.path().join("tree");
        let roots = [root.clone()];
        let (first, walked_first) = walked(&roots, &WalkOptions::default());
        assert!(!walked_first.replayed);
        let mut listing = walked_first.listing.expect("a settled tree gets a listing");
        assert!(first.iter().all(|i| !i.ends_with("build.log")), "{first:?}");
        let opts = WalkOptions {
            known: Arc::new(known_of(&first)),
            ..WalkOptions::default()
        };
        // The corpus keeps the listing with what it holds of each file.
        listing.set_known(&opts.known);
        let bytes = listing.to_bytes();
        let check = || check_listing(&roots, &opts, &bytes);
        let replay = |opts: &WalkOptions| {
            let opts = WalkOptions {
                listing: check().map(Arc::new),
                ..opts.clone()
            };
            walked(&roots, &opts)
        };

        // Nothing changed: the replay gives what a walk gives.
        let (again, how) = replay(&opts);
        assert!(how.replayed && how.listing.is_none());
        let (walk, _) = walked(&roots, &opts);
        assert_eq!(again, walk);
        assert!(again
            .iter()
            .any(|i| i.starts_with("unchanged ") && i.ends_with("src/lib.rs")));
        assert!(again.iter().any(|i| i.starts_with("empty ")), "{again:?}");
        assert!(again.iter().any(|i| i.starts_with("symlink ")), "{again:?}");

        // A file edited in place changes no folder: the listing holds,
        // and the replay reads the file again.
        std::fs::write(root.join("src/deep/mod.rs"), "pub fn g() { edited() }\n").unwrap();
        let (edited, how) = replay(&opts);
        assert!(how.replayed);
        assert!(edited
            .iter()
            .any(|i| i == &format!("document {}", display_path(&root.join("src/deep/mod.rs")))));

        // An ignore file above the root could change what is taken: while
        // there is one, the listing does not hold.
        std::fs::write(dir.path().join(".ignore"), "README.md\n").unwrap();
        assert!(check().is_none());
        std::fs::remove_file(dir.path().join(".ignore")).unwrap();
        assert!(check().is_some());

        // A new file in a folder: the folder changed, so the tree is
        // walked, and the file is found.
        std::fs::write(root.join("src/deep/new.rs"), "pub fn h() {}\n").unwrap();
        assert!(check().is_none());
        let (after, how) = replay(&opts);
        assert!(!how.replayed);
        assert!(after.iter().any(|i| i.ends_with("src/deep/new.rs")), "{after:?}");
        assert!(how.listing.is_none(), "the folder changed just now: no listing");
    }

    #[cfg(unix)]
    #[test]
    fn an_ignore_file_edited_in_place_ends_the_listing_and_a_fresh_tree_gets_none() {
        let fresh = tempfile::tempdir().unwrap();
        std::fs::write(fresh.path().join("a.md"), "a\n").unwrap();
        let (_, how) = walked(&[fresh.path().to_owned()], &WalkOptions::default());
        assert!(
            how.listing.is_none(),
            "a folder changed in the last 2 seconds is not trusted"
        );

        let dir = settled_tree();
        let root = dir.path().join("tree");
        let roots = [root.clone()];
        let (_, how) = walked(&roots, &WalkOptions::default());
        let bytes = how.listing.expect("a settled tree gets a listing").to_bytes();
        let opts = WalkOptions::default();
        assert!(check_listing(&roots, &opts, &bytes).is_some());
        // Other walk options: another listing.
        let hidden = WalkOptions {
            hidden: true,
            ..WalkOptions::default()
        };
        assert!(check_listing(&roots, &hidden, &bytes).is_none());
        // Same size, other rule: build.log is no longer ignored.
        std::fs::write(root.join(".gitignore"), "*.tmp\n").unwrap();
        assert!(check_listing(&roots, &opts, &bytes).is_none());
        let (items, _) = walked(&roots, &opts);
        assert!(items.iter().any(|i| i.ends_with("build.log")), "{items:?}");
    }

    #[test]
    fn a_file_modified_just_before_it_was_read_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fresh.md");
        std::fs::write(&path, "one\n").unwrap();
        let (first, _, _) = walk_all(dir.path(), &WalkOptions::default());
        assert_eq!(
            first[0].mtime_ns, UNTRUSTED_MTIME,
            "its time may not show the next edit"
        );
        assert!(first[0].modified > 0, "the prompt order keeps the real time");
        // Rewritten to the same size at once: a clock that has not ticked
        // leaves the time as it was, and only reading again can tell.
        let known: KnownFiles = [(
            first[0].path.clone(),
            KnownFile {
                bytes: first[0].bytes,
                mtime_ns: first[0].mtime_ns,
            },
        )]
        .into_iter()
        .collect();
        std::fs::write(&path, "two\n").unwrap();
        let opts = WalkOptions {
            known: Arc::new(known),
            ..WalkOptions::default()
        };
        let (docs, _, unchanged) = walk_all(dir.path(), &opts);
        assert!(unchanged.is_empty());
        assert_eq!(docs[0].segments[0].text, "two\n");
    }

    #[test]
    fn excluded_folders_are_not_walked() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("cache")).unwrap();
        std::fs::write(dir.path().join("cache/model.gguf"), "weights").unwrap();
        std::fs::write(dir.path().join("keep.md"), "keep\n").unwrap();
        let opts = WalkOptions {
            exclude: vec![dir.path().join("cache")],
            ..WalkOptions::default()
        };
        let (docs, skips, _) = walk_all(dir.path(), &opts);
        assert_eq!(docs.len(), 1);
        assert_eq!(skips.len(), 1, "the folder is one counted skip: {skips:?}");
        assert!(skips[0].path.ends_with("/cache"));
    }

    #[test]
    fn an_image_bomb_is_kept_but_never_decoded() {
        // A valid PNG header claiming 100,000 x 100,000 pixels, and nothing
        // else.
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        png.extend_from_slice(&100_000u32.to_be_bytes());
        png.extend_from_slice(&100_000u32.to_be_bytes());
        png.extend_from_slice(b"\x08\x02\0\0\0");
        let mut crc = flate2::Crc::new();
        crc.update(&png[12..]);
        png.extend_from_slice(&crc.sum().to_be_bytes());
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bomb.png"), png).unwrap();
        let opts = WalkOptions {
            ocr_lang: Some("eng".into()),
            ..WalkOptions::default()
        };
        let started = std::time::Instant::now();
        let (docs, skips, _) = walk_all(dir.path(), &opts);
        assert!(skips.is_empty());
        assert_eq!(docs[0].ocr_outcomes, vec!["too_many_pixels"]);
        assert_eq!(
            docs[0].image,
            Some(crate::ingest::ImageInfo {
                width: 100_000,
                height: 100_000
            })
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_single_file_root_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("one.txt");
        std::fs::write(&f, "only line").unwrap();
        let (docs, skips, _) = walk_all(&f, &WalkOptions::default());
        assert!(skips.is_empty());
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0].segments[0].text, "only line\n");
    }
}
