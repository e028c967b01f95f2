//! The audit report as Markdown and as one self-contained HTML page:
//! findings by tier, best first, the unverified ones collapsed unless asked
//! for.

use std::fmt::Write as _;

use serde_json::json;

use super::{fence, place, totals, verdict_text, why_unverified, Shown};
use crate::report::map::script_json;
use crate::tasks::audit::{AuditReport, Finding, Tier};

/// The report as Markdown: a section per tier, the unverified findings
/// inside a collapsed `<details>` unless `shown.unverified`.
#[must_use]
pub fn markdown(r: &AuditReport, corpus: &str, shown: Shown) -> String {
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
        md.push_str("| tier | meaning | findings |\n|---|---|---|\n");
        for tier in Tier::ALL {
            if let Some(n) = r.summary.by_tier.get(&tier) {
                let _ = writeln!(md, "| {} | {} | {n} |", tier.label(), tier.meaning());
            }
        }
        md.push('\n');
    }
    if r.findings.is_empty() {
        md.push_str("## Findings\n\nNone.\n");
    }
    let mut n = 0;
    for tier in Tier::ALL {
        let of_tier: Vec<&Finding> = r.findings.iter().filter(|f| f.tier == tier).collect();
        if of_tier.is_empty() {
            continue;
        }
        let collapsed = tier == Tier::Unverified && !shown.unverified;
        let _ = writeln!(md, "## {} ({})\n", heading(tier), of_tier.len());
        let _ = writeln!(md, "{}.\n", capitalised(tier.meaning()));
        if collapsed {
            let _ = writeln!(
                md,
                "<details><summary>{} unverified finding{} (scout could not find their code where they say; run with --show-unverified to list them with the rest)</summary>\n",
                of_tier.len(),
                if of_tier.len() == 1 { "" } else { "s" }
            );
        }
        for f in of_tier {
            n += 1;
            finding_markdown(&mut md, n, f);
        }
        if collapsed {
            md.push_str("</details>\n\n");
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

fn heading(tier: Tier) -> &'static str {
    match tier {
        Tier::Confirmed => "Confirmed",
        Tier::Verified => "Verified",
        Tier::Candidate => "Candidates",
        Tier::Unverified => "Unverified",
    }
}

fn capitalised(text: &str) -> String {
    let mut c = text.chars();
    c.next()
        .map(|first| first.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

fn finding_markdown(md: &mut String, n: usize, f: &Finding) {
    let cwe = f.cwe.as_deref().map(|c| format!(", {c}")).unwrap_or_default();
    let _ = writeln!(
        md,
        "### {n}. [{}] {} — `{}`\n",
        f.severity.to_uppercase(),
        f.title,
        place(f)
    );
    let check = match f.tier {
        Tier::Unverified => format!("**{}**: {}", f.tier.label(), why_unverified(f)),
        tier => format!("**{}**: {}", tier.label(), tier.meaning()),
    };
    let found_by = f
        .rule_match
        .as_ref()
        .map(|m| format!(" Matched by `{}`.", m.check))
        .unwrap_or_default();
    let _ = writeln!(md, "Rule `{}`{cwe}. {check}.{found_by}\n", f.rule_id);
    if let Some(claimed) = &f.claimed_severity {
        let _ = writeln!(
            md,
            "The model said {claimed}; an unverified finding is shown as info.\n"
        );
    }
    if let Some(v) = &f.verdict {
        let _ = writeln!(md, "Model: {}\n", verdict_text(v));
    }
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

/// The report as one self-contained HTML page: totals, a chart of
/// findings by rule and severity, and a table (by tier, then severity)
/// sortable by any column whose rows open to show the cited code; the
/// unverified rows are hidden behind a checkbox unless `shown.unverified`.
#[must_use]
pub fn html(r: &AuditReport, corpus: &str, shown: Shown) -> String {
    let tiers: Vec<_> = Tier::ALL
        .iter()
        .map(|t| json!({"tier": t, "meaning": t.meaning()}))
        .collect();
    let data = json!({
        "corpus": corpus,
        "report": r,
        "unverified": r.findings.iter().map(why_unverified).collect::<Vec<_>>(),
        "verdicts": r.findings.iter().map(|f| f.verdict.as_ref().map(verdict_text)).collect::<Vec<_>>(),
        "tiers": tiers,
        "show_unverified": shown.unverified,
    });
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
.unv{color:#b00;font-size:12px} .ok{color:#080;font-size:12px} .cand{color:#8a6d00;font-size:12px}
pre{background:#f6f8fa;border:1px solid #ddd;padding:8px;overflow:auto;margin:6px 0;font-size:12px}
tr.detail td{background:#fcfcfc} tr.row{cursor:pointer} tr.row:hover td{background:#f5f9ff}
.chart .bar{display:flex;align-items:center;margin:2px 0} .chart .label{width:220px;font-size:12px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.chart .seg{height:16px} .legend span{display:inline-block;margin-right:12px} .legend i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-2px}
</style></head><body>
<h1 id="title"></h1><div class="totals" id="totals"></div>
<h2>Findings by rule and severity</h2><div class="legend" id="legend"></div><div class="chart" id="chart"></div>
<h2>Findings</h2><p class="totals">Click a column to sort, a row to see its code.</p>
<p class="totals" id="tiers"></p>
<label><input type="checkbox" id="show-unverified"> show the unverified findings (scout could not find their code where they say; shown as info)</label>
<table id="findings"><thead><tr><th data-k="tier">tier</th><th data-k="severity">severity</th><th data-k="rule">rule</th><th data-k="place">where</th><th data-k="title">title</th></tr></thead><tbody></tbody></table>
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
const tierOrder = data.tiers.map(t => t.tier);
document.getElementById("tiers").textContent = data.tiers.filter(t => s.by_tier[t.tier]).map(t => `${t.tier} (${s.by_tier[t.tier]}): ${t.meaning}`).join(" · ");
const toggle = document.getElementById("show-unverified"); toggle.checked = data.show_unverified; toggle.onchange = () => render();
const rows = r.findings.map((f, i) => ({f, i, tier: tierOrder.indexOf(f.tier), severity: scale.indexOf(f.severity) < 0 ? scale.length : scale.indexOf(f.severity), rule: f.rule_id, place: `${f.anchor.path}:${String(f.anchor.line_start).padStart(8, "0")}`, title: f.title}));
const body = document.querySelector("#findings tbody");
function render() {
  body.replaceChildren();
  for (const {f, i} of rows) {
    if (f.tier === "unverified" && !toggle.checked) continue;
    const tr = el("tr"); tr.className = "row";
    const sev = el("span", f.severity); sev.className = "sev"; sev.style.background = color(f.severity);
    const td1 = el("td"); td1.append(sev);
    const tier = el("span", f.tier); tier.className = f.tier === "unverified" ? "unv" : f.tier === "candidate" ? "cand" : "ok";
    const td0 = el("td"); td0.append(tier);
    let where = `${f.anchor.path}:${f.anchor.line_start}` + (f.anchor.line_end !== f.anchor.line_start ? `-${f.anchor.line_end}` : "");
    if (f.anchor.symbol) where += ` (${f.anchor.symbol})`;
    tr.append(td0, td1, el("td", f.rule_id + (f.cwe ? ` (${f.cwe})` : "")), el("td", where), el("td", f.title));
    const detail = el("tr"); detail.className = "detail"; detail.hidden = true;
    const cell = el("td"); cell.colSpan = 5;
    if (f.rule_match) cell.append(el("p", `Matched by the structural rule ${f.rule_match.check}.`));
    if (data.verdicts[i]) cell.append(el("p", "Model: " + data.verdicts[i]));
    if (f.explanation) cell.append(el("p", f.explanation));
    if (f.tier === "unverified") { const p = el("p", "Unverified: " + data.unverified[i] + (f.claimed_severity ? ` (the model said ${f.claimed_severity})` : "")); p.className = "unv"; cell.append(p); }
    if (f.code) { cell.append(el("div", `${f.anchor.path}, from line ${f.code.line_start}:`)); cell.append(el("pre", f.code.text)); }
    else if (f.evidence) { cell.append(el("div", "Quoted:")); cell.append(el("pre", f.evidence)); }
    if (f.fix) cell.append(el("p", "Fix: " + f.fix));
    detail.append(cell);
    tr.onclick = () => { detail.hidden = !detail.hidden; };
    body.append(tr, detail);
  }
}
let sortKey = "tier", ascending = true;
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
