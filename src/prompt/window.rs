//! Windows: when the corpus is larger than the context, it is split at
//! document boundaries (or, inside a document too large for one window, at
//! segment boundaries) into windows that each fit. Every segment is in
//! exactly one window, so every token is still read once.
//!
//! Never drops or repeats a segment.

use std::ops::Range;

use crate::anchor::Anchor;
use crate::corpus::{Corpus, CorpusError};

use super::layout::{table_of_contents, DocumentBlock};
use super::{Content, Tokenizer};

/// Token counts of one block's pieces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockTokens {
    pub header: u32,
    pub pieces: Vec<u32>,
    pub footer: u32,
}

impl BlockTokens {
    #[must_use]
    pub fn total(&self) -> u32 {
        self.header + self.pieces.iter().sum::<u32>() + self.footer
    }
}

/// Counts every block's header, pieces and footer with `tokenizer`, using
/// and filling the corpus's token-count cache (keyed by a hash of the
/// rendered text, so any change to the layout re-counts) unless counting
/// is cheaper than the cache.
pub fn count_units(
    blocks: &[DocumentBlock],
    corpus: &mut Corpus,
    tokenizer: &dyn Tokenizer,
) -> Result<Vec<BlockTokens>, CorpusError> {
    if tokenizer.counts_are_cheap() {
        let units: Vec<Vec<&str>> = blocks
            .iter()
            .map(|b| b.pieces.iter().map(|(_, p)| p.as_str()).collect())
            .collect();
        let flat: Vec<&str> = units.iter().flatten().copied().collect();
        let mut counts = count_parallel(tokenizer, &flat).into_iter();
        return Ok(blocks
            .iter()
            .zip(&units)
            .map(|(b, u)| {
                with_images(
                    b,
                    BlockTokens {
                        header: tokenizer.count_tokens(&b.header(None)),
                        pieces: counts.by_ref().take(u.len()).collect(),
                        footer: tokenizer.count_tokens(&b.footer()),
                    },
                    tokenizer,
                )
            })
            .collect());
    }
    let texts: Vec<Vec<String>> = blocks
        .iter()
        .map(|b| {
            let mut v = vec![b.header(None)];
            v.extend(b.pieces.iter().map(|(_, p)| p.clone()));
            v.push(b.footer());
            v
        })
        .collect();
    let hashes: Vec<String> = texts
        .iter()
        .flatten()
        .map(|t| blake3::hash(t.as_bytes()).to_hex().to_string())
        .collect();
    let cached = corpus.token_counts(tokenizer.tokenizer_id(), &hashes)?;
    let all: Vec<&String> = texts.iter().flatten().collect();
    let missing: Vec<usize> = cached
        .iter()
        .enumerate()
        .filter(|(_, c)| c.is_none())
        .map(|(i, _)| i)
        .collect();
    let counted = count_parallel(tokenizer, &missing.iter().map(|&i| all[i].as_str()).collect::<Vec<_>>());
    let mut flat: Vec<u32> = cached.into_iter().map(|c| c.unwrap_or(0)).collect();
    let mut fresh = Vec::with_capacity(missing.len());
    for (&i, n) in missing.iter().zip(counted) {
        flat[i] = n;
        fresh.push((hashes[i].clone(), n));
    }
    if !fresh.is_empty() {
        corpus.store_token_counts(tokenizer.tokenizer_id(), &fresh)?;
    }
    let mut it = flat.into_iter();
    Ok(texts
        .iter()
        .zip(blocks)
        .map(|(t, b)| {
            let header = it.next().unwrap_or(0);
            let pieces: Vec<u32> = (0..t.len() - 2).map(|_| it.next().unwrap_or(0)).collect();
            let footer = it.next().unwrap_or(0);
            with_images(b, BlockTokens { header, pieces, footer }, tokenizer)
        })
        .collect())
}

/// Counts one block's header, pieces and footer, without a cache.
#[must_use]
pub fn count_block(block: &DocumentBlock, tokenizer: &dyn Tokenizer) -> BlockTokens {
    with_images(
        block,
        BlockTokens {
            header: tokenizer.count_tokens(&block.header(None)),
            pieces: block.pieces.iter().map(|(_, p)| tokenizer.count_tokens(p)).collect(),
            footer: tokenizer.count_tokens(&block.footer()),
        },
        tokenizer,
    )
}

/// Adds what each image costs to the piece it stands before.
fn with_images(block: &DocumentBlock, mut counts: BlockTokens, tokenizer: &dyn Tokenizer) -> BlockTokens {
    for (at, image) in &block.images {
        if let Some(n) = counts.pieces.get_mut(*at) {
            *n += tokenizer.image_tokens(image.width, image.height).unwrap_or(0);
        }
    }
    counts
}

/// Counts `texts` on every core (tokenizing is most of a first ingest's
/// time on large repositories).
fn count_parallel(tokenizer: &dyn Tokenizer, texts: &[&str]) -> Vec<u32> {
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    if threads == 1 || texts.len() < 64 {
        return texts.iter().map(|t| tokenizer.count_tokens(t)).collect();
    }
    let chunk = texts.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = texts
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(|t| tokenizer.count_tokens(t)).collect::<Vec<u32>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("token counting does not panic"))
            .collect()
    })
}

/// A contiguous run of one document's pieces inside a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowPart {
    /// Index into the blocks given to [`plan_windows`].
    pub block: usize,
    pub pieces: Range<usize>,
    /// `(part number, parts)` when the document was split.
    pub part: Option<(usize, usize)>,
    pub tokens: u32,
}

/// One window: the documents (or parts) it shows, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub parts: Vec<WindowPart>,
    pub tokens: u32,
}

/// Tokens reserved for each table-of-contents line.
const TOC_LINE_TOKENS: u32 = 24;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "{anchor} alone takes {tokens} tokens with its document's boundary lines, more than the {budget} a window can hold"
)]
pub struct PieceTooLarge {
    pub anchor: String,
    pub tokens: u32,
    pub budget: u32,
}

/// Packs blocks into windows of at most `budget` tokens (documents and the
/// table of contents), keeping document order; a document larger than a
/// window is split between its pieces.
pub fn plan_windows(
    blocks: &[DocumentBlock],
    counts: &[BlockTokens],
    budget: u32,
) -> Result<Vec<Window>, PieceTooLarge> {
    // First cut documents into units that each fit a window on their own.
    let mut units: Vec<WindowPart> = Vec::new();
    for (i, (block, count)) in blocks.iter().zip(counts).enumerate() {
        let whole = count.total() + TOC_LINE_TOKENS;
        if whole <= budget {
            units.push(WindowPart {
                block: i,
                pieces: 0..count.pieces.len(),
                part: None,
                tokens: whole,
            });
            continue;
        }
        let overhead = count.header + count.footer + TOC_LINE_TOKENS + 8; // part=i/n showing=...
        let mut parts: Vec<WindowPart> = Vec::new();
        let mut start = 0;
        let mut tokens = overhead;
        for (j, &n) in count.pieces.iter().enumerate() {
            if overhead + n > budget {
                return Err(PieceTooLarge {
                    anchor: block.pieces[j].0.to_string(),
                    tokens: overhead + n,
                    budget,
                });
            }
            if tokens + n > budget {
                parts.push(WindowPart {
                    block: i,
                    pieces: start..j,
                    part: None,
                    tokens,
                });
                start = j;
                tokens = overhead;
            }
            tokens += n;
        }
        parts.push(WindowPart {
            block: i,
            pieces: start..count.pieces.len(),
            part: None,
            tokens,
        });
        let n = parts.len();
        for (k, p) in parts.iter_mut().enumerate() {
            p.part = Some((k + 1, n));
        }
        units.extend(parts);
    }
    let mut windows: Vec<Window> = Vec::new();
    let mut current = Window {
        parts: Vec::new(),
        tokens: 0,
    };
    for unit in units {
        if !current.parts.is_empty() && current.tokens + unit.tokens > budget {
            windows.push(std::mem::replace(
                &mut current,
                Window {
                    parts: Vec::new(),
                    tokens: 0,
                },
            ));
        }
        current.tokens += unit.tokens;
        current.parts.push(unit);
    }
    if !current.parts.is_empty() || windows.is_empty() {
        windows.push(current);
    }
    Ok(windows)
}

/// The anchor range a part shows, e.g. `lines 121-240` or `pages 3-5`.
fn showing(pieces: &[(Anchor, String)]) -> String {
    let (first, last) = (pieces.first().map(|p| &p.0), pieces.last().map(|p| &p.0));
    match (first, last) {
        (Some(Anchor::Lines { start, .. }), Some(Anchor::Lines { end, .. })) => format!("lines {start}-{end}"),
        (Some(a), Some(b)) if a.page().is_some() && b.page().is_some() => {
            format!("pages {}-{}", a.page().unwrap_or(0), b.page().unwrap_or(0))
        }
        _ => "whole".to_owned(),
    }
}

impl Window {
    /// The window's documents, with their images where they stand,
    /// followed by its table of contents.
    #[must_use]
    pub fn render(&self, blocks: &[DocumentBlock], salt: &str) -> Content {
        let mut s = Content::default();
        let mut toc = Vec::new();
        for part in &self.parts {
            let block = &blocks[part.block];
            let pieces = &block.pieces[part.pieces.clone()];
            let range = showing(pieces);
            s.push_str(&block.header(part.part.map(|(i, n)| (i, n, range.as_str()))));
            block.push_pieces(part.pieces.clone(), &mut s);
            s.push_str(&block.footer());
            let extent = if part.part.is_some() {
                range
            } else {
                block.extent.clone()
            };
            toc.push((block.path.clone(), extent, part.tokens.saturating_sub(TOC_LINE_TOKENS)));
        }
        s.push_str("\n");
        s.push_str(&table_of_contents(&toc, salt));
        s
    }

    /// Paths of the documents this window shows (each once).
    #[must_use]
    pub fn paths<'a>(&self, blocks: &'a [DocumentBlock]) -> Vec<&'a str> {
        let mut v: Vec<&str> = Vec::new();
        for p in &self.parts {
            let path = blocks[p.block].path.as_str();
            if v.last() != Some(&path) {
                v.push(path);
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus::StoredDocument;
    use crate::ingest::{split_text, DocumentKind};
    use crate::prompt::render_document;

    fn block(path: &str, lines: usize) -> DocumentBlock {
        let text: String = (1..=lines).map(|i| format!("line {i}\n")).collect();
        let doc = StoredDocument {
            id: 0,
            path: path.into(),
            kind: DocumentKind::Text,
            language: None,
            content_hash: String::new(),
            bytes: 0,
            modified: 0,
            replaced_chars: 0,
            image: None,
            segments: split_text(path, &text),
            symbols: Vec::new(),
            title: None,
            commits: 0,
        };
        render_document(&doc, "salt")
    }

    /// One token per line of every piece, 5 per header and footer.
    fn counts(blocks: &[DocumentBlock]) -> Vec<BlockTokens> {
        blocks
            .iter()
            .map(|b| BlockTokens {
                header: 5,
                pieces: b.pieces.iter().map(|(_, p)| p.lines().count() as u32).collect(),
                footer: 5,
            })
            .collect()
    }

    use crate::prompt::Words;

    #[test]
    fn parallel_and_serial_counting_agree_in_order() {
        let texts: Vec<String> = (0..500).map(|i| "w ".repeat(i % 37)).collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let serial: Vec<u32> = refs.iter().map(|t| Words.count_tokens(t)).collect();
        assert_eq!(count_parallel(&Words, &refs), serial);
        assert_eq!(
            count_parallel(&Words, &refs[..10]),
            serial[..10],
            "the small-input path too"
        );
    }

    #[test]
    fn small_corpus_is_one_window() {
        let blocks = vec![block("a", 10), block("b", 10)];
        let w = plan_windows(&blocks, &counts(&blocks), 1000).unwrap();
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].paths(&blocks), vec!["a", "b"]);
    }

    #[test]
    fn windows_split_at_document_boundaries_and_keep_order() {
        let blocks = vec![block("a", 50), block("b", 50), block("c", 50)];
        // Each doc costs 50 + 10 + 24 = 84; two fit in 170.
        let w = plan_windows(&blocks, &counts(&blocks), 170).unwrap();
        let paths: Vec<Vec<&str>> = w.iter().map(|w| w.paths(&blocks)).collect();
        assert_eq!(paths, vec![vec!["a", "b"], vec!["c"]]);
        assert!(w.iter().all(|w| w.tokens <= 170));
    }

    #[test]
    fn a_huge_document_is_split_between_segments_and_nothing_is_lost() {
        let blocks = vec![block("small", 5), block("huge", 600)];
        let c = counts(&blocks);
        let w = plan_windows(&blocks, &c, 300).unwrap();
        let huge_parts: Vec<&WindowPart> = w.iter().flat_map(|w| &w.parts).filter(|p| p.block == 1).collect();
        assert!(huge_parts.len() >= 3);
        // The parts cover every piece exactly once, in order.
        let covered: Vec<usize> = huge_parts.iter().flat_map(|p| p.pieces.clone()).collect();
        assert_eq!(covered, (0..blocks[1].pieces.len()).collect::<Vec<_>>());
        let rendered = w[1].render(&blocks, "salt").text;
        assert!(rendered.contains("part=1/"), "{rendered}");
        assert!(w.iter().all(|w| w.tokens <= 300));
    }

    #[test]
    fn a_piece_larger_than_any_window_is_an_error() {
        let blocks = vec![block("a", 100)];
        let err = plan_windows(&blocks, &counts(&blocks), 60).unwrap_err();
        assert_eq!(err.anchor, "a:1-100");
    }
}
