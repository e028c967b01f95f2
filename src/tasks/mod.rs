//! Tasks: the jobs scout runs over a corpus.
//!
//! `ingest` walks sources into a corpus and counts its tokens; `run` is the
//! runner every task shares (the model call with its events, usage and
//! errors, messages, window fitting); `ask` answers a question over every
//! window of the corpus (map, then reduce) and checks the answer's
//! citations; `audit`, `extract`, `chat` and `batch` are the other tasks, and
//! `needle` measures how well a model reads a corpus; `sweep` plans a task
//! of many windows before it runs;
//! `pipeline` and `schema` are what audits and extractions are held to, and
//! `access` what a caller may name. Prompts come from `prompts/`.
//! Never renders reports: results are plain data for `report`.

pub mod access;
pub mod ask;
pub mod audit;
pub mod audit_bench;
pub mod batch;
pub mod chat;
pub mod citations;
pub mod extract;
pub mod extract_score;
pub mod ingest;
pub mod needle;
pub mod pipeline;
pub mod run;
pub mod schema;
pub mod sources;
pub mod stability;
pub mod sweep;
