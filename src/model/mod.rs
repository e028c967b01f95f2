//! What scout knows of models: reading a GGUF's header (`gguf`), a model's
//! facts and the presets it plans for (`facts`), the store the default
//! model is fetched into and where scout's cache folder lies (`store`),
//! and what images cost a vision model in prompt tokens (`vision`); and
//! [`Capabilities`], what a model can do on an engine.
//!
//! In: model files and configs. Out: plain facts, paths, token counts.
//! Never: loads weights or runs a model (engines do); never reads a
//! corpus. Used by the KV planner, the engines, the prompt and the corpus.

pub mod facts;
pub mod gguf;
pub mod store;
pub mod vision;

use serde::Serialize;

/// What an engine and its model can do; tasks check these before running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    /// Tokens of context the engine will accept (prompt + answer).
    pub context_length: u32,
    /// Images can be placed in the prompt.
    pub vision: bool,
    /// Output can be constrained to a JSON schema while decoding.
    pub json_schema: bool,
    /// KV operations (sequence copy, state save/restore) are available.
    pub kv_operations: bool,
}

impl Capabilities {
    /// What the llamacpp engine can do with a text model whose context is
    /// `context_length` tokens (scout's own engine: KV operations and
    /// constrained output; images only with a projector, `--mmproj`).
    #[must_use]
    pub fn llamacpp(context_length: u32) -> Self {
        Self {
            context_length,
            vision: false,
            json_schema: true,
            kv_operations: true,
        }
    }

    /// An engine that reads text and holds answers to a JSON schema but
    /// offers scout no KV operations (mistralrs, openai).
    #[must_use]
    pub fn text_with_schema(context_length: u32) -> Self {
        Self {
            context_length,
            vision: false,
            json_schema: true,
            kv_operations: false,
        }
    }
}
