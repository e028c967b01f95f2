//! The KV-cache manager. `plan`: how much memory a model's weights and KV
//! cache take, on which device, at which context (in: model facts and
//! device specs; out: plain numbers for `report`). `disk`: the disk tier,
//! where engines keep a prompt prefix's KV between processes; `host`: the
//! host tier, where they keep it in memory for the next request; `tier`:
//! what both promise ([`tier::KvTier`]), with the test suite run on each.
//!
//! Never parses corpus files and never imports an engine: engines call
//! into the tiers (and `--measure` is run by the CLI).

pub mod disk;
pub mod host;
pub mod plan;
pub mod tier;
