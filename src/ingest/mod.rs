//! Ingest: turn files into [`Document`]s made of anchored [`Segment`]s.
//!
//! In: paths (folders or files). Out: one `Result<Document, Skip>` per file
//! found, handed to a callback as soon as it is read, so the caller can store
//! and count as it goes. Every file the walk sees ends up as exactly one of
//! the two: nothing is dropped without a counted reason.
//!
//! Never calls an engine and never touches the corpus store.
//!
//! Files: `walk` finds files (the parallel walker, listing replay, each
//! entry's fate); `read` turns one file's bytes into a document (text,
//! PDF, image, OCR, redaction); `text`, `pdf`, `image`, `ocr`, `outline`,
//! `secrets` and `git` each know one kind of content; `history` is a
//! repository's history as the document order needs it, kept between ingests; `listing` is the
//! record a clean walk keeps; `child` runs helper processes under limits.

mod child;
pub mod git;
pub mod gitdiff;
pub mod history;
pub mod image;
mod item;
pub mod listing;
pub mod ocr;
pub mod outline;
pub mod pdf;
mod read;
pub mod secrets;
mod text;
mod walk;

pub use text::{code_language, decode, split_text};
pub use walk::{
    check_listing, count_files, display_path, walk, walk_batches, walk_then, KnownFile, KnownFiles, WalkItem,
    WalkOptions, Walked,
};

pub use crate::document::{Document, DocumentKind, ImageInfo, Segment, Skip, SkipReason};
