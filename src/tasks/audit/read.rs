//! The model's pass of an audit: the files window by window, each
//! window's answer held to a schema naming its own files, rules and
//! candidates, with the candidates listed after the files.

use std::time::Instant;

use serde_json::{json, Value};

use super::triage::{self, WindowCandidates};
use super::{
    check, AuditError, AuditOptions, AuditWindow, Candidate, RawFinding, Verdict, AUDIT_TEMPLATE, MAX_PATH_ENUM,
};
use crate::corpus::{Corpus, StoredDocument};
use crate::engine::{Call, Engine, GenerateParams};
use crate::prompt::{count_units, preamble, render_document, ChatMessage, DocumentBlock, Window};
use crate::tasks::citations::CorpusIndex;
use crate::tasks::pipeline::Pipeline;
use crate::tasks::run::{fit_windows, messages, Caller, Step, TaskError, TaskEvent, Usage};
use crate::tasks::sweep::SweepPlan;

/// The task text for a pipeline.
fn task_text(p: &Pipeline, max_findings: u32) -> String {
    AUDIT_TEMPLATE
        .replace("{instructions}", &p.instructions)
        .replace("{rules}", &p.rules_text())
        .replace("{severities}", &p.severities.join(", "))
        .replace("{max_findings}", &max_findings.to_string())
}

/// The JSON schema the model's answer for one window is constrained to.
#[must_use]
pub fn window_schema(p: &Pipeline, paths: &[&str], max_findings: u32, candidates: &[String]) -> Value {
    let path = if paths.len() <= MAX_PATH_ENUM {
        json!({"type": "string", "enum": paths})
    } else {
        json!({"type": "string"})
    };
    let mut properties = serde_json::Map::new();
    let mut required = Vec::new();
    // Candidates are judged first, before the model's own findings.
    if !candidates.is_empty() {
        properties.insert("verdicts".to_owned(), triage::verdicts_schema(candidates, &path));
        required.push("verdicts");
    }
    required.push("findings");
    properties.insert("findings".to_owned(), findings_schema(p, &path, max_findings));
    json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false
    })
}

fn findings_schema(p: &Pipeline, path: &Value, max_findings: u32) -> Value {
    json!({
                "type": "array",
                "maxItems": max_findings,
                "items": {
                    "type": "object",
                    "properties": {
                        "rule": {"type": "string", "enum": p.rules.iter().map(|r| r.id.as_str()).collect::<Vec<_>>()},
                        "path": path,
                        "line_start": {"type": "integer", "minimum": 1},
                        "line_end": {"type": "integer", "minimum": 1},
                        "evidence": {"type": "string", "maxLength": 200},
                        "severity": {"type": "string", "enum": p.severities},
                        "title": {"type": "string", "maxLength": 100},
                        "explanation": {"type": "string", "maxLength": 300},
                        "fix": {"type": "string", "maxLength": 200}
                    },
                    "required": ["rule", "path", "line_start", "line_end", "evidence", "severity", "title", "explanation", "fix"],
                    "additionalProperties": false
                }
    })
}

/// What the model's pass gave.
#[derive(Default)]
pub(super) struct ModelRead {
    pub raw: Vec<(usize, RawFinding)>,
    /// Verdicts on candidates, by index into the candidate list.
    pub verdicts: Vec<(usize, Verdict)>,
    pub windows: Vec<AuditWindow>,
    pub usage: Usage,
    pub prefill_ms: u64,
    pub engine: String,
    pub model: String,
    /// Windows not read: no changed file in them (`--diff`).
    pub windows_skipped: usize,
}

/// An audit's model calls, made before any is sent: the windows, the
/// candidates each judges, and each window's messages and settings.
struct Prepared {
    blocks: Vec<DocumentBlock>,
    windows: Vec<Window>,
    judged: Vec<WindowCandidates>,
    msgs: Vec<Vec<ChatMessage>>,
    params: Vec<GenerateParams>,
    /// Windows not read: no changed file in them (`--diff`).
    windows_skipped: usize,
}

impl Prepared {
    fn calls(&self) -> Vec<Call<'_>> {
        self.msgs
            .iter()
            .zip(&self.params)
            .map(|(m, p)| Call { messages: m, params: p })
            .collect()
    }
}

fn prepare(
    corpus: &mut Corpus,
    engine: &dyn Engine,
    opts: &AuditOptions,
    docs: &[StoredDocument],
    candidates: &[Candidate],
) -> Result<Prepared, AuditError> {
    let pipeline = &opts.pipeline;
    let salt = corpus.salt().to_owned();
    let blocks: Vec<DocumentBlock> = docs.iter().map(|d| render_document(d, &salt)).collect();
    let counts = count_units(&blocks, corpus, engine)?;
    let system = preamble(&salt);
    let task = task_text(pipeline, opts.max_findings);
    // Room for the candidates' list and verdicts, as many as a window may
    // judge: the same whatever the rules found, so that windows (and their
    // KV) are cut the same way from one audit to the next.
    let most_judged = if opts.rules.is_empty() { 0 } else { opts.max_candidates };
    let mut windows = fit_windows(
        engine,
        &blocks,
        &counts,
        &system,
        &salt,
        &task,
        opts.generate.max_tokens + triage::reserve(most_judged),
    )?;
    let mut windows_skipped = 0;
    if let Some(d) = &opts.diff {
        let before = windows.len();
        windows.retain(|w| w.paths(&blocks).iter().any(|p| d.file_changed(p)));
        windows_skipped = before - windows.len();
    }
    let context = engine.capabilities().context_length;
    let mut judged = Vec::with_capacity(windows.len());
    let mut params = Vec::with_capacity(windows.len());
    let mut msgs = Vec::with_capacity(windows.len());
    for w in &windows {
        let paths = w.paths(&blocks);
        let mut j = WindowCandidates::of(candidates, &paths, opts.max_candidates as usize);
        let body = w.render(&blocks, &salt);
        // The list was given room by an estimate: where its lines (long
        // paths, long code) come out longer, the window judges fewer
        // candidates rather than fail (the rest stay candidates).
        let (m, max_tokens) = loop {
            let m = messages(&system, &body, &(task.clone() + &j.text(candidates)));
            let max_tokens = opts.generate.max_tokens + triage::answer_room(j.judged.len());
            if j.judged.is_empty() || engine.count_chat_tokens(&m)? + max_tokens <= context {
                break (m, max_tokens);
            }
            j.judged.pop();
        };
        // Each window's answer is held to a schema naming its own files
        // and candidates.
        params.push(GenerateParams {
            json_schema: Some(window_schema(pipeline, &paths, opts.max_findings, &j.ids())),
            max_tokens,
            ..opts.generate.clone()
        });
        msgs.push(m);
        judged.push(j);
    }
    Ok(Prepared {
        blocks,
        windows,
        judged,
        msgs,
        params,
        windows_skipped,
    })
}

/// What the model's pass would do, without calling the model.
pub(super) fn plan_read(
    corpus: &mut Corpus,
    engine: &dyn Engine,
    opts: &AuditOptions,
    docs: &[StoredDocument],
    candidates: &[Candidate],
) -> Result<SweepPlan, AuditError> {
    let p = prepare(corpus, engine, opts, docs, candidates)?;
    Ok(SweepPlan::new(Step::Audit, engine, &p.calls(), &opts.rates)?)
}

/// The model reads the files window by window, with each window's
/// candidates to judge listed after its files; the windows go to the
/// engine together, as many at once as it takes.
pub(super) fn read_with_model(
    corpus: &mut Corpus,
    engine: &mut dyn Engine,
    opts: &AuditOptions,
    docs: &[StoredDocument],
    candidates: &[Candidate],
    index: &CorpusIndex<'_>,
    on_event: &mut dyn FnMut(TaskEvent<'_>),
) -> Result<ModelRead, AuditError> {
    let prepared = prepare(corpus, &*engine, opts, docs, candidates)?;
    let Prepared {
        blocks,
        windows,
        judged,
        windows_skipped,
        ..
    } = &prepared;
    let constrained = engine.capabilities().json_schema;
    let mut read = ModelRead {
        engine: engine.backend().to_owned(),
        model: engine.model_id().to_owned(),
        windows_skipped: *windows_skipped,
        ..ModelRead::default()
    };
    let calls = prepared.calls();
    let plan = if calls.len() > 1 {
        let plan = SweepPlan::new(Step::Audit, &*engine, &calls, &opts.rates)?;
        on_event(TaskEvent::Plan(&plan));
        if let Some(limit) = opts.max_windows.filter(|&l| plan.windows > l) {
            return Err(TaskError::TooManyWindows {
                windows: plan.windows,
                limit,
            }
            .into());
        }
        Some(plan)
    } else {
        None
    };
    let started = Instant::now();
    let mut caller = Caller {
        engine: &mut *engine,
        params: &opts.generate,
        on_event: &mut *on_event,
        usage: Usage::default(),
        prefill_ms: 0,
    };
    let outcomes = caller.call_each_with(&calls, Step::Audit, 0, calls.len());
    (read.usage, read.prefill_ms) = (caller.usage, caller.prefill_ms);
    // The rate the next plan's estimate is made from, when every window
    // was read (a failed call reads nothing and would flatter it).
    if let Some(plan) = plan.as_ref().filter(|_| outcomes.iter().all(Result::is_ok)) {
        let mut rates = opts.rates.clone();
        rates.record(plan, plan.to_read(), started.elapsed().as_millis() as u64);
    }
    for (i, ((w, outcome), j)) in windows.iter().zip(outcomes).zip(judged).enumerate() {
        let paths = w.paths(blocks);
        let mut report = AuditWindow {
            documents: paths.iter().map(|p| (*p).to_owned()).collect(),
            tokens: w.tokens,
            findings: 0,
            candidates: j.all,
            judged: j.judged.len(),
            truncated: false,
            error: None,
        };
        match outcome {
            Ok(g) => match check::parse_findings(&g.text) {
                Some((found, truncated)) => {
                    report.findings = found.findings.len();
                    report.truncated = truncated;
                    read.verdicts.extend(j.verdicts(&found.verdicts, i, index));
                    read.raw.extend(found.findings.into_iter().map(|f| (i, f)));
                }
                None => {
                    report.error = Some(format!(
                        "the model's answer is not the findings JSON{}: {}",
                        if constrained {
                            ""
                        } else {
                            " (this engine cannot constrain it)"
                        },
                        check::excerpt(&g.text)
                    ));
                }
            },
            Err(e) => report.error = Some(e.to_string()),
        }
        read.windows.push(report);
    }
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_schema_names_only_real_rules_and_paths() {
        let p = Pipeline::load("security", &crate::tasks::access::Access::Anywhere).unwrap();
        let s = window_schema(&p, &["a.py", "b.rs"], 5, &[]);
        let item = &s["properties"]["findings"]["items"]["properties"];
        assert_eq!(item["path"]["enum"], json!(["a.py", "b.rs"]));
        assert_eq!(item["rule"]["enum"].as_array().unwrap().len(), p.rules.len());
        assert_eq!(s["properties"]["findings"]["maxItems"], 5);
        // Properties keep the order a model should write them in.
        let keys: Vec<&String> = item.as_object().unwrap().keys().collect();
        assert_eq!(keys[..4], ["rule", "path", "line_start", "line_end"]);
        let many: Vec<String> = (0..=MAX_PATH_ENUM).map(|i| format!("f{i}.py")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let s = window_schema(&p, &many, 5, &[]);
        assert!(s["properties"]["findings"]["items"]["properties"]["path"]["enum"].is_null());
        // Candidates to judge: one verdict each, before the findings.
        let ids = vec!["C1".to_owned(), "C2".to_owned()];
        let s = window_schema(&p, &["a.py"], 5, &ids);
        let keys: Vec<&String> = s["properties"].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["verdicts", "findings"]);
        assert_eq!(s["required"], json!(["verdicts", "findings"]));
        let v = &s["properties"]["verdicts"];
        assert_eq!((v["minItems"].as_u64(), v["maxItems"].as_u64()), (Some(2), Some(2)));
        assert_eq!(v["items"]["properties"]["candidate"]["enum"], json!(ids));
        assert_eq!(
            v["items"]["properties"]["source"]["items"]["properties"]["path"]["enum"],
            json!(["a.py"])
        );
    }
}
