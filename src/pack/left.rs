//! The list of what a budget left out, short enough to fit beside what it
//! kept: a folder all of whose documents are out is one line; past the
//! line limit, folders deepest first are named in place of their files
//! (with how many of their files are out).

use std::collections::{HashMap, HashSet};

use super::Form;
use crate::corpus::StoredDocument;

/// A line of the list: a document, or a folder (`path/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Left {
    pub label: String,
    /// Documents left out under it.
    pub files: usize,
    /// Documents under it in all.
    pub of: usize,
    /// Tokens those left out would take whole.
    pub tokens: u64,
}

/// What is left out, in path order, in at most `max_lines` lines where
/// folders allow.
pub(super) fn left_out_groups(
    docs: &[StoredDocument],
    forms: &[Form],
    whole_tokens: &[u64],
    max_lines: usize,
) -> Vec<Left> {
    if !forms.contains(&Form::LeftOut) {
        return Vec::new();
    }
    let common = common_folder(docs);
    // Each folder below the common one, as a prefix ending in `/`: (documents, left out, their tokens).
    let mut tally: HashMap<&str, (usize, usize, u64)> = HashMap::new();
    for (i, d) in docs.iter().enumerate() {
        for f in folders(&d.path, common) {
            let t = tally.entry(f).or_default();
            t.0 += 1;
            if forms[i] == Form::LeftOut {
                t.1 += 1;
                t.2 += whole_tokens[i];
            }
        }
    }
    let folder_line = |f: &str| {
        let (of, files, tokens) = tally[f];
        Left {
            label: f.to_owned(),
            files,
            of,
            tokens,
        }
    };
    let mut groups: Vec<Left> = Vec::new();
    let mut named: HashSet<&str> = HashSet::new();
    for (i, d) in docs.iter().enumerate().filter(|(i, _)| forms[*i] == Form::LeftOut) {
        let whole =
            folders(&d.path, common).find(|f| tally.get(f).is_some_and(|&(all, left, _)| all >= 2 && all == left));
        match whole {
            Some(f) if named.insert(f) => groups.push(folder_line(f)),
            Some(_) => {}
            None => groups.push(Left {
                label: d.path.clone(),
                files: 1,
                of: 1,
                tokens: whole_tokens[i],
            }),
        }
    }
    // Too many lines: name folders in place of what is in them, the
    // deepest level first, until the list is short enough.
    let deepest = tally.keys().map(|f| depth(f)).max().unwrap_or(0);
    for level in (1..=deepest).rev() {
        if groups.len() <= max_lines {
            break;
        }
        let mut under: HashMap<&str, usize> = HashMap::new();
        for f in groups.iter().filter_map(|g| at(g, common, level)) {
            *under.entry(f).or_default() += 1;
        }
        let mut merged: Vec<Left> = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        for g in &groups {
            // A folder is named only in place of two lines or more.
            match at(g, common, level).filter(|f| under[f] >= 2) {
                Some(f) => {
                    if seen.insert(f.to_owned()) {
                        merged.push(folder_line(f));
                    }
                }
                None => merged.push(g.clone()),
            }
        }
        groups = merged;
    }
    groups.sort_by(|a, b| a.label.cmp(&b.label));
    groups
}

/// The folder at `level` that `g` lies in, if `g` is not that folder.
fn at(g: &Left, common: usize, level: usize) -> Option<&str> {
    folders(&g.label, common).find(|f| depth(f) == level && *f != g.label)
}

/// The folders `path` lies in below `common` bytes, highest first, each
/// ending in `/`.
fn folders(path: &str, common: usize) -> impl Iterator<Item = &str> {
    path.match_indices('/')
        .map(|(i, _)| i + 1)
        .filter(move |&end| end > common && end < path.len())
        .map(move |end| &path[..end])
}

fn depth(folder: &str) -> usize {
    folder.matches('/').count()
}

/// The length of the folder every document lies in (`a/b/`), 0 if none.
fn common_folder(docs: &[StoredDocument]) -> usize {
    docs.iter()
        .map(|d| &d.path[..d.path.rfind('/').map_or(0, |i| i + 1)])
        .reduce(|a, b| {
            let n = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
            &a[..a[..n].rfind('/').map_or(0, |i| i + 1)]
        })
        .unwrap_or("")
        .len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::DocumentKind;

    fn docs(paths: &[&str]) -> Vec<StoredDocument> {
        paths
            .iter()
            .map(|p| StoredDocument::with_segments(p, DocumentKind::Text, Vec::new()))
            .collect()
    }

    fn labels(groups: &[Left]) -> Vec<(&str, usize, usize)> {
        groups.iter().map(|g| (g.label.as_str(), g.files, g.of)).collect()
    }

    #[test]
    fn a_folder_left_out_whole_is_one_line() {
        let d = docs(&[
            "r/notes.txt",
            "r/src/a.rs",
            "r/src/b.rs",
            "r/src/deep/c.rs",
            "r/src/deep/d.rs",
        ]);
        let out = [Form::LeftOut; 5];
        let t = [1, 2, 3, 4, 5];
        assert_eq!(
            labels(&left_out_groups(&d, &out, &t, usize::MAX)),
            vec![("r/notes.txt", 1, 1), ("r/src/", 4, 4)]
        );
        // One file of src/ kept: its others one by one, deep/ whole.
        let some = [Form::LeftOut, Form::Whole, Form::LeftOut, Form::LeftOut, Form::LeftOut];
        let g = left_out_groups(&d, &some, &t, usize::MAX);
        assert_eq!(
            labels(&g),
            vec![("r/notes.txt", 1, 1), ("r/src/b.rs", 1, 1), ("r/src/deep/", 2, 2)]
        );
        assert_eq!(g[2].tokens, 9);
        // Two lines at most: src/ is named, with how many of its files are out.
        assert_eq!(
            labels(&left_out_groups(&d, &some, &t, 2)),
            vec![("r/notes.txt", 1, 1), ("r/src/", 3, 4)]
        );
    }
}
