//! `scout bench audit`'s result: a table per mode and CWE on the terminal,
//! and one self-contained HTML page.

use std::fmt::Write as _;

use serde_json::json;

use crate::report::map::script_json;
use crate::tasks::audit_bench::{AuditBench, Score};

fn row(out: &mut String, mode: &str, s: &Score) {
    let _ = writeln!(
        out,
        "{mode:<6} {:<8} {:>4} {:>4} {:>4} {:>4} {:>6.2} {:>6.2} {:>7.2} {:>9.2} {:>5.2}",
        s.cwe, s.tp, s.fn_, s.fp, s.tn, s.tpr, s.fpr, s.youden, s.precision, s.f1
    );
}

/// The terminal table: one row per mode and CWE, then each mode's totals.
#[must_use]
pub fn text(b: &AuditBench) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<6} {:<8} {:>4} {:>4} {:>4} {:>4} {:>6} {:>6} {:>7} {:>9} {:>5}",
        "mode", "cwe", "tp", "fn", "fp", "tn", "tpr", "fpr", "youden", "precision", "f1"
    );
    for m in &b.modes {
        for s in &m.per_cwe {
            row(&mut out, m.mode.label(), s);
        }
        row(&mut out, m.mode.label(), &m.all);
    }
    let vulnerable = b.truth.iter().filter(|t| t.vulnerable).count();
    let _ = writeln!(
        out,
        "{} files scored ({vulnerable} vulnerable, {} safe){} in a corpus of {} files; seed {}; model {} ({})",
        b.truth.len(),
        b.truth.len() - vulnerable,
        if b.planted { ", planted" } else { ", from --truth" },
        b.files_in_corpus,
        b.seed,
        b.model,
        b.engine
    );
    for m in &b.modes {
        let _ = writeln!(
            out,
            "{}: {:.1} s; {} findings in files the truth does not list (not scored)",
            m.mode.label(),
            m.seconds,
            m.other_findings
        );
    }
    out
}

/// One self-contained page: the same table, and every scored file with
/// what each mode said.
#[must_use]
pub fn html(b: &AuditBench) -> String {
    PAGE.replace("/*DATA*/null", &script_json(&json!(b)))
}

const PAGE: &str = r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>scout bench audit</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;background:#fafafa}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:24px 0 8px}
table{border-collapse:collapse;background:#fff} td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
td:first-child,td:nth-child(2),th{text-align:left} .hit{background:#e6f4ea} .miss{background:#fce8e6}
.note{color:#555}
</style></head><body>
<h1>scout bench audit</h1><p class="note" id="note"></p>
<h2>By mode and CWE</h2><table id="scores"><thead><tr><th>mode</th><th>cwe</th><th>tp</th><th>fn</th><th>fp</th><th>tn</th><th>TPR</th><th>FPR</th><th>Youden</th><th>precision</th><th>F1</th></tr></thead><tbody></tbody></table>
<h2>Every scored file</h2><p class="note">Green: what the mode said is right for this file (found a vulnerable twin, or left a safe one alone); red: wrong.</p>
<table id="files"><thead><tr></tr></thead><tbody></tbody></table>
<script>
const b = /*DATA*/null;
const el = (tag, text) => { const e = document.createElement(tag); if (text !== undefined) e.textContent = text; return e; };
document.getElementById("note").textContent = `${b.truth.length} files scored (${b.planted ? "planted" : "from --truth"}) in a corpus of ${b.files_in_corpus} files; seed ${b.seed}; ${b.model} (${b.engine})`;
const body = document.querySelector("#scores tbody");
for (const m of b.modes) for (const s of [...m.per_cwe, m.all]) {
  const tr = el("tr");
  for (const v of [m.mode, s.cwe, s.tp, s.fn, s.fp, s.tn, s.tpr.toFixed(2), s.fpr.toFixed(2), s.youden.toFixed(2), s.precision.toFixed(2), s.f1.toFixed(2)]) tr.append(el("td", String(v)));
  body.append(tr);
}
const head = document.querySelector("#files thead tr");
for (const h of ["file", "cwe", "twin", ...b.modes.map(m => m.mode)]) head.append(el("th", h));
const files = document.querySelector("#files tbody");
b.truth.forEach((t, i) => {
  const tr = el("tr"); tr.append(el("td", t.path), el("td", t.cwe), el("td", t.vulnerable ? "vulnerable" : "safe"));
  for (const m of b.modes) { const hit = m.results[i][1]; const td = el("td", hit ? "flagged" : "-"); td.className = hit === t.vulnerable ? "hit" : "miss"; tr.append(td); }
  files.append(tr);
});
</script></body></html>
"##;
