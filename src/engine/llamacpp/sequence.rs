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
    fn save(&self, path: &Path, tokens: &[u32]) -> Result<u64, String> {
        self.0
            .state_seq_save_file(path, 0, &llama_tokens(tokens))
            .map(|written| written as u64)
            .map_err(|e| e.to_string())
    }
    fn load(&mut self, path: &Path, capacity: usize) -> Result<Vec<u32>, String> {
        check_state_file(path, capacity)?;
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

/// llama.cpp's sequence state file: `ggsq`, version 4, a token count, the
/// tokens, then the state. llama.cpp asserts (and aborts the process) on
/// some malformed files, so the header is checked here first: the magic
/// and version, a token count within `capacity`, and room in the file for
/// the tokens and some state after them.
fn check_state_file(path: &Path, capacity: usize) -> Result<(), String> {
    use std::io::Read as _;
    const MAGIC: u32 = 0x6767_7371;
    const VERSION: u32 = 4;
    let mut file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    let mut head = [0u8; 12];
    file.read_exact(&mut head)
        .map_err(|_| format!("{}: too short to be a state file", path.display()))?;
    let word = |i: usize| u32::from_le_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
    if word(0) != MAGIC || word(4) != VERSION {
        return Err(format!(
            "{}: not a llama.cpp sequence state of version {VERSION}",
            path.display()
        ));
    }
    let tokens = word(8) as usize;
    if tokens > capacity {
        return Err(format!(
            "{}: holds {tokens} tokens, more than the {capacity} the context has room for",
            path.display()
        ));
    }
    if 12 + 4 * tokens as u64 >= len {
        return Err(format!(
            "{}: cut short (no state after its {tokens} tokens)",
            path.display()
        ));
    }
    Ok(())
}
