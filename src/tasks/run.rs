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
use crate::engine::{Call, EachEvent, Engine, EngineError, EngineEvent, GenerateParams, Generation, KvUse};
use crate::prompt::{
    place_images, plan_windows, render_document, BlockTokens, ChatMessage, Content, DocumentBlock, PieceTooLarge, Role,
    Window,
};

/// Tokens kept spare when fitting a prompt, for the few tokens a template
/// adds at message joins that separate counting cannot see.
const FIT_MARGIN: u32 = 16;

/// Progress and output while a task runs.
#[derive(Debug, Clone, Copy, PartialEq)]
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
    /// A sweep of several calls begins (its `Step`s may then overlap, and
    /// `Prefill` counts the whole sweep's prompt tokens).
    Sweep {
        step: Step,
        of: usize,
        prompt_tokens: u64,
    },
    /// A call of a sweep ended; `done` of `of` have.
    Done {
        step: Step,
        index: usize,
        of: usize,
        done: usize,
    },
    /// What a sweep will do, said before it starts.
    Plan(&'a crate::tasks::sweep::SweepPlan),
    /// After a sweep: how much of its windows' KV the engine's disk tier
    /// keeps for the next question, and why a window's is not kept.
    KvKept(&'a crate::tasks::sweep::KvKept),
    /// An audit's structural rules ran over its files.
    Rules(&'a crate::tasks::audit::ScanStats),
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

impl Step {
    /// Whether this step's prompt prefix is the corpus (or a window of it),
    /// which later questions share and whose KV is worth keeping; notes
    /// combined for one question are not.
    #[must_use]
    pub fn prefix_is_corpus(self) -> bool {
        self != Step::Reduce
    }
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
    /// From the start of the ask to the first token of the answer streamed
    /// (the first answer's, when it is asked again over the matching lines).
    pub ttft_ms: u64,
    /// Prompt processing, summed over all calls.
    pub prefill_ms: u64,
    /// Generation of the final answer.
    pub decode_ms: u64,
    pub decode_tokens_per_s: f64,
    pub total_ms: u64,
}

impl Timings {
    /// The final answer's `g` timings, with `ttft_ms` and `prefill_ms` as
    /// given and `total_ms` from `started`.
    #[must_use]
    pub fn of_answer(g: &Generation, ttft_ms: u64, prefill_ms: u64, started: std::time::Instant) -> Self {
        Self {
            ttft_ms,
            prefill_ms,
            decode_ms: g.decode_ms,
            decode_tokens_per_s: if g.decode_ms > 0 {
                f64::from(g.completion_tokens) * 1000.0 / g.decode_ms as f64
            } else {
                0.0
            },
            total_ms: started.elapsed().as_millis() as u64,
        }
    }
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
    #[error("the corpus takes {windows} windows of this engine's context, over --max-windows {limit}; narrow it (--include GLOB, --exclude GLOB, a --pipeline) or raise the limit")]
    TooManyWindows { windows: usize, limit: usize },
    #[error("the extraction takes {units} model calls (one per document, or page with --per-page), over --max-windows {limit}; narrow it (--include GLOB, --exclude GLOB) or raise the limit")]
    TooManyUnits { units: usize, limit: usize },
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
        let params = GenerateParams {
            keep_prefix: self.params.keep_prefix && step.prefix_is_corpus(),
            ..self.params.clone()
        };
        let on_event = &mut *self.on_event;
        let g = self.engine.generate(msgs, &params, &mut |e| match e {
            EngineEvent::Prefill { done, total } => on_event(TaskEvent::Prefill { done, total }),
            EngineEvent::Text(t) if stream => on_event(TaskEvent::Answer(t)),
            EngineEvent::Text(_) => {}
        })?;
        self.book(&g);
        Ok(g)
    }

    fn book(&mut self, g: &Generation) {
        self.usage.add(&Usage::of(g));
        self.prefill_ms += g.prefill_ms;
    }

    /// Independent calls (a sweep's windows), as many at once as the
    /// engine has slots ([`Engine::generate_each`]); results in the order
    /// of `msgs`, each call's failure its own. With more than one call,
    /// `Prefill` events count the whole sweep's tokens.
    pub fn call_each(&mut self, msgs: &[Vec<ChatMessage>], step: Step) -> Vec<Result<Generation, TaskError>> {
        let params = self.params;
        let calls: Vec<Call<'_>> = msgs.iter().map(|m| Call { messages: m, params }).collect();
        self.call_each_with(&calls, step, 0, calls.len())
    }

    /// [`Caller::call_each`] with each call's own settings; the calls are
    /// numbered from `first` of `of_all` in their `Step` events (a task that
    /// sends its calls in groups).
    pub fn call_each_with(
        &mut self,
        calls: &[Call<'_>],
        step: Step,
        first: usize,
        of_all: usize,
    ) -> Vec<Result<Generation, TaskError>> {
        let of = calls.len();
        // The windows' KV is kept on disk as one group (see
        // `GenerateParams::kv_group`).
        let keeps = step.prefix_is_corpus();
        let group = (of > 1 && keeps).then(|| crate::tasks::sweep::kv_group(self.engine.model_id(), calls));
        let params: Vec<GenerateParams> = calls
            .iter()
            .map(|c| GenerateParams {
                kv_group: group.clone(),
                keep_prefix: c.params.keep_prefix && keeps,
                ..c.params.clone()
            })
            .collect();
        let calls: Vec<Call<'_>> = calls
            .iter()
            .zip(&params)
            .map(|(c, params)| Call {
                messages: c.messages,
                params,
            })
            .collect();
        let calls = calls.as_slice();
        let mut counts = Vec::with_capacity(of);
        for c in calls {
            match self.engine.count_chat_tokens(c.messages) {
                Ok(n) => counts.push(n),
                Err(e) => return calls.iter().map(|_| Err(TaskError::Engine(clone_error(&e)))).collect(),
            }
        }
        let total: u64 = counts.iter().map(|&n| u64::from(n)).sum();
        let on_event = &mut *self.on_event;
        if of > 1 {
            on_event(TaskEvent::Sweep {
                step,
                of,
                prompt_tokens: total,
            });
        }
        let mut read = vec![0u32; of];
        let mut done = 0usize;
        let results = self.engine.generate_each(calls, &mut |i, e| match e {
            EachEvent::Started => on_event(TaskEvent::Step {
                step,
                index: first + i,
                of: of_all,
                prompt_tokens: counts[i],
            }),
            EachEvent::Engine(EngineEvent::Prefill { done: d, total: t }) if of == 1 => {
                on_event(TaskEvent::Prefill { done: d, total: t });
            }
            EachEvent::Engine(EngineEvent::Prefill { done: d, .. }) => {
                read[i] = d.min(counts[i]);
                on_event(TaskEvent::Prefill {
                    done: read.iter().sum(),
                    total: u32::try_from(total).unwrap_or(u32::MAX),
                });
            }
            EachEvent::Engine(EngineEvent::Text(_)) => {}
            EachEvent::Finished(_) => {
                done += 1;
                if of > 1 {
                    read[i] = counts[i];
                    on_event(TaskEvent::Prefill {
                        done: read.iter().sum(),
                        total: u32::try_from(total).unwrap_or(u32::MAX),
                    });
                    on_event(TaskEvent::Done {
                        step,
                        index: i,
                        of,
                        done,
                    });
                }
            }
        });
        if of > 1 && keeps {
            let kv: Vec<Option<KvUse>> = results.iter().map(|r| r.as_ref().ok().map(|g| g.kv)).collect();
            if let Some(kept) = crate::tasks::sweep::KvKept::after(&*self.engine, calls, &kv) {
                (self.on_event)(TaskEvent::KvKept(&kept));
            }
        }
        results
            .into_iter()
            .map(|r| {
                let g = r?;
                self.book(&g);
                Ok(g)
            })
            .collect()
    }
}

/// An engine error for each of several calls that all failed for one
/// reason (the error type is not `Clone`).
fn clone_error(e: &EngineError) -> EngineError {
    EngineError::Inference(e.to_string())
}

impl Usage {
    /// One generation's usage.
    #[must_use]
    pub fn of(g: &Generation) -> Self {
        Self {
            prompt_tokens: u64::from(g.prompt_tokens),
            completion_tokens: u64::from(g.completion_tokens),
            total_tokens: u64::from(g.prompt_tokens) + u64::from(g.completion_tokens),
            calls: 1,
            kv: g.kv,
        }
    }

    /// Adds another's counts to these.
    pub fn add(&mut self, other: &Self) {
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.total_tokens = self.prompt_tokens + self.completion_tokens;
        self.calls += other.calls;
        self.kv += other.kv;
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
