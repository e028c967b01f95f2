//! Tasks: the jobs scout runs over a corpus.
//!
//! `ingest` walks sources into a corpus and counts its tokens; `ask`
//! answers a question over every window of the corpus (map, then reduce)
//! and checks the answer's citations. Prompts come from `prompts/`.
//! Never renders reports: results are plain data for `report`.

pub mod access;
pub mod ask;
pub mod audit;
pub mod batch;
pub mod chat;
pub mod citations;
pub mod extract;
pub mod ingest;
pub mod pipeline;
pub mod stability;
