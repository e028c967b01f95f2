//! PDFs: text per page, with `path#page=N` anchors.
//!
//! pdf-extract can panic or spin on broken files. Each document is parsed on
//! its own thread behind `catch_unwind` and waited for with a time limit; a
//! panic or a timeout becomes a typed per-document outcome and the run goes
//! on. (A timed-out thread cannot be killed from inside the process; it is
//! left to finish on its own, which is why the CLI runs each PDF in a
//! `scout pdf-worker` child process, killed at the limit.)
//!
//! Files: this one runs the extraction (in a worker or on a thread);
//! `checks` refuses bombs, cyclic page trees and cyclic forms before any
//! extractor reads the file; `structure` reads bookmarks, the title,
//! encryption and scanned pages' images with lopdf.
//!
//! Never lets one PDF stop the run: every failure is a typed skip.

mod checks;
mod structure;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::process::Command;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::anchor::Anchor;
pub use checks::PdfBounds;
use checks::{check_bounds, check_forms, check_page_tree};
#[cfg(test)]
use structure::{bookmarks, page_image};
use structure::{structure, Structure};

use super::child::{self, ChildError};
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
    /// In a child process (`exe pdf-worker`): a hang is killed at the time
    /// limit, memory is capped, a crash in the parser stays in the child.
    Process { exe: PathBuf, max_memory_bytes: u64 },
}

/// Extra seconds the parent waits beyond the worker's own limit, so the
/// worker reports its timeout itself when it can.
const WORKER_GRACE_SECONDS: u64 = 3;

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
    let PdfIsolation::Process { exe, max_memory_bytes } = isolation else {
        return extract_pages(path, bytes, limit);
    };
    let mut cmd = Command::new(exe);
    cmd.args(["pdf-worker", "--path", path, "--seconds"])
        .arg(limit.as_secs().max(1).to_string())
        .arg("--max-memory")
        .arg(max_memory_bytes.to_string());
    let died = |detail: String| PdfFailure {
        reason: SkipReason::PdfPanic,
        detail,
    };
    match child::run(&mut cmd, &bytes, limit + Duration::from_secs(WORKER_GRACE_SECONDS)) {
        Err(ChildError::Timeout) => Err(PdfFailure {
            reason: SkipReason::PdfTimeout,
            detail: format!("the parser was killed after {} s", limit.as_secs()),
        }),
        Err(ChildError::Spawn(e) | ChildError::Wait(e)) => Err(died(format!("could not run the PDF worker: {e}"))),
        Ok(done) if !done.status.success() => {
            let last = done
                .stderr
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("no message");
            Err(died(format!(
                "the parser process died ({}; it may have hit its {} MiB memory cap): {last}",
                done.status,
                max_memory_bytes / 1_048_576
            )))
        }
        Ok(done) => serde_json::from_slice::<Result<PdfContent, PdfFailure>>(&done.stdout)
            .unwrap_or_else(|e| Err(died(format!("unreadable answer from the PDF worker: {e}")))),
    }
}

/// The worker process: reads a PDF on stdin, writes the result as JSON on
/// stdout. Memory is capped first, so a decompression bomb fails here.
#[must_use]
pub fn worker_main(path: &str, seconds: u64, max_memory_bytes: u64) -> i32 {
    #[cfg(unix)]
    if let Err(e) = rlimit::setrlimit(rlimit::Resource::AS, max_memory_bytes, max_memory_bytes) {
        tracing::warn!("pdf-worker: could not cap memory: {e}");
    }
    #[cfg(not(unix))]
    let _ = max_memory_bytes;
    let mut bytes = Vec::new();
    if let Err(e) = std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes) {
        tracing::error!("pdf-worker: reading stdin: {e}");
        return 2;
    }
    let result = extract_pages(path, bytes, Duration::from_secs(seconds));
    match serde_json::to_writer(std::io::stdout().lock(), &result) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("pdf-worker: writing the result: {e}");
            2
        }
    }
}

/// Why a text-less page has no image to read: it has none.
pub const BLANK_PAGE: &str = "the page has neither a text layer nor an image";

/// A page whose text layer has fewer visible characters than this is taken
/// to be a scan (page numbers and stray marks aside).
const SCAN_TEXT_CHARS: usize = 16;

/// Text of each page of the PDF in `bytes`, one segment per page, with its
/// bookmarks and title. Pages with no text still get a segment (saying so),
/// so page numbers in the prompt match the document.
pub fn extract_pages(path: &str, bytes: Vec<u8>, time_limit: Duration) -> Result<PdfContent, PdfFailure> {
    let (tx, rx) = mpsc::channel();
    let spawned = thread::Builder::new()
        .name("pdf-extract".into())
        // The parsers recurse into nested objects and content: a deep but
        // finite nesting needs more than a thread's usual 2 MiB. Only the
        // pages touched are committed.
        .stack_size(PDF_PARSER_STACK_BYTES)
        .spawn(move || {
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                // lopdf reads the document once, for the bounds and the
                // structure; a document it cannot read may still give text.
                let doc = catch_unwind(AssertUnwindSafe(|| lopdf::Document::load_mem(&bytes).ok()))
                    .ok()
                    .flatten();
                if let Some(doc) = doc.as_ref() {
                    check_bounds(doc, PdfBounds::default()).map_err(|why| (SkipReason::PdfBomb, why))?;
                    check_page_tree(doc).map_err(|why| (SkipReason::PdfError, why))?;
                    check_forms(doc).map_err(|why| (SkipReason::PdfError, why))?;
                }
                let text = pdf_extract::extract_text_from_mem_by_pages(&bytes);
                let textless: Vec<u32> = text.as_ref().map_or_else(
                    |_| Vec::new(),
                    |pages| {
                        (1..=pages.len() as u32)
                            .filter(|&n| {
                                pages[n as usize - 1].chars().filter(|c| !c.is_whitespace()).count() < SCAN_TEXT_CHARS
                            })
                            .collect()
                    },
                );
                // Structure is best effort: a PDF whose outline lopdf cannot
                // read still gets its text.
                let structure = doc
                    .as_ref()
                    .and_then(|doc| catch_unwind(AssertUnwindSafe(|| structure(doc, &textless))).ok())
                    .or_else(|| {
                        // lopdf could not read what pdf-extract did: the text-less
                        // pages still count, as images that could not be taken out.
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
        Ok(Ok(Ok((Ok(pages), structure)))) => (pages, structure.unwrap_or_default()),
        Ok(Ok(Err((reason, detail)))) => return Err(PdfFailure { reason, detail }),
        Ok(Ok(Ok((Err(e), structure)))) => {
            let encrypted = structure.is_some_and(|s| s.encrypted);
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
        scans,
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

    /// The demo handbook with one more stream: `inflated` zero bytes,
    /// Flate-compressed.
    fn with_zero_stream(inflated: u64) -> lopdf::Document {
        let mut doc = lopdf::Document::load(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/demo/docs/operations-handbook.pdf"
        ))
        .unwrap();
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        let chunk = vec![0u8; 1 << 20];
        let mut left = inflated;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            std::io::Write::write_all(&mut z, &chunk[..n]).unwrap();
            left -= n as u64;
        }
        let dict = lopdf::dictionary! { "Filter" => "FlateDecode" };
        doc.add_object(lopdf::Stream::new(dict, z.finish().unwrap()));
        doc
    }

    #[test]
    fn streams_past_the_bounds_are_refused_without_inflating_them_whole() {
        let doc = with_zero_stream(1 << 20);
        assert!(check_bounds(&doc, PdfBounds::default()).is_ok());
        let small = PdfBounds {
            stream_bytes: 64 * 1024,
            ..PdfBounds::default()
        };
        assert!(check_bounds(&doc, small)
            .unwrap_err()
            .starts_with("decompression bomb: stream"));
        let total = PdfBounds {
            inflated_bytes: 512 * 1024,
            ..PdfBounds::default()
        };
        assert!(check_bounds(&doc, total).unwrap_err().contains("in all"));
        let few = PdfBounds {
            objects: 3,
            ..PdfBounds::default()
        };
        assert!(check_bounds(&doc, few).unwrap_err().contains("objects"));
    }

    #[test]
    fn a_decompression_bomb_is_a_typed_error() {
        // 600 MiB of zeros in under a megabyte.
        let mut doc = with_zero_stream(600 << 20);
        let mut bytes = Vec::new();
        doc.save_to(&mut bytes).unwrap();
        assert!(bytes.len() < 1 << 20, "{}", bytes.len());
        let started = std::time::Instant::now();
        let err = extract_pages("bomb.pdf", bytes, Duration::from_secs(30)).unwrap_err();
        assert_eq!(err.reason, SkipReason::PdfBomb, "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn truncated_and_bad_xref_pdfs_are_typed_errors_or_recovered() {
        let good = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/demo/docs/operations-handbook.pdf"
        ))
        .unwrap();
        let limit = Duration::from_secs(10);
        let err = extract_pages("cut.pdf", good[..good.len() / 2].to_vec(), limit).unwrap_err();
        assert_eq!(err.reason, SkipReason::PdfError, "{err:?}");
        // startxref pointing past the end of the file.
        let at = good.windows(9).rposition(|w| w == b"startxref").unwrap();
        let end = at + 10 + good[at + 10..].iter().position(|&b| b == b'\n').unwrap();
        let mut bad = good[..at].to_vec();
        bad.extend_from_slice(b"startxref\n999999");
        bad.extend_from_slice(&good[end..]);
        let err = extract_pages("xref.pdf", bad, limit).unwrap_err();
        assert_eq!(err.reason, SkipReason::PdfError, "{err:?}");
        // Every xref offset 1,000 bytes off: lopdf recovers a document,
        // though only its first page (poppler reconstructs both; a known
        // gap, see docs/ARCHITECTURE.md).
        let table = good.windows(5).position(|w| w == b"xref\n").unwrap();
        let mut shifted = good.clone();
        let mut i = table;
        while i + 7 <= (table + 200).min(shifted.len()) {
            if &shifted[i..i + 7] == b"0000000" {
                shifted[i + 6] = b'1';
                i += 7;
            } else {
                i += 1;
            }
        }
        assert_ne!(shifted, good);
        let read = extract_pages("shifted.pdf", shifted, limit).unwrap();
        assert_eq!(read.pages.len(), 1);
        // ... and no text on it: reported as a blank page.
        assert_eq!(read.scans, vec![(1, Err(BLANK_PAGE.to_owned()))]);
    }

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

    /// The fuzzer's find (`fuzz/seeds/pdf/outline-cycle.pdf`): a bookmark
    /// whose `/Next` is itself made lopdf's outline walk grow without end.
    #[test]
    fn a_cyclic_outline_is_read_once_and_alike_titles_are_kept() {
        let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/seeds/pdf/outline-cycle.pdf")).unwrap();
        let started = std::time::Instant::now();
        let content = extract_pages("c.pdf", bytes, Duration::from_secs(10)).expect("read");
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(content.pages.len(), 3);
        let names: Vec<&str> = content.sections.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, vec!["Introduction"]);

        // Children and siblings pointing back, and two bookmarks alike.
        let mut doc =
            lopdf::Document::load(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/pdfs/bookmarked.pdf")).unwrap();
        let pages = doc.get_pages();
        let (p1, p2) = (pages[&1], pages[&2]);
        let outlines = doc.new_object_id();
        let (a, b, c) = (doc.new_object_id(), doc.new_object_id(), doc.new_object_id());
        let node = |title: &str, page, next: lopdf::ObjectId, first: Option<lopdf::ObjectId>| {
            let mut d = lopdf::Dictionary::new();
            d.set("Title", lopdf::Object::string_literal(title));
            d.set("Parent", outlines);
            d.set("Dest", vec![lopdf::Object::Reference(page), "Fit".into()]);
            d.set("Next", next);
            if let Some(f) = first {
                d.set("First", f);
            }
            d
        };
        doc.objects.insert(a, node("Same", p1, b, Some(c)).into());
        doc.objects.insert(b, node("Same", p2, a, None).into());
        doc.objects.insert(c, node("Child", p1, a, Some(c)).into());
        let mut root_outline = lopdf::Dictionary::new();
        root_outline.set("Type", "Outlines");
        root_outline.set("First", a);
        doc.objects.insert(outlines, root_outline.into());
        let root = doc.trailer.get(b"Root").unwrap().as_reference().unwrap();
        doc.get_dictionary_mut(root).unwrap().set("Outlines", outlines);
        let got = bookmarks(&doc, &doc.get_pages());
        assert_eq!(
            got,
            vec![
                (1, "Same".to_owned(), 1),
                (2, "Child".to_owned(), 1),
                (1, "Same".to_owned(), 2)
            ]
        );
    }

    /// The fuzzer's second find (`fuzz/seeds/pdf/parent-cycle.pdf`): a page
    /// that is its own `/Parent` sent pdf-extract into an endless loop. Kids
    /// that point back up are refused the same way.
    #[test]
    fn a_cyclic_page_tree_is_a_fast_typed_error() {
        let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/seeds/pdf/parent-cycle.pdf")).unwrap();
        let started = std::time::Instant::now();
        let failure = extract_pages("p.pdf", bytes, Duration::from_secs(20)).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(failure.reason, SkipReason::PdfError);
        assert!(failure.detail.starts_with("cyclic page tree"), "{}", failure.detail);

        let mut doc =
            lopdf::Document::load(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/pdfs/bookmarked.pdf")).unwrap();
        let root_pages = doc.catalog().unwrap().get(b"Pages").unwrap().as_reference().unwrap();
        let pages = doc.get_dictionary_mut(root_pages).unwrap();
        let mut kids = pages.get(b"Kids").unwrap().as_array().unwrap().clone();
        kids.push(lopdf::Object::Reference(root_pages));
        pages.set("Kids", kids);
        let mut bytes = Vec::new();
        doc.save_to(&mut bytes).unwrap();
        let failure = extract_pages("k.pdf", bytes, Duration::from_secs(20)).unwrap_err();
        assert!(failure.detail.starts_with("cyclic page tree"), "{}", failure.detail);
    }

    /// The fuzzer's third find: a form that draws itself overflowed the
    /// extractor's stack (`fuzz/seeds/pdf/form-cycle.pdf`). Cycles through
    /// inherited resources and through other forms are refused too; a form
    /// drawing an image, and forms nested a few deep, are not.
    #[test]
    fn form_xobjects_that_draw_themselves_are_refused() {
        let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/seeds/pdf/form-cycle.pdf")).unwrap();
        let failure = extract_pages("f.pdf", bytes, Duration::from_secs(20)).unwrap_err();
        assert_eq!(failure.reason, SkipReason::PdfError);
        assert!(failure.detail.starts_with("cyclic form XObjects"), "{}", failure.detail);

        // Page resources {A, B, I}; `forms` gives each form's content and
        // whether it has resources of its own (the page's, again).
        let check = |forms: &[(&str, bool)]| {
            let mut doc = lopdf::Document::with_version("1.5");
            let mut page_x = lopdf::Dictionary::new();
            let image = doc.add_object(lopdf::Stream::new(
                {
                    let mut d = lopdf::Dictionary::new();
                    d.set("Subtype", "Image");
                    d
                },
                vec![0],
            ));
            page_x.set("I", image);
            let ids: Vec<lopdf::ObjectId> = forms.iter().map(|_| doc.new_object_id()).collect();
            for (name, id) in ["A", "B"].iter().zip(&ids) {
                page_x.set(*name, *id);
            }
            let x = doc.add_object(page_x);
            for ((content, own), id) in forms.iter().zip(&ids) {
                let mut d = lopdf::Dictionary::new();
                d.set("Subtype", "Form");
                if *own {
                    let mut r = lopdf::Dictionary::new();
                    r.set("XObject", x);
                    d.set("Resources", r);
                }
                doc.objects
                    .insert(*id, lopdf::Stream::new(d, content.as_bytes().to_vec()).into());
            }
            let mut res = lopdf::Dictionary::new();
            res.set("XObject", x);
            let mut page = lopdf::Dictionary::new();
            page.set("Type", "Page");
            page.set("Resources", res);
            doc.add_object(page);
            check_forms(&doc)
        };
        assert!(
            check(&[("/A Do", false)]).unwrap_err().starts_with("cyclic"),
            "inherited"
        );
        assert!(
            check(&[("/B Do", true), ("q /A Do Q", true)])
                .unwrap_err()
                .starts_with("cyclic"),
            "mutual"
        );
        assert_eq!(check(&[("/B Do /I Do", true), ("/I Do", false)]), Ok(()));
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
    fn scanned_pages_yield_their_images() {
        let bytes = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/scans/scanned-handbook.pdf"
        ))
        .unwrap();
        let c = extract_pages("s.pdf", bytes.clone(), Duration::from_secs(20)).unwrap();
        assert_eq!(c.pages.len(), 2);
        assert_eq!(c.scans.len(), 2, "both pages have no text layer");
        let jpeg = c.scans[0].1.as_ref().unwrap();
        assert!(jpeg.starts_with(b"\xFF\xD8"), "DCT images are passed on as JPEG");
        let png = c.scans[1].1.as_ref().unwrap();
        assert!(png.starts_with(b"\x89PNG"), "Flate pixels are wrapped as PNG");
        let info = super::super::image::probe(png).unwrap();
        assert_eq!((info.width, info.height), (850, 1100));
        // The same page is refused under a pixel limit smaller than it.
        let doc = lopdf::Document::load_mem(&bytes).unwrap();
        let page2 = doc.get_pages()[&2];
        let images = doc.get_page_images(page2).unwrap();
        assert!(page_image(&images[0], 1000).unwrap_err().contains("outside the limit"));
    }

    #[test]
    fn a_text_pdf_has_no_scans() {
        let bytes = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/demo/docs/operations-handbook.pdf"
        ))
        .unwrap();
        assert!(extract_pages("h.pdf", bytes, Duration::from_secs(10))
            .unwrap()
            .scans
            .is_empty());
    }

    #[cfg(unix)]
    fn stand_in_worker(dir: &std::path::Path, script: &str) -> PdfIsolation {
        use std::os::unix::fs::PermissionsExt;
        let exe = dir.join("worker.sh");
        std::fs::write(&exe, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        PdfIsolation::Process {
            exe,
            max_memory_bytes: 1 << 30,
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_hung_worker_is_killed_and_reported_as_a_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let started = std::time::Instant::now();
        let err = extract(
            "h.pdf",
            b"%PDF".to_vec(),
            Duration::from_secs(1),
            &stand_in_worker(dir.path(), "sleep 60"),
        )
        .unwrap_err();
        assert_eq!(err.reason, SkipReason::PdfTimeout);
        assert!(
            started.elapsed() < Duration::from_secs(1 + WORKER_GRACE_SECONDS + 3),
            "killed, not waited for"
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_crashed_or_confused_worker_is_a_typed_error() {
        let dir = tempfile::tempdir().unwrap();
        let crash = extract(
            "c.pdf",
            b"%PDF".to_vec(),
            Duration::from_secs(5),
            &stand_in_worker(dir.path(), "kill -SEGV $$"),
        )
        .unwrap_err();
        assert_eq!(crash.reason, SkipReason::PdfPanic);
        assert!(crash.detail.contains("died"), "{}", crash.detail);
        let garbage = extract(
            "g.pdf",
            b"%PDF".to_vec(),
            Duration::from_secs(5),
            &stand_in_worker(dir.path(), "echo nonsense"),
        )
        .unwrap_err();
        assert!(garbage.detail.contains("unreadable answer"), "{}", garbage.detail);
    }

    #[test]
    fn page_text_is_tidied() {
        assert_eq!(normalise_page_text("\n\nTitle  \n\n\n\nBody\n\n"), "Title\n\nBody\n");
    }
}
