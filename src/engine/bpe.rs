//! Fast exact token counts for byte-level BPE vocabularies (GPT-2 style:
//! SmolLM2, `StarCoder` and their kin).
//!
//! llama.cpp tokenizes at about 5 MB/s per core, most of a large first
//! ingest. Counting needs no token ids, only how many, and source code
//! repeats the same few thousand words: so this splits text into
//! pre-tokens exactly as llama.cpp's pre-tokenizer does, runs the merges
//! of the GGUF on each distinct pre-token once, and adds up cached counts.
//!
//! Exactness is by construction, and checked against llama.cpp in the
//! tests: only ASCII text is split here (where the pre-tokenizer's
//! character classes are plain: letters, digits, six whitespace bytes,
//! the rest punctuation). Around each non-ASCII character, text is cut
//! where a pre-token always ends whatever the characters around (at line
//! ends and before lone spaces between ASCII), and the piece holding it is
//! counted by llama.cpp itself. A vocabulary whose pre-tokenizer
//! is not one implemented here, or whose merges do not close over its
//! tokens, is not counted here at all.
//!
//! Never guesses: text it cannot count exactly goes to llama.cpp.

use std::cell::RefCell;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use rustc_hash::FxHashMap;

use crate::model::gguf::{read_header_keeping, GgufValue};

const TOKENS: &str = "tokenizer.ggml.tokens";
const TYPES: &str = "tokenizer.ggml.token_type";
const MERGES: &str = "tokenizer.ggml.merges";

/// Pre-tokenizers (GGUF `tokenizer.ggml.pre`) that llama.cpp runs as a
/// digit split then the GPT-2 pattern
/// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)`.
const DIGIT_THEN_GPT2: &[&str] = &["smollm", "starcoder", "refact", "codeshell", "minerva"];

/// Pre-tokens longer than this are counted by the fallback (llama.cpp):
/// the merge loop here is quadratic in a pre-token's length.
const LONGEST_PIECE: usize = 1024;
/// Distinct pre-tokens remembered per thread before the cache starts over.
const CACHE_ENTRIES: usize = 1 << 20;

/// GGUF token type of a normal token.
const NORMAL: i128 = 1;
/// GGUF token type of a user-defined token: llama.cpp matches these in
/// plain text before splitting, which this counter does not do.
const USER_DEFINED: i128 = 4;

/// What [`ByteBpe::to_bytes`] starts with (the format's version last).
const BYTES_MAGIC: &[u8] = b"scout-bpe\x001";

/// `byte_token` of a byte the vocabulary has no token for.
const NO_TOKEN: u32 = u32::MAX;

static INSTANCES: AtomicU64 = AtomicU64::new(0);

/// Pre-token bytes -> tokens.
type PieceCounts = FxHashMap<Box<[u8]>, u32>;

thread_local! {
    /// (the counter it belongs to, its counts).
    static CACHE: RefCell<(u64, PieceCounts)> = RefCell::new((u64::MAX, PieceCounts::default()));
}

/// A byte-level BPE vocabulary's merges, for counting.
pub struct ByteBpe {
    instance: u64,
    byte_token: [u32; 256],
    /// (left, right) -> (rank, merged token).
    merges: FxHashMap<(u32, u32), (u32, u32)>,
}

impl std::fmt::Debug for ByteBpe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ByteBpe")
            .field("merges", &self.merges.len())
            .finish_non_exhaustive()
    }
}

/// GPT-2's byte-to-character map: printable Latin-1 bytes stand for
/// themselves, the others for U+0100 onwards in byte order.
fn byte_chars() -> [char; 256] {
    let mut out = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        out[b as usize] = if printable {
            char::from(b)
        } else {
            let c = char::from_u32(next).expect("U+0100..U+0143 are chars");
            next += 1;
            c
        };
    }
    out
}

impl ByteBpe {
    /// The counter for the GGUF at `path`; `None` when its vocabulary is
    /// not a byte-level BPE this module counts exactly (llama.cpp counts).
    #[must_use]
    pub fn from_gguf(path: &Path) -> Option<Self> {
        let header = read_header_keeping(path, &[TOKENS, TYPES, MERGES]).ok()?;
        if header.str("tokenizer.ggml.model") != Some("gpt2") {
            return None;
        }
        let pre = header.str("tokenizer.ggml.pre")?;
        let (Some(GgufValue::Bytes(tokens)), Some(GgufValue::Ints(types)), Some(GgufValue::Bytes(merges))) =
            (header.get(TOKENS), header.get(TYPES), header.get(MERGES))
        else {
            return None;
        };
        Self::from_parts(pre, tokens, types, merges)
    }

    /// The counter for a vocabulary given as GGUF stores it: token texts
    /// (byte-encoded), token types and merges (`"left right"`).
    #[must_use]
    pub fn from_parts(pre: &str, tokens: &[Vec<u8>], types: &[i128], merges: &[Vec<u8>]) -> Option<Self> {
        if !DIGIT_THEN_GPT2.contains(&pre) || tokens.len() != types.len() || types.contains(&USER_DEFINED) {
            return None;
        }
        let ids: FxHashMap<&[u8], u32> = tokens
            .iter()
            .zip(types)
            .enumerate()
            .filter(|(_, (_, &t))| t == NORMAL)
            .map(|(i, (text, _))| (text.as_slice(), i as u32))
            .collect();
        let chars = byte_chars();
        // Some vocabularies lack a few bytes (controls, bytes UTF-8 never
        // uses): pieces holding those go to the fallback.
        let mut byte_token = [NO_TOKEN; 256];
        for (b, c) in chars.iter().enumerate() {
            let mut buf = [0u8; 4];
            if let Some(&id) = ids.get(c.encode_utf8(&mut buf).as_bytes()) {
                byte_token[b] = id;
            }
        }
        if byte_token[usize::from(b' ')..=usize::from(b'~')].contains(&NO_TOKEN) {
            return None;
        }
        let mut table = FxHashMap::default();
        for (rank, merge) in merges.iter().enumerate() {
            let space = merge.iter().position(|&b| b == b' ')?;
            let (left, right) = (&merge[..space], &merge[space + 1..]);
            let joined = [left, right].concat();
            let key = (*ids.get(left)?, *ids.get(right)?);
            // The first (best-ranked) merge of a pair is the one that applies.
            table.entry(key).or_insert((rank as u32, *ids.get(joined.as_slice())?));
        }
        Some(Self {
            instance: INSTANCES.fetch_add(1, Ordering::Relaxed),
            byte_token,
            merges: table,
        })
    }

    /// The counter as bytes, to be read back with [`ByteBpe::from_bytes`]
    /// (a cache file: building it from a GGUF takes tens of
    /// milliseconds, reading this back one or two).
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(BYTES_MAGIC.len() + 4 * (257 + 4 * self.merges.len()));
        out.extend_from_slice(BYTES_MAGIC);
        let mut merges: Vec<_> = self.merges.iter().collect();
        // In rank order, so the same counter always gives the same bytes.
        merges.sort_unstable_by_key(|(_, &(rank, _))| rank);
        let words = self.byte_token.iter().copied().chain([merges.len() as u32]).chain(
            merges
                .into_iter()
                .flat_map(|(&(left, right), &(rank, merged))| [left, right, rank, merged]),
        );
        for w in words {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out
    }

    /// A counter written by [`ByteBpe::to_bytes`]; `None` for anything
    /// else (another format, a cut-off file).
    #[must_use]
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        // Read in place: the merges are most of a megabyte.
        let word = |b: &[u8], i: usize| u32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]]);
        let rest = bytes.strip_prefix(BYTES_MAGIC)?;
        let (head, merges) = rest.split_at_checked(4 * 257)?;
        let mut byte_token = [0u32; 256];
        for (i, t) in byte_token.iter_mut().enumerate() {
            *t = word(head, i);
        }
        let count = word(head, 256) as usize;
        if merges.len() != 16 * count {
            return None;
        }
        let mut table = FxHashMap::with_capacity_and_hasher(count, rustc_hash::FxBuildHasher);
        for m in merges.chunks_exact(16) {
            table.insert((word(m, 0), word(m, 1)), (word(m, 2), word(m, 3)));
        }
        Some(Self {
            instance: INSTANCES.fetch_add(1, Ordering::Relaxed),
            byte_token,
            merges: table,
        })
    }

    /// Tokens `text` takes, exactly as llama.cpp counts it (no special
    /// tokens parsed). `fallback` is llama.cpp's own count, used for the
    /// pieces of text this module does not split itself.
    pub fn count(&self, text: &str, fallback: &dyn Fn(&str) -> u32) -> u32 {
        let b = text.as_bytes();
        let mut total = 0;
        // Always a place to cut (or the start).
        let mut pos = 0;
        while let Some(k) = b[pos..].iter().position(|x| !x.is_ascii()) {
            // The non-ASCII byte at `k` goes to the fallback with the text
            // around it, out to the nearest cuts on either side.
            let k = pos + k;
            let start = (pos + 1..=k).rev().find(|&p| is_cut(b, p)).unwrap_or(pos);
            let end = (k + 1..b.len()).find(|&p| is_cut(b, p)).unwrap_or(b.len());
            total += self.count_ascii(&b[pos..start], fallback) + fallback(&text[start..end]);
            pos = end;
        }
        total + self.count_ascii(&b[pos..], fallback)
    }

    /// Splits ASCII text as llama.cpp does: every digit alone, then the
    /// GPT-2 pattern inside each run of non-digits.
    fn count_ascii(&self, text: &[u8], fallback: &dyn Fn(&str) -> u32) -> u32 {
        CACHE.with(|cache| {
            let mut cache = cache.borrow_mut();
            if cache.0 != self.instance || cache.1.len() > CACHE_ENTRIES {
                cache.1.clear();
                cache.0 = self.instance;
            }
            let mut total = 0;
            let mut i = 0;
            while i < text.len() {
                if text[i].is_ascii_digit() {
                    total += 1;
                    i += 1;
                    continue;
                }
                let end = text[i..]
                    .iter()
                    .position(u8::is_ascii_digit)
                    .map_or(text.len(), |k| i + k);
                split_gpt2(&text[i..end], &mut |piece| {
                    total += self.piece_tokens(piece, &mut cache.1, fallback);
                });
                i = end;
            }
            total
        })
    }

    fn piece_tokens(&self, piece: &[u8], cache: &mut PieceCounts, fallback: &dyn Fn(&str) -> u32) -> u32 {
        if let Some(&n) = cache.get(piece) {
            return n;
        }
        let n = if piece.len() > LONGEST_PIECE || piece.iter().any(|&b| self.byte_token[b as usize] == NO_TOKEN) {
            // ASCII, so a str; a pre-token split again alone is itself.
            fallback(std::str::from_utf8(piece).expect("ASCII"))
        } else {
            self.merge(piece)
        };
        cache.insert(piece.into(), n);
        n
    }

    /// Applies the merges to one pre-token: always the best-ranked pair,
    /// leftmost on ties (llama.cpp's queue order). Returns the token count.
    fn merge(&self, piece: &[u8]) -> u32 {
        let mut syms: Vec<u32> = piece.iter().map(|&b| self.byte_token[b as usize]).collect();
        loop {
            let mut best: Option<(u32, usize, u32)> = None;
            for i in 0..syms.len().saturating_sub(1) {
                if let Some(&(rank, merged)) = self.merges.get(&(syms[i], syms[i + 1])) {
                    if best.is_none_or(|(r, _, _)| rank < r) {
                        best = Some((rank, i, merged));
                    }
                }
            }
            let Some((_, i, merged)) = best else { break };
            syms[i] = merged;
            syms.remove(i + 1);
        }
        syms.len() as u32
    }
}

fn is_space(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | 0x0B | 0x0C | b'\r' | b' ')
}

/// Whether text may be cut before `p` without changing its pre-tokens,
/// whatever the characters further away: just after a newline between
/// ASCII non-spaces (the newline is a pre-token of its own), or before a
/// lone space between ASCII non-spaces (a pre-token ends before it, and
/// it starts the next one). Either way nothing before the cut depends on
/// what comes after, nor the other way round.
fn is_cut(b: &[u8], p: usize) -> bool {
    let plain = |i: usize| b.get(i).is_some_and(|&c| c.is_ascii() && !is_space(c));
    (p >= 2 && b[p - 1] == b'\n' && plain(p - 2) && plain(p))
        || (p >= 1 && b.get(p) == Some(&b' ') && plain(p - 1) && plain(p + 1))
}

/// llama.cpp's GPT-2 pre-tokenizer (`unicode_regex_split_custom_gpt2`) on
/// a run of ASCII without digits: calls `emit` with each pre-token.
fn split_gpt2(s: &[u8], emit: &mut dyn FnMut(&[u8])) {
    let n = s.len();
    let letter = |c: u8| c.is_ascii_alphabetic();
    let mut start = 0;
    let mut pos = 0;
    let mut cut = |start: &mut usize, end: usize| {
        if end > *start {
            emit(&s[*start..end]);
        }
        *start = end;
    };
    while pos < n {
        let c = s[pos];
        // 's 't 're 've 'm 'll 'd
        if c == b'\'' && pos + 1 < n {
            let c1 = s[pos + 1];
            if matches!(c1, b's' | b't' | b'm' | b'd') {
                pos += 2;
                cut(&mut start, pos);
                continue;
            }
            if pos + 2 < n && matches!((c1, s[pos + 2]), (b'r' | b'v', b'e') | (b'l', b'l')) {
                pos += 3;
                cut(&mut start, pos);
                continue;
            }
        }
        // What follows an optional leading space; `None` past the end.
        let next = if c == b' ' { s.get(pos + 1).copied() } else { Some(c) };
        match next {
            // ` ?\p{L}+`
            Some(x) if letter(x) => {
                pos += usize::from(c == b' ');
                while pos < n && letter(s[pos]) {
                    pos += 1;
                }
            }
            // ` ?[^\s\p{L}\p{N}]+`
            Some(x) if !is_space(x) => {
                pos += usize::from(c == b' ');
                while pos < n && !letter(s[pos]) && !is_space(s[pos]) {
                    pos += 1;
                }
            }
            _ => {
                let run = s[pos..].iter().take_while(|&&b| is_space(b)).count();
                // `\s+(?!\S)`: all but the last space when a non-space
                // follows; `\s+` otherwise.
                pos += if run > 1 && pos + run < n { run - 1 } else { run.max(1) };
            }
        }
        cut(&mut start, pos);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(s: &str) -> Vec<String> {
        let mut out = Vec::new();
        let b = s.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i].is_ascii_digit() {
                out.push(s[i..=i].to_owned());
                i += 1;
                continue;
            }
            let end = b[i..].iter().position(u8::is_ascii_digit).map_or(b.len(), |k| i + k);
            split_gpt2(&b[i..end], &mut |p| out.push(String::from_utf8(p.to_vec()).unwrap()));
            i = end;
        }
        out
    }

    #[test]
    fn pre_tokens_follow_the_gpt2_pattern_after_a_digit_split() {
        assert_eq!(pieces("Hello world"), ["Hello", " world"]);
        assert_eq!(pieces("it's we're I'll"), ["it", "'s", " we", "'re", " I", "'ll"]);
        assert_eq!(pieces("x  = 12"), ["x", " ", " =", " ", "1", "2"]);
        assert_eq!(
            pieces("fn f() {\n    a\n}\n"),
            ["fn", " f", "()", " {", "\n   ", " a", "\n", "}", "\n"]
        );
        // Trailing spaces before the end (or a digit) stay together.
        assert_eq!(pieces("a   "), ["a", "   "]);
        assert_eq!(pieces("a  1"), ["a", "  ", "1"]);
        assert_eq!(pieces("''s"), ["''", "s"]);
        assert_eq!(pieces(" !="), [" !="]);
        // Only a space joins the word after it.
        assert_eq!(pieces("\t\tx"), ["\t", "\t", "x"]);
    }

    #[test]
    fn cuts_fall_after_a_newline_or_before_a_space_between_plain_characters() {
        let cuts = |text: &[u8]| (0..=text.len()).filter(|&p| is_cut(text, p)).collect::<Vec<_>>();
        assert_eq!(cuts(b"a\nb  \n c\n\nd\nx"), vec![2, 12]);
        assert_eq!(cuts(b"ab cd  e f\t g"), vec![2, 8]);
        assert_eq!(cuts(" \u{e9} x".as_bytes()), Vec::<usize>::new());
    }

    /// A toy vocabulary: every byte, plus merges "a b" -> "ab", "ab c" -> "abc",
    /// "b c" -> "bc" (ranked after "a b").
    fn toy() -> ByteBpe {
        let chars = byte_chars();
        let mut tokens: Vec<Vec<u8>> = chars.iter().map(|c| c.to_string().into_bytes()).collect();
        tokens.extend([b"ab".to_vec(), b"abc".to_vec(), b"bc".to_vec(), b"<|x|>".to_vec()]);
        let mut types = vec![NORMAL; tokens.len()];
        *types.last_mut().unwrap() = 3;
        let merges = [b"a b".to_vec(), b"b c".to_vec(), b"ab c".to_vec()];
        ByteBpe::from_parts("smollm", &tokens, &types, &merges).unwrap()
    }

    #[test]
    fn merges_apply_best_rank_first() {
        let bpe = toy();
        let never = |_: &str| -> u32 { panic!("ASCII is counted here") };
        // "abc": a+b first (rank 0), then ab+c.
        assert_eq!(bpe.count("abc", &never), 1);
        // "bc" merges; " abc" starts with a space, which has no merge.
        assert_eq!(bpe.count("bc", &never), 1);
        assert_eq!(bpe.count(" abc", &never), 2);
        assert_eq!(bpe.count("abc abc", &never), 1 + 2);
        // Special token text is plain text: 5 bytes, no merges.
        assert_eq!(bpe.count("<|x|>", &never), 5);
    }

    #[test]
    fn a_counter_read_back_from_its_bytes_counts_alike() {
        let bpe = toy();
        let bytes = bpe.to_bytes();
        assert_eq!(bytes, toy().to_bytes(), "the same counter gives the same bytes");
        let back = ByteBpe::from_bytes(&bytes).unwrap();
        assert_eq!(back.byte_token, bpe.byte_token);
        assert_eq!(back.merges, bpe.merges);
        let never = |_: &str| -> u32 { panic!("ASCII is counted here") };
        assert_eq!(back.count("abc bc x", &never), bpe.count("abc bc x", &never));
        // Cut off, lengthened, or another format: refused.
        assert!(ByteBpe::from_bytes(&bytes[..bytes.len() - 4]).is_none());
        assert!(ByteBpe::from_bytes(&[bytes.as_slice(), &[0; 4]].concat()).is_none());
        assert!(ByteBpe::from_bytes(&bytes[1..]).is_none());
        assert!(ByteBpe::from_bytes(&bytes[..100]).is_none());
    }

    #[test]
    fn non_ascii_pieces_go_to_the_fallback() {
        let bpe = toy();
        let seen = RefCell::new(Vec::new());
        let fallback = |s: &str| {
            seen.borrow_mut().push(s.to_owned());
            100
        };
        // Cut after "abc\n"; not after "é\n" (é is not ASCII).
        assert_eq!(bpe.count("abc\nné\nabc\n", &fallback), 2 + 100);
        // Cut before " né", not after it (é may not be a letter), and next
        // past "é!": " x" lies between two pieces that need the fallback.
        assert_eq!(bpe.count("abc né x é! abc abc", &fallback), 1 + 100 + 2 + 2);
        assert_eq!(seen.into_inner(), ["né\nabc\n", " né x é!"]);
    }

    #[test]
    fn vocabularies_it_cannot_count_exactly_are_refused() {
        let chars = byte_chars();
        let tokens: Vec<Vec<u8>> = chars.iter().map(|c| c.to_string().into_bytes()).collect();
        let types = vec![NORMAL; tokens.len()];
        assert!(ByteBpe::from_parts("llama3", &tokens, &types, &[]).is_none());
        assert!(ByteBpe::from_parts("smollm", &tokens, &types, &[]).is_some());
        // A printable ASCII byte without a normal token.
        let mut no_a = types.clone();
        no_a[usize::from(b'a')] = 3;
        assert!(ByteBpe::from_parts("smollm", &tokens, &no_a, &[]).is_none());
        assert!(ByteBpe::from_parts("smollm", &tokens[1..], &types, &[]).is_none());
        let mut user = types.clone();
        user[0] = USER_DEFINED;
        assert!(ByteBpe::from_parts("smollm", &tokens, &user, &[]).is_none());
        // A merge whose result is not a token.
        assert!(ByteBpe::from_parts("smollm", &tokens, &types, &[b"a b".to_vec()]).is_none());
    }
}
