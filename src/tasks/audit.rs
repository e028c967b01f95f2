//! Audit: a pipeline's rules checked over every file it reads.
//!
//! The files are laid out like any corpus and split into windows that fit
//! the engine's context; the model reads each window and returns findings
//! constrained to the pipeline's finding schema (rule ids, severities and
//! the window's own paths are enums, so the grammar cannot name a rule or
//! file that does not exist). scout then checks every finding: its lines
//! must lie in the file and its evidence quote must be found there. A
//! finding that fails is kept and marked unverified, never dropped.
//! Findings of the same rule on the same lines (from several windows, or
//! repeated in one) are merged.

use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::time::Instant;

use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::anchor::Anchor;
use crate::corpus::{Corpus, StoredDocument};
use crate::document::DocumentKind;
use crate::engine::{Call, Engine, GenerateParams, KvUse};
use crate::prompt::{count_units, order_documents, preamble, render_document, ChatMessage, DocumentBlock};
use crate::tasks::citations::{lines_of, locate, squash, CitationStatus, CorpusIndex};
use crate::tasks::pipeline::{Pipeline, Rule};
use crate::tasks::run::{fit_windows, messages, Caller, Step, TaskError, TaskEvent, Timings, Usage};
use crate::tasks::sweep::{Rates, SweepPlan};

const AUDIT_TEMPLATE: &str = include_str!("../../prompts/audit.txt");

/// Paths listed in a window's schema as an enum; past this the grammar
/// grows large, and paths are free strings checked afterwards.
const MAX_PATH_ENUM: usize = 400;
/// Lines of cited code kept with a finding for the reports.
const CODE_LINES: u32 = 40;
/// Two findings of one rule this many lines apart or closer are one.
const MERGE_GAP: u32 = 3;

#[derive(Debug, Clone)]
pub struct AuditOptions {
    pub pipeline: Pipeline,
    pub generate: GenerateParams,
    /// Most findings the model may return per window.
    pub max_findings: u32,
}

/// What the model returns for one window (the constrained schema).
#[derive(Debug, Deserialize)]
struct RawFindings {
    findings: Vec<RawFinding>,
}

#[derive(Debug, Clone, Deserialize)]
struct RawFinding {
    rule: String,
    path: String,
    line_start: u32,
    line_end: u32,
    #[serde(default)]
    evidence: String,
    #[serde(default)]
    severity: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    explanation: String,
    #[serde(default)]
    fix: String,
}

/// Where the evidence quote was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EvidenceMatch {
    /// Inside the cited lines (whitespace-insensitive).
    InCitedLines,
    /// In the same file, but not in the cited lines (see `evidence_found_at`).
    ElsewhereInFile,
    /// Nowhere in the file.
    NotFound,
    /// The finding quoted nothing.
    Empty,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FindingAnchor {
    pub path: String,
    pub line_start: u32,
    pub line_end: u32,
    /// The definition enclosing the lines, e.g. `function load_user`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
    pub status: CitationStatus,
}

impl FindingAnchor {
    #[must_use]
    pub fn display(&self) -> String {
        Anchor::Lines {
            path: self.path.clone(),
            start: self.line_start,
            end: self.line_end,
        }
        .to_string()
    }
}

/// Code shown with a finding in the reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CodeSnippet {
    pub line_start: u32,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable across runs for the same rule, file and evidence (SARIF's
    /// fingerprint).
    pub id: String,
    pub rule_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cwe: Option<String>,
    pub severity: String,
    pub title: String,
    pub anchor: FindingAnchor,
    pub evidence: String,
    pub explanation: String,
    pub fix: String,
    /// The anchor resolves and the evidence is inside the cited lines.
    pub verified: bool,
    pub evidence_match: EvidenceMatch,
    /// Where the evidence is, when it is in the file but not the cited lines.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence_found_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<CodeSnippet>,
    /// The windows (0-based) that reported it.
    pub windows: Vec<usize>,
    /// How many reports were merged into this one.
    pub occurrences: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditWindow {
    pub documents: Vec<String>,
    pub tokens: u32,
    /// Findings the model returned for this window, before merging.
    pub findings: usize,
    /// The model's output was cut off by --max-tokens; complete findings
    /// before the cut are kept.
    pub truncated: bool,
    /// Why this window gave no findings, when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PipelineInfo {
    pub name: String,
    pub version: u32,
    pub description: String,
    pub source: String,
    pub severities: Vec<String>,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AuditSummary {
    pub findings: usize,
    pub verified: usize,
    pub unverified: usize,
    pub by_severity: BTreeMap<String, usize>,
    pub by_rule: BTreeMap<String, usize>,
    /// Windows that failed (their files were not audited).
    pub failed_windows: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditReport {
    /// The report format's version (schemas/audit-report.schema.json).
    pub format: u32,
    pub scout_version: String,
    pub pipeline: PipelineInfo,
    /// Files the pipeline read, of the corpus's documents.
    pub files_audited: usize,
    pub files_in_corpus: usize,
    pub findings: Vec<Finding>,
    pub summary: AuditSummary,
    pub windows: Vec<AuditWindow>,
    pub usage: Usage,
    pub timings: Timings,
    pub kv: KvUse,
    pub engine: String,
    pub model: String,
}

/// The version of the report's JSON format.
pub const REPORT_FORMAT: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Ask(#[from] TaskError),
    #[error("no file in the corpus is one the {pipeline} pipeline reads ({reads}); check the path, or use another --pipeline")]
    NoFiles { pipeline: String, reads: String },
}

impl From<crate::corpus::CorpusError> for AuditError {
    fn from(e: crate::corpus::CorpusError) -> Self {
        AuditError::Ask(e.into())
    }
}

impl From<crate::engine::EngineError> for AuditError {
    fn from(e: crate::engine::EngineError) -> Self {
        AuditError::Ask(e.into())
    }
}

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
pub fn window_schema(p: &Pipeline, paths: &[&str], max_findings: u32) -> Value {
    let path = if paths.len() <= MAX_PATH_ENUM {
        json!({"type": "string", "enum": paths})
    } else {
        json!({"type": "string"})
    };
    json!({
        "type": "object",
        "properties": {
            "findings": {
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
            }
        },
        "required": ["findings"],
        "additionalProperties": false
    })
}

/// Audits the files of `corpus` that `opts.pipeline` reads.
pub fn audit(
    corpus: &mut Corpus,
    engine: &mut dyn Engine,
    opts: &AuditOptions,
    on_event: &mut dyn FnMut(TaskEvent<'_>),
) -> Result<AuditReport, AuditError> {
    let started = Instant::now();
    let pipeline = &opts.pipeline;
    let all = corpus.documents()?;
    if all.is_empty() {
        return Err(TaskError::EmptyCorpus.into());
    }
    let files_in_corpus = all.len();
    let mut docs: Vec<StoredDocument> = all
        .into_iter()
        .filter(|d| matches!(d.kind, DocumentKind::Code | DocumentKind::Text) && pipeline.reads(&d.path))
        .collect();
    if docs.is_empty() {
        return Err(AuditError::NoFiles {
            pipeline: pipeline.name.clone(),
            reads: pipeline.reads_text(),
        });
    }
    order_documents(&mut docs);
    let salt = corpus.salt().to_owned();
    let blocks: Vec<DocumentBlock> = docs.iter().map(|d| render_document(d, &salt)).collect();
    let counts = count_units(&blocks, corpus, &*engine)?;
    let system = preamble(&salt);
    let task = task_text(pipeline, opts.max_findings);
    let windows = fit_windows(
        &*engine,
        &blocks,
        &counts,
        &system,
        &salt,
        &task,
        opts.generate.max_tokens,
    )?;
    let engine_name = engine.backend().to_owned();
    let model = engine.model_id().to_owned();
    let constrained = engine.capabilities().json_schema;
    let index = CorpusIndex::new(&docs);
    let mut reports = Vec::new();
    let mut raw: Vec<(usize, RawFinding)> = Vec::new();
    // Each window's answer is held to a schema naming its own files; the
    // windows go to the engine together, as many at once as it takes.
    let params: Vec<GenerateParams> = windows
        .iter()
        .map(|w| GenerateParams {
            json_schema: Some(window_schema(pipeline, &w.paths(&blocks), opts.max_findings)),
            ..opts.generate.clone()
        })
        .collect();
    let msgs: Vec<Vec<ChatMessage>> = windows
        .iter()
        .map(|w| messages(&system, &w.render(&blocks, &salt), &task))
        .collect();
    let calls: Vec<Call<'_>> = msgs
        .iter()
        .zip(&params)
        .map(|(m, p)| Call { messages: m, params: p })
        .collect();
    if calls.len() > 1 {
        let plan = SweepPlan::new(Step::Audit, &*engine, &calls, &Rates::default())?;
        on_event(TaskEvent::Plan(&plan));
    }
    let mut caller = Caller {
        engine: &mut *engine,
        params: &opts.generate,
        on_event: &mut *on_event,
        usage: Usage::default(),
        prefill_ms: 0,
    };
    let outcomes = caller.call_each_with(&calls, Step::Audit, 0, calls.len());
    let (usage, prefill_ms) = (caller.usage, caller.prefill_ms);
    for (i, (w, outcome)) in windows.iter().zip(outcomes).enumerate() {
        let paths = w.paths(&blocks);
        let mut report = AuditWindow {
            documents: paths.iter().map(|p| (*p).to_owned()).collect(),
            tokens: w.tokens,
            findings: 0,
            truncated: false,
            error: None,
        };
        match outcome {
            Ok(g) => match parse_findings(&g.text) {
                Some((found, truncated)) => {
                    report.findings = found.len();
                    report.truncated = truncated;
                    raw.extend(found.into_iter().map(|f| (i, f)));
                }
                None => {
                    report.error = Some(format!(
                        "the model's answer is not the findings JSON{}: {}",
                        if constrained {
                            ""
                        } else {
                            " (this engine cannot constrain it)"
                        },
                        excerpt(&g.text)
                    ));
                }
            },
            Err(e) => report.error = Some(e.to_string()),
        }
        reports.push(report);
    }
    let findings = merge(
        raw.into_iter().map(|(w, f)| check(&f, w, pipeline, &index)).collect(),
        pipeline,
    );
    let mut summary = AuditSummary {
        findings: findings.len(),
        verified: findings.iter().filter(|f| f.verified).count(),
        failed_windows: reports.iter().filter(|w| w.error.is_some()).count(),
        ..AuditSummary::default()
    };
    summary.unverified = summary.findings - summary.verified;
    for f in &findings {
        *summary.by_severity.entry(f.severity.clone()).or_default() += 1;
        *summary.by_rule.entry(f.rule_id.clone()).or_default() += 1;
    }
    let total_ms = started.elapsed().as_millis() as u64;
    Ok(AuditReport {
        format: REPORT_FORMAT,
        scout_version: env!("CARGO_PKG_VERSION").to_owned(),
        pipeline: PipelineInfo {
            name: pipeline.name.clone(),
            version: pipeline.version,
            description: pipeline.description.clone(),
            source: pipeline.source.clone(),
            severities: pipeline.severities.clone(),
            rules: pipeline.rules.clone(),
        },
        files_audited: docs.len(),
        files_in_corpus,
        findings,
        summary,
        windows: reports,
        kv: usage.kv,
        usage,
        timings: Timings {
            prefill_ms,
            total_ms,
            ..Timings::default()
        },
        engine: engine_name,
        model,
    })
}

fn excerpt(text: &str) -> String {
    let t = text.trim();
    let cut: String = t.chars().take(120).collect();
    if cut.len() < t.len() {
        format!("{cut}…")
    } else {
        cut
    }
}

/// Parses the model's findings. An answer cut off by the token limit
/// keeps the findings completed before the cut (`true` says so); `None`
/// when nothing parses.
fn parse_findings(text: &str) -> Option<(Vec<RawFinding>, bool)> {
    let t = text.trim();
    // Unconstrained engines may wrap the JSON in a code fence.
    let t = t
        .strip_prefix("```json")
        .or_else(|| t.strip_prefix("```"))
        .map_or(t, |rest| rest.trim_end().trim_end_matches("```"))
        .trim();
    if let Ok(parsed) = serde_json::from_str::<RawFindings>(t) {
        return Some((parsed.findings, false));
    }
    // Cut off: close the array after the last complete finding.
    let start = t.find('[')?;
    let mut ends: Vec<usize> = t[start..].match_indices('}').map(|(i, _)| start + i + 1).collect();
    ends.reverse();
    for end in ends {
        let candidate = format!("{}]}}", &t[..end]);
        if let Ok(parsed) = serde_json::from_str::<RawFindings>(&candidate) {
            return Some((parsed.findings, true));
        }
    }
    serde_json::from_str::<RawFindings>(&format!("{}]}}", &t[..=start]))
        .ok()
        .map(|p| (p.findings, true))
}

static MARKER: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\[L\d+\]").expect("valid regex"));

/// The evidence's pieces that must each be found: line markers the model
/// copied from the prompt are removed, and an ellipsis splits the quote.
fn evidence_parts(evidence: &str) -> Vec<String> {
    let cleaned = MARKER.replace_all(evidence, "");
    cleaned
        .split("...")
        .flat_map(|p| p.split('…'))
        .map(squash)
        .filter(|p| !p.is_empty())
        .collect()
}

/// One model finding checked against the corpus.
fn check(raw: &RawFinding, window: usize, p: &Pipeline, index: &CorpusIndex<'_>) -> Finding {
    let (start, end) = if raw.line_start <= raw.line_end {
        (raw.line_start, raw.line_end)
    } else {
        (raw.line_end, raw.line_start)
    };
    let written = Anchor::Lines {
        path: raw.path.trim().to_owned(),
        start,
        end,
    };
    let (resolved, status, cited) = index.resolve_full(&written);
    let parts = evidence_parts(&raw.evidence);
    let doc = index.find(resolved.path());
    let (evidence_match, found_at) = if parts.is_empty() {
        (EvidenceMatch::Empty, None)
    } else {
        let in_cited = cited.as_deref().is_some_and(|c| {
            let c = squash(c);
            parts.iter().all(|p| c.contains(p.as_str()))
        });
        if in_cited {
            (EvidenceMatch::InCitedLines, None)
        } else {
            match doc.and_then(|d| locate(d, &parts)) {
                Some(lines) => (EvidenceMatch::ElsewhereInFile, Some(lines)),
                None => (EvidenceMatch::NotFound, None),
            }
        }
    };
    let verified = status == CitationStatus::Valid && evidence_match == EvidenceMatch::InCitedLines;
    // The code to show: the cited lines, or where the quote really is.
    let shown = match (status, found_at) {
        (_, Some(lines)) => Some(lines),
        (CitationStatus::Valid, None) => Some((start, end)),
        _ => None,
    };
    let code = doc.zip(shown).map(|(d, (a, b))| CodeSnippet {
        line_start: a,
        text: lines_of(d, a, b.min(a + CODE_LINES - 1)),
    });
    let rule = p.rule(&raw.rule);
    let severity = if p.severities.contains(&raw.severity) {
        raw.severity.clone()
    } else {
        rule.map_or_else(
            || p.severities.last().cloned().unwrap_or_default(),
            |r| r.severity.clone(),
        )
    };
    let title = if raw.title.trim().is_empty() {
        rule.map_or_else(|| raw.rule.clone(), |r| r.title.clone())
    } else {
        raw.title.trim().to_owned()
    };
    let path = resolved.path().to_owned();
    let id = blake3::hash(format!("{}\0{}\0{}", raw.rule, path, parts.concat()).as_bytes()).to_hex()[..16].to_owned();
    Finding {
        id,
        rule_id: raw.rule.clone(),
        cwe: rule.and_then(|r| r.cwe.clone()),
        severity,
        title,
        anchor: FindingAnchor {
            symbol: (status == CitationStatus::Valid)
                .then(|| index.symbol(&resolved))
                .flatten(),
            path,
            line_start: start,
            line_end: end,
            status,
        },
        evidence: raw.evidence.trim().to_owned(),
        explanation: raw.explanation.trim().to_owned(),
        fix: raw.fix.trim().to_owned(),
        verified,
        evidence_match,
        evidence_found_at: found_at.map(|(a, b)| {
            Anchor::Lines {
                path: resolved.path().to_owned(),
                start: a,
                end: b,
            }
            .to_string()
        }),
        code,
        windows: vec![window],
        occurrences: 1,
    }
}

/// Whether two findings report the same problem: same rule and file, and
/// lines that overlap or nearly touch, or the same evidence.
fn same_problem(a: &Finding, b: &Finding) -> bool {
    if a.rule_id != b.rule_id || a.anchor.path != b.anchor.path {
        return false;
    }
    let near = a.anchor.line_start <= b.anchor.line_end.saturating_add(MERGE_GAP)
        && b.anchor.line_start <= a.anchor.line_end.saturating_add(MERGE_GAP);
    near || (!a.evidence.is_empty() && squash(&a.evidence) == squash(&b.evidence))
}

/// Merges duplicates (the better-checked report of each problem stands;
/// windows and counts add up) and sorts by severity, then place.
fn merge(findings: Vec<Finding>, p: &Pipeline) -> Vec<Finding> {
    let mut out: Vec<Finding> = Vec::new();
    for f in findings {
        match out.iter_mut().find(|o| same_problem(o, &f)) {
            Some(o) => {
                let mut windows = o.windows.clone();
                windows.extend(&f.windows);
                windows.sort_unstable();
                windows.dedup();
                let occurrences = o.occurrences + f.occurrences;
                let better = (f.verified, f.evidence_match == EvidenceMatch::ElsewhereInFile)
                    > (o.verified, o.evidence_match == EvidenceMatch::ElsewhereInFile)
                    || (f.verified == o.verified && p.severity_rank(&f.severity) < p.severity_rank(&o.severity));
                if better {
                    *o = f;
                }
                o.windows = windows;
                o.occurrences = occurrences;
            }
            None => out.push(f),
        }
    }
    out.sort_by(|a, b| {
        p.severity_rank(&a.severity)
            .cmp(&p.severity_rank(&b.severity))
            .then_with(|| a.anchor.path.cmp(&b.anchor.path))
            .then_with(|| a.anchor.line_start.cmp(&b.anchor.line_start))
            .then_with(|| a.rule_id.cmp(&b.rule_id))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::Segment;

    fn doc(path: &str, text: &str) -> StoredDocument {
        let lines = text.lines().count() as u32;
        let anchor = Anchor::Lines {
            path: path.to_owned(),
            start: 1,
            end: lines,
        };
        StoredDocument::with_segments(
            path,
            DocumentKind::Code,
            vec![Segment {
                anchor,
                text: text.to_owned(),
            }],
        )
    }

    fn raw(rule: &str, path: &str, lines: (u32, u32), evidence: &str) -> RawFinding {
        RawFinding {
            rule: rule.to_owned(),
            path: path.to_owned(),
            line_start: lines.0,
            line_end: lines.1,
            evidence: evidence.to_owned(),
            severity: "high".to_owned(),
            title: "t".to_owned(),
            explanation: "e".to_owned(),
            fix: "f".to_owned(),
        }
    }

    const APP: &str = "import os\n\ndef run(cmd):\n    os.system(\"ls \" + cmd)\n\ndef read(name):\n    return open('/srv/' + name).read()\n";

    #[test]
    fn findings_are_checked_against_the_cited_lines() {
        let docs = vec![doc("src/app.py", APP)];
        let index = CorpusIndex::new(&docs);
        let p = Pipeline::load("security", &crate::tasks::access::Access::Anywhere).unwrap();
        let ok = check(
            &raw("command-injection", "src/app.py", (4, 4), "os.system(\"ls \"  +  cmd)"),
            0,
            &p,
            &index,
        );
        assert!(ok.verified, "{ok:?}");
        assert_eq!(ok.cwe.as_deref(), Some("CWE-78"));
        assert_eq!(ok.code.as_ref().unwrap().text, "    os.system(\"ls \" + cmd)\n");
        // A suffix of the path resolves to the corpus path.
        let suffix = check(&raw("command-injection", "app.py", (4, 4), "os.system"), 0, &p, &index);
        assert!(suffix.verified);
        assert_eq!(suffix.anchor.path, "src/app.py");
        // The quote is in the file, but not on the cited lines.
        let moved = check(
            &raw("path-traversal", "src/app.py", (1, 2), "open('/srv/' + name)"),
            0,
            &p,
            &index,
        );
        assert!(!moved.verified);
        assert_eq!(moved.evidence_match, EvidenceMatch::ElsewhereInFile);
        assert_eq!(moved.evidence_found_at.as_deref(), Some("src/app.py:7"));
        assert_eq!(moved.code.as_ref().unwrap().line_start, 7);
        // Invented code, lines past the end, an unknown file, no quote.
        let invented = check(
            &raw("injection", "src/app.py", (1, 3), "cursor.execute(q)"),
            0,
            &p,
            &index,
        );
        assert_eq!(invented.evidence_match, EvidenceMatch::NotFound);
        assert!(!invented.verified);
        let past = check(&raw("injection", "src/app.py", (40, 41), "os.system"), 0, &p, &index);
        assert_eq!(past.anchor.status, CitationStatus::OutOfRange);
        assert!(!past.verified);
        let unknown = check(&raw("injection", "nope.py", (1, 1), "x"), 0, &p, &index);
        assert_eq!(unknown.anchor.status, CitationStatus::Unknown);
        let empty = check(&raw("injection", "src/app.py", (4, 4), "  "), 0, &p, &index);
        assert_eq!(empty.evidence_match, EvidenceMatch::Empty);
        assert!(!empty.verified);
        // Markers copied from the prompt and an ellipsis do not hide a match.
        let marked = check(
            &raw(
                "command-injection",
                "src/app.py",
                (3, 4),
                "[L3] def run(cmd): ... os.system",
            ),
            0,
            &p,
            &index,
        );
        assert!(marked.verified, "{marked:?}");
        // Reversed line numbers are put in order.
        let reversed = check(
            &raw("command-injection", "src/app.py", (4, 3), "os.system"),
            0,
            &p,
            &index,
        );
        assert_eq!((reversed.anchor.line_start, reversed.anchor.line_end), (3, 4));
    }

    #[test]
    fn duplicates_merge_and_the_verified_report_stands() {
        let docs = vec![doc("src/app.py", APP)];
        let index = CorpusIndex::new(&docs);
        let p = Pipeline::load("security", &crate::tasks::access::Access::Anywhere).unwrap();
        let a = check(
            &raw("command-injection", "src/app.py", (1, 1), "nothing like it"),
            0,
            &p,
            &index,
        );
        let b = check(
            &raw("command-injection", "src/app.py", (3, 4), "os.system"),
            2,
            &p,
            &index,
        );
        let c = check(
            &raw("command-injection", "src/app.py", (4, 4), "os.system"),
            2,
            &p,
            &index,
        );
        let other_rule = check(&raw("injection", "src/app.py", (4, 4), "os.system"), 1, &p, &index);
        let far = check(&raw("path-traversal", "src/app.py", (7, 7), "open("), 1, &p, &index);
        let merged = merge(vec![a, b.clone(), c, other_rule, far], &p);
        assert_eq!(merged.len(), 3, "{merged:#?}");
        let ci = merged.iter().find(|f| f.rule_id == "command-injection").unwrap();
        assert!(ci.verified);
        assert_eq!(ci.anchor.line_start, b.anchor.line_start);
        assert_eq!(ci.windows, vec![0, 2]);
        assert_eq!(ci.occurrences, 3);
        // Sorted by severity: command injection is critical.
        assert_eq!(merged[0].rule_id, "command-injection");
    }

    #[test]
    fn truncated_answers_keep_their_complete_findings() {
        let one = r#"{"rule":"injection","path":"a.py","line_start":1,"line_end":2,"evidence":"x","severity":"high","title":"t","explanation":"e","fix":"f"}"#;
        let full = format!("{{\"findings\": [{one}, {one}]}}");
        assert_eq!(parse_findings(&full).map(|(f, t)| (f.len(), t)), Some((2, false)));
        let cut = format!("{{\"findings\": [{one}, {{\"rule\":\"inj");
        assert_eq!(parse_findings(&cut).map(|(f, t)| (f.len(), t)), Some((1, true)));
        let nothing_complete = "{\"findings\": [{\"rule\":\"inj";
        assert_eq!(
            parse_findings(nothing_complete).map(|(f, t)| (f.len(), t)),
            Some((0, true))
        );
        let fenced = format!("```json\n{full}\n```");
        assert_eq!(parse_findings(&fenced).map(|(f, _)| f.len()), Some(2));
        assert!(parse_findings("I found no problems.").is_none());
    }

    #[test]
    fn the_window_schema_names_only_real_rules_and_paths() {
        let p = Pipeline::load("security", &crate::tasks::access::Access::Anywhere).unwrap();
        let s = window_schema(&p, &["a.py", "b.rs"], 5);
        let item = &s["properties"]["findings"]["items"]["properties"];
        assert_eq!(item["path"]["enum"], json!(["a.py", "b.rs"]));
        assert_eq!(item["rule"]["enum"].as_array().unwrap().len(), p.rules.len());
        assert_eq!(s["properties"]["findings"]["maxItems"], 5);
        // Properties keep the order a model should write them in.
        let keys: Vec<&String> = item.as_object().unwrap().keys().collect();
        assert_eq!(keys[..4], ["rule", "path", "line_start", "line_end"]);
        let many: Vec<String> = (0..=MAX_PATH_ENUM).map(|i| format!("f{i}.py")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let s = window_schema(&p, &many, 5);
        assert!(s["properties"]["findings"]["items"]["properties"]["path"]["enum"].is_null());
    }
}
