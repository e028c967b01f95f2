//! Model facts for planning: sizes, layers, attention pattern, experts.
//!
//! From a Hugging Face `config.json` (Llama, Llama 4 with `text_config`,
//! Mistral, Qwen, Gemma-style `layer_types`), from a GGUF header (parameters
//! counted exactly from tensor shapes), or from a built-in preset. Presets
//! are config.json text run through the same parser, so the preset path and
//! the file path cannot drift apart.
//!
//! Never loads weights; a figure it cannot read is absent, not guessed.

use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use super::gguf::{read_header, GgufError, GgufHeader, GgufValue};

/// Llama 4 Scout 17B-16E (the keys and values of its config.json that
/// planning uses).
pub const LLAMA4_SCOUT_CONFIG: &str = r#"{
  "architectures": ["Llama4ForConditionalGeneration"],
  "text_config": {
    "hidden_size": 5120, "num_hidden_layers": 48, "num_attention_heads": 40, "num_key_value_heads": 8,
    "head_dim": 128, "intermediate_size": 8192, "intermediate_size_mlp": 16384, "vocab_size": 202048,
    "num_local_experts": 16, "num_experts_per_tok": 1, "interleave_moe_layer_step": 1,
    "attention_chunk_size": 8192, "max_position_embeddings": 10485760, "tie_word_embeddings": false
  },
  "vision_config": {
    "hidden_size": 1408, "num_hidden_layers": 34, "intermediate_size": 5632, "patch_size": 14,
    "image_size": 336, "pixel_shuffle_ratio": 0.5, "vision_output_dim": 4096, "num_channels": 3
  }
}"#;

/// Llama 4 Maverick 17B-128E: experts on every other layer.
pub const LLAMA4_MAVERICK_CONFIG: &str = r#"{
  "architectures": ["Llama4ForConditionalGeneration"],
  "text_config": {
    "hidden_size": 5120, "num_hidden_layers": 48, "num_attention_heads": 40, "num_key_value_heads": 8,
    "head_dim": 128, "intermediate_size": 8192, "intermediate_size_mlp": 16384, "vocab_size": 202048,
    "num_local_experts": 128, "num_experts_per_tok": 1, "interleave_moe_layer_step": 2,
    "attention_chunk_size": 8192, "max_position_embeddings": 1048576, "tie_word_embeddings": false
  },
  "vision_config": {
    "hidden_size": 1408, "num_hidden_layers": 34, "intermediate_size": 5632, "patch_size": 14,
    "image_size": 336, "pixel_shuffle_ratio": 0.5, "vision_output_dim": 4096, "num_channels": 3
  }
}"#;

/// SmolLM2-135M-Instruct, scout's embedded default.
pub const SMOLLM2_135M_CONFIG: &str = r#"{
  "architectures": ["LlamaForCausalLM"],
  "hidden_size": 576, "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
  "intermediate_size": 1536, "vocab_size": 49152, "max_position_embeddings": 8192, "tie_word_embeddings": true
}"#;

/// Built-in presets: (name accepted by `--model`, display name, config).
pub const PRESETS: &[(&str, &str, &str)] = &[
    ("scout", "Llama 4 Scout 17B-16E", LLAMA4_SCOUT_CONFIG),
    ("maverick", "Llama 4 Maverick 17B-128E", LLAMA4_MAVERICK_CONFIG),
    ("smollm2", "SmolLM2-135M-Instruct", SMOLLM2_135M_CONFIG),
];

/// How a layer attends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LocalAttention {
    /// Attends within fixed chunks of `window` tokens (Llama 4).
    Chunked,
    /// Attends to the last `window` tokens (Mistral, Gemma).
    Sliding,
}

/// Which layers keep the whole context and which only a window of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AttentionPattern {
    pub global_layers: u32,
    pub local_layers: u32,
    /// Tokens a local layer keeps (chunk or window size).
    pub window: Option<u64>,
    pub local: Option<LocalAttention>,
}

/// Mixture-of-experts shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Experts {
    pub experts: u32,
    pub active: u32,
    pub shared: u32,
    /// FFN width of one expert.
    pub ffn: u64,
    /// Layers that have experts (the rest have a dense FFN).
    pub layers: u32,
}

/// Parameter counts by role: quantization treats each group differently.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ParamGroups {
    /// Attention projections (q, k, v, o).
    pub attention: u64,
    /// Dense FFNs, experts (routed and shared).
    pub ffn: u64,
    /// Of `ffn`, the weights read per token (active experts, shared, dense).
    pub ffn_active: u64,
    /// Token embeddings (a lookup: only one row is read per token).
    pub embedding: u64,
    /// The output projection (`lm_head`); 0 when tied to the embeddings.
    pub output: u64,
    /// Norms and expert routers, kept in full precision.
    pub small: u64,
    /// Vision tower and projector (approximate from the vision config).
    pub vision: u64,
}

impl ParamGroups {
    #[must_use]
    pub fn total(&self) -> u64 {
        self.attention + self.ffn + self.embedding + self.output + self.small + self.vision
    }

    /// Parameters used per generated token (text only): attention, active
    /// experts, dense FFNs, the embedding table, output, norms. Counted the
    /// way model cards count "active" parameters.
    #[must_use]
    pub fn active(&self) -> u64 {
        self.attention + self.ffn_active + self.embedding + self.output + self.small
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelFacts {
    pub name: String,
    /// Where the facts came from: `preset`, `config.json` or `gguf`.
    pub source: String,
    pub layers: u32,
    pub hidden: u64,
    pub heads: u32,
    pub kv_heads: u32,
    pub head_dim: u64,
    pub vocab: u64,
    pub max_context: u64,
    pub attention: AttentionPattern,
    pub experts: Option<Experts>,
    pub params: ParamGroups,
    /// Bytes of the weights as stored, when read from a GGUF file.
    pub file_bytes: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum FactsError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error("{path}: {detail}")]
    Config { path: String, detail: String },
    #[error("unknown model {0:?}: give a preset (scout, maverick, smollm2), a config.json or a .gguf file")]
    Unknown(String),
}

/// Facts for `--model`: a preset name, a config.json (or a folder holding
/// one), or a GGUF file.
pub fn load(spec: &str) -> Result<ModelFacts, FactsError> {
    if let Some((_, name, config)) = PRESETS.iter().find(|(key, _, _)| key.eq_ignore_ascii_case(spec)) {
        let value: Value = serde_json::from_str(config).expect("presets are valid JSON");
        return from_config(&value, name, "preset", spec);
    }
    let path = Path::new(spec);
    let config_path = if path.is_dir() {
        path.join("config.json")
    } else {
        path.to_owned()
    };
    if config_path.extension().is_some_and(|e| e == "gguf") {
        return Ok(from_gguf(&read_header(&config_path)?, &config_path));
    }
    if !config_path.is_file() {
        return Err(FactsError::Unknown(spec.to_owned()));
    }
    let err = |detail: String| FactsError::Config {
        path: config_path.display().to_string(),
        detail,
    };
    let text = std::fs::read_to_string(&config_path).map_err(|e| err(e.to_string()))?;
    let value: Value = serde_json::from_str(&text).map_err(|e| err(format!("not JSON: {e}")))?;
    let name = path
        .file_name()
        .filter(|_| path.is_dir())
        .or_else(|| config_path.parent().and_then(Path::file_name))
        .map_or_else(|| "model".to_owned(), |n| n.to_string_lossy().into_owned());
    from_config(&value, &name, "config.json", &config_path.display().to_string())
}

/// Facts from a Hugging Face config (top level, or `text_config` for
/// multimodal models).
pub fn from_config(config: &Value, name: &str, source: &str, path: &str) -> Result<ModelFacts, FactsError> {
    let text = config.get("text_config").unwrap_or(config);
    let num = |key: &str| text.get(key).and_then(Value::as_u64);
    let need = |key: &str| {
        num(key).ok_or_else(|| FactsError::Config {
            path: path.to_owned(),
            detail: format!("no numeric {key:?}"),
        })
    };
    let hidden = need("hidden_size")?;
    let layers = need("num_hidden_layers")? as u32;
    let heads = need("num_attention_heads")? as u32;
    let kv_heads = num("num_key_value_heads").map_or(heads, |k| k as u32);
    let head_dim = num("head_dim").unwrap_or(hidden / u64::from(heads.max(1)));
    let vocab = need("vocab_size")?;
    let max_context = num("max_position_embeddings").unwrap_or(0);
    let tied = text
        .get("tie_word_embeddings")
        .and_then(Value::as_bool)
        .unwrap_or(false);

    let attention = attention_pattern(text, layers);
    let n_experts = num("num_local_experts").or_else(|| num("num_experts")).unwrap_or(0) as u32;
    let experts = (n_experts > 1).then(|| {
        let step = num("interleave_moe_layer_step").unwrap_or(1).max(1) as u32;
        Experts {
            experts: n_experts,
            active: num("num_experts_per_tok").unwrap_or(1) as u32,
            shared: if text.get("attention_chunk_size").is_some() {
                1
            } else {
                num("n_shared_experts").unwrap_or(0) as u32
            },
            ffn: num("moe_intermediate_size")
                .or_else(|| num("intermediate_size"))
                .unwrap_or(0),
            layers: layers / step,
        }
    });
    let dense_ffn = num("intermediate_size_mlp")
        .or_else(|| num("intermediate_size"))
        .unwrap_or(0);

    let q = u64::from(heads) * head_dim;
    let kv = u64::from(kv_heads) * head_dim;
    let mut p = ParamGroups {
        attention: u64::from(layers) * (hidden * q * 2 + hidden * kv * 2),
        embedding: vocab * hidden,
        output: if tied { 0 } else { vocab * hidden },
        small: u64::from(layers) * 2 * hidden + hidden,
        ..ParamGroups::default()
    };
    let dense_layers = u64::from(layers - experts.map_or(0, |e| e.layers));
    let dense = dense_layers * 3 * hidden * dense_ffn;
    p.ffn = dense;
    p.ffn_active = dense;
    if let Some(e) = experts {
        let one = 3 * hidden * e.ffn;
        p.ffn += u64::from(e.layers) * one * u64::from(e.experts + e.shared);
        p.ffn_active += u64::from(e.layers) * one * u64::from(e.active + e.shared);
        p.small += u64::from(e.layers) * hidden * u64::from(e.experts);
    }
    p.vision = config.get("vision_config").map_or(0, |v| vision_params(v, hidden));
    Ok(ModelFacts {
        name: name.to_owned(),
        source: source.to_owned(),
        layers,
        hidden,
        heads,
        kv_heads,
        head_dim,
        vocab,
        max_context,
        attention,
        experts,
        params: p,
        file_bytes: None,
    })
}

fn attention_pattern(text: &Value, layers: u32) -> AttentionPattern {
    let full = AttentionPattern {
        global_layers: layers,
        local_layers: 0,
        window: None,
        local: None,
    };
    if let Some(chunk) = text.get("attention_chunk_size").and_then(Value::as_u64) {
        // Llama 4: `no_rope_layers[i]` is 1 where layer i uses RoPE with
        // chunked attention, 0 where it is a global NoPE layer; by default
        // every 4th layer is global.
        let global = match text.get("no_rope_layers").and_then(Value::as_array) {
            Some(flags) if !flags.is_empty() => flags.iter().filter(|f| f.as_u64() == Some(0)).count() as u32,
            _ => {
                let interval = text
                    .get("no_rope_layer_interval")
                    .and_then(Value::as_u64)
                    .unwrap_or(4)
                    .max(1);
                (1..=u64::from(layers)).filter(|i| i % interval == 0).count() as u32
            }
        };
        return AttentionPattern {
            global_layers: global,
            local_layers: layers - global,
            window: Some(chunk),
            local: Some(LocalAttention::Chunked),
        };
    }
    let window = text.get("sliding_window").and_then(Value::as_u64);
    if let (Some(types), Some(w)) = (text.get("layer_types").and_then(Value::as_array), window) {
        let local = types.iter().filter(|t| t.as_str() == Some("sliding_attention")).count() as u32;
        return AttentionPattern {
            global_layers: layers - local,
            local_layers: local,
            window: Some(w),
            local: Some(LocalAttention::Sliding),
        };
    }
    let uses_window = text.get("use_sliding_window").and_then(Value::as_bool).unwrap_or(true);
    match window {
        Some(w) if uses_window => AttentionPattern {
            global_layers: 0,
            local_layers: layers,
            window: Some(w),
            local: Some(LocalAttention::Sliding),
        },
        _ => full,
    }
}

/// A ViT tower of `num_hidden_layers` blocks (attention 4h² + MLP 2hi),
/// the patch embedding, and a projector to the text model. Approximate:
/// biases, norms and position embeddings are left out (under 1%).
fn vision_params(v: &Value, text_hidden: u64) -> u64 {
    let num = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
    let (h, layers, inter) = (num("hidden_size"), num("num_hidden_layers"), num("intermediate_size"));
    let patch = num("patch_size");
    let channels = num("num_channels").max(3);
    let tower = layers * (4 * h * h + 2 * h * inter) + channels * patch * patch * h;
    let ratio = v.get("pixel_shuffle_ratio").and_then(Value::as_f64).unwrap_or(1.0);
    let shuffled = (h as f64 / (ratio * ratio)) as u64;
    let out = num("vision_output_dim").max(h);
    tower + shuffled * out + out * out + out * text_hidden
}

/// Facts from a GGUF header: shapes from metadata, parameters counted from
/// the tensors themselves.
#[must_use]
pub fn from_gguf(h: &GgufHeader, path: &Path) -> ModelFacts {
    let arch = h.str("general.architecture").unwrap_or("llama").to_owned();
    let key = |k: &str| h.u64(&format!("{arch}.{k}"));
    let layers = key("block_count").unwrap_or(0) as u32;
    let hidden = key("embedding_length").unwrap_or(0);
    let heads = key("attention.head_count").unwrap_or(1) as u32;
    let kv_heads = key("attention.head_count_kv").map_or(heads, |k| k as u32);
    let head_dim = key("attention.key_length").unwrap_or(hidden / u64::from(heads.max(1)));
    let vocab = match h.get("tokenizer.ggml.tokens") {
        Some(GgufValue::Array { len }) => *len,
        _ => key("vocab_size").unwrap_or(0),
    };
    let n_experts = key("expert_count").unwrap_or(0) as u32;
    let active = key("expert_used_count").unwrap_or(1) as u32;
    let window = key("attention.sliding_window").or_else(|| key("attention.chunk_size"));
    let attention = match (
        window,
        key("attention.sliding_window_pattern").or_else(|| key("no_rope_layer_step")),
    ) {
        (Some(w), Some(every)) if every > 0 => {
            let global = (1..=u64::from(layers)).filter(|i| i % every == 0).count() as u32;
            let local = if arch == "llama4" {
                LocalAttention::Chunked
            } else {
                LocalAttention::Sliding
            };
            AttentionPattern {
                global_layers: global,
                local_layers: layers - global,
                window: Some(w),
                local: Some(local),
            }
        }
        _ => AttentionPattern {
            global_layers: layers,
            local_layers: 0,
            window: None,
            local: None,
        },
    };
    let mut p = ParamGroups::default();
    let mut expert_layers = std::collections::BTreeSet::new();
    let mut file_bytes = 0u64;
    for t in &h.tensors {
        let n = t.elements();
        file_bytes += t.bytes().unwrap_or(0);
        let name = t.name.as_str();
        if name.starts_with("token_embd") {
            p.embedding += n;
        } else if name.starts_with("output.") {
            p.output += n;
        } else if name.contains("_exps") {
            p.ffn += n;
            p.ffn_active += n / u64::from(n_experts.max(1)) * u64::from(active);
            if let Some(layer) = name.strip_prefix("blk.").and_then(|r| r.split('.').next()) {
                expert_layers.insert(layer.to_owned());
            }
        } else if name.contains("ffn_gate_inp") || name.contains("norm") {
            p.small += n;
        } else if name.contains(".attn_") {
            p.attention += n;
        } else if name.contains(".ffn_") {
            p.ffn += n;
            p.ffn_active += n;
        } else {
            p.small += n;
        }
    }
    let experts = (n_experts > 1).then(|| Experts {
        experts: n_experts,
        active,
        shared: u32::from(h.tensors.iter().any(|t| t.name.contains("_shexp"))),
        ffn: key("expert_feed_forward_length").unwrap_or(0),
        layers: expert_layers.len() as u32,
    });
    ModelFacts {
        name: h.str("general.name").map_or_else(
            || {
                path.file_stem()
                    .map_or_else(String::new, |s| s.to_string_lossy().into_owned())
            },
            str::to_owned,
        ),
        source: "gguf".into(),
        layers,
        hidden,
        heads,
        kv_heads,
        head_dim,
        vocab,
        max_context: key("context_length").unwrap_or(0),
        attention,
        experts,
        params: p,
        file_bytes: Some(file_bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: f64 = 1e9;

    /// Llama 4 Scout by hand, from its config:
    /// attention per layer: q and o are 5120 x (40 x 128) each, k and v are
    /// 5120 x (8 x 128) each: 2 x 26,214,400 + 2 x 5,242,880 = 62,914,560;
    /// x 48 layers = 3,019,898,880.
    /// one expert (gate, up, down) = 3 x 5120 x 8192 = 125,829,120; each
    /// layer has 16 routed + 1 shared = 2,139,095,040; x 48 = 102,676,561,920.
    /// embeddings and lm_head: 2 x 202,048 x 5120 = 2,068,971,520.
    /// Text total about 107.77 B; the model card says 109 B with the vision
    /// tower. Active: attention + 48 x 2 experts (1 routed + 1 shared) x
    /// 125,829,120 = 12,079,595,520 + embeddings and head: about 17.17 B.
    #[test]
    fn scout_parameters_match_hand_arithmetic_and_the_model_card() {
        let f = load("scout").unwrap();
        assert_eq!(f.params.attention, 3_019_898_880);
        assert_eq!(f.params.ffn, 102_676_561_920);
        assert_eq!(f.params.ffn_active, 12_079_595_520);
        assert_eq!(f.params.embedding + f.params.output, 2_068_971_520);
        let total = f.params.total() as f64 / B;
        let active = f.params.active() as f64 / B;
        assert!((total / 109.0 - 1.0).abs() < 0.02, "total {total} B");
        assert!((active / 17.0 - 1.0).abs() < 0.02, "active {active} B");
        assert_eq!((f.attention.global_layers, f.attention.local_layers), (12, 36));
        assert_eq!(f.attention.window, Some(8192));
        assert_eq!(f.experts.unwrap().layers, 48);
    }

    #[test]
    fn maverick_has_experts_on_every_other_layer() {
        let f = load("maverick").unwrap();
        let total = f.params.total() as f64 / B;
        let active = f.params.active() as f64 / B;
        assert!((total / 400.0 - 1.0).abs() < 0.02, "total {total} B");
        assert!((active / 17.0 - 1.0).abs() < 0.03, "active {active} B");
        assert_eq!(f.experts.unwrap().layers, 24);
    }

    #[test]
    fn smollm2_is_135m_with_tied_embeddings() {
        let f = load("smollm2").unwrap();
        assert_eq!(f.params.output, 0);
        assert_eq!(f.head_dim, 64);
        let total = f.params.total() as f64 / 1e6;
        assert!((total / 134.5 - 1.0).abs() < 0.02, "{total} M");
    }

    #[test]
    fn explicit_no_rope_layers_decide_the_global_layers() {
        let mut cfg: Value = serde_json::from_str(LLAMA4_SCOUT_CONFIG).unwrap();
        let flags: Vec<u64> = (0..48).map(|i| u64::from(i % 2 == 0)).collect();
        cfg["text_config"]["no_rope_layers"] = serde_json::json!(flags);
        let f = from_config(&cfg, "x", "test", "x").unwrap();
        assert_eq!(f.attention.global_layers, 24);
    }

    #[test]
    fn gemma_style_layer_types_give_sliding_layers() {
        let cfg = serde_json::json!({
            "hidden_size": 640, "num_hidden_layers": 18, "num_attention_heads": 4, "num_key_value_heads": 1,
            "head_dim": 256, "intermediate_size": 2048, "vocab_size": 262_144, "sliding_window": 512,
            "layer_types": (0..18).map(|i| if (i + 1) % 6 == 0 { "full_attention" } else { "sliding_attention" }).collect::<Vec<_>>()
        });
        let f = from_config(&cfg, "gemma", "test", "x").unwrap();
        assert_eq!((f.attention.global_layers, f.attention.local_layers), (3, 15));
        assert_eq!(f.attention.local, Some(LocalAttention::Sliding));
    }

    #[test]
    fn gguf_parameters_are_counted_from_tensors() {
        use super::super::gguf::{write_header, GgufTensor};
        let t = |name: &str, dims: &[u64], ty| GgufTensor {
            name: name.into(),
            dims: dims.to_vec(),
            ggml_type: ty,
        };
        let bytes = write_header(
            &[
                ("general.architecture", GgufValue::Str("llama".into())),
                ("llama.block_count", GgufValue::Int(1)),
                ("llama.embedding_length", GgufValue::Int(64)),
                ("llama.attention.head_count", GgufValue::Int(4)),
                ("llama.attention.head_count_kv", GgufValue::Int(2)),
                ("llama.context_length", GgufValue::Int(2048)),
                ("tokenizer.ggml.tokens", GgufValue::Array { len: 100 }),
            ],
            &[
                t("token_embd.weight", &[64, 100], 12),
                t("blk.0.attn_q.weight", &[64, 64], 12),
                t("blk.0.attn_k.weight", &[64, 32], 12),
                t("blk.0.ffn_up.weight", &[64, 128], 12),
                t("blk.0.attn_norm.weight", &[64], 0),
            ],
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.gguf");
        std::fs::write(&path, bytes).unwrap();
        let f = load(path.to_str().unwrap()).unwrap();
        assert_eq!(f.params.embedding, 6400);
        assert_eq!(f.params.attention, 4096 + 2048);
        assert_eq!(f.params.ffn, 8192);
        assert_eq!(f.params.small, 64);
        assert_eq!((f.kv_heads, f.head_dim, f.vocab, f.max_context), (2, 16, 100, 2048));
        // Q4_K tensors: 144 bytes per 256 weights; the norm is F32.
        assert_eq!(
            f.file_bytes,
            Some((6400 / 256 + 4096 / 256 + 2048 / 256 + 8192 / 256) * 144 + 64 * 4)
        );
    }
}
