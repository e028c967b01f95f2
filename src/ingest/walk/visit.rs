//! One entry the walk (or a listing) gives: a folder, a file to read, a
//! file known unchanged, or a counted skip (walk errors, symlink loops,
//! the corpus's own files, scout's cache); and the open folders files are
//! stat'ed and opened relative to.
//!
//! Never reads a file's content: `ingest::read` does.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use super::images::is_deferred;
use super::{display_path, mtime_ns, read_entry, Context, KnownFile, WalkItem};
use crate::ingest::{Skip, SkipReason};

/// One entry, as the walker gave it or a [`Listing`] recorded it.
pub(super) struct Visit<'a> {
    pub(super) path: &'a Path,
    /// `path` as reports show it, when known ([`display_path`] otherwise).
    pub(super) shown: Option<&'a str>,
    pub(super) depth: usize,
    pub(super) ino: Option<u64>,
    /// A folder (or, with --follow, a link to one).
    pub(super) is_dir: bool,
    pub(super) is_file: bool,
    /// The path itself is a symbolic link.
    pub(super) is_symlink: bool,
    pub(super) known: Known,
}

/// What the corpus holds for an entry's file, as far as its visit knows.
#[derive(Clone, Copy)]
pub(super) enum Known {
    /// To be looked up in [`WalkOptions::known`] (a walk).
    LookUp,
    /// As a listing says: its size and time, or no document.
    Listed(Option<KnownFile>),
}

impl Visit<'_> {
    pub(super) fn of(e: &ignore::DirEntry) -> Visit<'_> {
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
    pub(super) fn shown(&self) -> String {
        self.shown.map_or_else(|| display_path(self.path), str::to_owned)
    }
}

/// What became of one entry.
pub(super) enum Visited<'a> {
    /// A folder to walk into.
    Folder,
    /// A folder not to walk into, and why.
    SkipFolder(WalkItem),
    /// A file with the same size and modification time as in the corpus
    /// (by its shown path): not read again.
    Unchanged(Cow<'a, str>),
    /// An image file handed to the image threads (by its shown path):
    /// they read it and send its item.
    Deferred(Cow<'a, str>),
    Item(WalkItem),
}

/// Decides what one entry is, and reads it when it is a file: the logic a
/// walk and a listing's replay share.
pub(super) fn visit<'a>(v: &Visit<'a>, ctx: &Context<'_>, folders: &mut Folders) -> Visited<'a> {
    let canonical = || v.path.canonicalize().ok();
    let excluded = ctx.excluded;
    if v.is_dir {
        if let Some(roots) = &ctx.opts.confine {
            if !canonical().is_some_and(|c| crate::tasks::access::under_roots(&c, roots)) {
                return Visited::SkipFolder(WalkItem::Skip(Skip {
                    path: v.shown(),
                    reason: SkipReason::OutsideRoots,
                    detail: "the folder resolves to a place outside the roots; not walked".into(),
                }));
            }
        }
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
        WalkItem::Skip(Skip {
            path: v.shown(),
            reason: SkipReason::NotAFile,
            detail: "a named pipe, socket or device file; never opened".into(),
        })
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
        if let Some(images) = ctx.images.as_ref().filter(|_| is_deferred(v.path, ctx.opts)) {
            // Should the image threads be gone (a panic there), the
            // image is read here.
            if images.send((v.path.to_path_buf(), shown.clone().into_owned())).is_ok() {
                return Visited::Deferred(shown);
            }
        }
        read_entry(v.path, shown.into_owned(), ctx.opts, ctx.corpus_bytes)
    };
    if let WalkItem::Document(doc) = &item {
        (ctx.each_document)(doc);
    }
    Visited::Item(item)
}

pub(super) fn walk_error(root: &Path, err: &ignore::Error) -> WalkItem {
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

pub(super) fn find_loop(err: &ignore::Error) -> Option<PathBuf> {
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
pub(super) fn may_be_excluded_folder(v: &Visit<'_>, excluded_inodes: &[u64]) -> bool {
    v.depth == 0 || v.is_symlink || v.ino.is_none_or(|i| excluded_inodes.contains(&i))
}

/// The inode numbers of `paths` that exist (none off Unix).
pub(super) fn inodes(paths: &[PathBuf]) -> Vec<u64> {
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
pub(super) fn may_be_excluded(v: &Visit<'_>, excluded_names: &[String]) -> bool {
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
pub(super) fn is_journal_of(candidate: &Path, store: &Path) -> bool {
    let (Some(c), Some(s)) = (candidate.to_str(), store.to_str()) else {
        return false;
    };
    c.strip_prefix(s).is_some_and(is_journal_suffix)
}

/// What `SQLite` appends to a store's name for the files beside it.
pub(super) fn is_journal_suffix(rest: &str) -> bool {
    matches!(rest, "-journal" | "-wal" | "-shm")
}

pub(super) fn walk_error_path(err: &ignore::Error) -> Option<PathBuf> {
    match err {
        ignore::Error::WithPath { path, .. } => Some(path.clone()),
        ignore::Error::WithDepth { err, .. } | ignore::Error::WithLineNumber { err, .. } => walk_error_path(err),
        ignore::Error::Loop { child, .. } => Some(child.clone()),
        _ => None,
    }
}

/// `path` as its folder and its file name, as [`Path::parent`] and
/// [`Path::file_name`] give them; `None` for a path without both. Split at
/// the last `/` on Unix when that is the same (no trailing slash, no `.` or
/// `..` at the end: never in a walked path), which spares parsing every
/// component of every path of a large tree twice over.
pub(super) fn split_name(path: &Path) -> Option<(&Path, &std::ffi::OsStr)> {
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
pub(super) struct Folders(pub(super) Vec<(PathBuf, std::fs::File)>);

impl Folders {
    /// Folders kept open per worker (a worker takes files from a few
    /// folders in turn).
    pub(super) const KEPT: usize = 8;

    /// Size and modification time (ns since the epoch, as [`mtime_ns`]
    /// gives it) of the file at `path`, links followed; `None` when the
    /// file cannot be stat'ed.
    #[cfg(unix)]
    pub(super) fn size_and_time(&mut self, path: &Path) -> Option<(u64, i64)> {
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
    pub(super) fn size_and_time(&mut self, path: &Path) -> Option<(u64, i64)> {
        std::fs::metadata(path).ok().map(|m| (m.len(), mtime_ns(&m)))
    }

    /// Opens the folder `dir`: from its parent when that is open (files
    /// come in path order, so a subfolder's parent usually is), which
    /// spares the kernel the walk down the whole path.
    #[cfg(unix)]
    pub(super) fn open(&self, dir: &Path) -> Option<std::fs::File> {
        use nix::fcntl::OFlag;
        let from_parent = split_name(dir).and_then(|(parent, name)| {
            let (_, fd) = self.0.iter().find(|(d, _)| d.as_os_str() == parent.as_os_str())?;
            let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
            nix::fcntl::openat(fd, name, flags, nix::sys::stat::Mode::empty()).ok()
        });
        from_parent.map_or_else(|| std::fs::File::open(dir).ok(), |fd| Some(fd.into()))
    }
}
