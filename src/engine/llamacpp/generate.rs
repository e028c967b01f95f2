//! Generation: a prompt read into a context (its prefix from the KV-cache
//! manager where it can, the rest prefilled in batches, the prefix saved
//! and checkpointed as it goes) and its answer decoded; and forked
//! questions, which share one prefix and decode side by side.
//!
//! Never decides what KV to keep: `kv::prefix` does; this runs the model.

use std::sync::Arc;
use std::time::Instant;

use llama_cpp_2::context::LlamaContext;

use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::token::LlamaToken;

use super::answer::{grammar_of, Answer};
use super::documents;
use super::mtmd::Prompt;
use super::resident::Resident;
use super::sequence::{token_ids, Sequence0};
use super::{
    backend, ChatMessage, EngineError, EngineEvent, GenerateParams, Generation, KvUse, LlamaCppEngine, PREFILL_BATCH,
};
use crate::kv::documents::KvReuse;
use crate::kv::prefix::PrefixPlan;

/// Follow-ups over a resident context may ask a longer question than the
/// first: a context kept for them gets this many tokens more.
const RESIDENT_HEADROOM: u32 = 512;

/// One request's prompt, as [`LlamaCppEngine::read_and_answer`] reads it.
#[derive(Clone, Copy)]
struct Request<'r> {
    read: &'r Prompt,
    /// The prompt's prefix (everything before the last message), as ids.
    prefix: &'r [u32],
    /// Tokens the context has room for.
    capacity: u32,
    /// The context is a resident one holding the prefix already.
    from_resident: bool,
    /// Lay the prefix out of a stored state of the corpus before a change
    /// (`--kv-reuse documents`); the context has the sequences for it.
    documents: bool,
    grammar: Option<&'r str>,
    started: Instant,
}

impl LlamaCppEngine {
    /// [`Engine::generate_forked`] for prompts that share their first
    /// `shared` tokens: one context with a KV stream per sequence. The
    /// shared prefix goes into sequence 0 (from the host tier, else the
    /// disk tier, else prefilled and then kept in both), is copied into
    /// the others, each sequence reads its own question, and the answers
    /// decode one token of each per batch.
    pub(super) fn forked(
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

    /// [`Engine::generate`]: the prompt's prefix from the KV-cache manager
    /// (whole, or the first blocks of another prompt's), the rest prefilled
    /// (saving the prefix and checkpointing as it goes), then decoded.
    pub(super) fn generate_one(
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
        let mut plan = self.kv.plan(&prefix, 1, true).in_group(params.kv_group.clone());
        self.pin(plan.key.as_deref(), params);
        // A context still holding this prefix from an earlier request
        // (resident contexts: `scout serve`, `scout batch`), else a new one.
        let needed = n_prompt + params.max_tokens;
        let resident_key = plan
            .key
            .clone()
            .filter(|_| self.resident().enabled() && params.keep_prefix);
        let taken = resident_key.as_deref().and_then(|k| self.resident().take(k, needed));
        let from_resident = taken.is_some();
        // Document reuse needs scratch sequences and room for the stored
        // state beside the prompt; a model whose keys cannot move, or a
        // prompt with images, reuses by prefix.
        let documents = !from_resident
            && self.options.kv_reuse == KvReuse::Documents
            && self.can_shift
            && read.images.is_empty()
            && plan.other_state();
        let (mut context, capacity) = if let Some(found) = taken {
            found
        } else {
            // Allocate only the context this request needs (rounded up),
            // not the model's whole trained length; a stored state that
            // holds more tokens than this prompt needs must fit to be
            // loaded; a context kept for follow-ups gets room for a longer
            // question.
            let headroom = if resident_key.is_some() { RESIDENT_HEADROOM } else { 0 };
            let (n_ctx, ctx_params) = if documents {
                // One unified cache: the stored state's cells and the
                // prompt's share it while the prefix is laid out (its
                // positions stay within the prompt).
                let n_ctx = (needed + headroom + plan.context_needed() as u32).div_ceil(256) * 256;
                let params = self
                    .context_params(n_ctx)
                    .with_n_seq_max(documents::SEQUENCES)
                    .with_kv_unified(true);
                (n_ctx, params)
            } else {
                let n_ctx = (needed + headroom).max(plan.context_needed() as u32).div_ceil(256) * 256;
                let n_ctx = n_ctx.min(self.context_length);
                (n_ctx, self.context_params(n_ctx))
            };
            let capacity = n_ctx;
            let backend = backend()?;
            let context = Resident::try_new(Arc::clone(&self.model), |model| {
                model.new_context(backend, ctx_params).map_err(|e| {
                    EngineError::Inference(format!("could not create a context of {capacity} tokens: {e}"))
                })
            })?;
            (context, capacity)
        };
        let request = Request {
            read: &read,
            prefix: &prefix,
            capacity,
            from_resident,
            documents,
            grammar: grammar.as_deref(),
            started,
        };
        let result =
            context.with_dependent_mut(|_, ctx| self.read_and_answer(ctx, &request, &mut plan, params, on_event));
        if let (Ok(_), Some(key)) = (&result, resident_key) {
            let bytes = u64::from(capacity) * self.kv_bytes_per_token();
            self.resident().put(key, context, capacity, bytes, params.pin_prefix);
        }
        result
    }

    /// Reads `request`'s prompt into `ctx` (its prefix from the resident
    /// context, the KV-cache manager's tiers, or prefilled, saving and
    /// checkpointing as it goes) and decodes the answer.
    fn read_and_answer(
        &mut self,
        ctx: &mut LlamaContext<'_>,
        request: &Request<'_>,
        plan: &mut PrefixPlan,
        params: &GenerateParams,
        on_event: &mut dyn FnMut(EngineEvent<'_>),
    ) -> Result<Generation, EngineError> {
        let Request {
            read,
            prefix,
            capacity,
            from_resident,
            documents,
            grammar,
            started,
        } = *request;
        let (prompt, prefix_len) = (&read.tokens[..], read.prefix);
        let n_prompt = prompt.len() as u32;
        let mut kv = KvUse::default();
        let mut done = if from_resident {
            // Sequence 0 holds the prefix, then the last question and
            // answer: cut back to the prefix.
            ctx.clear_kv_cache_seq(Some(0), Some(prefix_len as u32), None)
                .map_err(|e| EngineError::Inference(format!("cutting a resident context back to its prefix: {e}")))?;
            kv.reused_tokens = prefix_len as u32;
            kv.resident_tokens = prefix_len as u32;
            prefix_len
        } else if let Some((old, from_memory)) = documents
            .then(|| self.kv.restore_other(plan, &mut Sequence0(ctx), capacity as usize))
            .flatten()
        {
            let laid = self.lay_out(ctx, read, &old, prefix, params, on_event)?;
            laid.count(from_memory, &mut kv);
            if laid.done == prefix_len && plan.keeps() && params.keep_prefix {
                self.kv.keep(plan, &Sequence0(ctx), prefix, &mut kv);
            }
            laid.done
        } else {
            self.kv
                .restore(plan, &mut Sequence0(ctx), prefix, capacity as usize, &mut kv)
        };
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
        let keep_prefix = plan.keeps() && params.keep_prefix && done < prefix_len;
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
            let end = read.read(ctx, self.vision.as_mut(), &mut batch, done, limit, 0)?;
            kv.prefilled_tokens += (end - done) as u32;
            done = end;
            if keep_prefix && done < prefix_len {
                self.kv.checkpoint(plan, &Sequence0(ctx), &prefix[..done]);
            }
            if done == prefix_len && keep_prefix {
                self.kv.keep(plan, &Sequence0(ctx), prefix, &mut kv);
            }
            on_event(EngineEvent::Prefill {
                done: done as u32,
                total: n_prompt,
            });
        }
        let prefill_ms = started.elapsed().as_millis() as u64;

        let mut answer = Answer::new(&self.model, grammar, params, started)?;
        let decode_start = Instant::now();
        let mut pos = prompt.len() as i32;
        let mut logits_index = batch.n_tokens() - 1;
        while let Some(token) = answer.step(&self.model, ctx, logits_index, params, &mut |t| {
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
