//! One answer being decoded: its sampler chain (a JSON schema's grammar
//! first, a repeat penalty, greedy or seeded sampling), the text so far in
//! whole UTF-8 characters with stop sequences held back, and why it ended.
//!
//! Never reads the prompt: the caller decodes, this samples and shows.

use std::time::Instant;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;

use super::{EngineError, GenerateParams, Generation, KvUse, StopFilter, StopReason};

/// A schema as a grammar (llama.cpp's own converter), made before any work
/// so an unsupported schema fails at once.
pub(super) fn grammar_of(params: &GenerateParams) -> Result<Option<String>, EngineError> {
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
pub(super) struct Answer {
    sampler: LlamaSampler,
    filter: StopFilter,
    /// Bytes of an incomplete trailing character.
    pending: Vec<u8>,
    piece: Vec<u8>,
    produced: u32,
    stop: Option<StopReason>,
    started: Instant,
    ttft_ms: Option<u64>,
    first_logprobs: Vec<(u32, f32)>,
}

impl Answer {
    pub(super) fn new(
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
            first_logprobs: Vec::new(),
        })
    }

    /// Samples the next token from the logits at `index`, shows what text
    /// it completes, and returns it to be decoded next; `None` once the
    /// answer has ended (an end token, a stop sequence, the token limit).
    pub(super) fn step(
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
        if self.produced == 0 && params.first_logprobs > 0 && self.first_logprobs.is_empty() {
            self.first_logprobs = top_logprobs(ctx.get_logits_ith(index), params.first_logprobs);
        }
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
    pub(super) fn finish(
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
            first_logprobs: self.first_logprobs,
        }
    }
}

/// The `n` most likely tokens of `logits` with their log-probabilities
/// (a log-softmax over the whole vocabulary), most likely first.
fn top_logprobs(logits: &[f32], n: usize) -> Vec<(u32, f32)> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let log_sum = max + logits.iter().map(|&l| f64::from(l - max).exp()).sum::<f64>().ln() as f32;
    let mut ranked: Vec<(u32, f32)> = logits
        .iter()
        .enumerate()
        .map(|(t, &l)| (t as u32, l - log_sum))
        .collect();
    let n = n.min(ranked.len());
    if n > 0 && n < ranked.len() {
        ranked.select_nth_unstable_by(n - 1, |a, b| b.1.total_cmp(&a.1));
    }
    ranked.truncate(n);
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    ranked
}
