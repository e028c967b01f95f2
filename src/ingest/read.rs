//! Reading one file into a [`Document`]: its bytes read stably (again once
//! if they change while read), sniffed (binary, UTF-16), decoded and split
//! into segments, outlined, its secrets redacted; a PDF through the PDF
//! reader with its scanned pages OCR'd; an image decoded under limits and
//! OCR'd. Every failure is a counted skip with its reason.
//!
//! In: a path the walk found, and the walk's options. Out: one
//! [`WalkItem`]. Never walks folders.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use crate::limits::{BINARY_SNIFF_BYTES, MAX_SCAN_PIXELS};

use super::image::{self, ImageFailure, IMAGE_EXTENSIONS};
use super::item::{WalkItem, WalkOptions};
use super::listing;
use super::ocr;
use super::outline::{self, OutlineFailure};
use super::pdf;
use super::secrets::{self, SecretFinding};
use super::text::{code_language, decode, split_text};
use super::{Document, DocumentKind, Segment, Skip, SkipReason};
use crate::anchor::Anchor;

pub(super) fn extension(path: &Path) -> String {
    path.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default()
}

/// What OCR made of one page: segments, lines, secrets redacted.
pub(super) type PageText = (Vec<Segment>, Vec<ocr::OcrLine>, Vec<SecretFinding>);

/// OCR of one page image: its text blocks as region-anchored segments of
/// `page`, its lines, and the secrets redacted from them; or the outcome
/// that explains why there is no text.
pub(super) fn ocr_page(path: &str, page: u32, image: &[u8], opts: &WalkOptions) -> Result<PageText, &'static str> {
    let Some(lang) = &opts.ocr_lang else {
        return Err("ocr_off");
    };
    let lines =
        ocr::ocr(image, lang, opts.ocr_rows, Duration::from_secs(opts.limits.ocr_seconds)).map_err(|f| f.reason())?;
    if lines.is_empty() {
        return Err("no_text");
    }
    let mut blocks: Vec<Vec<&ocr::OcrLine>> = Vec::new();
    for line in &lines {
        match blocks.last_mut() {
            Some(b) if b[0].block == line.block => b.push(line),
            _ => blocks.push(vec![line]),
        }
    }
    let mut segments = Vec::new();
    let mut found_all = Vec::new();
    for block in blocks {
        let (x, y, w, h) = ocr::union(&block);
        let text: String = block.iter().map(|l| format!("{}\n", l.text)).collect();
        let (text, found) = if opts.keep_secrets {
            (text, Vec::new())
        } else {
            secrets::redact(path, &text)
        };
        found_all.extend(found.into_iter().map(|f| SecretFinding { page: Some(page), ..f }));
        segments.push(Segment {
            anchor: Anchor::Region {
                path: path.to_owned(),
                page,
                x,
                y,
                w,
                h,
            },
            text,
        });
    }
    let lines = lines
        .into_iter()
        .map(|l| {
            let text = if opts.keep_secrets {
                l.text
            } else {
                secrets::redact(path, &l.text).0
            };
            ocr::OcrLine { page, text, ..l }
        })
        .collect();
    Ok((segments, lines, found_all))
}

/// An image file: its upright size, and OCR blocks as its segments; with
/// no text (or no OCR), one placeholder segment stands for the image.
pub(super) fn read_image(doc: &mut Document, bytes: &[u8], opts: &WalkOptions) -> Result<(), (SkipReason, String)> {
    // Only the header is read before the size is checked: an image bomb
    // (a few KB claiming 100,000 x 100,000 pixels) is kept, never decoded.
    let outcome = match image::open(bytes, MAX_SCAN_PIXELS) {
        Err(ImageFailure::Unreadable(detail)) => {
            return Err((SkipReason::ImageError, format!("unreadable image: {detail}")));
        }
        Err(ImageFailure::TooLarge(_)) => {
            doc.image = image::probe(bytes).ok();
            Err("too_many_pixels")
        }
        Ok(opened) => {
            doc.image = Some(opened.info);
            // Kept for engines that read images (they see it where it
            // stands) and for showing a citation of it.
            doc.page_images.push((1, bytes.to_vec()));
            if opts.ocr_lang.is_none() {
                Err("ocr_off")
            } else if opts
                .ocr_skip
                .as_ref()
                .is_some_and(|d| d.matches(&doc.path, &opened.info))
            {
                Err("decorative")
            } else {
                match image::for_ocr(bytes, &opened) {
                    Ok(pixels) => ocr_page(&doc.path, 1, &pixels, opts),
                    Err(ImageFailure::TooLarge(_)) => Err("too_many_pixels"),
                    Err(ImageFailure::Unreadable(_)) => Err("unsupported_image"),
                }
            }
        }
    };
    match outcome {
        Ok((segments, lines, found)) => {
            doc.segments = segments;
            doc.ocr_lines = lines;
            doc.secrets.extend(found);
            doc.ocr_outcomes.push("ok");
        }
        Err(outcome) => {
            doc.segments = vec![Segment {
                anchor: Anchor::Document { path: doc.path.clone() },
                text: String::new(),
            }];
            doc.ocr_outcomes.push(outcome);
        }
    }
    Ok(())
}

/// Scanned PDF pages: each page's placeholder segment is replaced by the
/// OCR blocks of its image.
pub(super) fn read_scanned_pages(doc: &mut Document, scans: Vec<(u32, Result<Vec<u8>, String>)>, opts: &WalkOptions) {
    for (page, image) in scans {
        let outcome = match image {
            Err(why) if why == pdf::BLANK_PAGE => Err("blank_page"),
            Err(_) => Err("unsupported_image"),
            Ok(bytes) => {
                let outcome = ocr_page(&doc.path, page, &bytes, opts);
                doc.page_images.push((page, bytes));
                outcome
            }
        };
        match outcome {
            Ok((segments, lines, found)) => {
                let at = doc
                    .segments
                    .iter()
                    .position(|s| matches!(s.anchor, Anchor::Page { page: p, .. } if p == page));
                if let Some(at) = at {
                    doc.segments.splice(at..=at, segments);
                }
                doc.ocr_lines.extend(lines);
                doc.secrets.extend(found);
                doc.ocr_outcomes.push("ok");
            }
            Err(outcome) => doc.ocr_outcomes.push(outcome),
        }
    }
}

/// Stored in place of a file's modification time when that time cannot
/// show a later change (see [`is_recent`]): the next walk reads the file
/// again. No real time is stored as -1 ([`mtime_ns`] gives 0 before the
/// epoch).
pub const UNTRUSTED_MTIME: i64 = -1;

/// Whether a file modified at `mtime_ns` (just read) could be written
/// again, to the same size, without its time changing: then its time
/// says nothing about a later edit (git's "racy" entries). Times in the
/// future are recent too. (How close: [`listing::RACY_NS`].)
pub(super) fn is_recent(mtime_ns: i64) -> bool {
    mtime_ns > now_ns() - listing::RACY_NS
}

pub(super) fn mtime_ns(meta: &std::fs::Metadata) -> i64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as i64)
}

/// Reads a file whole, checking that it did not change while it was read
/// (size and modification time before and after); tries once more if it
/// did.
pub(super) fn read_stable(path: &Path) -> Result<(Vec<u8>, std::fs::Metadata), (SkipReason, String)> {
    read_stable_with(path, |p| std::fs::read(p))
}

/// Marks a read refused by [`read_confined`] (the detail after it).
const OUTSIDE: &str = "outside the roots: ";

/// A file's bytes, read from a handle whose real path (the kernel's, from
/// the open file itself, not from the name) lies under `roots`: what was
/// checked is what is read, whatever happens to the name in between.
fn read_confined(path: &Path, roots: &[std::path::PathBuf]) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut file = std::fs::File::open(path)?;
    let real = real_path_of(&file, path)?;
    if !crate::tasks::access::under_roots(&real, roots) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!("{OUTSIDE}it resolves to a file outside them"),
        ));
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The real path of an open file: on Linux from `/proc/self/fd`, so a
/// rename or a swapped link after the open cannot change the answer;
/// elsewhere from the name (checked just after the open).
fn real_path_of(file: &std::fs::File, path: &Path) -> std::io::Result<std::path::PathBuf> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let _ = path;
        std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = file;
        path.canonicalize()
    }
}

/// [`read_stable`] with the read itself given (tests change the file
/// while "reading" it).
pub(super) fn read_stable_with(
    path: &Path,
    mut read: impl FnMut(&Path) -> std::io::Result<Vec<u8>>,
) -> Result<(Vec<u8>, std::fs::Metadata), (SkipReason, String)> {
    let unreadable = |e: std::io::Error| (SkipReason::Unreadable, e.to_string());
    for _ in 0..2 {
        let before = std::fs::metadata(path).map_err(unreadable)?;
        let bytes = read(path).map_err(unreadable)?;
        let after = std::fs::metadata(path).map_err(unreadable)?;
        if before.len() == after.len() && mtime_ns(&before) == mtime_ns(&after) && bytes.len() as u64 == after.len() {
            return Ok((bytes, after));
        }
    }
    Err((SkipReason::Changing, "the file changed while it was read, twice".into()))
}

/// Reads one file into a walk item: a document, unchanged, or a skip.
pub(super) fn read_entry(path: &Path, shown: String, opts: &WalkOptions, corpus_bytes: &AtomicU64) -> WalkItem {
    match read_file(path, &shown, opts, corpus_bytes) {
        Ok(item) => item,
        Err((reason, detail)) => WalkItem::Skip(Skip {
            path: shown,
            reason,
            detail,
        }),
    }
}

pub(super) fn read_file(
    path: &Path,
    shown: &str,
    opts: &WalkOptions,
    corpus_bytes: &AtomicU64,
) -> Result<WalkItem, (SkipReason, String)> {
    let limits = &opts.limits;
    let meta = std::fs::metadata(path).map_err(|e| (SkipReason::Unreadable, e.to_string()))?;
    let ext = extension(path);
    let is_pdf = ext == "pdf";
    let cap = if is_pdf {
        limits.max_pdf_bytes
    } else {
        limits.max_file_bytes
    };
    if meta.len() > cap {
        return Err((SkipReason::TooLarge, format!("{} bytes, limit {cap}", meta.len())));
    }
    let before = corpus_bytes.fetch_add(meta.len(), Ordering::Relaxed);
    if before + meta.len() > limits.max_corpus_bytes {
        return Err((
            SkipReason::CorpusFull,
            format!("corpus limit of {} bytes reached", limits.max_corpus_bytes),
        ));
    }
    let (bytes, meta) = match &opts.confine {
        None => read_stable(path)?,
        Some(roots) => read_stable_with(path, |p| read_confined(p, roots)).map_err(|(reason, detail)| match detail
            .strip_prefix(OUTSIDE)
        {
            Some(rest) => (SkipReason::OutsideRoots, rest.to_owned()),
            None => (reason, detail),
        })?,
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err((SkipReason::Empty, "no content".into()));
    }
    let modified_ns = mtime_ns(&meta);
    let mut doc = Document::new(
        shown.to_owned(),
        DocumentKind::Text,
        blake3::hash(&bytes).to_hex().to_string(),
        bytes.len() as u64,
        modified_ns,
    );
    if is_recent(modified_ns) {
        doc.mtime_ns = UNTRUSTED_MTIME;
    }
    if is_pdf || bytes.starts_with(b"%PDF-") {
        doc.kind = DocumentKind::Pdf;
        let content = pdf::extract(
            shown,
            bytes,
            Duration::from_secs(limits.pdf_extract_seconds),
            &opts.pdf_isolation,
        )
        .map_err(|f| (f.reason, f.detail))?;
        doc.segments = content.pages;
        doc.symbols = content.sections;
        doc.title = content.title;
        if !opts.keep_secrets {
            for seg in &mut doc.segments {
                let (clean, found) = secrets::redact(shown, &seg.text);
                if let Anchor::Page { page, .. } = seg.anchor {
                    doc.secrets
                        .extend(found.into_iter().map(|f| SecretFinding { page: Some(page), ..f }));
                }
                seg.text = clean;
            }
        }
        read_scanned_pages(&mut doc, content.scans, opts);
        return Ok(WalkItem::Document(Box::new(doc)));
    }
    if IMAGE_EXTENSIONS.contains(&ext.as_str()) {
        doc.kind = DocumentKind::Image;
        read_image(&mut doc, &bytes, opts)?;
        return Ok(WalkItem::Document(Box::new(doc)));
    }
    // UTF-16 text is full of NUL bytes; its byte-order mark says what it is.
    let is_utf16 = bytes.starts_with(b"\xFF\xFE") || bytes.starts_with(b"\xFE\xFF");
    if !is_utf16 {
        // The first bytes decide most files; a NUL further on (a binary
        // with a text-like header) is found by the full scan, which costs
        // little beside decoding.
        if bytes[..bytes.len().min(BINARY_SNIFF_BYTES)].contains(&0) {
            return Err((SkipReason::Binary, "NUL byte in the first 8 KiB".into()));
        }
        if let Some(at) = bytes.iter().position(|&b| b == 0) {
            return Err((SkipReason::Binary, format!("NUL byte at offset {at}")));
        }
    }
    let (text, replaced) = decode(&bytes);
    let text = if opts.keep_secrets {
        text
    } else {
        let (clean, found) = secrets::redact(shown, &text);
        doc.secrets = found;
        clean
    };
    doc.replaced_chars = replaced;
    doc.language = code_language(shown);
    if doc.language.is_some() {
        doc.kind = DocumentKind::Code;
    }
    if let Some(language) = doc.language {
        match outline::outline(language, &text, Duration::from_millis(limits.parse_millis)) {
            Ok(symbols) => doc.symbols = symbols.unwrap_or_default(),
            Err(OutlineFailure::Timeout) => doc.outline_failure = Some("timeout"),
            Err(OutlineFailure::MostlyErrors) => doc.outline_failure = Some("mostly_errors"),
        }
    }
    doc.segments = split_text(shown, &text);
    Ok(WalkItem::Document(Box::new(doc)))
}

pub(super) fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}
