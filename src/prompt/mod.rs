//! Prompt layout: a corpus and a task become chat messages.
//!
//! In: stored documents, the corpus's secret salt, a task text. Out: one or
//! more [`Window`]s, each a sequence of chat messages that fits the engine's
//! context. The order (docs/DESIGN.md, "The prompt layout") keeps the
//! longest prefix shared
//! between questions:
//! 1. a fixed preamble (per layout version) saying the corpus is data;
//! 2. documents, least recently changed first, each inside a boundary that
//!    carries the salt; content cannot forge a boundary (see [`escape`]);
//! 3. sparse line markers in text and code, so citations are exact;
//! 4. images where they stand, for engines that read them (their OCR
//!    text beside them); for the others, the OCR text, or a line saying
//!    the image has none;
//! 5. a table of contents after the documents;
//! 6. the task.
//!
//! Rendering is byte-for-byte deterministic for the same corpus and layout
//! version. Never holds KV and never talks to an engine: it only counts
//! tokens through the [`Tokenizer`] trait.

mod layout;
mod window;

use serde::Serialize;

pub use layout::{
    data_block, document_pieces, escape, extent_attribute, marker_length, order_documents, place_images, preamble,
    render_document, table_of_contents, DocumentBlock,
};
pub use window::{count_block, count_units, plan_windows, BlockTokens, PieceTooLarge, Window, WindowPart};

/// Bumped whenever rendering changes, so caches keyed on it miss.
pub const LAYOUT_VERSION: u32 = 2;

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

/// An image placed in a prompt: its file bytes (PNG, JPEG, TIFF, WebP,
/// GIF, BMP) and upright pixel size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptImage {
    pub bytes: Vec<u8>,
    pub width: u32,
    pub height: u32,
    /// Where it comes from (`scan.pdf#page=2`), for messages.
    pub label: String,
}

/// A piece of a message's content, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part<'a> {
    Text(&'a str),
    Image(&'a PromptImage),
}

/// One chat message. Engines render these in their own chat format and
/// tokenize `content` as plain text; `images` stand between its
/// characters (engines whose capabilities say `vision`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
    /// Images and the byte offset in `content` where each stands, in
    /// order.
    pub images: Vec<(usize, std::sync::Arc<PromptImage>)>,
}

impl ChatMessage {
    #[must_use]
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
            images: Vec::new(),
        }
    }

    /// The content as text and images in order, with the text trimmed at
    /// both ends first when `trim` (chat templates that trim content).
    /// Empty text parts are left out.
    #[must_use]
    pub fn parts(&self, trim: bool) -> Vec<Part<'_>> {
        let mut parts = Vec::with_capacity(2 * self.images.len() + 1);
        let mut from = 0;
        for (at, image) in &self.images {
            let at = (*at).clamp(from, self.content.len());
            parts.push(Part::Text(&self.content[from..at]));
            parts.push(Part::Image(image));
            from = at;
        }
        parts.push(Part::Text(&self.content[from..]));
        if trim {
            if let Some(Part::Text(t)) = parts.first_mut() {
                *t = t.trim_start();
            }
            if let Some(Part::Text(t)) = parts.last_mut() {
                *t = t.trim_end();
            }
        }
        parts.retain(|p| !matches!(p, Part::Text("")));
        parts
    }
}

/// Text with images standing between its characters: what a window
/// renders, before it becomes a message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Content {
    pub text: String,
    /// Byte offsets in `text`, in order.
    pub images: Vec<(usize, std::sync::Arc<PromptImage>)>,
}

impl Content {
    #[must_use]
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            images: Vec::new(),
        }
    }

    pub fn push_str(&mut self, s: &str) {
        self.text.push_str(s);
    }

    /// Places `image` at the end of the text so far.
    pub fn push_image(&mut self, image: std::sync::Arc<PromptImage>) {
        self.images.push((self.text.len(), image));
    }

    /// Appends `other`, its images moved along with its text.
    pub fn append(&mut self, other: &Content) {
        let shift = self.text.len();
        self.text.push_str(&other.text);
        self.images
            .extend(other.images.iter().map(|(at, i)| (at + shift, i.clone())));
    }

    /// A message of `role` holding this content.
    #[must_use]
    pub fn into_message(self, role: Role) -> ChatMessage {
        ChatMessage {
            role,
            content: self.text,
            images: self.images,
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
    /// Whether counts add up over text cut after a line break and before a
    /// printable ASCII character other than `/`: no piece of the
    /// tokenizer's pre-tokenizer spans such a place, so a text's count is
    /// the sum of its parts' (true of OpenAI's encodings; not assumed of a
    /// model's tokenizer).
    fn counts_add_at_line_starts(&self) -> bool {
        false
    }
    /// Tokens an image of this upright size takes in a prompt, when the
    /// engine reads images; `None` when it does not (the layout then puts
    /// the image's OCR text, or a line saying so, in its place).
    fn image_tokens(&self, _width: u32, _height: u32) -> Option<u32> {
        None
    }
}
