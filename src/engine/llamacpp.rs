//! The `llamacpp` backend: GGUF models in-process through llama.cpp.
//!
//! Chosen as the default because, measured here on the same GGUF, it
//! prefilled and answered follow-ups several times faster than the
//! alternatives on a CPU and exposes the KV operations the cache manager
//! needs (see DESIGN.md, "Engines and models").
//!
//! Chat formatting: the model's own template is applied to placeholder
//! contents, and the rendered text is split at the placeholders, so the
//! template's pieces are tokenized with special tokens parsed and message
//! contents are tokenized as plain text. A document that contains
//! `<|im_start|>` or similar stays text.

use std::num::NonZeroU32;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Instant;

use llama_cpp_2::context::params::{KvCacheType, LlamaContextParams};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::{LlamaStateSeqFlags, SeqState};

use super::bpe::ByteBpe;
use super::mtmd::{span_tokens, ImageSpan, Prompt, Vision};
use super::{
    Capabilities, ChatMessage, Engine, EngineError, EngineEvent, GenerateParams, Generation, KvUse, StopFilter,
    StopReason, Tokenizer,
};
use crate::kv::disk::DiskTier;
use crate::kv::prefix::{PrefixCache, SequenceKv};

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
    fn ggml(self) -> KvCacheType {
        match self {
            KvType::F16 => KvCacheType::F16,
            KvType::Q8_0 => KvCacheType::Q8_0,
            KvType::Q4_0 => KvCacheType::Q4_0,
        }
    }
}

/// A GGUF model loaded for generation.
pub struct LlamaCppEngine {
    /// Before `model`: the projector refers to it and is dropped first.
    vision: Option<Vision>,
    model: LlamaModel,
    fast: Option<ByteBpe>,
    template: LlamaChatTemplate,
    /// The chat template trims each message's content.
    trims_content: bool,
    options: LlamaCppOptions,
    model_id: String,
    tokenizer_id: String,
    context_length: u32,
    /// The KV-cache manager's prefix cache: prompt prefixes' KV in memory
    /// and on disk.
    kv: PrefixCache<SeqState>,
}

/// Sequence 0 of a context, as the KV-cache manager sees it.
struct Sequence0<'a, 'm>(&'a mut LlamaContext<'m>);

fn llama_tokens(tokens: &[u32]) -> Vec<LlamaToken> {
    tokens.iter().map(|&t| LlamaToken(t as i32)).collect()
}

fn token_ids(tokens: &[LlamaToken]) -> Vec<u32> {
    tokens.iter().map(|t| t.0 as u32).collect()
}

impl SequenceKv for Sequence0<'_, '_> {
    type State = SeqState;
    fn state(&self) -> Result<(SeqState, u64), String> {
        let state = self
            .0
            .state_seq_get(0, LlamaStateSeqFlags::empty())
            .map_err(|e| e.to_string())?;
        let bytes = state.byte_len() as u64;
        Ok((state, bytes))
    }
    fn set_state(&mut self, state: &SeqState) -> Result<(), String> {
        self.0.state_seq_set(state, 0).map_err(|e| e.to_string())
    }
    fn save(&self, path: &Path, tokens: &[u32]) -> Result<(), String> {
        self.0
            .state_seq_save_file(path, 0, &llama_tokens(tokens))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
    fn load(&mut self, path: &Path, capacity: usize) -> Result<Vec<u32>, String> {
        self.0
            .state_seq_load_file(path, 0, capacity)
            .map(|(tokens, _)| token_ids(&tokens))
            .map_err(|e| e.to_string())
    }
    fn cut(&mut self, from: usize) -> bool {
        self.0
            .clear_kv_cache_seq(Some(0), Some(from as u32), None)
            .unwrap_or(false)
    }
    fn clear(&mut self) {
        self.0.clear_kv_cache();
    }
}

impl std::fmt::Debug for LlamaCppEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlamaCppEngine")
            .field("model_id", &self.model_id)
            .finish_non_exhaustive()
    }
}

/// Only the vocabulary of a GGUF: exact token counts without the weights.
pub struct LlamaCppTokenizer {
    model: LlamaModel,
    fast: Option<ByteBpe>,
    tokenizer_id: String,
    template: LlamaChatTemplate,
    trims_content: bool,
}

impl std::fmt::Debug for LlamaCppTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlamaCppTokenizer")
            .field("tokenizer_id", &self.tokenizer_id)
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

/// A hash of the vocabulary (every token's bytes, in id order): two models
/// with the same id here tokenize alike.
fn vocab_hash(model: &LlamaModel) -> String {
    let mut h = blake3::Hasher::new();
    for (_, bytes) in model.tokens(true) {
        h.update(&(bytes.len() as u32).to_le_bytes());
        h.update(&bytes);
    }
    h.finalize().to_hex()[..16].to_owned()
}

fn count_plain(model: &LlamaModel, text: &str) -> u32 {
    model.vocab().tokenize(text.as_bytes(), false, false).len() as u32
}

/// The fast exact counter for the GGUF at `path`, when its vocabulary
/// has one; `SCOUT_TOKENIZER=llamacpp` turns it off (to compare).
fn fast_counter(path: &Path) -> Option<ByteBpe> {
    if std::env::var("SCOUT_TOKENIZER").is_ok_and(|v| v == "llamacpp") {
        return None;
    }
    ByteBpe::from_gguf(path)
}

fn count(model: &LlamaModel, fast: Option<&ByteBpe>, text: &str) -> u32 {
    match fast {
        Some(bpe) => bpe.count(text, &|t| count_plain(model, t)),
        None => count_plain(model, text),
    }
}

impl LlamaCppTokenizer {
    pub fn load(path: &Path) -> Result<Self, EngineError> {
        // The fast counter reads the GGUF's vocabulary on its own, while
        // llama.cpp loads it (each takes tens of milliseconds).
        std::thread::scope(|scope| {
            let fast = scope.spawn(|| fast_counter(path));
            let model = load(path, &LlamaModelParams::default().with_vocab_only(true))?;
            let tokenizer_id = vocab_hash(&model);
            let template = template_of(&model)?;
            let trims_content = trims_content(&model, &template)?;
            Ok(Self {
                model,
                fast: fast.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                tokenizer_id,
                template,
                trims_content,
            })
        })
    }

    /// `messages` rendered in the GGUF's chat template and tokenized as
    /// the llamacpp engine does (for another engine running the same
    /// GGUF); with how many tokens come before the last message's content.
    pub fn chat_tokens(&self, messages: &[ChatMessage]) -> Result<(Vec<u32>, usize), EngineError> {
        let prompt = chat_tokens(&self.model, &self.template, self.trims_content, None, messages)?;
        Ok((prompt.tokens.iter().map(|t| t.0 as u32).collect(), prompt.prefix))
    }

    /// Token ids as text, special tokens written out.
    #[must_use]
    pub fn detokenize(&self, tokens: &[u32]) -> String {
        let tokens: Vec<LlamaToken> = tokens.iter().map(|&t| LlamaToken(t as i32)).collect();
        String::from_utf8_lossy(&self.model.vocab().detokenize(&tokens, false, true)).into_owned()
    }

    /// The tokens that end a turn or the text (end of generation).
    #[must_use]
    pub fn end_tokens(&self) -> Vec<u32> {
        let vocab = self.model.vocab();
        (0..self.model.n_vocab())
            .map(LlamaToken)
            .filter(|&t| vocab.is_eog(t))
            .map(|t| t.0 as u32)
            .collect()
    }

    /// llama.cpp's own count, bypassing the fast counter: for checks.
    #[must_use]
    pub fn count_tokens_slow(&self, text: &str) -> u32 {
        count_plain(&self.model, text)
    }

    /// Whether counts come from the fast counter ([`ByteBpe`]).
    #[must_use]
    pub fn is_fast(&self) -> bool {
        self.fast.is_some()
    }
}

impl Tokenizer for LlamaCppTokenizer {
    fn tokenizer_id(&self) -> &str {
        &self.tokenizer_id
    }
    fn count_tokens(&self, text: &str) -> u32 {
        count(&self.model, self.fast.as_ref(), text)
    }
    fn counts_are_cheap(&self) -> bool {
        self.fast.is_some()
    }
}

/// A GGUF vocabulary's exact token counter that starts in a millisecond
/// or two: the fast counter and the vocabulary's id come from a cache file
/// written the first time (keyed by the GGUF's path, size and time), and
/// llama.cpp loads the vocabulary only when a piece of text needs it (one
/// the fast counter leaves to llama.cpp, or every piece when the
/// vocabulary has no fast counter). For ingests: a re-ingest that counts
/// one changed file should not spend 100 ms loading a vocabulary.
pub struct GgufCounter {
    path: std::path::PathBuf,
    tokenizer_id: String,
    fast: Option<ByteBpe>,
    model: OnceLock<LlamaModel>,
}

impl std::fmt::Debug for GgufCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufCounter")
            .field("path", &self.path)
            .field("tokenizer_id", &self.tokenizer_id)
            .finish_non_exhaustive()
    }
}

/// What a counter cache file starts with (the format's version last).
const COUNTER_MAGIC: &[u8] = b"scout-counter\x001";

impl GgufCounter {
    /// The counter for the GGUF at `path`, read from its cache file in
    /// `cache` when there is one for this very file (else built from the
    /// GGUF, and the cache file written; a cache that cannot be written is
    /// no error).
    pub fn load(path: &Path, cache: &Path) -> Result<Self, EngineError> {
        let file = cache.join(format!("{}.counter", Self::cache_key(path)?));
        if let Some(counter) = std::fs::read(&file).ok().and_then(|b| Self::from_cache(path, &b)) {
            return Ok(counter);
        }
        let full = LlamaCppTokenizer::load(path)?;
        let counter = Self {
            path: path.to_owned(),
            tokenizer_id: full.tokenizer_id,
            fast: full.fast,
            model: OnceLock::from(full.model),
        };
        let _ = write_atomically(&file, &counter.cache_bytes());
        Ok(counter)
    }

    /// Names the cache file of the GGUF at `path`: its real path, size,
    /// modification time and first 64 KiB (the header's start, which
    /// names the model: another model copied over it with its time kept
    /// still gets a cache file of its own).
    fn cache_key(path: &Path) -> Result<String, EngineError> {
        let err = |e: std::io::Error| EngineError::Load {
            path: path.display().to_string(),
            detail: e.to_string(),
        };
        let real = path.canonicalize().map_err(err)?;
        let meta = std::fs::metadata(&real).map_err(err)?;
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        let mut head = Vec::with_capacity(1 << 16);
        std::io::Read::read_to_end(
            &mut std::io::Read::take(std::fs::File::open(&real).map_err(err)?, 1 << 16),
            &mut head,
        )
        .map_err(err)?;
        let mut h = blake3::Hasher::new();
        h.update(real.to_string_lossy().as_bytes());
        h.update(&meta.len().to_le_bytes());
        h.update(&mtime.to_le_bytes());
        h.update(&head);
        Ok(h.finalize().to_hex()[..24].to_owned())
    }

    fn cache_bytes(&self) -> Vec<u8> {
        let mut out = COUNTER_MAGIC.to_vec();
        out.push(self.tokenizer_id.len() as u8);
        out.extend_from_slice(self.tokenizer_id.as_bytes());
        if let Some(fast) = &self.fast {
            out.extend_from_slice(&fast.to_bytes());
        }
        out
    }

    fn from_cache(path: &Path, bytes: &[u8]) -> Option<Self> {
        let rest = bytes.strip_prefix(COUNTER_MAGIC)?;
        let (&n, rest) = rest.split_first()?;
        let (id, fast) = rest.split_at_checked(usize::from(n))?;
        let fast = if fast.is_empty() {
            None
        } else {
            Some(ByteBpe::from_bytes(fast)?)
        };
        Some(Self {
            path: path.to_owned(),
            tokenizer_id: String::from_utf8(id.to_vec()).ok()?,
            fast,
            model: OnceLock::new(),
        })
    }

    /// llama.cpp's vocabulary, loaded on first use. It loaded when the
    /// cache file was written and the file has not changed since, so a
    /// failure here is the file going away mid-run.
    fn model(&self) -> &LlamaModel {
        self.model.get_or_init(|| {
            load(&self.path, &LlamaModelParams::default().with_vocab_only(true)).unwrap_or_else(|e| {
                panic!("scout: the model's vocabulary, needed to count tokens, could not be loaded again: {e}")
            })
        })
    }

    /// Whether llama.cpp's vocabulary has been loaded (for tests).
    #[must_use]
    pub fn loaded_llama_cpp(&self) -> bool {
        self.model.get().is_some()
    }
}

/// Writes `bytes` to `file` through a temporary file beside it, so that a
/// reader never sees half of it.
fn write_atomically(file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = file.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, bytes)?;
    tmp.persist(file).map_err(|e| e.error)?;
    Ok(())
}

impl Tokenizer for GgufCounter {
    fn tokenizer_id(&self) -> &str {
        &self.tokenizer_id
    }
    fn count_tokens(&self, text: &str) -> u32 {
        match &self.fast {
            Some(bpe) => bpe.count(text, &|t| count_plain(self.model(), t)),
            None => count_plain(self.model(), text),
        }
    }
    fn counts_are_cheap(&self) -> bool {
        self.fast.is_some()
    }
}

/// The GGUF's chat template; `ChatML` for a GGUF without one (what most small
/// instruction models were tuned on).
fn template_of(model: &LlamaModel) -> Result<LlamaChatTemplate, EngineError> {
    model
        .chat_template(None)
        .or_else(|_| LlamaChatTemplate::new("chatml"))
        .map_err(|e| EngineError::Template(e.to_string()))
}

/// Whether `template` trims message content (scout renders the template
/// around placeholders, so it must do the trimming itself): a probe with
/// surrounding whitespace shows it.
fn trims_content(model: &LlamaModel, template: &LlamaChatTemplate) -> Result<bool, EngineError> {
    let probe = LlamaChatMessage::new("user".to_owned(), " \nscout-probe\n ".to_owned())
        .map_err(|e| EngineError::Template(e.to_string()))?;
    let rendered = model
        .apply_chat_template(template, &[probe], false)
        .map_err(|e| EngineError::Template(e.to_string()))?;
    Ok(!rendered.contains(" \nscout-probe\n "))
}

/// A schema as a grammar (llama.cpp's own converter), made before any work
/// so an unsupported schema fails at once.
fn grammar_of(params: &GenerateParams) -> Result<Option<String>, EngineError> {
    params
        .json_schema
        .as_ref()
        .map(|schema| {
            llama_cpp_2::json_schema_to_grammar(&schema.to_string())
                .map_err(|e| EngineError::Unsupported(format!("use this JSON schema: {e}")))
        })
        .transpose()
}

/// One answer being decoded: its sampler, the text so far (whole UTF-8
/// characters, stop sequences held back) and why it ended.
struct Answer {
    sampler: LlamaSampler,
    filter: StopFilter,
    /// Bytes of an incomplete trailing character.
    pending: Vec<u8>,
    piece: Vec<u8>,
    produced: u32,
    stop: Option<StopReason>,
    started: Instant,
    ttft_ms: Option<u64>,
}

impl Answer {
    fn new(
        model: &LlamaModel,
        grammar: Option<&str>,
        params: &GenerateParams,
        started: Instant,
    ) -> Result<Self, EngineError> {
        // The grammar, when there is one, first: only tokens that keep the
        // output valid JSON for the schema are left to choose from.
        let mut chain = Vec::new();
        if let Some(g) = grammar {
            chain.push(
                LlamaSampler::grammar(model, g, "root")
                    .map_err(|e| EngineError::Unsupported(format!("use the grammar of this JSON schema: {e}")))?,
            );
        }
        chain.push(LlamaSampler::penalties(
            model.n_vocab(),
            64,
            params.repeat_penalty,
            0.0,
            0.0,
        ));
        if params.temperature <= 0.0 {
            chain.push(LlamaSampler::greedy());
        } else {
            chain.extend([
                LlamaSampler::top_p(0.95, 1),
                LlamaSampler::temp(params.temperature),
                LlamaSampler::dist(params.seed),
            ]);
        }
        Ok(Self {
            sampler: LlamaSampler::chain_simple(chain),
            filter: StopFilter::new(&params.stop),
            pending: Vec::new(),
            piece: Vec::new(),
            produced: 0,
            stop: None,
            started,
            ttft_ms: None,
        })
    }

    /// Samples the next token from the logits at `index`, shows what text
    /// it completes, and returns it to be decoded next; `None` once the
    /// answer has ended (an end token, a stop sequence, the token limit).
    fn step(
        &mut self,
        model: &LlamaModel,
        ctx: &LlamaContext<'_>,
        index: i32,
        params: &GenerateParams,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Option<LlamaToken>, EngineError> {
        if self.stop.is_some() {
            return Ok(None);
        }
        if self.produced >= params.max_tokens {
            self.stop = Some(StopReason::MaxTokens);
            return Ok(None);
        }
        params.cancel.check()?;
        // `sample` also accepts the token into every sampler's state (the
        // grammar's, the penalties' window).
        let token = self.sampler.sample(ctx, index);
        let vocab = model.vocab();
        if vocab.is_eog(token) {
            self.stop = Some(StopReason::EndOfText);
            return Ok(None);
        }
        self.produced += 1;
        self.piece.clear();
        vocab.token_to_piece_into(token, &mut self.piece, false, None);
        self.pending.extend_from_slice(&self.piece);
        let valid = match std::str::from_utf8(&self.pending) {
            // Keep an incomplete trailing character for the next token.
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            // Valid, or invalid bytes that no later token can complete
            // (shown as U+FFFD).
            _ => self.pending.len(),
        };
        if valid > 0 {
            let chunk = String::from_utf8_lossy(&self.pending[..valid]).into_owned();
            self.pending.drain(..valid);
            let started = self.started;
            self.ttft_ms.get_or_insert_with(|| started.elapsed().as_millis() as u64);
            let (shown, stopped) = self.filter.push(&chunk);
            if !shown.is_empty() {
                on_text(shown);
            }
            if stopped {
                self.stop = Some(StopReason::StopSequence);
                return Ok(None);
            }
        }
        Ok(Some(token))
    }

    /// Shows what was held back and makes the generation's report.
    fn finish(
        mut self,
        kv: KvUse,
        prompt_tokens: u32,
        prefill_ms: u64,
        decode_start: Instant,
        on_text: &mut dyn FnMut(&str),
    ) -> Generation {
        let stop = self.stop.unwrap_or(StopReason::MaxTokens);
        if stop != StopReason::StopSequence {
            let chunk = String::from_utf8_lossy(&self.pending).into_owned();
            let (shown, _) = self.filter.push(&chunk);
            let mut rest = shown.to_owned();
            rest.push_str(self.filter.flush());
            if !rest.is_empty() {
                on_text(&rest);
            }
        }
        Generation {
            kv,
            text: self.filter.text().to_owned(),
            prompt_tokens,
            completion_tokens: self.produced,
            stop,
            ttft_ms: self
                .ttft_ms
                .unwrap_or_else(|| self.started.elapsed().as_millis() as u64),
            prefill_ms,
            decode_ms: decode_start.elapsed().as_millis() as u64,
        }
    }
}

impl LlamaCppEngine {
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

    /// [`Engine::generate_forked`] for prompts that share their first
    /// `shared` tokens: one context with a KV stream per sequence. The
    /// shared prefix goes into sequence 0 (from the host tier, else the
    /// disk tier, else prefilled and then kept in both), is copied into
    /// the others, each sequence reads its own question, and the answers
    /// decode one token of each per batch.
    fn forked(
        &mut self,
        prompts: &[Prompt],
        shared: usize,
        params: &GenerateParams,
        on_event: &mut dyn FnMut(usize, EngineEvent<'_>),
    ) -> Result<Vec<Generation>, EngineError> {
        let grammar = grammar_of(params)?;
        let started = Instant::now();
        let n = prompts.len();
        let prefix = token_ids(&prompts[0].tokens[..shared]);
        let plan = self.kv.plan(&prefix, n, false);
        self.pin(plan.key.as_deref(), params);
        let longest = prompts.iter().map(|p| p.tokens.len() as u32).max().unwrap_or(0) + params.max_tokens;
        // Without a unified cache (llama-cpp-2 does not expose it), each
        // sequence has a stream of n_ctx / n cells.
        let per_sequence = longest.div_ceil(256) * 256;
        let ctx_params = self.context_params(per_sequence * n as u32).with_n_seq_max(n as u32);
        let mut ctx = self.model.new_context(backend()?, ctx_params).map_err(|e| {
            EngineError::Inference(format!(
                "could not create a context of {n} sequences of {per_sequence} tokens: {e}"
            ))
        })?;
        let total: u32 = shared as u32 + prompts.iter().map(|p| (p.tokens.len() - shared) as u32).sum::<u32>();
        // The shared prefix, into sequence 0: whole from a tier, or read.
        let mut kv = KvUse::default();
        let restored = self
            .kv
            .restore(&plan, &mut Sequence0(&mut ctx), &prefix, shared, &mut kv);
        let mut done = restored;
        if done > 0 {
            on_event(
                0,
                EngineEvent::Prefill {
                    done: done as u32,
                    total,
                },
            );
        }
        let mut batch = LlamaBatch::new(PREFILL_BATCH, n as i32);
        while done < shared {
            params.cancel.check()?;
            let limit = (done + PREFILL_BATCH).min(shared);
            let end = prompts[0].read(&mut ctx, self.vision.as_mut(), &mut batch, done, limit, 0)?;
            kv.prefilled_tokens += (end - done) as u32;
            done = end;
            on_event(
                0,
                EngineEvent::Prefill {
                    done: done as u32,
                    total,
                },
            );
        }
        if restored < shared {
            self.kv.keep(&plan, &Sequence0(&mut ctx), &prefix, &mut kv);
        }
        // Each other sequence gets the prefix's KV copied in: no prefill.
        for s in 1..n {
            ctx.copy_kv_cache_seq(0, s as i32, None, None)
                .map_err(|e| EngineError::Inference(format!("forking the prefix: {e}")))?;
        }
        // Each question read into its own sequence; its first token is
        // sampled at once (the next decode replaces the logits).
        let mut answers = Vec::with_capacity(n);
        let mut next: Vec<Option<LlamaToken>> = Vec::with_capacity(n);
        let mut read = shared as u32;
        for (s, prompt) in prompts.iter().enumerate() {
            let mut pos = shared;
            while pos < prompt.tokens.len() {
                params.cancel.check()?;
                let limit = (pos + PREFILL_BATCH).min(prompt.tokens.len());
                let end = prompt.read(&mut ctx, self.vision.as_mut(), &mut batch, pos, limit, s as i32)?;
                read += (end - pos) as u32;
                pos = end;
                on_event(s, EngineEvent::Prefill { done: read, total });
            }
            let mut answer = Answer::new(&self.model, grammar.as_deref(), params, started)?;
            next.push(answer.step(&self.model, &ctx, batch.n_tokens() - 1, params, &mut |t| {
                on_event(s, EngineEvent::Text(t));
            })?);
            answers.push(answer);
        }
        let prefill_ms = started.elapsed().as_millis() as u64;
        let decode_start = Instant::now();
        let mut positions: Vec<i32> = prompts.iter().map(|p| p.tokens.len() as i32).collect();
        let together = self.options.decode_forks_together;
        loop {
            let live: Vec<usize> = (0..n).filter(|&s| next[s].is_some()).collect();
            if live.is_empty() {
                break;
            }
            // One token of every live sequence per batch, or one sequence
            // per batch in turn.
            let rounds: Vec<&[usize]> = if together {
                vec![&live[..]]
            } else {
                live.chunks(1).collect()
            };
            for rows in rounds {
                batch.clear();
                for &s in rows {
                    if let Some(token) = next[s] {
                        batch
                            .add(token, positions[s], &[s as i32], true)
                            .map_err(|e| EngineError::Inference(e.to_string()))?;
                        positions[s] += 1;
                    }
                }
                ctx.decode(&mut batch)
                    .map_err(|e| EngineError::Inference(format!("decode: {e}")))?;
                for (row, &s) in rows.iter().enumerate() {
                    next[s] = answers[s].step(&self.model, &ctx, row as i32, params, &mut |t| {
                        on_event(s, EngineEvent::Text(t));
                    })?;
                }
            }
        }
        Ok(answers
            .into_iter()
            .enumerate()
            .map(|(s, answer)| {
                let own = (prompts[s].tokens.len() - shared) as u32;
                // The first sequence carries how the prefix was had; the
                // others forked it.
                let kv = if s == 0 {
                    KvUse {
                        prefilled_tokens: kv.prefilled_tokens + own,
                        ..kv
                    }
                } else {
                    KvUse {
                        forked_tokens: shared as u32,
                        prefilled_tokens: own,
                        ..KvUse::default()
                    }
                };
                answer.finish(kv, prompts[s].tokens.len() as u32, prefill_ms, decode_start, &mut |t| {
                    on_event(s, EngineEvent::Text(t));
                })
            })
            .collect())
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
            model,
            fast: fast_counter(path),
            template,
            trims_content,
            kv: PrefixCache::new(
                format!("{model_id}{:?}", options.kv_type),
                options.kv_host_bytes,
                options.kv_disk.clone(),
                options.kv_checkpoint,
            ),
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

/// `messages` in `model`'s chat `template`, as tokens: the template's own
/// text with special tokens parsed, message contents as plain text, each
/// image a stand-in span as long as `vision`'s projector makes it (an
/// error without one).
fn chat_tokens(
    model: &LlamaModel,
    template: &LlamaChatTemplate,
    trims_content: bool,
    vision: Option<&Vision>,
    messages: &[ChatMessage],
) -> Result<Prompt, EngineError> {
    let slotted: Vec<LlamaChatMessage> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| LlamaChatMessage::new(m.role.as_str().to_owned(), super::slot(i)))
        .collect::<Result<_, _>>()
        .map_err(|e| EngineError::Template(e.to_string()))?;
    let rendered = model
        .apply_chat_template(template, &slotted, true)
        .map_err(|e| EngineError::Template(e.to_string()))?;
    let vocab = model.vocab();
    let mut tokens = Vec::new();
    if vocab.should_add_bos() {
        tokens.push(vocab.bos());
    }
    let mut images = Vec::new();
    let prefix = super::tokenize_slotted(
        &rendered,
        messages,
        trims_content,
        &mut tokens,
        &mut |text, special, out| {
            vocab.tokenize_into(text.as_bytes(), out, false, special);
        },
        &mut |image, out| {
            let vision = vision.ok_or_else(|| super::no_vision(image))?;
            let len = vision.tokens(image.width, image.height)? as usize;
            let start = out.len();
            span_tokens(image, len, out);
            // The message's own shared copy (no copy of the bytes).
            let shared = messages
                .iter()
                .flat_map(|m| &m.images)
                .find(|(_, a)| std::ptr::eq(std::ptr::from_ref(&**a), image))
                .map_or_else(|| std::sync::Arc::new(image.clone()), |(_, a)| a.clone());
            images.push(ImageSpan {
                start,
                len,
                image: shared,
            });
            Ok(())
        },
    )?;
    Ok(Prompt { tokens, prefix, images })
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
        let grammar = grammar_of(params)?;
        let started = Instant::now();
        let read = self.tokenize_chat(messages)?;
        let (prompt, prefix_len) = (&read.tokens[..], read.prefix);
        let n_prompt = prompt.len() as u32;
        if n_prompt + params.max_tokens > self.context_length {
            return Err(EngineError::ContextOverflow {
                prompt: n_prompt,
                answer: params.max_tokens,
                context: self.context_length,
            });
        }
        let prefix = token_ids(&prompt[..prefix_len]);
        // What the tiers hold of the prefix (everything before the
        // question): whole, or the first blocks of another prompt's.
        let mut plan = self.kv.plan(&prefix, 1, true);
        self.pin(plan.key.as_deref(), params);
        // Allocate only the context this request needs (rounded up), not
        // the model's whole trained length; a stored state that holds
        // more tokens than this prompt needs must fit to be loaded.
        let n_ctx = (n_prompt + params.max_tokens)
            .max(plan.context_needed() as u32)
            .div_ceil(256)
            * 256;
        let capacity = n_ctx.min(self.context_length);
        let ctx_params = self.context_params(capacity);
        let mut ctx = self
            .model
            .new_context(backend()?, ctx_params)
            .map_err(|e| EngineError::Inference(format!("could not create a context of {n_ctx} tokens: {e}")))?;

        let mut kv = KvUse::default();
        let mut done = self
            .kv
            .restore(&plan, &mut Sequence0(&mut ctx), &prefix, capacity as usize, &mut kv);
        // KV from another prompt may end inside an image, which is read
        // whole: back to its start.
        let whole = read.unsplit(done);
        if whole < done {
            ctx.clear_kv_cache_seq(Some(0), Some(whole as u32), None)
                .map_err(|e| EngineError::Inference(format!("trimming reused KV to an image's start: {e}")))?;
            kv.reused_tokens = kv.reused_tokens.min(whole as u32);
            kv.restored_tokens = kv.restored_tokens.min(whole as u32);
            done = whole;
        }
        let keep_prefix = plan.keeps() && done < prefix_len;
        let mut batch = LlamaBatch::new(PREFILL_BATCH, 1);
        on_event(EngineEvent::Prefill {
            done: done as u32,
            total: n_prompt,
        });
        while done < prompt.len() {
            // Chunks end at the prefix's end, so its KV can be saved alone.
            let limit = if done < prefix_len && keep_prefix {
                (done + PREFILL_BATCH).min(prefix_len)
            } else {
                (done + PREFILL_BATCH).min(prompt.len())
            };
            params.cancel.check()?;
            let end = read.read(&mut ctx, self.vision.as_mut(), &mut batch, done, limit, 0)?;
            kv.prefilled_tokens += (end - done) as u32;
            done = end;
            if keep_prefix && done < prefix_len {
                self.kv.checkpoint(&mut plan, &Sequence0(&mut ctx), &prefix[..done]);
            }
            if done == prefix_len && keep_prefix {
                self.kv.keep(&plan, &Sequence0(&mut ctx), &prefix, &mut kv);
            }
            on_event(EngineEvent::Prefill {
                done: done as u32,
                total: n_prompt,
            });
        }
        let prefill_ms = started.elapsed().as_millis() as u64;

        let mut answer = Answer::new(&self.model, grammar.as_deref(), params, started)?;
        let decode_start = Instant::now();
        let mut pos = prompt.len() as i32;
        let mut logits_index = batch.n_tokens() - 1;
        while let Some(token) = answer.step(&self.model, &ctx, logits_index, params, &mut |t| {
            on_event(EngineEvent::Text(t));
        })? {
            batch.clear();
            batch
                .add(token, pos, &[0], true)
                .map_err(|e| EngineError::Inference(e.to_string()))?;
            pos += 1;
            ctx.decode(&mut batch)
                .map_err(|e| EngineError::Inference(format!("decode: {e}")))?;
            logits_index = 0;
        }
        Ok(answer.finish(kv, n_prompt, prefill_ms, decode_start, &mut |t| {
            on_event(EngineEvent::Text(t));
        }))
    }
}
