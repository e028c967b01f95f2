//! The disk tier of the KV cache: state files an engine wrote for a
//! prompt prefix, found again by key in a later process.
//!
//! Each entry is two files in one folder: `KEY.kv` (the engine's own state
//! file) and `KEY.sum` (the blake3 of the `.kv` file). An entry is only
//! offered back when both exist and the checksum matches, so a truncated
//! or corrupt file (a crash mid-write, a full disk, a stray edit) is
//! detected, reported and removed, never loaded. Writes go to a temporary
//! name and are renamed into place, checksum last. The folder has a byte
//! cap; past it the least recently used entries go first, and a state larger
//! than the whole cap is not kept.

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
        Self {
            dir,
            cap_bytes,
            counters: Arc::default(),
            pinned: Arc::default(),
        }
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
        let Ok(expected) = std::fs::read_to_string(&sum) else {
            self.count(|c| c.misses += 1);
            return Lookup::Miss;
        };
        let actual = match hash_file(&kv) {
            Ok(h) => h,
            Err(e) => {
                self.remove(key);
                self.count(|c| c.misses += 1);
                return Lookup::Corrupt(format!("{}: {e}", kv.display()));
            }
        };
        if actual != expected.trim() {
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
    /// saves its state there); then the file is checked in under `key`.
    /// Returns the bytes stored. A state larger than the whole cap is not
    /// kept (and evicts nothing).
    pub fn store(&self, key: &str, write: impl FnOnce(&Path) -> Result<(), String>) -> Result<u64, String> {
        std::fs::create_dir_all(&self.dir).map_err(|e| format!("{}: {e}", self.dir.display()))?;
        let tmp = self.dir.join(format!("{key}.{}.tmp", std::process::id()));
        let result = write(&tmp).and_then(|()| {
            let hash = hash_file(&tmp).map_err(|e| e.to_string())?;
            let bytes = std::fs::metadata(&tmp).map_err(|e| e.to_string())?.len();
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
            std::fs::write(&sum_tmp, &hash).map_err(|e| e.to_string())?;
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
        let mut total: u64 = files.iter().map(|f| f.1).sum();
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

impl KvTier for DiskTier {
    /// Writes the state to the path it is given.
    type Put = Box<dyn FnOnce(&Path) -> Result<(), String>>;
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

    fn write(bytes: &'static [u8]) -> impl FnOnce(&Path) -> Result<(), String> {
        move |p| std::fs::write(p, bytes).map_err(|e| e.to_string())
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
            &|v, bytes| Box::new(move |p: &Path| std::fs::write(p, vec![v; bytes as usize]).map_err(|e| e.to_string())),
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
}
