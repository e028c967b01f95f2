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

impl Tokenizer for Encoding {
    fn tokenizer_id(&self) -> &str {
        self.name()
    }

    fn count_tokens(&self, text: &str) -> u32 {
        self.bpe().count(text) as u32
    }

    fn counts_are_cheap(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
