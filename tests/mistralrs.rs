//! The mistralrs engine on the default model (a GGUF mistral.rs knows):
//! findings about mistral.rs 0.8.1 that the default model shows, and the
//! command line end to end. The Llama 4 code path is in `llama4.rs`.

use crate::util::{json, model, scout, text};
use scout::engine::mistralrs::{Isq, MistralRsEngine, MistralRsOptions};
use scout::engine::{Engine, StopReason};

fn engine() -> MistralRsEngine {
    let options = MistralRsOptions {
        isq: Isq::None,
        context: None,
        past_attention_chunk: false,
        scratch: tempfile::tempdir().unwrap().keep(),
    };
    MistralRsEngine::load(model(), &options).unwrap()
}

#[test]
fn the_mistralrs_engine_ends_a_schema_answer_at_the_models_end_tokens() {
    let mut e = engine();
    assert_eq!(e.capabilities().context_length, 8192, "from the GGUF header");
    let params = crate::util::port_service_params();
    let messages = crate::util::port_service_messages();
    let g = e.generate(&messages, &params, &mut |_| {}).unwrap();
    crate::util::assert_port_service_json(&g.text);
    // Finding 5: the grammar ends on the tokenizer's end token
    // (<|endoftext|>) while mistral.rs stops on the chat's (<|im_end|>);
    // without every end token as a stop this ran to the token limit.
    assert_eq!(g.stop, StopReason::EndOfText, "{g:?}");
    assert!(g.completion_tokens < params.max_tokens, "{g:?}");
    assert_eq!(g.prompt_tokens, e.count_chat_tokens(&messages).unwrap());
}

#[test]
fn scout_ask_runs_on_the_mistralrs_engine_end_to_end() {
    let cache = tempfile::tempdir().unwrap();
    let out = scout(cache.path())
        .env("SCOUT_MODEL", model())
        .args([
            "ask",
            "examples/demo",
            "What port does the server listen on?",
            "--json",
            "-q",
        ])
        .args(["--engine", "mistralrs", "--max-tokens", "48"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let r = json(&out);
    assert_eq!(r["usage"]["calls"], 1, "{r}");
    assert!(r["usage"]["prompt_tokens"].as_u64().unwrap() > 1000, "{r}");
    assert_eq!(r["kv"]["prefilled_tokens"], r["usage"]["prompt_tokens"], "{r}");
    assert!(!r["answer"].as_str().unwrap().trim().is_empty(), "{r}");
}
