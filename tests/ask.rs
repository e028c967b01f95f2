//! `scout ask` end to end with the real default model.

use std::collections::BTreeSet;

use crate::util::{ask, data, json, model, scout, text};

fn valid_paths(result: &serde_json::Value) -> Vec<String> {
    result["citations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "valid")
        .map(|c| {
            c["anchor"]
                .as_str()
                .unwrap()
                .split([':', '#'])
                .next()
                .unwrap()
                .to_owned()
        })
        .collect()
}

/// The needle: a distinctive string in one file of several. The answer
/// must contain it and a valid citation must point at that file.
#[test]
fn finds_the_needle_and_cites_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = ask(dir.path(), &data("needle"), "What is the vault unseal phrase?", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let r = json(&out);
    let answer = r["answer"].as_str().unwrap();
    assert!(answer.contains("amber-falcon-7731"), "answer: {answer}");
    assert_eq!(r["found"], true);
    let paths = valid_paths(&r);
    assert!(
        paths.iter().any(|p| p.ends_with("needle/src/vault/config.py")),
        "citations: {:#}",
        r["citations"]
    );
    let needle_cite = r["citations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["anchor"].as_str().unwrap().contains("vault/config.py"))
        .unwrap();
    assert!(
        needle_cite["quote"].as_str().unwrap().contains("amber-falcon-7731"),
        "{needle_cite:#}"
    );
}

#[test]
fn json_has_the_documented_shape() {
    let dir = tempfile::tempdir().unwrap();
    let out = ask(
        dir.path(),
        &data("needle"),
        "What is the vault unseal phrase?",
        &["--max-tokens", "48"],
    );
    let r = json(&out);
    for key in [
        "answer",
        "citations",
        "usage",
        "windows",
        "timings",
        "found",
        "model",
        "engine",
        "corpus",
    ] {
        assert!(r.get(key).is_some(), "missing {key}: {r:#}");
    }
    for c in r["citations"].as_array().unwrap() {
        assert!(
            ["valid", "out_of_range", "unknown"].contains(&c["status"].as_str().unwrap()),
            "{c}"
        );
        assert!(["model", "attribution"].contains(&c["source"].as_str().unwrap()), "{c}");
        assert!(c["anchor"].is_string());
    }
    let u = &r["usage"];
    assert_eq!(u["calls"], 1, "the needle corpus fits one window");
    assert!(u["prompt_tokens"].as_u64().unwrap() > 300);
    assert!(u["completion_tokens"].as_u64().unwrap() <= 48);
    assert_eq!(
        u["total_tokens"].as_u64(),
        Some(u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap())
    );
    assert_eq!(r["windows"].as_array().unwrap().len(), 1);
    assert!(r["timings"]["ttft_ms"].as_u64().unwrap() <= r["timings"]["total_ms"].as_u64().unwrap());
}

#[test]
fn streams_the_answer_then_lists_citations_by_source() {
    let dir = tempfile::tempdir().unwrap();
    let out = scout(dir.path())
        .args(["ask", "--threads", "1", "--model"])
        .arg(model())
        .arg(data("needle"))
        .arg("What is the vault unseal phrase?")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let answer_at = stdout.find("amber-falcon-7731").expect("answer on stdout");
    let model_at = stdout
        .find("Citations written by the model:")
        .expect("model citations block");
    let found_at = stdout.find("Found by scout in the corpus:").expect("attribution block");
    assert!(answer_at < model_at && model_at < found_at, "{stdout}");
    assert!(stdout.contains("[ok] "), "{stdout}");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("answering ("),
        "the step is reported on stderr: {stderr}"
    );
}

#[test]
fn an_answer_the_corpus_does_not_back_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let out = ask(
        dir.path(),
        &data("needle"),
        "What is the capital of France?",
        &["--max-tokens", "40"],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let r = json(&out);
    assert!(valid_paths(&r).is_empty() || r["found"] == false, "{r:#}");
}

/// A context too small for the corpus: windows, every document read
/// exactly once, a map call per window, and the needle still found.
#[test]
fn windows_cover_every_document_once_and_still_find_the_needle() {
    let dir = tempfile::tempdir().unwrap();
    let out = ask(
        dir.path(),
        &data("needle"),
        "What is the vault unseal phrase?",
        &["--context", "700", "--max-tokens", "64"],
    );
    let r = json(&out);
    let windows = r["windows"].as_array().unwrap();
    assert!(windows.len() >= 2, "{r:#}");
    let mut seen = BTreeSet::new();
    let mut total = 0;
    for w in windows {
        assert!(w["tokens"].as_u64().unwrap() <= 700);
        assert!(w["notes"].is_string(), "every window was read: {w}");
        for d in w["documents"].as_array().unwrap() {
            seen.insert(d.as_str().unwrap().to_owned());
            total += 1;
        }
    }
    assert_eq!(seen.len(), 5, "all five documents appear: {seen:?}");
    assert_eq!(total, 5, "each in one window only");
    // A map call per window, and a reduce call only when more than one
    // window's notes were grounded in its own documents.
    let grounded = windows.iter().filter(|w| w["grounded"] == true).count();
    assert!(grounded >= 1, "the window with the needle is grounded: {r:#}");
    let calls = r["usage"]["calls"].as_u64().unwrap() as usize;
    assert_eq!(calls, windows.len() + usize::from(grounded > 1), "{r:#}");
    assert!(r["answer"].as_str().unwrap().contains("amber-falcon-7731"), "{r:#}");
    // The sweep said its plan first: nothing held yet, no rate measured.
    assert_eq!(r["plan"]["windows"].as_u64(), Some(windows.len() as u64), "{r:#}");
    assert_eq!(r["plan"]["held_tokens"], 0, "{r:#}");
    assert!(r["plan"].get("estimate_s").is_none(), "{r:#}");
    // Planned again: each window's corpus part is now in the KV cache on
    // disk, and the first run's rate gives an estimate; no model call.
    let out = ask(
        dir.path(),
        &data("needle"),
        "What is the vault unseal phrase?",
        &["--context", "700", "--max-tokens", "64", "--dry-run"],
    );
    let plan = &json(&out)["plan"];
    let (held, prompt) = (
        plan["held_tokens"].as_u64().unwrap(),
        plan["prompt_tokens"].as_u64().unwrap(),
    );
    assert!(held > prompt / 2 && held < prompt, "{plan:#}");
    assert!(plan["estimate_s"].as_f64().unwrap() > 0.0, "{plan:#}");
    assert_eq!(
        plan["dispatch"].as_str().unwrap().split(' ').next(),
        Some("one"),
        "{plan:#}"
    );
}

#[test]
fn asks_a_corpus_made_by_ingest() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("needle.scout.db");
    let out = scout(dir.path())
        .args(["ingest", "--no-tokens", "--corpus"])
        .arg(&corpus)
        .arg(data("needle"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = ask(dir.path(), &corpus, "What is the vault unseal phrase?", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let r = json(&out);
    assert_eq!(r["corpus"].as_str().unwrap(), corpus.to_str().unwrap());
    assert!(r["answer"].as_str().unwrap().contains("amber-falcon-7731"));
}

#[test]
fn a_page_citation_names_its_bookmarked_section() {
    let dir = tempfile::tempdir().unwrap();
    let out = ask(
        dir.path(),
        &data("pdfs/bookmarked.pdf"),
        "How many days overdue was the key rotation?",
        &[],
    );
    let r = json(&out);
    let cite = r["citations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["anchor"].as_str().unwrap().ends_with("bookmarked.pdf#page=2"))
        .unwrap_or_else(|| panic!("no citation of page 2: {r:#}"));
    assert_eq!(cite["symbol"], "section Findings", "{cite}");
    assert_eq!(cite["status"], "valid");
}

/// A scanned page (an image rendered from a PDF): OCR reads it, and the
/// answer is cited as a region of the page.
#[test]
fn answers_from_a_scanned_page_with_a_region_citation() {
    let dir = tempfile::tempdir().unwrap();
    let out = ask(dir.path(), &data("scans"), "Who is the service owner?", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let r = json(&out);
    assert!(r["answer"].as_str().unwrap().contains("Priya Raman"), "{r:#}");
    let cite = r["citations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["quote"].as_str().is_some_and(|q| q.contains("Priya Raman")))
        .unwrap_or_else(|| panic!("{r:#}"));
    assert_eq!(cite["status"], "valid");
    // The same page is in the folder twice (a PNG scan and page 2 of the
    // scanned PDF); either is a right citation, as a region of the page.
    let anchor = cite["anchor"].as_str().unwrap();
    assert!(
        anchor.contains("handbook-page2.png#page=1&bbox=") || anchor.contains("scanned-handbook.pdf#page=2&bbox="),
        "{anchor}"
    );
}

#[test]
fn answers_from_a_scanned_pdf_page() {
    let dir = tempfile::tempdir().unwrap();
    let out = ask(
        dir.path(),
        &data("scans/scanned-handbook.pdf"),
        "How often is the inventory database backed up?",
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let r = json(&out);
    assert!(r["answer"].as_str().unwrap().contains("6 hours"), "{r:#}");
    let anchors: Vec<&str> = r["citations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["anchor"].as_str().unwrap())
        .collect();
    assert!(
        anchors.iter().any(|a| a.contains("scanned-handbook.pdf#page=1&bbox=")),
        "{anchors:?}"
    );
}

#[test]
fn a_quantized_kv_cache_in_host_memory_still_finds_the_needle() {
    let dir = tempfile::tempdir().unwrap();
    // q8_0 (q4_0 runs too, but on a 135M model its answers drift).
    let out = ask(
        dir.path(),
        &data("needle"),
        "What is the vault unseal phrase?",
        &["--kv-type", "q8_0", "--kv-on-host"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let answer = json(&out)["answer"].as_str().unwrap().to_owned();
    assert!(answer.contains("amber-falcon-7731"), "{answer}");
    // A GPU flag on a CPU-only build says it does nothing.
    let out = ask(
        dir.path(),
        &data("needle"),
        "What is the vault unseal phrase?",
        &["--n-gpu-layers", "99"],
    );
    assert!(
        cfg!(feature = "cuda") || text(&out.stderr).contains("--n-gpu-layers has no effect"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn the_llamacpp_engine_constrains_output_to_a_json_schema() {
    use scout::engine::llamacpp::{LlamaCppEngine, LlamaCppOptions};
    use scout::engine::Engine;
    let mut e = LlamaCppEngine::load(model(), LlamaCppOptions::default()).unwrap();
    assert!(e.capabilities().json_schema);
    let params = crate::util::port_service_params();
    let messages = crate::util::port_service_messages();
    let g = e.generate(&messages, &params, &mut |_| {}).unwrap();
    crate::util::assert_port_service_json(&g.text);
}

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

    let options = LlamaCppOptions {
        kv_host_bytes: 1 << 30,
        ..LlamaCppOptions::default()
    };
    let mut e = LlamaCppEngine::load(model(), options).unwrap();
    let mut streamed = vec![String::new(); 3];
    let forked = e
        .generate_forked(&conversations, &params, &mut |i, ev| {
            if let EngineEvent::Text(t) = ev {
                streamed[i].push_str(t);
            }
        })
        .unwrap();
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
    let mut streamed = vec![String::new(); 3];
    let side_by_side = together
        .generate_forked(&conversations, &params, &mut |i, ev| {
            if let EngineEvent::Text(t) = ev {
                streamed[i].push_str(t);
            }
        })
        .unwrap();
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

/// The answer-quality issue's corpus: a Rust file, a changelog and
/// docs/ops.md holding the value. The default model's first answer tends to
/// copy the citation syntax or cite the Rust file; scout then asks again
/// over the lines that match the question. Five corpora, five boundary
/// salts: the answer holds the value every time.
#[test]
fn a_plain_question_gets_the_value_whatever_the_salt() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("docs")).unwrap();
    std::fs::create_dir_all(src.join("src")).unwrap();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/src/pack/left.rs"),
        src.join("src/left.rs"),
    )
    .unwrap();
    std::fs::write(
        src.join("CHANGELOG.md"),
        "# Changelog\n\n## 0.3.0\n- Faster ingest.\n- New pack command.\n\n## 0.2.0\n- Windows for long corpora.\n",
    )
    .unwrap();
    std::fs::write(
        src.join("docs/ops.md"),
        "# Operations\n\nDeploys happen on Tuesdays.\n\nThe vault access code is KESTREL-4471.\n\nBackups run nightly at 02:00 UTC.\n",
    )
    .unwrap();
    for salt in 0..5 {
        let corpus = dir.path().join(format!("c{salt}.scout.db"));
        let made = scout(cache.path())
            .args(["ingest", "-q", "--corpus"])
            .arg(&corpus)
            .arg(&src)
            .output()
            .unwrap();
        assert!(made.status.success(), "{}", text(&made.stderr));
        let out = ask(cache.path(), &corpus, "What is the vault access code?", &[]);
        let r = json(&out);
        assert!(
            r["answer"].as_str().unwrap().contains("KESTREL-4471"),
            "salt {salt}: {r}"
        );
        assert!(
            valid_paths(&r).iter().any(|p| p.ends_with("docs/ops.md")),
            "salt {salt}: {r}"
        );
    }
}
