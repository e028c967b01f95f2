//! PDFs: text per page, with `path#page=N` anchors.
//!
//! pdf-extract can panic or spin on broken files. Each document is parsed on
//! its own thread behind `catch_unwind` and waited for with a time limit; a
//! panic or a timeout becomes a typed per-document outcome and the run goes
//! on. (A timed-out thread cannot be killed from inside the process; it is
//! left to finish on its own. Running the parser in a worker process is the
//! ingest issue's job.)

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use crate::anchor::Anchor;

use super::outline::Symbol;
use super::{Segment, SkipReason};

/// Why a PDF gave no pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PdfFailure {
    pub reason: SkipReason,
    pub detail: String,
}

/// What a PDF holds: one segment per page, its bookmarks as sections,
/// its title.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PdfContent {
    pub pages: Vec<Segment>,
    /// Bookmarks as symbols whose "lines" are pages: each section runs from
    /// its page to the page before the next section at its level or above.
    pub sections: Vec<Symbol>,
    pub title: Option<String>,
}

/// Structure from lopdf: (encrypted, bookmarks as (level, title, page),
/// title).
type Structure = (bool, Vec<(usize, String, u32)>, Option<String>);

fn structure(bytes: &[u8]) -> Option<Structure> {
    let doc = lopdf::Document::load_mem(bytes).ok()?;
    let toc = doc
        .get_toc()
        .map(|t| {
            t.toc
                .into_iter()
                .map(|e| (e.level, e.title.trim().to_owned(), e.page as u32))
                .collect()
        })
        .unwrap_or_default();
    let title = doc
        .trailer
        .get(b"Info")
        .ok()
        .and_then(|o| o.as_reference().ok())
        .and_then(|id| doc.get_dictionary(id).ok())
        .and_then(|info| info.get(b"Title").ok())
        .and_then(|t| t.as_str().ok())
        .map(|b| String::from_utf8_lossy(b).trim().to_owned())
        .filter(|t| !t.is_empty());
    Some((doc.is_encrypted(), toc, title))
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

/// Text of each page of the PDF in `bytes`, one segment per page, with its
/// bookmarks and title. Pages with no text still get a segment (saying so),
/// so page numbers in the prompt match the document.
pub fn extract_pages(path: &str, bytes: Vec<u8>, time_limit: Duration) -> Result<PdfContent, PdfFailure> {
    let (tx, rx) = mpsc::channel();
    let spawned = thread::Builder::new().name("pdf-extract".into()).spawn(move || {
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            // Structure is best effort: a PDF whose outline lopdf cannot
            // read still gets its text.
            let structure = catch_unwind(AssertUnwindSafe(|| structure(&bytes))).ok().flatten();
            (pdf_extract::extract_text_from_mem_by_pages(&bytes), structure)
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
    let (pages, (encrypted, toc, title)) = match rx.recv_timeout(time_limit) {
        Ok(Ok((Ok(pages), structure))) => (pages, structure.unwrap_or_default()),
        Ok(Ok((Err(e), structure))) => {
            let encrypted = structure.is_some_and(|s| s.0);
            return Err(if encrypted {
                PdfFailure {
                    reason: SkipReason::PdfEncrypted,
                    detail: format!("encrypted PDF that needs a password; scout does not decrypt it ({e})"),
                }
            } else {
                PdfFailure {
                    reason: SkipReason::PdfError,
                    detail: e.to_string(),
                }
            });
        }
        Ok(Err(panic)) => {
            return Err(PdfFailure {
                reason: SkipReason::PdfPanic,
                detail: format!("parser panicked: {}", panic_message(panic.as_ref())),
            });
        }
        Err(_) => {
            return Err(PdfFailure {
                reason: SkipReason::PdfTimeout,
                detail: format!("no result after {} s", time_limit.as_secs()),
            })
        }
    };
    let _ = encrypted; // opened with the empty password: readable, so read
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
    })
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

/// pdf-extract leaves runs of blank lines and trailing spaces from the page
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
mod tests {
    use super::*;

    #[test]
    fn garbage_is_a_typed_error_not_a_panic() {
        let err = extract_pages(
            "x.pdf",
            b"%PDF-1.4\nthis is not a pdf".to_vec(),
            Duration::from_secs(10),
        )
        .unwrap_err();
        assert!(
            matches!(err.reason, SkipReason::PdfError | SkipReason::PdfPanic),
            "{err:?}"
        );
    }

    #[test]
    fn bookmarks_become_page_ranges() {
        let toc = vec![
            (1, "Intro".to_owned(), 1),
            (2, "Scope".to_owned(), 2),
            (1, "Methods".to_owned(), 4),
            (1, "Broken".to_owned(), 99),
        ];
        let got: Vec<(String, u32, u32)> = sections(&toc, 6)
            .into_iter()
            .map(|s| (s.name, s.start_line, s.end_line))
            .collect();
        assert_eq!(
            got,
            vec![("Intro".into(), 1, 3), ("Scope".into(), 2, 3), ("Methods".into(), 4, 6)]
        );
    }

    #[test]
    fn a_real_pdf_gives_pages_and_title() {
        let bytes = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/demo/docs/operations-handbook.pdf"
        ))
        .unwrap();
        let c = extract_pages("h.pdf", bytes, Duration::from_secs(10)).unwrap();
        assert_eq!(c.pages.len(), 2);
        assert_eq!(c.title.as_deref(), Some("scout example"));
        assert!(c.pages[1].text.contains("Priya Raman"));
    }

    #[test]
    fn page_text_is_tidied() {
        assert_eq!(normalise_page_text("\n\nTitle  \n\n\n\nBody\n\n"), "Title\n\nBody\n");
    }
}
