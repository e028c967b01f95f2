//! `scout bench audit`: how well an audit finds what it should and leaves
//! alone what it should. Vulnerable and safe twins (`templates.rs`) are
//! planted at seeded places in a copy of a real corpus, the audit runs
//! (structural rules alone, the model alone, both), and each twin is
//! scored: a finding of the twin's rule in the twin's file is a positive.
//! Per CWE: true-positive rate, false-positive rate, Youden index (TPR
//! minus FPR), precision and F1. `--truth FILE` scores an external suite
//! the same way, with no planting.
//!
//! Planting is a pure function of the tree and the seed: the same tree and
//! seed give the same twins in the same places.

mod templates;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::tasks::audit::rules::Lang;
use crate::tasks::audit::{AuditReport, Tier, Verdict};
use crate::tasks::needle::plant::Rng;
use templates::{Template, TEMPLATES};

/// The CWEs the bench plants unless told otherwise.
pub const DEFAULT_CWES: [&str; 3] = ["CWE-89", "CWE-78", "CWE-22"];

/// One scored file: planted, or listed in a truth file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Truth {
    /// Relative to the audited folder.
    pub path: String,
    pub cwe: String,
    pub vulnerable: bool,
    /// The pipeline rule a finding must name (from the CWE when read from
    /// a truth file).
    #[serde(default)]
    pub rule: String,
    /// Lines the finding must touch, when given; else anywhere in the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lines: Option<(u32, u32)>,
    /// The template's form, for planted twins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub form: Option<String>,
}

/// Which findings count as a positive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The structural rules alone: any match of the rule.
    Rules,
    /// The model alone (no rules ran): a finding of the rule whose quote checks out.
    Model,
    /// Rules and the model's triage: confirmed or verified, or a rule match the
    /// model did not dismiss with a cited line that checks out.
    Both,
}

impl Mode {
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Mode::Rules => "rules",
            Mode::Model => "model",
            Mode::Both => "both",
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    Io(String),
    #[error("no template for {0}: the bench plants {1}")]
    NoTemplate(String, String),
    #[error("--truth {file}:{line}: {message}")]
    Truth { file: String, line: usize, message: String },
}

/// Words names are made of.
const VERBS: [&str; 8] = ["load", "fetch", "read", "export", "lookup", "sync", "render", "archive"];
const NOUNS: [&str; 10] = [
    "report", "order", "invoice", "profile", "session", "upload", "account", "ticket", "asset", "entry",
];
const ARGS: [&str; 6] = ["name", "key", "target", "slug", "ident", "label"];
const TABLES: [&str; 5] = ["users", "orders", "accounts", "tickets", "entries"];

fn camel(words: &[&str]) -> String {
    let mut out = String::new();
    for (i, w) in words.iter().enumerate() {
        if i == 0 {
            out.push_str(w);
        } else {
            let mut c = w.chars();
            out.extend(c.next().map(|f| f.to_ascii_uppercase()));
            out.push_str(c.as_str());
        }
    }
    out
}

fn pascal(words: &[&str]) -> String {
    let c = camel(words);
    let mut chars = c.chars();
    chars
        .next()
        .map(|f| f.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

fn snake_case_language(lang: Lang) -> bool {
    matches!(
        lang,
        Lang::Python | Lang::Ruby | Lang::Rust | Lang::Php | Lang::C | Lang::Cpp
    )
}

fn extension(lang: Lang) -> &'static str {
    match lang {
        Lang::Python => "py",
        Lang::JavaScript => "js",
        Lang::TypeScript => "ts",
        Lang::Tsx => "tsx",
        Lang::Java => "java",
        Lang::Go => "go",
        Lang::Php => "php",
        Lang::Ruby => "rb",
        Lang::C => "c",
        Lang::Cpp => "cpp",
        Lang::Rust => "rs",
    }
}

/// A twin's text with its names filled in.
fn fill(text: &str, lang: Lang, n: usize, rng: &mut Rng, package: &str) -> (String, String) {
    let verb = VERBS[rng.below(VERBS.len())];
    let noun = NOUNS[rng.below(NOUNS.len())];
    let arg = ARGS[rng.below(ARGS.len())];
    let table = TABLES[rng.below(TABLES.len())];
    let snake = snake_case_language(lang);
    let function = if snake {
        format!("{verb}_{noun}_{n}")
    } else {
        format!("{}{n}", camel(&[verb, noun]))
    };
    let argument = if snake {
        format!("{arg}_value")
    } else {
        camel(&[arg, "value"])
    };
    let local = if snake {
        format!("{noun}_path")
    } else {
        camel(&[noun, "path"])
    };
    let class = format!("{}{n}", pascal(&[noun, "handler"]));
    let out = text
        .replace("@F@", &function)
        .replace("@A@", &argument)
        .replace("@V@", &local)
        .replace("@T@", table)
        .replace("@C@", &class)
        .replace("@P@", package);
    let file = if lang == Lang::Java {
        format!("{class}.{}", extension(lang))
    } else {
        format!("{noun}_{n}.{}", extension(lang))
    };
    (out, file)
}

/// Copies `from` into `to`: the files a walk with the usual ignore rules
/// sees (no `.git`, nothing ignored), as they are.
pub fn copy_tree(from: &Path, to: &Path) -> Result<usize, BenchError> {
    let io = |e: std::io::Error, p: &Path| BenchError::Io(format!("{}: {e}", p.display()));
    let mut n = 0;
    for entry in ignore::WalkBuilder::new(from).build().filter_map(Result::ok) {
        let path = entry.path();
        let Ok(rel) = path.strip_prefix(from) else { continue };
        let target = to.join(rel);
        if entry.file_type().is_some_and(|t| t.is_dir()) {
            std::fs::create_dir_all(&target).map_err(|e| io(e, &target))?;
        } else if entry.file_type().is_some_and(|t| t.is_file()) {
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(|e| io(e, parent))?;
            }
            std::fs::copy(path, &target).map_err(|e| io(e, path))?;
            n += 1;
        }
    }
    Ok(n)
}

/// Source files of each language in `root`, by folder (relative paths).
fn folders_by_language(root: &Path) -> BTreeMap<Lang, Vec<PathBuf>> {
    let mut out: BTreeMap<Lang, Vec<PathBuf>> = BTreeMap::new();
    for entry in ignore::WalkBuilder::new(root).build().filter_map(Result::ok) {
        if !entry.file_type().is_some_and(|t| t.is_file()) {
            continue;
        }
        let Some(lang) = Lang::of_path(&entry.path().to_string_lossy()) else {
            continue;
        };
        let dir = entry
            .path()
            .parent()
            .and_then(|p| p.strip_prefix(root).ok())
            .map(Path::to_path_buf)
            .unwrap_or_default();
        out.entry(lang).or_default().push(dir);
    }
    out
}

/// The Go package of a folder, from a file in it (`main` if none says).
fn go_package(dir: &Path) -> String {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "go"))
        .find_map(|e| {
            let text = std::fs::read_to_string(e.path()).ok()?;
            text.lines()
                .find_map(|l| l.strip_prefix("package "))
                .map(|p| p.trim().to_owned())
        })
        .unwrap_or_else(|| "main".to_owned())
}

/// Plants `count` twins (half vulnerable, half safe; pairs of one template)
/// of `cwes` into `root`, in folders that already hold code of the twin's
/// language, languages drawn by how much of the tree is in them (for a CWE
/// with no template in the tree's languages, any template's language, at
/// the root). Returns the truth for every planted file.
pub fn plant(root: &Path, count: usize, cwes: &[String], seed: u64) -> Result<Vec<Truth>, BenchError> {
    let folders = folders_by_language(root);
    let usable: Vec<&Template> = TEMPLATES.iter().filter(|t| cwes.iter().any(|c| c == t.cwe)).collect();
    for cwe in cwes {
        if !usable.iter().any(|t| t.cwe == cwe) {
            let mut known: Vec<&str> = TEMPLATES.iter().map(|t| t.cwe).collect();
            known.dedup();
            return Err(BenchError::NoTemplate(cwe.clone(), known.join(", ")));
        }
    }
    let mut rng = Rng::new(seed);
    let mut truth = Vec::new();
    for pair in 0..count.div_ceil(2) {
        // CWEs in turn; within one, a language of the tree weighted by its
        // files there (any template's language when the tree has none).
        let cwe = &cwes[pair % cwes.len()];
        let of_cwe: Vec<&&Template> = usable.iter().filter(|t| t.cwe == cwe).collect();
        let present = |t: &Template| folders.get(&t.lang).map_or(0, Vec::len);
        let any_present = of_cwe.iter().any(|t| present(t) > 0);
        let weights: Vec<usize> = of_cwe
            .iter()
            .map(|t| if any_present { present(t) } else { 1 })
            .collect();
        let mut pick = rng.below(weights.iter().sum());
        let template = of_cwe
            .iter()
            .zip(&weights)
            .find(|(_, w)| {
                if pick < **w {
                    true
                } else {
                    pick -= **w;
                    false
                }
            })
            .map_or(of_cwe[0], |(t, _)| *t);
        let dirs = folders.get(&template.lang);
        let dir = dirs.map_or_else(PathBuf::new, |d| d[rng.below(d.len())].clone());
        let package = if template.lang == Lang::Go {
            go_package(&root.join(&dir))
        } else {
            String::new()
        };
        for (k, vulnerable) in [true, false].into_iter().enumerate() {
            if truth.len() == count {
                break;
            }
            let n = pair * 2 + k + 1;
            let text = if vulnerable { template.vulnerable } else { template.safe };
            let (text, file) = fill(text, template.lang, n, &mut rng, &package);
            let rel = dir.join(&file);
            let path = root.join(&rel);
            std::fs::write(&path, text).map_err(|e| BenchError::Io(format!("{}: {e}", path.display())))?;
            truth.push(Truth {
                path: rel.to_string_lossy().replace('\\', "/"),
                cwe: template.cwe.to_owned(),
                vulnerable,
                rule: template.rule.to_owned(),
                lines: None,
                form: Some(template.form.to_owned()),
            });
        }
    }
    Ok(truth)
}

/// An external suite's truth: JSONL, one file per line,
/// `{"path": "...", "cwe": "CWE-89", "vulnerable": true, "lines": [5, 9]}`
/// (lines optional), paths relative to the audited folder. `rule_of`
/// names the pipeline rule of a CWE.
pub fn read_truth(file: &Path, rule_of: &dyn Fn(&str) -> Option<String>) -> Result<Vec<Truth>, BenchError> {
    let text = std::fs::read_to_string(file).map_err(|e| BenchError::Io(format!("--truth {}: {e}", file.display())))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |message: String| BenchError::Truth {
            file: file.display().to_string(),
            line: i + 1,
            message,
        };
        let mut t: Truth = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
        if t.rule.is_empty() {
            t.rule =
                rule_of(&t.cwe).ok_or_else(|| bad(format!("{} is not the CWE of any rule of the pipeline", t.cwe)))?;
        }
        out.push(t);
    }
    Ok(out)
}

/// Counts for one CWE (or all) in one mode.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Score {
    pub cwe: String,
    pub tp: usize,
    #[serde(rename = "fn")]
    pub fn_: usize,
    pub fp: usize,
    pub tn: usize,
    pub tpr: f64,
    pub fpr: f64,
    /// TPR minus FPR.
    pub youden: f64,
    pub precision: f64,
    pub f1: f64,
}

impl Score {
    fn finish(mut self) -> Self {
        let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        self.tpr = ratio(self.tp, self.tp + self.fn_);
        self.fpr = ratio(self.fp, self.fp + self.tn);
        self.youden = self.tpr - self.fpr;
        self.precision = ratio(self.tp, self.tp + self.fp);
        self.f1 = if self.precision + self.tpr == 0.0 {
            0.0
        } else {
            2.0 * self.precision * self.tpr / (self.precision + self.tpr)
        };
        self
    }
}

/// One mode's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModeScore {
    pub mode: Mode,
    pub per_cwe: Vec<Score>,
    pub all: Score,
    /// Findings in files the truth does not list (the real corpus's own;
    /// the bench cannot say whether they are right).
    pub other_findings: usize,
    pub seconds: f64,
    /// Each scored file and whether it came out positive.
    pub results: Vec<(String, bool)>,
}

/// Whether `report` flags `t` in `mode`.
fn positive(t: &Truth, report: &AuditReport, root: &str, mode: Mode) -> bool {
    report.findings.iter().any(|f| {
        let path = f.anchor.path.strip_prefix(root).unwrap_or(&f.anchor.path);
        let path = path.trim_start_matches('/');
        let lines_ok = t
            .lines
            .is_none_or(|(a, b)| f.anchor.line_start <= b && a <= f.anchor.line_end);
        if path != t.path || f.rule_id != t.rule || !lines_ok {
            return false;
        }
        match mode {
            Mode::Rules => f.rule_match.is_some(),
            Mode::Model => f.tier != Tier::Unverified,
            Mode::Both => match f.tier {
                Tier::Confirmed | Tier::Verified => true,
                Tier::Candidate => !f.verdict.as_ref().is_some_and(Verdict::dismisses),
                Tier::Unverified => false,
            },
        }
    })
}

/// Scores one audit against the truth. `root` is the prefix the report's
/// paths carry before the truth's relative paths (the audited folder as
/// the corpus names it).
#[must_use]
pub fn score(truth: &[Truth], report: &AuditReport, root: &str, mode: Mode, seconds: f64) -> ModeScore {
    let mut per: BTreeMap<String, Score> = BTreeMap::new();
    let mut all = Score {
        cwe: "all".to_owned(),
        ..Score::default()
    };
    let mut results = Vec::new();
    for t in truth {
        let hit = positive(t, report, root, mode);
        results.push((t.path.clone(), hit));
        let s = per.entry(t.cwe.clone()).or_insert_with(|| Score {
            cwe: t.cwe.clone(),
            ..Score::default()
        });
        for s in [s, &mut all] {
            match (t.vulnerable, hit) {
                (true, true) => s.tp += 1,
                (true, false) => s.fn_ += 1,
                (false, true) => s.fp += 1,
                (false, false) => s.tn += 1,
            }
        }
    }
    let listed: std::collections::HashSet<&str> = truth.iter().map(|t| t.path.as_str()).collect();
    let other_findings = report
        .findings
        .iter()
        .filter(|f| {
            let p = f.anchor.path.strip_prefix(root).unwrap_or(&f.anchor.path);
            !listed.contains(p.trim_start_matches('/'))
        })
        .count();
    ModeScore {
        mode,
        per_cwe: per.into_values().map(Score::finish).collect(),
        all: all.finish(),
        other_findings,
        seconds,
        results,
    }
}

/// The whole bench's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditBench {
    pub seed: u64,
    /// Planted (false: read from --truth).
    pub planted: bool,
    pub truth: Vec<Truth>,
    pub files_in_corpus: usize,
    pub modes: Vec<ModeScore>,
    pub engine: String,
    pub model: String,
}

#[cfg(test)]
mod tests;
