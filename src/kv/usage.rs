//! What one generation's prompt KV cost: how many tokens came from which
//! tier, how many were computed, what was kept for later. Engines fill it
//! through the prefix cache ([`super::prefix::PrefixCache`]); tasks add it up
//! across windows, and reports and metrics show it.
//!
//! Never computes anything: plain counts.

use serde::Serialize;

/// Where a generation's prompt KV came from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct KvUse {
    /// Tokens whose KV was already resident (an engine's own prefix cache).
    pub reused_tokens: u32,
    /// Tokens whose KV was read back from the disk tier.
    pub restored_tokens: u32,
    /// Tokens computed for this request.
    pub prefilled_tokens: u32,
    /// Bytes written to the disk tier for a later request.
    pub saved_bytes: u64,
    /// Other prefixes dropped from the host tier to make room for this one.
    pub evictions: u32,
    /// Bytes of this prompt's prefix KV copied out of the engine's context
    /// into host memory (the host tier) for later requests.
    pub offloaded_bytes: u64,
    /// Tokens of this prompt's prefix taken from another sequence of the
    /// same batch (a fork: its KV copied inside the context, no recompute).
    pub forked_tokens: u32,
    /// Tokens of this prompt's prefix whose KV the disk tier did not keep:
    /// over its budget (the sweep's other windows or pinned corpora hold
    /// it). A later question reads them again.
    pub unsaved_tokens: u32,
    /// Of `reused_tokens`, those whose KV stayed in a context kept alive
    /// since an earlier request (no copy at all).
    pub resident_tokens: u32,
    /// Tokens whose KV was taken from a stored state of the corpus before
    /// a change and moved to the positions the unchanged text now has
    /// (`--kv-reuse documents`; no recompute).
    pub shifted_tokens: u32,
    /// Tokens a stored state had, read again to repair what moved KV
    /// attended to (`--kv-recompute`); not counted in `prefilled_tokens`.
    pub recomputed_tokens: u32,
}

impl std::ops::AddAssign for KvUse {
    fn add_assign(&mut self, o: Self) {
        self.reused_tokens += o.reused_tokens;
        self.restored_tokens += o.restored_tokens;
        self.prefilled_tokens += o.prefilled_tokens;
        self.saved_bytes += o.saved_bytes;
        self.evictions += o.evictions;
        self.offloaded_bytes += o.offloaded_bytes;
        self.forked_tokens += o.forked_tokens;
        self.unsaved_tokens += o.unsaved_tokens;
        self.resident_tokens += o.resident_tokens;
        self.shifted_tokens += o.shifted_tokens;
        self.recomputed_tokens += o.recomputed_tokens;
    }
}
