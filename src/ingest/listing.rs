//! The listing of a tree as the last clean walk saw it, so that a
//! re-ingest of an unchanged tree need not walk it again (as git's
//! untracked cache spares `git status` from listing unchanged folders).
//!
//! A listing keeps every folder the walk entered with its stamp (device,
//! inode, size, modification and change times), the stamp of every ignore
//! file that could have decided what the walk took (in the folders, in the
//! folders above each root, and git's global configuration), and every
//! entry the walk handed over. Adding, removing or renaming anything in a
//! folder changes the folder's change time; editing an ignore file changes
//! its own. So while every stamp is as recorded, a walk would meet the
//! same entries, and the listing stands in for it: files are still stat'ed
//! one by one (an edit changes a file's stamp, never its folder's).
//! Any difference at all, and the tree is walked again.
//!
//! The listing also keeps, for each file, the size and modification time
//! the corpus held for it when the listing was kept, so that a re-ingest
//! need not read them from the corpus's documents table: the corpus logs
//! every document written or removed since (see `documents_touched` in
//! [`crate::corpus`]), and those few are taken from the corpus instead.
//!
//! A listing is recorded only after a walk without errors, of folders,
//! without `--follow`, on Unix; and never when a stamp is so recent that a
//! change in the same tick of the file system's clock could leave it as it
//! is (see [`RACY_NS`]).

use std::path::{Path, PathBuf};

use super::{KnownFile, KnownFiles};

/// How long before the walk's start a stamp must be for a later change to
/// be sure to alter it: file systems stamp times from a clock that ticks
/// every few milliseconds (ext4) to every 2 seconds (FAT).
pub const RACY_NS: i64 = 2_000_000_000;

/// First bytes of a stored listing (and its format's version).
const MAGIC: &[u8] = b"scout walk listing 2\n";

/// What `stat` says of a path, for telling whether it changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
}

impl Stamp {
    /// The stamp of `path` (links followed when `follow`); `None` when it
    /// does not exist or cannot be stat'ed.
    #[cfg(unix)]
    #[must_use]
    pub fn of(path: &Path, follow: bool) -> Option<Stamp> {
        use std::os::unix::fs::MetadataExt;
        let m = if follow {
            std::fs::metadata(path)
        } else {
            std::fs::symlink_metadata(path)
        }
        .ok()?;
        Some(Stamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
            ctime_ns: m.ctime() * 1_000_000_000 + m.ctime_nsec(),
        })
    }

    #[cfg(not(unix))]
    #[must_use]
    pub fn of(_path: &Path, _follow: bool) -> Option<Stamp> {
        None
    }

    /// Whether a change made in the same clock tick as the last one could
    /// leave this stamp as it is, for a walk that started at `started_ns`.
    #[must_use]
    pub fn is_racy(&self, started_ns: i64) -> bool {
        self.mtime_ns.max(self.ctime_ns) > started_ns - RACY_NS
    }
}

/// A path whose stamp the listing depends on: a folder the walk entered,
/// or an ignore file (which may be absent: then it must stay absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watched {
    pub path: PathBuf,
    /// Whether links are followed (a root given as a link, ignore files).
    pub follow: bool,
    /// Only whether the path is the same file (device and inode) counts,
    /// not its times: for a `.git` folder above a root, which git
    /// changes all along, but whose replacement by a `.git` file would
    /// bring other exclude rules.
    pub identity_only: bool,
    pub stamp: Option<Stamp>,
}

impl Watched {
    /// `path` as it is now.
    #[must_use]
    pub fn now(path: PathBuf, follow: bool) -> Watched {
        let stamp = Stamp::of(&path, follow);
        Watched {
            path,
            follow,
            identity_only: false,
            stamp,
        }
    }

    /// `path` as it is now, watched only for being the same file.
    #[must_use]
    pub fn identity(path: PathBuf, follow: bool) -> Watched {
        Watched {
            identity_only: true,
            ..Watched::now(path, follow)
        }
    }

    /// Whether the path still has the stamp recorded.
    #[must_use]
    pub fn unchanged(&self) -> bool {
        let now = Stamp::of(&self.path, self.follow);
        if self.identity_only {
            now.map(|s| (s.dev, s.ino)) == self.stamp.map(|s| (s.dev, s.ino))
        } else {
            now == self.stamp
        }
    }

    /// Whether a change could leave the stamp as recorded (see
    /// [`Stamp::is_racy`]); never for a path that is absent or watched
    /// only for its identity.
    #[must_use]
    pub fn is_racy(&self, started_ns: i64) -> bool {
        !self.identity_only && self.stamp.is_some_and(|s| s.is_racy(started_ns))
    }
}

/// One entry the walk handed over: a file, a link, anything but a folder
/// it entered (a folder it skipped, such as scout's cache, is one too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Where the path as reports show it ([`super::display_path`]) lies in
    /// the listing's paths ([`Listing::shown`] gives it): one string for
    /// all entries, not one each, so a listing reads back quickly.
    shown: (u32, u32),
    /// The path as walked, when `shown` does not name the same file: a
    /// name that is not UTF-8 or holds a backslash (escaped in `shown`).
    pub raw: Option<PathBuf>,
    pub depth: u32,
    /// The inode number the walk gave (folders only; 0 when none).
    pub ino: u64,
    pub is_dir: bool,
    pub is_file: bool,
    pub is_symlink: bool,
    /// What the corpus held for this file (size and modification time)
    /// when the listing was kept, or since, as [`Listing::update_known`]
    /// brought it up to date; `None` when it held no document for it.
    pub known: Option<KnownFile>,
}

impl Entry {
    /// An entry walked at `path`, to be shown as `shown` (given with it to
    /// [`Listing::new`]).
    #[must_use]
    pub fn new(
        path: &Path,
        shown: &str,
        depth: usize,
        ino: Option<u64>,
        is_dir: bool,
        is_file: bool,
        is_symlink: bool,
    ) -> Entry {
        // `shown` drops a leading `./`, which names the same file.
        let same = path.as_os_str() == shown || path.strip_prefix(".").is_ok_and(|p| p.as_os_str() == shown);
        Entry {
            raw: (!same).then(|| path.to_owned()),
            shown: (0, 0),
            depth: u32::try_from(depth).unwrap_or(u32::MAX),
            ino: ino.unwrap_or(0),
            is_dir,
            is_file,
            is_symlink,
            known: None,
        }
    }
}

/// A tree as one clean walk listed it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Listing {
    /// The roots, options and environment the walk ran with.
    pub key: String,
    pub watched: Vec<Watched>,
    /// Every entry's shown path, one after the other.
    paths: String,
    /// By shown path.
    pub entries: Vec<Entry>,
}

impl Listing {
    /// A listing of `entries`, each with its shown path (in any order).
    #[must_use]
    pub fn new(key: String, watched: Vec<Watched>, mut entries: Vec<(String, Entry)>) -> Listing {
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut paths = String::with_capacity(entries.iter().map(|(s, _)| s.len()).sum());
        let entries = entries
            .into_iter()
            .map(|(shown, mut e)| {
                e.shown = span(&mut paths, &shown);
                e
            })
            .collect();
        Listing {
            key,
            watched,
            paths,
            entries,
        }
    }

    /// The path of `e` (one of this listing's entries) as reports show it.
    #[must_use]
    pub fn shown(&self, e: &Entry) -> &str {
        &self.paths[e.shown.0 as usize..e.shown.1 as usize]
    }

    /// The path to open for `e` (one of this listing's entries).
    #[must_use]
    pub fn path<'a>(&'a self, e: &'a Entry) -> &'a Path {
        e.raw.as_deref().unwrap_or_else(|| Path::new(self.shown(e)))
    }

    /// Whether this listing is what a walk with `key` would give now:
    /// same key, and every watched path's stamp as recorded.
    #[must_use]
    pub fn still_holds(&self, key: &str) -> bool {
        self.key == key && self.watched.iter().all(Watched::unchanged)
    }

    /// Takes what the corpus holds for each file from `known` (all of it,
    /// by shown path).
    pub fn set_known(&mut self, known: &KnownFiles) {
        let paths = &self.paths;
        for e in &mut self.entries {
            e.known = known.get(&paths[e.shown.0 as usize..e.shown.1 as usize]).copied();
        }
    }

    /// Brings the files in `touched` up to date with what the corpus now
    /// holds for each (`None`: nothing). Paths the listing lacks are
    /// passed over.
    pub fn update_known(&mut self, touched: &[(String, Option<KnownFile>)]) {
        for (path, known) in touched {
            if let Ok(i) = self.entries.binary_search_by(|e| self.shown(e).cmp(path)) {
                self.entries[i].known = *known;
            }
        }
    }

    /// Forgets what the corpus held: every file will be read again.
    pub fn forget_known(&mut self) {
        for e in &mut self.entries {
            e.known = None;
        }
    }

    /// The listing as bytes, for the corpus to keep: numbers as varints,
    /// each path as what it shares with the one before and the rest (the
    /// paths are sorted, so most of each is shared).
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        put_bytes(&mut out, self.key.as_bytes());
        put_varint(&mut out, self.watched.len() as u64);
        let mut prev: &[u8] = &[];
        for w in &self.watched {
            let path = path_bytes(&w.path);
            put_shared(&mut out, prev, path);
            prev = path;
            out.push(u8::from(w.follow) | u8::from(w.stamp.is_some()) << 1 | u8::from(w.identity_only) << 2);
            if let Some(s) = w.stamp {
                for v in [s.dev, s.ino, s.size, s.mtime_ns as u64, s.ctime_ns as u64] {
                    put_varint(&mut out, v);
                }
            }
        }
        put_varint(&mut out, self.entries.len() as u64);
        let mut prev: &[u8] = &[];
        for e in &self.entries {
            let shown = self.shown(e).as_bytes();
            put_shared(&mut out, prev, shown);
            prev = shown;
            out.push(
                u8::from(e.is_dir)
                    | u8::from(e.is_file) << 1
                    | u8::from(e.is_symlink) << 2
                    | u8::from(e.raw.is_some()) << 3
                    | u8::from(e.known.is_some()) << 4,
            );
            put_varint(&mut out, u64::from(e.depth));
            put_varint(&mut out, e.ino);
            if let Some(raw) = &e.raw {
                put_bytes(&mut out, path_bytes(raw));
            }
            if let Some(k) = e.known {
                put_varint(&mut out, k.bytes);
                put_varint(&mut out, k.mtime_ns as u64);
            }
        }
        out
    }

    /// A listing read back from [`Listing::to_bytes`]; `None` when the
    /// bytes are not one (another version, or damaged).
    #[must_use]
    pub fn from_bytes(bytes: &[u8]) -> Option<Listing> {
        let (key, watched, rest) = Self::read_head(bytes)?;
        let (paths, entries) = Self::read_entries(rest)?;
        Some(Listing {
            key,
            watched,
            paths,
            entries,
        })
    }

    /// The listing kept as `bytes`, when it is one for a walk with `key`
    /// and still holds ([`Listing::still_holds`]). Its watched paths are
    /// stat'ed while its entries are read, on another thread.
    #[must_use]
    pub fn read_if_holds(bytes: &[u8], key: &str) -> Option<Listing> {
        let (found, watched, rest) = Self::read_head(bytes)?;
        if found != key {
            return None;
        }
        std::thread::scope(|scope| {
            let entries = scope.spawn(|| Self::read_entries(rest));
            let holds = watched.iter().all(Watched::unchanged);
            let (paths, entries) = entries
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
            holds.then_some(Listing {
                key: found,
                watched,
                paths,
                entries,
            })
        })
    }

    /// The key and watched paths of a listing's bytes, and the bytes of
    /// its entries.
    fn read_head(bytes: &[u8]) -> Option<(String, Vec<Watched>, &[u8])> {
        let mut r = Reader(bytes.strip_prefix(MAGIC)?);
        let key = String::from_utf8(r.bytes()?.to_vec()).ok()?;
        let n = r.count()?;
        let mut watched = Vec::with_capacity(n);
        let mut prev = Vec::new();
        for _ in 0..n {
            r.shared(&mut prev)?;
            let flags = r.byte()?;
            let stamp = if flags & 2 == 0 {
                None
            } else {
                let mut v = [0u64; 5];
                for x in &mut v {
                    *x = r.varint()?;
                }
                Some(Stamp {
                    dev: v[0],
                    ino: v[1],
                    size: v[2],
                    mtime_ns: v[3] as i64,
                    ctime_ns: v[4] as i64,
                })
            };
            watched.push(Watched {
                path: bytes_path(&prev),
                follow: flags & 1 != 0,
                identity_only: flags & 4 != 0,
                stamp,
            });
        }
        Some((key, watched, r.0))
    }

    /// The entries [`Listing::read_head`] left, and their shown paths.
    fn read_entries(bytes: &[u8]) -> Option<(String, Vec<Entry>)> {
        let mut r = Reader(bytes);
        let n = r.count()?;
        // Each path is about as long as the bytes per entry.
        let mut paths = String::with_capacity(bytes.len() * 2);
        let mut entries = Vec::with_capacity(n);
        let mut prev = Vec::new();
        for _ in 0..n {
            r.shared(&mut prev)?;
            let flags = r.byte()?;
            let depth = u32::try_from(r.varint()?).ok()?;
            let ino = r.varint()?;
            let raw = if flags & 8 == 0 {
                None
            } else {
                Some(bytes_path(r.bytes()?))
            };
            let known = if flags & 16 == 0 {
                None
            } else {
                Some(KnownFile {
                    bytes: r.varint()?,
                    mtime_ns: r.varint()? as i64,
                })
            };
            entries.push(Entry {
                shown: span(&mut paths, std::str::from_utf8(&prev).ok()?),
                raw,
                depth,
                ino,
                is_dir: flags & 1 != 0,
                is_file: flags & 2 != 0,
                is_symlink: flags & 4 != 0,
                known,
            });
        }
        r.0.is_empty().then_some((paths, entries))
    }
}

/// The ignore files a walk consults in or above a folder, which may be
/// absent: git's exclude file lies in `.git/info`.
pub const IGNORE_FILES: [&str; 2] = [".gitignore", ".ignore"];

/// Paths of git's global configuration that decide the global excludes
/// file, and that file (as the `ignore` crate finds it).
#[must_use]
pub fn global_ignore_paths() -> Vec<PathBuf> {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    let home = env("HOME");
    let xdg = env("XDG_CONFIG_HOME").or_else(|| home.as_ref().map(|h| h.join(".config")));
    let mut out = Vec::new();
    out.extend(env("GIT_CONFIG_GLOBAL"));
    out.extend(home.map(|h| h.join(".gitconfig")));
    out.extend(xdg.map(|x| x.join("git/config")));
    out.push(env("GIT_CONFIG_SYSTEM").unwrap_or_else(|| PathBuf::from("/etc/gitconfig")));
    out.extend(ignore::gitignore::gitconfig_excludes_path());
    out
}

/// The environment that decides which global ignore files apply.
#[must_use]
pub fn environment_key() -> String {
    ["HOME", "XDG_CONFIG_HOME", "GIT_CONFIG_GLOBAL", "GIT_CONFIG_SYSTEM"]
        .iter()
        .map(|k| format!("{k}={:?};", std::env::var_os(k)))
        .collect()
}

/// Appends `s` to `paths`; where it lies there.
fn span(paths: &mut String, s: &str) -> (u32, u32) {
    let start = paths.len();
    paths.push_str(s);
    // A listing's paths would need to pass 4 GiB for this to wrap.
    (start as u32, paths.len() as u32)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// `b` as the length it shares with `prev` and the rest of it.
fn put_shared(out: &mut Vec<u8>, prev: &[u8], b: &[u8]) {
    let shared = prev.iter().zip(b).take_while(|(x, y)| x == y).count();
    put_varint(out, shared as u64);
    put_bytes(out, &b[shared..]);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn byte(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7F).checked_shl(shift)?;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    /// A length that cannot be more than the bytes left (so a damaged
    /// count cannot ask for a huge allocation).
    fn count(&mut self) -> Option<usize> {
        usize::try_from(self.varint()?).ok().filter(|&n| n <= self.0.len())
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.count()?;
        self.take(n)
    }

    /// Reads a [`put_shared`] path over `prev`.
    fn shared(&mut self, prev: &mut Vec<u8>) -> Option<()> {
        let keep = usize::try_from(self.varint()?).ok().filter(|&n| n <= prev.len())?;
        prev.truncate(keep);
        prev.extend_from_slice(self.bytes()?);
        Some(())
    }
}

#[cfg(unix)]
fn path_bytes(p: &Path) -> &[u8] {
    use std::os::unix::ffi::OsStrExt;
    p.as_os_str().as_bytes()
}

#[cfg(unix)]
fn bytes_path(b: &[u8]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    PathBuf::from(std::ffi::OsStr::from_bytes(b))
}

#[cfg(not(unix))]
fn path_bytes(p: &Path) -> &[u8] {
    p.to_str().unwrap_or_default().as_bytes()
}

#[cfg(not(unix))]
fn bytes_path(b: &[u8]) -> PathBuf {
    PathBuf::from(String::from_utf8_lossy(b).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_reads_back_as_written_and_damage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), "x").unwrap();
        let mut listing = Listing::new(
            "k".into(),
            vec![
                Watched::now(dir.path().to_owned(), true),
                Watched::now(dir.path().join("absent"), true),
                Watched::identity(dir.path().to_owned(), true),
            ],
            vec![
                (
                    "a\\\\b".into(),
                    Entry {
                        shown: (0, 0),
                        raw: Some(PathBuf::from("a\\b")),
                        depth: 1,
                        ino: u64::MAX,
                        is_dir: true,
                        is_file: false,
                        is_symlink: true,
                        known: None,
                    },
                ),
                ("a".into(), Entry::new(Path::new("a"), "a", 1, None, false, true, false)),
            ],
        );
        let mut known = KnownFiles::default();
        known.insert("a".into(), KnownFile { bytes: 1, mtime_ns: -1 });
        listing.set_known(&known);
        // By shown path, each with its own.
        let shown: Vec<&str> = listing.entries.iter().map(|e| listing.shown(e)).collect();
        assert_eq!(shown, ["a", "a\\\\b"]);
        assert_eq!(listing.path(&listing.entries[1]), Path::new("a\\b"));
        assert_eq!(listing.entries[0].known, known.get("a").copied());
        assert_eq!(listing.entries[1].known, None);
        assert!(listing.watched[0].stamp.is_some() && listing.watched[1].stamp.is_none());
        let bytes = listing.to_bytes();
        assert_eq!(Listing::from_bytes(&bytes), Some(listing.clone()));
        assert_eq!(Listing::read_if_holds(&bytes, "k"), Some(listing.clone()));
        assert_eq!(Listing::read_if_holds(&bytes, "other options"), None);
        // A document written since: brought up to date by path.
        let mut updated = listing.clone();
        updated.update_known(&[("a".into(), None), ("not listed".into(), None)]);
        assert_eq!(updated.entries[0].known, None);
        assert!(listing.still_holds("k"));
        assert!(!listing.still_holds("other options"));
        for cut in [0, MAGIC.len(), bytes.len() - 1] {
            assert_eq!(Listing::from_bytes(&bytes[..cut]), None, "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(Listing::from_bytes(&longer), None);
        // An absent path that appears, and a folder that gains an entry.
        std::fs::write(dir.path().join("absent"), "").unwrap();
        assert!(!listing.watched[1].unchanged());
        assert!(!listing.still_holds("k"));
    }
}
