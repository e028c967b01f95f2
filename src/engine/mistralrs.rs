//! The `mistralrs` backend: mistral.rs in-process, for Hugging Face-format
//! model folders (config.json, tokenizer.json, safetensors; Llama 4 Scout
//! among them) with in-situ quantization, and for the GGUFs it knows.
//!
//! scout renders the chat format and tokenizes the prompt itself, as the
//! llamacpp engine does (the template's text with special tokens parsed,
//! message contents as plain text), and hands mistral.rs the token ids: a
//! document cannot smuggle a chat token in, and prompt counts are exact.
//!
//! What mistral.rs 0.8.1 does with Llama 4 (read in its source, measured on
//! a tiny Llama 4), and what this module does about it:
//! 1. Its Llama 4 loader turns the prefix cache off, so every question
//!    prefills the whole prompt again: the engine says so once a long prompt
//!    comes, and reports every token as prefilled.
//! 2. Its chunked-attention layers apply the chunk mask in prefill only; a
//!    token decoded past `attention_chunk_size` attends to the whole context
//!    and departs from the reference model. The context is capped at the
//!    chunk size (scout windows longer corpora) unless the caller lifts the
//!    cap knowing that ([`MistralRsOptions::past_attention_chunk`]).
//! 3. It precomputes `RoPE` tables for `max_position_embeddings` (10,485,760
//!    for Scout): the model is loaded through a folder whose config.json
//!    says the context actually planned.
//! 4. On a CPU its prefix cache never evicts: it is off there.
//! 5. A schema-constrained answer can end on the tokenizer's end token while
//!    the chat format ends turns with another: every end token is a stop.
//! 6. A GGUF of an architecture it does not know panics in the loader: the
//!    panic becomes a load error.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mistralrs::core::{RequestMessage, TokenSource};
use mistralrs::{
    Constraint, CustomLogitsProcessor, GgufModelBuilder, IsqType, Model, ModelBuilder, NormalRequest, Request,
    Response, SamplingParams, StopTokens, Tensor,
};

use super::{
    Capabilities, ChatMessage, Engine, EngineError, EngineEvent, GenerateParams, Generation, KvUse, StopFilter,
    StopReason, Tokenizer,
};

/// In-situ quantization of a Hugging Face model's weights while loading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum Isq {
    /// 4.5 bits per weight (k-quant): Scout's 109B parameters in about 61 GB.
    Q4k,
    /// 8.5 bits per weight, near-lossless.
    #[value(name = "q8_0")]
    Q8_0,
    /// FP8 (E4M3) weights.
    Fp8,
    /// The weights as stored (bf16 for Scout: about 218 GB).
    None,
}

impl Isq {
    fn isq_type(self) -> Option<IsqType> {
        match self {
            Isq::Q4k => Some(IsqType::Q4K),
            Isq::Q8_0 => Some(IsqType::Q8_0),
            Isq::Fp8 => Some(IsqType::F8E4M3),
            Isq::None => None,
        }
    }
}

/// Options for loading a model with mistral.rs.
#[derive(Debug, Clone)]
pub struct MistralRsOptions {
    /// Quantization applied while loading a Hugging Face folder (GGUFs are
    /// already quantized).
    pub isq: Isq,
    /// Context to use at most; `None`: the model's (capped for Llama 4, see
    /// `past_attention_chunk`).
    pub context: Option<u32>,
    /// Llama 4: allow contexts past `attention_chunk_size`, where mistral.rs
    /// 0.8.1's decoding attends to the whole context instead of the chunk.
    pub past_attention_chunk: bool,
    /// Where a model folder's adjusted config.json goes (finding 3).
    pub scratch: PathBuf,
}

/// What a model folder's config.json says that matters here.
#[derive(Debug, Clone, PartialEq)]
struct FolderFacts {
    llama4: bool,
    /// `max_position_embeddings` (of `text_config` when there is one).
    trained_context: u32,
    attention_chunk: Option<u32>,
}

fn read_json(path: &Path) -> Result<serde_json::Value, EngineError> {
    let err = |detail: String| EngineError::Load {
        path: path.display().to_string(),
        detail,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| err(format!("not valid JSON: {e}")))
}

/// An optional JSON file of a model folder: `None` when absent, an error
/// when present but unreadable or not JSON (never silently skipped).
fn read_optional_json(path: &Path) -> Result<Option<serde_json::Value>, EngineError> {
    if path.exists() {
        read_json(path).map(Some)
    } else {
        Ok(None)
    }
}

fn folder_facts(config: &serde_json::Value) -> FolderFacts {
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
fn planned_context(facts: &FolderFacts, options: &MistralRsOptions) -> u32 {
    let mut context = facts.trained_context;
    if let (true, Some(chunk), false) = (facts.llama4, facts.attention_chunk, options.past_attention_chunk) {
        context = context.min(chunk);
    }
    options.context.map_or(context, |c| c.min(context)).max(256)
}

/// A folder that reads like `dir` but whose config.json says
/// `max_position_embeddings: context` (finding 3: mistral.rs sizes its
/// `RoPE` tables by it). Every other file is a link to the original.
fn folder_for_context(
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

/// A Hugging Face chat template with the tokenizer it goes with.
struct HfPrompter {
    /// Splits special tokens out of the text (for the template's pieces).
    special: tokenizers::Tokenizer,
    /// Reads special tokens as text (for message contents).
    plain: tokenizers::Tokenizer,
    /// The chat template, compiled once (prompts are rendered for every
    /// count and every request).
    env: minijinja::Environment<'static>,
    bos: String,
    eos: String,
    trims_content: bool,
    tokenizer_id: String,
    end_tokens: Vec<u32>,
    /// A Llama 4 with its vision tower: images go in the prompt.
    llama4_vision: bool,
}

/// A token written in `tokenizer_config.json`: a string or `{content: ...}`.
fn token_text(v: Option<&serde_json::Value>) -> String {
    match v {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(o) => o.get("content").and_then(|c| c.as_str()).unwrap_or_default().to_owned(),
        None => String::new(),
    }
}

/// The chat template of a model folder: `chat_template.jinja`,
/// `chat_template.json`, or `tokenizer_config.json` (a string, or a list whose
/// `default` entry is taken).
fn chat_template(dir: &Path, tokenizer_config: &serde_json::Value) -> Result<String, EngineError> {
    if let Ok(t) = std::fs::read_to_string(dir.join("chat_template.jinja")) {
        return Ok(t);
    }
    let from = |v: &serde_json::Value| -> Option<String> {
        match v.get("chat_template")? {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Array(list) => list
                .iter()
                .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))
                .and_then(|t| t.get("template")?.as_str().map(str::to_owned)),
            _ => None,
        }
    };
    if let Some(t) = read_optional_json(&dir.join("chat_template.json"))?
        .as_ref()
        .and_then(from)
    {
        return Ok(t);
    }
    from(tokenizer_config).ok_or_else(|| {
        EngineError::Template(format!(
            "{} has no chat template (tokenizer_config.json's chat_template, chat_template.jinja or chat_template.json)",
            dir.display()
        ))
    })
}

/// A Hugging Face chat template compiled as transformers renders them
/// (Python string methods, blocks trimmed, `raise_exception`).
fn template_env(template: String) -> Result<minijinja::Environment<'static>, EngineError> {
    let mut env = minijinja::Environment::new();
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.set_lstrip_blocks(true);
    env.set_trim_blocks(true);
    env.add_function("raise_exception", |msg: String| -> Result<String, minijinja::Error> {
        Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, msg))
    });
    env.add_function("strftime_now", |_fmt: String| -> String { String::new() });
    env.add_template_owned("chat", template)
        .map_err(|e| EngineError::Template(e.to_string()))?;
    Ok(env)
}

impl HfPrompter {
    fn load(dir: &Path, generation_eos: &[u32]) -> Result<Self, EngineError> {
        let tokenizer_path = dir.join("tokenizer.json");
        let err = |detail: String| EngineError::Load {
            path: tokenizer_path.display().to_string(),
            detail,
        };
        let special = tokenizers::Tokenizer::from_file(&tokenizer_path).map_err(|e| err(e.to_string()))?;
        let mut plain = special.clone();
        plain.set_encode_special_tokens(true);
        // Optional, but when it is there it must parse: it holds the chat
        // template and the begin and end tokens.
        let config = read_optional_json(&dir.join("tokenizer_config.json"))?.unwrap_or(serde_json::Value::Null);
        let env = template_env(chat_template(dir, &config)?)?;
        let bos = token_text(config.get("bos_token"));
        let eos = token_text(config.get("eos_token"));
        let bytes = std::fs::read(&tokenizer_path).map_err(|e| err(e.to_string()))?;
        let tokenizer_id = blake3::hash(&bytes).to_hex()[..16].to_owned();
        // Every token that ends a turn or the text (finding 5): the
        // tokenizer's end token, generation_config.json's, and the chat
        // formats' own.
        let mut end_tokens: Vec<u32> = generation_eos.to_vec();
        for name in [
            eos.as_str(),
            "<|eot|>",
            "<|eom|>",
            "<|end_of_text|>",
            "<|eot_id|>",
            "<|im_end|>",
            "<end_of_turn>",
            "</s>",
        ] {
            if let Some(id) = special.token_to_id(name).filter(|_| !name.is_empty()) {
                end_tokens.push(id);
            }
        }
        end_tokens.sort_unstable();
        end_tokens.dedup();
        let mut me = Self {
            special,
            plain,
            env,
            bos,
            eos,
            trims_content: false,
            tokenizer_id,
            end_tokens,
            llama4_vision: false,
        };
        let probe = me.render(&[ChatMessage::new(super::Role::User, " \nscout-probe\n ")], false)?;
        me.trims_content = !probe.contains(" \nscout-probe\n ");
        Ok(me)
    }

    fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String, EngineError> {
        let messages: Vec<serde_json::Value> = messages
            .iter()
            .map(|m| serde_json::json!({"role": m.role.as_str(), "content": m.content}))
            .collect();
        self.env
            .get_template("chat")
            .and_then(|t| {
                t.render(minijinja::context! {
                    messages => messages,
                    add_generation_prompt => add_generation_prompt,
                    bos_token => self.bos,
                    eos_token => self.eos,
                })
            })
            .map_err(|e| EngineError::Template(e.to_string()))
    }

    fn chat_tokens(&self, messages: &[ChatMessage]) -> Result<(Vec<u32>, usize), EngineError> {
        let (messages, _) = self.neutralized(messages);
        let messages = &*messages;
        let slotted: Vec<ChatMessage> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| ChatMessage::new(m.role, super::slot(i)))
            .collect();
        let rendered = self.render(&slotted, true)?;
        let mut tokens = Vec::new();
        let mut failed = None;
        let prefix = super::tokenize_slotted(
            &rendered,
            messages,
            self.trims_content,
            &mut tokens,
            &mut |text, special, out| {
                let tok = if special { &self.special } else { &self.plain };
                match tok.encode_fast(text, false) {
                    Ok(e) => out.extend_from_slice(e.get_ids()),
                    Err(e) => failed = Some(e.to_string()),
                }
            },
            &mut |image, out| {
                if !self.llama4_vision {
                    return Err(super::no_vision(image));
                }
                let text = crate::model::vision::llama4_image_text(image.width, image.height);
                let e = self
                    .special
                    .encode_fast(text, false)
                    .map_err(|e| EngineError::Inference(format!("tokenizing an image's tokens: {e}")))?;
                out.extend_from_slice(e.get_ids());
                Ok(())
            },
        )?;
        match failed {
            Some(e) => Err(EngineError::Inference(format!("tokenizing the prompt: {e}"))),
            None => Ok((tokens, prefix)),
        }
    }

    fn count(&self, text: &str) -> u32 {
        self.plain
            .encode_fast(text, false)
            .map_or(0, |e| e.get_ids().len() as u32)
    }
}

impl Tokenizer for HfPrompter {
    fn tokenizer_id(&self) -> &str {
        &self.tokenizer_id
    }
    fn count_tokens(&self, text: &str) -> u32 {
        self.count(text)
    }
    fn image_tokens(&self, width: u32, height: u32) -> Option<u32> {
        self.llama4_vision
            .then(|| crate::model::vision::llama4_tiling(width, height).tokens)
    }
}

impl HfPrompter {
    /// mistral.rs's Llama 4 processor renders the chat template around
    /// messages with images and tokenizes the result with special tokens
    /// parsed. So that document text cannot turn into special tokens there,
    /// a word joiner (U+2060) goes after the first character of any special
    /// token's text in such messages (scout counts the messages as they are
    /// sent). Returns the messages and how many tokens were broken up;
    /// messages without images come back as they are.
    fn neutralized<'m>(&self, messages: &'m [ChatMessage]) -> (std::borrow::Cow<'m, [ChatMessage]>, usize) {
        if !self.llama4_vision || messages.iter().all(|m| m.images.is_empty()) {
            return (std::borrow::Cow::Borrowed(messages), 0);
        }
        let specials: Vec<String> = self
            .special
            .get_added_tokens_decoder()
            .into_values()
            .filter(|t| t.special && t.content.len() > 1)
            .map(|t| t.content)
            .collect();
        let mut broken = 0;
        let out = messages
            .iter()
            .map(|m| {
                let mut content = crate::prompt::Content::default();
                for part in m.parts(false) {
                    match part {
                        super::Part::Text(text) => {
                            let mut text = text.to_owned();
                            for s in &specials {
                                let n = text.matches(s.as_str()).count();
                                if n > 0 {
                                    broken += n;
                                    let split = s.chars().next().map_or(1, char::len_utf8);
                                    text = text.replace(s.as_str(), &format!("{}\u{2060}{}", &s[..split], &s[split..]));
                                }
                            }
                            content.push_str(&text);
                        }
                        super::Part::Image(image) => content.push_image(Arc::new(image.clone())),
                    }
                }
                content.into_message(m.role)
            })
            .collect();
        (std::borrow::Cow::Owned(out), broken)
    }

    /// Messages as mistral.rs's Llama 4 processor takes them with images:
    /// (role, text with `<|image|>` where each image stands); it writes
    /// each `<|image|>` out as the image's tiles.
    fn llama4_vision_messages(&self, messages: &[ChatMessage]) -> Vec<(String, String)> {
        messages
            .iter()
            .map(|m| {
                let mut content = String::new();
                for part in m.parts(self.trims_content) {
                    match part {
                        super::Part::Text(text) => content.push_str(text),
                        super::Part::Image(_) => content.push_str("<|image|>"),
                    }
                }
                (m.role.as_str().to_owned(), content)
            })
            .collect()
    }
}

/// The tokenizer of a Hugging Face model folder (tokenizer.json), for
/// counting without loading the weights.
pub fn folder_tokenizer(dir: &Path) -> Result<Box<dyn Tokenizer + Send>, EngineError> {
    Ok(Box::new(HfPrompter::load(dir, &[])?))
}

/// How the engine turns messages into tokens.
enum Prompter {
    Folder(Box<HfPrompter>),
    #[cfg(feature = "llamacpp")]
    Gguf(Box<super::llamacpp::LlamaCppTokenizer>),
}

impl Prompter {
    fn chat_tokens(&self, messages: &[ChatMessage]) -> Result<(Vec<u32>, usize), EngineError> {
        match self {
            Prompter::Folder(p) => p.chat_tokens(messages),
            #[cfg(feature = "llamacpp")]
            Prompter::Gguf(t) => t.chat_tokens(messages),
        }
    }
}

/// Counts the tokens sampled and applies scout's repeat penalty (to the
/// last 64 generated tokens only: mistral.rs's own penalty counts the whole
/// context, which would push the model away from the corpus's words).
struct Steps {
    prompt_len: usize,
    penalty: f32,
    sampled: AtomicU32,
}

impl CustomLogitsProcessor for Steps {
    fn apply(&self, logits: &Tensor, context: &[u32]) -> mistralrs::Result<Tensor> {
        self.sampled.fetch_add(1, Ordering::Relaxed);
        let generated = &context[self.prompt_len.min(context.len())..];
        if (self.penalty - 1.0).abs() < f32::EPSILON || generated.is_empty() {
            return Ok(logits.clone());
        }
        let mut values = logits.to_vec1::<f32>()?;
        let mut seen = rustc_hash::FxHashSet::default();
        for &t in &generated[generated.len().saturating_sub(64)..] {
            if seen.insert(t) {
                if let Some(v) = values.get_mut(t as usize) {
                    *v = if *v > 0.0 { *v / self.penalty } else { *v * self.penalty };
                }
            }
        }
        Tensor::from_vec(values, logits.dims(), logits.device())
    }
}

/// The schema as mistral.rs's grammar (llguidance) should read it: JSON
/// written on one line with `": "` and `", "` between parts. By default it
/// allows any whitespace between tokens, and a model that wanders into
/// blank lines then runs to the token limit inside the object (llama.cpp's
/// converter allows at most one line break and 20 spaces).
fn compact(schema: &serde_json::Value) -> serde_json::Value {
    let mut schema = schema.clone();
    if let Some(o) = schema.as_object_mut() {
        o.entry("x-guidance").or_insert_with(
            || serde_json::json!({"whitespace_flexible": false, "key_separator": ": ", "item_separator": ", "}),
        );
    }
    schema
}

/// A model loaded in mistral.rs.
pub struct MistralRsEngine {
    runtime: tokio::runtime::Runtime,
    model: Model,
    prompter: Prompter,
    model_id: String,
    tokenizer_id: String,
    context_length: u32,
    end_tokens: Vec<u32>,
    /// mistral.rs keeps no prefix KV for this model (Llama 4, or any model
    /// on a CPU): every prompt is prefilled whole.
    no_prefix_cache: Option<&'static str>,
    warned_prefix: bool,
    /// Said once: special-token text in documents was broken up for
    /// mistral.rs's image path.
    warned_specials: bool,
    description: String,
}

impl std::fmt::Debug for MistralRsEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MistralRsEngine")
            .field("model_id", &self.model_id)
            .finish_non_exhaustive()
    }
}

/// Prompts longer than this make the engine say, once, that mistral.rs
/// will read them again for every question.
const LONG_PROMPT: u32 = 4096;

impl MistralRsEngine {
    /// Loads a Hugging Face model folder or a GGUF file.
    pub fn load(path: &Path, options: &MistralRsOptions) -> Result<Self, EngineError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| EngineError::Inference(format!("starting mistral.rs's runtime: {e}")))?;
        let gpu = cfg!(feature = "cuda");
        // Finding 4: on a CPU the prefix cache grows without bound.
        let prefix_cache = if gpu { Some(16) } else { None };
        if path.is_dir() {
            Self::load_folder(runtime, path, options, prefix_cache)
        } else if path.is_file() {
            Self::load_gguf(runtime, path, options, prefix_cache)
        } else {
            Err(EngineError::Load {
                path: path.display().to_string(),
                detail: "no such file or folder (a Hugging Face model folder or a GGUF file)".into(),
            })
        }
    }

    /// Runs mistral.rs's loader, turning a panic into an error (finding 6).
    fn build<F>(runtime: &tokio::runtime::Runtime, path: &Path, build: F) -> Result<Model, EngineError>
    where
        F: std::future::Future<Output = anyhow::Result<Model>>,
    {
        let err = |detail: String| EngineError::Load {
            path: path.display().to_string(),
            detail,
        };
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runtime.block_on(build))) {
            Ok(Ok(model)) => Ok(model),
            Ok(Err(e)) => Err(err(format!("mistral.rs could not load it: {e:#}"))),
            Err(payload) => Err(err(format!(
                "mistral.rs failed inside its loader (an architecture or file layout it does not support?): {}",
                crate::panic_message(payload.as_ref())
            ))),
        }
    }

    fn load_folder(
        runtime: tokio::runtime::Runtime,
        dir: &Path,
        options: &MistralRsOptions,
        prefix_cache: Option<usize>,
    ) -> Result<Self, EngineError> {
        let config = read_json(&dir.join("config.json"))?;
        let facts = folder_facts(&config);
        let context_length = planned_context(&facts, options);
        let load_dir = if facts.trained_context > context_length {
            folder_for_context(dir, &config, context_length, &options.scratch)?
        } else {
            dir.to_path_buf()
        };
        let generation_eos: Vec<u32> = read_optional_json(&dir.join("generation_config.json"))?
            .and_then(|g| match g.get("eos_token_id")? {
                serde_json::Value::Number(n) => Some(vec![n.as_u64()? as u32]),
                serde_json::Value::Array(a) => Some(a.iter().filter_map(|v| Some(v.as_u64()? as u32)).collect()),
                _ => None,
            })
            .unwrap_or_default();
        let mut prompter = HfPrompter::load(dir, &generation_eos)?;
        // mistral.rs loads a Llama 4 with a vision tower as a multimodal
        // model; its processor needs the image tokens and the image
        // preprocessing config.
        prompter.llama4_vision = facts.llama4
            && config.get("vision_config").is_some()
            && dir.join("preprocessor_config.json").is_file()
            && ["<|image|>", "<|patch|>", "<|image_start|>", "<|image_end|>"]
                .iter()
                .all(|t| prompter.special.token_to_id(t).is_some());
        let mut builder = ModelBuilder::new(load_dir.to_string_lossy())
            .with_token_source(TokenSource::None)
            .with_max_num_seqs(1)
            .with_prefix_cache_n(prefix_cache);
        if !cfg!(feature = "cuda") {
            builder = builder.with_force_cpu();
        }
        if let Some(isq) = options.isq.isq_type() {
            builder = builder.with_isq(isq);
        }
        let model = Self::build(&runtime, dir, builder.build())?;
        let name = dir
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let no_prefix_cache = if facts.llama4 {
            Some("mistral.rs keeps no prefix cache for Llama 4")
        } else if prefix_cache.is_none() {
            Some("mistral.rs's prefix cache is off on a CPU (it never evicts there)")
        } else {
            None
        };
        let mut description = format!(
            "{name} (mistralrs, {}, context {context_length}",
            match options.isq {
                Isq::None => "weights as stored".to_owned(),
                isq => format!("ISQ {isq:?}").to_lowercase(),
            }
        );
        if facts.llama4 && !options.past_attention_chunk && facts.trained_context > context_length {
            description.push_str(", capped at Llama 4's attention chunk");
        }
        if prompter.llama4_vision {
            description.push_str(", reads images");
        }
        description.push(')');
        Ok(Self {
            runtime,
            model,
            model_id: format!("{name}-{}-{:?}", prompter.tokenizer_id, options.isq),
            tokenizer_id: prompter.tokenizer_id.clone(),
            end_tokens: prompter.end_tokens.clone(),
            prompter: Prompter::Folder(Box::new(prompter)),
            context_length,
            no_prefix_cache,
            warned_prefix: false,
            warned_specials: false,
            description,
        })
    }

    #[cfg(feature = "llamacpp")]
    fn load_gguf(
        runtime: tokio::runtime::Runtime,
        path: &Path,
        options: &MistralRsOptions,
        prefix_cache: Option<usize>,
    ) -> Result<Self, EngineError> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let file = path
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut builder = GgufModelBuilder::new(dir.to_string_lossy(), vec![file.clone()])
            .with_token_source(TokenSource::None)
            .with_max_num_seqs(1)
            .with_prefix_cache_n(prefix_cache);
        if !cfg!(feature = "cuda") {
            builder = builder.with_force_cpu();
        }
        let model = Self::build(&runtime, path, builder.build())?;
        let tokenizer = super::llamacpp::LlamaCppTokenizer::load(path)?;
        // A vocabulary-only load does not know the context: the header does.
        let trained = crate::model::facts::load(&path.to_string_lossy())
            .map(|f| f.max_context as u32)
            .ok()
            .filter(|&c| c > 0)
            .unwrap_or(4096);
        let context_length = options.context.map_or(trained, |c| c.min(trained)).max(256);
        let size = std::fs::metadata(path).map_or(0, |m| m.len());
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Self {
            runtime,
            model,
            model_id: format!("{name}-{size}-{}", tokenizer.tokenizer_id()),
            tokenizer_id: tokenizer.tokenizer_id().to_owned(),
            end_tokens: tokenizer.end_tokens(),
            prompter: Prompter::Gguf(Box::new(tokenizer)),
            context_length,
            no_prefix_cache: prefix_cache
                .is_none()
                .then_some("mistral.rs's prefix cache is off on a CPU (it never evicts there)"),
            warned_prefix: false,
            warned_specials: false,
            description: format!("{file} (mistralrs GGUF, context {context_length})"),
        })
    }

    #[cfg(not(feature = "llamacpp"))]
    fn load_gguf(
        _runtime: tokio::runtime::Runtime,
        path: &Path,
        _options: &MistralRsOptions,
        _prefix_cache: Option<usize>,
    ) -> Result<Self, EngineError> {
        Err(EngineError::Load {
            path: path.display().to_string(),
            detail:
                "GGUF files with the mistralrs engine need scout built with the llamacpp feature (for the tokenizer)"
                    .into(),
        })
    }

    /// The longest sequence mistral.rs itself says the loaded model takes
    /// (from the config it read): for checks.
    #[must_use]
    pub fn loaded_max_sequence_length(&self) -> Option<usize> {
        self.model.max_sequence_length().ok().flatten()
    }

    /// What is loaded, for the line commands print.
    #[must_use]
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The prompt as token ids, and how many come before the last
    /// message's content.
    pub fn chat_tokens(&self, messages: &[ChatMessage]) -> Result<(Vec<u32>, usize), EngineError> {
        self.prompter.chat_tokens(messages)
    }

    /// The prompt as the model reads it, special tokens written out: for
    /// checks and `--verbose` displays.
    pub fn render_chat(&self, messages: &[ChatMessage]) -> Result<String, EngineError> {
        let (tokens, _) = self.chat_tokens(messages)?;
        match &self.prompter {
            Prompter::Folder(p) => p
                .special
                .decode(&tokens, false)
                .map_err(|e| EngineError::Template(e.to_string())),
            #[cfg(feature = "llamacpp")]
            Prompter::Gguf(t) => Ok(t.detokenize(&tokens)),
        }
    }

    /// A request carrying the messages' images, as mistral.rs's Llama 4
    /// processor takes it (see [`HfPrompter::llama4_vision_messages`]).
    fn vision_request(&mut self, messages: &[ChatMessage]) -> Result<RequestMessage, EngineError> {
        let first = messages
            .iter()
            .flat_map(|m| &m.images)
            .map(|(_, i)| i.as_ref())
            .next()
            .ok_or_else(|| EngineError::Inference("no image in the request".into()))?;
        let prompter = match &self.prompter {
            Prompter::Folder(p) if p.llama4_vision => p,
            _ => return Err(super::no_vision(first)),
        };
        let (messages, broken) = prompter.neutralized(messages);
        let texts = prompter.llama4_vision_messages(&messages);
        if broken > 0 && !self.warned_specials {
            tracing::warn!(
                "the documents hold {broken} piece(s) of text that spell a special token; mistral.rs reads a prompt with images as text, so scout put a word joiner (U+2060) inside each"
            );
            self.warned_specials = true;
        }
        let mut images = Vec::new();
        for (_, image) in messages.iter().flat_map(|m| &m.images) {
            let unreadable = |e: crate::ingest::image::ImageFailure| {
                EngineError::Inference(format!("the image of {} could not be decoded: {e:?}", image.label))
            };
            let opened =
                crate::ingest::image::open(&image.bytes, crate::limits::MAX_SCAN_PIXELS).map_err(unreadable)?;
            images.push(crate::ingest::image::decode(&image.bytes, &opened).map_err(unreadable)?);
        }
        let messages = texts
            .into_iter()
            .map(|(role, content)| {
                let mut m = indexmap::IndexMap::new();
                m.insert("role".to_owned(), either::Either::Left(role));
                m.insert("content".to_owned(), either::Either::Left(content));
                m
            })
            .collect();
        Ok(RequestMessage::MultimodalChat {
            images,
            audios: Vec::new(),
            videos: Vec::new(),
            messages,
            enable_thinking: None,
            reasoning_effort: None,
        })
    }

    /// Stops whatever the model is generating and waits (briefly) for its
    /// sequences to end, so the next request starts clean.
    fn terminate(&self, rx: &mut tokio::sync::mpsc::Receiver<Response>) {
        if let Ok(sender) = self.model.inner().get_sender(None) {
            let _ = sender.blocking_send(Request::TerminateAllSeqsNextStep);
        }
        let _ = self.runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(10), async { while rx.recv().await.is_some() {} }).await
        });
    }
}

impl Tokenizer for MistralRsEngine {
    fn tokenizer_id(&self) -> &str {
        &self.tokenizer_id
    }
    fn count_tokens(&self, text: &str) -> u32 {
        match &self.prompter {
            Prompter::Folder(p) => p.count(text),
            #[cfg(feature = "llamacpp")]
            Prompter::Gguf(t) => t.count_tokens(text),
        }
    }
    fn counts_are_cheap(&self) -> bool {
        match &self.prompter {
            Prompter::Folder(_) => false,
            #[cfg(feature = "llamacpp")]
            Prompter::Gguf(t) => t.counts_are_cheap(),
        }
    }
    fn image_tokens(&self, width: u32, height: u32) -> Option<u32> {
        match &self.prompter {
            Prompter::Folder(p) => p.image_tokens(width, height),
            #[cfg(feature = "llamacpp")]
            Prompter::Gguf(_) => None,
        }
    }
}

impl Engine for MistralRsEngine {
    fn backend(&self) -> &'static str {
        "mistralrs"
    }

    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            vision: self.image_tokens(336, 336).is_some(),
            ..Capabilities::text_with_schema(self.context_length)
        }
    }

    fn count_chat_tokens(&self, messages: &[ChatMessage]) -> Result<u32, EngineError> {
        Ok(self.chat_tokens(messages)?.0.len() as u32)
    }

    fn generate(
        &mut self,
        messages: &[ChatMessage],
        params: &GenerateParams,
        on_event: &mut dyn FnMut(EngineEvent<'_>),
    ) -> Result<Generation, EngineError> {
        let started = Instant::now();
        let (prompt, _) = self.chat_tokens(messages)?;
        let n_prompt = prompt.len() as u32;
        if n_prompt + params.max_tokens > self.context_length {
            return Err(EngineError::ContextOverflow {
                prompt: n_prompt,
                answer: params.max_tokens,
                context: self.context_length,
            });
        }
        if let (Some(why), false, true) = (self.no_prefix_cache, self.warned_prefix, n_prompt > LONG_PROMPT) {
            tracing::warn!(
                "{why}, so each question reads all {n_prompt} prompt tokens again; for many questions over a long corpus, --engine llamacpp (a GGUF) or --engine openai (vLLM, SGLang) keep it resident"
            );
            self.warned_prefix = true;
        }
        params.cancel.check()?;
        let steps = Arc::new(Steps {
            prompt_len: prompt.len(),
            penalty: params.repeat_penalty,
            sampled: AtomicU32::new(0),
        });
        let greedy = params.temperature <= 0.0;
        let sampling = SamplingParams {
            temperature: (!greedy).then_some(f64::from(params.temperature)),
            top_k: greedy.then_some(1),
            top_p: (!greedy).then_some(0.95),
            stop_toks: Some(StopTokens::Ids(self.end_tokens.clone())),
            max_len: Some(params.max_tokens as usize),
            ..SamplingParams::deterministic()
        };
        let request_messages = if messages.iter().any(|m| !m.images.is_empty()) {
            self.vision_request(messages)?
        } else {
            RequestMessage::CompletionTokens(prompt)
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel(64);
        let request = Request::Normal(Box::new(NormalRequest {
            messages: request_messages,
            sampling_params: sampling,
            response: tx,
            return_logprobs: false,
            is_streaming: true,
            id: 0,
            constraint: params
                .json_schema
                .as_ref()
                .map_or(Constraint::None, |s| Constraint::JsonSchema(compact(s))),
            suffix: None,
            tools: None,
            tool_choice: None,
            logits_processors: Some(vec![steps.clone() as Arc<dyn CustomLogitsProcessor>]),
            return_raw_logits: false,
            web_search_options: None,
            model_id: None,
            truncate_sequence: false,
        }));
        let sender = self
            .model
            .inner()
            .get_sender(None)
            .map_err(|e| EngineError::Inference(format!("mistral.rs: {e}")))?;
        sender
            .blocking_send(request)
            .map_err(|e| EngineError::Inference(format!("mistral.rs stopped: {e}")))?;
        on_event(EngineEvent::Prefill {
            done: 0,
            total: n_prompt,
        });
        let mut filter = StopFilter::new(&params.stop);
        let mut ttft_ms = None;
        let mut chunks = 0u32;
        let mut finish: Option<String> = None;
        let mut stopped_here = false;
        let mut failure: Option<EngineError> = None;
        // What mistral.rs says it read (a chat request's usage).
        let mut reported_prompt: Option<u32> = None;
        loop {
            if let Err(e) = params.cancel.check() {
                self.terminate(&mut rx);
                return Err(e);
            }
            let next = self
                .runtime
                .block_on(async { tokio::time::timeout(Duration::from_millis(200), rx.recv()).await });
            let response = match next {
                Err(_) => continue,
                Ok(None) => break,
                Ok(Some(r)) => r,
            };
            let pieces: Vec<(String, Option<String>)> = match response {
                Response::CompletionChunk(chunk) => {
                    chunk.choices.into_iter().map(|c| (c.text, c.finish_reason)).collect()
                }
                Response::Chunk(chunk) => {
                    if let Some(u) = &chunk.usage {
                        reported_prompt = Some(u.prompt_tokens as u32);
                    }
                    chunk
                        .choices
                        .into_iter()
                        .map(|c| (c.delta.content.unwrap_or_default(), c.finish_reason))
                        .collect()
                }
                Response::CompletionDone(done) => {
                    finish = done.choices.first().map(|c| c.finish_reason.clone());
                    break;
                }
                Response::Done(done) => {
                    reported_prompt = Some(done.usage.prompt_tokens as u32);
                    finish = done.choices.first().map(|c| c.finish_reason.clone());
                    break;
                }
                Response::InternalError(e) | Response::ValidationError(e) => {
                    failure = Some(EngineError::Inference(format!("mistral.rs: {e}")));
                    break;
                }
                Response::CompletionModelError(e, _) | Response::ModelError(e, _) => {
                    failure = Some(EngineError::Inference(format!("mistral.rs: {e}")));
                    break;
                }
                _ => continue,
            };
            for (text, finish_reason) in pieces {
                if ttft_ms.is_none() {
                    ttft_ms = Some(started.elapsed().as_millis() as u64);
                    on_event(EngineEvent::Prefill {
                        done: n_prompt,
                        total: n_prompt,
                    });
                }
                chunks += 1;
                let (shown, stop) = filter.push(&text);
                if !shown.is_empty() {
                    on_event(EngineEvent::Text(shown));
                }
                if stop {
                    stopped_here = true;
                }
                if finish_reason.is_some() {
                    finish = finish_reason;
                }
            }
            if stopped_here {
                self.terminate(&mut rx);
                break;
            }
            if finish.is_some() {
                break;
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        let stop = if stopped_here {
            StopReason::StopSequence
        } else if finish.as_deref() == Some("length") {
            StopReason::MaxTokens
        } else {
            StopReason::EndOfText
        };
        if !stopped_here {
            let rest = filter.flush().to_owned();
            if !rest.is_empty() {
                on_event(EngineEvent::Text(&rest));
            }
        }
        // Every sampled token passed the step counter; an end token is not
        // part of the answer.
        let sampled = steps.sampled.load(Ordering::Relaxed);
        let completion_tokens = if sampled == 0 {
            chunks
        } else if stop == StopReason::EndOfText {
            sampled.saturating_sub(1)
        } else {
            sampled
        };
        let ttft = ttft_ms.unwrap_or_else(|| started.elapsed().as_millis() as u64);
        // A request with images reports what mistral.rs read once it had
        // written each image out as its tiles.
        let n_prompt = reported_prompt.unwrap_or(n_prompt);
        Ok(Generation {
            text: filter.text().to_owned(),
            prompt_tokens: n_prompt,
            completion_tokens,
            kv: KvUse {
                prefilled_tokens: n_prompt,
                ..KvUse::default()
            },
            stop,
            ttft_ms: ttft,
            prefill_ms: ttft,
            decode_ms: (started.elapsed().as_millis() as u64).saturating_sub(ttft),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(context: Option<u32>, past: bool) -> MistralRsOptions {
        MistralRsOptions {
            isq: Isq::None,
            context,
            past_attention_chunk: past,
            scratch: std::env::temp_dir(),
        }
    }

    #[test]
    fn llama4_context_is_capped_at_the_attention_chunk_unless_lifted() {
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
    fn the_adjusted_folder_says_the_planned_context_and_links_the_rest() {
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
