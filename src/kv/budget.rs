//! How much room the KV cache's disk tier has, and what a corpus's KV
//! takes of it: the tier sized from the cache folder's free space by
//! default, and a sweep's windows set against that budget before the
//! sweep, with what a smaller KV type would take.
//!
//! In: a folder, an engine's [`KvStore`] facts, the windows' tokens.
//! Out: plain numbers ([`CorpusKv`]) for the sweep's plan; `report` words
//! them.
//! Never writes or evicts anything.

use std::path::Path;

use serde::Serialize;

use crate::limits::{KV_DISK_BYTES, KV_DISK_MAX_BYTES};

/// The disk tier's default budget: a quarter of what the cache folder's
/// file system has free, counting what the tier (`held` bytes) holds
/// already as free (it is the tier's own), capped at [`KV_DISK_MAX_BYTES`].
/// Where the free space cannot be read, [`KV_DISK_BYTES`]. Returns the
/// budget and how it was chosen, for `--verbose`.
#[must_use]
pub fn disk_budget(dir: &Path, held: u64) -> (u64, String) {
    match free_bytes(dir) {
        Some(free) => {
            let quarter = (free + held) / 4;
            let budget = quarter.min(KV_DISK_MAX_BYTES);
            let why = if budget < quarter {
                format!("the cap of {}", size_text(KV_DISK_MAX_BYTES))
            } else {
                format!("a quarter of the {} free there", size_text(free + held))
            };
            (budget, why)
        }
        None => (
            KV_DISK_BYTES,
            format!("{}: its free space could not be read", size_text(KV_DISK_BYTES)),
        ),
    }
}

/// Bytes an unprivileged user may still write on the file system of `dir`
/// (or of its nearest existing parent, when scout has not made it yet).
fn free_bytes(dir: &Path) -> Option<u64> {
    let existing = dir.ancestors().find(|p| p.exists())?;
    let s = nix::sys::statvfs::statvfs(existing).ok()?;
    // Both are 32-bit on some targets.
    #[allow(clippy::useless_conversion)]
    Some(u64::from(s.blocks_available()).saturating_mul(u64::from(s.fragment_size())))
}

/// `bytes` as people read them: `4.6 GiB`, or `31 MiB` under 1 GiB.
#[must_use]
pub fn size_text(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
    } else {
        format!("{} MiB", bytes.div_ceil(1 << 20))
    }
}

/// What an engine that saves prefixes' KV to disk says of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KvStore {
    /// The KV type states are saved in (the cache's own: `f16`, `q8_0`...).
    pub kv_type: String,
    /// Bytes one token's KV takes in that type, all layers.
    pub bytes_per_token: f64,
    /// A smaller KV type the engine could use instead, and its bytes per
    /// token (q8_0 for an f16 cache: near-lossless, about half).
    pub smaller: Option<(String, f64)>,
    /// The disk tier's budget in bytes, and how it was chosen.
    pub budget: u64,
    pub budget_note: String,
}

/// A corpus's KV (a sweep's windows) against the disk tier's budget.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CorpusKv {
    pub kv_type: String,
    pub bytes_per_token: f64,
    /// Prompt tokens of all windows.
    pub tokens: u64,
    /// Bytes their KV takes in `kv_type`.
    pub bytes: u64,
    pub budget: u64,
    /// Windows, and how many of them (the first ones) the budget keeps.
    pub windows: usize,
    pub windows_kept: usize,
    /// Where the corpus does not fit: the smaller KV type, the bytes the
    /// corpus takes in it, and whether that fits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub smaller: Option<SmallerKv>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SmallerKv {
    pub kv_type: String,
    pub bytes: u64,
    pub fits: bool,
}

impl CorpusKv {
    /// The windows of `window_tokens` tokens each against `store`'s budget.
    #[must_use]
    pub fn new(store: &KvStore, window_tokens: &[u64]) -> Self {
        let bytes_of = |tokens: u64, per: f64| (tokens as f64 * per).ceil() as u64;
        let tokens: u64 = window_tokens.iter().sum();
        let bytes = bytes_of(tokens, store.bytes_per_token);
        let mut running = 0;
        let windows_kept = window_tokens
            .iter()
            .take_while(|&&t| {
                running += bytes_of(t, store.bytes_per_token);
                running <= store.budget
            })
            .count();
        let smaller = store
            .smaller
            .as_ref()
            .filter(|_| bytes > store.budget)
            .map(|(kv_type, per)| {
                let bytes = bytes_of(tokens, *per);
                SmallerKv {
                    kv_type: kv_type.clone(),
                    bytes,
                    fits: bytes <= store.budget,
                }
            });
        Self {
            kv_type: store.kv_type.clone(),
            bytes_per_token: store.bytes_per_token,
            tokens,
            bytes,
            budget: store.budget,
            windows: window_tokens.len(),
            windows_kept,
            smaller,
        }
    }

    #[must_use]
    pub fn fits(&self) -> bool {
        self.bytes <= self.budget
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(budget: u64) -> KvStore {
        KvStore {
            kv_type: "f16".to_owned(),
            bytes_per_token: 23_040.0,
            smaller: Some(("q8_0".to_owned(), 12_240.0)),
            budget,
            budget_note: String::new(),
        }
    }

    #[test]
    fn a_corpus_over_the_budget_knows_what_is_kept_and_what_would_fit() {
        let gib = 1u64 << 30;
        // 25 windows of 8,000 tokens: 4.3 GiB at f16, over a 4 GiB budget.
        let windows = vec![8_000u64; 25];
        let kv = CorpusKv::new(&store(4 * gib), &windows);
        assert_eq!(kv.tokens, 200_000);
        assert_eq!(kv.bytes, 4_608_000_000);
        assert!(!kv.fits());
        assert_eq!(kv.windows_kept, 23, "4 GiB / (8,000 x 23,040 bytes) = 23.3");
        let s = kv.smaller.clone().unwrap();
        assert_eq!((s.kv_type.as_str(), s.bytes, s.fits), ("q8_0", 2_448_000_000, true));
        let tight = CorpusKv::new(&store(gib), &windows).smaller.unwrap();
        assert!(!tight.fits, "2.3 GiB at q8_0 is still over 1 GiB");

        // It fits: nothing offered.
        let kv = CorpusKv::new(&store(8 * gib), &windows);
        assert!(kv.fits() && kv.smaller.is_none());
        assert_eq!(kv.windows_kept, 25);
    }

    #[test]
    fn the_default_budget_is_a_quarter_of_the_free_space_counting_what_the_tier_holds() {
        let dir = tempfile::tempdir().unwrap();
        let free = free_bytes(dir.path()).unwrap();
        let (budget, why) = disk_budget(&dir.path().join("not/made/yet"), 0);
        // Other work on the machine may write or free a little meanwhile.
        let expected = (free / 4).min(KV_DISK_MAX_BYTES);
        assert!(budget.abs_diff(expected) < 256 << 20, "{budget} vs {expected}: {why}");
        let (more, _) = disk_budget(dir.path(), 4 << 30);
        assert!(more >= budget, "what the tier holds counts as its own room");
        assert!(
            free_bytes(Path::new("/proc/self/no/such")).is_some(),
            "nearest existing parent"
        );
    }
}
