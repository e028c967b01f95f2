//! Extract: one JSON object per document (or page) that validates against
//! the user's JSON Schema, each field traced back to where it was read.
//!
//! The model's answer is constrained to the schema where the engine allows
//! it and validated after in every case. Each value is then looked up in
//! the document: in the OCR lines of a scan (giving the page, the box and
//! the OCR confidence of the words it came from), else in the text of a
//! PDF page or a text file. A value that cannot be found is marked so: the
//! model may have read it wrong, or made it up.
//!
//! Never reports a value as traced when it was not found in the document.

use std::sync::LazyLock;
use std::time::Instant;

use regex::Regex;
use serde::Serialize;
use serde_json::Value;

use crate::anchor::Anchor;
use crate::corpus::{Corpus, StoredDocument};
use crate::document::DocumentKind;
use crate::engine::{Call, Engine, GenerateParams};
use crate::ingest::ocr::{union, OcrLine};
use crate::prompt::{preamble, ChatMessage};
use crate::tasks::citations::{locate, squash};
use crate::tasks::run::{document_blocks, messages, Caller, Step, TaskError, TaskEvent, Usage};
use crate::tasks::schema::{parse_object, ExtractSchema};
use crate::tasks::sweep::{Rates, SweepPlan, Tally};

const EXTRACT_TEMPLATE: &str = include_str!("../../prompts/extract.txt");

#[derive(Debug, Clone)]
pub struct ExtractOptions {
    pub generate: GenerateParams,
    /// One object per page of each PDF (and per image), not per document.
    pub per_page: bool,
    /// Refuse more model calls (documents or pages) than this, before any.
    pub max_windows: Option<usize>,
    /// The rates of earlier sweeps, for the plan's estimate; this one's is
    /// recorded in them.
    pub rates: Rates,
}

/// Where one extracted value was read.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldSource {
    /// JSON pointer into `data`, e.g. `/total` or `/line_items/0/amount`.
    pub pointer: String,
    pub value: Value,
    /// Whether the value was found in the document.
    pub found: bool,
    /// `path#page=N&bbox=x,y,w,h` for OCR text, `path#page=N` for a PDF
    /// page, `path:lines` for text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anchor: Option<String>,
    /// Mean OCR confidence (0-100) of the lines the value came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f32>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Extraction {
    pub path: String,
    /// The page, with --per-page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
    /// The object the model returned (absent when it returned no JSON).
    pub data: Option<Value>,
    /// `data` validates against the schema.
    pub valid: bool,
    /// Why not: schema errors, or why there is no object.
    pub errors: Vec<String>,
    pub fields: Vec<FieldSource>,
    /// Decoding was constrained to the schema.
    pub constrained: bool,
    pub usage: Usage,
    pub ms: u64,
}

/// One unit of extraction: a document, or one page of it.
struct Unit {
    doc: StoredDocument,
    page: Option<u32>,
    ocr: Vec<OcrLine>,
}

/// The units of extraction: each document, or each page of a PDF or image
/// with `per_page`.
fn units(corpus: &Corpus, per_page: bool) -> Result<Vec<Unit>, TaskError> {
    let docs = corpus.documents()?;
    if docs.is_empty() {
        return Err(TaskError::EmptyCorpus);
    }
    let mut units = Vec::new();
    for doc in docs {
        let ocr = corpus.ocr_lines(doc.id)?;
        let pages: Vec<u32> = if per_page && matches!(doc.kind, DocumentKind::Pdf | DocumentKind::Image) {
            let mut p: Vec<u32> = doc.segments.iter().filter_map(|s| s.anchor.page()).collect();
            p.dedup();
            p
        } else {
            Vec::new()
        };
        if pages.is_empty() {
            units.push(Unit { doc, page: None, ocr });
        } else {
            for page in pages {
                let mut d = doc.clone();
                d.segments.retain(|s| s.anchor.page() == Some(page));
                let ocr = ocr.iter().filter(|l| l.page == page).cloned().collect();
                units.push(Unit {
                    doc: d,
                    page: Some(page),
                    ocr,
                });
            }
        }
    }
    Ok(units)
}

/// What every unit's prompt shares.
struct Prompting<'a> {
    salt: String,
    system: String,
    task: String,
    params: GenerateParams,
    constrained: bool,
    opts: &'a ExtractOptions,
}

impl<'a> Prompting<'a> {
    fn new(corpus: &Corpus, engine: &dyn Engine, schema: &ExtractSchema, opts: &'a ExtractOptions) -> Self {
        let salt = corpus.salt().to_owned();
        let mut params = opts.generate.clone();
        params.json_schema = Some(schema.for_generation());
        Prompting {
            system: preamble(&salt),
            salt,
            task: EXTRACT_TEMPLATE.replace("{fields}", schema.fields_text().trim_end()),
            params,
            constrained: engine.capabilities().json_schema,
            opts,
        }
    }

    /// A unit's result so far, and its messages when it has something to
    /// read that fits the context (else the result says why not).
    fn prepare(
        &self,
        unit: &Unit,
        corpus: &mut Corpus,
        engine: &dyn Engine,
    ) -> Result<(Extraction, Option<Vec<ChatMessage>>), TaskError> {
        let mut result = Extraction {
            path: unit.doc.path.clone(),
            page: unit.page,
            data: None,
            valid: false,
            errors: Vec::new(),
            fields: Vec::new(),
            constrained: self.constrained,
            usage: Usage::default(),
            ms: 0,
        };
        let has_text = unit.doc.segments.iter().any(|s| !s.text.trim().is_empty());
        let block = document_blocks(std::slice::from_ref(&unit.doc), &self.salt, corpus, engine)?
            .pop()
            .expect("one block per document");
        let mut call = None;
        if has_text || !block.images.is_empty() {
            let msgs = messages(&self.system, &block.render_content(), &self.task);
            let needed = engine.count_chat_tokens(&msgs)? + self.params.max_tokens;
            let context = engine.capabilities().context_length;
            if needed > context {
                result.errors.push(format!(
                    "the document needs {needed} tokens with its answer, more than the context's {context}{}",
                    if self.opts.per_page || unit.page.is_some() {
                        ""
                    } else {
                        "; try --per-page"
                    }
                ));
            } else {
                call = Some(msgs);
            }
        } else {
            result.errors.push(
                "no text to extract from (OCR found none; an engine with vision could read the image itself)"
                    .to_owned(),
            );
        }
        Ok((result, call))
    }
}

/// What extracting would do (`--dry-run`), without calling the model: the
/// units that have something to read, their prompt tokens, the slots and an
/// estimate. Units are prepared a group at a time, as the extraction does.
pub fn plan(
    corpus: &mut Corpus,
    engine: &dyn Engine,
    schema: &ExtractSchema,
    opts: &ExtractOptions,
) -> Result<SweepPlan, TaskError> {
    let units = units(corpus, opts.per_page)?;
    let prompting = Prompting::new(corpus, engine, schema, opts);
    let mut tally = Tally::default();
    for chunk in units.chunks(engine.slots().max(1)) {
        let mut msgs = Vec::new();
        for unit in chunk {
            msgs.extend(prompting.prepare(unit, corpus, engine)?.1);
        }
        let calls: Vec<Call<'_>> = msgs
            .iter()
            .map(|m| Call {
                messages: m,
                params: &prompting.params,
            })
            .collect();
        tally.add(engine, &calls)?;
    }
    Ok(SweepPlan::of(Step::Extract, engine, &tally, &opts.rates))
}

/// Extracts one object per document (per page with `per_page`) of the
/// corpus, calling `on_result` as each is done. More than one unit: the
/// plan is said first ([`TaskEvent::Plan`]) and held to `max_windows`.
pub fn extract(
    corpus: &mut Corpus,
    engine: &mut dyn Engine,
    schema: &ExtractSchema,
    opts: &ExtractOptions,
    on_event: &mut dyn FnMut(TaskEvent<'_>),
    on_result: &mut dyn FnMut(&Extraction),
) -> Result<Vec<Extraction>, TaskError> {
    let sweep_started = Instant::now();
    let units = units(corpus, opts.per_page)?;
    let plan = if units.len() > 1 {
        let plan = self::plan(corpus, &*engine, schema, opts)?;
        on_event(TaskEvent::Plan(&plan));
        if let Some(limit) = opts.max_windows.filter(|&l| plan.windows > l) {
            return Err(TaskError::TooManyUnits {
                units: plan.windows,
                limit,
            });
        }
        Some(plan)
    } else {
        None
    };
    let prompting = Prompting::new(corpus, &*engine, schema, opts);
    let params = &prompting.params;
    let constrained = prompting.constrained;
    let mut results = Vec::new();
    let mut failed_calls = 0usize;
    let of = units.len();
    // As many units at once as the engine takes; each group's results are
    // reported in order before the next group starts.
    let group = engine.slots().max(1);
    for (g, chunk) in units.chunks(group).enumerate() {
        let first = g * group;
        let started = Instant::now();
        let mut pending: Vec<(Extraction, Option<Vec<ChatMessage>>)> = Vec::new();
        for unit in chunk {
            pending.push(prompting.prepare(unit, corpus, &*engine)?);
        }
        let calls: Vec<Call<'_>> = pending
            .iter()
            .filter_map(|(_, m)| m.as_deref())
            .map(|m| Call { messages: m, params })
            .collect();
        let mut caller = Caller {
            engine: &mut *engine,
            params,
            on_event: &mut *on_event,
            usage: Usage::default(),
            prefill_ms: 0,
        };
        let mut answers = caller.call_each_with(&calls, Step::Extract, first, of).into_iter();
        drop(calls);
        for ((mut result, call), unit) in pending.into_iter().zip(chunk) {
            if call.is_some() {
                match answers.next().expect("one answer per call") {
                    Ok(g) => {
                        result.usage = Usage::of(&g);
                        match parse_object(&g.text) {
                            Some(data) => {
                                result.errors = schema.errors(&data);
                                result.valid = result.errors.is_empty();
                                result.fields = trace(&data, unit);
                                result.data = Some(data);
                            }
                            None => result.errors.push(format!(
                                "the model's answer is not a JSON object{}",
                                if constrained {
                                    ""
                                } else {
                                    " (this engine cannot constrain it)"
                                }
                            )),
                        }
                    }
                    Err(e) => {
                        failed_calls += 1;
                        result.errors.push(e.to_string());
                    }
                }
            }
            result.ms = started.elapsed().as_millis() as u64;
            on_result(&result);
            results.push(result);
        }
    }
    // The rate the next plan's estimate is made from, when every call went
    // through (a failed call reads nothing and would flatter it).
    if let Some(plan) = plan.as_ref().filter(|_| failed_calls == 0) {
        opts.rates
            .clone()
            .record(plan, plan.to_read(), sweep_started.elapsed().as_millis() as u64);
    }
    Ok(results)
}

/// Every non-empty string or number leaf, with its JSON pointer.
fn leaves(value: &Value, pointer: &str, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let key = k.replace('~', "~0").replace('/', "~1");
                leaves(v, &format!("{pointer}/{key}"), out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                leaves(v, &format!("{pointer}/{i}"), out);
            }
        }
        // Empty values, nulls and booleans are not text the document holds.
        Value::String(s) if s.trim().is_empty() => {}
        Value::Null | Value::Bool(_) => {}
        other => out.push((pointer.to_owned(), other.clone())),
    }
}

/// Text compared case- and whitespace-insensitively.
fn fold(text: &str) -> String {
    squash(text).to_uppercase()
}

static MONEY: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[^\d\-]{0,4}(-?[\d,]*\.?\d+)$").expect("valid regex"));

/// Where each value of `data` appears in the unit's document.
fn trace(data: &Value, unit: &Unit) -> Vec<FieldSource> {
    let mut found = Vec::new();
    leaves(data, "", &mut found);
    found
        .into_iter()
        .map(|(pointer, value)| {
            let text = match &value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let (anchor, confidence) = find_value(&text, unit).map_or((None, None), |(a, c)| (Some(a), c));
            FieldSource {
                pointer,
                value,
                found: anchor.is_some(),
                anchor,
                confidence,
            }
        })
        .collect()
}

/// The anchor (and OCR confidence) of a value in the document.
fn find_value(text: &str, unit: &Unit) -> Option<(String, Option<f32>)> {
    let mut needle = fold(text);
    if needle.is_empty() {
        return None;
    }
    // "RM 11.98" and "11.98" are the same amount.
    if let Some(c) = MONEY.captures(&needle) {
        needle = c[1].to_owned();
    }
    let path = &unit.doc.path;
    if !unit.ocr.is_empty() {
        // One line holding the whole value.
        let folded: Vec<String> = unit.ocr.iter().map(|l| fold(&l.text)).collect();
        if let Some(i) = folded.iter().position(|l| l.contains(&needle)) {
            let l = &unit.ocr[i];
            return Some((region(path, l.page, (l.x, l.y, l.w, l.h)), Some(l.confidence)));
        }
        // A value over several lines (an address): consecutive lines on one
        // page that together spell it.
        for start in 0..unit.ocr.len() {
            let mut joined = String::new();
            let stop = unit.ocr.len().min(start + 8);
            for (end, (line, text)) in unit.ocr[..stop].iter().zip(&folded[..stop]).enumerate().skip(start) {
                if line.page != unit.ocr[start].page {
                    break;
                }
                joined.push_str(text);
                if !needle.starts_with(&joined) && !joined.contains(&needle) {
                    break;
                }
                if joined.contains(&needle) || joined == needle {
                    let lines: Vec<&OcrLine> = unit.ocr[start..=end].iter().collect();
                    let confidence = lines.iter().map(|l| l.confidence).sum::<f32>() / lines.len() as f32;
                    return Some((region(path, lines[0].page, union(&lines)), Some(confidence)));
                }
            }
        }
    }
    match unit.doc.kind {
        DocumentKind::Text | DocumentKind::Code => locate(&unit.doc, &[squash(text)]).map(|(a, b)| {
            let anchor = Anchor::Lines {
                path: path.clone(),
                start: a,
                end: b,
            };
            (anchor.to_string(), None)
        }),
        DocumentKind::Pdf | DocumentKind::Image => unit
            .doc
            .segments
            .iter()
            .find(|s| fold(&s.text).contains(&needle))
            .map(|s| match s.anchor.page() {
                Some(page) if unit.doc.kind == DocumentKind::Pdf => (
                    Anchor::Page {
                        path: path.clone(),
                        page,
                    }
                    .to_string(),
                    None,
                ),
                _ => (s.anchor.to_string(), None),
            }),
    }
}

fn region(path: &str, page: u32, (x, y, w, h): (u32, u32, u32, u32)) -> String {
    Anchor::Region {
        path: path.to_owned(),
        page,
        x,
        y,
        w,
        h,
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::Segment;

    fn line(text: &str, y: u32, confidence: f32) -> OcrLine {
        OcrLine {
            page: 1,
            block: 0,
            text: text.to_owned(),
            x: 10,
            y,
            w: 200,
            h: 20,
            confidence,
        }
    }

    fn receipt() -> Unit {
        let ocr = vec![
            line("CORNER HARDWARE SDN BHD", 10, 96.0),
            line("12 JALAN MERANTI,", 40, 90.0),
            line("43000 KAJANG, SELANGOR", 70, 80.0),
            line("TOTAL 11.98", 200, 93.5),
        ];
        let text: String = ocr.iter().map(|l| format!("{}\n", l.text)).collect();
        let anchor = Anchor::Region {
            path: "r.png".to_owned(),
            page: 1,
            x: 10,
            y: 10,
            w: 200,
            h: 210,
        };
        Unit {
            doc: StoredDocument::with_segments("r.png", DocumentKind::Image, vec![Segment { anchor, text }]),
            page: None,
            ocr,
        }
    }

    #[test]
    fn values_are_traced_to_their_ocr_lines() {
        let unit = receipt();
        let data = serde_json::json!({
            "company": "Corner Hardware Sdn Bhd",
            "address": "12 JALAN MERANTI, 43000 KAJANG, SELANGOR",
            "total": "RM 11.98",
            "date": "",
            "cashier": "NOBODY",
        });
        let fields = trace(&data, &unit);
        let by = |p: &str| fields.iter().find(|f| f.pointer == p).unwrap();
        assert_eq!(by("/company").anchor.as_deref(), Some("r.png#page=1&bbox=10,10,200,20"));
        assert_eq!(by("/company").confidence, Some(96.0));
        // Two lines, one box around both, their mean confidence.
        assert_eq!(by("/address").anchor.as_deref(), Some("r.png#page=1&bbox=10,40,200,50"));
        assert_eq!(by("/address").confidence, Some(85.0));
        assert_eq!(by("/total").anchor.as_deref(), Some("r.png#page=1&bbox=10,200,200,20"));
        assert!(!by("/cashier").found, "an invented value is not found");
        assert!(
            fields.iter().all(|f| f.pointer != "/date"),
            "empty values are not traced"
        );
    }

    #[test]
    fn an_extraction_line() {
        let unit = receipt();
        let data =
            serde_json::json!({"company": "CORNER HARDWARE SDN BHD", "date": "", "address": "x", "total": "11.98"});
        let schema = ExtractSchema::load("receipt", &crate::tasks::access::Access::Anywhere).unwrap();
        let line = Extraction {
            path: "r.png".to_owned(),
            page: None,
            valid: schema.errors(&data).is_empty(),
            errors: schema.errors(&data),
            fields: trace(&data, &unit),
            data: Some(data),
            constrained: true,
            usage: Usage::default(),
            ms: 7,
        };
        insta::assert_json_snapshot!("extract_line", line);
    }
}
