//! What every tier of the KV cache promises, whatever it keeps states in:
//! prompt prefixes' KV stored under keys (which name the model, KV type and
//! exact tokens, so another prompt's state is never handed back), a byte
//! budget kept by sending the least recently used entries out first, an
//! entry larger than the whole budget refused without evicting anything,
//! pinned entries (a corpus the user keeps resident) never sent out, and
//! counters. [`HostTier`](super::host::HostTier) keeps states in this
//! process's memory, [`DiskTier`](super::disk::DiskTier) in checked files;
//! one test suite ([`tests::contract`]) runs against each.

/// Counters of one tier, for `--verbose` and the server's metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TierCounters {
    pub hits: u64,
    pub misses: u64,
    pub stores: u64,
    pub evictions: u64,
}

/// A place prompt prefixes' KV is kept, by key, under a byte budget.
pub trait KvTier {
    /// What is stored: the engine's state (memory), or what writes it to a
    /// given path (disk).
    type Put;
    /// What a hit hands back: the state (memory), or a verified file (disk).
    type Got<'a>
    where
        Self: 'a;

    /// Stores `state` under `key` (replacing what was there), sending least
    /// recently used entries out until the budget holds; returns the bytes
    /// stored. An entry larger than the whole budget is refused and evicts
    /// nothing.
    fn put(&mut self, key: &str, state: Self::Put) -> Result<u64, String>;
    /// The entry under `key`, now the most recently used; `None` on a miss
    /// (or a damaged entry, which is removed).
    fn get(&mut self, key: &str) -> Option<Self::Got<'_>>;
    /// Whether an entry is stored under `key` (without using it).
    fn contains(&self, key: &str) -> bool;
    fn remove(&mut self, key: &str);
    /// Keeps the entry under `key` (now, or once stored) out of eviction.
    /// Pinned entries still count against the budget: an entry that would
    /// need one sent out to fit is refused, and evicts nothing.
    fn pin(&mut self, key: &str);
    /// Bytes held now.
    fn bytes(&self) -> u64;
    fn budget(&self) -> u64;
    fn counters(&self) -> TierCounters;
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The contract, run against a tier made by `make(budget)`. `state(v,
    /// bytes)` makes an entry of `bytes` bytes that `read` turns back into
    /// `v`; `tick` lets time pass between uses (a tier may order by clock).
    pub(crate) fn contract<T: KvTier + 'static>(
        make: &dyn Fn(u64) -> T,
        state: &dyn Fn(u8, u64) -> T::Put,
        read: &dyn Fn(T::Got<'_>) -> u8,
        tick: &dyn Fn(),
    ) {
        let mut t = make(100);
        assert_eq!(t.budget(), 100);
        assert!(t.get("a").is_none());
        assert_eq!(t.put("a", state(1, 40)), Ok(40));
        tick();
        assert_eq!(t.put("b", state(2, 40)), Ok(40));
        tick();
        assert!(t.contains("a") && t.contains("b") && !t.contains("c"));
        assert_eq!(t.get("a").map(read), Some(1), "a is now more recent than b");
        tick();
        assert_eq!(t.put("c", state(3, 40)), Ok(40), "b goes to make room");
        tick();
        assert!(t.get("b").is_none());
        assert_eq!(t.get("a").map(read), Some(1));
        assert_eq!(t.get("c").map(read), Some(3));
        assert!(t.bytes() <= 100, "{}", t.bytes());
        assert!(t.put("huge", state(4, 101)).is_err(), "larger than the budget");
        assert!(!t.contains("huge"));
        assert!(t.contains("a") && t.contains("c"), "and nothing was evicted for it");
        tick();
        assert_eq!(
            t.put("a", state(5, 70)),
            Ok(70),
            "a key stored again replaces its entry"
        );
        assert_eq!(t.get("a").map(read), Some(5));
        assert!(t.bytes() <= 100, "{}", t.bytes());
        t.remove("a");
        assert!(!t.contains("a") && t.get("a").is_none());
        assert_eq!(
            t.counters(),
            TierCounters {
                hits: 4,
                misses: 3,
                stores: 4,
                evictions: 2
            },
            "hits: a, a, c, a; misses: a (empty), b, a (removed); evictions: b, then c for the new a"
        );

        // A pinned entry stays while newer, unpinned ones go.
        let mut t = make(100);
        t.pin("p");
        assert_eq!(t.put("p", state(1, 50)), Ok(50));
        tick();
        assert_eq!(t.put("q", state(2, 40)), Ok(40));
        tick();
        assert!(t.get("q").is_some());
        tick();
        assert_eq!(t.put("r", state(3, 40)), Ok(40), "q goes, not the older p");
        assert!(t.contains("p") && t.contains("r") && !t.contains("q"));
        tick();
        assert!(t.put("s", state(4, 60)).is_err(), "it would need p to go");
        assert!(t.contains("p") && t.contains("r"), "and nothing was evicted for it");
        assert_eq!(t.get("p").map(read), Some(1));
    }
}
