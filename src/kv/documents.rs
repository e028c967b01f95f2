//! Document-granular reuse (`--kv-reuse documents`): a prompt's prefix that
//! differs from a stored state in the middle (a document edited, moved to
//! the end because its last commit is newer, or removed) keeps the state's
//! KV of the text before the first difference, moves the KV of the unchanged
//! text after it to the positions that text now has (the engine shifts the
//! cells, re-rotating their keys), and reads only what changed.
//!
//! Unchanged text is found by content, wherever it sits: both token lists
//! are cut into content-defined chunks (a chunk ends where a hash of its last
//! [`WINDOW`] tokens hits a mask, so the same text is cut the same way at any
//! offset), the stored state's chunks are indexed by their first tokens, and
//! a match is extended token by token both ways. Runs shorter than
//! [`MIN_RUN`] tokens are read, not moved.
//!
//! Moved cells attended to the text that stood before them when they were
//! computed, not to what stands there now. A chosen share of each moved
//! run's first tokens is read again instead (`recompute`): 1.0 reads
//! everything after the first difference, which is a full prefill of it.
//! The stored state's own tokens are compared before anything is moved, so
//! a wrong match is impossible; what changes is only what the moved cells
//! attended to.
//!
//! Pure: token lists in, steps out. Engines carry the steps out (llama.cpp:
//! `engine/llamacpp/documents.rs`).

use std::collections::HashMap;
use std::ops::Range;

use serde::Serialize;

/// How a stored corpus's KV is reused when the corpus changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum KvReuse {
    /// The stored state's blocks before the first difference (exact: the
    /// answer is the one a full read gives).
    #[default]
    Prefix,
    /// Also the unchanged documents after the first difference, moved to
    /// their new positions (approximate: see the module's notes).
    Documents,
}

/// Tokens whose hash decides a chunk's end, and the first tokens a chunk is
/// indexed by.
const WINDOW: usize = 8;
/// A chunk ends where the hash's low bits are all zero: about 32 tokens.
const CHUNK_MASK: u64 = 31;
/// A run of unchanged tokens shorter than this is read again: moving it
/// costs engine calls, and a short run is as likely a common line
/// (a closing brace, a licence header) as a kept document.
pub const MIN_RUN: usize = 64;
/// Candidates tried per chunk (a line repeated in many files).
const CANDIDATES: usize = 16;

/// One step of laying a prompt's prefix out of a stored state's KV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Read these tokens of the new prefix (at their own positions).
    /// `recompute`: the stored state had them (at another position), but
    /// they are read again to repair what moved cells attended to.
    Read { tokens: Range<usize>, recompute: bool },
    /// Take the stored state's cells `from..from + len` to positions
    /// `to..to + len`.
    Move { from: usize, to: usize, len: usize },
}

/// How a new prefix is laid out of a stored state: the first `kept`
/// tokens in place, then `steps` in order of position, ending with a read
/// (an engine applies shifted positions when it next computes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rearrangement {
    pub kept: usize,
    pub steps: Vec<Step>,
}

impl Rearrangement {
    /// Tokens moved from the stored state to new positions.
    #[must_use]
    pub fn shifted(&self) -> usize {
        self.steps
            .iter()
            .map(|s| match s {
                Step::Move { len, .. } => *len,
                Step::Read { .. } => 0,
            })
            .sum()
    }

    /// Tokens the stored state had but that are read again (the repair).
    #[must_use]
    pub fn recomputed(&self) -> usize {
        self.read_where(true)
    }

    /// Tokens the stored state did not have.
    #[must_use]
    pub fn prefilled(&self) -> usize {
        self.read_where(false)
    }

    fn read_where(&self, again: bool) -> usize {
        self.steps
            .iter()
            .map(|s| match s {
                Step::Read { tokens, recompute } if *recompute == again => tokens.len(),
                _ => 0,
            })
            .sum()
    }

    /// Whether anything is moved: without a move the state is simply cut
    /// after `kept` (prefix reuse, to the token).
    #[must_use]
    pub fn moves(&self) -> bool {
        self.shifted() > 0
    }
}

/// Lays `new` out of a state holding `old`: the common start kept, runs of
/// at least [`MIN_RUN`] unchanged tokens moved (each old cell used once),
/// the rest read; then the first `recompute` share (0.0 to 1.0) of each
/// moved run read again. `kept + shifted + recomputed + prefilled` is
/// always `new.len()`.
#[must_use]
pub fn rearrange(old: &[u32], new: &[u32], recompute: f64) -> Rearrangement {
    let kept = old.iter().zip(new).take_while(|(a, b)| a == b).count();
    let mut used = vec![false; old.len()];
    used[..kept].fill(true);
    let index = index_chunks(old, kept);
    let mut steps = Vec::new();
    let mut read_from = kept;
    let mut i = kept;
    for start in chunk_starts(new, kept) {
        if start < i || start + WINDOW > new.len() {
            continue;
        }
        let best = index
            .get(&window_hash(&new[start..start + WINDOW]))
            .into_iter()
            .flatten()
            .take(CANDIDATES)
            .map(|&o| (o, forward(old, new, &used, o, start)))
            .max_by_key(|&(o, len)| (len, std::cmp::Reverse(o)));
        let Some((o, len)) = best else {
            continue;
        };
        if len == 0 {
            continue;
        }
        // Back over the tokens before the chunk's start that match too (a
        // document's first tokens before its first chunk boundary).
        let back = (1..=start - read_from)
            .take_while(|&b| o >= b && !used[o - b] && old[o - b] == new[start - b])
            .count();
        let (from, to, len) = (o - back, start - back, len + back);
        if len < MIN_RUN {
            continue;
        }
        if to > read_from {
            steps.push(Step::Read {
                tokens: read_from..to,
                recompute: false,
            });
        }
        steps.push(Step::Move { from, to, len });
        used[from..from + len].fill(true);
        i = to + len;
        read_from = i;
    }
    if read_from < new.len() {
        steps.push(Step::Read {
            tokens: read_from..new.len(),
            recompute: false,
        });
    }
    Rearrangement {
        kept,
        steps: repaired(steps, recompute),
    }
}

/// Tokens from `o` in `old` and `i` in `new` that are equal, over old cells
/// not yet used.
fn forward(old: &[u32], new: &[u32], used: &[bool], o: usize, i: usize) -> usize {
    old[o..]
        .iter()
        .zip(&new[i..])
        .zip(&used[o..])
        .take_while(|((a, b), u)| a == b && !**u)
        .count()
}

/// Each move's first `share` of tokens read again instead; a last move
/// gives its last token to a read, so the steps end computing (which is
/// when an engine applies the moved cells' new positions).
fn repaired(steps: Vec<Step>, share: f64) -> Vec<Step> {
    let share = share.clamp(0.0, 1.0);
    let mut out = Vec::with_capacity(steps.len() * 2);
    for step in steps {
        match step {
            Step::Move { from, to, len } => {
                let again = ((len as f64 * share).ceil() as usize).min(len);
                if again > 0 {
                    out.push(Step::Read {
                        tokens: to..to + again,
                        recompute: true,
                    });
                }
                if again < len {
                    out.push(Step::Move {
                        from: from + again,
                        to: to + again,
                        len: len - again,
                    });
                }
            }
            read @ Step::Read { .. } => out.push(read),
        }
    }
    if let Some(Step::Move { from, to, len }) = out.last().cloned() {
        out.pop();
        if len > 1 {
            out.push(Step::Move { from, to, len: len - 1 });
        }
        out.push(Step::Read {
            tokens: to + len - 1..to + len,
            recompute: true,
        });
    }
    out
}

/// Keys of `tokens`' content-defined chunks (a hash of each chunk's
/// tokens): what a stored state is found by when no block at the start of
/// a prompt matches it (the edit is in its first tokens, or it is a later
/// window of a sweep whose earlier windows changed).
#[must_use]
pub fn chunk_keys(tokens: &[u32]) -> Vec<u64> {
    let starts = chunk_starts(tokens, 0);
    let ends = starts.iter().skip(1).copied().chain(std::iter::once(tokens.len()));
    starts
        .iter()
        .zip(ends)
        .map(|(&a, b)| window_hash(&tokens[a..b]))
        .collect()
}

/// How many of `held`'s chunk keys are among `wanted`'s.
#[must_use]
pub fn shared_chunks<H: std::hash::BuildHasher>(wanted: &std::collections::HashSet<u64, H>, held: &[u64]) -> usize {
    held.iter().filter(|k| wanted.contains(k)).count()
}

/// Where content-defined chunks of `tokens[from..]` start: at `from`, and
/// after every position where the hash of the [`WINDOW`] tokens ending
/// there has its low bits zero.
fn chunk_starts(tokens: &[u32], from: usize) -> Vec<usize> {
    let mut starts = vec![from];
    for end in (from + WINDOW)..tokens.len() {
        if window_hash(&tokens[end - WINDOW..end]) & CHUNK_MASK == 0 {
            starts.push(end);
        }
    }
    starts
}

/// The stored state's chunks after `from`, by the hash of their first
/// [`WINDOW`] tokens.
fn index_chunks(tokens: &[u32], from: usize) -> HashMap<u64, Vec<usize>> {
    let mut index: HashMap<u64, Vec<usize>> = HashMap::new();
    for start in chunk_starts(tokens, from) {
        if start + WINDOW <= tokens.len() {
            index
                .entry(window_hash(&tokens[start..start + WINDOW]))
                .or_default()
                .push(start);
        }
    }
    index
}

fn window_hash(tokens: &[u32]) -> u64 {
    // FNV-1a over the ids, then a final mix so the low bits depend on all.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &t in tokens {
        h ^= u64::from(t);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pseudo-random "documents" of distinct tokens, so only real copies
    /// match.
    fn doc(seed: u32, len: usize) -> Vec<u32> {
        let mut x = seed.wrapping_mul(2_654_435_761).max(1);
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x % 50_000
            })
            .collect()
    }

    fn join(docs: &[&[u32]]) -> Vec<u32> {
        docs.iter().flat_map(|d| d.iter().copied()).collect()
    }

    /// Carries the steps out on a fake state whose cells hold their token
    /// (what an engine would do), and checks the result is `new`.
    fn apply(old: &[u32], new: &[u32], r: &Rearrangement) -> Vec<u32> {
        let mut cells: Vec<Option<u32>> = old[..r.kept].iter().copied().map(Some).collect();
        cells.resize(new.len(), None);
        let mut taken = vec![false; old.len()];
        for step in &r.steps {
            match step {
                Step::Read { tokens, .. } => {
                    for p in tokens.clone() {
                        cells[p] = Some(new[p]);
                    }
                }
                Step::Move { from, to, len } => {
                    for k in 0..*len {
                        assert!(!taken[from + k], "an old cell is used once");
                        taken[from + k] = true;
                        assert!(cells[to + k].is_none(), "a position is written once");
                        cells[to + k] = Some(old[from + k]);
                    }
                }
            }
        }
        cells.into_iter().map(|c| c.expect("every position written")).collect()
    }

    fn check(old: &[u32], new: &[u32], share: f64) -> Rearrangement {
        let r = rearrange(old, new, share);
        assert_eq!(apply(old, new, &r), new);
        assert_eq!(r.kept + r.shifted() + r.recomputed() + r.prefilled(), new.len());
        assert!(matches!(r.steps.last(), Some(Step::Read { .. }) | None));
        r
    }

    #[test]
    fn an_edited_document_in_the_middle_is_read_and_the_ones_after_it_move() {
        let (a, b, c, d) = (doc(1, 2000), doc(2, 1500), doc(3, 3000), doc(4, 1000));
        let b2 = doc(5, 1700);
        let old = join(&[&a, &b, &c, &d]);
        let new = join(&[&a, &b2, &c, &d]);
        let r = check(&old, &new, 0.0);
        assert_eq!(r.kept, 2000);
        assert_eq!(r.prefilled(), 1700);
        assert_eq!(r.shifted() + r.recomputed(), 4000);
        assert_eq!(r.recomputed(), 1, "only the last token, so the steps end computing");
    }

    #[test]
    fn a_document_that_moved_to_the_end_after_an_edit_keeps_those_that_followed_it() {
        // scout orders by last commit: an edited file goes last.
        let (a, b, c, d) = (doc(1, 2000), doc(2, 1500), doc(3, 3000), doc(4, 1000));
        let mut b2 = b.clone();
        b2[700] = 49_999;
        let old = join(&[&a, &b, &c, &d]);
        let new = join(&[&a, &c, &d, &b2]);
        let r = check(&old, &new, 0.0);
        assert_eq!(r.kept, 2000);
        // c and d moved; b2's halves moved from b's cells around the edit
        // (a run of b's own text is as good as any other).
        assert!(r.shifted() >= 4000 + 1000, "{r:?}");
        assert!(r.prefilled() < 2 * MIN_RUN, "{r:?}");
    }

    #[test]
    fn the_recompute_share_reads_the_first_tokens_of_each_moved_run_again() {
        let (a, b, c, d) = (doc(1, 2000), doc(2, 1500), doc(3, 3000), doc(4, 1000));
        let old = join(&[&a, &b, &c, &d]);
        let new = join(&[&a, &c, &d]);
        let r = check(&old, &new, 0.1);
        assert_eq!((r.kept, r.prefilled()), (2000, 0));
        // 10% of the 4,000 moved, and the last token (the steps end reading).
        assert_eq!(r.recomputed(), 401, "{r:?}");
        assert!(matches!(
            r.steps.first(),
            Some(Step::Read { tokens, recompute: true }) if *tokens == (2000..2400)
        ));
        // The identity case: everything after the first change read again.
        let all = check(&old, &new, 1.0);
        assert_eq!((all.shifted(), all.recomputed()), (0, 4000));
    }

    #[test]
    fn short_runs_are_read_and_each_old_cell_is_used_once() {
        let a = doc(1, 600);
        let dup = doc(9, 300);
        let old = join(&[&a, &dup]);
        // The same document twice after an edit: only one copy can move.
        let new = join(&[&a[..500], &doc(7, 40), &dup, &dup, &a[..20]]);
        let r = check(&old, &new, 0.0);
        assert_eq!(r.kept, 500);
        assert!(r.shifted() <= 300, "{r:?}");
        assert!(r.prefilled() >= 340, "{r:?}");
    }

    #[test]
    fn an_unchanged_or_appended_prefix_moves_nothing() {
        let a = doc(1, 3000);
        let same = check(&a, &a, 0.0);
        assert_eq!((same.kept, same.steps.len()), (3000, 0));
        let longer = join(&[&a, &doc(2, 100)]);
        let r = check(&a, &longer, 0.0);
        assert_eq!((r.kept, r.prefilled(), r.moves()), (3000, 100, false));
        let shorter = check(&longer, &a, 0.0);
        assert_eq!((shorter.kept, shorter.steps.len()), (3000, 0));
    }

    #[test]
    fn chunks_are_cut_the_same_way_at_any_offset() {
        let d = doc(3, 4000);
        let shifted = join(&[&doc(8, 123), &d]);
        let here: Vec<usize> = chunk_starts(&d, 0).into_iter().skip(1).collect();
        let there: Vec<usize> = chunk_starts(&shifted, 0)
            .into_iter()
            .filter(|&s| s >= 123 + WINDOW)
            .map(|s| s - 123)
            .collect();
        assert_eq!(here, there);
        let mean = d.len() / here.len();
        assert!((16..=64).contains(&mean), "chunks of about 32 tokens, {mean}");
    }
}
