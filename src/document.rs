//! Documents: the value types every stage after ingest shares. A
//! [`Document`] is a file (or a PDF, an image) read into anchored
//! [`Segment`]s; a [`Skip`] is a file that was not, with its counted
//! [`SkipReason`].
//!
//! In: nothing; these are plain values. Out: what ingest makes, the corpus
//! stores, the prompt lays out and tasks cite.
//! Never: reads files or holds behaviour beyond describing itself.

use serde::{Deserialize, Serialize};

use crate::anchor::Anchor;

/// What kind of content a document holds; decides how it is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocumentKind {
    /// Prose, configuration, data: anything textual that is not code.
    Text,
    /// Source code (gets sparse line markers in the prompt).
    Code,
    /// A PDF: one segment per page.
    Pdf,
    /// An image: no text of its own in this version (OCR comes with the
    /// ingest issue); recorded so the prompt says it exists.
    Image,
}

impl DocumentKind {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            DocumentKind::Text => "text",
            DocumentKind::Code => "code",
            DocumentKind::Pdf => "pdf",
            DocumentKind::Image => "image",
        }
    }

    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "text" => DocumentKind::Text,
            "code" => DocumentKind::Code,
            "pdf" => DocumentKind::Pdf,
            "image" => DocumentKind::Image,
            _ => return None,
        })
    }
}

/// A piece of a document with the anchor that cites it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    pub anchor: Anchor,
    pub text: String,
}

/// Pixel size and format of an image document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    pub width: u32,
    pub height: u32,
}

/// One file, read.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// The path as the user will open it: the root they named joined with
    /// the path below it.
    pub path: String,
    pub kind: DocumentKind,
    /// Language name for code (from the extension), for the reader's sake.
    pub language: Option<&'static str>,
    /// blake3 of the file's bytes, hex.
    pub content_hash: String,
    pub bytes: u64,
    /// Last modification, seconds since the epoch (orders the prompt).
    pub modified: i64,
    /// Last modification in nanoseconds: with the size, tells a re-ingest
    /// whether the file must be read again.
    pub mtime_ns: i64,
    pub segments: Vec<Segment>,
    /// Invalid UTF-8 sequences replaced with U+FFFD while reading.
    pub replaced_chars: u64,
    pub image: Option<ImageInfo>,
    /// Secrets found and redacted in the text (empty with `keep_secrets`).
    pub secrets: Vec<SecretFinding>,
    /// Definitions in a source file, from its tree-sitter outline; for a
    /// PDF, its bookmarks, with pages in place of lines.
    pub symbols: Vec<Symbol>,
    /// A PDF's title from its metadata.
    pub title: Option<String>,
    /// Why a source file in a supported language has no outline.
    pub outline_failure: Option<&'static str>,
    /// An image's text lines as OCR read them (boxes, confidences).
    pub ocr_lines: Vec<OcrLine>,
    /// A scanned PDF's page images (JPEG or PNG bytes), by page, so a
    /// citation of the page can show the scan.
    pub page_images: Vec<(u32, Vec<u8>)>,
    /// One per image file or scanned PDF page: `ok`, `no_text`, or why
    /// OCR gave no text.
    pub ocr_outcomes: Vec<&'static str>,
}

impl Document {
    /// A document of `kind` with no content yet: the ingestors fill in
    /// segments and what they learn.
    #[must_use]
    pub fn new(path: String, kind: DocumentKind, content_hash: String, bytes: u64, mtime_ns: i64) -> Self {
        Self {
            path,
            kind,
            language: None,
            content_hash,
            bytes,
            modified: mtime_ns.div_euclid(1_000_000_000),
            mtime_ns,
            segments: Vec::new(),
            replaced_chars: 0,
            image: None,
            secrets: Vec::new(),
            symbols: Vec::new(),
            outline_failure: None,
            title: None,
            ocr_lines: Vec::new(),
            page_images: Vec::new(),
            ocr_outcomes: Vec::new(),
        }
    }
}

/// Why a file was not made into a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// Over the file size limit; not read.
    TooLarge,
    /// A NUL byte in the first bytes and no ingestor for its format.
    Binary,
    /// Zero bytes, or nothing but whitespace.
    Empty,
    /// The corpus store itself, or its journal, inside the walked tree.
    CorpusFile,
    /// The corpus byte limit was reached before this file.
    CorpusFull,
    /// The file or folder could not be read (permissions, vanished, I/O).
    Unreadable,
    /// The PDF parser returned an error (broken, encrypted, unsupported).
    PdfError,
    /// The PDF parser panicked; the panic was caught.
    PdfPanic,
    /// The PDF parser ran past its time limit.
    PdfTimeout,
    /// The PDF is encrypted with a password scout does not have.
    PdfEncrypted,
    /// The PDF's streams would inflate past the limits (a decompression
    /// bomb), or it holds implausibly many objects.
    PdfBomb,
    /// An image whose header could not be read.
    ImageError,
    /// A symbolic link that leads back to a folder above it (with
    /// `--follow`); the walk goes on without it.
    SymlinkLoop,
    /// A symbolic link, not followed (`--follow` follows links).
    Symlink,
    /// The file kept changing while it was read.
    Changing,
    /// The file or folder resolves to a place outside the roots a server
    /// or batch may read (a link, or a folder swapped for one mid-walk).
    OutsideRoots,
    /// A folder whose ignore file is over the size limit: not walked, since
    /// reading the ignore file would take memory without bound and walking
    /// without it would take what it excludes.
    IgnoreTooLarge,
    /// A named pipe, socket or device file: never opened (a read could
    /// block for ever).
    NotAFile,
}

impl SkipReason {
    /// Errors make the run exit 2; the other reasons are policy, not faults.
    #[must_use]
    pub fn is_error(self) -> bool {
        matches!(
            self,
            SkipReason::Unreadable
                | SkipReason::PdfError
                | SkipReason::PdfPanic
                | SkipReason::PdfTimeout
                | SkipReason::PdfEncrypted
                | SkipReason::PdfBomb
                | SkipReason::ImageError
                | SkipReason::Changing
        )
    }

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::TooLarge => "too_large",
            SkipReason::Binary => "binary",
            SkipReason::Empty => "empty",
            SkipReason::CorpusFile => "corpus_file",
            SkipReason::CorpusFull => "corpus_full",
            SkipReason::Unreadable => "unreadable",
            SkipReason::PdfError => "pdf_error",
            SkipReason::PdfPanic => "pdf_panic",
            SkipReason::PdfTimeout => "pdf_timeout",
            SkipReason::PdfEncrypted => "pdf_encrypted",
            SkipReason::PdfBomb => "pdf_bomb",
            SkipReason::ImageError => "image_error",
            SkipReason::SymlinkLoop => "symlink_loop",
            SkipReason::Symlink => "symlink",
            SkipReason::Changing => "changing",
            SkipReason::OutsideRoots => "outside_roots",
            SkipReason::IgnoreTooLarge => "ignore_too_large",
            SkipReason::NotAFile => "not_a_file",
        }
    }
}

/// A file that did not become a document, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skip {
    pub path: String,
    pub reason: SkipReason,
    pub detail: String,
}

/// One secret found, where, and of what kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretFinding {
    pub path: String,
    /// Line number (in the file, or in the PDF page).
    pub line: u32,
    /// The PDF page the line is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
    pub kind: String,
}

/// A definition in a source file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Symbol {
    pub name: String,
    pub kind: String,
    pub start_line: u32,
    pub end_line: u32,
}

/// One line of text as OCR read it.
#[derive(Debug, Clone, PartialEq)]
pub struct OcrLine {
    /// The page (1 for an image file).
    pub page: u32,
    pub block: u32,
    pub text: String,
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
    /// Mean confidence of the line's words, 0-100.
    pub confidence: f32,
}
