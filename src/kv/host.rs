//! The host tier: prompt prefixes' KV kept in this process's memory, so a
//! follow-up over the same corpus starts from a copy instead of reading
//! the corpus again (or the disk tier back). Least recently used entries
//! go first when the byte budget is reached; an entry larger than the
//! whole budget is never kept. Generic over the engine's state type, so
//! this module knows nothing of any engine.

use super::tier::KvTier;
pub use super::tier::TierCounters;

#[derive(Debug)]
struct Entry<S> {
    key: String,
    state: S,
    bytes: u64,
    used: u64,
}

#[derive(Debug)]
pub struct HostTier<S> {
    budget: u64,
    entries: Vec<Entry<S>>,
    clock: u64,
    pub counters: TierCounters,
    pinned: std::collections::HashSet<String>,
}

impl<S> HostTier<S> {
    /// A tier holding at most `budget` bytes (0 keeps nothing).
    #[must_use]
    pub fn new(budget: u64) -> Self {
        Self {
            budget,
            entries: Vec::new(),
            clock: 0,
            counters: TierCounters::default(),
            pinned: std::collections::HashSet::new(),
        }
    }

    #[must_use]
    pub fn enabled(&self) -> bool {
        self.budget > 0
    }

    /// Bytes held now.
    #[must_use]
    pub fn bytes(&self) -> u64 {
        self.entries.iter().map(|e| e.bytes).sum()
    }

    /// The state stored under `key`, without using it (no counters, no
    /// change of order): for looking before choosing.
    #[must_use]
    pub fn peek(&self, key: &str) -> Option<&S> {
        self.entries.iter().find(|e| e.key == key).map(|e| &e.state)
    }

    /// The state stored under `key`, marked as just used.
    pub fn get(&mut self, key: &str) -> Option<&S> {
        self.clock += 1;
        let clock = self.clock;
        if let Some(e) = self.entries.iter_mut().find(|e| e.key == key) {
            e.used = clock;
            self.counters.hits += 1;
            Some(&e.state)
        } else {
            self.counters.misses += 1;
            None
        }
    }

    /// Keeps `state` (of `bytes`) under `key`, evicting the least recently
    /// used unpinned entries until it fits; returns whether it was kept.
    pub fn insert(&mut self, key: &str, state: S, bytes: u64) -> bool {
        let pinned: u64 = self
            .entries
            .iter()
            .filter(|e| e.key != key && self.pinned.contains(&e.key))
            .map(|e| e.bytes)
            .sum();
        if pinned + bytes > self.budget {
            return false;
        }
        self.entries.retain(|e| e.key != key);
        while self.bytes() + bytes > self.budget {
            let Some(oldest) = self
                .entries
                .iter()
                .enumerate()
                .filter(|(_, e)| !self.pinned.contains(&e.key))
                .min_by_key(|(_, e)| e.used)
                .map(|(i, _)| i)
            else {
                break;
            };
            self.entries.swap_remove(oldest);
            self.counters.evictions += 1;
        }
        self.clock += 1;
        self.entries.push(Entry {
            key: key.to_owned(),
            state,
            bytes,
            used: self.clock,
        });
        self.counters.stores += 1;
        true
    }
}

impl<S> KvTier for HostTier<S> {
    /// The state and its size in bytes.
    type Put = (S, u64);
    type Got<'a>
        = &'a S
    where
        S: 'a;

    fn put(&mut self, key: &str, (state, bytes): (S, u64)) -> Result<u64, String> {
        if self.insert(key, state, bytes) {
            Ok(bytes)
        } else {
            Err(format!(
                "{bytes} bytes do not fit the host tier's budget of {}",
                self.budget
            ))
        }
    }

    fn get(&mut self, key: &str) -> Option<&S> {
        HostTier::get(self, key)
    }

    fn contains(&self, key: &str) -> bool {
        self.entries.iter().any(|e| e.key == key)
    }

    fn remove(&mut self, key: &str) {
        self.entries.retain(|e| e.key != key);
    }

    fn pin(&mut self, key: &str) {
        self.pinned.insert(key.to_owned());
    }

    fn bytes(&self) -> u64 {
        HostTier::bytes(self)
    }

    fn budget(&self) -> u64 {
        self.budget
    }

    fn counters(&self) -> TierCounters {
        self.counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_tier_keeps_the_tier_contract() {
        crate::kv::tier::tests::contract(&HostTier::<u8>::new, &|v, bytes| (v, bytes), &|s: &u8| *s, &|| {});
    }

    #[test]
    fn a_zero_budget_keeps_nothing() {
        let mut off: HostTier<u8> = HostTier::new(0);
        assert!(!off.enabled() && !off.insert("a", 1, 1));
    }
}
