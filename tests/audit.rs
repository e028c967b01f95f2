//! `scout audit`'s structural rules, tiers, fingerprints and `--baseline`
//! from the CLI. `--rules-only` loads no model, so these run in seconds.

use std::path::Path;

use serde_json::Value;

use crate::util::{data, scout, text};

/// The injection, in a copy of the planted-issues repository.
const USERS_PY: &str = "import sqlite3\n\n\ndef find_user(cursor, name):\n    cursor.execute(\"SELECT * FROM users WHERE name = '%s'\" % name)\n    return cursor.fetchall()\n";

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

fn demo(dir: &Path) -> std::path::PathBuf {
    let repo = dir.join("demo");
    copy_dir(&data("audit"), &repo);
    std::fs::write(repo.join("app/users.py"), USERS_PY).unwrap();
    repo
}

fn sarif_ids(path: &Path) -> Vec<String> {
    let log: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut ids: Vec<String> = log["runs"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r["partialFingerprints"]["scoutFindingId/v1"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    ids.sort();
    ids
}

#[test]
fn rules_alone_find_the_injection_at_its_line_with_every_tier_labelled() {
    let dir = tempfile::tempdir().unwrap();
    let repo = demo(dir.path());
    let out = scout(dir.path())
        .args(["audit", "--rules-only", "--json"])
        .arg(&repo)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("--rules-only: no model"), "{stderr}");
    assert!(stderr.contains("structural rules over 6 files"), "{stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["model_read"], false);
    assert_eq!(report["engine"], "none");
    let findings = report["findings"].as_array().unwrap();
    let injection = findings
        .iter()
        .find(|f| f["anchor"]["path"].as_str().unwrap().ends_with("app/users.py"))
        .expect("the injection is found");
    assert_eq!(injection["rule_id"], "injection");
    assert_eq!(injection["anchor"]["line_start"], 5);
    assert_eq!(injection["verified"], true);
    assert_eq!(injection["tier"], "candidate");
    assert_eq!(injection["rule_match"]["check"], "python-sql-built-from-strings");
    // Six of the seven planted issues are rule-shaped (tests/data/audit/README.md;
    // a missing authorization check is not): each found at its line.
    for (path, line, rule) in [
        ("app/db.py", 9, "injection"),
        ("app/files.py", 8, "path-traversal"),
        ("app/files.py", 14, "command-injection"),
        ("app/session.py", 8, "unsafe-deserialization"),
        ("app/auth.py", 7, "weak-crypto"),
        ("native/copy.c", 6, "memory-safety"),
    ] {
        assert!(
            findings
                .iter()
                .any(|f| f["anchor"]["path"].as_str().unwrap().ends_with(path)
                    && f["anchor"]["line_start"] == line
                    && f["rule_id"] == rule),
            "{path}:{line} {rule} not found: {findings:#?}"
        );
    }
    assert!(findings
        .iter()
        .all(|f| f["tier"] == "candidate" && f["windows"] == Value::Array(vec![])));
    // The terminal lists them labelled; --fail-on counts rule matches.
    let out = scout(dir.path())
        .args(["audit", "--rules-only", "--fail-on", "critical"])
        .arg(&repo)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.lines().next().unwrap().starts_with("[candidate]"), "{stdout}");
    assert!(
        stdout.contains("(0 confirmed, 0 verified, 7 candidate, 0 unverified)"),
        "{stdout}"
    );
}

#[test]
fn fingerprints_survive_ten_lines_added_above_and_a_baseline_reports_nothing_new() {
    let dir = tempfile::tempdir().unwrap();
    let repo = demo(dir.path());
    let (before, after, again) = (
        dir.path().join("a.sarif"),
        dir.path().join("b.sarif"),
        dir.path().join("c.sarif"),
    );
    let audit = |args: &[&std::ffi::OsStr]| {
        let out = scout(dir.path())
            .args(["audit", "--rules-only", "--quiet"])
            .arg(&repo)
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        out
    };
    audit(&["--sarif".as_ref(), before.as_os_str()]);
    // Ten lines at the top of every file (comments in each language).
    for rel in [
        "app/db.py",
        "app/files.py",
        "app/session.py",
        "app/auth.py",
        "app/users.py",
        "native/copy.c",
    ] {
        let path = repo.join(rel);
        let comment = if Path::new(rel).extension().is_some_and(|e| e == "c") {
            "// added\n"
        } else {
            "# added\n"
        };
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, comment.repeat(10) + &text).unwrap();
    }
    audit(&["--sarif".as_ref(), after.as_os_str()]);
    let ids = sarif_ids(&before);
    assert_eq!(ids.len(), 7);
    assert_eq!(sarif_ids(&after), ids, "every finding keeps its fingerprint");
    let log: Value = serde_json::from_str(&std::fs::read_to_string(&after).unwrap()).unwrap();
    assert!(log["runs"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["locations"][0]["physicalLocation"]["region"]["startLine"]
            .as_u64()
            .unwrap()
            > 10));
    // With the first run as the baseline, nothing is new.
    let out = audit(&[
        "--baseline".as_ref(),
        before.as_os_str(),
        "--sarif".as_ref(),
        again.as_os_str(),
        "--json".as_ref(),
    ]);
    assert!(sarif_ids(&again).is_empty());
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["findings"].as_array().unwrap().len(), 0);
    assert_eq!(report["baseline"]["known"], 7);
    // A new injection is the one finding reported.
    std::fs::write(
        repo.join("app/orders.py"),
        "def find(cursor, order):\n    cursor.execute(\"DELETE FROM orders WHERE id = \" + order)\n",
    )
    .unwrap();
    let out = audit(&["--baseline".as_ref(), before.as_os_str(), "--json".as_ref()]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let findings = report["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert!(findings[0]["anchor"]["path"]
        .as_str()
        .unwrap()
        .ends_with("app/orders.py"));
}

#[test]
fn rules_from_a_folder_run_and_a_broken_one_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let repo = demo(dir.path());
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::write(
        rules.join("mine.yml"),
        "id: no-fetchall\nlanguage: python\nmessage: every row read\nmetadata: {scout-rule: missing-auth}\nrule:\n  pattern: $C.fetchall()\n",
    )
    .unwrap();
    let out = scout(dir.path())
        .args(["audit", "--rules-only", "--json", "--rules"])
        .arg(&rules)
        .arg(&repo)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["rule_match"]["check"] == "no-fetchall" && f["anchor"]["line_start"] == 6));
    std::fs::write(
        rules.join("broken.yml"),
        "id: x\nlanguage: python\nrule:\n  kind: [call\n",
    )
    .unwrap();
    let out = scout(dir.path())
        .args(["audit", "--rules-only", "--rules"])
        .arg(&rules)
        .arg(&repo)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("broken.yml:"), "{stderr}");
    // A pipeline without structural rules cannot run them alone.
    let out = scout(dir.path())
        .args(["audit", "--rules-only", "--pipeline", "licenses"])
        .arg(&repo)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no structural rules"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn diff_reports_only_the_findings_on_lines_changed_since_a_commit() {
    let dir = tempfile::tempdir().unwrap();
    let repo = demo(dir.path());
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(&repo)
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "-c",
                "commit.gpgsign=false",
            ])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
    };
    git(&["init", "-q"]);
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "first"]);
    // A second injection appended to a file that already has one.
    let users = repo.join("app/users.py");
    let before = std::fs::read_to_string(&users).unwrap();
    std::fs::write(
        &users,
        format!("{before}\n\ndef drop_user(cursor, name):\n    cursor.execute(\"DELETE FROM users WHERE name = '\" + name + \"'\")\n"),
    )
    .unwrap();
    let out = scout(dir.path())
        .args(["audit", "--rules-only", "--json", "--diff", "HEAD"])
        .arg(&repo)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("--diff HEAD: 1 changed file"),
        "{}",
        text(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let findings = report["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert_eq!(findings[0]["anchor"]["line_start"], 10);
    assert_eq!(report["diff"]["rev"], "HEAD");
    assert_eq!(report["diff"]["files"], 1);
    // A ref that is not a commit, and a source that is not one folder.
    let out = scout(dir.path())
        .args(["audit", "--rules-only", "--diff", "no-such-ref"])
        .arg(&repo)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--diff no-such-ref: not a commit"),
        "{}",
        text(&out.stderr)
    );
    let out = scout(dir.path())
        .args(["audit", "--rules-only", "--diff", "HEAD"])
        .arg(repo.join("app/users.py"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("give one folder"), "{}", text(&out.stderr));
}

#[test]
fn bench_audit_plants_twins_in_a_copy_and_its_counts_add_up() {
    let dir = tempfile::tempdir().unwrap();
    let repo = demo(dir.path());
    let files_before = std::fs::read_dir(repo.join("app")).unwrap().count();
    let run = |seed: &str| {
        let out = scout(dir.path())
            .args([
                "bench", "audit", "--modes", "rules", "--twins", "12", "--json", "--quiet", "--seed", seed,
            ])
            .arg(&repo)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let b = run("5");
    let truth = b["truth"].as_array().unwrap();
    assert_eq!(truth.len(), 12);
    assert_eq!(truth.iter().filter(|t| t["vulnerable"] == true).count(), 6);
    let mode = &b["modes"][0];
    assert_eq!(mode["mode"], "rules");
    let count = |s: &Value| {
        ["tp", "fn", "fp", "tn"]
            .iter()
            .map(|k| s[*k].as_u64().unwrap())
            .sum::<u64>()
    };
    assert_eq!(count(&mode["all"]), 12);
    let per_cwe: u64 = mode["per_cwe"].as_array().unwrap().iter().map(count).sum();
    assert_eq!(per_cwe, 12);
    assert_eq!(mode["results"].as_array().unwrap().len(), 12);
    // The planted files are Python and C, beside the tree's own (its languages).
    assert!(truth.iter().all(|t| {
        let p = Path::new(t["path"].as_str().unwrap());
        let ext = p.extension().and_then(|e| e.to_str()).unwrap_or_default();
        p.starts_with("app") && ext == "py" || p.starts_with("native") && ext == "c"
    }));
    // The same seed, the same twins; the source untouched; no corpus left behind.
    assert_eq!(run("5")["truth"], b["truth"]);
    assert_eq!(std::fs::read_dir(repo.join("app")).unwrap().count(), files_before);
    let corpora = dir.path().join("corpora");
    let left: Vec<_> = std::fs::read_dir(&corpora)
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

/// An audit of several windows plans before it reads: `--dry-run` gives the
/// plan from a server that fails every request (none is sent), the rules
/// still run, and `--max-windows` refuses the sweep with exit 2.
#[test]
fn an_audit_plans_its_windows_and_max_windows_refuses_a_larger_sweep() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let chats = Arc::new(AtomicUsize::new(0));
    let url = crate::openai::failing_server(Arc::clone(&chats));
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    for i in 0..3 {
        let body: String = (0..240)
            .map(|k| format!("def handler_{i}_{k}(request):\n    return request.args.get('name_{k}')\n\n"))
            .collect();
        std::fs::write(repo.join(format!("views{i}.py")), body).unwrap();
    }
    std::fs::write(repo.join("users.py"), USERS_PY).unwrap();
    let run = |extra: &[&str]| {
        scout(dir.path())
            .arg("audit")
            .arg(&repo)
            .args(["--engine", "openai", "--endpoint", &url, "--tokenizer"])
            .arg(crate::util::model())
            .args(["--context", "8192", "--max-tokens", "256"])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = run(&["--dry-run", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let windows = v["plan"]["windows"].as_u64().unwrap();
    assert!(windows >= 2, "{v:#}");
    assert_eq!(v["plan"]["step"], "audit");
    assert!(v["plan"]["prompt_tokens"].as_u64().unwrap() > 8192, "{v:#}");

    let out = run(&["--max-windows", "1"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains(&format!("plan: {windows} windows")), "{err}");
    assert!(
        err.contains(&format!(
            "{windows} windows of this engine's context, over --max-windows 1"
        )),
        "{err}"
    );
    assert!(err.contains("structural rules"), "the rules ran first: {err}");
    assert_eq!(chats.load(Ordering::Relaxed), 0, "no chat request was sent");

    let out = run(&["--dry-run", "--rules-only"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--rules-only calls no model"),
        "{}",
        text(&out.stderr)
    );
}

/// Each window keeps room for its candidates' list and verdicts by an
/// estimate; where the list comes out longer (long paths, long lines), a
/// window cut full judges fewer candidates instead of overflowing the
/// context, and the rest stay candidates. The server fails every call, so
/// no model runs: what is checked is what each window was given to judge.
#[test]
fn a_window_whose_candidates_overflow_its_room_judges_fewer() {
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;
    let url = crate::openai::failing_server(Arc::new(AtomicUsize::new(0)));
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let deep = repo.join(
        "services/an_unusually_long_package_name_for_the_reporting_service/handlers/legacy_compatibility_layer/and_one_more_level_of_nesting_for_good_measure/generated_by_the_code_generator_of_the_platform_team/version_two_of_the_customer_lookup_interfaces",
    );
    std::fs::create_dir_all(&deep).unwrap();
    // Small files, so that windows are cut full, each with three
    // injections on long lines: more than a window judges.
    let lookup = |k: usize| {
        format!(
            "def lookup_{k}(cursor, customer_name, region_code, account_identifier):\n    cursor.execute(\"SELECT * FROM customers WHERE name = '%s' AND region = '%s' AND id = '%s'\" % (customer_name, region_code, account_identifier))\n"
        )
    };
    for f in 0..12 {
        let body: String = (0..3).map(|k| lookup(f * 3 + k)).collect();
        std::fs::write(deep.join(format!("customer_lookup_queries_{f}.py")), body).unwrap();
    }
    let out = scout(dir.path())
        .arg("audit")
        .arg(&repo)
        .args(["--engine", "openai", "--endpoint", &url, "--tokenizer"])
        .arg(crate::util::model())
        .args([
            "--context",
            "4096",
            "--max-tokens",
            "128",
            "--max-candidates",
            "8",
            "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "every call failed: {}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out.stderr)));
    let windows = report["windows"].as_array().unwrap();
    assert!(windows.len() > 1, "{report:#}");
    let mut fewer = 0;
    for w in windows {
        let (candidates, judged) = (w["candidates"].as_u64().unwrap(), w["judged"].as_u64().unwrap());
        assert!(judged <= candidates.min(8), "{w:#}");
        fewer += usize::from(judged < candidates.min(8));
        assert!(
            !w["error"].as_str().unwrap().contains("context"),
            "a window failed at the server, not for want of room: {w:#}"
        );
    }
    assert!(fewer > 0, "a full window judged fewer: {:#}", report["windows"]);
    // Every match is still reported, judged or not.
    assert_eq!(report["summary"]["by_tier"]["candidate"], 36, "{:#}", report["summary"]);
}
