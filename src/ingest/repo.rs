//! Walking sources: folders (with .gitignore rules) and single files.
//!
//! Files are read on parallel worker threads; each becomes one
//! [`WalkItem`] (a document, a file known unchanged, or a counted skip)
//! sent to the caller in the order the workers finish. Walk errors
//! (unreadable folders, symlink loops, vanished files) are skips, never
//! dropped. A file whose size and modification time match what the corpus
//! already holds is not read again.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, UNIX_EPOCH};

use ignore::overrides::OverrideBuilder;
use ignore::{WalkBuilder, WalkState};

use crate::limits::{Limits, BINARY_SNIFF_BYTES, MAX_SCAN_PIXELS};

use super::image::{self, ImageFailure, IMAGE_EXTENSIONS};
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
}

/// One file, as the walk saw it.
#[derive(Debug, Clone, PartialEq)]
pub enum WalkItem {
    Document(Box<Document>),
    /// Same size and modification time as in the corpus: not read again.
    Unchanged {
        path: String,
    },
    Skip(Skip),
}

impl WalkItem {
    #[must_use]
    pub fn path(&self) -> &str {
        match self {
            WalkItem::Document(d) => &d.path,
            WalkItem::Unchanged { path } => path,
            WalkItem::Skip(s) => &s.path,
        }
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
pub fn walk_batches(
    roots: &[PathBuf],
    opts: &WalkOptions,
    each_document: &(dyn Fn(&Document) + Sync),
    mut on_batch: impl FnMut(Vec<WalkItem>),
) {
    let excluded: Vec<PathBuf> = opts.exclude.iter().filter_map(|p| p.canonicalize().ok()).collect();
    let excluded_inodes = inodes(&excluded);
    let corpus_bytes = AtomicU64::new(0);
    let (tx, rx) = mpsc::channel::<Vec<WalkItem>>();
    std::thread::scope(|scope| {
        let (excluded, corpus_bytes) = ((&excluded[..], &excluded_inodes[..]), &corpus_bytes);
        scope.spawn(move || {
            for root in roots {
                walk_root(root, opts, excluded, corpus_bytes, each_document, &tx);
            }
        });
        for batch in rx {
            on_batch(batch);
        }
    });
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
        let due = !matches!(item, WalkItem::Unchanged { .. }) || self.items.len() + 1 >= UNCHANGED_BATCH;
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
    let excluded: Vec<PathBuf> = opts.exclude.iter().filter_map(|p| p.canonicalize().ok()).collect();
    let excluded_inodes = inodes(&excluded);
    roots
        .iter()
        .filter_map(|root| builder(root, opts).ok())
        .flat_map(|mut b| {
            // scout's cache folder is not walked into (as in the walk).
            let (excluded, excluded_inodes) = (excluded.clone(), excluded_inodes.clone());
            b.filter_entry(move |e| {
                !(e.file_type().is_some_and(|t| t.is_dir())
                    && may_be_excluded_folder(e, &excluded_inodes)
                    && e.path().canonicalize().is_ok_and(|c| excluded.contains(&c)))
            });
            b.build()
        })
        .filter(|e| e.as_ref().is_ok_and(|e| e.file_type().is_some_and(|t| !t.is_dir())))
        .count() as u64
}

fn walk_root(
    root: &Path,
    opts: &WalkOptions,
    (excluded, excluded_inodes): (&[PathBuf], &[u64]),
    corpus_bytes: &AtomicU64,
    each_document: &(dyn Fn(&Document) + Sync),
    tx: &mpsc::Sender<Vec<WalkItem>>,
) {
    let builder = match builder(root, opts) {
        Ok(b) => b,
        Err(detail) => {
            let _ = tx.send(vec![WalkItem::Skip(Skip {
                path: display_path(root),
                reason: SkipReason::Unreadable,
                detail,
            })]);
            return;
        }
    };
    builder.build_parallel().run(|| {
        let mut batch = Batch {
            items: Vec::new(),
            tx: tx.clone(),
        };
        let mut folders = Folders::default();
        Box::new(move |entry| {
            let item = match entry {
                Err(err) => Some(walk_error(root, &err)),
                Ok(e) => {
                    let path = e.path();
                    let is_dir = e.file_type().is_some_and(|t| t.is_dir());
                    let canonical = || path.canonicalize().ok();
                    if is_dir {
                        if may_be_excluded_folder(&e, excluded_inodes)
                            && canonical().is_some_and(|c| excluded.contains(&c))
                        {
                            batch.push(WalkItem::Skip(Skip {
                                path: display_path(path),
                                reason: SkipReason::CorpusFile,
                                detail: "scout's own cache folder, not read".into(),
                            }));
                            return WalkState::Skip;
                        }
                        None
                    } else if e.path_is_symlink() && !opts.follow_links {
                        Some(WalkItem::Skip(Skip {
                            path: display_path(path),
                            reason: SkipReason::Symlink,
                            detail: "a symbolic link, not followed (--follow follows links)".into(),
                        }))
                    } else if !e.file_type().is_some_and(|t| t.is_file()) {
                        None
                    } else if may_be_excluded(&e, excluded)
                        && canonical().is_some_and(|c| {
                            excluded
                                .iter()
                                .any(|x| c == *x || is_journal_of(&c, x) || c.starts_with(x))
                        })
                    {
                        Some(WalkItem::Skip(Skip {
                            path: display_path(path),
                            reason: SkipReason::CorpusFile,
                            detail: "scout's own store or cache".into(),
                        }))
                    } else {
                        Some(read_entry(path, opts, corpus_bytes, &mut folders))
                    }
                }
            };
            if let Some(WalkItem::Document(doc)) = &item {
                each_document(doc);
            }
            if let Some(item) = item {
                if !batch.push(item) {
                    return WalkState::Quit;
                }
            }
            WalkState::Continue
        })
    });
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
fn may_be_excluded_folder(e: &ignore::DirEntry, excluded_inodes: &[u64]) -> bool {
    #[cfg(unix)]
    {
        e.depth() == 0 || e.path_is_symlink() || e.ino().is_none_or(|i| excluded_inodes.contains(&i))
    }
    #[cfg(not(unix))]
    {
        let _ = (e, excluded_inodes);
        true
    }
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
fn may_be_excluded(e: &ignore::DirEntry, excluded: &[PathBuf]) -> bool {
    if e.depth() == 0 || e.path_is_symlink() {
        return true;
    }
    let Some(name) = e.file_name().to_str() else {
        return true;
    };
    excluded.iter().filter_map(|x| x.file_name()?.to_str()).any(|x| {
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
        let (dir, name) = (path.parent(), path.file_name());
        let at = match dir.zip(name).filter(|(d, _)| !d.as_os_str().is_empty()) {
            None => None,
            Some((dir, name)) => match self.0.iter().position(|(d, _)| d.as_os_str() == dir.as_os_str()) {
                Some(i) => Some((i, name)),
                // A folder that cannot be opened (no read permission)
                // is stat'ed through by path.
                None => std::fs::File::open(dir).ok().map(|f| {
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
}

/// Stored in place of a file's modification time when that time cannot
/// show a later change (see [`is_recent`]): the next walk reads the file
/// again. No real time is stored as -1 ([`mtime_ns`] gives 0 before the
/// epoch).
pub const UNTRUSTED_MTIME: i64 = -1;

/// How close to the read a modification time must be for a later write
/// to leave it unchanged: file systems stamp times from a clock that
/// ticks every few milliseconds (ext4) to every 2 seconds (FAT).
const RECENT_NS: i64 = 2_000_000_000;

/// Whether a file modified at `mtime_ns` (just read) could be written
/// again, to the same size, without its time changing: then its time
/// says nothing about a later edit (git's "racy" entries). Times in the
/// future are recent too.
fn is_recent(mtime_ns: i64) -> bool {
    let now = std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    mtime_ns > now - RECENT_NS
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
fn read_entry(path: &Path, opts: &WalkOptions, corpus_bytes: &AtomicU64, folders: &mut Folders) -> WalkItem {
    let shown = display_path(path);
    if let Some(known) = opts.known.get(&shown) {
        if folders.size_and_time(path) == Some((known.bytes, known.mtime_ns)) {
            corpus_bytes.fetch_add(known.bytes, Ordering::Relaxed);
            return WalkItem::Unchanged { path: shown };
        }
    }
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
