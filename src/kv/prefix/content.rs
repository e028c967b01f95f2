//! The prefix cache's part in document-granular reuse: finding a stored
//! state of the same corpus before a change (by its first blocks, else by
//! its content) and loading it whole, for `kv::documents` to lay the new
//! prefix out of it.

use super::{PrefixCache, PrefixPlan, SequenceKv, KV_BLOCK};
use crate::kv::disk::Lookup;
use crate::kv::documents;
use crate::kv::tier::KvTier;

impl<S> PrefixCache<S> {
    /// For document-granular reuse: when the tiers do not hold `prefix`
    /// whole but hold a state sharing its first blocks, or one found by its
    /// content (the same corpus before an edit: the plan found it), puts
    /// that state into the sequence whole, not cut,
    /// and returns its tokens and whether it came from memory (else disk);
    /// `kv::documents` then lays the prefix out of it. `None`: nothing
    /// loaded (the prefix is whole in a tier, or no state shares its
    /// start: [`Self::restore`] then does what it can).
    pub fn restore_other(
        &mut self,
        plan: &PrefixPlan,
        seq: &mut impl SequenceKv<State = S>,
        capacity: usize,
    ) -> Option<(Vec<u32>, bool)> {
        let key = plan.key.as_ref()?;
        if self.host.contains(key) || self.disk.as_ref().is_some_and(|d| d.has(key)) {
            return None;
        }
        let on_disk = plan.on_disk.map_or(0, |(n, _)| n * KV_BLOCK);
        if let Some((held, _, _)) = plan.in_memory.as_ref().filter(|(_, n, _)| *n >= on_disk) {
            if let Some(entry) = self.host.get(held) {
                if entry.tokens.len() <= capacity && seq.set_state(&entry.state).is_ok() {
                    return Some((entry.tokens.clone(), true));
                }
                seq.clear();
            }
        }
        let disk = self.disk.as_ref()?;
        let linked = plan
            .on_disk
            .filter(|(n, _)| *n > 0)
            .and_then(|(n, _)| disk.linked(&plan.blocks[n - 1]));
        let (key, _) = linked.or_else(|| plan.by_content.clone())?;
        let Lookup::Hit(path) = disk.lookup(&key) else {
            return None;
        };
        match seq.load(&path, capacity) {
            Ok(tokens) => Some((tokens, false)),
            Err(why) => {
                tracing::warn!("could not load a stored KV state to reuse its documents ({why}); reading instead");
                seq.clear();
                None
            }
        }
    }

    /// A stored state on disk holding at least a quarter of `prefix`'s
    /// chunks, by content: its key and tokens.
    pub(super) fn find_by_content(&self, seed: &str, prefix: &[u32]) -> Option<(String, usize)> {
        let disk = self.disk.as_ref()?;
        let wanted: std::collections::HashSet<u64> = documents::chunk_keys(prefix).into_iter().collect();
        let (key, shared, tokens) = disk.by_content(seed, &wanted)?;
        (shared * 4 >= wanted.len()).then_some((key, tokens))
    }
}
