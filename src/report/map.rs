//! The ingest map: one self-contained HTML page showing where a corpus's
//! tokens go (a treemap by folder and file), its biggest documents, and
//! every skipped file by reason. No external scripts, styles or fonts.
//!
//! Never loads anything from outside the page.

use serde::Serialize;

use crate::corpus::IngestSummary;

/// One document on the map.
#[derive(Debug, Clone, Serialize)]
pub struct MapEntry {
    pub path: String,
    pub kind: String,
    /// Prompt tokens, or bytes when tokens were not counted.
    pub size: u64,
}

#[derive(Serialize)]
struct MapData<'a> {
    corpus: &'a str,
    unit: &'a str,
    context: Option<u32>,
    documents: &'a [MapEntry],
    summary: &'a IngestSummary,
}

/// JSON safe to place inside a `<script>` element: `<`, `>` and `&` are
/// escaped, so no string in it can close the element.
pub(crate) fn script_json(value: &impl Serialize) -> String {
    serde_json::to_string(value)
        .unwrap_or_else(|_| "null".to_owned())
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

/// The page. `tokens` says whether sizes are tokens (else bytes);
/// `context` is the model's context length, to show how many windows.
#[must_use]
pub fn map_html(
    corpus: &str,
    documents: &[MapEntry],
    summary: &IngestSummary,
    tokens: bool,
    context: Option<u32>,
) -> String {
    let data = MapData {
        corpus,
        unit: if tokens { "tokens" } else { "bytes" },
        context,
        documents,
        summary,
    };
    PAGE.replace("/*DATA*/null", &script_json(&data))
}

const PAGE: &str = r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>scout: corpus map</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;background:#fafafa}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:24px 0 8px}
.totals{color:#555;margin-bottom:12px}
#map{position:relative;width:100%;height:520px;background:#fff;border:1px solid #ccc}
.cell{position:absolute;box-sizing:border-box;border:1px solid #fff;overflow:hidden;font-size:11px;color:#111;padding:2px;cursor:default}
table{border-collapse:collapse;background:#fff} td,th{border:1px solid #ddd;padding:4px 8px;text-align:left} td.n{text-align:right}
.legend span{display:inline-block;margin-right:12px} .legend i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-2px}
</style></head><body>
<h1>Corpus map</h1><div class="totals" id="totals"></div>
<div class="legend" id="legend"></div>
<div id="map" role="img" aria-label="treemap of the corpus"></div>
<h2>Biggest documents</h2><table id="biggest"><tr><th>document</th><th>kind</th><th>size</th><th>share</th></tr></table>
<h2>Skipped files</h2><div id="skipped"></div>
<script>
const data = /*DATA*/null;
const colors = {code:"#8ecae6", text:"#ffd166", pdf:"#ef476f", image:"#06d6a0"};
const fmt = n => n.toLocaleString("en-US");
const el = (tag, text) => { const e = document.createElement(tag); if (text !== undefined) e.textContent = text; return e; };
const total = data.documents.reduce((s, d) => s + d.size, 0) || 1;
const s = data.summary;
let totals = `${fmt(data.documents.length)} documents, ${fmt(total)} ${data.unit}, ${fmt(s.skips.length)} skipped — ${data.corpus}`;
if (data.context && data.unit === "tokens") totals += ` — about ${Math.max(1, Math.ceil(total / data.context))} window(s) of the model's ${fmt(data.context)}-token context`;
document.getElementById("totals").textContent = totals;
for (const [k, c] of Object.entries(colors)) { const sp = el("span"); const i = el("i"); i.style.background = c; sp.append(i, k); document.getElementById("legend").append(sp); }
// Folder tree, then slice-and-dice: split by size, alternating direction by depth.
const root = {name: "", children: new Map(), size: 0};
for (const d of data.documents) {
  const parts = d.path.split("/"); let node = root; node.size += d.size;
  for (let i = 0; i < parts.length; i++) {
    if (!node.children.has(parts[i])) node.children.set(parts[i], {name: parts[i], children: new Map(), size: 0});
    node = node.children.get(parts[i]); node.size += d.size;
    if (i === parts.length - 1) node.doc = d;
  }
}
const map = document.getElementById("map");
function layout(node, x, y, w, h, depth) {
  if (node.doc || node.children.size === 0) {
    if (!node.doc) return;
    const c = el("div", node.name); c.className = "cell";
    Object.assign(c.style, {left: x + "%", top: y + "%", width: w + "%", height: h + "%", background: colors[node.doc.kind] || "#ccc"});
    c.title = `${node.doc.path}\n${fmt(node.doc.size)} ${data.unit} (${(100 * node.doc.size / total).toFixed(1)}%)`;
    map.append(c); return;
  }
  const kids = [...node.children.values()].filter(k => k.size > 0).sort((a, b) => b.size - a.size);
  let offset = 0;
  for (const k of kids) {
    const share = k.size / node.size;
    if (depth % 2 === 0) layout(k, x + offset * w, y, w * share, h, depth + 1);
    else layout(k, x, y + offset * h, w, h * share, depth + 1);
    offset += share;
  }
}
layout(root, 0, 0, 100, 100, 0);
const biggest = [...data.documents].sort((a, b) => b.size - a.size).slice(0, 20);
for (const d of biggest) {
  const tr = el("tr"); const n = el("td", fmt(d.size)); n.className = "n"; const p = el("td", (100 * d.size / total).toFixed(1) + "%"); p.className = "n";
  tr.append(el("td", d.path), el("td", d.kind), n, p); document.getElementById("biggest").append(tr);
}
const skipped = document.getElementById("skipped");
if (s.skips.length === 0) skipped.textContent = "None.";
else {
  const t = el("table"); t.append(Object.assign(el("tr"), {innerHTML: "<th>file</th><th>reason</th><th>detail</th>"}));
  for (const k of s.skips) { const tr = el("tr"); tr.append(el("td", k.path), el("td", k.reason), el("td", k.detail)); t.append(tr); }
  skipped.append(t);
}
</script></body></html>
"##;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_cannot_break_out_of_the_script() {
        let docs = vec![MapEntry {
            path: "a/<script>alert(1)<!--.md".into(),
            kind: "text".into(),
            size: 10,
        }];
        let html = map_html("c.db", &docs, &IngestSummary::default(), true, Some(8192));
        assert_eq!(html.matches("<script>").count(), 1, "only the page's own script tag");
        assert!(html.contains("\\u003cscript\\u003ealert(1)"));
        assert!(!html.contains("/*DATA*/"), "the data was put in");
    }
}
