//! Reliability, second pass: defects found by attacking scout as an outsider
//! and a careless operator would, each a test that reproduces it with the
//! real binary. Numbered as in docs/RELIABILITY.md (cases 26 onwards; 26
//! and 27 are in `serve_access.rs`).

use std::path::Path;

use crate::util::{model, scout, text};

/// `scout ask examples/demo` with its own cache folder: (exit code,
/// stdout, stderr).
fn ask_demo(cache: &Path) -> (Option<i32>, String, String) {
    let out = scout(cache)
        .args([
            "ask",
            "examples/demo",
            "What port does the server listen on?",
            "--max-tokens",
            "12",
            "-v",
        ])
        .arg("--model")
        .arg(model())
        .output()
        .unwrap();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

/// The state file and checksum file of the one prefix saved in `cache`.
fn saved_state(cache: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let kv = std::fs::read_dir(cache.join("kv"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "kv"))
        .expect("a saved state");
    let sum = kv.with_extension("sum");
    (kv, sum)
}

/// Case 29: a state file checked in short (a nearly full disk cut the
/// write 3 KB short, and it was hashed and renamed anyway) aborted every
/// later ask in llama.cpp (`GGML_ASSERT(nread <= state_size)`, SIGABRT).
/// The write is now checked against what llama.cpp says it wrote, and the
/// checksum file records the length, so a short state is never offered:
/// here, one left by an older scout (its checksum file holds the hash of
/// the short file alone) and one whose length was cut after check-in.
#[test]
fn r29_a_short_state_file_is_removed_and_the_corpus_read_again() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path();
    let (code, _, err) = ask_demo(cache);
    assert_eq!(code, Some(0), "{err}");
    let (kv, sum) = saved_state(cache);
    let full = std::fs::read(&kv).unwrap();
    let short = &full[..full.len() - 3000];

    // As an older scout checked it in: the short file and its own hash.
    std::fs::write(&kv, short).unwrap();
    std::fs::write(&sum, blake3::hash(short).to_hex().as_str()).unwrap();
    let (code, out, err) = ask_demo(cache);
    assert_eq!(code, Some(0), "no abort: {err}");
    assert!(out.contains("8412"), "{out}");
    assert!(err.contains("ignored a damaged KV file"), "{err}");
    assert!(err.contains("prefilled"), "{err}");

    // Saved again whole; then cut, its checksum file left as it was.
    let (kv, _) = saved_state(cache);
    let whole = std::fs::read(&kv).unwrap();
    std::fs::write(&kv, &whole[..whole.len() - 3000]).unwrap();
    let (code, _, err) = ask_demo(cache);
    assert_eq!(code, Some(0), "no abort: {err}");
    assert!(err.contains("bytes where"), "{err}");
}

/// Case 33: file names reached the summary raw (an ESC sequence in a name
/// rewrote the user's terminal, a newline forged a summary line) and file
/// contents reached citation quotes raw.
#[test]
fn r33_control_characters_from_files_are_escaped_on_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tree");
    std::fs::create_dir(&root).unwrap();
    // Binary files are listed as skips, with their names.
    std::fs::write(root.join("title\x1b]0;pwned\x07.txt"), b"\0\0binary").unwrap();
    std::fs::write(root.join("x\nskipped: none\n.txt"), b"\0\0binary").unwrap();
    std::fs::write(root.join("vault.md"), "The vault access code is KESTREL-4471.\x1b[2J\n").unwrap();
    let cache = dir.path().join("cache");
    let out = scout(&cache)
        .args(["ingest", "--no-tokens", "--corpus"])
        .arg(dir.path().join("c.db"))
        .arg(&root)
        .output()
        .unwrap();
    let summary = text(&out.stdout);
    assert!(!summary.contains('\x1b') && !summary.contains('\x07'), "{summary:?}");
    assert!(summary.contains("title\\x1B]0;pwned\\x07.txt"), "{summary}");
    assert_eq!(
        summary.lines().filter(|l| l.starts_with("skipped:")).count(),
        1,
        "no forged summary line: {summary}"
    );
    let out = scout(&cache)
        .arg("ask")
        .arg(dir.path().join("c.db"))
        .args(["What is the vault access code?", "--max-tokens", "24"])
        .arg("--model")
        .arg(model())
        .output()
        .unwrap();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(matches!(out.status.code(), Some(0 | 1)), "{stderr}");
    assert!(!stderr.contains('\x1b'), "{stderr:?}");
    assert!(stdout.contains("vault.md"), "the quote's file is cited: {stdout}");
    // The answer itself goes to a pipe here, as written; the citations
    // block is for people, escaped.
    let citations = stdout
        .split("Citations written by the model:")
        .nth(1)
        .unwrap_or_default();
    assert!(!citations.contains('\x1b'), "{citations:?}");
}

/// Case 31: each `POST /v1/batches` started its own thread and engine with
/// no bound (16 at once took the server from 275 MB to 1.6 GB). Batches now
/// run at most `--batches` at once; past that, 429.
#[test]
fn r31_batches_past_the_bound_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = crate::serve::Serve::start(dir.path(), &["--api-key-env", "SCOUT_TEST_KEY", "--batches", "1"]);
    let needle = crate::util::data("needle").display().to_string();
    let jobs = serde_json::json!({"id": "a", "task": "ask", "paths": [needle], "question": "What is the vault unseal phrase?", "max_tokens": 48}).to_string() + "\n";
    let (first, body) = s.post_jobs(&jobs);
    assert_eq!(first, 202, "{body}");
    let refused: Vec<u16> = (0..5).map(|_| s.post_jobs(&jobs).0).collect();
    assert!(refused.iter().all(|&c| c == 429), "{refused:?}");
    // Once the first is done, a new one runs.
    let started = std::time::Instant::now();
    loop {
        let (status, body) = s.post_jobs(&jobs);
        if status == 202 {
            break;
        }
        assert_eq!(status, 429, "{body}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(240),
            "the first batch never ended"
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}
