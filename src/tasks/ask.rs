//! Ask: a question over a whole corpus, answered with checked citations.
//!
//! If the corpus fits the engine's context, one prompt holds all of it. If
//! not, every window is asked for the facts it holds (map), and the notes
//! are combined into one answer (reduce), in rounds if the notes themselves
//! overflow a window. Every token of the corpus is read once.

use std::time::Instant;

use serde::Serialize;

use crate::corpus::{Corpus, CorpusError, StoredDocument};
use crate::engine::{Engine, EngineError, EngineEvent, GenerateParams, Generation, KvUse};
use crate::prompt::{
    count_units, data_block, order_documents, place_images, plan_windows, preamble, render_document, BlockTokens,
    ChatMessage, Content, DocumentBlock, PieceTooLarge, Role, Window,
};
use crate::tasks::citations::{attribute, resolve_written, Citation, CitationStatus, CorpusIndex};
use crate::tasks::extract::ExtractSchema;
use crate::tasks::pipeline::Pipeline;

const ASK_TEMPLATE: &str = include_str!("../../prompts/ask.txt");
const MAP_TEMPLATE: &str = include_str!("../../prompts/ask_map.txt");
const REDUCE_TEMPLATE: &str = include_str!("../../prompts/ask_reduce.txt");

/// What a window's map step says when it holds nothing relevant.
const NOTHING: &str = "NOTHING";
/// What an answer says when the corpus does not hold it.
const NOT_FOUND: &str = "NOT FOUND";

/// Where an answer turns into an echo of the corpus's own format (a
/// boundary line, or a line starting with a line marker), it has ended:
/// small models drift into copying the prompt after answering.
fn echo_stops() -> Vec<String> {
    let mut stops = vec!["<<<".to_owned()];
    stops.extend((1..=9).map(|d| format!("\n[L{d}")));
    stops
}

/// Tokens kept spare when fitting a prompt, for the few tokens a template
/// adds at message joins that separate counting cannot see.
const FIT_MARGIN: u32 = 16;

#[derive(Debug, Clone, Default)]
pub struct AskOptions {
    pub question: String,
    pub generate: GenerateParams,
    /// Only the files this pipeline reads, with its rules given to the
    /// model as the checklist to answer by.
    pub pipeline: Option<Pipeline>,
    /// The answer is JSON for this schema (constrained where the engine
    /// can; validated after in all cases).
    pub schema: Option<ExtractSchema>,
}

/// Progress and output while asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AskEvent<'a> {
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WindowReport {
    pub documents: Vec<String>,
    pub tokens: u32,
    /// The window's map notes (absent when the corpus is one window).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    /// Whether scout found the notes' distinctive content in this window's
    /// own documents. Notes that are not grounded are kept here but do not
    /// go on to the reduce step: small models invent facts for windows that
    /// do not hold the answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grounded: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AskResult {
    pub question: String,
    pub answer: String,
    /// False when the model said the corpus does not hold the answer.
    pub found: bool,
    pub citations: Vec<Citation>,
    pub usage: Usage,
    pub windows: Vec<WindowReport>,
    pub timings: Timings,
    /// Prompt tokens whose KV was reused, restored from disk or prefilled,
    /// over all calls, and the bytes saved for later questions.
    pub kv: KvUse,
    pub engine: String,
    pub model: String,
    /// With a schema: the answer parsed as JSON (absent when it is not).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
    /// With a schema: why the answer does not validate (empty when it does).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema_errors: Option<Vec<String>>,
}

impl AskResult {
    /// At least one citation, from either source, resolves.
    #[must_use]
    pub fn has_valid_citation(&self) -> bool {
        self.citations.iter().any(|c| c.status == CitationStatus::Valid)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AskError {
    #[error(transparent)]
    Corpus(#[from] CorpusError),
    #[error(transparent)]
    Engine(#[from] EngineError),
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

fn fill(template: &str, question: &str) -> String {
    template.replace("{question}", question.trim())
}

pub(crate) fn messages(system: &str, body: &Content, task: &str) -> Vec<ChatMessage> {
    let mut content = Content::text(system);
    if !body.text.is_empty() || !body.images.is_empty() {
        content.push_str("\n\n");
        content.append(body);
    }
    vec![content.into_message(Role::System), ChatMessage::new(Role::User, task)]
}

/// The documents' blocks, with their images placed when the engine reads
/// images (see [`place_images`]).
pub(crate) fn document_blocks(
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
pub(crate) struct Caller<'e, 'f, 'g> {
    pub(crate) engine: &'e mut dyn Engine,
    pub(crate) params: &'f GenerateParams,
    pub(crate) on_event: &'g mut dyn FnMut(AskEvent<'_>),
    pub(crate) usage: Usage,
    pub(crate) prefill_ms: u64,
}

impl Caller<'_, '_, '_> {
    pub(crate) fn call(
        &mut self,
        msgs: &[ChatMessage],
        step: Step,
        index: usize,
        of: usize,
        stream: bool,
    ) -> Result<Generation, AskError> {
        let prompt_tokens = self.engine.count_chat_tokens(msgs)?;
        (self.on_event)(AskEvent::Step {
            step,
            index,
            of,
            prompt_tokens,
        });
        let on_event = &mut *self.on_event;
        let g = self.engine.generate(msgs, self.params, &mut |e| match e {
            EngineEvent::Prefill { done, total } => on_event(AskEvent::Prefill { done, total }),
            EngineEvent::Text(t) if stream => on_event(AskEvent::Answer(t)),
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

/// What `ask` settles before calling the model: the documents, their
/// blocks and windows, the task texts and the generation settings.
struct Prepared {
    started: Instant,
    docs: Vec<StoredDocument>,
    blocks: Vec<DocumentBlock>,
    salt: String,
    system: String,
    ask_task: String,
    map_task: String,
    reduce_task: String,
    windows: Vec<Window>,
    reports: Vec<WindowReport>,
    engine_name: String,
    model: String,
    /// With the echo stops.
    params: GenerateParams,
    /// The final answer's, under a schema.
    json_params: Option<GenerateParams>,
}

impl Prepared {
    /// The settings of the final answer when the corpus is one window.
    fn answer_params(&self) -> &GenerateParams {
        self.json_params.as_ref().unwrap_or(&self.params)
    }

    /// The one window's prompt.
    fn answer_messages(&self) -> Vec<ChatMessage> {
        messages(
            &self.system,
            &self.windows[0].render(&self.blocks, &self.salt),
            &self.ask_task,
        )
    }
}

fn prepare(corpus: &mut Corpus, engine: &dyn Engine, opts: &AskOptions) -> Result<Prepared, AskError> {
    let started = Instant::now();
    let mut docs = corpus.documents()?;
    if docs.is_empty() {
        return Err(AskError::EmptyCorpus);
    }
    if let Some(p) = &opts.pipeline {
        docs.retain(|d| p.reads(&d.path));
        if docs.is_empty() {
            return Err(AskError::NoPipelineFiles(p.name.clone(), p.reads_text()));
        }
    }
    order_documents(&mut docs);
    let salt = corpus.salt().to_owned();
    let blocks = document_blocks(&docs, &salt, corpus, engine)?;
    let counts = count_units(&blocks, corpus, engine)?;
    let system = preamble(&salt);
    let mut question = opts.question.trim().to_owned();
    if let Some(p) = &opts.pipeline {
        question = format!(
            "{question}\n\nAnswer by these rules ({}):\n{}",
            p.name,
            p.rules_text().trim_end()
        );
    }
    let json_tail = opts.schema.as_ref().map_or_else(String::new, |s| {
        format!(
            "\n\nAnswer with JSON only, with these fields:\n{}",
            s.fields_text().trim_end()
        )
    });
    let ask_task = fill(ASK_TEMPLATE, &question) + &json_tail;
    let map_task = fill(MAP_TEMPLATE, &question);
    let reduce_task = fill(REDUCE_TEMPLATE, &question) + &json_tail;
    // Whether one window or several is only known after fitting, so fit
    // with the longer of the two task texts.
    let longest = if map_task.len() >= ask_task.len() {
        &map_task
    } else {
        &ask_task
    };
    let windows = fit_windows(
        engine,
        &blocks,
        &counts,
        &system,
        &salt,
        longest,
        opts.generate.max_tokens,
    )?;
    let reports: Vec<WindowReport> = windows
        .iter()
        .map(|w| WindowReport {
            documents: w.paths(&blocks).into_iter().map(str::to_owned).collect(),
            tokens: w.tokens,
            notes: None,
            grounded: None,
        })
        .collect();
    let engine_name = engine.backend().to_owned();
    let model = engine.model_id().to_owned();
    let mut params = opts.generate.clone();
    params.stop.extend(echo_stops());
    // The final answer under a schema: constrained, and no echo stops
    // (they could cut the JSON).
    let json_params = opts.schema.as_ref().map(|s| GenerateParams {
        json_schema: Some(s.for_generation()),
        ..opts.generate.clone()
    });
    Ok(Prepared {
        started,
        docs,
        blocks,
        salt,
        system,
        ask_task,
        map_task,
        reduce_task,
        windows,
        reports,
        engine_name,
        model,
        params,
        json_params,
    })
}

/// Answers `opts.question` over `corpus` with `engine`.
pub fn ask(
    corpus: &mut Corpus,
    engine: &mut dyn Engine,
    opts: &AskOptions,
    on_event: &mut dyn FnMut(AskEvent<'_>),
) -> Result<AskResult, AskError> {
    let Prepared {
        started,
        docs,
        blocks,
        salt,
        system,
        ask_task,
        map_task,
        reduce_task,
        windows,
        mut reports,
        engine_name,
        model,
        params,
        json_params,
    } = prepare(corpus, &*engine, opts)?;
    let mut caller = Caller {
        engine,
        params: &params,
        on_event,
        usage: Usage::default(),
        prefill_ms: 0,
    };

    let (final_messages, step) = if windows.len() == 1 {
        (
            messages(&system, &windows[0].render(&blocks, &salt), &ask_task),
            Step::Answer,
        )
    } else {
        let mut notes: Vec<String> = Vec::new();
        for (i, w) in windows.iter().enumerate() {
            let msgs = messages(&system, &w.render(&blocks, &salt), &map_task);
            let text = caller
                .call(&msgs, Step::Map, i, windows.len(), false)?
                .text
                .trim()
                .to_owned();
            if !is_nothing(&text) {
                let in_window: Vec<StoredDocument> = docs
                    .iter()
                    .filter(|d| reports[i].documents.contains(&d.path))
                    .cloned()
                    .collect();
                let grounded = !attribute(&text, &opts.question, &CorpusIndex::new(&in_window), &[]).is_empty();
                reports[i].grounded = Some(grounded);
                if grounded {
                    notes.push(text.clone());
                }
            }
            reports[i].notes = Some(text);
        }
        if notes.is_empty() {
            // No window held anything relevant: the answer is known
            // without another call.
            (caller.on_event)(AskEvent::Answer(NOT_FOUND));
            let timings = Timings {
                prefill_ms: caller.prefill_ms,
                total_ms: started.elapsed().as_millis() as u64,
                ..Timings::default()
            };
            let usage = caller.usage;
            return Ok(finish(
                &docs,
                opts,
                NOT_FOUND.to_owned(),
                usage,
                reports,
                timings,
                engine_name,
                model,
            ));
        }
        if let (true, [only]) = (opts.schema.is_none(), notes.as_slice()) {
            // One window holds the answer: its notes are the answer, and a
            // reduce call would only paraphrase them.
            (caller.on_event)(AskEvent::Answer(only));
            let timings = Timings {
                ttft_ms: started.elapsed().as_millis() as u64,
                prefill_ms: caller.prefill_ms,
                total_ms: started.elapsed().as_millis() as u64,
                ..Timings::default()
            };
            let answer = only.clone();
            let usage = caller.usage;
            return Ok(finish(&docs, opts, answer, usage, reports, timings, engine_name, model));
        }
        let notes = reduce_until_fits(&mut caller, &system, &salt, notes, &reduce_task)?;
        (
            messages(&system, &Content::text(notes_body(&notes, &salt)), &reduce_task),
            Step::Reduce,
        )
    };
    let before_final = started.elapsed().as_millis() as u64;
    if let Some(p) = &json_params {
        caller.params = p;
    }
    let g = caller.call(&final_messages, step, 0, 1, true)?;
    let timings = Timings {
        ttft_ms: before_final + g.ttft_ms,
        prefill_ms: caller.prefill_ms,
        decode_ms: g.decode_ms,
        decode_tokens_per_s: if g.decode_ms > 0 {
            f64::from(g.completion_tokens) * 1000.0 / g.decode_ms as f64
        } else {
            0.0
        },
        total_ms: started.elapsed().as_millis() as u64,
    };
    let usage = caller.usage;
    Ok(finish(&docs, opts, g.text, usage, reports, timings, engine_name, model))
}

/// Whether two answers can be generated together: the same sampling,
/// limits, stops and schema.
fn same_generation(a: &GenerateParams, b: &GenerateParams) -> bool {
    a.max_tokens == b.max_tokens
        && a.temperature.to_bits() == b.temperature.to_bits()
        && a.seed == b.seed
        && a.repeat_penalty.to_bits() == b.repeat_penalty.to_bits()
        && a.stop == b.stop
        && a.json_schema == b.json_schema
}

/// Answers several questions over one corpus. Those whose corpus fits one
/// window and that are answered with the same settings go to the engine
/// together ([`Engine::generate_forked`]): the corpus is read (or
/// restored) once and every question forks its KV. The others are asked
/// one by one. Results come in the order of `opts`.
pub fn ask_many(
    corpus: &mut Corpus,
    engine: &mut dyn Engine,
    opts: &[AskOptions],
    on_event: &mut dyn FnMut(AskEvent<'_>),
) -> Vec<Result<AskResult, AskError>> {
    let mut results: Vec<Option<Result<AskResult, AskError>>> = opts.iter().map(|_| None).collect();
    let mut together: Vec<(usize, Prepared)> = Vec::new();
    for (i, o) in opts.iter().enumerate() {
        match prepare(corpus, &*engine, o) {
            Ok(p) if p.windows.len() == 1 => together.push((i, p)),
            Ok(_) => results[i] = Some(ask(corpus, engine, o, on_event)),
            Err(e) => results[i] = Some(Err(e)),
        }
    }
    while !together.is_empty() {
        let params = together[0].1.answer_params().clone();
        let (group, rest): (Vec<_>, Vec<_>) = together
            .into_iter()
            .partition(|(_, p)| same_generation(p.answer_params(), &params));
        together = rest;
        let conversations: Vec<Vec<ChatMessage>> = group.iter().map(|(_, p)| p.answer_messages()).collect();
        let of = group.len();
        let mut first_event = true;
        let forked = engine.generate_forked(&conversations, &params, &mut |_, e| {
            if let EngineEvent::Prefill { done, total } = e {
                if std::mem::take(&mut first_event) {
                    on_event(AskEvent::Step {
                        step: Step::Answer,
                        index: 0,
                        of,
                        prompt_tokens: total,
                    });
                }
                on_event(AskEvent::Prefill { done, total });
            }
        });
        match forked {
            Ok(generations) => {
                for ((i, p), g) in group.into_iter().zip(generations) {
                    let usage = Usage {
                        prompt_tokens: u64::from(g.prompt_tokens),
                        completion_tokens: u64::from(g.completion_tokens),
                        total_tokens: u64::from(g.prompt_tokens) + u64::from(g.completion_tokens),
                        calls: 1,
                        kv: g.kv,
                    };
                    let timings = Timings {
                        ttft_ms: g.ttft_ms,
                        prefill_ms: g.prefill_ms,
                        decode_ms: g.decode_ms,
                        decode_tokens_per_s: if g.decode_ms > 0 {
                            f64::from(g.completion_tokens) * 1000.0 / g.decode_ms as f64
                        } else {
                            0.0
                        },
                        total_ms: p.started.elapsed().as_millis() as u64,
                    };
                    results[i] = Some(Ok(finish(
                        &p.docs,
                        &opts[i],
                        g.text,
                        usage,
                        p.reports,
                        timings,
                        p.engine_name,
                        p.model,
                    )));
                }
            }
            // Asked one by one, each failure is its own.
            Err(_) => {
                for (i, _) in group {
                    results[i] = Some(ask(corpus, engine, &opts[i], on_event));
                }
            }
        }
    }
    results
        .into_iter()
        .map(|r| r.expect("every question is answered or failed"))
        .collect()
}

/// The system message holding a whole corpus, for a chat that names one:
/// the preamble and every document, laid out as `ask` lays them out (so
/// the two share a KV prefix). The corpus must fit one window with room
/// for `answer_tokens`.
pub fn corpus_message(corpus: &mut Corpus, engine: &dyn Engine, answer_tokens: u32) -> Result<ChatMessage, AskError> {
    let mut docs = corpus.documents()?;
    if docs.is_empty() {
        return Err(AskError::EmptyCorpus);
    }
    order_documents(&mut docs);
    let salt = corpus.salt().to_owned();
    let blocks = document_blocks(&docs, &salt, corpus, engine)?;
    let counts = count_units(&blocks, corpus, engine)?;
    let system = preamble(&salt);
    let windows = fit_windows(engine, &blocks, &counts, &system, &salt, "", answer_tokens)?;
    if windows.len() > 1 {
        return Err(AskError::TooLargeForChat { windows: windows.len() });
    }
    let mut msgs = messages(&system, &windows[0].render(&blocks, &salt), "");
    Ok(msgs.remove(0))
}

/// Map notes laid out as data blocks, like documents (they quote the
/// corpus, so they get the same boundary protection).
fn notes_body(notes: &[String], salt: &str) -> String {
    // One data block holding a numbered list: the notes quote the corpus,
    // so they stay inside a salted boundary, but as one block; given one
    // block per note, the default model echoed the block format instead of
    // answering.
    let list: String = notes
        .iter()
        .enumerate()
        .map(|(i, note)| format!("{}. {}\n", i + 1, note.trim()))
        .collect();
    data_block("notes from every part of the corpus", &list, salt)
}

/// While all notes together do not fit one prompt, combine them in groups
/// that do (each group's answer becomes a note of the next round).
fn reduce_until_fits(
    caller: &mut Caller<'_, '_, '_>,
    system: &str,
    salt: &str,
    mut notes: Vec<String>,
    task: &str,
) -> Result<Vec<String>, AskError> {
    let context = caller.engine.capabilities().context_length;
    let answer = caller.params.max_tokens;
    let fits = |engine: &dyn Engine, group: &[String]| -> Result<bool, AskError> {
        Ok(
            engine.count_chat_tokens(&messages(system, &Content::text(notes_body(group, salt)), task))? + answer
                <= context,
        )
    };
    while !fits(&*caller.engine, &notes)? {
        let mut groups: Vec<Vec<String>> = Vec::new();
        let mut current: Vec<String> = Vec::new();
        for note in notes.drain(..) {
            current.push(note);
            if current.len() > 1 && !fits(&*caller.engine, &current)? {
                let last = current.pop().expect("pushed above");
                groups.push(std::mem::take(&mut current));
                current.push(last);
            }
        }
        groups.push(current);
        if groups.iter().any(|g| g.len() == 1) && groups.len() == 1 {
            let tokens = caller.engine.count_chat_tokens(&messages(
                system,
                &Content::text(notes_body(&groups[0], salt)),
                task,
            ))?;
            return Err(AskError::NotesTooLarge { notes: 1, tokens });
        }
        let rounds = groups.len();
        for (i, group) in groups.iter().enumerate() {
            let msgs = messages(system, &Content::text(notes_body(group, salt)), task);
            let text = caller
                .call(&msgs, Step::Reduce, i, rounds, false)?
                .text
                .trim()
                .to_owned();
            if !is_nothing(&text) {
                notes.push(text);
            }
        }
        if notes.is_empty() {
            notes.push(NOT_FOUND.to_owned());
        }
    }
    Ok(notes)
}

/// Whether a map step said its window holds nothing relevant.
fn is_nothing(text: &str) -> bool {
    let t = text
        .trim()
        .trim_matches(|c: char| !c.is_alphanumeric())
        .to_ascii_uppercase();
    t.is_empty() || t == NOTHING || t.starts_with(NOT_FOUND)
}

#[allow(clippy::too_many_arguments)]
fn finish(
    docs: &[StoredDocument],
    opts: &AskOptions,
    answer: String,
    usage: Usage,
    windows: Vec<WindowReport>,
    timings: Timings,
    engine: String,
    model: String,
) -> AskResult {
    let index = CorpusIndex::new(docs);
    let trimmed = answer.trim();
    let found = !trimmed.is_empty() && !trimmed.to_ascii_uppercase().starts_with(NOT_FOUND);
    let mut citations = resolve_written(&answer, &index);
    if found {
        let extra = attribute(&answer, &opts.question, &index, &citations);
        citations.extend(extra);
    }
    let (data, schema_errors) = match &opts.schema {
        Some(schema) if found => match crate::tasks::extract::parse_object(&answer) {
            Some(data) => {
                let errors = schema.errors(&data);
                (Some(data), Some(errors))
            }
            None => (None, Some(vec!["the answer is not a JSON object".to_owned()])),
        },
        Some(_) => (None, Some(vec!["the corpus does not hold the answer".to_owned()])),
        None => (None, None),
    };
    AskResult {
        question: opts.question.clone(),
        data,
        schema_errors,
        answer,
        found,
        citations,
        kv: usage.kv,
        usage,
        windows,
        timings,
        engine,
        model,
    }
}

/// Packs the corpus into windows whose prompts, with `task`, fit the
/// engine's context with room for the answer. Counts are checked on the
/// exact rendered prompts; on overflow the budget shrinks and packing runs
/// again.
pub(crate) fn fit_windows(
    engine: &dyn Engine,
    blocks: &[DocumentBlock],
    counts: &[BlockTokens],
    system: &str,
    salt: &str,
    task: &str,
    answer_tokens: u32,
) -> Result<Vec<Window>, AskError> {
    let context = engine.capabilities().context_length;
    let fixed = engine.count_chat_tokens(&messages(system, &Content::default(), task))?;
    let needed = fixed + answer_tokens + FIT_MARGIN;
    if needed >= context {
        return Err(AskError::NoRoom { needed, context });
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
    Err(AskError::CannotFit)
}
