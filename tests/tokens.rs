//! The fast token counter against llama.cpp's own tokenizer: the same
//! count for every text, or it is not exact.

use std::path::Path;

use scout::engine::llamacpp::LlamaCppTokenizer;
use scout::prompt::Tokenizer;

use crate::util::model;

/// Every file under `dir` that is UTF-8 text.
fn texts_under(dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            texts_under(&path, out);
        } else if let Ok(text) = std::fs::read_to_string(&path) {
            out.push(text);
        }
    }
}

/// Deterministic strings over an alphabet chosen for the pre-tokenizer's
/// edge cases: spaces before words and digits, runs of mixed whitespace,
/// contractions, CRLF, controls without a token, letters and spaces
/// outside ASCII (NBSP, line separator), emoji.
fn tricky(n: usize) -> Vec<String> {
    let alphabet = [
        " ", "  ", "\n", "\n\n", "\t", "\r\n", "a", "Z", "word", "7", "42", "'s", "'ll", "'", "''", "=", "()", "{",
        "-->", "\u{4}", "\u{1d}", "_", "\\", "\"", "é", "ß", "日本", "\u{a0}", "\u{2028}", "🦀", "½", "٣",
    ];
    // Half the strings are ASCII, which the fast counter splits itself.
    let ascii = alphabet.iter().take_while(|s| s.is_ascii()).count() as u64;
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..n)
        .map(|i| {
            let len = 1 + (next() % 40) as usize;
            let from = if i % 2 == 0 { ascii } else { alphabet.len() as u64 };
            (0..len).map(|_| alphabet[(next() % from) as usize]).collect()
        })
        .collect()
}

#[test]
fn fast_counts_equal_llama_cpp_counts() {
    let tok = LlamaCppTokenizer::load(model()).unwrap();
    assert!(tok.is_fast(), "the default model's vocabulary has the fast counter");
    let mut texts = tricky(5_000);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for dir in ["tests/data", "examples", "src", "prompts"] {
        texts_under(&root.join(dir), &mut texts);
    }
    let mut differ = Vec::new();
    for text in &texts {
        let (fast, slow) = (tok.count_tokens(text), tok.count_tokens_slow(text));
        if fast != slow {
            differ.push(format!("{text:?}: fast {fast}, llama.cpp {slow}"));
        }
    }
    assert!(
        differ.is_empty(),
        "{} of {} texts differ:\n{}",
        differ.len(),
        texts.len(),
        differ[..differ.len().min(10)].join("\n")
    );
}

/// The same over every UTF-8 file of a real tree (`SCOUT_TOKENS_TREE`,
/// ignore rules honoured): `SCOUT_TOKENS_TREE=DIR cargo test --release
/// --test tests counts_over_a_tree -- --ignored`.
#[test]
#[ignore = "reads the tree named by SCOUT_TOKENS_TREE"]
fn fast_counts_equal_llama_cpp_counts_over_a_tree() {
    let root = std::env::var_os("SCOUT_TOKENS_TREE").expect("SCOUT_TOKENS_TREE=DIR");
    let tok = LlamaCppTokenizer::load(model()).unwrap();
    let mut differ = Vec::new();
    for entry in ignore::WalkBuilder::new(root).build().filter_map(Result::ok) {
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        let (fast, slow) = (tok.count_tokens(&text), tok.count_tokens_slow(&text));
        if fast != slow {
            differ.push(format!("{}: fast {fast}, llama.cpp {slow}", entry.path().display()));
        }
    }
    assert!(differ.is_empty(), "{differ:#?}");
}
