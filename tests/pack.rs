//! `scout pack` end to end: a git repository packed in every format, the
//! documents read back out, a budget held to the token, the changes since
//! a commit listed exactly.

use std::path::Path;

use crate::util::{git_at, scout, text};

/// A repository with one commit, then edits: a.py modified, old.md
/// deleted, new.rs added (untracked), keep.txt untouched.
fn repository(root: &Path) {
    std::fs::create_dir_all(root.join("src")).unwrap();
    std::fs::write(root.join("src/a.py"), "def load():\n    return 1\n").unwrap();
    std::fs::write(root.join("old.md"), "# Old\n\nGoing away.\n").unwrap();
    std::fs::write(root.join("keep.txt"), "stays the same\n").unwrap();
    git_at(root, &["init", "-q", "-b", "main"], "2024-01-01T00:00:00Z");
    git_at(root, &["add", "."], "2024-01-01T00:00:00Z");
    git_at(root, &["commit", "-q", "-m", "one"], "2024-01-01T00:00:00Z");
    std::fs::write(root.join("src/a.py"), "def load():\n    return 2\n").unwrap();
    std::fs::remove_file(root.join("old.md")).unwrap();
    std::fs::write(root.join("src/new.rs"), "fn added() {}\n").unwrap();
}

#[test]
fn a_pack_reads_back_and_its_diff_lists_exactly_the_changes() {
    let cache = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo");
    repository(&repo);
    let out = work.path().join("pack.json");
    let run = scout(cache.path())
        .args([
            "pack",
            "--format",
            "json",
            "--encoding",
            "o200k",
            "--diff",
            "HEAD",
            "-o",
        ])
        .arg(&out)
        .arg(&repo)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", text(&run.stderr));
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let docs = v["documents"].as_array().unwrap();
    let mut paths: Vec<&str> = docs.iter().map(|d| d["path"].as_str().unwrap()).collect();
    paths.sort_unstable();
    let r = repo.display().to_string();
    assert_eq!(
        paths,
        vec![
            format!("{r}/keep.txt"),
            format!("{r}/src/a.py"),
            format!("{r}/src/new.rs")
        ]
    );
    for d in docs {
        let on_disk = std::fs::read_to_string(d["path"].as_str().unwrap()).unwrap();
        assert_eq!(d["text"].as_str().unwrap(), on_disk, "read back whole");
    }
    let changed: Vec<(String, String)> = v["changes"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["status"].as_str().unwrap().to_owned(),
                c["path"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        changed,
        vec![
            ("D".to_owned(), format!("{r}/old.md")),
            ("M".to_owned(), format!("{r}/src/a.py")),
            ("A".to_owned(), format!("{r}/src/new.rs")),
        ],
        "exactly the changed files, keep.txt not among them"
    );
    assert!(v["changes"]["patch"].as_str().unwrap().contains("+    return 2"));

    // A revision git does not know is a clear error, exit 2.
    let bad = scout(cache.path())
        .args(["pack", "--encoding", "o200k", "--diff", "no-such-branch"])
        .arg(&repo)
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad.stderr).contains("no-such-branch is not a commit"),
        "{}",
        text(&bad.stderr)
    );
}

#[test]
fn a_budget_holds_for_the_whole_file_and_says_what_it_left_out() {
    let cache = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo");
    std::fs::create_dir_all(repo.join("lib")).unwrap();
    for i in 0..12 {
        let body: String = (0..40)
            .map(|n| format!("    value_{n} = compute({i}, {n})\n"))
            .collect();
        std::fs::write(repo.join(format!("lib/m{i}.py")), format!("def f{i}():\n{body}")).unwrap();
    }
    let out = work.path().join("pack.md");
    let run = scout(cache.path())
        .args(["pack", "--encoding", "cl100k", "--budget", "3k", "-o"])
        .arg(&out)
        .arg(&repo)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", text(&run.stderr));
    let packed = std::fs::read_to_string(&out).unwrap();
    let tokens = tiktoken_rs::cl100k_base().unwrap().encode_ordinary(&packed).len();
    assert!(tokens <= 3000, "{tokens} tokens over a budget of 3000");
    assert!(packed.contains("## Left out to fit the budget"), "{packed}");
    let said = text(&run.stderr);
    assert!(said.contains("left out") && said.contains("budget 3000"), "{said}");
}
