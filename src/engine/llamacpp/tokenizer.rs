//! Token counts with a GGUF's vocabulary: [`LlamaCppTokenizer`] (llama.cpp's
//! vocabulary, with the fast exact counter where it covers the vocabulary)
//! and [`GgufCounter`] (the same counts, starting in a millisecond from a
//! cache file, loading llama.cpp's vocabulary only when text needs it).
//!
//! Never loads weights or decodes.

use std::path::Path;
use std::sync::OnceLock;

use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatTemplate, LlamaModel};
use llama_cpp_2::token::LlamaToken;

use super::template::{chat_tokens, template_of, trims_content};
use super::{load, ChatMessage, EngineError, Tokenizer};
use crate::engine::bpe::ByteBpe;

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

/// A hash of the vocabulary (every token's bytes, in id order): two models
/// with the same id here tokenize alike.
pub(super) fn vocab_hash(model: &LlamaModel) -> String {
    let mut h = blake3::Hasher::new();
    for (_, bytes) in model.tokens(true) {
        h.update(&(bytes.len() as u32).to_le_bytes());
        h.update(&bytes);
    }
    h.finalize().to_hex()[..16].to_owned()
}

pub(super) fn count_plain(model: &LlamaModel, text: &str) -> u32 {
    model.vocab().tokenize(text.as_bytes(), false, false).len() as u32
}

/// The fast exact counter for the GGUF at `path`, when its vocabulary
/// has one; `SCOUT_TOKENIZER=llamacpp` turns it off (to compare).
pub(super) fn fast_counter(path: &Path) -> Option<ByteBpe> {
    if std::env::var("SCOUT_TOKENIZER").is_ok_and(|v| v == "llamacpp") {
        return None;
    }
    ByteBpe::from_gguf(path)
}

pub(super) fn count(model: &LlamaModel, fast: Option<&ByteBpe>, text: &str) -> u32 {
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
pub(super) const COUNTER_MAGIC: &[u8] = b"scout-counter\x001";

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
pub(super) fn write_atomically(file: &Path, bytes: &[u8]) -> std::io::Result<()> {
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
