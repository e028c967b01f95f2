//! The disk tier of the KV cache: state files an engine wrote for a
//! prompt prefix, found again by key in a later process.
//!
//! Each entry is two files in one folder: `KEY.kv` (the engine's own state
//! file) and `KEY.sum` (the blake3 of the `.kv` file). An entry is only
//! offered back when both exist and the checksum matches, so a truncated
//! or corrupt file (a crash mid-write, a full disk, a stray edit) is
//! detected, reported and removed, never loaded. Writes go to a temporary
//! name and are renamed into place, checksum last. The folder has a byte
//! cap; past it the least recently used entries go first.

use std::path::{Path, PathBuf};

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
}

impl DiskTier {
    #[must_use]
    pub fn new(dir: PathBuf, cap_bytes: u64) -> Self {
        Self { dir, cap_bytes }
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
            return Lookup::Miss;
        };
        let actual = match hash_file(&kv) {
            Ok(h) => h,
            Err(e) => {
                self.remove(key);
                return Lookup::Corrupt(format!("{}: {e}", kv.display()));
            }
        };
        if actual != expected.trim() {
            self.remove(key);
            return Lookup::Corrupt(format!("{}: checksum mismatch (truncated or altered)", kv.display()));
        }
        // Used now: last to be evicted.
        let _ = std::fs::File::open(&kv).and_then(|f| f.set_modified(std::time::SystemTime::now()));
        Lookup::Hit(kv)
    }

    /// Stores an entry: `write` fills the given temporary path (the engine
    /// saves its state there); then the file is checked in under `key`.
    /// Returns the bytes stored.
    pub fn store(&self, key: &str, write: impl FnOnce(&Path) -> Result<(), String>) -> Result<u64, String> {
        std::fs::create_dir_all(&self.dir).map_err(|e| format!("{}: {e}", self.dir.display()))?;
        let tmp = self.dir.join(format!("{key}.{}.tmp", std::process::id()));
        let result = write(&tmp).and_then(|()| {
            let hash = hash_file(&tmp).map_err(|e| e.to_string())?;
            let bytes = std::fs::metadata(&tmp).map_err(|e| e.to_string())?.len();
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
        self.evict_to_cap();
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

    /// Removes least recently used entries until the folder is under its
    /// cap (the newest entry stays even if it alone is larger).
    fn evict_to_cap(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut files: Vec<(std::time::SystemTime, u64, String)> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let key = name.strip_suffix(".kv")?.to_owned();
                let meta = e.metadata().ok()?;
                Some((meta.modified().ok()?, meta.len(), key))
            })
            .collect();
        files.sort();
        let mut total: u64 = files.iter().map(|f| f.1).sum();
        for (_, bytes, key) in &files[..files.len().saturating_sub(1)] {
            if total <= self.cap_bytes {
                break;
            }
            self.remove(key);
            total -= bytes;
        }
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

    #[test]
    fn the_least_recently_used_entries_go_past_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let tier = DiskTier::new(dir.path().to_owned(), 25);
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(100);
        tier.store("a", write(b"0123456789")).unwrap();
        std::fs::File::open(dir.path().join("a.kv"))
            .unwrap()
            .set_modified(old)
            .unwrap();
        tier.store("b", write(b"0123456789")).unwrap();
        // Using a makes b the least recent.
        std::fs::File::open(dir.path().join("b.kv"))
            .unwrap()
            .set_modified(old - std::time::Duration::from_secs(100))
            .unwrap();
        assert!(matches!(tier.lookup("a"), Lookup::Hit(_)));
        tier.store("c", write(b"0123456789")).unwrap();
        assert_eq!(tier.lookup("b"), Lookup::Miss);
        assert!(matches!(tier.lookup("a"), Lookup::Hit(_)));
        assert!(matches!(tier.lookup("c"), Lookup::Hit(_)));
    }
}
