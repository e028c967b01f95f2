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
//!
//! Before any model call, the pipeline's structural rules (`rules/`,
//! ast-grep's YAML format) run over the files; each match is a candidate
//! at exact lines. A window's candidates are listed after its files, so the
//! files' prefix (and its KV) is the same whatever the candidates, and the
//! model gives each a verdict with the path from an untrusted source to the
//! sink as citations, checked hop by hop (`triage`). Every finding then
//! gets a tier (`Tier`): confirmed, verified, candidate, unverified.

mod check;
pub mod diff;
mod read;
pub mod rules;
mod tiers;
mod triage;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::anchor::Anchor;
use crate::corpus::{Corpus, StoredDocument};
use crate::document::DocumentKind;
use crate::engine::{Engine, GenerateParams, KvUse};
use crate::prompt::order_documents;
use crate::tasks::citations::{CitationStatus, CorpusIndex};
use crate::tasks::pipeline::{Pipeline, Rule};
use crate::tasks::run::{TaskError, TaskEvent, Timings, Usage};
use crate::tasks::sweep::{Rates, SweepPlan};

pub use read::window_schema;
pub use rules::{Candidate, RuleSet, RulesError, ScanStats};
pub use tiers::{apply_baseline, baseline_ids, summarize as tiers_summary, BaselineUse, Tier};
pub use triage::{Hop, Verdict, VerdictKind};

use read::{read_with_model, ModelRead};

const AUDIT_TEMPLATE: &str = include_str!("../../../prompts/audit.txt");

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
    /// The structural rules run before the model (empty: none).
    pub rules: Arc<RuleSet>,
    /// Most candidates the model judges per window; the rest stay
    /// candidates, marked not judged.
    pub max_candidates: u32,
    /// Only findings on these lines (`--diff REF`); windows with no changed
    /// file are not read.
    pub diff: Option<diff::ChangedLines>,
    /// Refuse a sweep of more windows than this, before any model call.
    pub max_windows: Option<usize>,
    /// The rates of earlier sweeps, for the plan's estimate; the sweep's
    /// own rate is recorded in them.
    pub rates: Rates,
}

impl AuditOptions {
    /// Options with the pipeline's own structural rules and the defaults.
    pub fn new(pipeline: Pipeline, generate: GenerateParams, max_findings: u32) -> Result<Self, RulesError> {
        let rules = Arc::new(RuleSet::load(&pipeline, &[])?);
        Ok(Self {
            pipeline,
            generate,
            max_findings: max_findings.max(1),
            rules,
            max_candidates: DEFAULT_MAX_CANDIDATES,
            diff: None,
            max_windows: None,
            rates: Rates::default(),
        })
    }
}

/// Candidates the model judges per window unless told otherwise.
pub const DEFAULT_MAX_CANDIDATES: u32 = 8;

/// What the model returns for one window (the constrained schema).
#[derive(Debug, Deserialize)]
struct RawFindings {
    #[serde(default)]
    verdicts: Vec<triage::RawVerdict>,
    #[serde(default)]
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
    /// How far it can be trusted; findings are listed best tier first.
    pub tier: Tier,
    /// Who found it: a structural rule, the model, or both.
    pub origin: Origin,
    /// The pipeline's severity; `info` for an unverified finding, whatever
    /// the model said (kept in `claimed_severity`).
    pub severity: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claimed_severity: Option<String>,
    /// The structural rule that matched, when one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule_match: Option<RuleMatch>,
    /// The model's verdict on a structural match, when it gave one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
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

/// What an audit limited to changed lines covered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiffUse {
    pub rev: String,
    pub files: usize,
    pub ranges: usize,
    pub windows_skipped: usize,
}

/// Who found a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    Rule,
    Model,
    /// A structural rule matched and the model reported or confirmed it.
    Both,
}

impl Finding {
    /// Whether `--fail-on` counts it: every tier but unverified. A rule
    /// match the model dismissed still counts: its code is where it says,
    /// and a model's dismissal is not checked the way a citation is.
    #[must_use]
    pub fn gates(&self) -> bool {
        self.tier != Tier::Unverified
    }
}

/// A structural rule's match behind a finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleMatch {
    /// The ast-grep rule's id.
    pub check: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditWindow {
    pub documents: Vec<String>,
    pub tokens: u32,
    /// Findings the model returned for this window, before merging.
    pub findings: usize,
    /// Structural candidates in this window's files, and how many the
    /// model was asked to judge.
    pub candidates: usize,
    pub judged: usize,
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
    pub by_tier: BTreeMap<Tier, usize>,
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
    /// The structural rules' pass (absent when none ran).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rules: Option<ScanStats>,
    /// Whether the model read the files (false: structural rules only).
    pub model_read: bool,
    /// What `--diff` kept to: the revision, the changed files and ranges,
    /// and the windows not read for having no changed file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<DiffUse>,
    /// Findings left out because a baseline already had them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<tiers::BaselineUse>,
    pub windows: Vec<AuditWindow>,
    pub usage: Usage,
    pub timings: Timings,
    pub kv: KvUse,
    pub engine: String,
    pub model: String,
}

/// The key of a finding's id in SARIF's `partialFingerprints`.
pub const FINGERPRINT_KEY: &str = "scoutFindingId/v1";

/// The version of the report's JSON format.
pub const REPORT_FORMAT: u32 = 2;

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

/// The files an audit reads, in prompt order, and what the structural
/// rules found in them.
struct Selected {
    docs: Vec<StoredDocument>,
    files_in_corpus: usize,
    candidates: Vec<Candidate>,
    scan: Option<ScanStats>,
}

fn select(
    corpus: &mut Corpus,
    opts: &AuditOptions,
    on_event: &mut dyn FnMut(TaskEvent<'_>),
) -> Result<Selected, AuditError> {
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
    if let Some(d) = &opts.diff {
        // Edited files keep their place in the order (see `ChangedLines`).
        for doc in &mut docs {
            if let Some(t) = d.dated(&doc.path) {
                doc.modified = t;
            }
        }
    }
    order_documents(&mut docs);
    let (mut candidates, scan) = if opts.rules.is_empty() {
        (Vec::new(), None)
    } else {
        let (found, stats) = opts.rules.scan(&docs);
        on_event(TaskEvent::Rules(&stats));
        (found, Some(stats))
    };
    if let Some(d) = &opts.diff {
        candidates.retain(|c| d.touches(&c.path, c.line_start, c.line_end));
    }
    Ok(Selected {
        docs,
        files_in_corpus,
        candidates,
        scan,
    })
}

/// What auditing with `engine` would do (`--dry-run`): the structural
/// rules run, the model is not called.
pub fn plan(corpus: &mut Corpus, engine: &dyn Engine, opts: &AuditOptions) -> Result<SweepPlan, AuditError> {
    let s = select(corpus, opts, &mut |_| {})?;
    read::plan_read(corpus, engine, opts, &s.docs, &s.candidates)
}

/// Audits the files of `corpus` that `opts.pipeline` reads: structural
/// rules first, then the model (`engine`; `None` runs the rules alone).
pub fn audit(
    corpus: &mut Corpus,
    engine: Option<&mut dyn Engine>,
    opts: &AuditOptions,
    on_event: &mut dyn FnMut(TaskEvent<'_>),
) -> Result<AuditReport, AuditError> {
    let started = Instant::now();
    let pipeline = &opts.pipeline;
    let Selected {
        docs,
        files_in_corpus,
        candidates,
        scan,
    } = select(corpus, opts, on_event)?;
    let index = CorpusIndex::new(&docs);
    let mut read = ModelRead::default();
    if let Some(engine) = engine {
        read = read_with_model(corpus, engine, opts, &docs, &candidates, &index, on_event)?;
    }
    let model_read = !read.engine.is_empty();
    let mut findings = tiers::join(
        candidates
            .iter()
            .map(|c| tiers::candidate_finding(c, pipeline, &index))
            .collect(),
        check::merge(
            read.raw
                .iter()
                .map(|(w, f)| check::check(f, *w, pipeline, &index))
                .collect(),
            pipeline,
        ),
        &read.verdicts,
        pipeline,
    );
    if let Some(d) = &opts.diff {
        findings.retain(|f| d.touches(&f.anchor.path, f.anchor.line_start, f.anchor.line_end));
    }
    let summary = tiers::summarize(&findings, read.windows.iter().filter(|w| w.error.is_some()).count());
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
        rules: scan,
        model_read,
        diff: opts.diff.as_ref().map(|d| DiffUse {
            rev: d.rev.clone(),
            files: d.files.len(),
            ranges: d.ranges(),
            windows_skipped: read.windows_skipped,
        }),
        baseline: None,
        windows: read.windows,
        kv: read.usage.kv,
        usage: read.usage,
        timings: Timings {
            prefill_ms: read.prefill_ms,
            total_ms,
            ..Timings::default()
        },
        engine: if model_read { read.engine } else { "none".to_owned() },
        model: if model_read { read.model } else { "none".to_owned() },
    })
}
