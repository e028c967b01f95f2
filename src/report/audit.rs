//! Audit reports: SARIF 2.1.0, Markdown, a self-contained HTML page, and
//! the terminal summary. The JSON report is the `AuditReport` itself
//! (schema: `schemas/audit-report.schema.json`).
//!
//! Never changes a finding: reports render what the audit found.

use super::terminal::field;
use std::fmt::Write as _;

use serde_json::{json, Value};

use crate::report::map::script_json;
use crate::tasks::audit::{AuditReport, EvidenceMatch, Finding};
use crate::tasks::citations::CitationStatus;

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
pub fn sarif(report: &AuditReport, root: Option<&std::path::Path>) -> Value {
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
        .map(|f| {
            let rule_index = report.pipeline.rules.iter().position(|r| r.id == f.rule_id);
            let mut message = f.title.clone();
            if !f.explanation.is_empty() {
                let _ = write!(message, ": {}", f.explanation);
            }
            if !f.fix.is_empty() {
                let _ = write!(message, " Fix: {}", f.fix);
            }
            if !f.verified {
                let _ = write!(message, " (unverified: {})", why_unverified(f));
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
                "partialFingerprints": {"scoutFindingId/v1": f.id},
                "properties": {
                    "severity": f.severity,
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

fn place(f: &Finding) -> String {
    match &f.anchor.symbol {
        Some(s) => format!("{} ({s})", f.anchor.display()),
        None => f.anchor.display(),
    }
}

/// A code fence longer than any run of backticks in `text`.
fn fence(text: &str) -> String {
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    "`".repeat(longest.max(2) + 1)
}

/// The one-line totals.
fn totals(r: &AuditReport) -> String {
    let s = &r.summary;
    let mut line = format!(
        "{} finding{} ({} verified, {} unverified) in {} of {} files",
        s.findings,
        if s.findings == 1 { "" } else { "s" },
        s.verified,
        s.unverified,
        r.files_audited,
        r.files_in_corpus
    );
    if r.windows.len() > 1 {
        let _ = write!(line, ", {} windows", r.windows.len());
    }
    if s.failed_windows > 0 {
        let _ = write!(line, ", {} window(s) FAILED", s.failed_windows);
    }
    line
}

/// The report as Markdown.
#[must_use]
pub fn markdown(r: &AuditReport, corpus: &str) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# scout audit: {}\n", r.pipeline.name);
    let _ = writeln!(md, "{}\n", r.pipeline.description);
    let _ = writeln!(
        md,
        "- corpus: `{corpus}`\n- model: {} ({})\n- {}\n",
        r.model,
        r.engine,
        totals(r)
    );
    if !r.findings.is_empty() {
        md.push_str("| severity | findings |\n|---|---|\n");
        for sev in &r.pipeline.severities {
            if let Some(n) = r.summary.by_severity.get(sev) {
                let _ = writeln!(md, "| {sev} | {n} |");
            }
        }
        md.push('\n');
    }
    md.push_str("## Findings\n\n");
    if r.findings.is_empty() {
        md.push_str("None.\n");
    }
    for (i, f) in r.findings.iter().enumerate() {
        let cwe = f.cwe.as_deref().map(|c| format!(", {c}")).unwrap_or_default();
        let _ = writeln!(
            md,
            "### {}. [{}] {} — `{}`\n",
            i + 1,
            f.severity.to_uppercase(),
            f.title,
            place(f)
        );
        let check = if f.verified {
            "verified: the quoted code is in the cited lines".to_owned()
        } else {
            format!("**unverified**: {}", why_unverified(f))
        };
        let _ = writeln!(md, "Rule `{}`{cwe}. {check}.\n", f.rule_id);
        if !f.explanation.is_empty() {
            let _ = writeln!(md, "{}\n", f.explanation);
        }
        if let Some(code) = &f.code {
            let fence = fence(&code.text);
            let _ = writeln!(
                md,
                "From line {}:\n\n{fence}\n{}\n{fence}\n",
                code.line_start,
                code.text.trim_end_matches('\n')
            );
        } else if !f.evidence.is_empty() {
            let fence = fence(&f.evidence);
            let _ = writeln!(md, "Quoted:\n\n{fence}\n{}\n{fence}\n", f.evidence);
        }
        if !f.fix.is_empty() {
            let _ = writeln!(md, "**Fix:** {}\n", f.fix);
        }
    }
    let failed: Vec<_> = r
        .windows
        .iter()
        .enumerate()
        .filter(|(_, w)| w.error.is_some())
        .collect();
    if !failed.is_empty() {
        md.push_str("## Windows that failed\n\nTheir files were not audited.\n\n");
        for (i, w) in failed {
            let _ = writeln!(
                md,
                "- window {} ({} files): {}",
                i + 1,
                w.documents.len(),
                w.error.as_deref().unwrap_or("")
            );
        }
    }
    md
}

/// The terminal summary: one line per finding, then the totals.
#[must_use]
pub fn text(r: &AuditReport) -> String {
    let mut out = String::new();
    let width = r.pipeline.severities.iter().map(String::len).max().unwrap_or(4);
    for f in &r.findings {
        let cwe = f.cwe.as_deref().map(|c| format!(" {c}")).unwrap_or_default();
        let _ = writeln!(
            out,
            "{:<width$}  {}  {}{cwe}  {}{}",
            field(&f.severity),
            field(&place(f)),
            field(&f.rule_id),
            field(&f.title),
            if f.verified { "" } else { "  [unverified]" }
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

/// The report as one self-contained HTML page: totals, a chart of
/// findings by rule and severity, and a table sortable by any column
/// whose rows open to show the cited code.
#[must_use]
pub fn html(r: &AuditReport, corpus: &str) -> String {
    let data =
        json!({"corpus": corpus, "report": r, "unverified": r.findings.iter().map(why_unverified).collect::<Vec<_>>()});
    PAGE.replace("/*DATA*/null", &script_json(&data))
}

const PAGE: &str = r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>scout audit</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;background:#fafafa}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:24px 0 8px}
.totals{color:#555;margin-bottom:12px}
table{border-collapse:collapse;background:#fff;width:100%} td,th{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
th{cursor:pointer;user-select:none;background:#f0f0f0} th:after{content:" ⇅";color:#aaa}
.sev{font-weight:600;border-radius:3px;padding:1px 6px;color:#fff}
.unv{color:#b00;font-size:12px} .ok{color:#080;font-size:12px}
pre{background:#f6f8fa;border:1px solid #ddd;padding:8px;overflow:auto;margin:6px 0;font-size:12px}
tr.detail td{background:#fcfcfc} tr.row{cursor:pointer} tr.row:hover td{background:#f5f9ff}
.chart .bar{display:flex;align-items:center;margin:2px 0} .chart .label{width:220px;font-size:12px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.chart .seg{height:16px} .legend span{display:inline-block;margin-right:12px} .legend i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-2px}
</style></head><body>
<h1 id="title"></h1><div class="totals" id="totals"></div>
<h2>Findings by rule and severity</h2><div class="legend" id="legend"></div><div class="chart" id="chart"></div>
<h2>Findings</h2><p class="totals">Click a column to sort, a row to see its code.</p>
<table id="findings"><thead><tr><th data-k="severity">severity</th><th data-k="rule">rule</th><th data-k="place">where</th><th data-k="title">title</th><th data-k="verified">check</th></tr></thead><tbody></tbody></table>
<div id="failed"></div>
<script>
const data = /*DATA*/null;
const r = data.report, scale = r.pipeline.severities;
const palette = ["#b3261e","#e8710a","#f9ab00","#1e8e3e","#1a73e8","#5f6368"];
const color = s => palette[Math.min(scale.indexOf(s) < 0 ? palette.length - 1 : scale.indexOf(s), palette.length - 1)];
const el = (tag, text) => { const e = document.createElement(tag); if (text !== undefined) e.textContent = text; return e; };
document.getElementById("title").textContent = `scout audit: ${r.pipeline.name}`;
const s = r.summary;
document.getElementById("totals").textContent = `${s.findings} findings (${s.verified} verified, ${s.unverified} unverified) in ${r.files_audited} of ${r.files_in_corpus} files — ${data.corpus} — ${r.model} (${r.engine})` + (s.failed_windows ? ` — ${s.failed_windows} window(s) failed` : "");
for (const sev of scale) { const sp = el("span"); const i = el("i"); i.style.background = color(sev); sp.append(i, sev); document.getElementById("legend").append(sp); }
const byRule = {};
for (const f of r.findings) { byRule[f.rule_id] ??= {}; byRule[f.rule_id][f.severity] = (byRule[f.rule_id][f.severity] || 0) + 1; }
const most = Math.max(1, ...Object.values(byRule).map(c => Object.values(c).reduce((a, b) => a + b, 0)));
const chart = document.getElementById("chart");
if (r.findings.length === 0) chart.textContent = "No findings.";
for (const [rule, counts] of Object.entries(byRule).sort()) {
  const bar = el("div"); bar.className = "bar"; const label = el("div", rule); label.className = "label"; bar.append(label);
  let n = 0;
  for (const sev of scale) if (counts[sev]) { const seg = el("div"); seg.className = "seg"; seg.style.background = color(sev); seg.style.width = (400 * counts[sev] / most) + "px"; seg.title = `${sev}: ${counts[sev]}`; bar.append(seg); n += counts[sev]; }
  bar.append(el("span", " " + n)); chart.append(bar);
}
const rows = r.findings.map((f, i) => ({f, i, severity: scale.indexOf(f.severity), rule: f.rule_id, place: `${f.anchor.path}:${String(f.anchor.line_start).padStart(8, "0")}`, title: f.title, verified: f.verified ? 0 : 1}));
const body = document.querySelector("#findings tbody");
function render() {
  body.replaceChildren();
  for (const {f, i} of rows) {
    const tr = el("tr"); tr.className = "row";
    const sev = el("span", f.severity); sev.className = "sev"; sev.style.background = color(f.severity);
    const td0 = el("td"); td0.append(sev);
    let where = `${f.anchor.path}:${f.anchor.line_start}` + (f.anchor.line_end !== f.anchor.line_start ? `-${f.anchor.line_end}` : "");
    if (f.anchor.symbol) where += ` (${f.anchor.symbol})`;
    const check = el("span", f.verified ? "verified" : "unverified"); check.className = f.verified ? "ok" : "unv";
    const td4 = el("td"); td4.append(check);
    tr.append(td0, el("td", f.rule_id + (f.cwe ? ` (${f.cwe})` : "")), el("td", where), el("td", f.title), td4);
    const detail = el("tr"); detail.className = "detail"; detail.hidden = true;
    const cell = el("td"); cell.colSpan = 5;
    if (f.explanation) cell.append(el("p", f.explanation));
    if (!f.verified) { const p = el("p", "Unverified: " + data.unverified[i]); p.className = "unv"; cell.append(p); }
    if (f.code) { cell.append(el("div", `${f.anchor.path}, from line ${f.code.line_start}:`)); cell.append(el("pre", f.code.text)); }
    else if (f.evidence) { cell.append(el("div", "Quoted:")); cell.append(el("pre", f.evidence)); }
    if (f.fix) cell.append(el("p", "Fix: " + f.fix));
    detail.append(cell);
    tr.onclick = () => { detail.hidden = !detail.hidden; };
    body.append(tr, detail);
  }
}
let sortKey = "severity", ascending = true;
for (const th of document.querySelectorAll("th")) th.onclick = () => {
  const k = th.dataset.k; ascending = k === sortKey ? !ascending : true; sortKey = k;
  rows.sort((a, b) => (a[k] < b[k] ? -1 : a[k] > b[k] ? 1 : a.i - b.i) * (ascending ? 1 : -1)); render();
};
render();
const failed = r.windows.map((w, i) => [w, i]).filter(([w]) => w.error);
if (failed.length) {
  const box = document.getElementById("failed"); box.append(el("h2", "Windows that failed (their files were not audited)"));
  for (const [w, i] of failed) box.append(el("p", `window ${i + 1} (${w.documents.length} files): ${w.error}`));
}
</script></body></html>
"##;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_follow_names_then_place() {
        let scale: Vec<String> = ["p0", "p1", "p2", "p3"].map(String::from).to_vec();
        assert_eq!(sarif_level("critical", &scale), "error");
        assert_eq!(sarif_level("info", &scale), "note");
        assert_eq!(sarif_level("p0", &scale), "error");
        assert_eq!(sarif_level("p2", &scale), "warning");
        assert_eq!(sarif_level("p3", &scale), "note");
    }

    fn sample() -> AuditReport {
        use crate::tasks::audit::{AuditSummary, AuditWindow, CodeSnippet, FindingAnchor, PipelineInfo};
        let p = crate::tasks::pipeline::Pipeline::load("security", &crate::tasks::access::Access::Anywhere).unwrap();
        let finding = |rule: &str, sev: &str, path: &str, lines: (u32, u32), verified: bool| Finding {
            id: "0123456789abcdef".to_owned(),
            rule_id: rule.to_owned(),
            cwe: p.rule(rule).and_then(|r| r.cwe.clone()),
            severity: sev.to_owned(),
            title: p.rule(rule).unwrap().title.clone(),
            anchor: FindingAnchor {
                path: path.to_owned(),
                line_start: lines.0,
                line_end: lines.1,
                symbol: verified.then(|| "function find_user".to_owned()),
                status: CitationStatus::Valid,
            },
            evidence: "query = \"SELECT \" + name".to_owned(),
            explanation: "The name is pasted into the SQL text.".to_owned(),
            fix: "Pass it as a parameter.".to_owned(),
            verified,
            evidence_match: if verified {
                EvidenceMatch::InCitedLines
            } else {
                EvidenceMatch::ElsewhereInFile
            },
            evidence_found_at: (!verified).then(|| format!("{path}:9")),
            code: Some(CodeSnippet {
                line_start: 9,
                text: "    query = \"SELECT \" + name\n".to_owned(),
            }),
            windows: vec![0],
            occurrences: 1,
        };
        let findings = vec![
            finding("injection", "high", "app/db.py", (9, 9), true),
            finding("weak-crypto", "medium", "app/my auth.py", (2, 3), false),
        ];
        AuditReport {
            format: 1,
            scout_version: "0.1.0".to_owned(),
            pipeline: PipelineInfo {
                name: p.name.clone(),
                version: p.version,
                description: p.description.clone(),
                source: p.source.clone(),
                severities: p.severities.clone(),
                rules: p.rules[..2].to_vec(),
            },
            files_audited: 2,
            files_in_corpus: 3,
            summary: AuditSummary {
                findings: 2,
                verified: 1,
                unverified: 1,
                by_severity: [("high".to_owned(), 1), ("medium".to_owned(), 1)].into(),
                by_rule: [("injection".to_owned(), 1), ("weak-crypto".to_owned(), 1)].into(),
                failed_windows: 1,
            },
            findings,
            windows: vec![
                AuditWindow {
                    documents: vec!["app/db.py".to_owned()],
                    tokens: 900,
                    findings: 2,
                    truncated: false,
                    error: None,
                },
                AuditWindow {
                    documents: vec!["app/big.py".to_owned()],
                    tokens: 7000,
                    findings: 0,
                    truncated: false,
                    error: Some("the model's answer is not the findings JSON: sorry".to_owned()),
                },
            ],
            usage: crate::tasks::run::Usage::default(),
            timings: crate::tasks::run::Timings::default(),
            kv: crate::engine::KvUse::default(),
            engine: "llamacpp".to_owned(),
            model: "m.gguf".to_owned(),
        }
    }

    #[test]
    fn every_format_on_a_small_report() {
        let r = sample();
        insta::assert_snapshot!("audit_markdown", markdown(&r, "repo.scout.db"));
        insta::assert_snapshot!("audit_text", text(&r));
        let log = sarif(&r, Some(std::path::Path::new("/srv/my repo")));
        let schema: Value = serde_json::from_str(
            &std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/data/sarif/sarif-schema-2.1.0.json"
            ))
            .unwrap(),
        )
        .unwrap();
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(&schema)
            .unwrap();
        let errors: Vec<String> = validator.iter_errors(&log).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{errors:#?}");
        insta::assert_json_snapshot!("audit_sarif", log);
        // The JSON report: snapshot, and valid against its published schema.
        let report = serde_json::to_value(&r).unwrap();
        let schema: Value = serde_json::from_str(
            &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/audit-report.schema.json")).unwrap(),
        )
        .unwrap();
        let validator = jsonschema::validator_for(&schema).unwrap();
        let errors: Vec<String> = validator.iter_errors(&report).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{errors:#?}");
        insta::assert_json_snapshot!("audit_json", report);
        let page = html(&r, "repo.scout.db");
        let data = page
            .split("const data = ")
            .nth(1)
            .and_then(|rest| rest.split(";\nconst r = ").next())
            .unwrap();
        let data: Value = serde_json::from_str(data).unwrap();
        assert_eq!(data["report"]["findings"][1]["anchor"]["path"], "app/my auth.py");
        assert_eq!(
            data["unverified"][1],
            "the quote is not in the cited lines but at app/my auth.py:9"
        );
    }

    #[test]
    fn uris_and_fences() {
        assert_eq!(uri_path("src/a b/ü.rs"), "src/a%20b/%C3%BC.rs");
        assert_eq!(fence("plain"), "```");
        assert_eq!(fence("a ```` b"), "`````");
    }
}
