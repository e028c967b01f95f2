//! Opening an engine from the options every command and the server share:
//! which engine, which model (the default fetched on first use), and how
//! llamacpp runs it (threads, GPU layers, KV type and tiers). The option
//! groups are clap argument groups, flattened into each command.
//!
//! In: [`ModelArgs`] and [`RunArgs`]. Out: a loaded (or connected) engine
//! with a line saying what it is, or the tokenizer that counts for it.
//! Never prints: notes on ignored options go to the caller's `say`.

use std::path::PathBuf;

use clap::Args;

use crate::engine::llamacpp::{GgufCounter, KvType, LlamaCppEngine, LlamaCppOptions, LlamaCppTokenizer};
#[cfg(feature = "mistralrs")]
use crate::engine::mistralrs::{Isq, MistralRsEngine, MistralRsOptions};
use crate::engine::openai::{OpenAiEngine, OpenAiOptions};
use crate::engine::{threads, Engine, EngineError};
use crate::kv::disk::DiskTier;
use crate::kv::documents::KvReuse;
use crate::model::store::{self, ModelError};

/// Why an engine could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("{what}: {error}")]
    Engine { what: &'static str, error: EngineError },
    #[error("--engine openai needs at least one --endpoint URL (for example --endpoint http://localhost:8000/v1)")]
    NoEndpoint,
    #[error("--api-key-env {0}: not set")]
    ApiKeyUnset(String),
    #[error("--engine mistralrs: this scout was built without mistral.rs; build it with `cargo build --release --features mistralrs` (the default build has llamacpp and openai)")]
    NotBuilt,
}

impl OpenError {
    fn engine(what: &'static str, error: EngineError) -> Self {
        Self::Engine { what, error }
    }
}

/// Which engine runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EngineKind {
    /// llama.cpp in this process, on a GGUF file.
    Llamacpp,
    /// Any OpenAI-compatible server (vLLM, SGLang, llama-server, Ollama, ...), with --endpoint.
    Openai,
    /// mistral.rs in this process, on a Hugging Face model folder (Llama 4 Scout:
    /// config.json, tokenizer.json, safetensors) quantized while loading (--isq), or a GGUF.
    /// Needs a scout built with `--features mistralrs`.
    Mistralrs,
}

/// Which model, and how to run it; shared by every command that needs one.
#[derive(Debug, Args, Clone)]
pub struct ModelArgs {
    /// A GGUF model file (llamacpp, mistralrs), a Hugging Face model folder (mistralrs),
    /// or the served model's name (openai; default: the first the server lists).
    /// Default: SmolLM2-135M-Instruct, fetched on first use.
    #[arg(long, value_name = "FILE.gguf|DIR|NAME", env = "SCOUT_MODEL")]
    pub model: Option<PathBuf>,
    /// The engine that answers.
    #[arg(long, value_enum, default_value_t = EngineKind::Llamacpp, env = "SCOUT_ENGINE")]
    pub engine: EngineKind,
    /// An OpenAI-compatible server's address (with --engine openai), such as
    /// `http://gpu-box:8000/v1`.
    /// Repeat for several: each request goes to the least-loaded one that is up, and
    /// a request that fails moves to another.
    #[arg(long, value_name = "URL")]
    pub endpoint: Vec<String>,
    /// With --engine openai: requests each server is given at once (a sweep's windows
    /// go out together). Default: what the server reports (llama-server's slots,
    /// SGLang's running requests), else 4. Give vLLM about its --max-num-seqs.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub slots: Option<u32>,
    /// The environment variable that holds the servers' API key (sent as a bearer
    /// token), such as `OPENAI_API_KEY`.
    #[arg(long, value_name = "VAR")]
    pub api_key_env: Option<String>,
    /// With --engine openai: a GGUF whose vocabulary counts tokens (the served model's
    /// makes counts exact). Default: the default model's, and counts are estimates with
    /// 10% of the context held back.
    #[arg(long, value_name = "FILE.gguf")]
    pub tokenizer: Option<PathBuf>,
    /// Inference threads. Default: the cores idle right now (llama.cpp slows down
    /// sharply when its threads compete with other work).
    #[arg(long, env = "SCOUT_THREADS")]
    pub threads: Option<u32>,
    /// Context tokens to use at most (default: the model's trained context).
    #[arg(long, value_name = "TOKENS")]
    pub context: Option<u32>,
    /// mistralrs, model folders: quantize the weights while loading (in-situ
    /// quantization). q4k fits Llama 4 Scout in about 61 GB.
    #[cfg(feature = "mistralrs")]
    #[arg(long, value_enum, default_value_t = Isq::Q4k)]
    pub isq: Isq,
    /// mistralrs, Llama 4: allow a context past `attention_chunk_size` (8,192 for Scout).
    /// Risky: mistral.rs 0.8.1 applies the chunk mask only while reading the prompt, so
    /// tokens decoded past the chunk attend to the whole context and answers depart
    /// from the reference model. Without it scout reads longer corpora in windows.
    #[cfg(feature = "mistralrs")]
    #[arg(long)]
    pub past_attention_chunk: bool,
    /// openai: the served model reads images (Llama 4 Scout on vLLM or SGLang, say).
    /// Images in the corpus (image files, scanned PDF pages) are then sent as data URLs
    /// where they stand, beside their OCR text, and budgeted at Llama 4's cost: 144
    /// tokens per 336 px tile, up to 16 tiles plus a global one. Without it the server
    /// gets the OCR text only. (mistralrs reads images when the model folder is a Llama
    /// 4 with its vision tower; llamacpp with --mmproj.)
    #[arg(long)]
    pub vision: bool,
    /// llamacpp: the vision model's multimodal projector, the `mmproj` GGUF that comes
    /// with its GGUF (Llama 4 Scout's, Gemma 3's, Qwen-VL's...). Images in the corpus
    /// (image files, scanned PDF pages) are then read where they stand, beside their
    /// OCR text, at what the projector makes of them.
    #[arg(long, value_name = "GGUF")]
    pub mmproj: Option<PathBuf>,
}

/// How the llamacpp engine runs a model (for commands that run one).
#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    /// llamacpp: model layers to put on the GPU (a build with `--features cuda`);
    /// 0 keeps the model on the CPU, 999 puts all of it on the GPU.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub n_gpu_layers: u32,
    /// llamacpp: how the KV cache is stored. q8_0 halves its memory at almost no
    /// quality cost; q4_0 quarters it (both turn on flash attention).
    #[arg(long, value_enum, default_value_t = KvType::F16)]
    pub kv_type: KvType,
    /// llamacpp: keep the KV cache in host memory while weights are on the GPU, for
    /// contexts larger than GPU memory holds.
    #[arg(long)]
    pub kv_on_host: bool,
    /// llamacpp: do not keep the corpus's KV. By default the KV of everything before the
    /// question is kept in memory for later requests in this process (--kv-host-gib) and
    /// saved in the cache folder (--kv-disk-gib; least recently used out of both), and a
    /// later question over the same corpus and model reuses it instead of reading the
    /// corpus again.
    #[arg(long)]
    pub no_kv_cache: bool,
    /// llamacpp: memory for corpora's KV kept between requests in this process, in GiB.
    /// A corpus whose KV is larger is not kept in memory (Llama 4 Scout: about 0.19 MB
    /// per token at f16, so 128k tokens take 24 GiB; `scout plan` says). `serve` and
    /// `batch` also keep up to this much in live contexts, where a follow-up over the
    /// same corpus reads only its question.
    #[arg(long, value_name = "GIB", default_value_t = crate::limits::KV_HOST_BYTES as f64 / GIB)]
    pub kv_host_gib: f64,
    /// llamacpp: disk space for corpora's KV saved in the cache folder, in GiB [default:
    /// a quarter of the free space there, at most 256 GiB]. Least recently used corpora
    /// go first, each corpus's windows together; a corpus whose KV does not all fit
    /// keeps its first windows, and the plan before a sweep says so (and whether
    /// --kv-type q8_0 would fit).
    #[arg(long, value_name = "GIB")]
    pub kv_disk_gib: Option<f64>,
    /// llamacpp: during a long read of the corpus, save its KV so far at least this
    /// often (seconds; 0 after every batch of tokens), so an interrupted read resumes
    /// where it stopped. A later prompt that shares the start of this one (a corpus
    /// with its last files changed) also reuses the saved blocks of 512 tokens.
    #[arg(long, value_name = "SECONDS", default_value_t = crate::limits::KV_CHECKPOINT_SECONDS)]
    pub kv_checkpoint: u64,
    /// llamacpp: how the stored KV of a corpus that changed since is reused. `prefix`
    /// (the default) reuses its blocks of 512 tokens before the first change, and the
    /// answer is the one a full read gives. `documents` keeps it to the first changed
    /// token, moves the KV of the unchanged text after the change to where it now stands
    /// (wherever the files moved to) and reads only what changed: an edit in the middle of
    /// a large corpus costs about the edit. The moved text attended to the old text
    /// when it was read, so answers can differ from a full read's (--kv-recompute repairs
    /// part of that; BENCHMARKS.md has the measured cost and quality).
    #[arg(long, value_enum, default_value_t = KvReuse::Prefix)]
    pub kv_reuse: KvReuse,
    /// llamacpp, with --kv-reuse documents: the share of each moved run of unchanged text
    /// whose first tokens are read again, in percent (0: none, 100: everything after the
    /// first change, which is a full read of it).
    #[arg(long, value_name = "PERCENT", default_value_t = crate::limits::KV_RECOMPUTE * 100.0, value_parser = percent)]
    pub kv_recompute: f64,
    /// Keep contexts alive between requests (set by `serve` and `batch`, whose
    /// follow-ups then read only their question), under --kv-host-gib.
    #[arg(skip)]
    pub resident_contexts: bool,
}

pub const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// `gib` GiB in bytes (negative and NaN: none).
#[must_use]
pub fn gib_bytes(gib: f64) -> u64 {
    (gib.max(0.0) * GIB) as u64
}

pub fn engine_options(m: &ModelArgs, run: &RunArgs) -> LlamaCppOptions {
    LlamaCppOptions {
        threads: m.threads.unwrap_or_else(threads::free_cores).max(1),
        context: m.context,
        gpu_layers: run.n_gpu_layers,
        kv_type: run.kv_type,
        kv_on_host: run.kv_on_host,
        kv_disk: (!run.no_kv_cache).then(|| DiskTier::sized(store::kv_dir(), run.kv_disk_gib.map(gib_bytes))),
        kv_host_bytes: if run.no_kv_cache { 0 } else { gib_bytes(run.kv_host_gib) },
        kv_checkpoint: Some(std::time::Duration::from_secs(run.kv_checkpoint)),
        decode_forks_together: run.n_gpu_layers > 0,
        mmproj: m.mmproj.clone(),
        resident_bytes: if run.no_kv_cache || !run.resident_contexts {
            0
        } else {
            gib_bytes(run.kv_host_gib)
        },
        kv_reuse: run.kv_reuse,
        kv_recompute: run.kv_recompute / 100.0,
    }
}

/// A percentage from 0 to 100.
fn percent(text: &str) -> Result<f64, String> {
    match text.trim_end_matches('%').parse::<f64>() {
        Ok(p) if (0.0..=100.0).contains(&p) => Ok(p),
        _ => Err(format!("{text:?} is not a percentage from 0 to 100")),
    }
}

impl ModelArgs {
    /// The GGUF whose vocabulary counts tokens: the model itself for
    /// llamacpp; `--tokenizer` or the default model for openai.
    pub fn tokenizer_path(&self, say: &mut dyn FnMut(&str)) -> Result<PathBuf, OpenError> {
        Ok(match self.engine {
            EngineKind::Llamacpp => store::resolve(self.model.as_deref(), say)?,
            EngineKind::Openai => store::resolve(self.tokenizer.as_deref(), say)?,
            #[cfg(feature = "mistralrs")]
            EngineKind::Mistralrs => match &self.model {
                Some(dir) if dir.is_dir() => dir.clone(),
                other => store::resolve(other.as_deref(), say)?,
            },
            #[cfg(not(feature = "mistralrs"))]
            EngineKind::Mistralrs => return Err(OpenError::NotBuilt),
        })
    }

    /// The tokenizer that counts for this model, without its weights: a
    /// GGUF's vocabulary, or a model folder's tokenizer.json.
    pub fn tokenizer(
        &self,
        say: &mut dyn FnMut(&str),
    ) -> Result<(Box<dyn crate::prompt::Tokenizer + Send + Sync>, PathBuf), OpenError> {
        load_tokenizer(self.tokenizer_path(say)?)
    }

    /// Loads or connects to the engine; returns it with a line saying what
    /// it is.
    pub fn engine(&self, run: &RunArgs, say: &mut dyn FnMut(&str)) -> Result<(Box<dyn Engine>, String), OpenError> {
        if self.vision && self.engine != EngineKind::Openai {
            say("scout: --vision applies to --engine openai only; mistralrs reads images when the model folder is a Llama 4 with its vision tower, llamacpp with --mmproj");
        }
        if self.mmproj.is_some() && self.engine != EngineKind::Llamacpp {
            say("scout: --mmproj applies to --engine llamacpp only; this engine reads its images its own way");
        }
        match self.engine {
            EngineKind::Llamacpp => {
                let path = store::resolve(self.model.as_deref(), say)?;
                let options = engine_options(self, run);
                if options.gpu_layers > 0 && !cfg!(feature = "cuda") {
                    say("scout: --n-gpu-layers has no effect: this scout was built without a GPU backend (cargo build --release --features cuda)");
                }
                let threads = options.threads;
                let engine =
                    LlamaCppEngine::load(&path, options).map_err(|e| OpenError::engine("loading the model", e))?;
                let line = format!(
                    "{} (llamacpp, {} thread{}, context {}{})",
                    path.file_name()
                        .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
                    threads,
                    if threads == 1 { "" } else { "s" },
                    engine.capabilities().context_length,
                    if engine.capabilities().vision {
                        ", reads images"
                    } else {
                        ""
                    }
                );
                Ok((Box::new(engine), line))
            }
            #[cfg(feature = "mistralrs")]
            EngineKind::Mistralrs => {
                let path = match &self.model {
                    Some(dir) if dir.is_dir() => dir.clone(),
                    other => store::resolve(other.as_deref(), say)?,
                };
                let options = MistralRsOptions {
                    isq: self.isq,
                    context: self.context,
                    past_attention_chunk: self.past_attention_chunk,
                    scratch: store::cache_dir().join("mistralrs"),
                };
                let ignored: Vec<&str> = [
                    (self.threads.is_some(), "--threads"),
                    (run.n_gpu_layers > 0, "--n-gpu-layers"),
                    (run.kv_type != KvType::F16, "--kv-type"),
                    (run.kv_on_host, "--kv-on-host"),
                ]
                .into_iter()
                .filter_map(|(set, flag)| set.then_some(flag))
                .collect();
                if !ignored.is_empty() {
                    say(&format!(
                        "scout: {} {} to the llamacpp engine only; mistral.rs uses every core, maps devices itself and keeps its KV in the model's activation type",
                        ignored.join(", "),
                        if ignored.len() == 1 { "applies" } else { "apply" }
                    ));
                }
                say(&format!("scout: loading {} with mistral.rs", path.display()));
                let engine =
                    MistralRsEngine::load(&path, &options).map_err(|e| OpenError::engine("loading the model", e))?;
                let line = engine.description().to_owned();
                Ok((Box::new(engine), line))
            }
            #[cfg(not(feature = "mistralrs"))]
            EngineKind::Mistralrs => Err(OpenError::NotBuilt),
            EngineKind::Openai => {
                if self.endpoint.is_empty() {
                    return Err(OpenError::NoEndpoint);
                }
                let api_key = match &self.api_key_env {
                    Some(var) => Some(std::env::var(var).map_err(|_| OpenError::ApiKeyUnset(var.clone()))?),
                    None => None,
                };
                let exact = self.tokenizer.is_some();
                let tok_path = self.tokenizer_path(say)?;
                let tokenizer =
                    LlamaCppTokenizer::load(&tok_path).map_err(|e| OpenError::engine("loading the tokenizer", e))?;
                let options = OpenAiOptions {
                    endpoints: self.endpoint.clone(),
                    model: self.model.as_ref().map(|m| m.to_string_lossy().into_owned()),
                    api_key,
                    context: self.context,
                    vision: self.vision,
                    slots: self.slots,
                    ..OpenAiOptions::default()
                };
                let engine = OpenAiEngine::connect(options, Box::new(tokenizer), exact)
                    .map_err(|e| OpenError::engine("connecting to the OpenAI-compatible endpoints", e))?;
                let line = format!(
                    "{} at {} (openai, context {}{}, token counts {})",
                    engine.model(),
                    engine
                        .endpoints()
                        .iter()
                        .map(|e| {
                            let n = e.slots();
                            format!(
                                "{} ({n} slot{} from {})",
                                e.url,
                                if n == 1 { "" } else { "s" },
                                e.slots_from()
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(", "),
                    engine.capabilities().context_length,
                    if self.vision { ", reads images" } else { "" },
                    if exact {
                        "from --tokenizer".to_owned()
                    } else {
                        format!(
                            "estimated with {} (--tokenizer for exact ones)",
                            tok_path
                                .file_name()
                                .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
                        )
                    }
                );
                Ok((Box::new(engine), line))
            }
        }
    }
}

/// The tokenizer at `path` without the model's weights: a GGUF's
/// vocabulary, or a model folder's tokenizer.json (mistralrs builds).
pub fn load_tokenizer(path: PathBuf) -> Result<(Box<dyn crate::prompt::Tokenizer + Send + Sync>, PathBuf), OpenError> {
    #[cfg(feature = "mistralrs")]
    if path.is_dir() {
        return Ok((
            crate::engine::mistralrs::folder_tokenizer(&path)
                .map_err(|e| OpenError::engine("loading the tokenizer", e))?,
            path,
        ));
    }
    let counter = GgufCounter::load(&path, &store::cache_dir().join("counters"))
        .map_err(|e| OpenError::engine("loading the tokenizer", e))?;
    Ok((Box::new(counter), path))
}
