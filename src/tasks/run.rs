//! The task runner every task shares: a model call with its progress
//! events, usage and timing books; the errors of a task; the chat messages
//! a task's prompt is made of; the documents' blocks; and the packing of a
//! corpus into windows that fit the engine.
//!
//! In: an engine, a corpus's documents, a task's texts. Out: generations,
//! with usage summed over calls; windows.
//! Never: knows what a task asks (ask, audit, extract and chat build their
//! own prompts and read their own answers).

use serde::Serialize;

use crate::corpus::{Corpus, CorpusError, StoredDocument};
use crate::engine::{Engine, EngineError, EngineEvent, GenerateParams, Generation, KvUse};
use crate::prompt::{
    place_images, plan_windows, render_document, BlockTokens, ChatMessage, Content, DocumentBlock, PieceTooLarge, Role,
    Window,
};

/// Tokens kept spare when fitting a prompt, for the few tokens a template
/// adds at message joins that separate counting cannot see.
const FIT_MARGIN: u32 = 16;

/// Progress and output while a task runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskEvent<'a> {
    /// A model call begins: which step, and which window of how many.
    Step {
        step: Step,
        index: usize,
        of: usize,
        prompt_tokens: u32,
    },
    Prefill {
        done: u32,
        total: u32,
    },
    /// A piece of the final answer.
    Answer(&'a str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// A pipeline's rules checked over one window (audit).
    Audit,
    /// Fields read from one document or page (extract).
    Extract,
    /// The whole corpus in one prompt.
    Answer,
    /// Facts from one window.
    Map,
    /// Notes combined into an answer.
    Reduce,
    /// The question asked again over the lines that match it, when the
    /// first answer cited none of them.
    Recheck,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    /// Model calls made (1 when the corpus fits one window).
    pub calls: u32,
    /// Where the prompts' KV came from, over all calls (shown at the top
    /// level of the result).
    #[serde(skip)]
    pub kv: KvUse,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Timings {
    /// From the start of the ask to the first token of the final answer.
    pub ttft_ms: u64,
    /// Prompt processing, summed over all calls.
    pub prefill_ms: u64,
    /// Generation of the final answer.
    pub decode_ms: u64,
    pub decode_tokens_per_s: f64,
    pub total_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error(transparent)]
    Corpus(#[from] CorpusError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("the question is {bytes} bytes, over the {limit}-byte limit; ask a shorter question (put long material in the corpus instead)")]
    QuestionTooLong { bytes: usize, limit: usize },
    #[error("the corpus is empty: nothing was ingested (see the skip counts above)")]
    EmptyCorpus,
    #[error("the question and instructions alone take {needed} tokens of the engine's {context}; ask a shorter question or use a model with a longer context")]
    NoRoom { needed: u32, context: u32 },
    #[error("the corpus does not split into windows of this context; give the model more context (--context) or the answer fewer tokens (--max-tokens)")]
    Window(#[from] PieceTooLarge),
    #[error("could not fit the corpus into windows of this engine's context after several tries")]
    CannotFit,
    #[error("the corpus takes {windows} windows of this engine's context; a chat holds one, so ask over it (map and reduce) instead")]
    TooLargeForChat { windows: usize },
    #[error("no file in the corpus is one the {0} pipeline reads ({1}); check the path, or use another --pipeline")]
    NoPipelineFiles(String, String),
    #[error("{notes} notes of {tokens} tokens cannot be combined within this engine's context")]
    NotesTooLarge { notes: usize, tokens: u32 },
}

#[must_use]
pub fn messages(system: &str, body: &Content, task: &str) -> Vec<ChatMessage> {
    let mut content = Content::text(system);
    if !body.text.is_empty() || !body.images.is_empty() {
        content.push_str("\n\n");
        content.append(body);
    }
    vec![content.into_message(Role::System), ChatMessage::new(Role::User, task)]
}

/// The documents' blocks, with their images placed when the engine reads
/// images (see [`place_images`]).
pub fn document_blocks(
    docs: &[StoredDocument],
    salt: &str,
    corpus: &Corpus,
    engine: &dyn Engine,
) -> Result<Vec<DocumentBlock>, CorpusError> {
    let mut blocks: Vec<DocumentBlock> = docs.iter().map(|d| render_document(d, salt)).collect();
    if engine.capabilities().vision {
        place_images(&mut blocks, docs, &mut |d, page| corpus.page_image(d.id, page))?;
    }
    Ok(blocks)
}

/// Runs model calls and keeps the usage and timing books.
pub struct Caller<'e, 'f, 'g> {
    pub engine: &'e mut dyn Engine,
    pub params: &'f GenerateParams,
    pub on_event: &'g mut dyn FnMut(TaskEvent<'_>),
    pub usage: Usage,
    pub prefill_ms: u64,
}

impl Caller<'_, '_, '_> {
    pub fn call(
        &mut self,
        msgs: &[ChatMessage],
        step: Step,
        index: usize,
        of: usize,
        stream: bool,
    ) -> Result<Generation, TaskError> {
        let prompt_tokens = self.engine.count_chat_tokens(msgs)?;
        (self.on_event)(TaskEvent::Step {
            step,
            index,
            of,
            prompt_tokens,
        });
        let on_event = &mut *self.on_event;
        let g = self.engine.generate(msgs, self.params, &mut |e| match e {
            EngineEvent::Prefill { done, total } => on_event(TaskEvent::Prefill { done, total }),
            EngineEvent::Text(t) if stream => on_event(TaskEvent::Answer(t)),
            EngineEvent::Text(_) => {}
        })?;
        self.usage.prompt_tokens += u64::from(g.prompt_tokens);
        self.usage.completion_tokens += u64::from(g.completion_tokens);
        self.usage.total_tokens = self.usage.prompt_tokens + self.usage.completion_tokens;
        self.usage.calls += 1;
        self.usage.kv += g.kv;
        self.prefill_ms += g.prefill_ms;
        Ok(g)
    }
}

/// Packs the corpus into windows whose prompts, with `task`, fit the
/// engine's context with room for the answer. Counts are checked on the
/// exact rendered prompts; on overflow the budget shrinks and packing runs
/// again.
pub fn fit_windows(
    engine: &dyn Engine,
    blocks: &[DocumentBlock],
    counts: &[BlockTokens],
    system: &str,
    salt: &str,
    task: &str,
    answer_tokens: u32,
) -> Result<Vec<Window>, TaskError> {
    let context = engine.capabilities().context_length;
    let fixed = engine.count_chat_tokens(&messages(system, &Content::default(), task))?;
    let needed = fixed + answer_tokens + FIT_MARGIN;
    if needed >= context {
        return Err(TaskError::NoRoom { needed, context });
    }
    let mut budget = context - needed;
    for _ in 0..5 {
        let windows = plan_windows(blocks, counts, budget)?;
        let mut worst_over = 0;
        for w in &windows {
            let n = engine.count_chat_tokens(&messages(system, &w.render(blocks, salt), task))?;
            worst_over = worst_over.max((n + answer_tokens).saturating_sub(context));
        }
        if worst_over == 0 {
            return Ok(windows);
        }
        budget = budget.saturating_sub(worst_over + FIT_MARGIN);
    }
    Err(TaskError::CannotFit)
}
