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
//! The checksum detects accidents (a crash mid-write, a full disk, a stray
//! edit), not tampering: whoever can write the folder can write a matching
//! checksum. Keep the cache folder private to the user who runs scout.

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
}

impl DiskTier {
    #[must_use]
    pub fn new(dir: PathBuf, cap_bytes: u64) -> Self {
        let tier = Self {
            dir,
            cap_bytes,
            counters: Arc::default(),
            pinned: Arc::default(),
        };
        let freed = tier.remove_stale_temporaries();
        if freed > 0 {
            tracing::info!("removed {freed} bytes of KV files a killed scout left half-written");
        }
        tier
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
            std::fs::write(&sum_tmp, format!("{SUM_FORMAT} {hash} {bytes}\n")).map_err(|e| e.to_string())?;
            std::fs::rename(&sum_tmp, self.sum_path(key)).map_err(|e| e.to_string())?;
            Ok(bytes)
        });
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        let bytes = result?;
        self.count(|c| c.stores += 1);
        self.evict_to_cap(key);
        Ok(bytes)
    }

    fn link_path(&self, block: &str) -> PathBuf {
        self.dir.join(format!("{block}.link"))
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

    /// Removes least recently used entries, never `kept` (just stored) or
    /// a pinned one, until the folder is under its cap.
    fn evict_to_cap(&self, kept: &str) {
        let mut files = self.entries();
        files.sort();
        let mut total: u64 = files.iter().map(|f| f.1).sum::<u64>() + self.temporary_bytes();
        for (_, bytes, key) in files.iter().filter(|f| f.2 != kept && !self.is_pinned(&f.2)) {
            if total <= self.cap_bytes {
                break;
            }
            self.remove(key);
            self.count(|c| c.evictions += 1);
            total -= bytes;
        }
    }
}

/// The checksum file's format: `v2 HASH LENGTH`.
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
    let stem = ["tmp", "sumtmp", "linktmp"]
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
mod tests {
    use super::*;

    fn write(bytes: &'static [u8]) -> impl FnOnce(&Path) -> Result<u64, String> {
        move |p| {
            std::fs::write(p, bytes).map_err(|e| e.to_string())?;
            Ok(bytes.len() as u64)
        }
    }

    #[test]
    fn the_disk_tier_keeps_the_tier_contract() {
        let dir = tempfile::tempdir().unwrap();
        let n = std::cell::Cell::new(0);
        crate::kv::tier::tests::contract(
            &|cap| {
                n.set(n.get() + 1);
                DiskTier::new(dir.path().join(n.get().to_string()), cap)
            },
            &|v, bytes| {
                Box::new(move |p: &Path| {
                    std::fs::write(p, vec![v; bytes as usize]).map_err(|e| e.to_string())?;
                    Ok(bytes)
                })
            },
            &|path| std::fs::read(path).unwrap()[0],
            // Recency is the file's modification time.
            &|| std::thread::sleep(std::time::Duration::from_millis(20)),
        );
    }

    #[test]
    fn stored_entries_come_back_and_damaged_ones_never_do() {
        let dir = tempfile::tempdir().unwrap();
        let tier = DiskTier::new(dir.path().join("kv"), 1 << 20);
        assert_eq!(tier.lookup("a"), Lookup::Miss);
        assert_eq!(tier.store("a", write(b"state of a")).unwrap(), 10);
        assert_eq!(tier.lookup("a"), Lookup::Hit(dir.path().join("kv/a.kv")));
        let mode =
            std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(dir.path().join("kv")).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o700, "the folder scout made is its user's alone");
        // Truncated: detected, removed, then a plain miss.
        std::fs::write(dir.path().join("kv/a.kv"), b"state").unwrap();
        assert!(matches!(tier.lookup("a"), Lookup::Corrupt(_)));
        assert_eq!(tier.lookup("a"), Lookup::Miss);
        // A failed write leaves nothing behind.
        assert!(tier.store("b", |_| Err("engine said no".into())).is_err());
        assert_eq!(tier.lookup("b"), Lookup::Miss);
        assert_eq!(std::fs::read_dir(dir.path().join("kv")).unwrap().count(), 0);
    }

    #[test]
    fn links_lead_to_stored_states_and_die_with_them() {
        let dir = tempfile::tempdir().unwrap();
        let tier = DiskTier::new(dir.path().to_path_buf(), 1 << 20);
        assert_eq!(tier.linked("b1"), None);
        tier.store("state", write(b"kv")).unwrap();
        tier.link("b1", "state", 1024);
        tier.link("b2", "state", 1024);
        assert_eq!(tier.linked("b2"), Some(("state".to_owned(), 1024)));
        tier.link("b2", "other", 512);
        assert_eq!(tier.linked("b2"), None, "a link to a missing state is no link");
        assert!(!dir.path().join("b2.link").exists(), "and is removed");
        tier.remove("state");
        assert_eq!(tier.linked("b1"), None);
    }

    /// Reliability case 29: on a nearly full disk a state file came out 3 KB
    /// short, was hashed and checked in, and every later load of it aborted
    /// the process inside llama.cpp. A short file is never checked in now,
    /// and a file whose length is not the one recorded is never offered.
    #[test]
    fn a_state_written_short_is_never_checked_in() {
        let dir = tempfile::tempdir().unwrap();
        let tier = DiskTier::new(dir.path().to_path_buf(), 1 << 20);
        let short = tier.store("a", |p| {
            std::fs::write(p, vec![7u8; 1000]).map_err(|e| e.to_string())?;
            Ok(4096) // what the engine meant to write
        });
        assert!(short.unwrap_err().contains("1000 bytes where 4096"));
        assert_eq!(tier.lookup("a"), Lookup::Miss);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "nothing left behind");
        // Cut after it was checked in, with a checksum made to match: the
        // recorded length still catches it before any engine reads it.
        tier.store("b", write(b"0123456789")).unwrap();
        let kv = dir.path().join("b.kv");
        std::fs::write(&kv, b"01234").unwrap();
        let hash = hash_file(&kv).unwrap();
        let sum = std::fs::read_to_string(dir.path().join("b.sum")).unwrap();
        std::fs::write(
            dir.path().join("b.sum"),
            sum.replacen(parse_sum(&sum).unwrap().0, &hash, 1),
        )
        .unwrap();
        assert!(matches!(tier.lookup("b"), Lookup::Corrupt(why) if why.contains("5 bytes where 10")));
        // A checksum file of the older format (the hash alone) is not trusted.
        tier.store("c", write(b"xyz")).unwrap();
        std::fs::write(dir.path().join("c.sum"), hash_file(&dir.path().join("c.kv")).unwrap()).unwrap();
        assert!(matches!(tier.lookup("c"), Lookup::Corrupt(_)));
    }

    /// Reliability case 34: saves killed mid-write left `*.tmp` files (211 MB
    /// after three kills) that the cap did not count and nothing removed.
    #[test]
    fn temporaries_of_dead_processes_are_removed_and_live_ones_counted() {
        let dir = tempfile::tempdir().unwrap();
        // A process id that is not running: past the kernel's largest.
        let dead = dir.path().join("k1.4194999.tmp");
        std::fs::write(&dead, vec![0u8; 500]).unwrap();
        std::fs::write(dir.path().join("k2.4194999.sumtmp"), b"x").unwrap();
        let mine = dir.path().join(format!("k3.{}.tmp", std::process::id()));
        std::fs::write(&mine, vec![0u8; 300]).unwrap();
        let tier = DiskTier::new(dir.path().to_path_buf(), 1000);
        assert!(!dead.exists() && !dir.path().join("k2.4194999.sumtmp").exists());
        assert!(mine.exists(), "a running process's file stays");
        assert_eq!(tier.temporary_bytes(), 300);
        // 300 temporary + 600 + 600 do not fit 1,000: the older state goes.
        tier.store("s1", |p| {
            std::fs::write(p, vec![1u8; 600])
                .map(|()| 600)
                .map_err(|e| e.to_string())
        })
        .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        tier.store("s2", |p| {
            std::fs::write(p, vec![2u8; 600])
                .map(|()| 600)
                .map_err(|e| e.to_string())
        })
        .unwrap();
        assert!(!tier.has("s1") && tier.has("s2"));
        assert_eq!(temporary_owner("abc.123.linktmp"), Some(123));
        assert_eq!(temporary_owner("abc.kv"), None);
    }
}
