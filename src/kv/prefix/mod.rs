//! The KV-cache manager's policy for prompt prefixes: what a prefix is
//! keyed by, which tier to take its KV from, how much of it another
//! prompt's KV can stand for, when to checkpoint a long prefill, and what
//! to keep afterwards.
//!
//! A prompt's prefix (everything before the last message: the corpus) is
//! keyed by the engine's seed (model, KV type) and its exact tokens, and
//! cut into [`KV_BLOCK`]-token blocks whose keys chain through the block
//! before (a block's key stands for every token up to its end). Before a
//! prefill, the prefix is looked for whole in memory, then whole on disk,
//! then as the longest run of its blocks that a prefix in memory or a
//! state on disk holds; a state's own tokens are compared with the
//! prompt's before any of it is used, so a hit can save work but never
//! change an answer. After a prefill, the prefix's KV is saved to disk and
//! kept in memory, and its blocks are linked to it.
//!
//! In: a prefix's tokens and an engine's sequence behind [`SequenceKv`]
//! (what only the engine can do: copy a sequence's KV out or in, write it
//! to a file or read it back, cut it at a position).
//! Out: how many of the prefix's tokens sequence 0 holds, and a [`KvUse`].
//! Never: reads a model or calls an engine's decode; hands back KV whose
//! tokens differ from the prompt's as if it were the prompt's (`content`'s
//! `restore_other`, for document reuse, hands back a state with its own
//! tokens, which `kv::documents` compares).
//!
//! Files: this one keys, plans, restores and keeps; `content` finds and
//! loads a stored state of the corpus before a change, for document reuse.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use super::disk::{DiskTier, Lookup, OVER_BUDGET};
use super::documents;
use super::host::HostTier;
use super::tier::{KvTier, TierCounters};
use super::usage::KvUse;

/// Prefixes shorter than this are prefilled every time: a state file
/// costs more than recomputing a few hundred tokens.
pub const MIN_SAVED_PREFIX: usize = 256;

/// Tokens in one block of a prompt prefix: the tiers find stored KV for the
/// longest run of whole blocks a new prompt shares with an old one.
pub const KV_BLOCK: usize = 512;

/// What only an engine can do with the KV of one sequence of its context
/// (sequence 0 of the context it is making a prompt's prefix in).
pub trait SequenceKv {
    /// An in-memory copy of the sequence's KV.
    type State;
    /// A copy of the sequence's KV, with its size in bytes.
    fn state(&self) -> Result<(Self::State, u64), String>;
    /// Replaces the sequence's KV with `state`.
    fn set_state(&mut self, state: &Self::State) -> Result<(), String>;
    /// Writes the sequence's KV, which holds exactly `tokens`, to `path`;
    /// returns the bytes written (the disk tier checks the file against it).
    fn save(&self, path: &Path, tokens: &[u32]) -> Result<u64, String>;
    /// Reads a state file written by `save` into the sequence (at most
    /// `capacity` tokens); returns the tokens it holds. A file that is not
    /// such a state, or does not fit, is an error, never a crash.
    fn load(&mut self, path: &Path, capacity: usize) -> Result<Vec<u32>, String>;
    /// Drops the sequence's KV from position `from` on; false when the
    /// engine could not.
    fn cut(&mut self, from: usize) -> bool;
    /// Drops every sequence's KV.
    fn clear(&mut self);
}

/// A prefix's KV kept in memory, with its tokens (compared with a new
/// prompt's before any of it is reused).
struct HostEntry<S> {
    state: S,
    tokens: Vec<u32>,
}

/// The prefix cache of one engine: a host tier in this process, an
/// optional disk tier shared with other processes, and the links from
/// blocks to the prefixes that hold them.
pub struct PrefixCache<S> {
    /// What every key of this engine shares: the model and the KV type.
    seed: String,
    host: HostTier<HostEntry<S>>,
    /// Which prefix in `host` holds each block (by the block's chained
    /// key). A link whose prefix has left is skipped.
    host_links: HashMap<String, String>,
    disk: Option<DiskTier>,
    /// During a long prefill, save the KV so far at least this often.
    checkpoint_every: Option<Duration>,
    /// Plans also look for a stored state by content when none shares a
    /// prompt's first block (document reuse).
    by_content: bool,
}

impl<S> std::fmt::Debug for PrefixCache<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrefixCache")
            .field("seed", &self.seed)
            .field("host_bytes", &self.host.bytes())
            .field("disk", &self.disk.is_some())
            .finish_non_exhaustive()
    }
}

/// What is known of a prefix before its context is made: its keys, and
/// what the tiers hold of it.
#[derive(Debug)]
pub struct PrefixPlan {
    /// `None`: the prefix is too short to keep.
    pub key: Option<String>,
    blocks: Vec<String>,
    len: usize,
    /// The disk tier does not hold the prefix whole: how many of its
    /// blocks up to the longest one a stored state holds, and that state's
    /// tokens.
    on_disk: Option<(usize, usize)>,
    /// Not in memory whole: the prefix in memory holding the longest run
    /// of its blocks (key, tokens shared, tokens it holds).
    in_memory: Option<(String, usize, usize)>,
    last_checkpoint: Instant,
    /// The group the prefix's state is stored in on disk (the windows of
    /// one sweep: see [`DiskTier::store_in`]).
    group: Option<String>,
    /// What a state's content index is filed under: the model, KV type
    /// and streams (the key's seed).
    seed: String,
    /// No stored state shares the prefix's first block, but one on disk
    /// holds much of its content (found by content, for document reuse):
    /// its key and tokens.
    by_content: Option<(String, usize)>,
}

impl PrefixPlan {
    /// Tokens the context must have room for to load what the tiers hold
    /// (a stored state may hold more than this prompt needs).
    #[must_use]
    pub fn context_needed(&self) -> usize {
        let disk = self.on_disk.map_or(0, |(_, tokens)| tokens);
        let memory = self.in_memory.as_ref().map_or(0, |(_, _, held)| *held);
        let content = self.by_content.as_ref().map_or(0, |(_, held)| *held);
        disk.max(memory).max(content)
    }

    /// Stores the prefix's state in `group` (a sweep's windows, which never
    /// evict one another and are evicted together).
    #[must_use]
    pub fn in_group(mut self, group: Option<String>) -> Self {
        self.group = group;
        self
    }

    /// Whether a stored state shares the prefix's first blocks but the
    /// prefix is not stored whole (the same corpus before a change): what
    /// [`PrefixCache::restore_other`] loads.
    #[must_use]
    pub fn other_state(&self) -> bool {
        self.on_disk.is_some_and(|(blocks, _)| blocks > 0) || self.in_memory.is_some() || self.by_content.is_some()
    }

    /// Whether the prefix will be kept after its prefill (prefill chunks
    /// then end at the prefix's end, so its KV can be saved alone).
    #[must_use]
    pub fn keeps(&self) -> bool {
        self.key.is_some()
    }
}

impl<S> PrefixCache<S> {
    /// A cache whose keys start from `seed` (the model's identity and the
    /// KV type), keeping `host_bytes` of prefixes in memory (0: none) and,
    /// with `disk`, state files between processes.
    #[must_use]
    pub fn new(seed: String, host_bytes: u64, disk: Option<DiskTier>, checkpoint_every: Option<Duration>) -> Self {
        Self {
            seed,
            host: HostTier::new(host_bytes),
            host_links: HashMap::new(),
            disk,
            checkpoint_every,
            by_content: false,
        }
    }

    /// Plans also look on disk for a stored state by its content when none
    /// shares a prompt's first block (for document reuse, which can use a
    /// state whatever its first tokens).
    #[must_use]
    pub fn finding_by_content(mut self, on: bool) -> Self {
        self.by_content = on;
        self
    }

    fn keeps_anything(&self) -> bool {
        self.host.enabled() || self.disk.is_some()
    }

    /// The key of a prefix: the seed, the context's KV streams and the
    /// exact tokens. A context of `streams` forked sequences keeps a KV
    /// stream per sequence, and an engine may read a sequence's state only
    /// into a context with as many, so forked prefixes are kept apart from
    /// single questions' (1 stream).
    #[must_use]
    pub fn prefix_key(&self, prefix: &[u32], streams: usize) -> String {
        let mut h = self.key_hasher(streams);
        for t in prefix {
            h.update(&t.to_le_bytes());
        }
        h.finalize().to_hex()[..32].to_owned()
    }

    /// Keys of the prefix's whole blocks, each chained through the one
    /// before it (and the seed), so a block's key stands for every token up
    /// to its end.
    #[must_use]
    pub fn block_keys(&self, prefix: &[u32], streams: usize) -> Vec<String> {
        let mut previous = self.key_hasher(streams).finalize();
        prefix
            .chunks_exact(KV_BLOCK)
            .map(|block| {
                let mut h = blake3::Hasher::new();
                h.update(previous.as_bytes());
                for t in block {
                    h.update(&t.to_le_bytes());
                }
                previous = h.finalize();
                format!("block-{}", &previous.to_hex()[..32])
            })
            .collect()
    }

    fn key_hasher(&self, streams: usize) -> blake3::Hasher {
        let mut h = blake3::Hasher::new();
        h.update(self.seed.as_bytes());
        if streams > 1 {
            h.update(format!("streams {streams}").as_bytes());
        }
        h
    }

    /// Keeps prefix `key` out of eviction in both tiers.
    pub fn pin(&mut self, key: &str) {
        self.host.pin(key);
        if let Some(disk) = self.disk.as_mut() {
            disk.pin(key);
        }
    }

    /// Each tier's counters, by name.
    #[must_use]
    pub fn tiers(&self) -> Vec<(&'static str, TierCounters)> {
        let mut tiers = Vec::new();
        if self.host.enabled() {
            tiers.push(("memory", self.host.counters()));
        }
        if let Some(disk) = &self.disk {
            tiers.push(("disk", disk.counters()));
        }
        tiers
    }

    /// Looks at what the tiers hold of `prefix` for a context of `streams`
    /// sequences. With `partial`, runs of its first blocks that other
    /// prompts left count too (single questions); without, only the prefix
    /// whole (forked questions).
    #[must_use]
    pub fn plan(&self, prefix: &[u32], streams: usize, partial: bool) -> PrefixPlan {
        let key = (prefix.len() >= MIN_SAVED_PREFIX).then(|| self.prefix_key(prefix, streams));
        let blocks = if key.is_some() && self.keeps_anything() {
            self.block_keys(prefix, streams)
        } else {
            Vec::new()
        };
        let mut plan = PrefixPlan {
            key,
            blocks,
            len: prefix.len(),
            on_disk: None,
            in_memory: None,
            last_checkpoint: Instant::now(),
            group: None,
            seed: self.key_hasher(streams).finalize().to_hex()[..32].to_owned(),
            by_content: None,
        };
        let Some(key) = plan.key.as_ref().filter(|_| partial) else {
            return plan;
        };
        plan.on_disk = self.disk.as_ref().filter(|d| !d.has(key)).map(|disk| {
            plan.blocks
                .iter()
                .enumerate()
                .rev()
                .find_map(|(i, b)| disk.linked(b).map(|(_, tokens)| (i + 1, tokens)))
                .unwrap_or((0, 0))
        });
        if self.host.enabled() && !self.host.contains(key) {
            plan.in_memory = plan.blocks.iter().enumerate().rev().find_map(|(i, b)| {
                let k = self.host_links.get(b)?;
                let entry = self.host.peek(k)?;
                let n = (i + 1) * KV_BLOCK;
                (entry.tokens.len() >= n && entry.tokens[..n] == prefix[..n])
                    .then(|| (k.clone(), n, entry.tokens.len()))
            });
        }
        let whole = self.host.contains(key) || self.disk.as_ref().is_some_and(|d| d.has(key));
        if self.by_content && !whole && !plan.other_state() {
            plan.by_content = self.find_by_content(&plan.seed, prefix);
        }
        plan
    }

    /// Tokens of `prefix` the tiers hold, whole or as its first blocks: what
    /// a prompt with this prefix would restore rather than read (without
    /// loading anything: a state found damaged then is read after all).
    #[must_use]
    pub fn held(&self, prefix: &[u32], streams: usize) -> usize {
        let plan = self.plan(prefix, streams, true);
        let Some(key) = &plan.key else { return 0 };
        if self.host.contains(key) || self.disk.as_ref().is_some_and(|d| d.has(key)) {
            return prefix.len();
        }
        let disk = plan.on_disk.map_or(0, |(blocks, _)| blocks * KV_BLOCK);
        let memory = plan.in_memory.as_ref().map_or(0, |(_, shared, _)| *shared);
        disk.max(memory)
    }

    /// Bytes of the state the disk tier holds for `prefix` whole (0: none);
    /// `None` when there is no disk tier or the prefix is too short to keep.
    #[must_use]
    pub fn on_disk(&self, prefix: &[u32], streams: usize) -> Option<u64> {
        let disk = self.disk.as_ref()?;
        (prefix.len() >= MIN_SAVED_PREFIX).then(|| disk.state_bytes(&self.prefix_key(prefix, streams)))
    }

    /// The disk tier, if any (for its budget).
    #[must_use]
    pub fn disk(&self) -> Option<&DiskTier> {
        self.disk.as_ref()
    }

    /// Puts as much of `prefix` into the sequence as the tiers hold:
    /// the prefix whole from memory, else whole from disk (then kept in
    /// memory too), else the longest run of its blocks another prefix left
    /// in memory or (when longer there) on disk. `capacity` bounds what a
    /// state file may hold. Returns the tokens the sequence now holds, and
    /// records where they came from in `kv`.
    pub fn restore(
        &mut self,
        plan: &PrefixPlan,
        seq: &mut impl SequenceKv<State = S>,
        prefix: &[u32],
        capacity: usize,
        kv: &mut KvUse,
    ) -> usize {
        let Some(key) = &plan.key else {
            return 0;
        };
        if let Some(entry) = self.host.enabled().then(|| self.host.get(key)).flatten() {
            match seq.set_state(&entry.state) {
                Ok(()) => {
                    kv.reused_tokens = prefix.len() as u32;
                    return prefix.len();
                }
                Err(e) => tracing::warn!("could not reuse the prompt's KV from memory ({e}); reading it again"),
            }
        }
        let whole = self
            .disk
            .as_ref()
            .map_or(0, |disk| restore_whole(disk, seq, key, prefix));
        if whole > 0 {
            kv.restored_tokens = whole as u32;
            self.keep_in_memory(plan, seq, prefix, kv);
            return whole;
        }
        let on_disk = plan.on_disk.map_or(0, |(n, _)| n * KV_BLOCK);
        if let Some((held, n, _)) = &plan.in_memory {
            if *n >= on_disk {
                if let Some(entry) = self.host.get(held) {
                    if seq.set_state(&entry.state).is_ok() && seq.cut(*n) {
                        kv.reused_tokens = *n as u32;
                        return *n;
                    }
                    seq.clear();
                }
            }
        }
        if let (Some(disk), Some((n, _))) = (&self.disk, plan.on_disk) {
            let done = restore_blocks(disk, seq, &plan.blocks[..n], prefix, capacity);
            kv.restored_tokens = done as u32;
            return done;
        }
        0
    }

    /// During a prefill of the prefix: saves the KV so far (`tokens`, the
    /// prefix's first tokens) under the prefix's checkpoint key when the
    /// interval has passed, so an interrupted prefill resumes from it.
    pub fn checkpoint(&self, plan: &mut PrefixPlan, seq: &impl SequenceKv<State = S>, tokens: &[u32]) {
        let (Some(disk), Some(every), Some(key)) = (&self.disk, self.checkpoint_every, &plan.key) else {
            return;
        };
        if tokens.len() < plan.len && tokens.len() >= KV_BLOCK && plan.last_checkpoint.elapsed() >= every {
            save(
                disk,
                seq,
                &checkpoint_key(key),
                tokens,
                &plan.blocks,
                plan.group.as_deref(),
            );
            plan.last_checkpoint = Instant::now();
        }
    }

    /// After the prefix was prefilled: saves its KV to disk (replacing a
    /// checkpoint), keeps a copy in memory and links its blocks to both.
    pub fn keep(&mut self, plan: &PrefixPlan, seq: &impl SequenceKv<State = S>, prefix: &[u32], kv: &mut KvUse) {
        let Some(key) = &plan.key else {
            return;
        };
        if let Some(disk) = &self.disk {
            disk.remove(&checkpoint_key(key));
            match save(disk, seq, key, prefix, &plan.blocks, plan.group.as_deref()) {
                Saved::Bytes(bytes) => {
                    kv.saved_bytes = bytes;
                    disk.index_content(key, &plan.seed, prefix.len(), &documents::chunk_keys(prefix));
                }
                Saved::OverBudget => kv.unsaved_tokens = prefix.len() as u32,
                Saved::Failed => {}
            }
        }
        self.keep_in_memory(plan, seq, prefix, kv);
    }

    fn keep_in_memory(&mut self, plan: &PrefixPlan, seq: &impl SequenceKv<State = S>, prefix: &[u32], kv: &mut KvUse) {
        let Some(key) = plan.key.as_ref().filter(|_| self.host.enabled()) else {
            return;
        };
        let before = self.host.counters().evictions;
        match seq.state() {
            Ok((state, bytes)) => {
                let entry = HostEntry {
                    state,
                    tokens: prefix.to_vec(),
                };
                // A prefix larger than the whole budget is simply not kept.
                if let Ok(kept) = self.host.put(key, (entry, bytes)) {
                    kv.offloaded_bytes += kept;
                    let host = &self.host;
                    self.host_links.retain(|_, k| host.contains(k));
                    for b in &plan.blocks {
                        self.host_links.insert(b.clone(), key.clone());
                    }
                }
            }
            Err(e) => tracing::warn!("could not keep the prompt's KV in memory: {e}"),
        }
        kv.evictions += (self.host.counters().evictions - before) as u32;
    }
}

/// Where an interrupted prefill of prefix `key` leaves its latest KV.
fn checkpoint_key(key: &str) -> String {
    format!("part-{key}")
}

/// What became of a save.
enum Saved {
    Bytes(u64),
    /// Refused: the disk tier's budget is held by the prefix's own group
    /// (or by pinned entries).
    OverBudget,
    /// The engine or the file system failed (a warning was logged).
    Failed,
}

/// Saves the sequence's KV (exactly `tokens`) to the disk tier under `key`,
/// in `group`, and links each of its whole blocks to it. A failure is a
/// warning, never an error, since the answer does not depend on it; a
/// state refused for want of room is the sweep's to report, once.
fn save<S>(
    disk: &DiskTier,
    seq: &impl SequenceKv<State = S>,
    key: &str,
    tokens: &[u32],
    blocks: &[String],
    group: Option<&str>,
) -> Saved {
    match disk.store_in(key, group, |path| seq.save(path, tokens)) {
        Ok(bytes) => {
            for block in &blocks[..(tokens.len() / KV_BLOCK).min(blocks.len())] {
                disk.link(block, key, tokens.len());
            }
            Saved::Bytes(bytes)
        }
        Err(why) if why.starts_with(OVER_BUDGET) => {
            tracing::debug!("the prompt's KV was not saved: {why}");
            Saved::OverBudget
        }
        Err(why) => {
            tracing::warn!("could not save the prompt's KV for later questions: {why}");
            Saved::Failed
        }
    }
}

/// Restores `prefix` whole from the state stored under `key`; returns the
/// tokens restored (0: prefill it, after saying why when a file was there
/// but unusable, which is then removed).
fn restore_whole<S>(disk: &DiskTier, seq: &mut impl SequenceKv<State = S>, key: &str, prefix: &[u32]) -> usize {
    let path = match disk.lookup(key) {
        Lookup::Hit(path) => path,
        Lookup::Miss => return 0,
        Lookup::Corrupt(why) => {
            tracing::warn!("ignored a damaged KV file, prefilling instead: {why}");
            return 0;
        }
    };
    match seq.load(&path, prefix.len()) {
        Ok(tokens) if tokens == prefix => prefix.len(),
        other => {
            let why = match other {
                Ok(_) => "its tokens differ from this prompt's".to_owned(),
                Err(e) => e,
            };
            tracing::warn!("could not restore the saved KV ({why}); prefilling instead");
            seq.clear();
            disk.remove(key);
            0
        }
    }
}

/// Restores the longest run of whole `blocks` of `prefix` that a stored
/// state holds (another prompt's, or an interrupted prefill's checkpoint),
/// and drops what that state holds past it. Returns the tokens restored.
fn restore_blocks<S>(
    disk: &DiskTier,
    seq: &mut impl SequenceKv<State = S>,
    blocks: &[String],
    prefix: &[u32],
    capacity: usize,
) -> usize {
    for (i, block) in blocks.iter().enumerate().rev() {
        let Some((key, _)) = disk.linked(block) else {
            continue;
        };
        let path = match disk.lookup(&key) {
            Lookup::Hit(path) => path,
            Lookup::Miss => continue,
            Lookup::Corrupt(why) => {
                tracing::warn!("ignored a damaged KV file: {why}");
                continue;
            }
        };
        let n = (i + 1) * KV_BLOCK;
        let same = match seq.load(&path, capacity) {
            Ok(tokens) => tokens.len() >= n && tokens[..n] == prefix[..n],
            Err(why) => {
                tracing::warn!("removed a KV file that could not be loaded: {why}");
                disk.remove(&key);
                false
            }
        };
        if same && seq.cut(n) {
            return n;
        }
        seq.clear();
    }
    0
}

mod content;
#[cfg(test)]
mod tests;
