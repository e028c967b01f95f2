//! Ingest into a corpus: walk, store, count tokens.

use std::path::PathBuf;

use crate::corpus::{Corpus, CorpusError, IngestSummary, StoredDocument};
use crate::ingest::{display_path, walk, WalkItem, WalkOptions};
use std::collections::HashSet;

use crate::prompt::{count_block, count_units, render_document, Tokenizer, LAYOUT_VERSION};

/// Walks `roots` into `corpus` (only changed files are rewritten), then
/// counts the corpus's tokens as laid out in a prompt, with `tokenizer`.
/// `on_file` is called with each path as it is read, for progress.
pub fn ingest(
    corpus: &mut Corpus,
    roots: &[PathBuf],
    opts: &WalkOptions,
    tokenizer: Option<&dyn Tokenizer>,
    on_file: &mut dyn FnMut(&str),
) -> Result<IngestSummary, CorpusError> {
    let mut items = Vec::new();
    let mut opts = opts.clone();
    opts.exclude.push(corpus.path().to_owned());
    // Stored text depends on redaction: if the setting changed, read
    // every file again.
    let same_redaction = corpus.keeps_secrets()?.is_none_or(|keep| keep == opts.keep_secrets);
    if same_redaction {
        opts.known = std::sync::Arc::new(corpus.known_files()?);
    }
    // With a cheap counter, each document is counted as it arrives, while
    // the walkers read the rest, instead of after the walk.
    let early = tokenizer.filter(|t| t.counts_are_cheap());
    let salt = corpus.salt().to_owned();
    let mut counted = Vec::new();
    walk(roots, &opts, |item| {
        on_file(item.path());
        if let (Some(tok), WalkItem::Document(doc)) = (early, &item) {
            let block = render_document(&StoredDocument::from(&**doc), &salt);
            counted.push((doc.path.clone(), u64::from(count_block(&block, tok).total())));
        }
        items.push(item);
    });
    // Workers finish in any order; store and report in path order.
    items.sort_by(|a, b| a.path().cmp(b.path()));
    let root_names: Vec<String> = roots.iter().map(|r| display_path(r)).collect();
    let mut summary = corpus.store_run(&root_names, items, !same_redaction)?;
    // Recorded after the run is stored: a crash in between costs one more
    // full read, never text stored under the wrong setting.
    corpus.set_keeps_secrets(opts.keep_secrets)?;
    if let Some(tok) = early {
        corpus.store_document_token_totals(&totals_key(tok), &counted)?;
    }
    if let Some(tok) = tokenizer {
        summary.tokens = document_tokens(corpus, tok)?.iter().map(|d| d.2).sum();
    }
    Ok(summary)
}

/// What cached document totals were counted with.
fn totals_key(tokenizer: &dyn Tokenizer) -> String {
    format!("{}:{LAYOUT_VERSION}", tokenizer.tokenizer_id())
}

/// Tokens each document takes in a prompt (with its boundary and
/// markers), exact for `tokenizer`; cached in the corpus. In path order:
/// (path, kind, tokens).
pub fn document_tokens(
    corpus: &mut Corpus,
    tokenizer: &dyn Tokenizer,
) -> Result<Vec<(String, String, u64)>, CorpusError> {
    // Totals are kept per document and cleared when it is rewritten, so a
    // re-ingest renders and counts only what changed.
    let key = totals_key(tokenizer);
    let mut totals = corpus.document_token_totals(&key)?;
    let all = corpus.document_kinds()?;
    let missing: HashSet<String> = all
        .iter()
        .filter(|(p, _)| !totals.contains_key(p))
        .map(|(p, _)| p.clone())
        .collect();
    if !missing.is_empty() {
        let docs = corpus.documents_at(&missing)?;
        let blocks: Vec<_> = docs.iter().map(|d| render_document(d, corpus.salt())).collect();
        let counts = count_units(&blocks, corpus, tokenizer)?;
        let fresh: Vec<(String, u64)> = docs
            .iter()
            .zip(&counts)
            .map(|(d, c)| (d.path.clone(), u64::from(c.total())))
            .collect();
        corpus.store_document_token_totals(&key, &fresh)?;
        totals.extend(fresh);
    }
    Ok(all
        .into_iter()
        .map(|(path, kind)| (totals.get(&path).copied().unwrap_or(0), path, kind))
        .map(|(n, p, k)| (p, k, n))
        .collect())
}
