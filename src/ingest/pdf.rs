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

use super::{Segment, SkipReason};

/// Why a PDF gave no pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PdfFailure {
    pub reason: SkipReason,
    pub detail: String,
}

/// Text of each page of the PDF in `bytes`, as one segment per page. Pages
/// with no text still get a segment (saying so), so page numbers in the
/// prompt match the document.
pub fn extract_pages(path: &str, bytes: Vec<u8>, time_limit: Duration) -> Result<Vec<Segment>, PdfFailure> {
    let (tx, rx) = mpsc::channel();
    let spawned = thread::Builder::new().name("pdf-extract".into()).spawn(move || {
        let outcome = catch_unwind(AssertUnwindSafe(|| pdf_extract::extract_text_from_mem_by_pages(&bytes)));
        // The receiver may have given up (timeout); nothing to do then.
        let _ = tx.send(outcome);
    });
    if let Err(e) = spawned {
        return Err(PdfFailure {
            reason: SkipReason::PdfError,
            detail: format!("could not start parser thread: {e}"),
        });
    }
    let pages = match rx.recv_timeout(time_limit) {
        Ok(Ok(Ok(pages))) => pages,
        Ok(Ok(Err(e))) => {
            return Err(PdfFailure {
                reason: SkipReason::PdfError,
                detail: e.to_string(),
            })
        }
        Ok(Err(panic)) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            return Err(PdfFailure {
                reason: SkipReason::PdfPanic,
                detail: format!("parser panicked: {msg}"),
            });
        }
        Err(_) => {
            return Err(PdfFailure {
                reason: SkipReason::PdfTimeout,
                detail: format!("no result after {} s", time_limit.as_secs()),
            })
        }
    };
    Ok(pages
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
        .collect())
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
    fn page_text_is_tidied() {
        assert_eq!(normalise_page_text("\n\nTitle  \n\n\n\nBody\n\n"), "Title\n\nBody\n");
    }
}
