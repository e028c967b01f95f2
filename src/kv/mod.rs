//! The KV-cache manager: what a prompt's KV is keyed by, where it is kept,
//! what of it a later prompt can reuse, and how much memory it takes.
//!
//! `prefix`: the policy ([`prefix::PrefixCache`]): prefix and block keys,
//! the choice of what to restore from which tier, checkpoints, saves, pins;
//! engines implement [`prefix::SequenceKv`] for what only they can do.
//! `documents`: document-granular reuse, a prefix laid out of a stored
//! state whose middle changed (kept, moved and read tokens).
//! `budget`: the disk tier's room (a quarter of the cache folder's free
//! space by default) and what a corpus's KV takes of it.
//! `host` and `disk`: the two storage tiers, behind `tier`'s
//! [`tier::KvTier`] with one test suite run on each. `usage`: what a
//! generation's KV cost ([`KvUse`]). `plan`: how much memory a model's
//! weights and KV take, on which device, at which context (in: model facts
//! and device specs; out: plain numbers for `report`).
//!
//! Never parses corpus files and never imports an engine: engines call
//! into the manager (and `--measure` is run by the CLI).

pub mod budget;
pub mod disk;
pub mod documents;
pub mod host;
pub mod plan;
pub mod prefix;
pub mod tier;
mod usage;

pub use usage::KvUse;
