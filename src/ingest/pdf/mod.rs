//! PDFs: text per page, with `path#page=N` anchors.
//!
//! Parsers can panic or spin on broken files. Each document is parsed on
//! its own thread behind `catch_unwind` and waited for with a time limit; a
//! panic or a timeout becomes a typed per-document outcome and the run goes
//! on. (A timed-out thread cannot be killed from inside the process; it is
//! left to finish on its own, which is why the CLI reads PDFs in
//! `scout pdf-worker` child processes, killed at the limit.)
//!
//! Files: this one runs the extraction (through a worker or on a thread);
//! `pool` keeps the worker processes, each reading one PDF after another;
//! `checks` refuses bombs and cyclic page trees before anything reads
//! lopdf's parse (a file too small to inflate past the bounds is not
//! inflated to know; `text` walks `pdf_oxide`'s page tree for cycles
//! itself), and cyclic forms before pdf-extract reads them; `text` takes each
//! page's text out (`pdf_oxide`, pdf-extract as its fallback); `shown`
//! bounds the glyphs a page can show, so pdf-extract is spared pages that
//! hold next to no text; `structure`
//! reads bookmarks, the title, encryption and scanned pages' images with
//! lopdf.
//!
//! Never lets one PDF stop the run: every failure is a typed skip.

mod checks;
mod pool;
mod shown;
mod structure;
mod text;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::anchor::Anchor;
pub use checks::PdfBounds;
use checks::{check_bounds, check_forms, check_page_tree, inflation_bounded};
pub use pool::{worker_main, WorkerPool};
#[cfg(test)]
use structure::{bookmarks, page_image};
use structure::{structure, Structure};
#[cfg(test)]
use text::Fallback;
pub use text::PASSWORD_VAR;
use text::{page_texts, visible, FallbackChecks, TextFailure};

use super::outline::Symbol;
use super::{Segment, SkipReason};

/// Why a PDF gave no pages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PdfFailure {
    pub reason: SkipReason,
    pub detail: String,
}

/// What a PDF holds: one segment per page, its bookmarks as sections,
/// its title.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PdfContent {
    pub pages: Vec<Segment>,
    /// Bookmarks as symbols whose "lines" are pages: each section runs from
    /// its page to the page before the next section at its level or above.
    pub sections: Vec<Symbol>,
    pub title: Option<String>,
    /// Pages with no text layer whose content is an image (scans): the
    /// image as JPEG or PNG bytes to OCR, or why it could not be taken out.
    pub scans: Vec<(u32, Result<Vec<u8>, String>)>,
}

/// Where PDFs are parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PdfIsolation {
    /// On a thread of this process: a panic is caught, a hang is abandoned
    /// (the thread cannot be killed). For library use and tests.
    #[default]
    Thread,
    /// In child processes (`exe pdf-worker`), each reading one PDF after
    /// another: a hang is killed at the time limit, memory is capped, a
    /// crash in the parser stays in the child.
    Process(Arc<WorkerPool>),
}

impl PdfIsolation {
    /// Ends the worker processes waiting for a document (see
    /// [`WorkerPool::stop_idle`]); for the end of a walk.
    pub fn stop_workers(&self) {
        if let Self::Process(workers) = self {
            workers.stop_idle();
        }
    }
}

/// Stack of the thread that runs the PDF parsers.
const PDF_PARSER_STACK_BYTES: usize = 256 * 1024 * 1024;

/// Text, structure and scanned page images of a PDF, parsed as
/// `isolation` says.
pub fn extract(
    path: &str,
    bytes: Vec<u8>,
    limit: Duration,
    isolation: &PdfIsolation,
) -> Result<PdfContent, PdfFailure> {
    match isolation {
        PdfIsolation::Thread => extract_pages(path, bytes, limit),
        PdfIsolation::Process(workers) => workers.extract(path, &bytes, limit),
    }
}

/// Why a text-less page has no image to read: it has none.
pub const BLANK_PAGE: &str = "the page has neither a text layer nor an image";

/// A page whose text layer has fewer visible characters than this is taken
/// to be a scan (page numbers and stray marks aside).
const SCAN_TEXT_CHARS: usize = 16;

/// Text of each page of the PDF in `bytes`, one segment per page, with its
/// bookmarks and title. Pages with no text still get a segment (saying so),
/// so page numbers in the prompt match the document. An encrypted file is
/// opened with the empty password, or with the one in [`PASSWORD_VAR`].
pub fn extract_pages(path: &str, bytes: Vec<u8>, time_limit: Duration) -> Result<PdfContent, PdfFailure> {
    let password = std::env::var(PASSWORD_VAR).ok().filter(|p| !p.is_empty());
    extract_pages_with(path, bytes, time_limit, password)
}

/// [`extract_pages`] with the password to try after the empty one.
pub fn extract_pages_with(
    path: &str,
    bytes: Vec<u8>,
    time_limit: Duration,
    password: Option<String>,
) -> Result<PdfContent, PdfFailure> {
    let (tx, rx) = mpsc::channel();
    let spawned = thread::Builder::new()
        .name("pdf-parser".into())
        // The parsers recurse into nested objects and content: a deep but
        // finite nesting needs more than a thread's usual 2 MiB. Only the
        // pages touched are committed.
        .stack_size(PDF_PARSER_STACK_BYTES)
        .spawn(move || {
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                // lopdf reads the document for its bounds and structure, and
                // for pdf-extract: at once where the file is large enough to
                // hold a decompression bomb, else only when first needed.
                let lopdf = Lopdf::new(&bytes);
                if !inflation_bounded(bytes.len() as u64, PdfBounds::default()) {
                    lopdf.get()?;
                }
                // pdf-extract follows forms by recursion, so a document whose
                // forms draw themselves is kept from it; `pdf_oxide` bounds
                // its own depth. The check inflates and parses every form, so
                // it runs only if pdf-extract is needed.
                let forms_checked = || match lopdf.get() {
                    Ok(doc) => doc.map_or(Ok(()), check_forms),
                    Err((_, why)) => Err(why),
                };
                let loaded = || lopdf.get().ok().flatten();
                let checks = FallbackChecks {
                    safe: &forms_checked,
                    doc: &loaded,
                };
                let text = page_texts(&bytes, password.as_deref(), SCAN_TEXT_CHARS, &checks);
                let textless: Vec<u32> = text.as_ref().map_or_else(
                    |_| Vec::new(),
                    |texts| {
                        (1..=texts.pages.len() as u32)
                            .filter(|&n| visible(&texts.pages[n as usize - 1]) < SCAN_TEXT_CHARS)
                            .collect()
                    },
                );
                // A document whose every page has text and that names no
                // outline and no title has nothing more for lopdf to read.
                let plain = text.as_ref().is_ok_and(|t| !t.structured) && textless.is_empty() && !lopdf.tried();
                if plain {
                    return Ok((text, Some(Structure::default())));
                }
                // Structure is best effort: a PDF whose outline lopdf cannot
                // read still gets its text.
                let structure = lopdf
                    .get()?
                    .and_then(|doc| catch_unwind(AssertUnwindSafe(|| structure(doc, &textless))).ok())
                    .or_else(|| {
                        // lopdf could not read what the text extractors did: the
                        // text-less pages still count, as images that could not
                        // be taken out.
                        let why = || Err("lopdf could not read the document structure".to_owned());
                        Some(Structure {
                            scans: textless.iter().map(|&p| (p, why())).collect(),
                            ..Structure::default()
                        })
                    });
                Ok((text, structure))
            }));
            // The receiver may have given up (timeout); nothing to do then.
            let _ = tx.send(outcome);
        });
    if let Err(e) = spawned {
        return Err(PdfFailure {
            reason: SkipReason::PdfError,
            detail: format!("could not start parser thread: {e}"),
        });
    }
    let (
        pages,
        Structure {
            encrypted,
            toc,
            title,
            scans,
        },
    ) = match rx.recv_timeout(time_limit) {
        Ok(Ok(Ok((Ok(texts), structure)))) => (texts.pages, structure.unwrap_or_default()),
        Ok(Ok(Err((reason, detail)))) => return Err(PdfFailure { reason, detail }),
        Ok(Ok(Ok((Err(failure), structure)))) => {
            let encrypted = structure.is_some_and(|s| s.encrypted);
            return Err(text_failure(failure, encrypted));
        }
        Ok(Err(panic)) => {
            return Err(PdfFailure {
                reason: SkipReason::PdfPanic,
                detail: format!("parser panicked: {}", crate::panic_message(panic.as_ref())),
            });
        }
        Err(_) => {
            return Err(PdfFailure {
                reason: SkipReason::PdfTimeout,
                detail: format!("no result after {} s", time_limit.as_secs()),
            })
        }
    };
    let _ = encrypted; // opened (empty password or the one given): readable, so read
    let n_pages = pages.len() as u32;
    let pages: Vec<Segment> = pages
        .into_iter()
        .enumerate()
        .map(|(i, text)| {
            let text = normalise_page_text(&text);
            Segment {
                anchor: Anchor::Page {
                    path: path.to_owned(),
                    page: i as u32 + 1,
                },
                text: if text.is_empty() {
                    "(no text layer on this page)\n".to_owned()
                } else {
                    text
                },
            }
        })
        .collect();
    Ok(PdfContent {
        pages,
        sections: sections(&toc, n_pages),
        title,
        scans,
    })
}

/// lopdf's reading of a document, loaded when first needed (a panic in
/// lopdf is a document it cannot read) and refused, with the reason, when it
/// is past the bounds or its page tree has a cycle: nothing reads a
/// document lopdf loaded before these checks pass.
struct Lopdf<'b> {
    bytes: &'b [u8],
    loaded: std::cell::OnceCell<Result<Option<lopdf::Document>, (SkipReason, String)>>,
}

impl<'b> Lopdf<'b> {
    fn new(bytes: &'b [u8]) -> Self {
        Self {
            bytes,
            loaded: std::cell::OnceCell::new(),
        }
    }

    /// The checked document (`None`: lopdf cannot read it), or why it is
    /// refused.
    fn get(&self) -> Result<Option<&lopdf::Document>, (SkipReason, String)> {
        let loaded = self.loaded.get_or_init(|| {
            let doc = catch_unwind(AssertUnwindSafe(|| lopdf::Document::load_mem(self.bytes).ok()))
                .ok()
                .flatten();
            if let Some(doc) = doc.as_ref() {
                check_bounds(doc, PdfBounds::default()).map_err(|why| (SkipReason::PdfBomb, why))?;
                check_page_tree(doc).map_err(|why| (SkipReason::PdfError, why))?;
            }
            Ok(doc)
        });
        match loaded {
            Ok(doc) => Ok(doc.as_ref()),
            Err(e) => Err(e.clone()),
        }
    }

    /// Whether lopdf has read the document (or tried to).
    fn tried(&self) -> bool {
        self.loaded.get().is_some()
    }
}

/// Why a document gave no text, typed. A document lopdf sees is encrypted
/// and neither extractor could read is taken to be locked.
fn text_failure(failure: TextFailure, encrypted: bool) -> PdfFailure {
    match failure {
        TextFailure::Locked(detail) => PdfFailure {
            reason: SkipReason::PdfEncrypted,
            detail,
        },
        TextFailure::Unreadable(why) if encrypted => PdfFailure {
            reason: SkipReason::PdfEncrypted,
            detail: format!(
                "encrypted PDF that scout could not open ({why}); if it has a password, set {PASSWORD_VAR}"
            ),
        },
        TextFailure::Unreadable(detail) => PdfFailure {
            reason: SkipReason::PdfError,
            detail,
        },
        TextFailure::Panicked(detail) => PdfFailure {
            reason: SkipReason::PdfPanic,
            detail,
        },
    }
}

/// Bookmarks as page ranges: a section ends before the next bookmark at its
/// level or above, or at the last page. Bookmarks pointing outside the
/// document are dropped from the outline (the text is all still there).
fn sections(toc: &[(usize, String, u32)], pages: u32) -> Vec<Symbol> {
    toc.iter()
        .enumerate()
        .filter(|(_, (_, title, page))| (1..=pages).contains(page) && !title.is_empty())
        .map(|(i, (level, title, page))| {
            let end = toc[i + 1..]
                .iter()
                .find(|(l, _, p)| l <= level && (1..=pages).contains(p))
                .map_or(pages, |(_, _, p)| p.saturating_sub(1).max(*page));
            Symbol {
                name: title.clone(),
                kind: "section".into(),
                start_line: *page,
                end_line: end,
            }
        })
        .collect()
}

/// The extractors leave runs of blank lines and trailing spaces from the page
/// layout; they cost tokens and say nothing.
fn normalise_page_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank_run = 0;
    for line in text.lines() {
        let line = line.trim_end();
        if line.is_empty() {
            blank_run += 1;
            if blank_run > 1 || out.is_empty() {
                continue;
            }
        } else {
            blank_run = 0;
        }
        out.push_str(line);
        out.push('\n');
    }
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}

#[cfg(test)]
mod fallback_tests;
#[cfg(test)]
mod tests;
