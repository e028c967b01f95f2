//! Reading a corpus: documents with their segments (all, or by path),
//! kinds, roots, token totals, OCR lines, page images, skips, the files it
//! knows, meta values.
//!
//! Never writes.

use std::collections::{BTreeMap, HashMap, HashSet};

use rusqlite::{params, OptionalExtension};

use super::{Corpus, CorpusError, StoredDocument};
use crate::anchor::Anchor;
use crate::document::{DocumentKind, ImageInfo, Segment, Symbol};
use crate::ingest::{KnownFile, KnownFiles};
use crate::model::vision::llama4_tiling;

/// Which documents a walk may find unchanged by size and time (see
/// [`Corpus::known_files`]), for `documents d`, with the pixel limit as
/// `?1`.
pub(super) const KNOWN: &str = "d.kind != 'image' OR d.width IS NULL OR d.width * d.height > ?1
    OR EXISTS (SELECT 1 FROM page_images p WHERE p.doc_id = d.id)";

pub(super) fn known_files(conn: &rusqlite::Connection) -> rusqlite::Result<KnownFiles> {
    let mut stmt = conn.prepare(&format!("SELECT path, bytes, mtime_ns FROM documents d WHERE {KNOWN}"))?;
    let rows = stmt.query_map([crate::limits::MAX_SCAN_PIXELS as i64], |r| {
        Ok((
            r.get::<_, String>(0)?,
            KnownFile {
                bytes: r.get::<_, i64>(1)? as u64,
                mtime_ns: r.get(2)?,
            },
        ))
    })?;
    // Sized once: growing a map of a large tree rehashes it a dozen times.
    let mut known =
        KnownFiles::with_capacity_and_hasher(rows_in(conn, "documents")? as usize, rustc_hash::FxBuildHasher);
    for row in rows {
        let (path, file) = row?;
        known.insert(path, file);
    }
    Ok(known)
}

impl Corpus {
    /// How many rows `table` (one of the schema's) holds.
    pub(super) fn rows_in(&self, table: &str) -> Result<u64, CorpusError> {
        rows_in(&self.conn, table).map_err(|e| self.err(e))
    }

    /// Every document with its segments, ordered by path.
    pub fn documents(&self) -> Result<Vec<StoredDocument>, CorpusError> {
        self.documents_matching(None)
    }

    /// The OCR lines of a document (an image, or a scanned PDF's pages),
    /// in reading order.
    pub fn ocr_lines(&self, doc_id: i64) -> Result<Vec<crate::ingest::ocr::OcrLine>, CorpusError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT page, x, y, w, h, confidence, text FROM ocr_lines WHERE doc_id = ?1 ORDER BY rowid")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([doc_id], |r| {
                Ok(crate::ingest::ocr::OcrLine {
                    page: r.get(0)?,
                    // Blocks are not stored; lines keep their reading order.
                    block: 0,
                    x: r.get(1)?,
                    y: r.get(2)?,
                    w: r.get(3)?,
                    h: r.get(4)?,
                    confidence: r.get::<_, f64>(5)? as f32,
                    text: r.get(6)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// The image of a scanned PDF page (JPEG or PNG bytes), when the
    /// page was a scan.
    pub fn page_image(&self, doc_id: i64, page: u32) -> Result<Option<Vec<u8>>, CorpusError> {
        self.conn
            .query_row(
                "SELECT bytes FROM page_images WHERE doc_id = ?1 AND page = ?2",
                params![doc_id, page],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// What the latest ingest run skipped: (path, reason, detail).
    pub fn last_skips(&self) -> Result<Vec<(String, String, String)>, CorpusError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT path, reason, detail FROM skips
                 WHERE run_id = (SELECT MAX(id) FROM ingest_runs) ORDER BY path",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// The documents at `paths`, with their segments, ordered by path; only
    /// their rows are read.
    pub fn documents_at(&self, paths: &HashSet<String>) -> Result<Vec<StoredDocument>, CorpusError> {
        self.documents_matching(Some(paths))
    }

    pub(super) fn documents_matching(
        &self,
        only: Option<&HashSet<String>>,
    ) -> Result<Vec<StoredDocument>, CorpusError> {
        let mut docs: Vec<StoredDocument> = Vec::new();
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, d.path, kind, language, content_hash, bytes, modified, replaced_chars, width, height, title,
                        COALESCE(g.commits, 0)
                 FROM documents d LEFT JOIN git_commits g ON g.path = d.path ORDER BY d.path",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                let kind: String = r.get(2)?;
                let width: Option<i64> = r.get(8)?;
                let height: Option<i64> = r.get(9)?;
                Ok(StoredDocument {
                    id: r.get(0)?,
                    path: r.get(1)?,
                    kind: DocumentKind::parse(&kind).unwrap_or(DocumentKind::Text),
                    language: r.get(3)?,
                    content_hash: r.get(4)?,
                    bytes: r.get::<_, i64>(5)? as u64,
                    modified: r.get(6)?,
                    replaced_chars: r.get::<_, i64>(7)? as u64,
                    image: width.zip(height).map(|(w, h)| ImageInfo {
                        width: w as u32,
                        height: h as u32,
                    }),
                    segments: Vec::new(),
                    symbols: Vec::new(),
                    title: r.get(10)?,
                    commits: r.get::<_, i64>(11)? as u32,
                })
            })
            .map_err(|e| self.err(e))?;
        for row in rows {
            docs.push(row.map_err(|e| self.err(e))?);
        }
        // With a filter, the wanted ids go into a temporary table that the
        // segment and symbol queries join, so only their rows are read.
        let scope = if let Some(paths) = only {
            docs.retain(|d| paths.contains(&d.path));
            self.conn
                .execute_batch("CREATE TEMP TABLE IF NOT EXISTS wanted (id INTEGER PRIMARY KEY); DELETE FROM wanted;")
                .map_err(|e| self.err(e))?;
            let mut ins = self
                .conn
                .prepare_cached("INSERT INTO wanted VALUES (?1)")
                .map_err(|e| self.err(e))?;
            for d in &docs {
                ins.execute([d.id]).map_err(|e| self.err(e))?;
            }
            " WHERE doc_id IN (SELECT id FROM wanted)"
        } else {
            ""
        };
        let index: BTreeMap<i64, usize> = docs.iter().enumerate().map(|(i, d)| (d.id, i)).collect();
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT doc_id, line_start, line_end, page, x, y, w, h, text FROM segments{scope} ORDER BY doc_id, ord"
            ))
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                let bbox = (
                    r.get::<_, Option<u32>>(4)?,
                    r.get::<_, Option<u32>>(5)?,
                    r.get::<_, Option<u32>>(6)?,
                    r.get::<_, Option<u32>>(7)?,
                );
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Option<u32>>(1)?,
                    r.get::<_, Option<u32>>(2)?,
                    r.get::<_, Option<u32>>(3)?,
                    bbox,
                    r.get::<_, String>(8)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        for row in rows {
            let (doc_id, start, end, page, bbox, text) = row.map_err(|e| self.err(e))?;
            let Some(&i) = index.get(&doc_id) else { continue };
            let path = docs[i].path.clone();
            let anchor = match (start, end, page, bbox) {
                (Some(start), Some(end), _, _) => Anchor::Lines { path, start, end },
                (_, _, Some(page), (Some(x), Some(y), Some(w), Some(h))) => Anchor::Region { path, page, x, y, w, h },
                (_, _, Some(page), _) => Anchor::Page { path, page },
                _ => Anchor::Document { path },
            };
            docs[i].segments.push(Segment { anchor, text });
        }
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT doc_id, name, kind, start_line, end_line FROM symbols{scope} ORDER BY doc_id, start_line, end_line DESC"
            ))
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    Symbol {
                        name: r.get(1)?,
                        kind: r.get(2)?,
                        start_line: r.get(3)?,
                        end_line: r.get(4)?,
                    },
                ))
            })
            .map_err(|e| self.err(e))?;
        for row in rows {
            let (doc_id, sym) = row.map_err(|e| self.err(e))?;
            if let Some(&i) = index.get(&doc_id) {
                docs[i].symbols.push(sym);
            }
        }
        Ok(docs)
    }

    /// Every document's path and kind, without reading its text.
    pub fn document_kinds(&self) -> Result<Vec<(String, String)>, CorpusError> {
        let mut stmt = self
            .conn
            .prepare("SELECT path, kind FROM documents ORDER BY path")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// The roots its kept ingest runs read, as they were given, each once,
    /// in the order first read.
    pub fn ingest_roots(&self) -> Result<Vec<String>, CorpusError> {
        let mut stmt = self
            .conn
            .prepare("SELECT roots FROM ingest_runs ORDER BY id")
            .map_err(|e| self.err(e))?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0)).map_err(|e| self.err(e))?;
        let mut roots: Vec<String> = Vec::new();
        for run in rows {
            let run = run.map_err(|e| self.err(e))?;
            for root in serde_json::from_str::<Vec<String>>(&run).unwrap_or_default() {
                if !roots.contains(&root) {
                    roots.push(root);
                }
            }
        }
        Ok(roots)
    }

    /// Prompt token totals already counted under `key`, by path.
    pub fn document_token_totals(&self, key: &str) -> Result<HashMap<String, u64>, CorpusError> {
        let mut stmt = self
            .conn
            .prepare("SELECT path, tokens FROM documents WHERE tokens_key = ?1 AND tokens IS NOT NULL")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([key], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Documents with no prompt token total counted under `key`.
    pub fn documents_without_totals(&self, key: &str) -> Result<HashSet<String>, CorpusError> {
        let mut stmt = self
            .conn
            .prepare("SELECT path FROM documents WHERE tokens_key IS NOT ?1 OR tokens IS NULL")
            .map_err(|e| self.err(e))?;
        let rows = stmt.query_map([key], |r| r.get(0)).map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// How many documents have a prompt token total counted under `key`,
    /// and the sum of those totals.
    pub fn document_token_sum(&self, key: &str) -> Result<(u64, u64), CorpusError> {
        self.conn
            .query_row(
                "SELECT count(*), coalesce(sum(tokens), 0) FROM documents WHERE tokens_key = ?1 AND tokens IS NOT NULL",
                [key],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
            )
            .map_err(|e| self.err(e))
    }

    /// How many documents the corpus holds.
    pub fn document_count(&self) -> Result<u64, CorpusError> {
        self.rows_in("documents")
    }

    /// Size and modification time of every stored file, by path: a walk
    /// skips reading files that still match. An image whose own bytes the
    /// corpus lacks (ingested by a scout that kept only scanned PDF pages)
    /// is left out, so it is read again and its bytes kept (not one over the
    /// pixel limit, which is never kept).
    pub fn known_files(&self) -> Result<KnownFiles, CorpusError> {
        known_files(&self.conn).map_err(|e| self.err(e))
    }

    /// The documents written or removed since the walk listing was kept,
    /// with what the corpus now holds for each (as [`Corpus::known_files`]
    /// gives it; `None` when nothing): to bring the listing up to date.
    pub fn touched_files(&self) -> Result<Vec<(String, Option<KnownFile>)>, CorpusError> {
        let query = format!(
            "SELECT t.path, d.bytes, d.mtime_ns FROM documents_touched t
             LEFT JOIN documents d ON d.path = t.path AND ({KNOWN})"
        );
        let mut stmt = self.conn.prepare(&query).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([crate::limits::MAX_SCAN_PIXELS as i64], |r| {
                let known = match (r.get::<_, Option<i64>>(1)?, r.get::<_, Option<i64>>(2)?) {
                    (Some(bytes), Some(mtime_ns)) => Some(KnownFile {
                        bytes: bytes as u64,
                        mtime_ns,
                    }),
                    _ => None,
                };
                Ok((r.get::<_, String>(0)?, known))
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Llama 4 vision tokens for every image in the corpus.
    pub fn llama4_image_tokens(&self) -> Result<u64, CorpusError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT width, height FROM documents WHERE kind = 'image' AND width IS NOT NULL AND height IS NOT NULL",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, u32>(0)?, r.get::<_, u32>(1)?)))
            .map_err(|e| self.err(e))?;
        let mut total = 0u64;
        for row in rows {
            let (w, h) = row.map_err(|e| self.err(e))?;
            total += u64::from(llama4_tiling(w, h).tokens);
        }
        Ok(total)
    }

    pub fn keeps_secrets(&self) -> Result<Option<bool>, CorpusError> {
        let v: Option<String> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'keep_secrets'", [], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))?;
        Ok(v.map(|v| v == "1"))
    }

    /// The listing of the sources the last full walk recorded (see
    /// [`crate::ingest::listing`]), as bytes.
    pub fn walk_listing(&self) -> Result<Option<Vec<u8>>, CorpusError> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = 'walk_listing'", [], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Cached token counts for `hashes` under `tokenizer`.
    pub fn token_counts(&self, tokenizer: &str, hashes: &[String]) -> Result<Vec<Option<u32>>, CorpusError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT tokens FROM token_counts WHERE text_hash = ?1 AND tokenizer = ?2")
            .map_err(|e| self.err(e))?;
        hashes
            .iter()
            .map(|h| {
                stmt.query_row(params![h, tokenizer], |r| r.get::<_, u32>(0))
                    .optional()
                    .map_err(|e| self.err(e))
            })
            .collect()
    }
}

/// How many rows `table` (one of the schema's) holds. Documents are
/// counted on their smallest index: left to choose, `SQLite` counts them
/// on the index of their paths, seven times the size (a re-ingest of a
/// large tree counts them three times).
pub(super) fn rows_in(conn: &rusqlite::Connection, table: &str) -> rusqlite::Result<u64> {
    let from = if table == "documents" {
        "documents INDEXED BY documents_kind_bytes"
    } else {
        table
    };
    conn.query_row(&format!("SELECT count(*) FROM {from}"), [], |r| r.get::<_, i64>(0))
        .map(|n| n as u64)
}
