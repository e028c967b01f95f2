//! Audit reports: SARIF 2.1.0, Markdown, a self-contained HTML page, and
//! the terminal summary. The JSON report is the `AuditReport` itself
//! (schema: `schemas/audit-report.schema.json`).
//!
//! Never changes a finding: reports render what the audit found, by tier,
//! every tier labelled; unverified findings are left out of SARIF and
//! collapsed elsewhere unless `Shown::unverified`.

mod page;

use super::terminal::field;
use std::fmt::Write as _;

use serde_json::{json, Value};

pub use page::{html, markdown};

use crate::tasks::audit::{AuditReport, EvidenceMatch, Finding, Tier, Verdict, VerdictKind, FINGERPRINT_KEY};
use crate::tasks::citations::CitationStatus;

/// What the reports show beyond the default.
#[derive(Debug, Clone, Copy, Default)]
pub struct Shown {
    /// Unverified findings listed with the rest, and in SARIF.
    pub unverified: bool,
}

/// A verdict in words: what the model said, why, and each hop of the
/// source path with whether its quote checked out.
#[must_use]
pub fn verdict_text(v: &Verdict) -> String {
    let said = match v.verdict {
        VerdictKind::Confirmed => "confirmed",
        VerdictKind::Dismissed => "dismissed",
        VerdictKind::Uncertain => "uncertain",
        VerdictKind::NotJudged => "not judged",
    };
    let mut out = said.to_owned();
    if v.verdict == VerdictKind::Dismissed && !v.dismisses() {
        out.push_str(" (citing no line that checks out: the match stands)");
    }
    if !v.reason.is_empty() {
        let _ = write!(out, ": {}", v.reason);
    }
    if !v.path.is_empty() {
        let hops: Vec<String> = v
            .path
            .iter()
            .map(|h| {
                format!(
                    "{} ({})",
                    h.anchor,
                    if h.verified { "checked" } else { "quote not found there" }
                )
            })
            .collect();
        let label = if v.verdict == VerdictKind::Confirmed {
            "Source path"
        } else {
            "Cited"
        };
        let _ = write!(out, ". {label}: {}", hops.join(" → "));
    } else if v.verdict == VerdictKind::Confirmed {
        out.push_str(". No source path given");
    }
    out
}

/// SARIF's `level` for a severity: by its name where it is a usual one,
/// else by its place in the pipeline's scale (top half error, then
/// warning, lowest note).
fn sarif_level(severity: &str, scale: &[String]) -> &'static str {
    match severity.to_ascii_lowercase().as_str() {
        "critical" | "high" | "error" | "blocker" => "error",
        "medium" | "moderate" | "warning" => "warning",
        "low" | "info" | "note" | "minor" => "note",
        _ => {
            let rank = scale.iter().position(|s| s == severity).unwrap_or(scale.len());
            if rank * 2 < scale.len() {
                "error"
            } else if rank + 1 < scale.len() {
                "warning"
            } else {
                "note"
            }
        }
    }
}

/// GitHub code scanning's `security-severity` (a CVSS-like score) for
/// security rules.
fn security_severity(severity: &str) -> Option<&'static str> {
    match severity {
        "critical" => Some("9.5"),
        "high" => Some("8.0"),
        "medium" => Some("5.5"),
        "low" => Some("3.0"),
        _ => None,
    }
}

/// A corpus path as a relative URI reference: unreserved characters and
/// `/` kept, everything else percent-encoded.
fn uri_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The report as a SARIF 2.1.0 log. `root` is the audited folder's
/// absolute path, when known: results are relative to it (`%SRCROOT%`).
#[must_use]
pub fn sarif(report: &AuditReport, root: Option<&std::path::Path>, shown: Shown) -> Value {
    let scale = &report.pipeline.severities;
    let rules: Vec<Value> = report
        .pipeline
        .rules
        .iter()
        .map(|r| {
            let mut tags = vec![report.pipeline.name.clone()];
            let mut properties = json!({});
            if let Some(cwe) = &r.cwe {
                if !tags.iter().any(|t| t == "security") {
                    tags.insert(0, "security".to_owned());
                }
                tags.push(format!("external/cwe/{}", cwe.to_ascii_lowercase()));
                if let Some(s) = security_severity(&r.severity) {
                    properties["security-severity"] = json!(s);
                }
            }
            properties["tags"] = json!(tags);
            properties["severity"] = json!(r.severity);
            json!({
                "id": r.id,
                "name": r.title,
                "shortDescription": {"text": r.title},
                "fullDescription": {"text": r.description},
                "help": {"text": r.description},
                "defaultConfiguration": {"level": sarif_level(&r.severity, scale)},
                "properties": properties,
            })
        })
        .collect();
    let results: Vec<Value> = report
        .findings
        .iter()
        .filter(|f| shown.unverified || f.tier != Tier::Unverified)
        .map(|f| {
            let rule_index = report.pipeline.rules.iter().position(|r| r.id == f.rule_id);
            let mut message = f.title.clone();
            if !f.explanation.is_empty() {
                let _ = write!(message, ": {}", f.explanation);
            }
            if !f.fix.is_empty() {
                let _ = write!(message, " Fix: {}", f.fix);
            }
            if f.tier == Tier::Unverified {
                let _ = write!(message, " (unverified: {})", why_unverified(f));
            } else {
                let _ = write!(message, " ({}: {})", f.tier.label(), f.tier.meaning());
            }
            if let Some(v) = &f.verdict {
                let _ = write!(message, " Model: {}.", verdict_text(v));
            }
            let mut region = json!({"startLine": f.anchor.line_start.max(1), "endLine": f.anchor.line_end.max(1)});
            if !f.evidence.is_empty() {
                region["snippet"] = json!({"text": f.evidence});
            }
            let mut location = json!({
                "physicalLocation": {
                    "artifactLocation": {"uri": uri_path(&f.anchor.path), "uriBaseId": "%SRCROOT%"},
                    "region": region,
                }
            });
            if let Some(symbol) = &f.anchor.symbol {
                location["logicalLocations"] = json!([{"fullyQualifiedName": symbol}]);
            }
            let mut result = json!({
                "ruleId": f.rule_id,
                "level": sarif_level(&f.severity, scale),
                "message": {"text": message},
                "locations": [location],
                "partialFingerprints": {FINGERPRINT_KEY: f.id},
                "properties": {
                    "severity": f.severity,
                    "tier": f.tier,
                    "origin": f.origin,
                    "verified": f.verified,
                    "evidenceMatch": f.evidence_match,
                    "occurrences": f.occurrences,
                },
            });
            if let Some(i) = rule_index {
                result["ruleIndex"] = json!(i);
            }
            if let Some(cwe) = &f.cwe {
                result["properties"]["cwe"] = json!(cwe);
            }
            if let Some(m) = &f.rule_match {
                result["properties"]["structuralRule"] = json!(m.check);
            }
            if let Some(v) = &f.verdict {
                result["properties"]["verdict"] = json!(v.verdict);
            }
            result
        })
        .collect();
    let mut run = json!({
        "tool": {"driver": {
            "name": "scout",
            "version": report.scout_version,
            "rules": rules,
            "properties": {"pipeline": report.pipeline.name, "pipelineVersion": report.pipeline.version},
        }},
        "invocations": [{
            "executionSuccessful": report.summary.failed_windows == 0,
            "properties": {"engine": report.engine, "model": report.model, "filesAudited": report.files_audited},
        }],
        "results": results,
        "columnKind": "unicodeCodePoints",
    });
    if let Some(root) = root {
        let mut uri = format!("file://{}", uri_path(&root.to_string_lossy()));
        if !uri.ends_with('/') {
            uri.push('/');
        }
        run["originalUriBaseIds"] = json!({"%SRCROOT%": {"uri": uri}});
    }
    json!({
        "$schema": "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json",
        "version": "2.1.0",
        "runs": [run],
    })
}

/// The structural rules' pass, in one line.
#[must_use]
pub fn rules_text(s: &crate::tasks::audit::ScanStats) -> String {
    let skipped = if s.files_skipped > 0 {
        format!(" ({} over 2 MiB not parsed)", s.files_skipped)
    } else {
        String::new()
    };
    format!(
        "rules: {} structural rule{} over {} file{}{skipped}: {} candidate{} in {:.1} s",
        s.rules,
        plural(s.rules),
        s.files_scanned,
        plural(s.files_scanned),
        s.candidates,
        plural(s.candidates),
        s.ms as f64 / 1000.0
    )
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// Why a finding is unverified, in words.
#[must_use]
pub fn why_unverified(f: &Finding) -> String {
    match (f.anchor.status, f.evidence_match) {
        (CitationStatus::Unknown, _) => "no such file in the corpus".to_owned(),
        (CitationStatus::OutOfRange, EvidenceMatch::ElsewhereInFile) => format!(
            "the cited lines are past the end of the file; the quote is at {}",
            f.evidence_found_at.as_deref().unwrap_or("?")
        ),
        (CitationStatus::OutOfRange, _) => "the cited lines are past the end of the file".to_owned(),
        (_, EvidenceMatch::ElsewhereInFile) => format!(
            "the quote is not in the cited lines but at {}",
            f.evidence_found_at.as_deref().unwrap_or("?")
        ),
        (_, EvidenceMatch::NotFound) => "the quoted code is not in the file".to_owned(),
        (_, EvidenceMatch::Empty) => "the finding quotes no code".to_owned(),
        (CitationStatus::Valid, EvidenceMatch::InCitedLines) => String::new(),
    }
}

pub(super) fn place(f: &Finding) -> String {
    match &f.anchor.symbol {
        Some(s) => format!("{} ({s})", f.anchor.display()),
        None => f.anchor.display(),
    }
}

/// A code fence longer than any run of backticks in `text`.
pub(super) fn fence(text: &str) -> String {
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    "`".repeat(longest.max(2) + 1)
}

/// The one-line totals.
pub(super) fn totals(r: &AuditReport) -> String {
    let s = &r.summary;
    let tiers: Vec<String> = Tier::ALL
        .iter()
        .map(|t| format!("{} {}", s.by_tier.get(t).copied().unwrap_or(0), t.label()))
        .collect();
    let mut line = format!(
        "{} finding{} ({}) in {} of {} files",
        s.findings,
        if s.findings == 1 { "" } else { "s" },
        tiers.join(", "),
        r.files_audited,
        r.files_in_corpus
    );
    if let Some(d) = &r.diff {
        let _ = write!(line, ", on lines changed since {} ({} files)", d.rev, d.files);
    }
    if let Some(b) = &r.baseline {
        let _ = write!(line, ", {} more already in {}", b.known, b.file);
    }
    if r.windows.len() > 1 {
        let _ = write!(line, ", {} windows", r.windows.len());
    }
    if s.failed_windows > 0 {
        let _ = write!(line, ", {} window(s) FAILED", s.failed_windows);
    }
    line
}

/// The terminal summary: one line per finding, then the totals.
#[must_use]
pub fn text(r: &AuditReport, shown: Shown) -> String {
    let mut out = String::new();
    let width = r.pipeline.severities.iter().map(String::len).max().unwrap_or(4);
    let mut hidden = 0;
    for f in &r.findings {
        if f.tier == Tier::Unverified && !shown.unverified {
            hidden += 1;
            continue;
        }
        let cwe = f.cwe.as_deref().map(|c| format!(" {c}")).unwrap_or_default();
        let dismissed = match &f.verdict {
            Some(v) if v.dismisses() => " (the model dismissed it)",
            Some(v) if v.verdict == VerdictKind::Dismissed => {
                " (the model dismissed it, citing no line that checks out)"
            }
            _ => "",
        };
        let _ = writeln!(
            out,
            "{:<12}  {:<width$}  {}  {}{cwe}  {}{dismissed}",
            format!("[{}]", f.tier.label()),
            field(&f.severity),
            field(&place(f)),
            field(&f.rule_id),
            field(&f.title),
        );
    }
    if hidden > 0 {
        let _ = writeln!(
            out,
            "{hidden} unverified finding{} not listed (their code is not where they say): --show-unverified lists them",
            if hidden == 1 { "" } else { "s" }
        );
    }
    for (i, w) in r.windows.iter().enumerate() {
        if let Some(e) = &w.error {
            let _ = writeln!(out, "window {} of {} failed: {}", i + 1, r.windows.len(), field(e));
        } else if w.truncated {
            let _ = writeln!(
                out,
                "window {} of {}: the answer hit --max-tokens; findings after the cut are lost",
                i + 1,
                r.windows.len()
            );
        }
    }
    let _ = writeln!(out, "{}", totals(r));
    out
}

#[cfg(test)]
mod tests;
