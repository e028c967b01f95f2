//! The `llamacpp` backend: GGUF models in-process through llama.cpp.
//!
//! Chosen as the default because, measured here on the same GGUF, it
//! prefilled and answered follow-ups several times faster than the
//! alternatives on a CPU and exposes the KV operations the cache manager
//! needs (docs/DESIGN.md, "Engines").
//!
//! Chat formatting: the model's own template is applied to placeholder
//! contents, and the rendered text is split at the placeholders, so the
//! template's pieces are tokenized with special tokens parsed and message
//! contents are tokenized as plain text. A document that contains
//! `<|im_start|>` or similar stays text.
//!
//! Files: this one loads the model and holds the engine; `template` renders
//! and tokenizes chats, `tokenizer` counts tokens, `generate` reads prompts
//! and decodes, `answer` samples, `sequence` is what the KV-cache manager
//! sees of a context, `documents` lays a prefix out of a stored state of
//! the corpus before a change, `mtmd` reads images through the projector.
//!
//! Never decides what KV to keep: the KV-cache manager (`kv::prefix`) does.

use std::num::NonZeroU32;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use llama_cpp_2::context::params::{KvCacheType, LlamaContextParams};
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatTemplate, LlamaModel};
use llama_cpp_2::SeqState;

mod answer;
mod documents;
mod generate;
mod mtmd;
mod resident;
mod sequence;
mod template;
mod tokenizer;

use super::bpe::ByteBpe;
use super::{
    Capabilities, ChatMessage, Engine, EngineError, EngineEvent, GenerateParams, Generation, KvUse, StopFilter,
    StopReason, Tokenizer,
};
use crate::kv::disk::DiskTier;
use crate::kv::documents::KvReuse;
use crate::kv::prefix::PrefixCache;
use mtmd::{Prompt, Vision};
use template::{chat_tokens, template_of, trims_content};
use tokenizer::{count, fast_counter, vocab_hash};
pub use tokenizer::{GgufCounter, LlamaCppTokenizer};

/// Prompt tokens decoded per llama.cpp call.
pub(crate) const PREFILL_BATCH: usize = 512;

fn backend() -> Result<&'static LlamaBackend, EngineError> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            let b = LlamaBackend::init().map_err(|e| e.to_string())?;
            // llama.cpp logs every tensor it loads to stderr, and its
            // projector every image it reads; scout reports what matters
            // itself.
            llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default().with_logs_enabled(false));
            Ok(b)
        })
        .as_ref()
        .map_err(|e| EngineError::Inference(format!("llama.cpp backend: {e}")))
}

/// Options for loading a model.
#[derive(Debug, Clone)]
pub struct LlamaCppOptions {
    /// Threads for prefill and decode.
    pub threads: u32,
    /// Context to allocate at most; `None` uses the model's trained length.
    pub context: Option<u32>,
    /// Layers whose weights go to the GPU (a build with the `cuda`
    /// feature); 0 keeps every weight in host memory.
    pub gpu_layers: u32,
    /// How the KV cache is stored.
    pub kv_type: KvType,
    /// Keep the KV cache in host memory even when weights are on a GPU
    /// (longer contexts than GPU memory holds, at some speed).
    pub kv_on_host: bool,
    /// Where prompt prefixes' KV is kept between processes; `None`: not
    /// kept.
    pub kv_disk: Option<DiskTier>,
    /// Bytes of prompt prefixes' KV kept in memory for later requests in
    /// this process (0: none).
    pub kv_host_bytes: u64,
    /// During a prefill of a prefix, save its KV so far to the disk tier at
    /// least this often, so an interrupted prefill resumes where it
    /// stopped; `None`: only when the prefix is done.
    pub kv_checkpoint: Option<std::time::Duration>,
    /// Forked questions decode one token of each per batch (throughput on
    /// a GPU); otherwise each sequence decodes its own token in turn, which
    /// on a CPU is no slower and keeps every answer exactly the one the
    /// question alone gets (a batch of several rows can round differently).
    pub decode_forks_together: bool,
    /// The vision model's multimodal projector (its `mmproj` GGUF): images
    /// in the prompt are read through it; `None`: text only.
    pub mmproj: Option<std::path::PathBuf>,
    /// Bytes of KV in contexts kept alive between requests, each holding a
    /// corpus prefix, so a follow-up reads only its question (no copy from
    /// the host tier); 0: none (a one-shot command has no follow-ups).
    pub resident_bytes: u64,
    /// How a stored state of a changed corpus is reused: its prefix, or
    /// also its unchanged documents after the change (`kv::documents`).
    pub kv_reuse: KvReuse,
    /// With [`KvReuse::Documents`]: the share (0 to 1) of each moved run's
    /// first tokens read again.
    pub kv_recompute: f64,
}

impl Default for LlamaCppOptions {
    fn default() -> Self {
        Self {
            threads: 1,
            context: None,
            gpu_layers: 0,
            kv_type: KvType::F16,
            kv_on_host: false,
            kv_disk: None,
            kv_host_bytes: 0,
            kv_checkpoint: Some(std::time::Duration::from_secs(crate::limits::KV_CHECKPOINT_SECONDS)),
            decode_forks_together: false,
            mmproj: None,
            resident_bytes: 0,
            kv_reuse: KvReuse::Prefix,
            kv_recompute: crate::limits::KV_RECOMPUTE,
        }
    }
}

/// KV cache element types llama.cpp supports for K and V alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum KvType {
    /// 2 bytes per element: llama.cpp's default.
    F16,
    /// About 1.06 bytes per element, near-lossless.
    #[value(name = "q8_0")]
    Q8_0,
    /// About 0.56 bytes per element; visibly lossy on small models.
    #[value(name = "q4_0")]
    Q4_0,
}

impl KvType {
    /// The name `--kv-type` takes.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            KvType::F16 => "f16",
            KvType::Q8_0 => "q8_0",
            KvType::Q4_0 => "q4_0",
        }
    }

    /// Bytes one element takes: q8_0 stores 32 in 34 bytes, q4_0 in 18.
    #[must_use]
    pub fn bytes_per_element(self) -> f64 {
        match self {
            KvType::F16 => 2.0,
            KvType::Q8_0 => 34.0 / 32.0,
            KvType::Q4_0 => 18.0 / 32.0,
        }
    }

    fn ggml(self) -> KvCacheType {
        match self {
            KvType::F16 => KvCacheType::F16,
            KvType::Q8_0 => KvCacheType::Q8_0,
            KvType::Q4_0 => KvCacheType::Q4_0,
        }
    }
}

/// K and V elements one token's KV takes over all layers: 2 x layers x KV
/// heads x head size (the GGUF's key length, else the embedding over the
/// heads).
fn kv_elements_per_token(model: &LlamaModel) -> u64 {
    let head = model
        .meta_val_str("general.architecture")
        .ok()
        .and_then(|arch| model.meta_val_str(&format!("{arch}.attention.key_length")).ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or_else(|| u64::try_from(model.n_embd()).unwrap_or(0) / u64::from(model.n_head().max(1)));
    2 * u64::from(model.n_layer()) * u64::from(model.n_head_kv()) * head
}

/// A GGUF model loaded for generation.
pub struct LlamaCppEngine {
    /// Before `model`: the projector refers to it and is dropped first.
    vision: Option<Vision>,
    /// Shared with the resident contexts, which borrow it.
    model: Arc<LlamaModel>,
    /// K and V elements one token's KV takes over all layers (read from
    /// the model once, at load).
    kv_elements: u64,
    /// Contexts kept between requests, each holding a corpus prefix (a
    /// mutex only to be `Sync`: a context may be sent, not shared; requests
    /// hold the engine mutably and use `get_mut`).
    resident: std::sync::Mutex<resident::Pool<resident::Resident>>,
    fast: Option<ByteBpe>,
    template: LlamaChatTemplate,
    /// The chat template trims each message's content.
    trims_content: bool,
    options: LlamaCppOptions,
    model_id: String,
    tokenizer_id: String,
    context_length: u32,
    /// llama.cpp can move this model's cached keys to new positions
    /// (document reuse; see `documents::can_shift`).
    can_shift: bool,
    /// The KV-cache manager's prefix cache: prompt prefixes' KV in memory
    /// and on disk.
    kv: PrefixCache<SeqState>,
}

impl std::fmt::Debug for LlamaCppEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlamaCppEngine")
            .field("model_id", &self.model_id)
            .finish_non_exhaustive()
    }
}

fn load(path: &Path, params: &LlamaModelParams) -> Result<LlamaModel, EngineError> {
    let err = |detail: String| EngineError::Load {
        path: path.display().to_string(),
        detail,
    };
    if !path.is_file() {
        return Err(err("no such file".into()));
    }
    let mut magic = [0u8; 4];
    std::io::Read::read_exact(
        &mut std::fs::File::open(path).map_err(|e| err(e.to_string()))?,
        &mut magic,
    )
    .map_err(|e| err(e.to_string()))?;
    if &magic != b"GGUF" {
        return Err(err("not a GGUF file (the llamacpp engine reads GGUF models)".into()));
    }
    LlamaModel::load_from_file(backend()?, path, params).map_err(|e| err(format!("llama.cpp could not load it: {e}")))
}

impl LlamaCppEngine {
    /// Bytes one token's KV takes in this engine's KV type.
    fn kv_bytes_per_token(&self) -> u64 {
        (self.kv_elements as f64 * self.options.kv_type.bytes_per_element()).ceil() as u64
    }

    /// Follow-ups answered from a resident context so far.
    #[must_use]
    pub fn resident_hits(&self) -> u64 {
        self.resident
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .hits
    }

    /// The resident contexts, for a request (which holds the engine
    /// mutably: no lock is waited on).
    fn resident(&mut self) -> &mut resident::Pool<resident::Resident> {
        self.resident
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Pins the prefix `key` in both tiers when the request asks for it.
    fn pin(&mut self, key: Option<&str>, params: &GenerateParams) {
        if let (Some(key), true) = (key, params.pin_prefix) {
            self.kv.pin(key);
        }
    }

    /// A context of `n_ctx` tokens with the engine's threads, batch and
    /// KV settings.
    fn context_params(&self, n_ctx: u32) -> LlamaContextParams {
        let threads = self.options.threads.max(1) as i32;
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(n_ctx))
            .with_n_batch(PREFILL_BATCH as u32)
            .with_n_ubatch(PREFILL_BATCH as u32)
            .with_n_threads(threads)
            .with_n_threads_batch(threads)
            .with_type_k(self.options.kv_type.ggml())
            .with_type_v(self.options.kv_type.ggml())
            .with_offload_kqv(!self.options.kv_on_host);
        if self.options.kv_type == KvType::F16 {
            params
        } else {
            // llama.cpp stores a quantized V cache only with flash attention.
            params.with_flash_attention_policy(llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_ENABLED)
        }
    }

    pub fn load(path: &Path, options: LlamaCppOptions) -> Result<Self, EngineError> {
        let model = load(path, &LlamaModelParams::default().with_n_gpu_layers(options.gpu_layers))?;
        let template = template_of(&model)?;
        let tokenizer_id = vocab_hash(&model);
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let meta = std::fs::metadata(path).map_err(|e| EngineError::Load {
            path: path.display().to_string(),
            detail: e.to_string(),
        })?;
        let vision = options
            .mmproj
            .as_deref()
            .map(|p| Vision::load(p, &model, options.threads, options.gpu_layers > 0))
            .transpose()?;
        // Name, size and tokenizer identify the model for caches without
        // hashing gigabytes on every load (and the projector, which makes
        // the images' KV).
        let mut model_id = format!("{name}-{}-{tokenizer_id}", meta.len());
        if let Some(v) = &vision {
            model_id = format!("{model_id}+{}", v.id);
        }
        let trained = model.n_ctx_train();
        let context_length = options.context.map_or(trained, |c| c.min(trained)).max(256);
        let trims_content = trims_content(&model, &template)?;
        Ok(Self {
            vision,
            kv_elements: kv_elements_per_token(&model),
            can_shift: documents::can_shift(&model),
            model: Arc::new(model),
            resident: std::sync::Mutex::new(resident::Pool::new(options.resident_bytes)),
            fast: fast_counter(path),
            template,
            trims_content,
            kv: PrefixCache::new(
                format!("{model_id}{:?}", options.kv_type),
                options.kv_host_bytes,
                options.kv_disk.clone(),
                options.kv_checkpoint,
            )
            .finding_by_content(options.kv_reuse == KvReuse::Documents),
            options,
            model_id,
            tokenizer_id,
            context_length,
        })
    }

    /// Renders `messages` with the model's template and tokenizes the
    /// result, template pieces with special tokens, contents as text.
    /// The prompt as the model reads it, special tokens written out: for
    /// checks and `--verbose` displays.
    pub fn render_chat(&self, messages: &[ChatMessage]) -> Result<String, EngineError> {
        Ok(self.tokenize_chat(messages)?.render(&self.model))
    }

    /// The prompt's tokens, how many come before the last message's
    /// content (the prefix that stays the same across questions), and
    /// where its images stand.
    fn tokenize_chat(&self, messages: &[ChatMessage]) -> Result<Prompt, EngineError> {
        chat_tokens(
            &self.model,
            &self.template,
            self.trims_content,
            self.vision.as_ref(),
            messages,
        )
    }
}

impl Tokenizer for LlamaCppEngine {
    fn tokenizer_id(&self) -> &str {
        &self.tokenizer_id
    }
    fn count_tokens(&self, text: &str) -> u32 {
        count(&self.model, self.fast.as_ref(), text)
    }
    fn counts_are_cheap(&self) -> bool {
        self.fast.is_some()
    }
    fn image_tokens(&self, width: u32, height: u32) -> Option<u32> {
        self.vision.as_ref().and_then(|v| v.tokens(width, height).ok())
    }
}

impl Engine for LlamaCppEngine {
    fn backend(&self) -> &'static str {
        "llamacpp"
    }

    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            vision: self.vision.is_some(),
            ..Capabilities::llamacpp(self.context_length)
        }
    }

    fn count_chat_tokens(&self, messages: &[ChatMessage]) -> Result<u32, EngineError> {
        Ok(self.tokenize_chat(messages)?.tokens.len() as u32)
    }

    fn kv_tiers(&self) -> Vec<(&'static str, crate::kv::tier::TierCounters)> {
        self.kv.tiers()
    }

    fn kv_held(&self, messages: &[ChatMessage]) -> Option<u32> {
        let read = self.tokenize_chat(messages).ok()?;
        let prefix = sequence::token_ids(&read.tokens[..read.prefix]);
        Some(self.kv.held(&prefix, 1) as u32)
    }

    fn kv_saved(&self, messages: &[ChatMessage]) -> Option<u64> {
        let read = self.tokenize_chat(messages).ok()?;
        self.kv.on_disk(&sequence::token_ids(&read.tokens[..read.prefix]), 1)
    }

    fn kv_store(&self) -> Option<crate::kv::budget::KvStore> {
        let disk = self.kv.disk()?;
        let elements = self.kv_elements as f64;
        Some(crate::kv::budget::KvStore {
            kv_type: self.options.kv_type.name().to_owned(),
            bytes_per_token: elements * self.options.kv_type.bytes_per_element(),
            smaller: (self.options.kv_type == KvType::F16).then(|| {
                (
                    KvType::Q8_0.name().to_owned(),
                    elements * KvType::Q8_0.bytes_per_element(),
                )
            }),
            budget: crate::kv::tier::KvTier::budget(disk),
            budget_note: disk.cap_note().to_owned(),
        })
    }

    fn generate_forked(
        &mut self,
        conversations: &[Vec<ChatMessage>],
        params: &GenerateParams,
        on_event: &mut dyn FnMut(usize, EngineEvent<'_>),
    ) -> Result<Vec<Generation>, EngineError> {
        let prompts = conversations
            .iter()
            .map(|c| self.tokenize_chat(c))
            .collect::<Result<Vec<_>, _>>()?;
        let shared = prompts.first().map_or(0, |p| p.prefix);
        let forkable = prompts.len() > 1
            && prompts
                .iter()
                .all(|p| p.prefix == shared && p.tokens[..shared] == prompts[0].tokens[..shared])
            && prompts
                .iter()
                .all(|p| p.tokens.len() as u32 + params.max_tokens <= self.context_length);
        if !forkable {
            // Nothing shared to fork (or a prompt that cannot fit, which
            // the one-by-one path reports): one after another.
            return super::one_by_one(self, conversations, params, on_event);
        }
        self.forked(&prompts, shared, params, on_event)
    }

    fn generate(
        &mut self,
        messages: &[ChatMessage],
        params: &GenerateParams,
        on_event: &mut dyn FnMut(EngineEvent<'_>),
    ) -> Result<Generation, EngineError> {
        self.generate_one(messages, params, on_event)
    }
}
