//! The disk tier of the KV cache: state files an engine wrote for a
//! prompt prefix, found again by key in a later process.
//!
//! Each entry is two files in one folder: `KEY.kv` (the engine's own state
//! file) and `KEY.sum` (the blake3 of the `.kv` file). An entry is only
//! offered back when both exist and the checksum matches, so a truncated
//! or corrupt file (a crash mid-write, a full disk, a stray edit) is
//! detected, reported and removed, never loaded. Writes go to a temporary
//! name, are synced, and are checked in (renamed into place, checksum last)
//! only when the file on disk is as long as the engine says it wrote: a
//! full disk that cuts a state short leaves no entry. The checksum file
//! holds the length too, checked before the hash. The folder has a byte
//! cap, which temporary files count against; past it the least recently
//! used entries go first, and a state larger than the whole cap is not
//! kept. Temporary files a killed process left are removed when a tier
//! opens the folder.
//!
//! An entry may belong to a group (the windows of one corpus's sweep): a
//! group's entries never evict one another, and a group is evicted whole.
//! A sweep whose windows do not all fit then keeps its first windows and
//! refuses the rest, instead of evicting its own first windows for its
//! last ones (after which the next question would read every window
//! again).
//!
//! The checksum detects accidents (a crash mid-write, a full disk, a stray
//! edit), not tampering: whoever can write the folder can write a matching
//! checksum. Keep the cache folder private to the user who runs scout.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use super::tier::{KvTier, TierCounters};

/// What a lookup found.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// A verified state file.
    Hit(PathBuf),
    Miss,
    /// An entry that failed its check; it has been removed.
    Corrupt(String),
}

#[derive(Debug, Clone)]
pub struct DiskTier {
    dir: PathBuf,
    cap_bytes: u64,
    /// Shared by clones (each engine of a server holds one).
    counters: Arc<Mutex<TierCounters>>,
    /// Keys never evicted (pinned in this process), shared by clones.
    pinned: Arc<Mutex<std::collections::HashSet<String>>>,
    /// How the cap was chosen, for `--verbose`.
    cap_note: Arc<str>,
}

impl DiskTier {
    #[must_use]
    pub fn new(dir: PathBuf, cap_bytes: u64) -> Self {
        let tier = Self {
            dir,
            cap_bytes,
            counters: Arc::default(),
            pinned: Arc::default(),
            cap_note: Arc::from("set by --kv-disk-gib"),
        };
        let freed = tier.remove_stale_temporaries();
        if freed > 0 {
            tracing::info!("removed {freed} bytes of KV files a killed scout left half-written");
        }
        tier
    }

    /// A tier in `dir` capped at `cap_bytes`, or by default at a quarter
    /// of the free space there ([`super::budget::disk_budget`]).
    #[must_use]
    pub fn sized(dir: PathBuf, cap_bytes: Option<u64>) -> Self {
        let mut tier = Self::new(dir, cap_bytes.unwrap_or(0));
        if cap_bytes.is_none() {
            let (cap, note) = super::budget::disk_budget(&tier.dir, KvTier::bytes(&tier));
            tier.cap_bytes = cap;
            tier.cap_note = Arc::from(note);
        }
        tier
    }

    /// How the cap was chosen (`a quarter of the 49.2 GiB free there`).
    #[must_use]
    pub fn cap_note(&self) -> &str {
        &self.cap_note
    }

    fn count(&self, f: impl FnOnce(&mut TierCounters)) {
        f(&mut self.counters.lock().unwrap_or_else(PoisonError::into_inner));
    }

    fn kv_path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.kv"))
    }

    fn sum_path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.sum"))
    }

    /// The state file for `key`, verified.
    #[must_use]
    pub fn lookup(&self, key: &str) -> Lookup {
        let (kv, sum) = (self.kv_path(key), self.sum_path(key));
        let Ok(recorded) = std::fs::read_to_string(&sum) else {
            self.count(|c| c.misses += 1);
            return Lookup::Miss;
        };
        let corrupt = |why: String| {
            self.remove(key);
            self.count(|c| c.misses += 1);
            Lookup::Corrupt(format!("{}: {why}", kv.display()))
        };
        let Some((expected, length)) = parse_sum(&recorded) else {
            return corrupt("its checksum file is of an older scout or damaged".to_owned());
        };
        match std::fs::metadata(&kv) {
            Ok(m) if m.len() == length => {}
            Ok(m) => {
                return corrupt(format!(
                    "{} bytes where {length} were written (truncated or altered)",
                    m.len()
                ))
            }
            Err(e) => return corrupt(e.to_string()),
        }
        let actual = match hash_file(&kv) {
            Ok(h) => h,
            Err(e) => {
                self.remove(key);
                self.count(|c| c.misses += 1);
                return Lookup::Corrupt(format!("{}: {e}", kv.display()));
            }
        };
        if actual != expected {
            self.remove(key);
            self.count(|c| c.misses += 1);
            return Lookup::Corrupt(format!("{}: checksum mismatch (truncated or altered)", kv.display()));
        }
        // Used now: last to be evicted.
        let _ = std::fs::File::open(&kv).and_then(|f| f.set_modified(std::time::SystemTime::now()));
        self.count(|c| c.hits += 1);
        Lookup::Hit(kv)
    }

    /// Stores an entry: `write` fills the given temporary path (the engine
    /// saves its state there) and says how many bytes it wrote; the file is
    /// synced, its length checked against that, and only then checked in
    /// under `key`. Returns the bytes stored. A state larger than the whole
    /// cap is not kept (and evicts nothing).
    pub fn store(&self, key: &str, write: impl FnOnce(&Path) -> Result<u64, String>) -> Result<u64, String> {
        self.store_in(key, None, write)
    }

    /// [`DiskTier::store`] for an entry of `group` (see the module's
    /// notes): entries of the same group are not evicted for it; when they
    /// and the pinned entries leave no room, it is not kept, and the error
    /// says so ([`OVER_BUDGET`] starts it).
    pub fn store_in(
        &self,
        key: &str,
        group: Option<&str>,
        write: impl FnOnce(&Path) -> Result<u64, String>,
    ) -> Result<u64, String> {
        let group = group.filter(|g| valid_group(g));
        if let Some(g) = group {
            // The group's other entries fill the cap already: refused
            // before the engine writes a state only to see it removed.
            let (held, _) = self.group_bytes(g);
            let own = if self.group_of(key).as_deref() == Some(g) {
                std::fs::metadata(self.kv_path(key)).map_or(0, |m| m.len())
            } else {
                0
            };
            if held.saturating_sub(own) >= self.cap_bytes {
                return Err(format!(
                    "{OVER_BUDGET}: the disk tier's cap of {} bytes is held by {} bytes of this corpus's other windows",
                    self.cap_bytes,
                    held.saturating_sub(own)
                ));
            }
        }
        // Private to its user when scout makes it: a state file is handed to
        // llama.cpp, and its checksum guards against accidents, not
        // tampering (see docs/RELIABILITY.md, case 29).
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(&self.dir)
            .map_err(|e| format!("{}: {e}", self.dir.display()))?;
        let tmp = self.dir.join(format!("{key}.{}.tmp", std::process::id()));
        let result = write(&tmp).and_then(|written| {
            let file = std::fs::File::open(&tmp).map_err(|e| e.to_string())?;
            file.sync_all().map_err(|e| format!("syncing the state file: {e}"))?;
            let bytes = file.metadata().map_err(|e| e.to_string())?.len();
            if bytes != written {
                return Err(format!(
                    "the state file holds {bytes} bytes where {written} were written (a full disk?); not kept"
                ));
            }
            let hash = hash_file(&tmp).map_err(|e| e.to_string())?;
            let pinned: u64 = self
                .entries()
                .iter()
                .filter(|e| e.2 != key && self.is_pinned(&e.2))
                .map(|e| e.1)
                .sum();
            if pinned + bytes > self.cap_bytes {
                return Err(format!(
                    "{bytes} bytes are over the disk tier's cap of {} bytes{}",
                    self.cap_bytes,
                    if pinned > 0 {
                        format!(" with the {pinned} bytes of pinned entries")
                    } else {
                        String::new()
                    }
                ));
            }
            std::fs::rename(&tmp, self.kv_path(key)).map_err(|e| e.to_string())?;
            let sum_tmp = self.dir.join(format!("{key}.{}.sumtmp", std::process::id()));
            let tag = group.map_or(String::new(), |g| format!(" {g}"));
            std::fs::write(&sum_tmp, format!("{SUM_FORMAT} {hash} {bytes}{tag}\n")).map_err(|e| e.to_string())?;
            std::fs::rename(&sum_tmp, self.sum_path(key)).map_err(|e| e.to_string())?;
            Ok(bytes)
        });
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        let bytes = result?;
        self.count(|c| c.stores += 1);
        if let Err(why) = self.evict_to_cap(key, group) {
            self.remove(key);
            return Err(why);
        }
        Ok(bytes)
    }

    fn link_path(&self, block: &str) -> PathBuf {
        self.dir.join(format!("{block}.link"))
    }

    /// Bytes of the state stored under `key` (not verified); 0 when none.
    #[must_use]
    pub fn state_bytes(&self, key: &str) -> u64 {
        if self.has(key) {
            std::fs::metadata(self.kv_path(key)).map_or(0, |m| m.len())
        } else {
            0
        }
    }

    /// Whether an entry is stored under `key` (not yet verified).
    #[must_use]
    pub fn has(&self, key: &str) -> bool {
        self.sum_path(key).exists()
    }

    /// Records that the state stored under `key`, of `tokens` tokens, holds
    /// the prefix block chain ending in `block` (among others). Written to
    /// a temporary name and renamed, so a link is whole or absent.
    pub fn link(&self, block: &str, key: &str, tokens: usize) {
        let tmp = self.dir.join(format!("{block}.{}.linktmp", std::process::id()));
        if std::fs::write(&tmp, format!("{key}\n{tokens}\n")).is_ok()
            && std::fs::rename(&tmp, self.link_path(block)).is_err()
        {
            let _ = std::fs::remove_file(&tmp);
        }
    }

    /// The key and token count of a stored state that holds the block
    /// chain ending in `block`, if one is still there (a link to an evicted
    /// state is removed). The caller still compares the state's tokens: a
    /// link only says where to look.
    #[must_use]
    pub fn linked(&self, block: &str) -> Option<(String, usize)> {
        let text = std::fs::read_to_string(self.link_path(block)).ok()?;
        let (key, tokens) = text.trim_end().split_once('\n')?;
        if self.has(key) {
            Some((key.to_owned(), tokens.parse().ok()?))
        } else {
            let _ = std::fs::remove_file(self.link_path(block));
            None
        }
    }

    pub fn remove(&self, key: &str) {
        let _ = std::fs::remove_file(self.sum_path(key));
        let _ = std::fs::remove_file(self.kv_path(key));
        let _ = std::fs::remove_file(self.chunks_path(key));
    }

    fn chunks_path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.chunks"))
    }

    /// Records what the state stored under `key` holds by content: the
    /// keys of its chunks (`kv::documents::chunk_keys`) and its token
    /// count, under `seed` (the model and KV type it was computed with).
    /// Written to a temporary name and renamed; removed with the state.
    pub fn index_content(&self, key: &str, seed: &str, tokens: usize, chunks: &[u64]) {
        let mut text = format!("{seed}\n{tokens}\n");
        for c in chunks {
            let _ = writeln!(text, "{c:016x}");
        }
        let tmp = self.dir.join(format!("{key}.{}.chunkstmp", std::process::id()));
        if std::fs::write(&tmp, text).is_ok() && std::fs::rename(&tmp, self.chunks_path(key)).is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }

    /// The stored state computed under `seed` that holds the most of
    /// `wanted`'s chunks: its key, how many it holds and its tokens (an
    /// index whose state is gone is removed). The caller still compares
    /// tokens: this only says where to look.
    #[must_use]
    pub fn by_content(&self, seed: &str, wanted: &std::collections::HashSet<u64>) -> Option<(String, usize, usize)> {
        let entries = std::fs::read_dir(&self.dir).ok()?;
        let mut best: Option<(String, usize, usize)> = None;
        for e in entries.filter_map(Result::ok) {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(key) = name.strip_suffix(".chunks") else {
                continue;
            };
            if !self.has(key) {
                let _ = std::fs::remove_file(e.path());
                continue;
            }
            let text = match std::fs::read_to_string(e.path()) {
                Ok(text) => text,
                Err(why) => {
                    tracing::warn!("could not read a KV content index ({}): {why}", e.path().display());
                    continue;
                }
            };
            let mut lines = text.lines();
            if lines.next() != Some(seed) {
                continue;
            }
            let tokens = lines.next().and_then(|l| l.parse().ok());
            let held: Option<Vec<u64>> = lines.map(|l| u64::from_str_radix(l, 16).ok()).collect();
            let (Some(tokens), Some(held)) = (tokens, held) else {
                tracing::warn!("removed a damaged KV content index: {}", e.path().display());
                let _ = std::fs::remove_file(e.path());
                continue;
            };
            let shared = crate::kv::documents::shared_chunks(wanted, &held);
            if best.as_ref().is_none_or(|(_, n, _)| shared > *n) {
                best = Some((key.to_owned(), shared, tokens));
            }
        }
        best
    }

    /// Bytes of temporary files (states being written, or left by a
    /// process that was killed): they count against the cap.
    fn temporary_bytes(&self) -> u64 {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        entries
            .filter_map(Result::ok)
            .filter(|e| temporary_owner(&e.file_name().to_string_lossy()).is_some())
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum()
    }

    /// Removes temporary files whose process is gone (killed mid-save);
    /// returns how many bytes that freed.
    pub fn remove_stale_temporaries(&self) -> u64 {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        let mut freed = 0;
        for e in entries.filter_map(Result::ok) {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(pid) = temporary_owner(&name) else {
                continue;
            };
            if pid != std::process::id() && !process_alive(pid) {
                let bytes = e.metadata().map_or(0, |m| m.len());
                if std::fs::remove_file(e.path()).is_ok() {
                    freed += bytes;
                }
            }
        }
        freed
    }

    /// The group entry `key` was stored in, if any.
    fn group_of(&self, key: &str) -> Option<String> {
        let text = std::fs::read_to_string(self.sum_path(key)).ok()?;
        text.split_whitespace().nth(3).map(str::to_owned)
    }

    /// Bytes the entries of `group` hold now, and how many entries.
    #[must_use]
    pub fn group_bytes(&self, group: &str) -> (u64, usize) {
        self.entries()
            .iter()
            .filter(|e| self.group_of(&e.2).as_deref() == Some(group))
            .fold((0, 0), |(b, n), e| (b + e.1, n + 1))
    }

    /// The stored states: modification time (last use), bytes, key.
    fn entries(&self) -> Vec<(std::time::SystemTime, u64, String)> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let key = name.strip_suffix(".kv")?.to_owned();
                let meta = e.metadata().ok()?;
                Some((meta.modified().ok()?, meta.len(), key))
            })
            .collect()
    }

    fn is_pinned(&self, key: &str) -> bool {
        self.pinned.lock().unwrap_or_else(PoisonError::into_inner).contains(key)
    }

    /// Removes least recently used entries until the folder is under its
    /// cap: never `kept` (just stored), a pinned entry or one of `group`;
    /// an entry of another group goes with its whole group. Errs (with
    /// [`OVER_BUDGET`]) when what may not go leaves no room.
    fn evict_to_cap(&self, kept: &str, group: Option<&str>) -> Result<(), String> {
        let mut files: Vec<_> = self
            .entries()
            .into_iter()
            .map(|(used, bytes, key)| {
                let g = self.group_of(&key);
                (used, bytes, key, g)
            })
            .collect();
        files.sort();
        let temporary = self.temporary_bytes();
        let mut total: u64 = files.iter().map(|f| f.1).sum::<u64>() + temporary;
        let stays = |f: &(std::time::SystemTime, u64, String, Option<String>)| {
            f.2 == kept || self.is_pinned(&f.2) || (group.is_some() && f.3.as_deref() == group)
        };
        // What may not go leaves no room: refused before anything else is
        // evicted for it.
        let fixed: u64 = files.iter().filter(|f| stays(f)).map(|f| f.1).sum::<u64>() + temporary;
        if fixed > self.cap_bytes {
            let own: u64 = files.iter().filter(|f| f.2 != kept && stays(f)).map(|f| f.1).sum();
            return Err(format!(
                "{OVER_BUDGET}: the disk tier's cap of {} bytes is held by {own} bytes of this corpus's other windows and pinned entries",
                self.cap_bytes
            ));
        }
        let mut gone = std::collections::HashSet::new();
        for victim in files.iter().filter(|f| !stays(f)) {
            if total <= self.cap_bytes {
                break;
            }
            if gone.contains(&victim.2) {
                continue;
            }
            // A group goes whole: what is left of it would be read again
            // anyway, with the rest.
            for f in files
                .iter()
                .filter(|f| f.2 == victim.2 || (victim.3.is_some() && f.3 == victim.3 && !self.is_pinned(&f.2)))
            {
                if gone.insert(f.2.clone()) {
                    self.remove(&f.2);
                    self.count(|c| c.evictions += 1);
                    total -= f.1;
                }
            }
        }
        Ok(())
    }
}

/// How the error of a state refused for want of room starts.
pub const OVER_BUDGET: &str = "over the disk budget";

/// A group name is one word of the checksum file: letters, digits, `-`.
fn valid_group(g: &str) -> bool {
    !g.is_empty() && g.len() <= 64 && g.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// The checksum file's format: `v2 HASH LENGTH [GROUP]` (a file without
/// a group is of an entry stored alone).
const SUM_FORMAT: &str = "v2";

fn parse_sum(text: &str) -> Option<(&str, u64)> {
    let mut parts = text.split_whitespace();
    (parts.next()? == SUM_FORMAT).then_some(())?;
    let hash = parts.next()?;
    let length = parts.next()?.parse().ok()?;
    Some((hash, length))
}

/// The process that writes a temporary file (`KEY.PID.tmp`, `.sumtmp`,
/// `.linktmp`), from its name.
fn temporary_owner(name: &str) -> Option<u32> {
    let stem = ["tmp", "sumtmp", "linktmp", "chunkstmp"]
        .iter()
        .find_map(|ext| name.strip_suffix(ext)?.strip_suffix('.'))?;
    stem.rsplit('.').next()?.parse().ok()
}

/// Whether process `pid` still runs (Linux: its /proc entry; elsewhere it
/// is taken to run, and its files are left alone).
fn process_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new(&format!("/proc/{pid}")).exists()
    } else {
        true
    }
}

impl KvTier for DiskTier {
    /// Writes the state to the path it is given.
    type Put = Box<dyn FnOnce(&Path) -> Result<u64, String>>;
    /// The verified state file.
    type Got<'a> = PathBuf;

    fn put(&mut self, key: &str, write: Self::Put) -> Result<u64, String> {
        self.store(key, write)
    }

    fn get(&mut self, key: &str) -> Option<PathBuf> {
        match self.lookup(key) {
            Lookup::Hit(path) => Some(path),
            Lookup::Miss | Lookup::Corrupt(_) => None,
        }
    }

    fn contains(&self, key: &str) -> bool {
        self.has(key)
    }

    fn remove(&mut self, key: &str) {
        DiskTier::remove(self, key);
    }

    fn pin(&mut self, key: &str) {
        self.pinned
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.to_owned());
    }

    fn bytes(&self) -> u64 {
        self.entries().iter().map(|f| f.1).sum()
    }

    fn budget(&self) -> u64 {
        self.cap_bytes
    }

    fn counters(&self) -> TierCounters {
        *self.counters.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(std::fs::File::open(path)?)?;
    Ok(hasher.finalize().to_hex().to_string())
}

#[cfg(test)]
mod tests;
