//! scout: read whole repositories, PDFs and scans into one long prompt and
//! answer questions over it with citations that can be checked.
//!
//! Data flows one way, one module per stage:
//! `ingest` (files -> documents) -> `corpus` (`SQLite` store) -> `prompt`
//! (layout, windows) -> `engine` (a model behind the `Engine` trait) ->
//! `tasks` (ask: map/reduce, citation checks) -> `report` (text / JSON).
//! `anchor`, `document` and `limits` hold the value types and bounds every
//! stage shares; `model` what scout knows of models (GGUF headers, facts,
//! the model store, vision token rules);
//! `cli` is the binary's edge and holds no logic a library user would need.
//!
//! Never prints: diagnostics go through `tracing`.

pub mod anchor;
#[cfg(feature = "llamacpp")]
pub mod cli;
pub mod corpus;
pub mod document;
pub mod engine;
pub mod ingest;
pub mod kv;
pub mod limits;
pub mod model;
pub mod pack;
pub mod prompt;
pub mod report;
pub mod server;
pub mod tasks;

/// The message a caught panic carried (third-party parsers and loaders
/// panic; scout reports it as an error).
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}
