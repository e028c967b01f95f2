//! Images for the llamacpp engine through llama.cpp's multimodal projector
//! (`mtmd`, the `--mmproj` GGUF that goes with a vision model's GGUF).
//!
//! scout tokenizes a prompt's text itself (documents stay plain text); an
//! image becomes a stand-in span of as many tokens as the projector makes
//! of it, with ids derived from the image's bytes. The span keeps every
//! prefix-cache key exact (another image is another key) and is replaced
//! by the projector's own chunks when the prompt is read into the model.
//!
//! Never hands the prompt's text to `mtmd_tokenize` (which parses special
//! tokens in documents).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::mtmd::{
    mtmd_default_marker, MtmdBitmap, MtmdContext, MtmdContextParams, MtmdInputChunks, MtmdInputText,
};
use llama_cpp_2::token::LlamaToken;

use crate::engine::{EngineError, PromptImage};

/// A vision model's projector, loaded beside its text model.
pub(crate) struct Vision {
    ctx: MtmdContext,
    /// Tokens an image of each upright size takes (what the projector's
    /// preprocessing makes of it depends on the size alone).
    sizes: Mutex<HashMap<(u32, u32), u32>>,
    /// The projector file's name and size, for cache keys.
    pub(crate) id: String,
}

impl std::fmt::Debug for Vision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vision").field("id", &self.id).finish_non_exhaustive()
    }
}

impl Vision {
    /// Loads the projector at `path` for `model`; refuses one that cannot
    /// read images (an audio projector) or does not fit the model.
    pub(crate) fn load(path: &Path, model: &LlamaModel, threads: u32, use_gpu: bool) -> Result<Self, EngineError> {
        let err = |detail: String| EngineError::Load {
            path: path.display().to_string(),
            detail,
        };
        if !path.is_file() {
            return Err(err("no such file".into()));
        }
        let params = MtmdContextParams {
            use_gpu,
            print_timings: false,
            n_threads: threads.max(1) as i32,
            ..MtmdContextParams::default()
        };
        let utf8 = path
            .to_str()
            .ok_or_else(|| err("the path is not UTF-8, which llama.cpp needs".into()))?;
        let ctx = MtmdContext::init_from_file(utf8, model, &params).map_err(|e| {
            err(format!(
                "llama.cpp could not load it as a multimodal projector for this model ({e}): is it the mmproj GGUF made with this model?"
            ))
        })?;
        if !ctx.support_vision() {
            return Err(err("this projector reads no images (an audio projector?)".into()));
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let size = std::fs::metadata(path).map_or(0, |m| m.len());
        Ok(Self {
            ctx,
            sizes: Mutex::new(HashMap::new()),
            id: format!("{name}-{size}"),
        })
    }

    /// The projector's chunks for `bitmap`: its image tokens and the text
    /// tokens around them (Llama 4's `<|image_start|>` .. `<|image_end|>`).
    fn chunks(&self, bitmap: &MtmdBitmap) -> Result<MtmdInputChunks, EngineError> {
        let text = MtmdInputText {
            text: mtmd_default_marker().to_owned(),
            add_special: false,
            parse_special: true,
        };
        self.ctx
            .tokenize(text, &[bitmap])
            .map_err(|e| EngineError::Inference(format!("the projector could not read an image: {e}")))
    }

    /// Tokens an image of this upright size takes: counted by the
    /// projector itself on a blank image of that size, once per size.
    pub(crate) fn tokens(&self, width: u32, height: u32) -> Result<u32, EngineError> {
        let mut sizes = self.sizes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(&n) = sizes.get(&(width, height)) {
            return Ok(n);
        }
        let pixels = (u64::from(width) * u64::from(height)).min(crate::limits::MAX_SCAN_PIXELS);
        if width == 0 || height == 0 || pixels < u64::from(width) * u64::from(height) {
            return Err(EngineError::Unsupported(format!(
                "read an image of {width} x {height} pixels"
            )));
        }
        let blank = vec![0u8; pixels as usize * 3];
        let bitmap = MtmdBitmap::from_image_data(width, height, &blank)
            .map_err(|e| EngineError::Inference(format!("an image for the projector: {e}")))?;
        let n = self.chunks(&bitmap)?.total_tokens() as u32;
        sizes.insert((width, height), n);
        Ok(n)
    }

    /// Reads `image` (upright, as scout measured it) into sequence `seq` at
    /// position `at`, where its span of `len` tokens stands.
    fn read(
        &mut self,
        ctx: &mut LlamaContext<'_>,
        image: &PromptImage,
        at: usize,
        len: usize,
        seq: i32,
    ) -> Result<(), EngineError> {
        let bad = |why: String| EngineError::Inference(format!("the image {}: {why}", image.label));
        let opened =
            crate::ingest::image::open(&image.bytes, crate::limits::MAX_SCAN_PIXELS).map_err(|e| bad(e.to_string()))?;
        let rgb = crate::ingest::image::decode(&image.bytes, &opened)
            .map_err(|e| bad(e.to_string()))?
            .to_rgb8();
        let bitmap =
            MtmdBitmap::from_image_data(rgb.width(), rgb.height(), rgb.as_raw()).map_err(|e| bad(e.to_string()))?;
        let chunks = self.chunks(&bitmap)?;
        if chunks.total_tokens() != len {
            return Err(bad(format!(
                "the projector made {} tokens of it where {len} were counted ({} x {} pixels decoded, {} x {} expected)",
                chunks.total_tokens(),
                rgb.width(),
                rgb.height(),
                image.width,
                image.height
            )));
        }
        chunks
            .eval_chunks(&mut self.ctx, ctx, at as i32, seq, super::PREFILL_BATCH as i32, false)
            .map_err(|e| bad(format!("the projector or the model failed on it: {e}")))?;
        Ok(())
    }
}

/// Where an image stands in a prompt's tokens.
#[derive(Debug, Clone)]
pub(crate) struct ImageSpan {
    pub(crate) start: usize,
    pub(crate) len: usize,
    pub(crate) image: Arc<PromptImage>,
}

/// A prompt as the llamacpp engine reads it: tokens (each image a
/// stand-in span), the tokens before the last message's content, and
/// where the images stand.
#[derive(Debug, Clone, Default)]
pub(crate) struct Prompt {
    pub(crate) tokens: Vec<LlamaToken>,
    pub(crate) prefix: usize,
    pub(crate) images: Vec<ImageSpan>,
}

/// The stand-in span for an image: `len` ids that no vocabulary has
/// (negative), drawn from a hash of its bytes, so two prompts share a
/// span's KV only when they hold the same image there.
pub(crate) fn span_tokens(image: &PromptImage, len: usize, out: &mut Vec<LlamaToken>) {
    let hash = blake3::hash(&image.bytes);
    let words: Vec<i32> = hash
        .as_bytes()
        .chunks_exact(4)
        .map(|w| -1 - (u32::from_le_bytes([w[0], w[1], w[2], w[3]]) >> 1) as i32)
        .collect();
    out.extend((0..len).map(|i| LlamaToken(words[i % words.len()])));
}

impl Prompt {
    /// The image whose span starts at token `at`.
    fn image_at(&self, at: usize) -> Option<&ImageSpan> {
        self.images.iter().find(|s| s.start == at)
    }

    /// Where the first image at or after `at` starts (the prompt's end
    /// when none does).
    fn next_image(&self, at: usize) -> usize {
        self.images
            .iter()
            .map(|s| s.start)
            .find(|&s| s >= at)
            .unwrap_or(self.tokens.len())
    }

    /// `at`, or the start of the image whose span it falls inside: KV
    /// reused from another prompt can end in the middle of an image, and
    /// an image is read whole.
    pub(crate) fn unsplit(&self, at: usize) -> usize {
        self.images
            .iter()
            .find(|s| s.start < at && at < s.start + s.len)
            .map_or(at, |s| s.start)
    }

    /// Reads the prompt from token `done` into sequence `seq`: the image
    /// whose span starts there, whole, or text up to `limit` (and never
    /// past the next image); asks for logits at the prompt's last token.
    /// Returns where it stopped.
    pub(crate) fn read(
        &self,
        ctx: &mut LlamaContext<'_>,
        vision: Option<&mut Vision>,
        batch: &mut LlamaBatch,
        done: usize,
        limit: usize,
        seq: i32,
    ) -> Result<usize, EngineError> {
        if let Some(span) = self.image_at(done) {
            let vision = vision.ok_or_else(|| crate::engine::no_vision(&span.image))?;
            if span.start + span.len >= self.tokens.len() {
                return Err(EngineError::Template(
                    "the prompt ends with an image; the model needs text after it".into(),
                ));
            }
            vision.read(ctx, &span.image, span.start, span.len, seq)?;
            return Ok(span.start + span.len);
        }
        let end = limit.min(self.next_image(done)).min(self.tokens.len());
        batch.clear();
        for (j, &tok) in self.tokens[done..end].iter().enumerate() {
            let pos = done + j;
            batch
                .add(tok, pos as i32, &[seq], pos + 1 == self.tokens.len())
                .map_err(|e| EngineError::Inference(e.to_string()))?;
        }
        ctx.decode(batch)
            .map_err(|e| EngineError::Inference(format!("prefill: {e}")))?;
        Ok(end)
    }

    /// The prompt as text, special tokens written out and each image as
    /// `[image LABEL: N tokens]`.
    pub(crate) fn render(&self, model: &LlamaModel) -> String {
        let mut out = String::new();
        let mut at = 0;
        for span in &self.images {
            out.push_str(&String::from_utf8_lossy(&model.vocab().detokenize(
                &self.tokens[at..span.start],
                false,
                true,
            )));
            let _ = write!(out, "[image {}: {} tokens]", span.image.label, span.len);
            at = span.start + span.len;
        }
        out.push_str(&String::from_utf8_lossy(&model.vocab().detokenize(
            &self.tokens[at..],
            false,
            true,
        )));
        out
    }
}
