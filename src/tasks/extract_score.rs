//! Extractions scored against ground truth, field by field: exact match
//! (SROIE's measure) and loose match (case, spaces and number formatting
//! ignored), for `scout bench extract`.
//!
//! Pure: the extractions come from [`crate::tasks::extract::extract`], the
//! truth from a JSONL file or a folder of SROIE key files.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Map, Value};

use crate::tasks::extract::Extraction;

/// One document's true fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Truth {
    /// The file the fields belong to: a path, a file name, or (from a
    /// folder of key files) a file stem.
    pub file: String,
    pub fields: Map<String, Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum TruthError {
    #[error("reading {path}: {error}")]
    Read { path: PathBuf, error: std::io::Error },
    #[error("{path}:{line}: {why}")]
    Line { path: PathBuf, line: usize, why: String },
    #[error("{0} holds no truth (a JSONL file of {{\"file\": ..., fields...}}, or a folder of NAME.json key files)")]
    Empty(PathBuf),
}

/// Reads ground truth: a JSONL file, one object per document with its
/// `file` (or `path`) and fields; or a folder of `NAME.json` files, one
/// object of fields each, for the file whose stem is NAME (SROIE's
/// `labels/` folder).
pub fn read_truth(path: &Path) -> Result<Vec<Truth>, TruthError> {
    let read = |p: &Path| {
        std::fs::read_to_string(p).map_err(|error| TruthError::Read {
            path: p.to_owned(),
            error,
        })
    };
    let mut out = Vec::new();
    if path.is_dir() {
        let entries = std::fs::read_dir(path).map_err(|error| TruthError::Read {
            path: path.to_owned(),
            error,
        })?;
        let mut files: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        for file in files {
            let text = read(&file)?;
            let fields = object(&text).map_err(|why| TruthError::Line {
                path: file.clone(),
                line: 1,
                why,
            })?;
            let stem = file
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            out.push(Truth { file: stem, fields });
        }
    } else {
        let text = read(path)?;
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let err = |why: String| TruthError::Line {
                path: path.to_owned(),
                line: i + 1,
                why,
            };
            let mut fields = object(line).map_err(err)?;
            let file = ["file", "path"]
                .iter()
                .find_map(|k| fields.shift_remove(*k))
                .and_then(|v| v.as_str().map(str::to_owned))
                .ok_or_else(|| err("no \"file\" (or \"path\") naming the document".into()))?;
            out.push(Truth { file, fields });
        }
    }
    if out.is_empty() {
        return Err(TruthError::Empty(path.to_owned()));
    }
    Ok(out)
}

fn object(text: &str) -> Result<Map<String, Value>, String> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err("not a JSON object".into()),
        Err(e) => Err(format!("not JSON: {e}")),
    }
}

/// One field of one document.
#[derive(Debug, Clone, Serialize)]
pub struct FieldResult {
    pub file: String,
    pub field: String,
    pub truth: String,
    /// What was extracted (empty when nothing was).
    pub got: String,
    pub exact: bool,
    pub loose: bool,
}

/// One field over every document.
#[derive(Debug, Clone, Serialize)]
pub struct FieldScore {
    pub field: String,
    pub of: usize,
    pub exact: usize,
    pub loose: usize,
    /// Documents where the field was not extracted at all.
    pub missing: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExtractScore {
    /// Truth lines matched to an extraction.
    pub documents: usize,
    /// Truth lines no extraction matched (each field counts as a miss).
    pub unmatched: Vec<String>,
    pub fields: Vec<FieldScore>,
    pub exact: usize,
    pub loose: usize,
    pub of: usize,
    pub results: Vec<FieldResult>,
}

/// Whether an extraction of `path` is the document `file` names.
fn names(file: &str, path: &str) -> bool {
    let file = file.trim_start_matches("./");
    if path == file || path.ends_with(&format!("/{file}")) {
        return true;
    }
    let name = path.rsplit('/').next().unwrap_or(path);
    name.rsplit_once('.').is_some_and(|(stem, _)| stem == file)
}

/// A value as text: strings as they are, numbers as JSON writes them,
/// nothing as empty.
fn shown(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// Equal ignoring case and spaces, or as numbers (`6.9` and `6.90`).
fn loose_eq(a: &str, b: &str) -> bool {
    let squash = |s: &str| -> String { s.split_whitespace().collect::<String>().to_uppercase() };
    if squash(a) == squash(b) {
        return true;
    }
    let number = |s: &str| {
        s.trim()
            .trim_start_matches(['$', '€', '£'])
            .replace(',', "")
            .parse::<f64>()
            .ok()
    };
    matches!((number(a), number(b)), (Some(x), Some(y)) if (x - y).abs() < 1e-9)
}

/// Scores `results` against `truth`: every true field of every truth
/// line, whether or not an extraction matched it.
#[must_use]
pub fn score(truth: &[Truth], results: &[Extraction]) -> ExtractScore {
    let mut out = ExtractScore {
        documents: 0,
        unmatched: Vec::new(),
        fields: Vec::new(),
        exact: 0,
        loose: 0,
        of: 0,
        results: Vec::new(),
    };
    for t in truth {
        let found = results.iter().find(|r| names(&t.file, &r.path));
        match found {
            Some(_) => out.documents += 1,
            None => out.unmatched.push(t.file.clone()),
        }
        let data = found.and_then(|r| r.data.as_ref());
        for (field, value) in &t.fields {
            let truth = shown(Some(value));
            let got = shown(data.and_then(|d| d.get(field)));
            let exact = !got.is_empty() && got == truth;
            let loose = !got.is_empty() && loose_eq(&got, &truth);
            let i = if let Some(i) = out.fields.iter().position(|f| f.field == *field) {
                i
            } else {
                out.fields.push(FieldScore {
                    field: field.clone(),
                    of: 0,
                    exact: 0,
                    loose: 0,
                    missing: 0,
                });
                out.fields.len() - 1
            };
            let f = &mut out.fields[i];
            f.of += 1;
            f.exact += usize::from(exact);
            f.loose += usize::from(loose);
            f.missing += usize::from(got.is_empty());
            out.of += 1;
            out.exact += usize::from(exact);
            out.loose += usize::from(loose);
            out.results.push(FieldResult {
                file: t.file.clone(),
                field: field.clone(),
                truth,
                got,
                exact,
                loose,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn extraction(path: &str, data: Value) -> Extraction {
        Extraction {
            path: path.into(),
            page: None,
            data: Some(data),
            valid: true,
            errors: Vec::new(),
            fields: Vec::new(),
            constrained: true,
            usage: crate::tasks::run::Usage::default(),
            ms: 0,
        }
    }

    #[test]
    fn fields_score_exact_and_loose() {
        let dir = tempfile::tempdir().unwrap();
        let truth = dir.path().join("truth.jsonl");
        std::fs::write(
            &truth,
            "{\"file\": \"r1.png\", \"company\": \"MAJU BOOKSTORE\", \"total\": \"6.90\"}\n\n{\"file\": \"r2.png\", \"company\": \"X\", \"total\": \"1.00\"}\n",
        )
        .unwrap();
        let truth = read_truth(&truth).unwrap();
        let results = vec![extraction(
            "scans/r1.png",
            json!({"company": "Maju  Bookstore", "total": 6.9}),
        )];
        let s = score(&truth, &results);
        assert_eq!((s.documents, s.unmatched.clone()), (1, vec!["r2.png".to_owned()]));
        assert_eq!((s.of, s.exact, s.loose), (4, 0, 2));
        let total = s.fields.iter().find(|f| f.field == "total").unwrap();
        assert_eq!((total.of, total.exact, total.loose, total.missing), (2, 0, 1, 1));
    }

    #[test]
    fn a_folder_of_key_files_matches_by_stem() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("X51.json"), "{\"total\": \"9.00\"}").unwrap();
        let truth = read_truth(dir.path()).unwrap();
        let s = score(&truth, &[extraction("images/X51.jpg", json!({"total": "9.00"}))]);
        assert_eq!((s.documents, s.exact, s.of), (1, 1, 1));
        // A stem is not a suffix match: X5 is another receipt.
        assert!(!names("X5", "images/X51.jpg"));
    }

    #[test]
    fn bad_truth_names_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let truth = dir.path().join("t.jsonl");
        std::fs::write(&truth, "{\"file\": \"a\", \"x\": 1}\n{\"x\": 2}\n").unwrap();
        let e = read_truth(&truth).unwrap_err().to_string();
        assert!(e.contains("t.jsonl:2:") && e.contains("\"file\""), "{e}");
    }
}
