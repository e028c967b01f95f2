//! Structural rules: ast-grep's YAML rule format run over the corpus before
//! any model call. Each match is a candidate at exact lines, named by the
//! pipeline rule it checks (its `metadata: {scout-rule: ID}`, the pipeline
//! rule it is written under, or its own id when that is a pipeline rule).
//!
//! Rules come from three places: the rule sets shipped with scout
//! (`pipelines/rules/`, named by a pipeline's `structural_rules`), a
//! pipeline rule's inline `ast_grep` text, and `--rules DIR`. A rule that
//! does not parse is an error naming its file and line; nothing is skipped
//! without a word.

mod lang;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use ast_grep_config::{CombinedScan, GlobalRules, RuleConfig, SerializableRuleConfig, Severity};
use ast_grep_core::tree_sitter::LanguageExt;
use serde::{Deserialize, Serialize};

pub use lang::Lang;

use crate::corpus::StoredDocument;
use crate::tasks::citations::lines_of;
use crate::tasks::pipeline::Pipeline;

/// The rule sets shipped with scout: (set, file, text).
const SHIPPED: &[(&str, &str, &str)] = &[
    (
        "security",
        "c.yml",
        include_str!("../../../../pipelines/rules/security/c.yml"),
    ),
    (
        "security",
        "go.yml",
        include_str!("../../../../pipelines/rules/security/go.yml"),
    ),
    (
        "security",
        "java.yml",
        include_str!("../../../../pipelines/rules/security/java.yml"),
    ),
    (
        "security",
        "javascript.yml",
        include_str!("../../../../pipelines/rules/security/javascript.yml"),
    ),
    (
        "security",
        "php.yml",
        include_str!("../../../../pipelines/rules/security/php.yml"),
    ),
    (
        "security",
        "python.yml",
        include_str!("../../../../pipelines/rules/security/python.yml"),
    ),
    (
        "security",
        "ruby.yml",
        include_str!("../../../../pipelines/rules/security/ruby.yml"),
    ),
    (
        "security",
        "rust.yml",
        include_str!("../../../../pipelines/rules/security/rust.yml"),
    ),
];

/// Files past this size are not parsed (minified bundles, generated code);
/// the scan says how many.
const MAX_FILE_BYTES: u64 = 2 << 20;
/// Characters of matched code kept as a candidate's evidence.
const EVIDENCE_CHARS: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("{origin}: {message}")]
    Invalid { origin: String, message: String },
    #[error("--rules {path}: {message}")]
    Folder { path: String, message: String },
    #[error("the pipeline names structural rules {0:?}, which scout does not ship (it ships: {1})")]
    UnknownSet(String, String),
}

/// One compiled rule, for one language.
struct Check {
    /// The ast-grep rule's id.
    id: String,
    /// The pipeline rule its matches are candidates of.
    rule: String,
    lang: Lang,
    config: RuleConfig<Lang>,
}

/// A rule's metadata, read before ast-grep compiles it.
#[derive(Deserialize)]
struct Head {
    #[serde(default)]
    id: String,
    #[serde(default)]
    metadata: BTreeMap<String, serde_json::Value>,
}

/// A structural match: a candidate finding at exact lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Candidate {
    /// The pipeline rule.
    pub rule: String,
    /// The ast-grep rule that matched.
    pub check: String,
    /// The ast-grep rule's message, its metavariables filled in.
    pub message: String,
    pub path: String,
    pub line_start: u32,
    pub line_end: u32,
    /// The matched code (its first characters).
    pub text: String,
}

/// What a scan did, for the summary line and the report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ScanStats {
    pub rules: usize,
    pub files_scanned: usize,
    /// Files over the size limit, not parsed.
    pub files_skipped: usize,
    pub candidates: usize,
    pub ms: u64,
}

/// The structural rules of one audit.
#[derive(Default)]
pub struct RuleSet {
    checks: Vec<Check>,
    /// The pipeline rule that credentials redacted at ingest are candidates
    /// of (its CWE-798 rule), when the shipped rules run.
    secrets_rule: Option<String>,
}

impl std::fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleSet").field("rules", &self.len()).finish()
    }
}

/// The CWE of hard-coded credentials.
const SECRETS_CWE: &str = "CWE-798";
/// What ingest writes in place of a credential's value.
const REDACTED: &str = "[REDACTED";

/// Lines where ingest's secrets scan redacted a credential, as candidates
/// of `rule` (by document index, for the scan's order).
fn redacted_secrets(docs: &[StoredDocument], rule: &str) -> Vec<(usize, Candidate)> {
    let mut out = Vec::new();
    for (i, doc) in docs.iter().enumerate() {
        for seg in &doc.segments {
            let crate::anchor::Anchor::Lines { start, .. } = seg.anchor else {
                continue;
            };
            for (k, line) in seg.text.lines().enumerate() {
                let Some(at) = line.find(REDACTED) else { continue };
                let kind = line[at + REDACTED.len()..]
                    .strip_prefix(':')
                    .and_then(|rest| rest.split(']').next())
                    .unwrap_or("credential");
                let n = start + k as u32;
                out.push((
                    i,
                    Candidate {
                        rule: rule.to_owned(),
                        check: "secrets-scan".to_owned(),
                        message: format!("a {kind} written in the file (redacted when it was read)"),
                        path: doc.path.clone(),
                        line_start: n,
                        line_end: n,
                        text: line.trim().chars().take(EVIDENCE_CHARS).collect(),
                    },
                ));
            }
        }
    }
    out
}

/// YAML documents of a file with the line each starts on.
fn documents(text: &str) -> Vec<(usize, String)> {
    let mut out = vec![(1, String::new())];
    for (i, line) in text.lines().enumerate() {
        if line.trim_end() == "---" {
            out.push((i + 2, String::new()));
        } else if let Some((_, doc)) = out.last_mut() {
            doc.push_str(line);
            doc.push('\n');
        }
    }
    out.retain(|(_, d)| {
        d.lines()
            .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
    });
    out
}

/// An error and every error under it, in words.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        next = s.source();
    }
    text
}

impl RuleSet {
    /// The rules an audit with `pipeline` runs: its shipped set, its rules'
    /// inline `ast_grep` text, and every `.yml`/`.yaml` file in `dirs`.
    pub fn load(pipeline: &Pipeline, dirs: &[PathBuf]) -> Result<Self, RulesError> {
        let mut set = Self::default();
        if pipeline.structural_rules.is_some() {
            set.secrets_rule = pipeline
                .rules
                .iter()
                .find(|r| r.cwe.as_deref() == Some(SECRETS_CWE))
                .map(|r| r.id.clone());
        }
        if let Some(name) = &pipeline.structural_rules {
            let files: Vec<_> = SHIPPED.iter().filter(|(s, _, _)| s == name).collect();
            if files.is_empty() {
                let mut sets: Vec<&str> = SHIPPED.iter().map(|(s, _, _)| *s).collect();
                sets.dedup();
                return Err(RulesError::UnknownSet(name.clone(), sets.join(", ")));
            }
            for (set_name, file, text) in files {
                set.add(text, &format!("pipelines/rules/{set_name}/{file}"), None, pipeline)?;
            }
        }
        for r in &pipeline.rules {
            if let Some(text) = &r.ast_grep {
                set.add(
                    text,
                    &format!("{} (rule {})", pipeline.source, r.id),
                    Some(&r.id),
                    pipeline,
                )?;
            }
        }
        for dir in dirs {
            set.add_folder(dir, pipeline)?;
        }
        Ok(set)
    }

    fn add_folder(&mut self, dir: &Path, pipeline: &Pipeline) -> Result<(), RulesError> {
        let folder = |message: String| RulesError::Folder {
            path: dir.display().to_string(),
            message,
        };
        let entries = std::fs::read_dir(dir).map_err(|e| folder(e.to_string()))?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "yml" || x == "yaml"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(folder("no .yml or .yaml file in it".to_owned()));
        }
        for f in files {
            let text = std::fs::read_to_string(&f).map_err(|e| folder(format!("{}: {e}", f.display())))?;
            self.add(&text, &f.display().to_string(), None, pipeline)?;
        }
        Ok(())
    }

    /// Compiles every rule of one YAML file (several documents, `---`
    /// between them).
    fn add(&mut self, text: &str, origin: &str, under: Option<&str>, pipeline: &Pipeline) -> Result<(), RulesError> {
        let globals = GlobalRules::default();
        for (line, doc) in documents(text) {
            let invalid = |at: usize, message: String| RulesError::Invalid {
                origin: format!("{origin}:{at}"),
                message,
            };
            let yaml_line = |e: &ast_grep_config::RuleConfigError| match e {
                ast_grep_config::RuleConfigError::Yaml(y) => y.location().map_or(line, |l| line + l.line() - 1),
                _ => line,
            };
            let ser: SerializableRuleConfig<Lang> = ast_grep_config::from_str(&doc)
                .map_err(|e| invalid(e.location().map_or(line, |l| line + l.line() - 1), chain(&e)))?;
            let head: Head = ast_grep_config::from_str(&doc)
                .map_err(|e| invalid(e.location().map_or(line, |l| line + l.line() - 1), chain(&e)))?;
            let named = head.metadata.get("scout-rule").and_then(serde_json::Value::as_str);
            let rule = match (named, under) {
                (Some(r), _) | (None, Some(r)) => r.to_owned(),
                (None, None) if pipeline.rule(&head.id).is_some() => head.id.clone(),
                (None, None) => {
                    return Err(invalid(
                        line,
                        format!(
                            "rule {:?}: say which of the {} pipeline's rules it checks with `metadata: {{scout-rule: ID}}` (one of {})",
                            head.id,
                            pipeline.name,
                            pipeline.rules.iter().map(|r| r.id.as_str()).collect::<Vec<_>>().join(", ")
                        ),
                    ))
                }
            };
            if pipeline.rule(&rule).is_none() {
                return Err(invalid(
                    line,
                    format!(
                        "rule {:?} checks {rule:?}, which is not one of the {} pipeline's rules ({})",
                        head.id,
                        pipeline.name,
                        pipeline
                            .rules
                            .iter()
                            .map(|r| r.id.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
            if head.id.is_empty() {
                return Err(invalid(line, "a rule needs an `id`".to_owned()));
            }
            if matches!(ser.severity, Severity::Off) {
                continue;
            }
            let base = ser.language;
            let config = RuleConfig::try_from(ser.clone(), &globals)
                .map_err(|e| invalid(yaml_line(&e), format!("rule {:?}: {}", head.id, chain(&e))))?;
            self.checks.push(Check {
                id: head.id.clone(),
                rule: rule.clone(),
                lang: base,
                config,
            });
            // The same rule on the grammars that extend this one, where its
            // patterns parse there.
            for &lang in base.extended_by() {
                let mut other = ser.clone();
                other.language = lang;
                if let Ok(config) = RuleConfig::try_from(other, &globals) {
                    self.checks.push(Check {
                        id: head.id.clone(),
                        rule: rule.clone(),
                        lang,
                        config,
                    });
                }
            }
        }
        Ok(())
    }

    /// Distinct rules (a rule run on several grammars counts once).
    #[must_use]
    pub fn len(&self) -> usize {
        let mut ids: Vec<(&str, &str)> = self.checks.iter().map(|c| (c.id.as_str(), c.rule.as_str())).collect();
        ids.sort_unstable();
        ids.dedup();
        ids.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.checks.is_empty() && self.secrets_rule.is_none()
    }

    /// Every match of every rule in `docs`, in document order then line
    /// order. Files are parsed once each, on every core.
    #[must_use]
    pub fn scan(&self, docs: &[StoredDocument]) -> (Vec<Candidate>, ScanStats) {
        let started = Instant::now();
        let mut by_lang: HashMap<Lang, Vec<&RuleConfig<Lang>>> = HashMap::new();
        for c in &self.checks {
            by_lang.entry(c.lang).or_default().push(&c.config);
        }
        let scans: HashMap<Lang, CombinedScan<'_, Lang>> = by_lang
            .into_iter()
            .map(|(l, rules)| (l, CombinedScan::new(rules)))
            .collect();
        let rule_of: HashMap<(&str, Lang), &str> = self
            .checks
            .iter()
            .map(|c| ((c.id.as_str(), c.lang), c.rule.as_str()))
            .collect();
        let next = AtomicUsize::new(0);
        let found: Mutex<Vec<(usize, Candidate)>> = Mutex::new(Vec::new());
        let counts = Mutex::new((0usize, 0usize));
        let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        std::thread::scope(|s| {
            for _ in 0..threads.min(docs.len().max(1)) {
                s.spawn(|| {
                    let (mut scanned, mut skipped) = (0, 0);
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(doc) = docs.get(i) else { break };
                        let Some(lang) = Lang::of_path(&doc.path) else { continue };
                        let Some(scan) = scans.get(&lang) else { continue };
                        if doc.bytes > MAX_FILE_BYTES {
                            skipped += 1;
                            continue;
                        }
                        scanned += 1;
                        let text = lines_of(doc, 1, doc.extent());
                        let root = lang.ast_grep(&text);
                        for (config, matches) in scan.scan(&root, false).matches {
                            let rule = rule_of.get(&(config.id.as_str(), lang)).copied().unwrap_or_default();
                            for m in matches {
                                let matched = m.text();
                                mine.push((
                                    i,
                                    Candidate {
                                        rule: rule.to_owned(),
                                        check: config.id.clone(),
                                        message: config.get_message(&m),
                                        path: doc.path.clone(),
                                        line_start: m.start_pos().line() as u32 + 1,
                                        line_end: m.end_pos().line() as u32 + 1,
                                        text: matched.chars().take(EVIDENCE_CHARS).collect(),
                                    },
                                ));
                            }
                        }
                    }
                    found.lock().expect("scan results").extend(mine);
                    let mut c = counts.lock().expect("scan counts");
                    c.0 += scanned;
                    c.1 += skipped;
                });
            }
        });
        let mut found = found.into_inner().expect("scan results");
        if let Some(rule) = &self.secrets_rule {
            found.extend(redacted_secrets(docs, rule));
        }
        found.sort_by(|(a, x), (b, y)| {
            a.cmp(b)
                .then(x.line_start.cmp(&y.line_start))
                .then_with(|| x.check.cmp(&y.check))
        });
        found.dedup_by(|(_, a), (_, b)| a == b);
        let (files_scanned, files_skipped) = counts.into_inner().expect("scan counts");
        let candidates: Vec<Candidate> = found.into_iter().map(|(_, c)| c).collect();
        let stats = ScanStats {
            rules: self.len(),
            files_scanned,
            files_skipped,
            candidates: candidates.len(),
            ms: started.elapsed().as_millis() as u64,
        };
        (candidates, stats)
    }
}

#[cfg(test)]
mod tests;
