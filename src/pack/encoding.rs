//! OpenAI's BPE encodings (`o200k_base`, `cl100k_base`) as a [`Tokenizer`],
//! for counts users compare with other tools' (code2prompt, repomix and
//! tiktoken count with these). The encodings ship inside the binary;
//! nothing is fetched.

use crate::prompt::Tokenizer;

/// An OpenAI encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// `o200k_base`: GPT-4o, GPT-4.1, o1, o3, o4-mini.
    O200k,
    /// `cl100k_base`: GPT-4, GPT-3.5.
    Cl100k,
}

impl Encoding {
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Encoding::O200k => "o200k_base",
            Encoding::Cl100k => "cl100k_base",
        }
    }

    fn bpe(self) -> &'static bpe_openai::Tokenizer {
        match self {
            Encoding::O200k => bpe_openai::o200k_base(),
            Encoding::Cl100k => bpe_openai::cl100k_base(),
        }
    }
}

/// Texts from this size on are counted in parts, on every core (a pack of
/// a large repository is tens of megabytes).
const PARALLEL_BYTES: usize = 1 << 20;

/// Whether `at` is a place where both encodings' pre-tokenizers start a
/// new piece whatever surrounds it (see [`split_at_pieces`]); the end of
/// the text is one.
pub(super) fn is_line_start(bytes: &[u8], at: usize) -> bool {
    at == bytes.len() || (at > 0 && bytes[at - 1] == b'\n' && bytes[at].is_ascii_graphic() && bytes[at] != b'/')
}

/// `text` cut into parts of about `size` bytes, each cut where both
/// encodings' pre-tokenizers start a new piece whatever surrounds it, so
/// the parts' counts add up to the whole's exactly: after a line break and
/// before a printable ASCII character other than `/`. (Only white space
/// runs go on past a line break, and o200k's punctuation piece takes line
/// breaks and slashes after it: `}\n/`.) Text with no such place after a
/// cut's target stays whole from there.
fn split_at_pieces(text: &str, size: usize) -> Vec<&str> {
    let bytes = text.as_bytes();
    let mut parts = Vec::new();
    let mut start = 0;
    while text.len() - start > size {
        let from = start + size;
        let cut = (from..bytes.len()).find(|&at| is_line_start(bytes, at));
        let Some(cut) = cut else { break };
        parts.push(&text[start..cut]);
        start = cut;
    }
    parts.push(&text[start..]);
    parts
}

impl Tokenizer for Encoding {
    fn tokenizer_id(&self) -> &str {
        self.name()
    }

    fn count_tokens(&self, text: &str) -> u32 {
        if text.len() < PARALLEL_BYTES {
            return self.bpe().count(text) as u32;
        }
        let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let parts = split_at_pieces(text, text.len().div_ceil(threads));
        super::on_every_core(&parts, &|part| self.bpe().count(part) as u64)
            .into_iter()
            .sum::<u64>() as u32
    }

    fn counts_are_cheap(&self) -> bool {
        true
    }

    fn counts_add_at_line_starts(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A large text counted in parts on every core gives the count of the
    /// whole in one part, with every kind of join at the cuts: code,
    /// comments after a closing brace, CRLF, CJK, indented and blank
    /// lines, contractions, digits, no-break spaces.
    #[test]
    fn a_large_text_counted_in_parts_counts_as_the_whole() {
        let snippets = [
            "fn main() {\n    println!(\"hi\");\n}\n",
            "}\n// a comment after a brace\n",
            "}\n/* block */\n",
            "line one\r\nline two\r\n",
            "日本語のテキスト\n中文\n",
            "\n\n\n   indented\n\tTabbed\n",
            "'s and 'll after a break\n's\n",
            "12345678 numbers\n9\n",
            "\u{a0}no-break\n\u{a0}space\n",
            "<<<doc path=\"a/b.rs\">>>\n[L1] use std::io;\n",
            "x\n/y\n\n/z\n",
            "emoji 🦀\n🦀🦀\n",
        ];
        let mut text = String::new();
        let mut state = 7u64;
        while text.len() < 3 * PARALLEL_BYTES {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            text.push_str(snippets[(state >> 33) as usize % snippets.len()]);
        }
        assert!(split_at_pieces(&text, text.len() / 64).len() > 32);
        for encoding in [Encoding::O200k, Encoding::Cl100k] {
            let whole = encoding.bpe().count(&text) as u32;
            assert_eq!(encoding.count_tokens(&text), whole, "{}", encoding.name());
            let parts: usize = split_at_pieces(&text, 997)
                .iter()
                .map(|p| encoding.bpe().count(p))
                .sum();
            assert_eq!(parts as u32, whole, "{} in small parts", encoding.name());
        }
    }

    /// The counts are tiktoken's, on code, prose, CJK, emoji and the
    /// whitespace runs the pre-tokenizers treat specially.
    #[test]
    fn counts_equal_tiktoken() {
        let texts = [
            "fn main() {\n    println!(\"hello, world\");\n}\n",
            "The vault access code is KESTREL-4471.\n\n\n   trailing   \n",
            "日本語のテキストと English mixed, 1234567 numbers.",
            "emoji 🦀🦀 and tabs\t\tand CRLF\r\n lines\r\n",
            "<<<doc-0123abcd path=\"src/a.rs\" lines=12 lang=rust>>>\n[L1] use std::io;\n",
            "",
        ];
        let o200k = tiktoken_rs::o200k_base().unwrap();
        let cl100k = tiktoken_rs::cl100k_base().unwrap();
        for t in texts {
            assert_eq!(
                Encoding::O200k.count_tokens(t) as usize,
                o200k.encode_ordinary(t).len(),
                "o200k {t:?}"
            );
            assert_eq!(
                Encoding::Cl100k.count_tokens(t) as usize,
                cl100k.encode_ordinary(t).len(),
                "cl100k {t:?}"
            );
        }
    }
}
