//! What the walk and the reader share: the options a source is read with
//! ([`WalkOptions`]), what each file found becomes ([`WalkItem`]), and the
//! files a corpus already holds ([`KnownFiles`]), so unchanged ones are not
//! read again.
//!
//! Never does anything: plain values.

use std::path::PathBuf;
use std::sync::Arc;

use super::listing::Listing;
use super::pdf;
use super::{Document, Skip};
use crate::limits::Limits;

/// Files the corpus holds, by display path (a fast hash: a re-ingest
/// looks up every file of the tree).
pub type KnownFiles = rustc_hash::FxHashMap<String, KnownFile>;

/// What the corpus already knows of a file, to skip re-reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownFile {
    pub bytes: u64,
    pub mtime_ns: i64,
}

/// How to walk.
#[derive(Debug, Clone, Default)]
pub struct WalkOptions {
    /// Also read hidden files and folders (dot-files).
    pub hidden: bool,
    /// Follow symbolic links (loops are recorded as skips).
    pub follow_links: bool,
    /// Also read files that .gitignore and friends exclude.
    pub no_ignore: bool,
    /// Only files matching one of these globs (gitignore syntax, relative
    /// to each root); empty means all.
    pub include: Vec<String>,
    /// Never files matching these globs.
    pub exclude_globs: Vec<String>,
    pub limits: Limits,
    /// Files and folders never to ingest: the corpus store and its journal,
    /// scout's own cache folder.
    pub exclude: Vec<PathBuf>,
    /// Files already in the corpus, by display path.
    pub known: Arc<KnownFiles>,
    /// Worker threads (0: one per core).
    pub threads: usize,
    /// Store secrets as they are instead of redacting them.
    pub keep_secrets: bool,
    /// Where PDFs are parsed (a worker process for the CLI).
    pub pdf_isolation: pdf::PdfIsolation,
    /// OCR for images: tesseract's languages (`eng`, `eng+deu`); `None`
    /// turns OCR off.
    pub ocr_lang: Option<String>,
    /// Read scanned pages as rows across the page (receipts, forms,
    /// tables) instead of detecting columns.
    pub ocr_rows: bool,
    /// Images OCR passes over as decorative; `None`: every image is read.
    pub ocr_skip: Option<super::image::Decorative>,
    /// The listing the last walk of these roots recorded, found to hold
    /// just before the walk by [`check_listing`]: its entries are taken
    /// instead of walking the tree, with what the corpus holds for each
    /// file ([`WalkOptions::known`] is not consulted for them).
    pub listing: Option<Arc<Listing>>,
    /// Walk the tree even when the corpus's listing of the last walk
    /// still holds (for file systems whose folder times cannot be
    /// trusted).
    pub rescan: bool,
    /// Canonical folders every file read must really lie in (`scout serve`,
    /// batch jobs): each file's real path is checked on the open handle it
    /// is read from, and each folder's before it is walked, so a link (with
    /// `follow_links`) or a folder swapped for a link mid-walk reads nothing
    /// outside. `None`: no such check (the command line).
    pub confine: Option<Vec<PathBuf>>,
    /// How much git history dates the documents, and where it is kept
    /// between ingests.
    pub history: super::history::HistoryOptions,
}

/// How a walk went, besides the items it handed over.
#[derive(Debug, Default)]
pub struct Walked {
    /// The listing this walk recorded, for the next one (`None` when it
    /// replayed one, or could not record: see [`super::listing`]).
    pub listing: Option<Listing>,
    /// Whether the entries came from [`WalkOptions::listing`] instead of
    /// a walk.
    pub replayed: bool,
}

/// One file, as the walk saw it.
#[derive(Debug, Clone, PartialEq)]
pub enum WalkItem {
    Document(Box<Document>),
    /// Same size and modification time as in the corpus: not read again.
    Unchanged {
        path: String,
    },
    /// Files of the listing a walk took instead of walking, by their
    /// places in it, found unchanged as [`WalkItem::Unchanged`] is (handed
    /// over many at a time, without a path each).
    UnchangedListed {
        listing: Arc<Listing>,
        entries: Vec<u32>,
    },
    Skip(Skip),
}

impl WalkItem {
    /// The path of each file this item stands for: one, or for
    /// [`WalkItem::UnchangedListed`] many.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        let (one, listed) = match self {
            WalkItem::Document(d) => (Some(d.path.as_str()), None),
            WalkItem::Unchanged { path } => (Some(path.as_str()), None),
            WalkItem::Skip(s) => (Some(s.path.as_str()), None),
            WalkItem::UnchangedListed { listing, entries } => (None, Some((listing, entries))),
        };
        one.into_iter().chain(
            listed
                .into_iter()
                .flat_map(|(listing, entries)| entries.iter().map(|&i| listing.shown(&listing.entries[i as usize]))),
        )
    }
}
