//! Follow-ups over one corpus in one process, with the prefix copied in
//! from the host tier (`--host`) or kept in a resident context (default):
//! each question's prefill time and where its KV came from.
//!
//! ```text
//! cargo run --release --example follow_up_timing -- MODEL.gguf CORPUS_FILE [--host]
//! ```
use std::io::Write as _;

use scout::engine::llamacpp::{LlamaCppEngine, LlamaCppOptions};
use scout::engine::{ChatMessage, Engine, GenerateParams, Role};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(model), Some(corpus)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: follow_up_timing MODEL.gguf CORPUS_FILE [--host]");
        std::process::exit(2);
    };
    let host = args.iter().any(|a| a == "--host");
    let doc = std::fs::read_to_string(corpus).expect("reading the corpus file");
    let options = LlamaCppOptions {
        threads: 2,
        kv_host_bytes: 1 << 30,
        resident_bytes: if host { 0 } else { 1 << 30 },
        ..LlamaCppOptions::default()
    };
    let mut out = std::io::stdout().lock();
    let mut e = LlamaCppEngine::load(std::path::Path::new(model), options).expect("loading the model");
    let questions = [
        "What does fit_windows do?",
        "What is FIT_MARGIN for?",
        "Which function combines the notes?",
    ];
    for q in questions {
        let messages = [
            ChatMessage::new(Role::System, doc.as_str()),
            ChatMessage::new(Role::User, q),
        ];
        let params = GenerateParams {
            max_tokens: 8,
            ..GenerateParams::default()
        };
        let g = e.generate(&messages, &params, &mut |_| {}).expect("generating");
        writeln!(
            out,
            "{:<36} prefill {:6} ms  reused {:5} (resident {:5})  prefilled {:5}",
            q, g.prefill_ms, g.kv.reused_tokens, g.kv.resident_tokens, g.kv.prefilled_tokens
        )
        .expect("writing to stdout");
    }
}
