//! Resident contexts: llama.cpp contexts kept alive between requests
//! (`scout serve`, `scout batch`), each holding a corpus prefix's KV in
//! sequence 0, so a follow-up over the same corpus cuts the sequence back
//! to the prefix and reads only its question: no context made, no KV copied
//! in from the host tier.
//!
//! A pool under a byte budget (the contexts' KV at their size), least
//! recently used out first, pinned corpora kept. A context is taken out of
//! the pool for a request and put back after it answers; one that failed
//! mid-request is dropped, never reused.
//!
//! Never decides what a prefix is or whether its KV may be reused: the
//! caller looks a context up by the prefix's key (model, KV type, exact
//! tokens), so a context is only reused for the very tokens it holds.

use std::sync::Arc;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::model::LlamaModel;

type Context<'m> = LlamaContext<'m>;

self_cell::self_cell!(
    /// A context with the model it borrows (shared, so the engine keeps
    /// using the model while the context lives).
    pub(super) struct Resident {
        owner: Arc<LlamaModel>,
        #[covariant]
        dependent: Context,
    }
);

/// A resident context and what its sequence 0 holds.
struct Entry<C> {
    key: String,
    context: C,
    /// Tokens the context has room for.
    capacity: u32,
    /// Bytes its KV takes (capacity x bytes a token).
    bytes: u64,
    pinned: bool,
    used: u64,
}

/// The contexts kept between requests ([`Resident`]s; generic so the
/// policy is tested without a model).
pub(super) struct Pool<C> {
    budget: u64,
    entries: Vec<Entry<C>>,
    clock: u64,
    /// Follow-ups served from a resident context (for tests and metrics).
    pub(super) hits: u64,
}

impl<C> std::fmt::Debug for Pool<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("budget", &self.budget)
            .field("contexts", &self.entries.len())
            .field("hits", &self.hits)
            .finish_non_exhaustive()
    }
}

impl<C> Pool<C> {
    /// A pool of at most `budget` bytes of contexts' KV (0: none kept).
    pub(super) fn new(budget: u64) -> Self {
        Self {
            budget,
            entries: Vec::new(),
            clock: 0,
            hits: 0,
        }
    }

    pub(super) fn enabled(&self) -> bool {
        self.budget > 0
    }

    /// Takes out the context whose sequence 0 holds the prefix `key`, when
    /// it has room for `needed` tokens (a follow-up whose question and
    /// answer do not fit makes a new context; this one is dropped).
    pub(super) fn take(&mut self, key: &str, needed: u32) -> Option<(C, u32)> {
        let i = self.entries.iter().position(|e| e.key == key)?;
        let entry = self.entries.swap_remove(i);
        (entry.capacity >= needed).then(|| {
            self.hits += 1;
            (entry.context, entry.capacity)
        })
    }

    /// Keeps `context` (sequence 0 holding prefix `key`, room for
    /// `capacity` tokens, `bytes` of KV) for a later request, sending least
    /// recently used unpinned contexts out until the budget holds. A
    /// context that would need a pinned one to go, or is larger than the
    /// budget, is dropped.
    pub(super) fn put(&mut self, key: String, context: C, capacity: u32, bytes: u64, pinned: bool) {
        self.entries.retain(|e| e.key != key);
        let fixed: u64 = self.entries.iter().filter(|e| e.pinned).map(|e| e.bytes).sum();
        if fixed + bytes > self.budget {
            return;
        }
        while self.entries.iter().map(|e| e.bytes).sum::<u64>() + bytes > self.budget {
            let Some(oldest) = self
                .entries
                .iter()
                .enumerate()
                .filter(|(_, e)| !e.pinned)
                .min_by_key(|(_, e)| e.used)
                .map(|(i, _)| i)
            else {
                return;
            };
            self.entries.swap_remove(oldest);
        }
        self.clock += 1;
        self.entries.push(Entry {
            key,
            context,
            capacity,
            bytes,
            pinned,
            used: self.clock,
        });
    }

    /// Contexts kept now.
    #[cfg(test)]
    fn keys(&self) -> Vec<&str> {
        let mut keys: Vec<&str> = self.entries.iter().map(|e| e.key.as_str()).collect();
        keys.sort_unstable();
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contexts_are_reused_for_their_prefix_only_and_go_least_recently_used_first() {
        let mut pool: Pool<u8> = Pool::new(100);
        pool.put("a".into(), 1, 1000, 40, false);
        pool.put("b".into(), 2, 1000, 40, false);
        assert_eq!(pool.take("c", 10), None, "another prefix");
        assert_eq!(pool.take("a", 2000), None, "no room for this follow-up: dropped");
        assert_eq!(pool.keys(), ["b"]);
        assert_eq!(pool.take("b", 1000), Some((2, 1000)));
        assert_eq!(pool.hits, 1);
        assert!(pool.keys().is_empty(), "taken out while it serves");
        pool.put("b".into(), 2, 1000, 40, false);
        pool.put("p".into(), 3, 1000, 40, true);
        pool.put("c".into(), 4, 1000, 40, false);
        assert_eq!(pool.keys(), ["c", "p"], "b, the least recently used, went; p is pinned");
        pool.put("d".into(), 5, 1000, 70, false);
        assert_eq!(pool.keys(), ["c", "p"], "d would need the pinned p to go: not kept");
        pool.put("e".into(), 6, 1000, 200, false);
        assert_eq!(pool.keys(), ["c", "p"], "larger than the budget");
        assert!(!Pool::<u8>::new(0).enabled());
    }
}
