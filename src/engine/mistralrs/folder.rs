//! A Hugging Face model folder as mistral.rs will load it: what its
//! config.json says (Llama 4 or not, trained context, attention chunk), the
//! context scout plans for it, and a folder beside it whose config.json
//! says that context (everything else linked).
//!
//! Never loads weights.

use std::path::{Path, PathBuf};

use super::MistralRsOptions;
use crate::engine::EngineError;

/// What a model folder's config.json says that matters here.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct FolderFacts {
    pub(super) llama4: bool,
    /// `max_position_embeddings` (of `text_config` when there is one).
    pub(super) trained_context: u32,
    pub(super) attention_chunk: Option<u32>,
}

pub(super) fn read_json(path: &Path) -> Result<serde_json::Value, EngineError> {
    let err = |detail: String| EngineError::Load {
        path: path.display().to_string(),
        detail,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| err(format!("not valid JSON: {e}")))
}

/// An optional JSON file of a model folder: `None` when absent, an error
/// when present but unreadable or not JSON (never silently skipped).
pub(super) fn read_optional_json(path: &Path) -> Result<Option<serde_json::Value>, EngineError> {
    if path.exists() {
        read_json(path).map(Some)
    } else {
        Ok(None)
    }
}

pub(super) fn folder_facts(config: &serde_json::Value) -> FolderFacts {
    let text = config.get("text_config").unwrap_or(config);
    let model_type = config.get("model_type").and_then(|v| v.as_str()).unwrap_or_default();
    let llama4 = model_type == "llama4"
        || config
            .get("architectures")
            .and_then(|a| a.as_array())
            .is_some_and(|a| a.iter().any(|x| x.as_str().is_some_and(|s| s.starts_with("Llama4"))));
    let num = |v: &serde_json::Value, k: &str| v.get(k).and_then(serde_json::Value::as_u64).map(|n| n as u32);
    FolderFacts {
        llama4,
        trained_context: num(text, "max_position_embeddings").unwrap_or(4096),
        attention_chunk: num(text, "attention_chunk_size"),
    }
}

/// The context a folder model runs with: the user's, within what it was
/// trained for, and for Llama 4 within one attention chunk unless lifted.
pub(super) fn planned_context(facts: &FolderFacts, options: &MistralRsOptions) -> u32 {
    let mut context = facts.trained_context;
    if let (true, Some(chunk), false) = (facts.llama4, facts.attention_chunk, options.past_attention_chunk) {
        context = context.min(chunk);
    }
    options.context.map_or(context, |c| c.min(context)).max(256)
}

/// A folder that reads like `dir` but whose config.json says
/// `max_position_embeddings: context` (finding 3: mistral.rs sizes its
/// `RoPE` tables by it). Every other file is a link to the original.
pub(super) fn folder_for_context(
    dir: &Path,
    config: &serde_json::Value,
    context: u32,
    scratch: &Path,
) -> Result<PathBuf, EngineError> {
    let err = |what: &str, e: std::io::Error| EngineError::Load {
        path: dir.display().to_string(),
        detail: format!("{what}: {e}"),
    };
    let mut config = config.clone();
    if config.get("max_position_embeddings").is_some() {
        config["max_position_embeddings"] = context.into();
    }
    if let Some(text) = config.get_mut("text_config") {
        text["max_position_embeddings"] = context.into();
    }
    let canonical = dir.canonicalize().map_err(|e| err("the model folder", e))?;
    let mut h = blake3::Hasher::new();
    h.update(canonical.to_string_lossy().as_bytes());
    h.update(&context.to_le_bytes());
    let out = scratch.join(&h.finalize().to_hex()[..16]);
    std::fs::create_dir_all(&out).map_err(|e| err("making the adjusted model folder", e))?;
    for entry in std::fs::read_dir(&canonical).map_err(|e| err("reading the model folder", e))? {
        let entry = entry.map_err(|e| err("reading the model folder", e))?;
        let name = entry.file_name();
        if name == "config.json" {
            continue;
        }
        let link = out.join(&name);
        if std::fs::symlink_metadata(&link).is_ok() {
            std::fs::remove_file(&link).map_err(|e| err("replacing a link", e))?;
        }
        std::os::unix::fs::symlink(entry.path(), &link).map_err(|e| err("linking a model file", e))?;
    }
    let text = serde_json::to_string_pretty(&config).unwrap_or_default();
    std::fs::write(out.join("config.json"), text).map_err(|e| err("writing the adjusted config.json", e))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::mistralrs::Isq;

    fn options(context: Option<u32>, past: bool) -> MistralRsOptions {
        MistralRsOptions {
            isq: Isq::None,
            context,
            past_attention_chunk: past,
            scratch: std::env::temp_dir(),
        }
    }

    #[test]
    pub(super) fn llama4_context_is_capped_at_the_attention_chunk_unless_lifted() {
        let config = serde_json::json!({
            "model_type": "llama4",
            "text_config": {"max_position_embeddings": 10_485_760, "attention_chunk_size": 8192}
        });
        let facts = folder_facts(&config);
        assert!(facts.llama4);
        assert_eq!(planned_context(&facts, &options(None, false)), 8192);
        assert_eq!(planned_context(&facts, &options(Some(4000), false)), 4000);
        assert_eq!(planned_context(&facts, &options(Some(100_000), true)), 100_000);
        let other = folder_facts(&serde_json::json!({"model_type": "llama", "max_position_embeddings": 8192}));
        assert!(!other.llama4);
        assert_eq!(planned_context(&other, &options(None, false)), 8192);
    }

    #[test]
    pub(super) fn the_adjusted_folder_says_the_planned_context_and_links_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let scratch = tempfile::tempdir().unwrap();
        let config = serde_json::json!({
            "model_type": "llama4",
            "text_config": {"max_position_embeddings": 10_485_760, "attention_chunk_size": 8192}
        });
        std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
        std::fs::write(dir.path().join("tokenizer.json"), "{}").unwrap();
        let out = folder_for_context(dir.path(), &config, 8192, scratch.path()).unwrap();
        let written = read_json(&out.join("config.json")).unwrap();
        assert_eq!(written["text_config"]["max_position_embeddings"], 8192);
        assert_eq!(written["text_config"]["attention_chunk_size"], 8192);
        assert!(std::fs::symlink_metadata(out.join("tokenizer.json"))
            .unwrap()
            .is_symlink());
        // Again: the links are replaced, not an error.
        assert_eq!(
            folder_for_context(dir.path(), &config, 8192, scratch.path()).unwrap(),
            out
        );
    }
}
