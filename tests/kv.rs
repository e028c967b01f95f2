//! The KV cache kept on disk between processes, through the CLI on the
//! default model: a corpus restored in a second process, KV types kept
//! apart, damaged files ignored, and a sweep over the disk budget.

use std::path::Path;

use scout::engine::llamacpp::{LlamaCppEngine, LlamaCppOptions};
use scout::engine::{ChatMessage, Engine, GenerateParams, Generation, Role};
use scout::kv::disk::DiskTier;
use scout::kv::documents::KvReuse;

use crate::util::{ask, data, json, model, text};

#[test]
fn a_second_question_restores_the_corpus_kv_from_disk_and_answers_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let q = "What is the vault unseal phrase?";
    let run = |extra: &[&str]| {
        let out = ask(dir.path(), &data("needle"), q, extra);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        (json(&out), text(&out.stderr))
    };
    let (cold, _) = run(&[]);
    assert_eq!(cold["kv"]["restored_tokens"], 0);
    assert!(
        cold["kv"]["saved_bytes"].as_u64().unwrap() > 1_000_000,
        "{:#}",
        cold["kv"]
    );
    let (warm, _) = run(&[]);
    let restored = warm["kv"]["restored_tokens"].as_u64().unwrap();
    let prefilled = warm["kv"]["prefilled_tokens"].as_u64().unwrap();
    assert!(restored > 400 && prefilled < 40, "{:#}", warm["kv"]);
    assert_eq!(restored + prefilled, warm["usage"]["prompt_tokens"].as_u64().unwrap());
    assert_eq!(
        warm["answer"], cold["answer"],
        "greedy output after a restore equals a fresh prefill"
    );
    // Another KV type is another key: prefilled, not read into the wrong
    // cache; and its state is saved in that type (q8_0: 34 bytes for 32
    // values where f16 takes 64).
    let (other, _) = run(&["--kv-type", "q8_0"]);
    assert_eq!(other["kv"]["restored_tokens"], 0);
    let (f16, q8) = (
        cold["kv"]["saved_bytes"].as_u64().unwrap() as f64,
        other["kv"]["saved_bytes"].as_u64().unwrap() as f64,
    );
    assert!((0.5..0.6).contains(&(q8 / f16)), "q8_0 {q8} bytes, f16 {f16}");
    // A damaged state file is found, reported and ignored.
    for entry in std::fs::read_dir(dir.path().join("kv")).unwrap().flatten() {
        if entry.path().extension().is_some_and(|x| x == "kv") {
            let bytes = std::fs::read(entry.path()).unwrap();
            std::fs::write(entry.path(), &bytes[..bytes.len() / 2]).unwrap();
        }
    }
    let (after, stderr) = run(&[]);
    assert_eq!(after["kv"]["restored_tokens"], 0, "{stderr}");
    assert!(stderr.contains("ignored a damaged KV file"), "{stderr}");
    assert_eq!(after["answer"], cold["answer"]);
    // --no-kv-cache neither reads nor writes.
    let (off, _) = run(&["--no-kv-cache"]);
    assert_eq!(
        (off["kv"]["restored_tokens"].as_u64(), off["kv"]["saved_bytes"].as_u64()),
        (Some(0), Some(0))
    );
}

/// Sixty lines of a warehouse list, then the phrase: about 1,000 tokens.
fn corpus(word: &str) -> String {
    let body: String = (0..60)
        .map(|i| format!("Line {i}: the warehouse keeps item {i} on shelf {}.\n", i * 7))
        .collect();
    format!("{body}The vault unseal phrase is {word}.")
}

/// `question` over `doc` on `e`, greedy, 16 tokens at most.
fn ask_engine(e: &mut LlamaCppEngine, doc: &str, question: &str) -> Generation {
    let messages = [
        ChatMessage::new(Role::System, doc),
        ChatMessage::new(Role::User, question),
    ];
    let params = GenerateParams {
        max_tokens: 16,
        ..GenerateParams::default()
    };
    e.generate(&messages, &params, &mut |_| {}).unwrap()
}

/// The host tier: a follow-up in the same process starts from the
/// prefix's KV kept in memory, and answers exactly as a fresh prefill
/// does; a corpus whose end changed starts from the whole blocks it shares
/// with one in memory; under a budget too small for two corpora, the older
/// one is evicted and read again (never another corpus's KV).
#[test]
fn a_follow_up_in_process_reuses_the_prefix_from_memory_and_answers_the_same() {
    // The same lines after a different first one: no block in common.
    let unrelated = |word: &str| format!("The vault unseal phrase is {word}.\n{}", corpus(word));
    let ask = |e: &mut LlamaCppEngine, doc: &str| ask_engine(e, doc, "What is the vault unseal phrase?");
    let (a, b) = (corpus("amber-falcon-7731"), unrelated("cobalt-heron-2209"));
    let mut fresh = LlamaCppEngine::load(model(), LlamaCppOptions::default()).unwrap();
    let reference = ask(&mut fresh, &a);
    assert_eq!(reference.kv.reused_tokens, 0);

    let options = LlamaCppOptions {
        kv_host_bytes: 1 << 30,
        ..LlamaCppOptions::default()
    };
    let mut e = LlamaCppEngine::load(model(), options).unwrap();
    let cold = ask(&mut e, &a);
    let warm = ask(&mut e, &a);
    assert_eq!(cold.kv.reused_tokens, 0);
    assert!(warm.kv.reused_tokens > 400, "{:?}", warm.kv);
    assert!(warm.kv.prefilled_tokens < 40, "{:?}", warm.kv);
    assert_eq!(
        warm.text, reference.text,
        "greedy output after reuse equals a fresh prefill"
    );
    assert_eq!(cold.text, reference.text);
    // Another corpus is another key: read, not reused.
    let other = ask(&mut e, &b);
    assert_eq!(other.kv.reused_tokens, 0);
    // a with its last line changed shares a's whole blocks of 512 tokens:
    // those are copied from memory, the rest is read, and the answer is a
    // fresh prefill's.
    let edited = corpus("cobalt-heron-2209");
    let partial = ask(&mut e, &edited);
    let reused = partial.kv.reused_tokens;
    assert!(reused >= 512 && reused.is_multiple_of(512), "{:?}", partial.kv);
    assert_eq!(
        reused + partial.kv.prefilled_tokens,
        partial.prompt_tokens,
        "{:?}",
        partial.kv
    );
    assert_eq!(partial.text, ask(&mut fresh, &edited).text);

    // A budget that holds one prefix: b evicts a, and a is read again.
    let one = (u64::from(cold.prompt_tokens) * 30_000).max(1);
    let options = LlamaCppOptions {
        kv_host_bytes: one,
        ..LlamaCppOptions::default()
    };
    let mut small = LlamaCppEngine::load(model(), options).unwrap();
    let first = ask(&mut small, &a);
    let b1 = ask(&mut small, &b);
    let b2 = ask(&mut small, &b);
    let again = ask(&mut small, &a);
    assert_eq!(b1.kv.reused_tokens, 0);
    assert!(b2.kv.reused_tokens > 400, "the budget holds one prefix: {:?}", b2.kv);
    assert_eq!((first.kv.evictions, b1.kv.evictions), (0, 1), "b's prefix evicted a's");
    assert_eq!(again.kv.reused_tokens, 0, "evicted, so read again: {:?}", again.kv);
    assert_eq!(again.text, first.text);
}

/// Issue 24: a corpus of several windows whose KV does not all fit the
/// disk budget is told so before the sweep, keeps its first windows (they
/// never evict one another), says after the sweep which it did not keep and
/// why, and a second process restores the windows kept.
#[test]
fn a_sweep_over_the_disk_budget_keeps_its_first_windows_for_the_next_process() {
    let dir = tempfile::tempdir().unwrap();
    let q = "What is the vault unseal phrase?";
    // Three windows of at most 700 tokens (about 9, 9 and 13 MB of f16
    // KV): 0.02 GiB holds the first two, not all three.
    let opts = ["--context", "700", "--max-tokens", "48", "--kv-disk-gib", "0.02", "-v"];
    let out = ask(dir.path(), &data("needle"), q, &opts);
    let (cold, stderr) = (json(&out), text(&out.stderr));
    let windows = cold["windows"].as_array().unwrap().len();
    assert!(windows >= 3, "{cold:#}");
    let plan = &cold["plan"]["kv"];
    assert_eq!(plan["kv_type"], "f16", "{plan:#}");
    assert_eq!(
        plan["bytes_per_token"], 23_040.0,
        "30 layers x 3 KV heads x 64 x 2 (K, V) x 2 bytes"
    );
    let kept = plan["windows_kept"].as_u64().unwrap() as usize;
    assert!(kept >= 1 && kept < windows, "{plan:#}");
    assert!(stderr.contains("over the KV disk budget of 21 MiB"), "{stderr}");
    assert!(stderr.contains("--kv-type q8_0 takes"), "{stderr}");
    assert!(stderr.contains("not kept, over the budget: window"), "{stderr}");
    assert!(cold["kv"]["unsaved_tokens"].as_u64().unwrap() > 0, "{:#}", cold["kv"]);
    // A second process restores the windows kept, first to last, and reads
    // only the rest: the last windows did not push the first ones out.
    let out = ask(dir.path(), &data("needle"), q, &opts);
    let warm = json(&out);
    assert_eq!(warm["answer"], cold["answer"], "{}", text(&out.stderr));
    let restored = warm["kv"]["restored_tokens"].as_u64().unwrap();
    assert!(restored > 0, "{:#}", warm["kv"]);
    assert!(
        restored >= cold["kv"]["saved_bytes"].as_u64().unwrap() / 23_040 * 9 / 10,
        "what the first sweep kept comes back: {:#} vs {:#}",
        warm["kv"],
        cold["kv"]
    );
}

/// Issue 24, part 3: with resident contexts (`scout serve`, `scout batch`)
/// a follow-up over the same corpus reads only its question into the
/// context that still holds the corpus: no context made, no KV copied in
/// (counted), and its answer is the one a fresh read gives. Another corpus
/// gets its own context; a question too long for the context's room makes a
/// new one.
#[test]
fn follow_ups_are_read_into_the_resident_context_without_a_copy() {
    let doc = corpus("amber-falcon-7731");
    let questions = [
        "What is the vault unseal phrase?",
        "Which shelf keeps item 12?",
        "What does line 3 say?",
    ];
    let mut fresh = LlamaCppEngine::load(model(), LlamaCppOptions::default()).unwrap();
    let reference: Vec<String> = questions.iter().map(|q| ask_engine(&mut fresh, &doc, q).text).collect();
    let options = LlamaCppOptions {
        resident_bytes: 1 << 30,
        ..LlamaCppOptions::default()
    };
    let mut e = LlamaCppEngine::load(model(), options).unwrap();
    let answers: Vec<Generation> = questions.iter().map(|q| ask_engine(&mut e, &doc, q)).collect();
    assert_eq!(answers[0].kv.resident_tokens, 0, "the first reads the corpus");
    for g in &answers[1..] {
        assert!(g.kv.resident_tokens > 900, "{:?}", g.kv);
        assert_eq!(g.kv.resident_tokens, g.kv.reused_tokens);
        assert_eq!((g.kv.restored_tokens, g.kv.offloaded_bytes), (0, 0), "{:?}", g.kv);
        assert_eq!(
            g.kv.resident_tokens + g.kv.prefilled_tokens,
            g.prompt_tokens,
            "{:?}",
            g.kv
        );
    }
    assert_eq!(e.resident_hits(), 2);
    let texts: Vec<String> = answers.iter().map(|g| g.text.clone()).collect();
    assert_eq!(texts, reference, "the answers a fresh read gives");
    // Another corpus: its own context, read in full; the first one's is
    // still there for the next follow-up.
    let other = ask_engine(&mut e, &corpus("cobalt-heron-2209"), questions[0]);
    assert_eq!(other.kv.resident_tokens, 0);
    let back = ask_engine(&mut e, &doc, questions[1]);
    assert!(back.kv.resident_tokens > 900, "{:?}", back.kv);
    assert_eq!(back.text, reference[1]);
    // A question longer than the context's room: a new context, the same
    // answer a fresh read gives.
    let long = format!("{} {}", "Please read carefully.".repeat(150), questions[0]);
    let g = ask_engine(&mut e, &doc, &long);
    assert_eq!(g.kv.resident_tokens, 0, "{:?}", g.kv);
    assert_eq!(g.text, ask_engine(&mut fresh, &doc, &long).text);
}

/// Issue 24, part 2: a corpus edited in the middle, with `--kv-reuse
/// documents`. The KV before the edit is kept, the sections after it are
/// moved, only the edit is read; with everything after the first change
/// recomputed (share 1.0) the answer is a full read's (the identity case);
/// the counters add up to the prompt; the prefix laid out is saved and
/// restored whole by the next process; prefix reuse (the default) from the
/// same state stays exact.
#[test]
fn a_middle_edit_reads_only_the_edit_and_moves_the_documents_after_it() {
    let sections = |edited: bool| -> String {
        let mut out: String = (0..4)
            .map(|s| {
                let body: String = (0..30)
                    .map(|i| format!("Section {s} line {i}: crate {} holds {} bolts.\n", s * 100 + i, i * 3))
                    .collect();
                let added = if edited && s == 1 {
                    "An inspector added this line after the count.\n"
                } else {
                    ""
                };
                format!("## Section {s}\n{body}{added}")
            })
            .collect();
        out.push_str("The vault unseal phrase is amber-falcon-7731.");
        out
    };
    let (old, new) = (sections(false), sections(true));
    let q = "What is the vault unseal phrase?";
    let reference = ask_engine(
        &mut LlamaCppEngine::load(model(), LlamaCppOptions::default()).unwrap(),
        &new,
        q,
    );
    let dir = tempfile::tempdir().unwrap();
    let before = dir.path().join("before");
    let engine = |disk: &Path, reuse: KvReuse, share: f64| {
        let options = LlamaCppOptions {
            kv_disk: Some(DiskTier::new(disk.to_path_buf(), 1 << 30)),
            kv_reuse: reuse,
            kv_recompute: share,
            ..LlamaCppOptions::default()
        };
        LlamaCppEngine::load(model(), options).unwrap()
    };
    let cold = ask_engine(&mut engine(&before, KvReuse::Prefix, 0.0), &old, q);
    assert!(cold.kv.saved_bytes > 0, "{:?}", cold.kv);
    let adds_up = |g: &Generation| {
        let k = g.kv;
        assert_eq!(
            k.restored_tokens + k.shifted_tokens + k.recomputed_tokens + k.prefilled_tokens,
            g.prompt_tokens,
            "{k:?}"
        );
    };

    // Everything after the first change recomputed: nothing moves, the
    // stored state is cut at the first changed token (not at a block).
    let all = copy_dir(&before, &dir.path().join("all"));
    let g = ask_engine(&mut engine(&all, KvReuse::Documents, 1.0), &new, q);
    adds_up(&g);
    assert!(g.kv.restored_tokens > 512, "{:?}", g.kv);
    assert!(!g.kv.restored_tokens.is_multiple_of(512), "{:?}", g.kv);
    assert_eq!(g.kv.shifted_tokens, 0, "{:?}", g.kv);
    assert_eq!(g.text, reference.text, "recomputing everything moved is a full read");

    let none = copy_dir(&before, &dir.path().join("none"));
    let moved = ask_engine(&mut engine(&none, KvReuse::Documents, 0.0), &new, q);
    adds_up(&moved);
    assert!(moved.kv.shifted_tokens > 500, "{:?}", moved.kv);
    assert!(
        moved.kv.prefilled_tokens < 120,
        "the edit and the question: {:?}",
        moved.kv
    );
    let next = ask_engine(&mut engine(&none, KvReuse::Documents, 0.0), &new, q);
    assert_eq!(next.kv.shifted_tokens, 0, "{:?}", next.kv);
    assert!(next.kv.prefilled_tokens < 40, "restored whole: {:?}", next.kv);
    assert_eq!(next.text, moved.text, "the state saved is the one the answer read");
    let again = copy_dir(&before, &dir.path().join("again"));
    let (laid, saved) = (
        first_token(&mut engine(&again, KvReuse::Documents, 0.0), &new, q),
        first_token(&mut engine(&again, KvReuse::Documents, 0.0), &new, q),
    );
    assert_eq!(laid, saved, "the first token's candidates, to the bit");

    let exact = copy_dir(&before, &dir.path().join("prefix"));
    let p = ask_engine(&mut engine(&exact, KvReuse::Prefix, 0.0), &new, q);
    assert_eq!((p.kv.shifted_tokens, p.kv.recomputed_tokens), (0, 0));
    assert!(p.kv.restored_tokens >= 512, "{:?}", p.kv);
    assert_eq!(p.text, reference.text);

    // An edit in the first block: no block of the stored state matches the
    // prompt's, so the state is found by its content.
    let early = old.replacen("Section 0 line 1:", "Section 0 line 1 (recounted):", 1);
    let found = copy_dir(&before, &dir.path().join("early"));
    let g = ask_engine(&mut engine(&found, KvReuse::Documents, 0.0), &early, q);
    adds_up(&g);
    assert!(g.kv.restored_tokens < 512, "{:?}", g.kv);
    assert!(g.kv.shifted_tokens > 1000, "{:?}", g.kv);
}

/// A copy of a disk tier's folder: each engine above starts from the state
/// before the edit.
fn copy_dir(from: &Path, to: &Path) -> std::path::PathBuf {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
    to.to_path_buf()
}

/// The first answer token's ten most likely candidates.
fn first_token(e: &mut LlamaCppEngine, doc: &str, question: &str) -> Vec<(u32, f32)> {
    let messages = [
        ChatMessage::new(Role::System, doc),
        ChatMessage::new(Role::User, question),
    ];
    let params = GenerateParams {
        max_tokens: 1,
        first_logprobs: 10,
        ..GenerateParams::default()
    };
    e.generate(&messages, &params, &mut |_| {}).unwrap().first_logprobs
}

/// `--kv-reuse documents` through `scout ask`: after a file in the middle
/// of a folder is edited (its time kept, so it stays where it was), the
/// next question keeps the KV before the edit, moves the files after it,
/// and says so in `--json` and `--verbose`; the counters add up over its
/// calls.
#[test]
fn scout_ask_moves_the_kv_of_the_files_after_an_edit() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("notes");
    std::fs::create_dir(&src).unwrap();
    for (i, name) in ["a.md", "b.md", "c.md", "d.md"].iter().enumerate() {
        let body: String = (0..25)
            .map(|l| format!("Shelf {i}-{l} holds {} crates of bolts.\n", i * 40 + l))
            .collect();
        std::fs::write(src.join(name), body).unwrap();
    }
    let cache = dir.path().join("cache");
    let q = "How many crates does shelf 3-7 hold?";
    let cold = ask(&cache, &src, q, &[]);
    assert_eq!(cold.status.code(), Some(0), "{}", text(&cold.stderr));
    let b = src.join("b.md");
    let time = std::fs::metadata(&b).unwrap().modified().unwrap();
    let mut body = std::fs::read_to_string(&b).unwrap();
    body.insert_str(body.len() / 2, "An inspector recounted this shelf.\n");
    std::fs::write(&b, body).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&b)
        .unwrap()
        .set_modified(time)
        .unwrap();
    let out = ask(&cache, &src, q, &["--kv-reuse", "documents", "--verbose"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let (r, said) = (json(&out), text(&out.stderr));
    let kv = &r["kv"];
    let n = |k: &str| kv[k].as_u64().unwrap();
    assert!(n("shifted_tokens") > 300, "{kv:#}");
    assert!(n("restored_tokens") > 100, "{kv:#}");
    assert_eq!(
        n("restored_tokens")
            + n("reused_tokens")
            + n("shifted_tokens")
            + n("recomputed_tokens")
            + n("prefilled_tokens"),
        r["usage"]["prompt_tokens"].as_u64().unwrap(),
        "{kv:#}"
    );
    assert!(said.contains("moved from before an edit"), "{said}");
}
