//! Writing a corpus: an ingest run's documents, skips and token totals in
//! one transaction (only changed documents rewritten, vanished ones under
//! the same roots removed), git history, the walk's listing, token counts.
//!
//! Never reads files or counts tokens itself.

use rusqlite::{params, OptionalExtension, Transaction};

use super::queries::{known_files, rows_in};
use super::{now, Corpus, CorpusError, IngestSummary, Upsert, KEPT_RUNS, KEPT_SKIP_RUNS, SET_TOTAL};
use crate::anchor::Anchor;
use crate::document::Document;
use crate::ingest::listing::Listing;
use crate::ingest::WalkItem;

pub(super) fn upsert_document(tx: &Transaction<'_>, doc: &Document, rewrite: bool) -> rusqlite::Result<Upsert> {
    // Cached statements: one upsert per file, tens of thousands of rows.
    let existing: Option<(i64, String)> = tx
        .prepare_cached("SELECT id, content_hash FROM documents WHERE path = ?1")?
        .query_row([&doc.path], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let outcome = match &existing {
        Some((_, hash)) if *hash == doc.content_hash && !rewrite => {
            // Same bytes: keep segments; only the modification time may move.
            // Same bytes: not a change, so the document keeps its place in
            // the order (`modified`, maybe from git history); only the
            // stat fast path's time moves.
            tx.prepare_cached("UPDATE documents SET mtime_ns = ?1 WHERE path = ?2")?
                .execute(params![doc.mtime_ns, doc.path])?;
            // Images the corpus did not keep before (an older scout's).
            if let Some((id, _)) = &existing {
                let kept: bool = tx
                    .prepare_cached("SELECT EXISTS (SELECT 1 FROM page_images WHERE doc_id = ?1)")?
                    .query_row([id], |r| r.get(0))?;
                if !kept {
                    let mut stmt = tx.prepare_cached("INSERT INTO page_images VALUES (?1, ?2, ?3)")?;
                    for (page, bytes) in &doc.page_images {
                        stmt.execute(params![id, page, bytes])?;
                    }
                }
            }
            return Ok(Upsert::Unchanged);
        }
        Some((id, _)) => {
            tx.prepare_cached("DELETE FROM documents WHERE id = ?1")?
                .execute([id])?;
            Upsert::Changed
        }
        None => Upsert::Added,
    };
    tx.prepare_cached(
        "INSERT INTO documents (path, kind, language, content_hash, bytes, modified, mtime_ns, replaced_chars, width, height, title)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
            doc.path,
            doc.kind.as_str(),
            doc.language,
            doc.content_hash,
            doc.bytes as i64,
            doc.modified,
            doc.mtime_ns,
            doc.replaced_chars as i64,
            doc.image.map(|i| i.width),
            doc.image.map(|i| i.height),
            doc.title,
    ])?;
    let id = tx.last_insert_rowid();
    let mut stmt = tx.prepare_cached("INSERT INTO symbols VALUES (?1, ?2, ?3, ?4, ?5)")?;
    for sym in &doc.symbols {
        stmt.execute(params![id, sym.name, sym.kind, sym.start_line, sym.end_line])?;
    }
    let mut stmt = tx.prepare_cached("INSERT INTO secrets VALUES (?1, ?2, ?3, ?4)")?;
    for f in &doc.secrets {
        stmt.execute(params![id, f.line, f.page, f.kind])?;
    }
    let mut stmt = tx.prepare_cached("INSERT INTO segments VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)")?;
    for (ord, seg) in doc.segments.iter().enumerate() {
        let (start, end, page, bbox) = match seg.anchor {
            Anchor::Lines { start, end, .. } => (Some(start), Some(end), None, None),
            Anchor::Page { page, .. } => (None, None, Some(page), None),
            Anchor::Region { page, x, y, w, h, .. } => (None, None, Some(page), Some((x, y, w, h))),
            Anchor::Document { .. } => (None, None, None, None),
        };
        stmt.execute(params![
            id,
            ord as i64,
            start,
            end,
            page,
            bbox.map(|b| b.0),
            bbox.map(|b| b.1),
            bbox.map(|b| b.2),
            bbox.map(|b| b.3),
            seg.text
        ])?;
    }
    let mut stmt = tx.prepare_cached("INSERT INTO page_images VALUES (?1, ?2, ?3)")?;
    for (page, bytes) in &doc.page_images {
        stmt.execute(params![id, page, bytes])?;
    }
    let mut stmt = tx.prepare_cached("INSERT INTO ocr_lines VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")?;
    for line in &doc.ocr_lines {
        stmt.execute(params![
            id,
            line.page,
            line.x,
            line.y,
            line.w,
            line.h,
            f64::from(line.confidence),
            line.text
        ])?;
    }
    Ok(outcome)
}

/// Deletes documents that lie under one of `roots` but were not seen in
/// this run (deleted or now skipped files): not in `seen`, nor among the
/// `listed` files of a listing. Documents under other roots are left
/// alone: ingesting a second folder adds to a corpus.
pub(super) fn remove_missing(
    tx: &Transaction<'_>,
    roots: &[String],
    seen: &rustc_hash::FxHashSet<String>,
    listed: &[(std::sync::Arc<Listing>, Vec<u32>)],
) -> rusqlite::Result<u64> {
    // Every path seen is a document by now (a file found unchanged was
    // one, a file read has just been stored), and a listing names each
    // file once: when there are as many documents as paths seen, none is
    // missing.
    let listed_count: usize = listed.iter().map(|(_, entries)| entries.len()).sum();
    if rows_in(tx, "documents")? as usize == seen.len() + listed_count {
        return Ok(0);
    }
    let listed: rustc_hash::FxHashSet<&str> = listed
        .iter()
        .flat_map(|(listing, entries)| entries.iter().map(|&i| listing.shown(&listing.entries[i as usize])))
        .collect();
    let mut stmt = tx.prepare("SELECT id, path FROM documents")?;
    let all: Vec<(i64, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut removed = 0;
    for (id, path) in all {
        let under = roots.iter().any(|root| {
            root.is_empty()
                || root == "."
                || path == *root
                || path.starts_with(&format!("{}/", root.trim_end_matches('/')))
        });
        if under && !seen.contains(&path) && !listed.contains(path.as_str()) {
            tx.execute("DELETE FROM documents WHERE id = ?1", [id])?;
            removed += 1;
        }
    }
    Ok(removed)
}

impl Corpus {
    /// Stores one ingest run: every document (only changed ones rewritten),
    /// every skip, and the removal of documents under `roots` that are no
    /// longer there. One transaction: all of it lands or none.
    pub fn store_run(
        &mut self,
        roots: &[String],
        items: impl IntoIterator<Item = WalkItem>,
        rewrite_all: bool,
    ) -> Result<IngestSummary, CorpusError> {
        self.store_run_with_totals(roots, items, rewrite_all, || None)
    }

    /// [`Corpus::store_run`], also recording the prompt token totals that
    /// `totals` gives once the items are all in (key, then (path, tokens),
    /// as [`Corpus::store_document_token_totals`] takes them) in the same
    /// transaction.
    pub fn store_run_with_totals(
        &mut self,
        roots: &[String],
        items: impl IntoIterator<Item = WalkItem>,
        rewrite_all: bool,
        totals: impl FnOnce() -> Option<(String, Vec<(String, u64)>)>,
    ) -> Result<IngestSummary, CorpusError> {
        let path = self.path.clone();
        let err = |source| CorpusError::sqlite(&path, source);
        let tx = self.conn.transaction().map_err(err)?;
        tx.execute(
            "INSERT INTO ingest_runs (roots, started) VALUES (?1, ?2)",
            params![serde_json::to_string(roots).unwrap_or_default(), now()],
        )
        .map_err(err)?;
        let run_id = tx.last_insert_rowid();
        // Only the latest runs are kept: each holds its summary and skips,
        // which would otherwise grow the corpus with every re-ingest; skips,
        // one row per path, for fewer runs.
        tx.execute("DELETE FROM skips WHERE run_id <= ?1", [run_id - KEPT_SKIP_RUNS])
            .map_err(err)?;
        tx.execute("DELETE FROM ingest_runs WHERE id <= ?1", [run_id - KEPT_RUNS])
            .map_err(err)?;
        let mut summary = IngestSummary::default();
        // Most runs see about as many paths as the corpus holds.
        let mut seen = rustc_hash::FxHashSet::with_capacity_and_hasher(
            rows_in(&tx, "documents").map_err(err)? as usize,
            rustc_hash::FxBuildHasher,
        );
        // Unchanged files of a listing, by their places in it.
        let mut listed = Vec::new();
        for item in items {
            match item {
                WalkItem::Unchanged { path } => {
                    seen.insert(path);
                    summary.reused += 1;
                }
                WalkItem::UnchangedListed { listing, entries } => {
                    summary.reused += entries.len() as u64;
                    listed.push((listing, entries));
                }
                WalkItem::Document(doc) => {
                    seen.insert(doc.path.clone());
                    match upsert_document(&tx, &doc, rewrite_all).map_err(err)? {
                        Upsert::Added => summary.added += 1,
                        Upsert::Changed => summary.changed += 1,
                        Upsert::Unchanged => summary.unchanged += 1,
                    }
                    summary.replaced_chars += doc.replaced_chars;
                    summary.secrets.extend(doc.secrets.iter().cloned());
                    for outcome in &doc.ocr_outcomes {
                        *summary.ocr.entry((*outcome).to_owned()).or_default() += 1;
                    }
                    if let Some(reason) = doc.outline_failure {
                        *summary.outline_fallbacks.entry(reason.to_owned()).or_default() += 1;
                    } else if !doc.symbols.is_empty() {
                        summary.outlined += 1;
                    }
                }
                WalkItem::Skip(skip) => {
                    // A file that is now skipped but was a document before
                    // must leave the corpus (it may have become too large).
                    seen.remove(&skip.path);
                    tx.execute(
                        "INSERT INTO skips VALUES (?1, ?2, ?3, ?4)",
                        params![run_id, skip.path, skip.reason.as_str(), skip.detail],
                    )
                    .map_err(err)?;
                    *summary.skipped.entry(skip.reason.as_str().to_owned()).or_default() += 1;
                    if skip.reason.is_error() {
                        summary.errors += 1;
                    }
                    summary.skips.push(skip);
                }
            }
        }
        if let Some((key, totals)) = totals() {
            let mut stmt = tx.prepare_cached(SET_TOTAL).map_err(err)?;
            for (path, n) in &totals {
                stmt.execute(params![*n as i64, key, path]).map_err(err)?;
            }
        }
        summary.removed = remove_missing(&tx, roots, &seen, &listed).map_err(err)?;
        // Items come in the order the walkers finish; reports list by path.
        summary.skips.sort_by(|a, b| a.path.cmp(&b.path));
        summary.secrets.sort_by(|a, b| a.path.cmp(&b.path));
        // The run's skips are rows of their own, not written twice.
        let skips = std::mem::take(&mut summary.skips);
        let stored = serde_json::to_string(&summary).unwrap_or_default();
        summary.skips = skips;
        tx.execute(
            "UPDATE ingest_runs SET summary = ?1 WHERE id = ?2",
            params![stored, run_id],
        )
        .map_err(err)?;
        tx.commit().map_err(err)?;
        self.fill_totals(&mut summary)?;
        Ok(summary)
    }

    /// What the corpus holds after a run: documents by kind, bytes,
    /// segments, secrets, image tokens. One pass over the documents and
    /// index lookups for the rest: a re-ingest of a large tree ends with
    /// this, and each pass costs a millisecond or two.
    pub(super) fn fill_totals(&self, summary: &mut IngestSummary) -> Result<(), CorpusError> {
        // From the index on (kind, bytes): no sort, no table scan.
        let mut stmt = self
            .conn
            .prepare("SELECT kind, count(*), coalesce(sum(bytes), 0) FROM documents GROUP BY kind")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)? as u64,
                    r.get::<_, i64>(2)? as u64,
                ))
            })
            .map_err(|e| self.err(e))?;
        let kinds: Vec<(String, u64, u64)> = rows.collect::<Result<_, _>>().map_err(|e| self.err(e))?;
        summary.documents = kinds.iter().map(|k| k.1).sum();
        summary.bytes = kinds.iter().map(|k| k.2).sum();
        summary.by_kind = kinds.into_iter().map(|(kind, n, _)| (kind, n)).collect();
        summary.llama4_image_tokens = self.llama4_image_tokens()?;
        summary.segments = self.rows_in("segments")?;
        summary.secrets_in_corpus = self.rows_in("secrets")?;
        Ok(())
    }

    /// Records prompt token totals (path, tokens) counted under `key`.
    pub fn store_document_token_totals(&mut self, key: &str, totals: &[(String, u64)]) -> Result<(), CorpusError> {
        self.execute_many(SET_TOTAL, totals.iter().map(|(p, n)| (*n as i64, key, p.as_str())))
    }

    /// Runs `sql` once per row of parameters, all in one transaction.
    pub(super) fn execute_many<P: rusqlite::Params>(
        &mut self,
        sql: &str,
        rows: impl Iterator<Item = P>,
    ) -> Result<(), CorpusError> {
        let path = self.path.clone();
        let err = |source| CorpusError::sqlite(&path, source);
        let tx = self.conn.transaction().map_err(err)?;
        {
            let mut stmt = tx.prepare_cached(sql).map_err(err)?;
            for row in rows {
                stmt.execute(row).map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }

    /// Sets documents' git history, by path, in one transaction: the
    /// last-change time (seconds) and the commits that changed them, which
    /// are added to those recorded when `add` (a read of only the newer
    /// commits). Paths not in the corpus are passed over.
    pub fn set_history(&mut self, history: &[(String, i64, u32)], add: bool) -> Result<(), CorpusError> {
        let err = |e: rusqlite::Error| CorpusError::Corrupt {
            path: self.path.clone(),
            detail: e.to_string(),
        };
        let tx = self.conn.transaction().map_err(err)?;
        {
            let mut stmt = tx
                .prepare("UPDATE documents SET modified = ?1 WHERE path = ?2")
                .map_err(err)?;
            let mut commits = tx
                .prepare(if add {
                    "INSERT INTO git_commits VALUES (?1, ?2)
                     ON CONFLICT(path) DO UPDATE SET commits = commits + excluded.commits"
                } else {
                    "INSERT OR REPLACE INTO git_commits VALUES (?1, ?2)"
                })
                .map_err(err)?;
            for (path, t, n) in history {
                stmt.execute(params![t, path]).map_err(err)?;
                commits.execute(params![path, n]).map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }

    pub fn set_keeps_secrets(&self, keep: bool) -> Result<(), CorpusError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO meta VALUES ('keep_secrets', ?1)",
                [if keep { "1" } else { "0" }],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Keeps (or, with `None`, drops) the listing of the last walk, with
    /// what the corpus holds for each of its files (set in `listing` too).
    /// Kept as a blob in the text column (`SQLite` keeps a blob as it is).
    pub fn set_walk_listing(&mut self, listing: Option<&mut Listing>) -> Result<(), CorpusError> {
        let path = self.path.clone();
        let err = |source| CorpusError::sqlite(&path, source);
        // What the listing says of the files, and the log of what changed
        // since, agree: read, kept and emptied in one transaction.
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err)?;
        match listing {
            Some(listing) => {
                listing.set_known(&known_files(&tx).map_err(err)?);
                tx.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('walk_listing', ?1)",
                    [listing.to_bytes()],
                )
            }
            None => tx.execute("DELETE FROM meta WHERE key = 'walk_listing'", []),
        }
        .map_err(err)?;
        tx.execute("DELETE FROM documents_touched", []).map_err(err)?;
        tx.commit().map_err(err)
    }

    /// Stores token counts (text hash, tokens) under `tokenizer`.
    pub fn store_token_counts(&mut self, tokenizer: &str, counts: &[(String, u32)]) -> Result<(), CorpusError> {
        self.execute_many(
            "INSERT OR REPLACE INTO token_counts VALUES (?1, ?2, ?3)",
            counts.iter().map(|(hash, tokens)| (hash.as_str(), tokenizer, *tokens)),
        )
    }
}
