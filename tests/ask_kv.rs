//! `scout ask`'s KV cache end to end with the real default model: the
//! blocks kept after an edit, a prefill resumed from its checkpoint,
//! questions forked over one corpus, a pinned corpus.

use crate::util::{ask, data, json, model, scout, text};

/// A corpus file of the needle's files and three logs of filler that come
/// after them (written later: the least recently changed go first), read
/// in two map windows (about 7,500 and 600 prompt tokens); returns the
/// corpus file. Asking the corpus file
/// from two cache folders gives the same prompt (one salt) with and without
/// stored KV, read in the same batches (llama.cpp's sums depend on how the
/// prompt is cut into batches, so that is the fair comparison).
fn grown_needle(dir: &std::path::Path) -> std::path::PathBuf {
    fn copy(from: &std::path::Path, to: &std::path::Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap().flatten() {
            let target = to.join(entry.file_name());
            if entry.path().is_dir() {
                copy(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), target).unwrap();
            }
        }
    }
    let root = dir.join("tree");
    copy(&data("needle"), &root);
    for log in ["log-a.txt", "log-b.txt", "log-c.txt"] {
        std::thread::sleep(std::time::Duration::from_millis(20));
        let lines: String = (1..=90)
            .map(|i| {
                format!(
                    "{log} entry {i}: pump {} ran {} minutes in bay {}.\n",
                    i % 7,
                    i * 3 % 50,
                    i % 11
                )
            })
            .collect();
        std::fs::write(root.join(log), lines).unwrap();
    }
    ingest_tree(dir);
    dir.join("c.scout.db")
}

/// The ask ran to an answer: exit 0 (backed by the corpus) or 1 (not
/// backed). Which of the two depends on the 135M model's luck with this
/// corpus's random salt, not on the KV path these tests check; they compare
/// the answer with a fresh read's instead.
fn assert_answered(out: &std::process::Output) {
    assert!(matches!(out.status.code(), Some(0 | 1)), "{}", text(&out.stderr));
}

fn ingest_tree(dir: &std::path::Path) {
    let out = crate::util::ingest(dir, &dir.join("c.scout.db"), &dir.join("tree"), &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// Block-level prefix matching on the disk tier: after the last file of a
/// corpus changes, the next question restores the blocks before it (from
/// the state the first question saved) and reads only the rest, and the
/// answer is the one a fresh read gives.
#[test]
fn an_edited_corpus_reuses_its_unchanged_blocks_and_answers_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = grown_needle(dir.path());
    let q = "What is the vault unseal phrase?";
    let run = |cache: &std::path::Path| {
        let out = ask(cache, &corpus, q, &[]);
        assert_answered(&out);
        json(&out)
    };
    let cold = run(dir.path());
    assert!(cold["kv"]["saved_bytes"].as_u64().unwrap() > 0, "{:#}", cold["kv"]);
    // The last file changes: its tokens and everything after differ.
    std::fs::write(
        dir.path().join("tree/log-c.txt"),
        "log-c.txt was rotated; nothing in it yet.\n",
    )
    .unwrap();
    ingest_tree(dir.path());
    let edited = run(dir.path());
    let restored = edited["kv"]["restored_tokens"].as_u64().unwrap();
    let prefilled = edited["kv"]["prefilled_tokens"].as_u64().unwrap();
    let prompt = edited["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(restored >= 1024 && restored.is_multiple_of(512), "{:#}", edited["kv"]);
    assert_eq!(restored + prefilled, prompt);
    let other = tempfile::tempdir().unwrap();
    let fresh = run(other.path());
    assert_eq!(fresh["kv"]["restored_tokens"], 0);
    assert_eq!(
        edited["answer"], fresh["answer"],
        "greedy output after a block restore equals a fresh read"
    );
}

/// A prefill killed mid-way (SIGKILL after its first checkpoint) resumes
/// from the checkpoint in the next process, answers as a fresh read does,
/// and leaves no checkpoint behind once the prefix is whole.
#[test]
fn an_interrupted_prefill_resumes_from_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = grown_needle(dir.path());
    let q = "What is the vault unseal phrase?";
    let kv = dir.path().join("kv");
    let checkpoints = || -> usize {
        std::fs::read_dir(&kv).map_or(0, |d| {
            d.flatten()
                .filter(|e| {
                    let path = e.path();
                    let stem = path.file_stem().unwrap_or_default().to_string_lossy().into_owned();
                    stem.starts_with("part-") && path.extension().is_some_and(|x| x == "sum")
                })
                .count()
        })
    };
    let mut child = scout(dir.path())
        .args(["ask", "--json", "--threads", "1", "--kv-checkpoint", "0", "--model"])
        .arg(model())
        .arg(&corpus)
        .arg(q)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while checkpoints() == 0 {
        assert!(child.try_wait().unwrap().is_none(), "finished before a checkpoint");
        assert!(started.elapsed().as_secs() < 300, "no checkpoint came");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();

    let out = ask(dir.path(), &corpus, q, &["--kv-checkpoint", "0"]);
    assert_answered(&out);
    let resumed = json(&out);
    let restored = resumed["kv"]["restored_tokens"].as_u64().unwrap();
    assert!(restored >= 512 && restored.is_multiple_of(512), "{:#}", resumed["kv"]);
    assert_eq!(checkpoints(), 0, "the whole prefix replaced its checkpoint");
    let other = tempfile::tempdir().unwrap();
    let fresh = json(&ask(other.path(), &corpus, q, &[]));
    assert_eq!(fresh["kv"]["restored_tokens"], 0);
    assert_eq!(resumed["answer"], fresh["answer"]);
}

/// Forks: three questions over one corpus read it once and fork its KV
/// into one sequence each; decoded in turn (a CPU's default), each answer
/// is the one a fresh prefill of that question alone gives. A second batch finds the
/// prefix in memory; a batch whose prompts share nothing runs one by one.
#[test]
fn questions_over_one_corpus_fork_its_kv_and_answer_as_alone() {
    use scout::engine::llamacpp::{LlamaCppEngine, LlamaCppOptions};
    use scout::engine::{ChatMessage, Engine, EngineEvent, GenerateParams, Role};
    let body: String = (0..60)
        .map(|i| format!("Line {i}: the warehouse keeps item {i} on shelf {}.\n", i * 7))
        .collect();
    let corpus = format!("{body}The vault unseal phrase is amber-falcon-7731. The loading dock opens at 06:00.");
    let questions = [
        "What is the vault unseal phrase?",
        "When does the loading dock open?",
        "Which shelf holds item 12?",
    ];
    let conversations: Vec<Vec<ChatMessage>> = questions
        .iter()
        .map(|q| {
            vec![
                ChatMessage::new(Role::System, corpus.as_str()),
                ChatMessage::new(Role::User, *q),
            ]
        })
        .collect();
    let params = GenerateParams {
        max_tokens: 16,
        ..GenerateParams::default()
    };
    let mut fresh = LlamaCppEngine::load(model(), LlamaCppOptions::default()).unwrap();
    let alone: Vec<_> = conversations
        .iter()
        .map(|c| fresh.generate(c, &params, &mut |_| {}).unwrap())
        .collect();

    // The forked answers, and the text each streamed.
    let forked_and_streamed = |e: &mut LlamaCppEngine| {
        let mut streamed = vec![String::new(); conversations.len()];
        let forked = e
            .generate_forked(&conversations, &params, &mut |i, ev| {
                if let EngineEvent::Text(t) = ev {
                    streamed[i].push_str(t);
                }
            })
            .unwrap();
        (forked, streamed)
    };
    let options = LlamaCppOptions {
        kv_host_bytes: 1 << 30,
        ..LlamaCppOptions::default()
    };
    let mut e = LlamaCppEngine::load(model(), options).unwrap();
    let (forked, streamed) = forked_and_streamed(&mut e);
    assert_eq!(forked.len(), 3);
    let prompt = |i: usize| alone[i].prompt_tokens;
    for (i, g) in forked.iter().enumerate() {
        assert_eq!(g.text, alone[i].text, "question {i}: a fork answers as a fresh prefill");
        assert_eq!(g.text, streamed[i], "question {i}: the stream is the answer");
        assert_eq!(g.prompt_tokens, prompt(i));
    }
    // The first sequence read the corpus; the others forked it and read
    // only their questions.
    let shared = forked[1].kv.forked_tokens;
    assert!(shared > 500, "{:?}", forked[1].kv);
    assert_eq!(forked[0].kv.forked_tokens, 0);
    assert_eq!(forked[0].kv.prefilled_tokens, prompt(0), "{:?}", forked[0].kv);
    for (i, g) in forked.iter().enumerate().skip(1) {
        assert_eq!(g.kv.forked_tokens, shared);
        assert_eq!(g.kv.prefilled_tokens, prompt(i) - shared, "{:?}", g.kv);
    }
    // Again: the prefix comes from memory.
    let again = e.generate_forked(&conversations, &params, &mut |_, _| {}).unwrap();
    assert_eq!(again[0].kv.reused_tokens, shared, "{:?}", again[0].kv);
    assert_eq!(
        again.iter().map(|g| g.text.as_str()).collect::<Vec<_>>(),
        alone.iter().map(|g| g.text.as_str()).collect::<Vec<_>>()
    );
    // Different corpora share no prefix: answered one by one, as alone.
    let other = vec![
        ChatMessage::new(Role::System, "The gate code is 4417."),
        ChatMessage::new(Role::User, questions[0]),
    ];
    let mixed = e
        .generate_forked(&[conversations[0].clone(), other], &params, &mut |_, _| {})
        .unwrap();
    assert_eq!(mixed[0].text, alone[0].text);
    assert_eq!(mixed[1].kv.forked_tokens, 0);

    // Decoded together, one token of every question per batch (what a GPU
    // gains from): the same forks; a batch of several rows may round
    // differently, so the answers' shape is checked, not their words.
    let options = LlamaCppOptions {
        decode_forks_together: true,
        ..LlamaCppOptions::default()
    };
    let mut together = LlamaCppEngine::load(model(), options).unwrap();
    let (side_by_side, streamed) = forked_and_streamed(&mut together);
    for (i, g) in side_by_side.iter().enumerate() {
        assert_eq!(g.text, streamed[i], "question {i}");
        assert_eq!(g.prompt_tokens, prompt(i));
        assert!(g.completion_tokens > 0, "{g:?}");
    }
    assert_eq!(side_by_side[2].kv.forked_tokens, shared);
}

/// A pinned corpus stays in memory under a budget that holds one: another
/// corpus's KV is not kept instead of evicting it, and a question over the
/// pinned one still starts from its copy.
#[test]
fn a_pinned_corpus_is_never_evicted_for_another() {
    use scout::engine::llamacpp::{LlamaCppEngine, LlamaCppOptions};
    use scout::engine::{ChatMessage, Engine, GenerateParams, Role};
    let corpus = |word: &str| {
        let body: String = (0..60)
            .map(|i| format!("Line {i}: {word} keeps item {i} on shelf {}.\n", i * 7))
            .collect();
        format!("{body}The vault unseal phrase is {word}.")
    };
    let ask = |e: &mut LlamaCppEngine, doc: &str, pin: bool| {
        let messages = [
            ChatMessage::new(Role::System, doc),
            ChatMessage::new(Role::User, "What is the vault unseal phrase?"),
        ];
        let params = GenerateParams {
            max_tokens: 8,
            pin_prefix: pin,
            ..GenerateParams::default()
        };
        e.generate(&messages, &params, &mut |_| {}).unwrap()
    };
    let (a, b) = (corpus("amber-falcon"), corpus("cobalt-heron"));
    let mut probe = LlamaCppEngine::load(
        model(),
        LlamaCppOptions {
            kv_host_bytes: 1 << 30,
            ..LlamaCppOptions::default()
        },
    )
    .unwrap();
    let one = ask(&mut probe, &a, false).kv.offloaded_bytes;
    assert!(one > 0);
    // Room for one prefix and a half.
    let mut e = LlamaCppEngine::load(
        model(),
        LlamaCppOptions {
            kv_host_bytes: one * 3 / 2,
            ..LlamaCppOptions::default()
        },
    )
    .unwrap();
    let first = ask(&mut e, &a, true);
    assert!(first.kv.offloaded_bytes > 0, "{:?}", first.kv);
    let other = ask(&mut e, &b, false);
    assert_eq!(other.kv.evictions, 0, "the pinned prefix stays: {:?}", other.kv);
    assert_eq!(other.kv.offloaded_bytes, 0, "and the other is not kept: {:?}", other.kv);
    let again = ask(&mut e, &a, true);
    assert!(again.kv.reused_tokens > 400, "{:?}", again.kv);
    assert_eq!(again.text, first.text);
}
