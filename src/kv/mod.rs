//! The KV-cache manager's planning side: how much memory a model's weights
//! and KV cache take, on which device, at which context.
//!
//! In: model facts (presets, config.json, GGUF headers) and device specs.
//! Out: plain numbers for `report` to lay out. Never parses corpus files
//! and never talks to an engine (except `--measure`, run by the CLI).

pub mod plan;
