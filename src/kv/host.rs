//! The host tier: prompt prefixes' KV kept in this process's memory, so a
//! follow-up over the same corpus starts from a copy instead of reading
//! the corpus again (or the disk tier back). Least recently used entries
//! go first when the byte budget is reached; an entry larger than the
//! whole budget is never kept. Generic over the engine's state type, so
//! this module knows nothing of any engine.

/// Counters of one tier, for `--verbose` and the server's metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TierCounters {
    pub hits: u64,
    pub misses: u64,
    pub stores: u64,
    pub evictions: u64,
}

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
    /// used entries until it fits; returns whether it was kept.
    pub fn insert(&mut self, key: &str, state: S, bytes: u64) -> bool {
        if bytes > self.budget {
            return false;
        }
        self.entries.retain(|e| e.key != key);
        while self.bytes() + bytes > self.budget {
            let Some(oldest) = self
                .entries
                .iter()
                .enumerate()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_recently_used_goes_first_and_the_budget_holds() {
        let mut t = HostTier::new(100);
        assert!(t.insert("a", 1, 40));
        assert!(t.insert("b", 2, 40));
        assert_eq!(t.get("a"), Some(&1)); // a is now the more recent
        assert!(t.insert("c", 3, 40)); // b goes
        assert_eq!(t.get("b"), None);
        assert_eq!(t.get("a"), Some(&1));
        assert_eq!(t.get("c"), Some(&3));
        assert!(t.bytes() <= 100);
        assert!(!t.insert("huge", 4, 101), "larger than the budget: not kept");
        assert_eq!(t.get("a"), Some(&1), "and nothing was evicted for it");
        assert!(t.insert("a", 5, 60), "a key stored again replaces its entry");
        assert_eq!(t.get("a"), Some(&5));
        assert!(t.bytes() <= 100);
        assert_eq!(
            t.counters,
            TierCounters {
                hits: 5,
                misses: 1,
                stores: 4,
                evictions: 1
            }
        );
        let mut off: HostTier<u8> = HostTier::new(0);
        assert!(!off.enabled() && !off.insert("a", 1, 1));
    }
}
