//! Prompt layout: a corpus and a task become chat messages.
//!
//! In: stored documents, the corpus's secret salt, a task text. Out: one or
//! more [`Window`]s, each a sequence of chat messages that fits the engine's
//! context. The order follows DESIGN.md so the longest prefix is shared
//! between questions:
//! 1. a fixed preamble (per layout version) saying the corpus is data;
//! 2. documents, least recently changed first, each inside a boundary that
//!    carries the salt; content cannot forge a boundary (see [`escape`]);
//! 3. sparse line markers in text and code, so citations are exact;
//! 4. images where they stand (no vision yet: a line says so);
//! 5. a table of contents after the documents;
//! 6. the task.
//!
//! Rendering is byte-for-byte deterministic for the same corpus and layout
//! version. Never holds KV and never talks to an engine: it only counts
//! tokens through the [`Tokenizer`] trait.

mod layout;
mod window;

use serde::Serialize;

pub use layout::{data_block, escape, order_documents, preamble, render_document, table_of_contents, DocumentBlock};
pub use window::{count_block, count_units, plan_windows, BlockTokens, PieceTooLarge, Window, WindowPart};

/// Bumped whenever rendering changes, so caches keyed on it miss.
pub const LAYOUT_VERSION: u32 = 1;

/// A line marker every this many lines of text and code (and on the first
/// line of every segment): often enough that a model can cite a line
/// exactly, rare enough to cost little.
pub const LINE_MARKER_EVERY: u32 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One chat message. Engines render these in their own chat format and
/// tokenize `content` as plain text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
}

impl ChatMessage {
    #[must_use]
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
        }
    }
}

/// Counts whitespace-separated words: a stand-in tokenizer for tests.
#[cfg(test)]
pub(crate) struct Words;

#[cfg(test)]
impl Tokenizer for Words {
    fn tokenizer_id(&self) -> &'static str {
        "words"
    }
    fn count_tokens(&self, text: &str) -> u32 {
        text.split_whitespace().count() as u32
    }
}

/// Exact token counting with an engine's tokenizer. `Sync`, so large
/// corpora are counted on every core.
pub trait Tokenizer: Sync {
    /// Identifies the tokenizer (a hash of its vocabulary), for caches.
    fn tokenizer_id(&self) -> &str;
    /// Tokens `text` takes when placed in a prompt as plain text.
    fn count_tokens(&self, text: &str) -> u32;
    /// Whether counting again is cheaper than a lookup in the corpus's
    /// token-count cache (hashing the text and a database round trip).
    fn counts_are_cheap(&self) -> bool {
        false
    }
}
