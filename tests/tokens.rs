//! The fast token counter against llama.cpp's own tokenizer: the same
//! count for every text, or it is not exact.

use std::path::Path;

use scout::engine::llamacpp::{GgufCounter, LlamaCppTokenizer};
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

/// The counter an ingest uses starts from a cache file after its first
/// load, counts as the full tokenizer does, and loads llama.cpp's
/// vocabulary only for text the fast counter leaves to it.
#[test]
fn the_cached_counter_counts_alike_and_loads_llama_cpp_only_when_needed() {
    let cache = tempfile::tempdir().unwrap();
    let full = LlamaCppTokenizer::load(model()).unwrap();
    let first = GgufCounter::load(model(), cache.path()).unwrap();
    let files: Vec<_> = std::fs::read_dir(cache.path()).unwrap().flatten().collect();
    assert_eq!(files.len(), 1, "one cache file per model");
    let second = GgufCounter::load(model(), cache.path()).unwrap();
    assert!(!second.loaded_llama_cpp(), "read from the cache, without llama.cpp");
    assert_eq!(second.tokenizer_id(), full.tokenizer_id());
    assert!(second.counts_are_cheap());
    let ascii = "fn main() {\n    println!(\"hello\");\n}\n";
    assert_eq!(second.count_tokens(ascii), full.count_tokens(ascii));
    assert!(!second.loaded_llama_cpp(), "ASCII is counted without llama.cpp");
    for text in tricky(500) {
        assert_eq!(second.count_tokens(&text), full.count_tokens_slow(&text), "{text:?}");
        assert_eq!(first.count_tokens(&text), full.count_tokens_slow(&text), "{text:?}");
    }
    assert!(second.loaded_llama_cpp(), "text outside ASCII needed llama.cpp");

    // A cache file that is not one (cut off, overwritten) is rebuilt.
    let file = files[0].path();
    std::fs::write(&file, b"scout-counter\x001 and then nonsense").unwrap();
    let rebuilt = GgufCounter::load(model(), cache.path()).unwrap();
    assert_eq!(rebuilt.tokenizer_id(), full.tokenizer_id());
    assert_eq!(rebuilt.count_tokens(ascii), full.count_tokens(ascii));
    assert!(std::fs::read(&file).unwrap().len() > 1000, "written again");
    // Another model file (here: the same bytes under another name) has
    // its own cache file.
    let copy = cache.path().join("copy.gguf");
    std::fs::copy(model(), &copy).unwrap();
    let other = GgufCounter::load(&copy, cache.path()).unwrap();
    assert_eq!(other.tokenizer_id(), full.tokenizer_id());
    assert_eq!(
        std::fs::read_dir(cache.path()).unwrap().count(),
        3,
        "two cache files and the copy"
    );
}
