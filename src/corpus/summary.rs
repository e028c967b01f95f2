//! What an ingest run reports: its summary (documents, skips, bytes,
//! tokens, timings, peak memory), how a kept listing was used, what git
//! history gave.
//!
//! Never touches the database.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::ingest::secrets::SecretFinding;

/// What happened to one document on re-ingest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upsert {
    Added,
    Changed,
    Unchanged,
}

/// Counts from one ingest run, as printed and as JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IngestSummary {
    pub documents: u64,
    pub segments: u64,
    pub tokens: u64,
    pub bytes: u64,
    pub added: u64,
    pub changed: u64,
    /// Read again (modification time moved) but with the same content.
    pub unchanged: u64,
    /// Not read at all: same size and modification time as stored.
    pub reused: u64,
    pub removed: u64,
    pub replaced_chars: u64,
    pub by_kind: BTreeMap<String, u64>,
    pub skipped: BTreeMap<String, u64>,
    pub errors: u64,
    pub skips: Vec<crate::document::Skip>,
    /// Secrets redacted in the documents read this run.
    pub secrets: Vec<SecretFinding>,
    /// Secrets redacted in the whole corpus.
    pub secrets_in_corpus: u64,
    /// Prompt tokens the corpus's images would take as Llama 4 vision
    /// tiles (336 px tiles, up to 16 plus a global tile).
    pub llama4_image_tokens: u64,
    /// Images and scanned PDF pages read this run, by OCR outcome: `ok`,
    /// `no_text`, or the reason there is none (`ocr_unavailable`,
    /// `ocr_timeout`, `ocr_failed`, `ocr_off`, `unsupported_image`,
    /// `blank_page` (a PDF page with neither text nor an image),
    /// `too_many_pixels`, `decorative`: a logo, icon or the like that the
    /// skip rule passes over).
    pub ocr: BTreeMap<String, u64>,
    /// Source files read this run that got an outline.
    pub outlined: u64,
    /// Source files kept as plain text because their parse timed out or
    /// was mostly errors, by reason.
    pub outline_fallbacks: BTreeMap<String, u64>,
    /// Git repositories the sources lie in: the commit ingested, and how
    /// many documents took their last-change time from its history.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub git: Vec<GitSummary>,
    /// Whether the sources were walked, or the last walk's listing stood
    /// in for a walk (no folder changed since).
    pub listing: ListingUse,
    /// Peak resident memory, in bytes, of scout itself and of the largest
    /// helper process it waited for (PDF workers, tesseract), measured
    /// when the run ends; 0 where the system does not say.
    pub peak_rss: PeakRss,
}

/// What became of the listing a walk records (see
/// [`crate::ingest::listing`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ListingUse {
    /// The last walk's listing still held and was used: the tree was not
    /// walked (its files were still checked one by one).
    Used,
    /// The tree was walked, and its listing kept for the next ingest.
    Recorded,
    /// The tree was walked, and no listing kept: a walk error, a folder or
    /// ignore file changed in the 2 seconds before the walk, --follow, a
    /// root that is a file, or a `.git` file (a worktree or submodule).
    #[default]
    NotRecorded,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PeakRss {
    pub scout_bytes: u64,
    pub helpers_bytes: u64,
}

impl PeakRss {
    /// The peaks so far: scout's own from `/proc/self/status` (`VmHWM`;
    /// getrusage's would include the process scout was forked from, since
    /// Linux keeps that high-water mark across exec), the helpers' from
    /// getrusage.
    #[must_use]
    pub fn now() -> Self {
        #[cfg(unix)]
        {
            use nix::sys::resource::{getrusage, UsageWho};
            // Linux reports kilobytes.
            let peak = |who| getrusage(who).map_or(0, |u| u64::try_from(u.max_rss()).unwrap_or(0) * 1024);
            let own = std::fs::read_to_string("/proc/self/status")
                .ok()
                .and_then(|status| {
                    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
                    line.split_whitespace().nth(1)?.parse::<u64>().ok()
                })
                .map_or_else(|| peak(UsageWho::RUSAGE_SELF), |kb| kb * 1024);
            Self {
                scout_bytes: own,
                helpers_bytes: peak(UsageWho::RUSAGE_CHILDREN),
            }
        }
        #[cfg(not(unix))]
        Self::default()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GitSummary {
    pub repository: String,
    pub commit: String,
    /// Documents dated from history this run.
    pub dated: u64,
    /// Whether only the commits since the last ingest were read.
    pub incremental: bool,
    /// For a corpus's first reading of a repository's history: whether it
    /// was read from git, kept from an earlier ingest of the checkout at
    /// this commit, or kept at an earlier one and extended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<crate::ingest::history::Source>,
    /// Set when only this many of the latest commits were read (files they
    /// do not touch go first, by path).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bounded: Option<usize>,
    /// Why history could not be read, if it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
