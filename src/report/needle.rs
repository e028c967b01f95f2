//! The needle bench's report: grids of found, cited and time by length
//! and depth (text), and a heat map page (HTML).

use std::fmt::Write;

use super::map::script_json;
use super::thousands;
use crate::tasks::needle::{Cell, NeedleKind, NeedleReport};

/// `8000` as `8k`, `131072` as `131072`.
#[must_use]
pub fn length_label(tokens: u64) -> String {
    if tokens >= 1000 && tokens.is_multiple_of(1000) {
        format!("{}k", tokens / 1000)
    } else {
        tokens.to_string()
    }
}

fn cell(r: &NeedleReport, kind: NeedleKind, length: u64, depth: u32) -> Option<&Cell> {
    r.cells
        .iter()
        .find(|c| c.kind == kind && c.length == length && c.depth == depth)
}

/// The grids, one set per needle kind, and the totals.
#[must_use]
pub fn text(r: &NeedleReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "needle bench: {} {} needles per cell, seed {}; {} {}",
        r.needles,
        r.kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(" and "),
        r.seed,
        r.engine,
        r.model
    );
    for h in &r.haystacks {
        let _ = writeln!(
            out,
            "haystack {}: {} prompt tokens in {} documents",
            length_label(h.length),
            thousands(h.tokens),
            h.documents
        );
    }
    for &kind in &r.kinds {
        for (title, value) in [
            ("found", (|c: &Cell| c.found.to_string()) as fn(&Cell) -> String),
            ("cited", |c: &Cell| c.cited.to_string()),
            ("median seconds", |c: &Cell| format!("{:.1}", c.median_seconds)),
        ] {
            let of = if title == "median seconds" {
                String::new()
            } else {
                format!(" (of {})", r.needles)
            };
            let _ = write!(out, "\n{:<22}", format!("{} {title}{of}", kind.as_str()));
            for d in &r.depths {
                let _ = write!(out, "{:>7}", format!("{d}%"));
            }
            out.push('\n');
            for h in &r.haystacks {
                let _ = write!(out, "{:<22}", format!("  {}", length_label(h.length)));
                for &d in &r.depths {
                    let shown = cell(r, kind, h.length, d).map_or_else(|| "-".to_owned(), value);
                    let _ = write!(out, "{shown:>7}");
                }
                out.push('\n');
            }
        }
        let of: Vec<&Cell> = r.cells.iter().filter(|c| c.kind == kind).collect();
        let trials: usize = of.iter().map(|c| c.trials).sum();
        let found: usize = of.iter().map(|c| c.found).sum();
        let cited: usize = of.iter().map(|c| c.cited).sum();
        let _ = writeln!(
            out,
            "{}: found {found}/{trials} ({:.0}%), cited {cited}/{trials} ({:.0}%)",
            kind.as_str(),
            percent(found, trials),
            percent(cited, trials)
        );
    }
    out
}

fn percent(n: usize, of: usize) -> f64 {
    if of == 0 {
        0.0
    } else {
        n as f64 * 100.0 / of as f64
    }
}

/// A self-contained page: per kind, a heat map of depth by length colored
/// by the share found, each cell saying found, cited and time; every
/// trial's question, answer and place below it.
#[must_use]
pub fn html(r: &NeedleReport) -> String {
    PAGE.replace("/*DATA*/null", &script_json(r))
}

const PAGE: &str = r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>scout bench needle</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;background:#fafafa}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:24px 0 8px} .sub{color:#555}
table{border-collapse:collapse;background:#fff} td,th{border:1px solid #ddd;padding:6px 10px;text-align:center}
th{background:#f0f0f0} td.cell{min-width:90px;color:#111} td.cell small{display:block;color:#333;font-size:11px}
table.trials td{text-align:left;vertical-align:top;font-size:12px} .no{color:#b00} .yes{color:#080}
</style></head><body>
<h1>scout bench needle</h1><div class="sub" id="sub"></div><div id="maps"></div>
<h2>Trials</h2>
<table class="trials" id="trials"><thead><tr><th>kind</th><th>length</th><th>depth</th><th>planted at</th><th>question</th><th>answer</th><th>found</th><th>cited</th><th>s</th></tr></thead><tbody></tbody></table>
<script>
const r = /*DATA*/null;
const el = (tag, text, cls) => { const e = document.createElement(tag); if (text !== undefined) e.textContent = text; if (cls) e.className = cls; return e; };
const label = n => n >= 1000 && n % 1000 === 0 ? `${n / 1000}k` : `${n}`;
document.getElementById("sub").textContent = `${r.engine} ${r.model} · ${r.needles} needles per cell · seed ${r.seed}`;
const maps = document.getElementById("maps");
for (const kind of r.kinds) {
  maps.append(el("h2", `${kind} needles: found (color), cited and median seconds by depth and length`));
  const t = el("table"), head = el("tr");
  head.append(el("th", "length \\ depth"));
  for (const d of r.depths) head.append(el("th", `${d}%`));
  t.append(head);
  for (const h of r.haystacks) {
    const row = el("tr");
    row.append(el("th", `${label(h.length)} (${h.tokens} tokens)`));
    for (const d of r.depths) {
      const c = r.cells.find(c => c.kind === kind && c.length === h.length && c.depth === d);
      const td = el("td", c ? `${c.found}/${c.trials} found` : "-", "cell");
      if (c) {
        const share = c.trials ? c.found / c.trials : 0;
        td.style.background = `hsl(${Math.round(share * 120)}, 70%, 75%)`;
        td.append(el("small", `${c.cited}/${c.trials} cited · ${c.median_seconds.toFixed(1)} s`));
      }
      row.append(td);
    }
    t.append(row);
  }
  maps.append(t);
}
const body = document.querySelector("#trials tbody");
for (const x of r.trials) {
  const row = el("tr");
  row.append(el("td", x.kind), el("td", label(x.length)), el("td", `${x.depth}% (${(x.depth_measured * 100).toFixed(1)}%)`),
    el("td", `${x.path}:${x.line}`), el("td", x.question), el("td", x.answer),
    el("td", x.found ? "yes" : "no", x.found ? "yes" : "no"), el("td", x.cited ? "yes" : "no", x.cited ? "yes" : "no"),
    el("td", x.seconds.toFixed(1)));
  body.append(row);
}
</script></body></html>
"##;
