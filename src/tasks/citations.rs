//! Citations: every anchor in an answer resolved against the corpus, and
//! scout's own attribution of the answer to the spans that contain it.
//!
//! Small models cite badly, so an answer gets citations from two sources,
//! kept apart: the anchors the model wrote, and the corpus spans that hold
//! the answer's distinctive words. Both are checked the same way: the path
//! must exist and the lines or page must lie inside the document.
//!
//! Never trusts a model's citation: each is checked against the corpus.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use regex::Regex;
use serde::Serialize;

use crate::anchor::{find_citations, Anchor};
use crate::corpus::StoredDocument;
use crate::document::DocumentKind;
use crate::ingest::outline::enclosing;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CitationStatus {
    /// The path exists and the lines or page lie inside it.
    Valid,
    /// The path exists, the lines or page do not.
    OutOfRange,
    /// No document has that path.
    Unknown,
}

impl CitationStatus {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            CitationStatus::Valid => "valid",
            CitationStatus::OutOfRange => "out of range",
            CitationStatus::Unknown => "unknown",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CitationSource {
    /// The model wrote this anchor.
    Model,
    /// scout found the answer's content in this span.
    Attribution,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Citation {
    /// As resolved (a path given by a unique suffix is completed).
    pub anchor: String,
    pub status: CitationStatus,
    /// The cited text, for valid citations (at most a few lines).
    pub quote: Option<String>,
    pub source: CitationSource,
    /// What the model wrote, when it differs from `anchor`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub written: Option<String>,
    /// The definition that encloses the cited lines, e.g. `fn load`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
}

/// Longest quote kept with a citation.
const QUOTE_CHARS: usize = 400;

/// Finds documents by path for resolution.
pub struct CorpusIndex<'a> {
    by_path: HashMap<&'a str, &'a StoredDocument>,
    docs: &'a [StoredDocument],
}

impl<'a> CorpusIndex<'a> {
    #[must_use]
    pub fn new(docs: &'a [StoredDocument]) -> Self {
        Self {
            by_path: docs.iter().map(|d| (d.path.as_str(), d)).collect(),
            docs,
        }
    }

    /// The document at `path`, or the only one whose path ends with
    /// `/path` (models often drop the leading folders).
    #[must_use]
    pub fn find(&self, path: &str) -> Option<&'a StoredDocument> {
        if let Some(d) = self.by_path.get(path) {
            return Some(d);
        }
        let suffix = format!("/{path}");
        let mut hits = self.docs.iter().filter(|d| d.path.ends_with(&suffix));
        match (hits.next(), hits.next()) {
            (Some(d), None) => Some(d),
            _ => None,
        }
    }

    /// The innermost definition enclosing a line anchor, or the innermost
    /// bookmarked section holding a page.
    #[must_use]
    pub fn symbol(&self, anchor: &Anchor) -> Option<String> {
        let (path, at) = match anchor {
            Anchor::Lines { path, start, .. } => (path, *start),
            Anchor::Page { path, page } | Anchor::Region { path, page, .. } => (path, *page),
            Anchor::Document { .. } => return None,
        };
        let doc = self.by_path.get(path.as_str())?;
        enclosing(&doc.symbols, at).map(|s| format!("{} {}", s.kind, s.name))
    }

    /// Resolves one anchor: its status and, when valid, the cited text
    /// (shortened to a quote).
    #[must_use]
    pub fn resolve(&self, anchor: &Anchor) -> (Anchor, CitationStatus, Option<String>) {
        let (anchor, status, text) = self.resolve_full(anchor);
        (anchor, status, text.map(|q| shorten(&q)).filter(|q| !q.is_empty()))
    }

    /// Resolves one anchor: its status and, when valid, all the cited text.
    #[must_use]
    pub fn resolve_full(&self, anchor: &Anchor) -> (Anchor, CitationStatus, Option<String>) {
        let Some(doc) = self.find(anchor.path()) else {
            return (anchor.clone(), CitationStatus::Unknown, None);
        };
        let anchor = anchor.with_path(&doc.path);
        let quote = match (&anchor, doc.kind) {
            (Anchor::Document { .. }, _) => Some(String::new()),
            (Anchor::Lines { start, end, .. }, DocumentKind::Text | DocumentKind::Code) => {
                (*start >= 1 && *end <= doc.extent()).then(|| lines_of(doc, *start, *end))
            }
            (Anchor::Page { page, .. }, DocumentKind::Pdf) => (*page >= 1 && *page <= doc.extent()).then(|| {
                // A scanned page is several OCR blocks; a text page one.
                doc.segments
                    .iter()
                    .filter(|s| s.anchor.page() == Some(*page))
                    .map(|s| s.text.as_str())
                    .collect()
            }),
            (Anchor::Region { page, x, y, w, h, .. }, DocumentKind::Image | DocumentKind::Pdf) => {
                region_text(doc, *page, (*x, *y, *w, *h))
            }
            _ => None,
        };
        match quote {
            Some(q) => (anchor, CitationStatus::Valid, Some(q)),
            None => (anchor, CitationStatus::OutOfRange, None),
        }
    }
}

/// The OCR text of a page region: the blocks on `page` that overlap the
/// box. `None` (out of range) when the page does not exist, the box lies
/// outside the image, or no text is there.
fn region_text(doc: &StoredDocument, page: u32, (x, y, w, h): (u32, u32, u32, u32)) -> Option<String> {
    if let Some(img) = doc.image {
        if x.saturating_add(w) > img.width || y.saturating_add(h) > img.height {
            return None;
        }
    }
    let overlaps = |a: &Anchor| match a {
        Anchor::Region {
            page: p,
            x: bx,
            y: by,
            w: bw,
            h: bh,
            ..
        } => *p == page && x < bx + bw && *bx < x + w && y < by + bh && *by < y + h,
        _ => false,
    };
    let text: String = doc
        .segments
        .iter()
        .filter(|s| overlaps(&s.anchor))
        .map(|s| s.text.as_str())
        .collect();
    (!text.is_empty()).then_some(text)
}

fn shorten(text: &str) -> String {
    let t = text.trim();
    if t.chars().count() <= QUOTE_CHARS {
        return t.to_owned();
    }
    let cut: String = t.chars().take(QUOTE_CHARS).collect();
    format!("{cut}…")
}

/// Text with every whitespace character removed, for quote matching.
pub(crate) fn squash(text: &str) -> String {
    text.chars().filter(|c| !c.is_whitespace()).collect()
}

/// The lines of `doc` that hold all of `parts`, as the first and last line.
pub(crate) fn locate(doc: &StoredDocument, parts: &[String]) -> Option<(u32, u32)> {
    let text = lines_of(doc, 1, doc.extent());
    let mut squashed = String::new();
    let mut line_at: Vec<u32> = Vec::new();
    for (i, line) in text.split('\n').enumerate() {
        for c in line.chars().filter(|c| !c.is_whitespace()) {
            squashed.push(c);
            line_at.extend(std::iter::repeat_n(i as u32 + 1, c.len_utf8()));
        }
    }
    let mut first = u32::MAX;
    let mut last = 0;
    for p in parts {
        let at = squashed.find(p.as_str())?;
        first = first.min(line_at[at]);
        last = last.max(line_at[at + p.len() - 1]);
    }
    Some((first, last))
}

/// Lines `start..=end` of a text document.
pub(crate) fn lines_of(doc: &StoredDocument, start: u32, end: u32) -> String {
    let mut out = String::new();
    for seg in &doc.segments {
        let Anchor::Lines { start: s, end: e, .. } = seg.anchor else {
            continue;
        };
        if e < start || s > end {
            continue;
        }
        for (i, line) in seg.text.split_inclusive('\n').enumerate() {
            let n = s + i as u32;
            if (start..=end).contains(&n) {
                out.push_str(line);
            }
        }
    }
    out
}

/// Every anchor the model wrote in `answer`, resolved.
#[must_use]
pub fn resolve_written(answer: &str, index: &CorpusIndex<'_>) -> Vec<Citation> {
    find_citations(answer)
        .into_iter()
        .map(|w| {
            let (anchor, status, quote) = index.resolve(&w.anchor);
            let resolved = anchor.to_string();
            let written = (w.anchor.to_string() != resolved).then(|| w.anchor.to_string());
            let symbol = (status == CitationStatus::Valid)
                .then(|| index.symbol(&anchor))
                .flatten();
            Citation {
                anchor: resolved,
                status,
                quote,
                source: CitationSource::Model,
                written,
                symbol,
            }
        })
        .collect()
}

static WORD: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[\p{L}\p{N}_][\p{L}\p{N}_\-.]*[\p{L}\p{N}_]|[\p{L}\p{N}_]").expect("valid"));

/// Words too common to say where an answer came from.
const STOPWORDS: &[&str] = &[
    "the",
    "and",
    "for",
    "are",
    "was",
    "were",
    "that",
    "this",
    "with",
    "from",
    "not",
    "found",
    "has",
    "have",
    "had",
    "its",
    "it's",
    "but",
    "can",
    "you",
    "your",
    "all",
    "any",
    "one",
    "file",
    "files",
    "line",
    "lines",
    "which",
    "what",
    "when",
    "where",
    "who",
    "how",
    "there",
    "their",
    "they",
    "them",
    "then",
    "than",
    "into",
    "also",
    "use",
    "used",
    "uses",
    "using",
    "value",
    "answer",
    "question",
    "source",
    "according",
    "above",
    "based",
];

/// The words of `text` that can say where it came from: lowercased, at
/// least 3 characters (or containing a digit), not stopwords. Compound
/// identifiers (`release_codename`, `copper-heron`) count whole and by
/// their parts, so an answer that spells a value differently still meets it.
fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for m in WORD.find_iter(text) {
        let w = m.as_str().trim_end_matches('.').to_lowercase();
        let keep =
            |w: &str| (w.chars().count() >= 3 || w.chars().any(|c| c.is_ascii_digit())) && !STOPWORDS.contains(&w);
        if w.contains(['_', '-', '.']) {
            out.extend(w.split(['_', '-', '.']).filter(|p| keep(p)).map(str::to_owned));
        }
        if keep(&w) {
            out.push(w);
        }
    }
    out
}

/// Values (numbers, identifiers, codes) say more about where an answer came
/// from than prose words do.
fn is_value(word: &str) -> bool {
    word.chars().any(|c| c.is_ascii_digit() || c == '-' || c == '_')
}

/// At most this many spans are attributed to one answer.
const MAX_ATTRIBUTIONS: usize = 3;

/// scout's own attribution: the corpus lines that contain the answer's
/// distinctive words, weighted by how rare each word is in the corpus.
/// Values (numbers, identifiers) weigh double; words that also appear in
/// the question count less, since they say what was asked, not where the
/// answer is. A line of a PDF is cited by its page, with that line as the
/// quote. Anchors the model already cited are not repeated.
#[must_use]
pub fn attribute(answer: &str, question: &str, index: &CorpusIndex<'_>, already: &[Citation]) -> Vec<Citation> {
    let answer_words: HashSet<String> = words(answer).into_iter().collect();
    if answer_words.is_empty() {
        return Vec::new();
    }
    let question_words: HashSet<String> = words(question).into_iter().collect();
    let (units, df) = corpus_lines(index, &answer_words);
    let n = units.len().max(1) as f64;
    // A word is distinctive when it is in few lines of the corpus.
    let rare_limit = (n * 0.02).max(2.0);
    let weight = |w: &str| {
        let idf = (n / (df.get(w).copied().unwrap_or(0) as f64 + 0.5)).ln().max(0.0);
        let factor = if question_words.contains(w) {
            0.3
        } else if is_value(w) {
            2.0
        } else {
            1.0
        };
        idf * factor
    };
    let mut scored: Vec<(f64, usize)> = units
        .iter()
        .enumerate()
        .filter(|(_, (_, _, present))| {
            present
                .iter()
                .any(|w| !question_words.contains(w) && (df[w.as_str()] as f64) <= rare_limit)
        })
        .map(|(i, (_, _, present))| (present.iter().map(|w| weight(w)).sum::<f64>(), i))
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let Some(&(best, _)) = scored.first() else {
        return Vec::new();
    };
    let cited: Vec<&str> = already
        .iter()
        .filter(|c| c.status == CitationStatus::Valid)
        .map(|c| c.anchor.as_str())
        .collect();
    let mut out: Vec<Citation> = Vec::new();
    for (score, i) in scored {
        if out.len() == MAX_ATTRIBUTIONS || score < best * 0.5 {
            break;
        }
        let (anchor, line, _) = &units[i];
        let (resolved, status, _) = index.resolve(anchor);
        let symbol = index.symbol(&resolved);
        let anchor = resolved.to_string();
        if cited.iter().any(|c| covers(c, &anchor)) || out.iter().any(|c| c.anchor == anchor) {
            continue;
        }
        let quote = Some(shorten(line)).filter(|q| !q.is_empty());
        out.push(Citation {
            anchor,
            status,
            quote,
            source: CitationSource::Attribution,
            written: None,
            symbol,
        });
    }
    out
}

/// Every line of the corpus: (anchor, line text, which of `wanted` it
/// holds), and in how many lines each wanted word is.
#[allow(clippy::type_complexity)]
fn corpus_lines<'a>(
    index: &CorpusIndex<'a>,
    wanted: &HashSet<String>,
) -> (Vec<(Anchor, &'a str, HashSet<String>)>, HashMap<String, usize>) {
    let mut units: Vec<(Anchor, &str, HashSet<String>)> = Vec::new();
    for doc in index.docs {
        for seg in &doc.segments {
            for (i, line) in seg.text.lines().enumerate() {
                let anchor = match &seg.anchor {
                    Anchor::Lines { start, .. } => {
                        let n = start + i as u32;
                        Anchor::Lines {
                            path: doc.path.clone(),
                            start: n,
                            end: n,
                        }
                    }
                    Anchor::Page { .. } | Anchor::Region { .. } => seg.anchor.clone(),
                    Anchor::Document { .. } => continue,
                };
                let present: HashSet<String> = words(line).into_iter().filter(|w| wanted.contains(w)).collect();
                units.push((anchor, line, present));
            }
        }
    }
    let mut df: HashMap<String, usize> = HashMap::new();
    for (_, _, present) in &units {
        for w in present {
            *df.entry(w.clone()).or_default() += 1;
        }
    }
    (units, df)
}

/// At most this many lines are offered when a question is asked again.
const MAX_QUESTION_LINES: usize = 3;

/// The corpus lines that best match a question: those holding at least
/// two of its distinctive words (each in at most 2% of the corpus's
/// lines), or one word found in at most two lines, scored by how rare
/// those words are, best first (within half the best score, at most 3).
/// When no line qualifies nothing is offered.
#[must_use]
pub fn question_lines(question: &str, index: &CorpusIndex<'_>) -> Vec<(Anchor, String)> {
    let wanted: HashSet<String> = words(question).into_iter().collect();
    if wanted.len() < 2 {
        return Vec::new();
    }
    let (units, df) = corpus_lines(index, &wanted);
    let n = units.len().max(1) as f64;
    let rare_limit = (n * 0.02).max(2.0);
    let rare = |w: &String| (df[w] as f64) <= rare_limit;
    let mut scored: Vec<(f64, usize)> = units
        .iter()
        .enumerate()
        .filter(|(_, (_, _, present))| {
            let rare_here = present.iter().filter(|w| rare(w)).count();
            rare_here >= 2 || present.iter().any(|w| df[w] <= 2)
        })
        .map(|(i, (_, _, present))| {
            let score = present
                .iter()
                .map(|w| (n / (df[w] as f64 + 0.5)).ln().max(0.0))
                .sum::<f64>();
            (score, i)
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let best = scored.first().map_or(0.0, |s| s.0);
    scored
        .into_iter()
        .take_while(|(score, _)| *score >= best * 0.5)
        .take(MAX_QUESTION_LINES)
        .map(|(_, i)| (units[i].0.clone(), units[i].1.trim().to_owned()))
        .collect()
}

/// Whether any valid citation covers one of these single-line or page
/// anchors.
#[must_use]
pub fn cites_any(citations: &[Citation], anchors: &[Anchor]) -> bool {
    citations
        .iter()
        .filter(|c| c.status == CitationStatus::Valid)
        .any(|c| anchors.iter().any(|a| covers(&c.anchor, &a.to_string())))
}

/// Whether the model's citation `cited` already covers the single-line or
/// page anchor `found`.
fn covers(cited: &str, found: &str) -> bool {
    let (Some(c), Some(f)) = (find_citations(cited).pop(), find_citations(found).pop()) else {
        return false;
    };
    match (c.anchor, f.anchor) {
        (Anchor::Lines { path: p1, start, end }, Anchor::Lines { path: p2, start: s, .. }) => {
            p1 == p2 && (start..=end).contains(&s)
        }
        (a, b) => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::split_text;

    fn doc(path: &str, text: &str) -> StoredDocument {
        StoredDocument {
            id: 0,
            path: path.into(),
            kind: DocumentKind::Text,
            language: None,
            content_hash: String::new(),
            bytes: 0,
            modified: 0,
            replaced_chars: 0,
            image: None,
            segments: split_text(path, text),
            symbols: Vec::new(),
            title: None,
            commits: 0,
        }
    }

    fn corpus() -> Vec<StoredDocument> {
        vec![
            doc(
                "src/config.rs",
                "fn a() {}\n// deploy\nconst PASS: &str = \"ZEBRA-4417-QUARTZ\";\n",
            ),
            doc(
                "docs/deploy.md",
                "# Deploy\nThe deploy passphrase lives in the config.\nAsk ops.\n",
            ),
            doc("README.md", "hello\n"),
        ]
    }

    #[test]
    fn written_citations_are_checked_against_the_corpus() {
        let docs = corpus();
        let index = CorpusIndex::new(&docs);
        let cites = resolve_written(
            "See [src/config.rs:3], [config.rs:2-3], [src/config.rs:9], [nope.rs:1].",
            &index,
        );
        let got: Vec<(&str, CitationStatus)> = cites.iter().map(|c| (c.anchor.as_str(), c.status)).collect();
        assert_eq!(
            got,
            vec![
                ("src/config.rs:3", CitationStatus::Valid),
                ("src/config.rs:2-3", CitationStatus::Valid),
                ("src/config.rs:9", CitationStatus::OutOfRange),
                ("nope.rs:1", CitationStatus::Unknown),
            ]
        );
        assert_eq!(
            cites[0].quote.as_deref(),
            Some("const PASS: &str = \"ZEBRA-4417-QUARTZ\";")
        );
        assert_eq!(
            cites[1].written.as_deref(),
            Some("config.rs:2-3"),
            "suffix paths are completed"
        );
    }

    #[test]
    fn citations_name_their_enclosing_definition() {
        let mut d = doc(
            "src/app.rs",
            "mod m {\n    fn load() {\n        let key = 7;\n    }\n}\n",
        );
        d.symbols = crate::ingest::outline::outline("rust", &d.segments[0].text, std::time::Duration::from_secs(5))
            .unwrap()
            .unwrap();
        let docs = vec![d];
        let index = CorpusIndex::new(&docs);
        let cites = resolve_written("see src/app.rs:3 and src/app.rs:1", &index);
        assert_eq!(cites[0].symbol.as_deref(), Some("fn load"));
        assert_eq!(cites[1].symbol.as_deref(), Some("mod m"));
    }

    #[test]
    fn regions_resolve_to_the_ocr_text_they_overlap() {
        let region = |x, y, w, h| Anchor::Region {
            path: "scan.png".into(),
            page: 1,
            x,
            y,
            w,
            h,
        };
        let d = StoredDocument {
            kind: DocumentKind::Image,
            image: Some(crate::document::ImageInfo {
                width: 800,
                height: 600,
            }),
            segments: vec![
                crate::document::Segment {
                    anchor: region(10, 10, 200, 30),
                    text: "Total: 42.00\n".into(),
                },
                crate::document::Segment {
                    anchor: region(10, 300, 200, 30),
                    text: "Thank you\n".into(),
                },
            ],
            ..doc("scan.png", "")
        };
        let docs = vec![d];
        let index = CorpusIndex::new(&docs);
        let (_, status, quote) = index.resolve(&region(0, 0, 300, 50));
        assert_eq!(
            (status, quote.as_deref()),
            (CitationStatus::Valid, Some("Total: 42.00"))
        );
        assert_eq!(
            index.resolve(&region(700, 500, 200, 200)).1,
            CitationStatus::OutOfRange,
            "outside the image"
        );
        assert_eq!(
            index.resolve(&region(400, 400, 10, 10)).1,
            CitationStatus::OutOfRange,
            "no text there"
        );
        let written = resolve_written("see scan.png#page=1&bbox=5,5,100,20", &index);
        assert_eq!(written[0].status, CitationStatus::Valid);
    }

    #[test]
    fn ambiguous_suffixes_are_unknown() {
        let docs = vec![doc("a/x.rs", "1\n"), doc("b/x.rs", "1\n")];
        let index = CorpusIndex::new(&docs);
        assert_eq!(resolve_written("x.rs:1", &index)[0].status, CitationStatus::Unknown);
    }

    #[test]
    fn attribution_finds_the_line_with_the_distinctive_answer() {
        let docs = corpus();
        let index = CorpusIndex::new(&docs);
        let cites = attribute(
            "The deploy passphrase is ZEBRA-4417-QUARTZ.",
            "What is the deploy passphrase?",
            &index,
            &[],
        );
        assert_eq!(cites[0].anchor, "src/config.rs:3");
        assert_eq!(cites[0].status, CitationStatus::Valid);
        assert_eq!(cites[0].source, CitationSource::Attribution);
    }

    #[test]
    fn attribution_prefers_the_line_holding_the_value_over_topic_words() {
        // Regression: for "The release codename for the Tidewater inventory
        // service is Copper-Heron" attribution cited the module docstring
        // (three topic words) instead of the line with the value.
        let docs = vec![
            doc(
                "settings.py",
                "\"\"\"Settings for the Tidewater inventory service.\"\"\"\n\nRELEASE_CODENAME = \"copper-heron\"\nPORT = 8412\n",
            ),
            doc("README.md", "# Tidewater\nThe Tidewater inventory service tracks stock.\nRun the service.\n"),
            doc("other.md", "Tidewater service notes.\nInventory is counted daily.\n"),
        ];
        let index = CorpusIndex::new(&docs);
        let answer = "The release codename for the Tidewater inventory service is \"Copper-Heron\".";
        let cites = attribute(answer, "What is the release codename?", &index, &[]);
        assert_eq!(cites[0].anchor, "settings.py:3", "{cites:?}");
        let cites = attribute("It listens on port 8412.", "Which port?", &index, &[]);
        assert_eq!(cites[0].anchor, "settings.py:4", "{cites:?}");
    }

    #[test]
    fn attribution_finds_nothing_for_words_not_in_the_corpus() {
        let docs = corpus();
        let index = CorpusIndex::new(&docs);
        assert!(attribute("Paris is the capital of France.", "capital?", &index, &[]).is_empty());
    }

    #[test]
    fn attribution_does_not_repeat_what_the_model_cited() {
        let docs = corpus();
        let index = CorpusIndex::new(&docs);
        let model = resolve_written("ZEBRA-4417-QUARTZ [src/config.rs:1-3]", &index);
        assert!(attribute("ZEBRA-4417-QUARTZ", "passphrase?", &index, &model).is_empty());
    }

    #[test]
    fn the_lines_that_match_a_question_are_found_among_code() {
        let mut filler: String = (0..60).map(|i| format!("let value_{i} = compute({i});\n")).collect();
        filler.push_str("// access is checked in the handler\n// the code of each handler\n// and the code again\n");
        let docs = vec![
            doc("src/lib.rs", &filler),
            doc(
                "docs/ops.md",
                "# Operations\n\nDeploys happen on Tuesdays.\n\nThe vault access code is KESTREL-4471.\n",
            ),
        ];
        let index = CorpusIndex::new(&docs);
        let lines = question_lines("What is the vault access code?", &index);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0].0.to_string(), "docs/ops.md:5");
        assert_eq!(lines[0].1, "The vault access code is KESTREL-4471.");
        // Cited: covered; not cited: not.
        let cited = resolve_written("It is KESTREL-4471 [docs/ops.md:5].", &index);
        assert!(cites_any(&cited, &[lines[0].0.clone()]));
        let elsewhere = resolve_written("See [src/lib.rs:3].", &index);
        assert!(!cites_any(&elsewhere, &[lines[0].0.clone()]));
        // A question of one word, or whose words are in no line, offers nothing.
        assert!(question_lines("What is the code?", &index).is_empty());
        assert!(question_lines("Who wrote the manifesto?", &index).is_empty());
    }
}
