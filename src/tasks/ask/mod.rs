//! Ask: a question over a whole corpus, answered with checked citations.
//!
//! If the corpus fits the engine's context, one prompt holds all of it. If
//! not, every window is asked for the facts it holds (map), and the notes
//! are combined into one answer (reduce), in rounds if the notes themselves
//! overflow a window. Every token of the corpus is read once.
//!
//! Never prints: progress goes out as events, the result as a value.

mod many;
mod recheck;
mod reduce;

use std::time::Instant;

use serde::Serialize;

use crate::corpus::{Corpus, StoredDocument};
use crate::engine::{Call, Engine, GenerateParams, KvUse};
use crate::limits::MAX_QUESTION_BYTES;
use crate::prompt::{count_units, order_documents, preamble, ChatMessage, Content, DocumentBlock, Window};
use crate::tasks::citations::{attribute, resolve_written, Citation, CitationStatus, CorpusIndex};
use crate::tasks::pipeline::Pipeline;
use crate::tasks::run::{document_blocks, fit_windows, messages, Caller, Step, TaskError, TaskEvent, Timings, Usage};
use crate::tasks::schema::ExtractSchema;
use crate::tasks::sweep::{Rates, SweepPlan};

const ASK_TEMPLATE: &str = include_str!("../../../prompts/ask.txt");
const MAP_TEMPLATE: &str = include_str!("../../../prompts/ask_map.txt");
const REDUCE_TEMPLATE: &str = include_str!("../../../prompts/ask_reduce.txt");
const RECHECK_TEMPLATE: &str = include_str!("../../../prompts/ask_recheck.txt");

pub use many::ask_many;
use recheck::{recheck_task, uncited_lines, window_holding};
use reduce::{notes_body, reduce_until_fits};

/// Said between a first answer and the answer asked again.
const RECHECK_NOTE: &str =
    "\n\n(scout: that answer cites none of the lines that match the question; asked again over them:)\n";

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
    /// A corpus of more windows is refused, with the plan, before any
    /// model call.
    pub max_windows: Option<usize>,
    /// The rates earlier sweeps measured, for the plan's time estimate.
    pub rates: Rates,
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
    /// When the first answer cited none of the lines that match the
    /// question and scout asked again over them: the first answer and
    /// those lines. `answer` is then the second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recheck: Option<Recheck>,
    /// The sweep's plan, when the corpus took more than one window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<SweepPlan>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recheck {
    pub first_answer: String,
    pub lines: Vec<String>,
}

impl AskResult {
    /// At least one citation, from either source, resolves.
    #[must_use]
    pub fn has_valid_citation(&self) -> bool {
        self.citations.iter().any(|c| c.status == CitationStatus::Valid)
    }
}

fn fill(template: &str, question: &str) -> String {
    template.replace("{question}", question.trim())
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

fn prepare(corpus: &mut Corpus, engine: &dyn Engine, opts: &AskOptions) -> Result<Prepared, TaskError> {
    let started = Instant::now();
    if opts.question.len() > MAX_QUESTION_BYTES {
        return Err(TaskError::QuestionTooLong {
            bytes: opts.question.len(),
            limit: MAX_QUESTION_BYTES,
        });
    }
    let mut docs = corpus.documents()?;
    if docs.is_empty() {
        return Err(TaskError::EmptyCorpus);
    }
    if let Some(p) = &opts.pipeline {
        docs.retain(|d| p.reads(&d.path));
        if docs.is_empty() {
            return Err(TaskError::NoPipelineFiles(p.name.clone(), p.reads_text()));
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

impl Prepared {
    /// Each window's map prompt.
    fn map_messages(&self) -> Vec<Vec<ChatMessage>> {
        self.windows
            .iter()
            .map(|w| messages(&self.system, &w.render(&self.blocks, &self.salt), &self.map_task))
            .collect()
    }
}

/// What asking `opts.question` would do, without calling the model: the
/// windows' map calls when the corpus takes several, else the one answer.
pub fn plan(corpus: &mut Corpus, engine: &dyn Engine, opts: &AskOptions) -> Result<SweepPlan, TaskError> {
    let p = prepare(corpus, engine, opts)?;
    if p.windows.len() < 2 {
        return sweep_plan(
            engine,
            Step::Answer,
            &[p.answer_messages()],
            p.answer_params(),
            &opts.rates,
        );
    }
    sweep_plan(engine, Step::Map, &p.map_messages(), &p.params, &opts.rates)
}

fn sweep_plan(
    engine: &dyn Engine,
    step: Step,
    msgs: &[Vec<ChatMessage>],
    params: &GenerateParams,
    rates: &Rates,
) -> Result<SweepPlan, TaskError> {
    let calls: Vec<Call<'_>> = msgs.iter().map(|m| Call { messages: m, params }).collect();
    Ok(SweepPlan::new(step, engine, &calls, rates)?)
}

/// Answers `opts.question` over `corpus` with `engine`. A sweep's rate is
/// recorded in `opts.rates`, for the next plan's estimate.
pub fn ask(
    corpus: &mut Corpus,
    engine: &mut dyn Engine,
    opts: &AskOptions,
    on_event: &mut dyn FnMut(TaskEvent<'_>),
) -> Result<AskResult, TaskError> {
    let result = answer(corpus, engine, opts, on_event)?;
    if let Some(plan) = &result.plan {
        opts.rates.clone().record(plan, plan.to_read(), result.timings.total_ms);
    }
    Ok(result)
}

fn answer(
    corpus: &mut Corpus,
    engine: &mut dyn Engine,
    opts: &AskOptions,
    on_event: &mut dyn FnMut(TaskEvent<'_>),
) -> Result<AskResult, TaskError> {
    let prepared = prepare(corpus, &*engine, opts)?;
    let map_msgs = if prepared.windows.len() > 1 {
        prepared.map_messages()
    } else {
        Vec::new()
    };
    let Prepared {
        started,
        docs,
        blocks,
        salt,
        system,
        ask_task,
        reduce_task,
        windows,
        mut reports,
        engine_name,
        model,
        params,
        json_params,
        ..
    } = prepared;
    let plan = if map_msgs.is_empty() {
        None
    } else {
        let plan = sweep_plan(&*engine, Step::Map, &map_msgs, &params, &opts.rates)?;
        on_event(TaskEvent::Plan(&plan));
        if let Some(limit) = opts.max_windows.filter(|&l| plan.windows > l) {
            return Err(TaskError::TooManyWindows {
                windows: plan.windows,
                limit,
            });
        }
        Some(plan)
    };
    let mut caller = Caller {
        engine,
        params: &params,
        on_event,
        usage: Usage::default(),
        prefill_ms: 0,
    };

    // The first answer: one window's, or the windows' notes combined (a
    // call), or known without one.
    let first = if windows.len() == 1 {
        First::Call(
            messages(&system, &windows[0].render(&blocks, &salt), &ask_task),
            Step::Answer,
        )
    } else {
        let mut notes: Vec<String> = Vec::new();
        let mapped = caller.call_each(&map_msgs, Step::Map);
        for (i, g) in mapped.into_iter().enumerate() {
            let text = g?.text.trim().to_owned();
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
            // No window's notes hold anything relevant.
            First::Known(NOT_FOUND.to_owned(), None)
        } else if let (true, [only]) = (opts.schema.is_none(), notes.as_slice()) {
            // One window holds the answer: its notes are the answer, and a
            // reduce call would only paraphrase them.
            First::Known(only.clone(), Some(started.elapsed().as_millis() as u64))
        } else {
            let notes = reduce_until_fits(&mut caller, &system, &salt, notes, &reduce_task)?;
            First::Call(
                messages(&system, &Content::text(notes_body(&notes, &salt)), &reduce_task),
                Step::Reduce,
            )
        }
    };
    let (mut answer, mut last, ttft_ms) = match first {
        First::Known(text, ttft_ms) => {
            (caller.on_event)(TaskEvent::Answer(&text));
            (text, None, ttft_ms.unwrap_or_default())
        }
        First::Call(msgs, step) => {
            let before_final = started.elapsed().as_millis() as u64;
            if let Some(p) = &json_params {
                caller.params = p;
            }
            let g = caller.call(&msgs, step, 0, 1, true)?;
            // The first answer's first token is the first the user sees,
            // even when the question is asked again below.
            let ttft_ms = before_final + g.ttft_ms;
            (g.text.clone(), Some(g), ttft_ms)
        }
    };
    // When the corpus's lines that match the question are not what the
    // answer cites, the question is asked again over them, in the window
    // that holds the first (its corpus part's KV is the first read's).
    let mut recheck = None;
    if opts.schema.is_none() {
        if let Some(lines) = uncited_lines(&docs, &opts.question, &answer) {
            let w = window_holding(&windows, &blocks, &lines[0].0).unwrap_or(0);
            let msgs = messages(
                &system,
                &windows[w].render(&blocks, &salt),
                &recheck_task(&lines, &opts.question),
            );
            (caller.on_event)(TaskEvent::Answer(RECHECK_NOTE));
            let g = caller.call(&msgs, Step::Recheck, 0, 1, true)?;
            recheck = Some(Recheck {
                first_answer: std::mem::replace(&mut answer, g.text.clone()),
                lines: lines.iter().map(|(a, _)| a.to_string()).collect(),
            });
            last = Some(g);
        }
    }
    let timings = match &last {
        Some(g) => Timings::of_answer(g, ttft_ms, caller.prefill_ms, started),
        None => Timings {
            ttft_ms,
            prefill_ms: caller.prefill_ms,
            total_ms: started.elapsed().as_millis() as u64,
            ..Timings::default()
        },
    };
    let usage = caller.usage;
    let mut result = finish(&docs, opts, answer, usage, reports, timings, engine_name, model);
    result.recheck = recheck;
    result.plan = plan;
    Ok(result)
}

/// How the first answer comes.
enum First {
    /// A model call, streamed.
    Call(Vec<ChatMessage>, Step),
    /// Known without a call (and when its first token counts as shown).
    Known(String, Option<u64>),
}

/// The citations an answer carries: those it writes, and scout's own
/// attribution when it says the corpus holds the answer.
fn answer_citations(answer: &str, question: &str, index: &CorpusIndex<'_>) -> Vec<Citation> {
    let trimmed = answer.trim();
    let found = !trimmed.is_empty() && !trimmed.to_ascii_uppercase().starts_with(NOT_FOUND);
    let mut citations = resolve_written(answer, index);
    if found {
        let extra = attribute(answer, question, index, &citations);
        citations.extend(extra);
    }
    citations
}

/// The system message holding a whole corpus, for a chat that names one:
/// the preamble and every document, laid out as `ask` lays them out (so
/// the two share a KV prefix). The corpus must fit one window with room
/// for `answer_tokens`.
pub fn corpus_message(corpus: &mut Corpus, engine: &dyn Engine, answer_tokens: u32) -> Result<ChatMessage, TaskError> {
    let mut docs = corpus.documents()?;
    if docs.is_empty() {
        return Err(TaskError::EmptyCorpus);
    }
    order_documents(&mut docs);
    let salt = corpus.salt().to_owned();
    let blocks = document_blocks(&docs, &salt, corpus, engine)?;
    let counts = count_units(&blocks, corpus, engine)?;
    let system = preamble(&salt);
    let windows = fit_windows(engine, &blocks, &counts, &system, &salt, "", answer_tokens)?;
    if windows.len() > 1 {
        return Err(TaskError::TooLargeForChat { windows: windows.len() });
    }
    let mut msgs = messages(&system, &windows[0].render(&blocks, &salt), "");
    Ok(msgs.remove(0))
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
    let citations = answer_citations(&answer, &opts.question, &index);
    let (data, schema_errors) = match &opts.schema {
        Some(schema) if found => match crate::tasks::schema::parse_object(&answer) {
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
        recheck: None,
        plan: None,
    }
}
