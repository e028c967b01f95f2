//! Sequence 0 of a llama.cpp context as the KV-cache manager sees it
//! ([`SequenceKv`]): its KV copied out or in, saved to a state file or read
//! back, cut at a position; and scout's token ids to llama.cpp's and back.
//!
//! Never decides what to keep or restore: that is `kv::prefix`'s policy.

use std::path::Path;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::{LlamaStateSeqFlags, SeqState};

use crate::kv::prefix::SequenceKv;

/// Sequence 0 of a context, as the KV-cache manager sees it.
pub(super) struct Sequence0<'a, 'm>(pub(super) &'a mut LlamaContext<'m>);

pub(super) fn llama_tokens(tokens: &[u32]) -> Vec<LlamaToken> {
    tokens.iter().map(|&t| LlamaToken(t as i32)).collect()
}

pub(super) fn token_ids(tokens: &[LlamaToken]) -> Vec<u32> {
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
