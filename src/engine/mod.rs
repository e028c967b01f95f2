//! Engines: the models scout can run, behind one [`Engine`] trait.
//!
//! In: chat messages laid out by `prompt`. Out: streamed text and usage.
//! An engine renders messages in its own chat format, counts tokens exactly
//! with its own tokenizer, and reports what it can do ([`Capabilities`]).
//! Document text is always tokenized as plain text, never parsed for special
//! tokens, so a file cannot smuggle a chat-format token into the prompt.
//!
//! Never knows about tasks, corpora or citations.

pub mod bpe;
#[cfg(feature = "llamacpp")]
pub mod llamacpp;
#[cfg(feature = "mistralrs")]
pub mod mistralrs;
#[cfg(feature = "llamacpp")]
pub mod open;
#[cfg(feature = "llamacpp")]
pub mod openai;
pub mod threads;

use serde::Serialize;

pub use crate::prompt::{ChatMessage, Part, PromptImage, Role, Tokenizer};

/// What an engine without vision says when a message holds an image.
#[must_use]
pub fn no_vision(image: &PromptImage) -> EngineError {
    EngineError::Unsupported(format!(
        "read images (the prompt holds {}); its layout gives such engines the images' OCR text instead",
        image.label
    ))
}

pub use crate::model::Capabilities;

/// Stops a generation from outside: at a deadline, or when a flag is set
/// (a client that went away). The default never stops anything.
#[derive(Debug, Clone, Default)]
pub struct Cancel {
    deadline: Option<std::time::Instant>,
    flag: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl PartialEq for Cancel {
    fn eq(&self, other: &Self) -> bool {
        self.deadline == other.deadline && std::sync::Arc::ptr_eq(&self.flag, &other.flag)
    }
}

impl Cancel {
    /// Stops generation `limit` from now.
    #[must_use]
    pub fn after(limit: std::time::Duration) -> Self {
        Self {
            deadline: Some(std::time::Instant::now() + limit),
            ..Self::default()
        }
    }

    /// Stops the generation at its next token or prefill batch.
    pub fn cancel(&self) {
        self.flag.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// `Err` once cancelled or past the deadline.
    pub fn check(&self) -> Result<(), EngineError> {
        if self.flag.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(EngineError::Cancelled("cancelled".to_owned()));
        }
        match self.deadline {
            Some(d) if std::time::Instant::now() >= d => Err(EngineError::Cancelled(
                "the generation time limit was reached".to_owned(),
            )),
            _ => Ok(()),
        }
    }
}

/// How to sample.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateParams {
    pub max_tokens: u32,
    /// 0 means greedy (deterministic).
    pub temperature: f32,
    pub seed: u32,
    /// Penalty on tokens repeated within the last 64 generated ones; small
    /// models loop without it.
    pub repeat_penalty: f32,
    /// Generation ends where any of these appears; it is not part of the
    /// answer.
    pub stop: Vec<String>,
    /// Constrain the answer to JSON matching this schema (engines whose
    /// capabilities say `json_schema`).
    pub json_schema: Option<serde_json::Value>,
    /// Checked between prefill batches and between tokens.
    pub cancel: Cancel,
    /// Keep this prompt's prefix KV (its corpus) out of the KV tiers'
    /// least-recently-used eviction: a corpus the user keeps resident.
    pub pin_prefix: bool,
    /// The sweep this call is one window of (set by the task runner): the
    /// windows' KV is kept on disk as a group, never evicting one another,
    /// and evicted together.
    pub kv_group: Option<String>,
    /// Keep this prompt's prefix KV for later requests (default). Off for
    /// prompts no later one shares: notes combined for one question.
    pub keep_prefix: bool,
    /// Report this many of the first answer token's most likely
    /// candidates with their log-probabilities (0: none).
    pub first_logprobs: usize,
}

impl Default for GenerateParams {
    fn default() -> Self {
        Self {
            max_tokens: crate::limits::ANSWER_TOKENS,
            temperature: 0.0,
            seed: 0,
            repeat_penalty: 1.1,
            stop: Vec::new(),
            json_schema: None,
            cancel: Cancel::default(),
            pin_prefix: false,
            kv_group: None,
            keep_prefix: true,
            first_logprobs: 0,
        }
    }
}

/// What an engine reports while it works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineEvent<'a> {
    /// Prompt tokens processed so far, of the total.
    Prefill { done: u32, total: u32 },
    /// A piece of the answer (whole UTF-8 characters).
    Text(&'a str),
}

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    EndOfText,
    MaxTokens,
    StopSequence,
}

pub use crate::kv::KvUse;

/// The result of one generation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Generation {
    pub text: String,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub kv: KvUse,
    pub stop: StopReason,
    /// Time from the call to the first answer token.
    pub ttft_ms: u64,
    pub prefill_ms: u64,
    pub decode_ms: u64,
    /// The most likely first answer tokens and their log-probabilities,
    /// most likely first (`GenerateParams::first_logprobs` of them; engines
    /// that cannot say leave it empty). For measuring how a KV shortcut
    /// changes what the model computes.
    pub first_logprobs: Vec<(u32, f32)>,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("model file {path}: {detail}")]
    Load { path: String, detail: String },
    #[error(
        "the prompt is {prompt} tokens and the answer needs {answer} more, over the engine's context of {context}"
    )]
    ContextOverflow { prompt: u32, answer: u32, context: u32 },
    #[error("chat template: {0}")]
    Template(String),
    #[error("inference failed: {0}")]
    Inference(String),
    #[error("stopped: {0}")]
    Cancelled(String),
    #[error("this engine cannot {0}")]
    Unsupported(String),
}

/// A model that answers.
pub trait Engine: Tokenizer {
    /// Backend name, e.g. `llamacpp`.
    fn backend(&self) -> &'static str;
    /// Identifies the model (name and a hash of the file), for caches.
    fn model_id(&self) -> &str;
    fn capabilities(&self) -> Capabilities;
    /// Tokens the messages take once rendered in the chat format, with the
    /// assistant's turn opened.
    fn count_chat_tokens(&self, messages: &[ChatMessage]) -> Result<u32, EngineError>;
    /// Generates an answer to `messages`, reporting progress and text.
    fn generate(
        &mut self,
        messages: &[ChatMessage],
        params: &GenerateParams,
        on_event: &mut dyn FnMut(EngineEvent<'_>),
    ) -> Result<Generation, EngineError>;
    /// Answers conversations that share everything before their last
    /// message (a corpus, each with its own question). Engines with KV
    /// operations read or restore the shared prefix once, fork it into one
    /// sequence per conversation (a copy of its KV, no recompute) and
    /// decode the answers side by side, one token of each per batch;
    /// `on_event` is told which conversation an event belongs to. The
    /// default answers them one after another.
    fn generate_forked(
        &mut self,
        conversations: &[Vec<ChatMessage>],
        params: &GenerateParams,
        on_event: &mut dyn FnMut(usize, EngineEvent<'_>),
    ) -> Result<Vec<Generation>, EngineError> {
        one_by_one(self, conversations, params, on_event)
    }
    /// How many independent generations the engine runs at once: the
    /// sum of its servers' slots (openai), else 1.
    fn slots(&self) -> usize {
        1
    }
    /// Answers independent calls (a sweep's windows), as many at once as
    /// [`Engine::slots`] allows; results come in the order of `calls`, and
    /// each call's failure is its own. `on_event` is told which call an
    /// event belongs to, when it starts and when it ends. The default
    /// answers them one after another.
    fn generate_each(
        &mut self,
        calls: &[Call<'_>],
        on_event: &mut dyn FnMut(usize, EachEvent<'_>),
    ) -> Vec<Result<Generation, EngineError>> {
        calls
            .iter()
            .enumerate()
            .map(|(i, c)| {
                on_event(i, EachEvent::Started);
                let g = self.generate(c.messages, c.params, &mut |e| on_event(i, EachEvent::Engine(e)));
                on_event(i, EachEvent::Finished(g.is_ok()));
                g
            })
            .collect()
    }
    /// Tokens of this prompt's prefix (everything before its last message)
    /// whose KV the engine holds and would restore rather than read; `None`
    /// where it cannot tell (a remote server).
    fn kv_held(&self, _messages: &[ChatMessage]) -> Option<u32> {
        None
    }
    /// Bytes of the state this prompt's prefix has in the engine's disk
    /// tier (0: none); `None` where the engine keeps no disk tier or the
    /// prefix is too short to keep.
    fn kv_saved(&self, _messages: &[ChatMessage]) -> Option<u64> {
        None
    }
    /// How the engine keeps prefixes' KV on disk (KV type, bytes per token,
    /// budget); `None` where it keeps none.
    fn kv_store(&self) -> Option<crate::kv::budget::KvStore> {
        None
    }
    /// The counters of each KV tier the engine keeps (name, counters), over
    /// its life so far; none for engines that keep no KV of their own.
    fn kv_tiers(&self) -> Vec<(&'static str, crate::kv::tier::TierCounters)> {
        Vec::new()
    }
}

/// One of several independent calls ([`Engine::generate_each`]).
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub messages: &'a [ChatMessage],
    pub params: &'a GenerateParams,
}

/// What [`Engine::generate_each`] reports of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EachEvent<'a> {
    /// The call went to the model.
    Started,
    Engine(EngineEvent<'a>),
    /// The call ended: answered (`true`) or failed.
    Finished(bool),
}

/// Answers conversations one after another (what
/// [`Engine::generate_forked`] does where there is nothing to fork).
pub fn one_by_one<E: Engine + ?Sized>(
    engine: &mut E,
    conversations: &[Vec<ChatMessage>],
    params: &GenerateParams,
    on_event: &mut dyn FnMut(usize, EngineEvent<'_>),
) -> Result<Vec<Generation>, EngineError> {
    conversations
        .iter()
        .enumerate()
        .map(|(i, c)| engine.generate(c, params, &mut |e| on_event(i, e)))
        .collect()
}

/// Placeholder put in each message before a chat template is applied;
/// chosen from a Unicode private-use range so no template or model emits it.
const SLOT_OPEN: char = '\u{F0000}';
const SLOT_CLOSE: char = '\u{F0001}';

/// Writes an image into a prompt's tokens (see [`tokenize_slotted`]).
pub type ImageWriter<'a, T> = dyn FnMut(&PromptImage, &mut Vec<T>) -> Result<(), EngineError> + 'a;

/// The placeholder content for message `index`: engines render their chat
/// template around these and split the result with [`tokenize_slotted`].
#[must_use]
pub fn slot(index: usize) -> String {
    format!("{SLOT_OPEN}{index}{SLOT_CLOSE}")
}

/// Tokenizes a chat template's output rendered around [`slot`]s: the
/// template's own text through `piece(text, true, out)` (special tokens
/// parsed), each message's content through `piece(content, false, out)`
/// (plain text, trimmed first when the template trims), so a document that
/// contains a chat-format token stays text. An image in a message is
/// written into the tokens by `image(it, out)` (the model's own image
/// tokens, or a stand-in span the engine replaces when it reads the
/// prompt). Returns how many tokens come before the last message's
/// content.
pub fn tokenize_slotted<T>(
    rendered: &str,
    messages: &[ChatMessage],
    trims_content: bool,
    tokens: &mut Vec<T>,
    piece: &mut dyn FnMut(&str, bool, &mut Vec<T>),
    image: &mut ImageWriter<'_, T>,
) -> Result<usize, EngineError> {
    let mut rest = rendered;
    let mut seen = 0usize;
    let mut prefix = 0usize;
    while let Some(open) = rest.find(SLOT_OPEN) {
        piece(&rest[..open], true, tokens);
        let after = &rest[open + SLOT_OPEN.len_utf8()..];
        let close = after
            .find(SLOT_CLOSE)
            .ok_or_else(|| EngineError::Template("template cut a message".into()))?;
        let index: usize = after[..close]
            .parse()
            .map_err(|_| EngineError::Template("template altered a message".into()))?;
        let message = messages
            .get(index)
            .ok_or_else(|| EngineError::Template("template invented a message".into()))?;
        if index + 1 == messages.len() {
            prefix = tokens.len();
        }
        // Templates that trim content (Llama 4's) see it trimmed here too.
        for part in message.parts(trims_content) {
            match part {
                Part::Text(text) => piece(text, false, tokens),
                Part::Image(i) => image(i, tokens)?,
            }
        }
        seen += 1;
        rest = &after[close + SLOT_CLOSE.len_utf8()..];
    }
    piece(rest, true, tokens);
    if seen != messages.len() {
        return Err(EngineError::Template(format!(
            "the model's chat template kept {seen} of {} messages (does it support a system role?)",
            messages.len()
        )));
    }
    Ok(prefix)
}

/// Streams generated text while holding back anything that could still turn
/// into a stop sequence, so a stop sequence is never shown, even in part.
#[derive(Debug, Default)]
pub struct StopFilter {
    stops: Vec<String>,
    text: String,
    emitted: usize,
}

impl StopFilter {
    #[must_use]
    pub fn new(stops: &[String]) -> Self {
        Self {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            ..Self::default()
        }
    }

    /// Adds generated text. Returns the text now safe to show, and whether
    /// a stop sequence was reached (generation should end).
    pub fn push(&mut self, chunk: &str) -> (&str, bool) {
        let from = self.emitted;
        self.text.push_str(chunk);
        // A stop may begin in text held back earlier, so search from the
        // start of what has not been shown (answers are short).
        let earliest = self
            .stops
            .iter()
            .filter_map(|s| self.text[from..].find(s.as_str()).map(|i| i + from))
            .min();
        if let Some(at) = earliest {
            self.text.truncate(at);
            self.emitted = at;
            return (&self.text[from..at], true);
        }
        let mut safe = self.text.len();
        for s in &self.stops {
            for k in (1..s.len()).rev() {
                if self.text.len() >= k
                    && self.text.is_char_boundary(self.text.len() - k)
                    && s.starts_with(&self.text[self.text.len() - k..])
                {
                    safe = safe.min(self.text.len() - k);
                    break;
                }
            }
        }
        let safe = safe.max(self.emitted);
        let start = self.emitted;
        self.emitted = safe;
        (&self.text[start..safe], false)
    }

    /// Text held back at the end of generation (no stop came).
    pub fn flush(&mut self) -> &str {
        let start = self.emitted;
        self.emitted = self.text.len();
        &self.text[start..]
    }

    /// Everything generated, up to the stop sequence.
    #[must_use]
    pub fn text(&self) -> &str {
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], chunks: &[&str]) -> (String, String, bool) {
        let stops: Vec<String> = stops.iter().map(|s| (*s).to_owned()).collect();
        let mut f = StopFilter::new(&stops);
        let mut shown = String::new();
        let mut stopped = false;
        for c in chunks {
            let (s, stop) = f.push(c);
            shown.push_str(s);
            if stop {
                stopped = true;
                break;
            }
        }
        if !stopped {
            shown.push_str(f.flush());
        }
        (shown, f.text().to_owned(), stopped)
    }

    #[test]
    fn a_stop_split_across_chunks_is_never_shown() {
        let (shown, text, stopped) = run(&["\n<<<"], &["Answer.", "\n<", "<", "<doc"]);
        assert_eq!((shown.as_str(), text.as_str(), stopped), ("Answer.", "Answer.", true));
    }

    #[test]
    fn held_back_text_is_released_when_it_is_not_a_stop() {
        let (shown, _, stopped) = run(&["\n<<<"], &["a\n<", "b"]);
        assert_eq!((shown.as_str(), stopped), ("a\n<b", false));
    }

    #[test]
    fn no_stops_streams_everything() {
        let (shown, _, _) = run(&[], &["x", "y"]);
        assert_eq!(shown, "xy");
    }
}
