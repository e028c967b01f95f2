//! Which documents matter most, for `scout pack --budget`: the documents
//! left whole when not all fit.
//!
//! Three signals, each turned into a percentile rank over the corpus and
//! weighted alike: how many other documents refer to a document (name one
//! of its definitions, from the outlines, or its file name); how many
//! commits changed it; how recently it changed. A file the rest of the
//! code uses, that people work on, now, ranks first.
//!
//! Never reads anything but the corpus's documents.

use std::collections::{HashMap, HashSet};

use crate::corpus::StoredDocument;

/// Names shorter than this are too common to mean a reference (`new`, `id`).
const MIN_NAME: usize = 4;

/// A name more documents than this define (`test`, `main`, `init`) says
/// nothing about which one is meant.
const MAX_DEFINERS: usize = 8;

/// A file name more than one document in this many says is a common word.
const COMMON_SHARE: usize = 50;

/// Each document's score in [0, 1]; higher is kept longer.
#[must_use]
pub fn scores(docs: &[StoredDocument]) -> Vec<f64> {
    let refs = references(docs);
    let refs = percentiles(&refs.iter().map(|&r| i64::from(r)).collect::<Vec<_>>());
    let commits = percentiles(&docs.iter().map(|d| i64::from(d.commits)).collect::<Vec<_>>());
    let modified = percentiles(&docs.iter().map(|d| d.modified).collect::<Vec<_>>());
    (0..docs.len())
        .map(|i| (refs[i] + commits[i] + modified[i]) / 3.0)
        .collect()
}

/// For each document, how many other documents refer to it: name one of
/// its definitions, or its file name without extension, as a word. A
/// file name that is also a common word (`with.py`, `types.rs`: more
/// than one document in [`COMMON_SHARE`] says it) is no reference.
#[must_use]
pub fn references(docs: &[StoredDocument]) -> Vec<u32> {
    // Names to the documents defining them; `true` for a file name.
    let mut definers: HashMap<&str, (Vec<usize>, bool)> = HashMap::new();
    for (i, doc) in docs.iter().enumerate() {
        let symbols = doc.symbols.iter().map(|s| (s.name.as_str(), false));
        for (name, stem) in symbols.chain(file_stem(&doc.path).map(|s| (s, true))) {
            if name.len() < MIN_NAME || !is_identifier(name) {
                continue;
            }
            let entry = definers.entry(name).or_default();
            entry.1 |= stem;
            if entry.0.last() != Some(&i) {
                entry.0.push(i);
            }
        }
    }
    definers.retain(|_, (list, _)| list.len() <= MAX_DEFINERS);
    // The names each document says.
    let said: Vec<HashSet<&str>> = docs
        .iter()
        .map(|doc| {
            doc.segments
                .iter()
                .flat_map(|seg| identifiers(&seg.text))
                .filter_map(|w| definers.get_key_value(w).map(|(k, _)| *k))
                .collect()
        })
        .collect();
    let mut sayers: HashMap<&str, usize> = HashMap::new();
    for names in &said {
        for name in names {
            *sayers.entry(name).or_default() += 1;
        }
    }
    let common = (docs.len() / COMMON_SHARE).max(10);
    let mut counts = vec![0u32; docs.len()];
    let mut referred: HashSet<usize> = HashSet::new();
    for (j, names) in said.iter().enumerate() {
        referred.clear();
        for name in names {
            let (list, stem) = &definers[name];
            if *stem && sayers[name] > common {
                continue;
            }
            referred.extend(list.iter().copied().filter(|&i| i != j));
        }
        for &i in &referred {
            counts[i] += 1;
        }
    }
    counts
}

fn file_stem(path: &str) -> Option<&str> {
    let name = path.rsplit('/').next()?;
    Some(name.split('.').next().unwrap_or(name))
}

fn is_identifier(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty() && !b[0].is_ascii_digit() && b.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'_')
}

/// The ASCII identifiers in `text`, as words.
fn identifiers(text: &str) -> impl Iterator<Item = &str> {
    let bytes = text.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < bytes.len() {
            let c = bytes[i];
            if c.is_ascii_alphabetic() || c == b'_' {
                let start = i;
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                // A word glued to non-ASCII letters is not a whole word.
                let glued = (i < bytes.len() && bytes[i] >= 0x80) || (start > 0 && bytes[start - 1] >= 0x80);
                if !glued {
                    return Some(&text[start..i]);
                }
            } else if c.is_ascii_digit() {
                // The digits and letters of a number (`0x1f`) are no word.
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
            } else {
                i += 1;
            }
        }
        None
    })
}

/// Each value's percentile rank in [0, 1] (ties share the mean rank; one
/// value alone is 0.5).
fn percentiles(values: &[i64]) -> Vec<f64> {
    let n = values.len();
    if n < 2 {
        return vec![0.5; n];
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| values[i]);
    let mut out = vec![0.0; n];
    let mut start = 0;
    while start < n {
        let mut end = start;
        while end + 1 < n && values[order[end + 1]] == values[order[start]] {
            end += 1;
        }
        let mean = (start + end) as f64 / 2.0 / (n - 1) as f64;
        for &i in &order[start..=end] {
            out[i] = mean;
        }
        start = end + 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::{DocumentKind, Symbol};
    use crate::ingest::split_text;

    fn doc(path: &str, text: &str, symbols: &[&str]) -> StoredDocument {
        let mut d = StoredDocument::with_segments(path, DocumentKind::Code, split_text(path, text));
        d.symbols = symbols
            .iter()
            .map(|s| Symbol {
                name: (*s).to_owned(),
                kind: "fn".into(),
                start_line: 1,
                end_line: 1,
            })
            .collect();
        d
    }

    #[test]
    fn a_document_others_use_is_referred_to_once_per_user() {
        let docs = vec![
            doc(
                "src/store.rs",
                "pub fn save_all() {}\npub fn load_all() {}\n",
                &["save_all", "load_all"],
            ),
            doc("src/a.rs", "use store;\nsave_all(); load_all(); save_all();\n", &[]),
            doc("src/b.rs", "fn x() { load_all() }\n", &["x"]),
            doc("src/c.rs", "// nothing here: save_allx, 9load_all\n", &[]),
        ];
        assert_eq!(references(&docs), vec![2, 0, 0, 0]);
        let s = scores(&docs);
        assert!(s[0] > s[1] && s[0] > s[3], "{s:?}");
    }

    #[test]
    fn names_many_files_define_are_no_reference() {
        let mut docs: Vec<StoredDocument> = (0..=MAX_DEFINERS)
            .map(|i| doc(&format!("m{i}.py"), "def setup(): pass\n", &["setup"]))
            .collect();
        docs.push(doc("use.py", "setup()\n", &[]));
        assert!(references(&docs).iter().all(|&r| r == 0));
    }

    #[test]
    fn percentiles_share_ties() {
        assert_eq!(percentiles(&[5, 1, 5, 9]), vec![0.5, 0.0, 0.5, 1.0]);
        assert_eq!(percentiles(&[3]), vec![0.5]);
    }
}
