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
    Constraint, CustomLogitsProcessor, IsqType, Model, ModelBuilder, NormalRequest, Request, Response, SamplingParams,
    StopTokens, Tensor,
};

mod folder;
mod prompter;

use folder::{folder_facts, folder_for_context, planned_context, read_json, read_optional_json};
pub use prompter::folder_tokenizer;
use prompter::{HfPrompter, Prompter};

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
        let mut builder = mistralrs::GgufModelBuilder::new(dir.to_string_lossy(), vec![file.clone()])
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
            Prompter::Folder(_) => return Err(super::no_vision(first)),
            #[cfg(feature = "llamacpp")]
            Prompter::Gguf(_) => return Err(super::no_vision(first)),
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
            first_logprobs: Vec::new(),
        })
    }
}
