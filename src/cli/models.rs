//! `scout models`: the models scout can use, their capabilities, and what
//! servers serve.
//!
//! Never fetches a model unless asked (--fetch).

use std::io::Write;

use anyhow::{Context, Result};
use clap::Args;

use super::say;
use crate::engine::openai::{list_models, DEFAULT_SLOTS};
use crate::model::store;

#[derive(Debug, Args)]
pub(super) struct ModelsArgs {
    /// Print as JSON.
    #[arg(long)]
    pub(super) json: bool,
    /// Fetch the default model now if it is not there yet (it is otherwise
    /// fetched on first use).
    #[arg(long)]
    pub(super) fetch: bool,
    /// Also list what an OpenAI-compatible server serves (repeatable).
    #[arg(long, value_name = "URL")]
    pub(super) endpoint: Vec<String>,
    /// The environment variable that holds the servers' API key.
    #[arg(long, value_name = "VAR")]
    pub(super) api_key_env: Option<String>,
}

pub(super) fn capabilities_text(c: crate::engine::Capabilities) -> String {
    let yes_no = |b: bool, what: &str| if b { what.to_owned() } else { format!("no {what}") };
    format!(
        "context {}, {}, {}, {}",
        c.context_length,
        yes_no(c.vision, "vision"),
        yes_no(c.json_schema, "JSON schema"),
        yes_no(c.kv_operations, "KV operations")
    )
}

pub(super) fn run_models(a: &ModelsArgs) -> Result<i32> {
    if a.fetch {
        store::resolve(None, &mut say(false))?;
    }
    let list = store::list();
    let api_key = match &a.api_key_env {
        Some(var) => Some(std::env::var(var).with_context(|| format!("--api-key-env {var}: not set"))?),
        None => None,
    };
    let served = list_models(&a.endpoint, api_key.as_deref());
    let unreachable = served.iter().filter(|r| r.is_err()).count();
    let mut out = std::io::stdout().lock();
    if a.json {
        if a.endpoint.is_empty() {
            writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?;
        } else {
            let served: Vec<serde_json::Value> = served
                .iter()
                .zip(&a.endpoint)
                .map(|(r, url)| match r {
                    Ok(models) => serde_json::json!({"endpoint": url, "engine": "openai", "models": models}),
                    Err(why) => serde_json::json!({"endpoint": url, "engine": "openai", "error": why}),
                })
                .collect();
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({"local": list, "served": served}))?
            )?;
        }
        return Ok(i32::from(unreachable > 0) * 2);
    }
    writeln!(out, "Models in {}:", store::models_dir().display())?;
    for m in &list {
        let state = if m.bytes > 0 {
            format!("{:.0} MiB", m.bytes as f64 / 1_048_576.0)
        } else {
            "not fetched yet; fetched on first use".to_owned()
        };
        writeln!(
            out,
            "  {}{}  ({state})",
            m.name,
            if m.default { "  [default]" } else { "" }
        )?;
        writeln!(out, "      {}", m.path.display())?;
        if let Some(c) = m.capabilities {
            writeln!(out, "      llamacpp: {}", capabilities_text(c))?;
        }
    }
    writeln!(
        out,
        "Engine llamacpp: in-process llama.cpp on any GGUF file (--model FILE.gguf), on the CPU."
    )?;
    #[cfg(feature = "mistralrs")]
    writeln!(
        out,
        "Engine mistralrs: in-process mistral.rs on a Hugging Face model folder (--engine mistralrs --model DIR, \
         quantized while loading with --isq) or a GGUF it supports; no KV operations, JSON schema yes, \
         Llama 4 context capped at its attention chunk (8,192 for Scout) unless --past-attention-chunk."
    )?;
    writeln!(
        out,
        "Engine openai: any OpenAI-compatible server (--engine openai --endpoint URL); list one's models with --endpoint URL."
    )?;
    for (r, url) in served.iter().zip(&a.endpoint) {
        match r {
            Ok(models) => {
                writeln!(out, "Served at {url}:")?;
                for m in models {
                    let context = m.context_length.map_or_else(
                        || "context not reported (--context N)".to_owned(),
                        |c| format!("context {c}"),
                    );
                    let slots = m.slots.map_or_else(
                        || format!("slots not reported ({DEFAULT_SLOTS} assumed; --slots N)"),
                        |n| format!("{n} slots"),
                    );
                    writeln!(out, "  {}  (openai: {context}, {slots}, JSON schema)", m.id)?;
                }
            }
            Err(why) => writeln!(out, "Served at {url}: not reachable: {why}")?,
        }
    }
    Ok(i32::from(unreachable > 0) * 2)
}
