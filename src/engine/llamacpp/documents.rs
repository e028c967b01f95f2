//! Document-granular reuse on a llama.cpp context (`--kv-reuse documents`):
//! a stored state of the corpus before a change, loaded whole into sequence
//! 0, is laid out as the new prefix by `kv::documents`'s steps. Sequences 1
//! and 2 of a unified KV cache are scratch: the stored cells after the
//! first change wait in sequence 1; a run to move goes through sequence 2
//! alone, is shifted there (llama.cpp re-rotates its keys at the next
//! decode) and joins sequence 0; changed text is read into sequence 0 at
//! its place. Positions only ever grow in sequence 0, as llama.cpp requires.
//!
//! Never decides what to move: `kv::documents` does; this runs the steps.

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;

use super::mtmd::Prompt;
use super::sequence::Sequence0;
use super::{EngineError, EngineEvent, GenerateParams, KvUse, LlamaCppEngine, PREFILL_BATCH};
use crate::kv::documents::{rearrange, Step};
use crate::kv::prefix::SequenceKv;

/// Sequences a context for document reuse has: the prompt's, where the
/// stored cells wait, and where a run is shifted alone.
pub(super) const SEQUENCES: u32 = 3;
const WAITING: i32 = 1;
const MOVING: i32 = 2;

/// Whether llama.cpp can move this model's cached keys to new positions.
/// It aborts the process on a shift it cannot apply, so anything unsure is
/// left to prefix reuse: positions in several dimensions (M-RoPE), sliding
/// window caches (two caches of different sizes, as Llama 4 and Gemma
/// have), recurrent state (which is not per position), and Step-3.5's
/// per-layer rotary dimensions.
pub(super) fn can_shift(model: &LlamaModel) -> bool {
    let Ok(arch) = model.meta_val_str("general.architecture") else {
        return false;
    };
    let has = |key: &str| model.meta_val_str(&format!("{arch}.{key}")).is_ok();
    !(arch.starts_with("step35")
        || arch.starts_with("rwkv")
        || arch.contains("mamba")
        || has("rope.dimension_sections")
        || has("attention.sliding_window")
        || has("attention.sliding_window_pattern")
        || has("ssm.conv_kernel")
        || has("wkv.head_size")
        || has("shortconv.l_cache"))
}

/// The counts of a prefix laid out of another state, for [`KvUse`].
pub(super) struct Laid {
    /// Tokens of the prefix sequence 0 holds (the whole prefix when
    /// anything moved; else the stored state's tokens up to the first
    /// change, the rest to be read as usual).
    pub done: usize,
    pub kept: usize,
    pub shifted: usize,
    pub recomputed: usize,
    pub prefilled: usize,
}

impl LlamaCppEngine {
    /// Lays `prefix` out of the state sequence 0 holds (`old`'s tokens):
    /// the tokens up to the first difference kept, unchanged runs after it
    /// moved, the rest read. When nothing would move, only cuts the state
    /// after the common tokens.
    pub(super) fn lay_out(
        &mut self,
        ctx: &mut LlamaContext<'_>,
        read: &Prompt,
        old: &[u32],
        prefix: &[u32],
        params: &GenerateParams,
        on_event: &mut dyn FnMut(EngineEvent<'_>),
    ) -> Result<Laid, EngineError> {
        let fail = |what: &str, e: &dyn std::fmt::Display| EngineError::Inference(format!("{what}: {e}"));
        let plan = rearrange(old, prefix, self.options.kv_recompute);
        let kept = plan.kept as u32;
        if plan.moves() {
            // The stored cells after the first change wait in their own
            // sequence while sequence 0 is laid out.
            ctx.copy_kv_cache_seq(0, WAITING, Some(kept), None)
                .map_err(|e| fail("setting stored KV aside", &e))?;
        }
        ctx.clear_kv_cache_seq(Some(0), Some(kept), None)
            .map_err(|e| fail("cutting a stored state at the first change", &e))?;
        let laid = Laid {
            done: if plan.moves() { prefix.len() } else { plan.kept },
            kept: plan.kept,
            shifted: plan.shifted(),
            recomputed: plan.recomputed(),
            prefilled: plan.prefilled(),
        };
        if !plan.moves() {
            // Nothing to move: the state is cut at the first change, and the
            // rest read (and counted) as any prefill.
            return Ok(Laid {
                recomputed: 0,
                prefilled: 0,
                ..laid
            });
        }
        let total = read.tokens.len() as u32;
        let mut batch = LlamaBatch::new(PREFILL_BATCH, 1);
        for step in &plan.steps {
            params.cancel.check()?;
            match step {
                Step::Read { tokens, .. } => {
                    let mut at = tokens.start;
                    while at < tokens.end {
                        params.cancel.check()?;
                        let limit = (at + PREFILL_BATCH).min(tokens.end);
                        at = read.read(ctx, self.vision.as_mut(), &mut batch, at, limit, 0)?;
                        on_event(EngineEvent::Prefill { done: at as u32, total });
                    }
                }
                Step::Move { from, to, len } => {
                    let (from, end) = (*from as u32, (*from + *len) as u32);
                    let delta = *to as i64 - i64::from(from);
                    let delta = i32::try_from(delta).map_err(|e| fail("moving stored KV", &e))?;
                    ctx.copy_kv_cache_seq(WAITING, MOVING, Some(from), Some(end))
                        .and_then(|()| {
                            ctx.clear_kv_cache_seq(Some(WAITING as u32), Some(from), Some(end))
                                .map(drop)
                        })
                        .and_then(|()| ctx.kv_cache_seq_add(MOVING, None, None, delta))
                        .and_then(|()| ctx.copy_kv_cache_seq(MOVING, 0, None, None))
                        .and_then(|()| ctx.clear_kv_cache_seq(Some(MOVING as u32), None, None).map(drop))
                        .map_err(|e| fail("moving stored KV", &e))?;
                }
            }
        }
        ctx.clear_kv_cache_seq(Some(WAITING as u32), None, None)
            .map_err(|e| fail("dropping stored KV not reused", &e))?;
        // Laid out, the cells sit out of order with holes between them, and
        // attention sums them in that order: close to, but not the same
        // numbers as, the state saved and restored later in order. Read back
        // in order now, this answer is the one every later question over
        // the saved state gets.
        let mut seq = Sequence0(ctx);
        let (state, _) = seq.state().map_err(|e| fail("copying the laid-out KV", &e))?;
        seq.clear();
        seq.set_state(&state)
            .map_err(|e| fail("reading the laid-out KV back in order", &e))?;
        Ok(laid)
    }
}

impl Laid {
    /// Records where the prefix's tokens came from: the kept ones from
    /// memory or disk as the stored state did.
    pub(super) fn count(&self, from_memory: bool, kv: &mut KvUse) {
        if from_memory {
            kv.reused_tokens = self.kept as u32;
        } else {
            kv.restored_tokens = self.kept as u32;
        }
        kv.shifted_tokens = self.shifted as u32;
        kv.recomputed_tokens = self.recomputed as u32;
        kv.prefilled_tokens += self.prefilled as u32;
    }
}
