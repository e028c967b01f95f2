//! Chat completions in OpenAI's shape, run on any engine: the body of a
//! `/v1/chat/completions` request (from a batch line or the server) in,
//! a `chat.completion` object out.
//!
//! Never reads files: a corpus comes in as a prepared message.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::engine::{Cancel, Engine, EngineEvent, GenerateParams, KvUse, StopReason};
use crate::prompt::{ChatMessage, Role};

/// Runs an OpenAI chat completion body on the engine, after `prefix`
/// (a corpus's system message) when given; streams the answer's text to
/// `on_text` and returns the `chat.completion` object, with where the
/// prompt's KV came from.
pub fn chat(
    engine: &mut dyn Engine,
    body: &Value,
    default_max: u32,
    prefix: Option<ChatMessage>,
    cancel: Cancel,
    on_text: &mut dyn FnMut(&str),
) -> Result<(Value, KvUse), String> {
    let mut messages: Vec<ChatMessage> = Vec::new();
    for m in body["messages"].as_array().into_iter().flatten() {
        let role = match m["role"].as_str() {
            Some("system" | "developer") => Role::System,
            Some("user") => Role::User,
            Some("assistant") => Role::Assistant,
            other => return Err(format!("message role {other:?} is not supported")),
        };
        let content = match &m["content"] {
            Value::String(s) => s.clone(),
            Value::Array(parts) => {
                let mut text = String::new();
                for p in parts {
                    match p["type"].as_str() {
                        Some("text") => text.push_str(p["text"].as_str().unwrap_or("")),
                        Some(other) => {
                            return Err(format!(
                                "content part {other:?} is not supported by this engine (text only)"
                            ))
                        }
                        None => return Err("a content part has no type".to_owned()),
                    }
                }
                text
            }
            _ => return Err("message content must be a string or an array of parts".to_owned()),
        };
        messages.push(ChatMessage::new(role, content));
    }
    if let Some(corpus) = prefix {
        // The corpus first, in the one system turn templates allow; the
        // request's own system text follows it there.
        match messages.first_mut() {
            Some(first) if first.role == Role::System => {
                first.content = format!("{}\n\n{}", corpus.content, first.content);
            }
            _ => messages.insert(0, corpus),
        }
    }
    let max_tokens = body["max_completion_tokens"]
        .as_u64()
        .or_else(|| body["max_tokens"].as_u64())
        .map_or(default_max, |n| n.min(u64::from(u32::MAX)) as u32);
    let stop = match &body["stop"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect(),
        _ => Vec::new(),
    };
    let json_schema = match body["response_format"]["type"].as_str() {
        Some("json_schema") => Some(body["response_format"]["json_schema"]["schema"].clone()),
        Some("json_object") => Some(json!({"type": "object"})),
        _ => None,
    };
    let params = GenerateParams {
        cancel,
        max_tokens,
        temperature: body["temperature"].as_f64().unwrap_or(0.0) as f32,
        seed: body["seed"].as_u64().unwrap_or(0) as u32,
        stop,
        json_schema,
        ..GenerateParams::default()
    };
    let g = engine
        .generate(&messages, &params, &mut |e| {
            if let EngineEvent::Text(t) = e {
                on_text(t);
            }
        })
        .map_err(|e| e.to_string())?;
    let created = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let id = blake3::hash(format!("{created}{}", g.text).as_bytes()).to_hex()[..24].to_owned();
    Ok((
        json!({
            "id": format!("chatcmpl-{id}"),
            "object": "chat.completion",
            "created": created,
            "model": body["model"].as_str().unwrap_or(engine.model_id()),
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": g.text},
                "finish_reason": if g.stop == StopReason::MaxTokens { "length" } else { "stop" },
            }],
            "usage": {
                "prompt_tokens": g.prompt_tokens,
                "completion_tokens": g.completion_tokens,
                "total_tokens": g.prompt_tokens + g.completion_tokens,
            },
        }),
        g.kv,
    ))
}
