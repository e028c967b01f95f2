//! Needles and haystacks for the needle bench: a haystack cut from a
//! corpus's documents to a prompt length, and generated facts planted at a
//! depth in it.
//!
//! Everything here is a pure function of its inputs and a seed: the same
//! corpus, seed and grid give the same needles in the same places.

use std::collections::HashMap;

use serde::Serialize;

use crate::corpus::StoredDocument;
use crate::document::DocumentKind;
use crate::prompt::Tokenizer;

/// A small seeded generator (splitmix64): reproducible across platforms
/// and versions, which a bench needs more than statistical quality.
pub struct Rng(u64);

impl Rng {
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// What a needle tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum NeedleKind {
    /// A unique fact asked about in its own words ("The access code for the
    /// amber heron vault is KESTREL-4471." / "What is the access code for
    /// the amber heron vault?"): literal retrieval.
    Fact,
    /// A fact whose question shares no content word with it (NoLiMa-style:
    /// "Marisol stashed the spare key beneath flowerpot 4471." / "Under which
    /// planter is the extra door opener hidden?"): the model has to make the
    /// link, and scout's word matching cannot help.
    Distant,
}

impl NeedleKind {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            NeedleKind::Fact => "fact",
            NeedleKind::Distant => "distant",
        }
    }
}

/// A generated needle: the line planted, the question asked, and the value
/// the answer must hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Needle {
    pub kind: NeedleKind,
    pub line: String,
    pub question: String,
    pub value: String,
}

const ADJECTIVES: &[&str] = &[
    "amber", "cobalt", "silent", "northern", "copper", "velvet", "hollow", "scarlet", "frozen", "golden",
];
const NOUNS: &[&str] = &[
    "heron", "lantern", "orchard", "glacier", "falcon", "harbor", "quarry", "meadow", "beacon", "canyon",
];
const CODE_WORDS: &[&str] = &[
    "KESTREL", "OSPREY", "TUNDRA", "MARLIN", "CINDER", "BASALT", "JUNIPER", "ZEPHYR", "QUILL", "SORREL",
];
const NAMES: &[&str] = &[
    "Marisol",
    "Okafor",
    "Lindqvist",
    "Tamsin",
    "Ravindra",
    "Ilse",
    "Bartholomew",
    "Yusra",
    "Caspian",
    "Henrike",
];

/// Fact templates: (needle, question); `{s}` is the subject, `{v}` the value.
const FACTS: &[(&str, &str)] = &[
    (
        "The access code for the {s} vault is {v}.",
        "What is the access code for the {s} vault?",
    ),
    (
        "The serial number of the {s} pump is {v}.",
        "What is the serial number of the {s} pump?",
    ),
    (
        "The budget code of the {s} project is {v}.",
        "What is the budget code of the {s} project?",
    ),
];

/// Distant templates: no content word in common between needle and
/// question (a test checks it); `{n}` is a name, `{v}` a four-digit value.
const DISTANT: &[(&str, &str)] = &[
    (
        "{n} stashed the spare key beneath flowerpot {v}.",
        "Under which planter is the extra door opener hidden?",
    ),
    (
        "{n}'s parcel waits in locker {v} at the depot.",
        "Which storage compartment holds the delivery at the station?",
    ),
    (
        "The alarm panel accepts {v} as its override.",
        "What number silences the security system?",
    ),
    (
        "{n} parked the van in bay {v} overnight.",
        "Where was the vehicle left until morning?",
    ),
];

impl Needle {
    /// The `index`-th needle of `kind` for `seed`: the same at every depth
    /// and length of a grid, so cells compare like with like. `attempt`
    /// draws another one (when a value already occurs in the haystack).
    #[must_use]
    pub fn generate(kind: NeedleKind, seed: u64, index: usize, attempt: u32) -> Needle {
        let salt = match kind {
            NeedleKind::Fact => 0x0066_6163_7400_0000,
            NeedleKind::Distant => 0x0064_6973_7400_0000,
        };
        let mut rng = Rng::new(seed ^ salt ^ ((index as u64) << 16) ^ u64::from(attempt));
        // Spread the templates over the needles of a cell.
        match kind {
            NeedleKind::Fact => {
                let (line, question) = FACTS[(index + attempt as usize) % FACTS.len()];
                let subject = format!("{} {}", rng.pick(ADJECTIVES), rng.pick(NOUNS));
                let value = format!("{}-{}", rng.pick(CODE_WORDS), 1000 + rng.below(9000));
                Needle {
                    kind,
                    line: line.replace("{s}", &subject).replace("{v}", &value),
                    question: question.replace("{s}", &subject),
                    value,
                }
            }
            NeedleKind::Distant => {
                let (line, question) = DISTANT[(index + attempt as usize) % DISTANT.len()];
                let name = rng.pick(NAMES);
                let value = (1000 + rng.below(9000)).to_string();
                Needle {
                    kind,
                    line: line.replace("{n}", name).replace("{v}", &value),
                    question: question.to_owned(),
                    value,
                }
            }
        }
    }

    /// Whether `answer` states the value: as a whole word, in any case.
    #[must_use]
    pub fn found_in(&self, answer: &str) -> bool {
        let answer = answer.to_ascii_uppercase();
        let value = self.value.to_ascii_uppercase();
        let word = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
        answer
            .match_indices(&value)
            .any(|(i, _)| !word(answer[..i].chars().next_back()) && !word(answer[i + value.len()..].chars().next()))
    }
}

/// One document of a haystack: its lines (each ending in a newline).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HayDocument {
    pub path: String,
    pub kind: DocumentKind,
    pub lines: Vec<String>,
}

impl HayDocument {
    #[must_use]
    pub fn text(&self) -> String {
        self.lines.concat()
    }
}

/// The first documents of a corpus, in prompt order, up to a prompt
/// length; the last one cut at a line.
#[derive(Debug, Clone)]
pub struct Haystack {
    pub documents: Vec<HayDocument>,
    /// Each line's tokens, by document.
    line_tokens: Vec<Vec<u32>>,
}

/// Where a needle goes: before line `line` (0-based) of document `document`
/// (`line` may be the document's length: after its last line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    pub document: usize,
    pub line: usize,
}

impl Haystack {
    /// Cuts `docs` (in prompt order; text and code only) to at most `length`
    /// prompt tokens, as `totals` counts each document in a prompt (with its
    /// boundary and markers). `None` when the documents hold fewer than
    /// nine tenths of `length`.
    #[must_use]
    pub fn cut(
        docs: &[StoredDocument],
        totals: &HashMap<String, u64>,
        length: u64,
        tokenizer: &dyn Tokenizer,
    ) -> Option<Haystack> {
        let mut documents = Vec::new();
        let mut line_tokens = Vec::new();
        let mut used = 0u64;
        for doc in docs {
            let lines: Vec<String> = doc
                .segments
                .iter()
                .flat_map(|s| s.text.split_inclusive('\n').map(str::to_owned))
                .collect();
            let counts: Vec<u32> = lines.iter().map(|l| tokenizer.count_tokens(l)).collect();
            let total = totals.get(&doc.path).copied().unwrap_or(0);
            let text_tokens: u64 = counts.iter().map(|&c| u64::from(c)).sum();
            if used + total <= length {
                used += total;
            } else {
                // The boundary and markers cost about what they cost whole.
                let overhead = total.saturating_sub(text_tokens);
                let mut room = length.saturating_sub(used + overhead);
                let keep = counts
                    .iter()
                    .take_while(|&&c| {
                        let fits = u64::from(c) <= room;
                        room = room.saturating_sub(u64::from(c));
                        fits
                    })
                    .count();
                if keep > 0 {
                    documents.push(HayDocument {
                        path: doc.path.clone(),
                        kind: doc.kind,
                        lines: lines[..keep].to_vec(),
                    });
                    line_tokens.push(counts[..keep].to_vec());
                    used = length;
                }
                break;
            }
            documents.push(HayDocument {
                path: doc.path.clone(),
                kind: doc.kind,
                lines,
            });
            line_tokens.push(counts);
        }
        (used * 10 >= length * 9 && !documents.is_empty()).then_some(Haystack { documents, line_tokens })
    }

    /// Tokens of the documents' lines (without boundaries and markers).
    #[must_use]
    pub fn text_tokens(&self) -> u64 {
        self.line_tokens.iter().flatten().map(|&c| u64::from(c)).sum()
    }

    /// Whether any document holds `value`.
    #[must_use]
    pub fn contains(&self, value: &str) -> bool {
        self.documents.iter().any(|d| d.lines.iter().any(|l| l.contains(value)))
    }

    /// Where `depth` percent of the text's tokens lie before the needle:
    /// the first line boundary at or past that share (0: before the first
    /// line; 100: after the last).
    #[must_use]
    pub fn place(&self, depth: u32) -> Place {
        let target = self.text_tokens() * u64::from(depth.min(100)) / 100;
        let mut before = 0u64;
        for (d, counts) in self.line_tokens.iter().enumerate() {
            for (l, &c) in counts.iter().enumerate() {
                if before >= target {
                    return Place { document: d, line: l };
                }
                before += u64::from(c);
            }
        }
        let last = self.documents.len() - 1;
        Place {
            document: last,
            line: self.documents[last].lines.len(),
        }
    }

    /// The share of the text's tokens that lie before `place`.
    #[must_use]
    pub fn depth_of(&self, place: Place) -> f64 {
        let before: u64 = self.line_tokens[..place.document]
            .iter()
            .flatten()
            .chain(&self.line_tokens[place.document][..place.line])
            .map(|&c| u64::from(c))
            .sum();
        before as f64 / self.text_tokens().max(1) as f64
    }

    /// The documents with `line` planted at `place`; the planted line's
    /// number (1-based) in its document.
    #[must_use]
    pub fn planted(&self, place: Place, line: &str) -> (Vec<HayDocument>, u32) {
        let mut docs = self.documents.clone();
        let lines = &mut docs[place.document].lines;
        if let Some(last) = lines.last_mut().filter(|l| !l.ends_with('\n')) {
            last.push('\n');
        }
        lines.insert(place.line, format!("{line}\n"));
        (docs, place.line as u32 + 1)
    }
}

/// Documents a haystack can be cut from: text and code with some text.
#[must_use]
pub fn usable(doc: &StoredDocument) -> bool {
    matches!(doc.kind, DocumentKind::Text | DocumentKind::Code)
        && doc.segments.iter().any(|s| !s.text.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::split_text;
    use crate::prompt::Words;

    fn doc(path: &str, words: usize) -> StoredDocument {
        let text: String = (0..words).map(|i| format!("{path} word {i}\n")).collect();
        StoredDocument::with_segments(path, DocumentKind::Text, split_text(path, &text))
    }

    /// Prompt totals as a layout would give them: the text plus a boundary
    /// of ten tokens.
    fn totals(docs: &[StoredDocument]) -> HashMap<String, u64> {
        docs.iter()
            .map(|d| {
                let text: String = d.segments.iter().map(|s| s.text.as_str()).collect();
                (d.path.clone(), u64::from(Words.count_tokens(&text)) + 10)
            })
            .collect()
    }

    #[test]
    fn a_haystack_is_cut_to_its_length_at_a_line() {
        let docs = vec![doc("a.txt", 100), doc("b.txt", 100), doc("c.txt", 100)];
        // 310 tokens each (3 words a line, plus the boundary).
        let hay = Haystack::cut(&docs, &totals(&docs), 500, &Words).unwrap();
        assert_eq!(hay.documents.len(), 2);
        assert_eq!(hay.documents[0].lines.len(), 100);
        // 500 - 310 - 10 of boundary leaves 180 tokens: 60 lines.
        assert_eq!(hay.documents[1].lines.len(), 60);
        assert_eq!(hay.text_tokens(), 480);
        assert!(
            Haystack::cut(&docs, &totals(&docs), 2000, &Words).is_none(),
            "too short"
        );
    }

    #[test]
    fn needles_go_where_the_depth_says() {
        let docs = vec![doc("a.txt", 100), doc("b.txt", 100)];
        let hay = Haystack::cut(&docs, &totals(&docs), 620, &Words).unwrap();
        let needle = Needle::generate(NeedleKind::Fact, 7, 0, 0);
        for depth in [0, 10, 25, 50, 75, 90, 100] {
            let place = hay.place(depth);
            let (planted, line) = hay.planted(place, &needle.line);
            let text: String = planted.iter().map(HayDocument::text).collect();
            let at = text.find(&needle.line).unwrap();
            let share = f64::from(Words.count_tokens(&text[..at])) / hay.text_tokens() as f64;
            assert!(
                (share - f64::from(depth) / 100.0).abs() < 0.01,
                "depth {depth}: planted at {share}"
            );
            assert!((hay.depth_of(place) - share).abs() < 1e-9);
            assert_eq!(
                planted[place.document].lines[line as usize - 1],
                format!("{}\n", needle.line)
            );
        }
        assert_eq!(hay.place(0), Place { document: 0, line: 0 });
        assert_eq!(hay.place(100), Place { document: 1, line: 100 });
    }

    #[test]
    fn needles_are_reproducible_and_differ_by_index() {
        for kind in [NeedleKind::Fact, NeedleKind::Distant] {
            assert_eq!(Needle::generate(kind, 1, 2, 0), Needle::generate(kind, 1, 2, 0));
            assert_ne!(Needle::generate(kind, 1, 2, 0), Needle::generate(kind, 1, 3, 0));
            assert_ne!(Needle::generate(kind, 1, 2, 0), Needle::generate(kind, 2, 2, 0));
            assert_ne!(Needle::generate(kind, 1, 2, 0), Needle::generate(kind, 1, 2, 1));
        }
        let n = Needle::generate(NeedleKind::Fact, 3, 0, 0);
        assert!(n.line.contains(&n.value) && !n.question.contains(&n.value));
    }

    /// The point of distant needles: the question gives no word to match on.
    #[test]
    fn distant_needles_share_no_content_word_with_their_question() {
        const STOP: &[&str] = &[
            "the", "a", "an", "at", "in", "is", "of", "which", "what", "where", "was", "its", "as", "s",
        ];
        let words = |s: &str| -> Vec<String> {
            s.split(|c: char| !c.is_ascii_alphanumeric())
                .filter(|w| !w.is_empty())
                .map(str::to_ascii_lowercase)
                .filter(|w| !STOP.contains(&w.as_str()))
                .collect()
        };
        for index in 0..DISTANT.len() * 3 {
            let n = Needle::generate(NeedleKind::Distant, 11, index, 0);
            let q = words(&n.question);
            let common: Vec<String> = words(&n.line).into_iter().filter(|w| q.contains(w)).collect();
            assert!(common.is_empty(), "{n:?} share {common:?}");
        }
    }

    #[test]
    fn the_value_is_found_as_a_whole_word() {
        let n = Needle {
            kind: NeedleKind::Distant,
            line: String::new(),
            question: String::new(),
            value: "4471".into(),
        };
        assert!(n.found_in("It is flowerpot 4471."));
        assert!(!n.found_in("It is 44712."));
        assert!(!n.found_in("[L4471]"));
        let f = Needle {
            value: "KESTREL-4471".into(),
            ..n
        };
        assert!(f.found_in("the code is kestrel-4471"));
    }
}
