//! Walking sources: folders (with .gitignore rules) and single files.
//!
//! Each file found becomes one `Result<Document, Skip>` handed to the
//! caller's callback. Walk errors (unreadable folders, vanished files) are
//! skips with reason `unreadable`, never dropped.

use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use ignore::WalkBuilder;

use crate::limits::{Limits, BINARY_SNIFF_BYTES};

use super::image::{self, IMAGE_EXTENSIONS};
use super::pdf;
use super::text::{code_language, decode, split_text};
use super::{Document, DocumentKind, Segment, Skip, SkipReason};
use crate::anchor::Anchor;

/// How to walk.
#[derive(Debug, Clone, Default)]
pub struct WalkOptions {
    /// Also read hidden files and folders (dot-files).
    pub hidden: bool,
    /// Follow symbolic links.
    pub follow_links: bool,
    /// Also read files that .gitignore and friends exclude.
    pub no_ignore: bool,
    pub limits: Limits,
    /// Files never to ingest: the corpus store itself and its journal.
    pub exclude: Vec<PathBuf>,
}

/// The path a user would open: the root as they named it, joined with the
/// path below it, with forward slashes and no leading `./`.
#[must_use]
pub fn display_path(path: &Path) -> String {
    let s = path.to_string_lossy().replace('\\', "/");
    let s = s.strip_prefix("./").unwrap_or(&s);
    s.to_owned()
}

/// Walks every root and reports each file as a document or a skip, in a
/// stable order (sorted by path within each root).
pub fn walk(roots: &[PathBuf], opts: &WalkOptions, mut on_item: impl FnMut(Result<Document, Skip>)) {
    let excluded: Vec<PathBuf> = opts.exclude.iter().filter_map(|p| p.canonicalize().ok()).collect();
    let mut corpus_bytes = 0u64;
    for root in roots {
        let mut builder = WalkBuilder::new(root);
        builder
            .hidden(!opts.hidden)
            .follow_links(opts.follow_links)
            .git_ignore(!opts.no_ignore)
            .git_global(!opts.no_ignore)
            .git_exclude(!opts.no_ignore)
            .ignore(!opts.no_ignore)
            .parents(!opts.no_ignore)
            // .gitignore is honoured even outside a git repository: users
            // point scout at exported trees and tarballs too.
            .require_git(false)
            .sort_by_file_path(Ord::cmp);
        for entry in builder.build() {
            let entry = match entry {
                Ok(e) => e,
                Err(err) => {
                    let path = walk_error_path(&err).map_or_else(|| display_path(root), |p| display_path(&p));
                    on_item(Err(Skip {
                        path,
                        reason: SkipReason::Unreadable,
                        detail: err.to_string(),
                    }));
                    continue;
                }
            };
            if !entry.file_type().is_some_and(|t| t.is_file()) {
                continue;
            }
            let path = entry.path();
            let shown = display_path(path);
            if path
                .canonicalize()
                .is_ok_and(|c| excluded.iter().any(|e| *e == c || is_journal_of(&c, e)))
            {
                on_item(Err(Skip {
                    path: shown,
                    reason: SkipReason::CorpusFile,
                    detail: "the corpus store itself".into(),
                }));
                continue;
            }
            let item = read_file(path, &shown, &opts.limits, &mut corpus_bytes);
            on_item(item);
        }
    }
}

/// `SQLite` writes `NAME-journal` and `NAME-wal` beside the store.
fn is_journal_of(candidate: &Path, store: &Path) -> bool {
    let (Some(c), Some(s)) = (candidate.to_str(), store.to_str()) else {
        return false;
    };
    c.strip_prefix(s)
        .is_some_and(|rest| matches!(rest, "-journal" | "-wal" | "-shm"))
}

fn walk_error_path(err: &ignore::Error) -> Option<PathBuf> {
    match err {
        ignore::Error::WithPath { path, .. } => Some(path.clone()),
        ignore::Error::WithDepth { err, .. } | ignore::Error::WithLineNumber { err, .. } => walk_error_path(err),
        ignore::Error::Loop { child, .. } => Some(child.clone()),
        _ => None,
    }
}

fn extension(path: &Path) -> String {
    path.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default()
}

/// Reads one file into a document, or says why not.
fn read_file(path: &Path, shown: &str, limits: &Limits, corpus_bytes: &mut u64) -> Result<Document, Skip> {
    let skip = |reason, detail: String| Skip {
        path: shown.to_owned(),
        reason,
        detail,
    };
    let meta = std::fs::metadata(path).map_err(|e| skip(SkipReason::Unreadable, e.to_string()))?;
    let ext = extension(path);
    let is_pdf = ext == "pdf";
    let cap = if is_pdf {
        limits.max_pdf_bytes
    } else {
        limits.max_file_bytes
    };
    if meta.len() > cap {
        return Err(skip(SkipReason::TooLarge, format!("{} bytes, limit {cap}", meta.len())));
    }
    if *corpus_bytes + meta.len() > limits.max_corpus_bytes {
        return Err(skip(
            SkipReason::CorpusFull,
            format!("corpus limit of {} bytes reached", limits.max_corpus_bytes),
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| skip(SkipReason::Unreadable, e.to_string()))?;
    *corpus_bytes += bytes.len() as u64;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(skip(SkipReason::Empty, "no content".into()));
    }
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs() as i64);
    let content_hash = blake3::hash(&bytes).to_hex().to_string();
    let mut doc = Document {
        path: shown.to_owned(),
        kind: DocumentKind::Text,
        language: None,
        content_hash,
        bytes: bytes.len() as u64,
        modified,
        segments: Vec::new(),
        replaced_chars: 0,
        image: None,
    };
    if is_pdf || bytes.starts_with(b"%PDF-") {
        doc.kind = DocumentKind::Pdf;
        doc.segments = pdf::extract_pages(shown, bytes, Duration::from_secs(limits.pdf_extract_seconds))
            .map_err(|f| skip(f.reason, f.detail))?;
        return Ok(doc);
    }
    if IMAGE_EXTENSIONS.contains(&ext.as_str()) {
        let info = image::probe(&bytes).map_err(|(reason, detail)| skip(reason, detail))?;
        doc.kind = DocumentKind::Image;
        doc.image = Some(info);
        doc.segments = vec![Segment {
            anchor: Anchor::Document { path: shown.to_owned() },
            text: String::new(),
        }];
        return Ok(doc);
    }
    if bytes[..bytes.len().min(BINARY_SNIFF_BYTES)].contains(&0) {
        return Err(skip(SkipReason::Binary, "NUL byte in the first 8 KiB".into()));
    }
    let (text, replaced) = decode(&bytes);
    doc.replaced_chars = replaced;
    doc.language = code_language(shown);
    if doc.language.is_some() {
        doc.kind = DocumentKind::Code;
    }
    doc.segments = split_text(shown, &text);
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk_all(root: &Path, opts: &WalkOptions) -> (Vec<Document>, Vec<Skip>) {
        let (mut docs, mut skips) = (Vec::new(), Vec::new());
        walk(&[root.to_path_buf()], opts, |item| match item {
            Ok(d) => docs.push(d),
            Err(s) => skips.push(s),
        });
        (docs, skips)
    }

    #[test]
    fn every_file_is_a_document_or_a_counted_skip() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("a.rs"), "fn main() {}\n").unwrap();
        std::fs::write(root.join("notes.md"), "# Notes\nhello\n").unwrap();
        std::fs::write(root.join("blob.txt"), b"abc\0def").unwrap();
        std::fs::write(root.join("empty.txt"), b"  \n").unwrap();
        std::fs::write(root.join("big.txt"), vec![b'x'; 2000]).unwrap();
        std::fs::write(root.join(".hidden"), "secret").unwrap();
        std::fs::write(root.join("ignored.log"), "noise").unwrap();
        std::fs::write(root.join(".gitignore"), "*.log\n").unwrap();
        std::fs::write(root.join("store.db"), "not really").unwrap();
        let opts = WalkOptions {
            limits: Limits {
                max_file_bytes: 1000,
                ..Limits::default()
            },
            exclude: vec![root.join("store.db")],
            ..WalkOptions::default()
        };
        let (docs, skips) = walk_all(root, &opts);
        let names: Vec<&str> = docs.iter().map(|d| d.path.rsplit('/').next().unwrap()).collect();
        assert_eq!(names, vec!["a.rs", "notes.md"]);
        assert_eq!(docs[0].kind, DocumentKind::Code);
        assert_eq!(docs[1].kind, DocumentKind::Text);
        let mut reasons: Vec<(&str, SkipReason)> = skips
            .iter()
            .map(|s| (s.path.rsplit('/').next().unwrap(), s.reason))
            .collect();
        reasons.sort();
        assert_eq!(
            reasons,
            vec![
                ("big.txt", SkipReason::TooLarge),
                ("blob.txt", SkipReason::Binary),
                ("empty.txt", SkipReason::Empty),
                ("store.db", SkipReason::CorpusFile),
            ]
        );
    }

    #[test]
    fn display_paths_keep_the_root_as_given() {
        assert_eq!(display_path(Path::new("./src/a.rs")), "src/a.rs");
        assert_eq!(display_path(Path::new("examples/demo/x.py")), "examples/demo/x.py");
    }

    #[test]
    fn a_single_file_root_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("one.txt");
        std::fs::write(&f, "only line").unwrap();
        let (docs, skips) = walk_all(&f, &WalkOptions::default());
        assert!(skips.is_empty());
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0].segments[0].text, "only line\n");
    }
}
