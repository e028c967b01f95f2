use std::collections::BTreeSet;
use std::path::Path;

use super::*;
use crate::tasks::access::Access;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/audit-rules");

fn security() -> Pipeline {
    Pipeline::load("security", &Access::Anywhere).unwrap()
}

/// Lines marked `expect: RULE` in a fixture.
fn expected(text: &str) -> BTreeSet<(u32, String)> {
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| {
            let rule = l.split("expect: ").nth(1)?;
            Some((i as u32 + 1, rule.trim().to_owned()))
        })
        .collect()
}

#[test]
fn every_shipped_rule_fires_on_its_vulnerable_fixture_and_not_on_its_safe_twin() {
    let rules = RuleSet::load(&security(), &[]).unwrap();
    let mut files: Vec<_> = std::fs::read_dir(FIXTURES)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut fired: BTreeSet<String> = BTreeSet::new();
    let mut languages = BTreeSet::new();
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(file).unwrap();
        let (found, stats) = rules.scan(&[StoredDocument::code(&name, &text)]);
        assert_eq!(stats.files_scanned, 1, "{name}");
        let want = expected(&text);
        if name.to_ascii_lowercase().starts_with("safe") {
            assert!(want.is_empty());
            assert!(found.is_empty(), "{name}: the safe twin matched: {found:#?}");
            continue;
        }
        languages.insert(Lang::of_path(&name).unwrap());
        assert!(!want.is_empty(), "{name} marks no expected line");
        for (line, rule) in &want {
            assert!(
                found
                    .iter()
                    .any(|c| &c.rule == rule && (c.line_start..=c.line_end).contains(line)),
                "{name}:{line}: no {rule} candidate; found {found:#?}"
            );
        }
        for c in &found {
            assert!(
                want.iter().any(|(l, _)| (c.line_start..=c.line_end).contains(l)),
                "{name}: a candidate on an unmarked line: {c:#?}"
            );
            assert!(!c.text.is_empty() && !c.message.is_empty());
            fired.insert(c.check.clone());
        }
    }
    // Every rule scout ships fired somewhere.
    let shipped: BTreeSet<String> = rules.checks.iter().map(|c| c.id.clone()).collect();
    let silent: Vec<_> = shipped.difference(&fired).collect();
    assert!(silent.is_empty(), "shipped rules that no fixture exercises: {silent:?}");
    // Every language the issue names has a fixture (TypeScript through the
    // JavaScript rules, C++ through the C rules are covered by their files).
    for lang in [
        Lang::Python,
        Lang::JavaScript,
        Lang::TypeScript,
        Lang::Java,
        Lang::Go,
        Lang::Php,
        Lang::Ruby,
        Lang::C,
        Lang::Cpp,
        Lang::Rust,
    ] {
        assert!(languages.contains(&lang), "no vulnerable fixture in {}", lang.name());
    }
}

#[test]
fn the_issue_s_injection_is_a_candidate_at_its_line() {
    let rules = RuleSet::load(&security(), &[]).unwrap();
    let text = "import sqlite3\n\n\ndef find(cursor, name):\n    cursor.execute(\"SELECT * FROM users WHERE name = '%s'\" % name)\n    return cursor.fetchall()\n";
    let (found, _) = rules.scan(&[StoredDocument::code("app/db.py", text)]);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].rule, "injection");
    assert_eq!((found[0].line_start, found[0].line_end), (5, 5));
    assert!(found[0].text.starts_with("\"SELECT"), "{:?}", found[0].text);
}

#[test]
fn a_rule_that_does_not_parse_names_its_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let ok =
        "id: my-eval\nlanguage: python\nmessage: eval\nmetadata: {scout-rule: injection}\nrule:\n  pattern: eval($X)\n";
    std::fs::write(dir.path().join("a.yml"), ok).unwrap();
    let set = RuleSet::load(&security(), &[dir.path().to_path_buf()]).unwrap();
    let (found, _) = set.scan(&[StoredDocument::code("x.py", "y = 1\nz = eval(y)\n")]);
    assert!(
        found.iter().any(|c| c.check == "my-eval" && c.line_start == 2),
        "{found:#?}"
    );
    // A duplicate key in the file's second document (from line 8), and a
    // YAML syntax error on line 11.
    let broken = format!("{ok}---\nid: two\nlanguage: python\nrule:\n  kind: call\n  kind: string\n");
    std::fs::write(dir.path().join("b.yml"), broken).unwrap();
    let err = RuleSet::load(&security(), &[dir.path().to_path_buf()])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("b.yml:8") && err.contains("duplicate field `kind`"),
        "{err}"
    );
    let broken = format!("{ok}---\nid: two\nlanguage: python\nrule:\n  kind: [call\n");
    std::fs::write(dir.path().join("b.yml"), broken).unwrap();
    let err = RuleSet::load(&security(), &[dir.path().to_path_buf()])
        .unwrap_err()
        .to_string();
    assert!(err.contains("b.yml:1"), "{err}");
    // A language scout does not read; a rule of no pipeline rule.
    std::fs::write(
        dir.path().join("b.yml"),
        "id: c\nlanguage: cobol\nmetadata: {scout-rule: injection}\nrule: {kind: call}\n",
    )
    .unwrap();
    let err = RuleSet::load(&security(), &[dir.path().to_path_buf()])
        .unwrap_err()
        .to_string();
    assert!(err.contains("b.yml:1") && err.contains("cobol"), "{err}");
    std::fs::write(
        dir.path().join("b.yml"),
        "id: c\nlanguage: python\nrule: {pattern: print($X)}\n",
    )
    .unwrap();
    let err = RuleSet::load(&security(), &[dir.path().to_path_buf()])
        .unwrap_err()
        .to_string();
    assert!(err.contains("scout-rule") && err.contains("path-traversal"), "{err}");
    std::fs::write(
        dir.path().join("b.yml"),
        "id: c\nlanguage: python\nmetadata: {scout-rule: nope}\nrule: {pattern: print($X)}\n",
    )
    .unwrap();
    let err = RuleSet::load(&security(), &[dir.path().to_path_buf()])
        .unwrap_err()
        .to_string();
    assert!(err.contains("\"nope\""), "{err}");
    // A rule without a kind to look for.
    std::fs::write(
        dir.path().join("b.yml"),
        "id: c\nlanguage: python\nmetadata: {scout-rule: injection}\nrule: {regex: eval}\n",
    )
    .unwrap();
    let err = RuleSet::load(&security(), &[dir.path().to_path_buf()])
        .unwrap_err()
        .to_string();
    assert!(err.contains("b.yml:1") && err.contains("kind"), "{err}");
    let missing = RuleSet::load(&security(), &[Path::new("/no/such/rules").to_path_buf()])
        .unwrap_err()
        .to_string();
    assert!(missing.starts_with("--rules /no/such/rules"), "{missing}");
}

#[test]
fn a_pipeline_rule_carries_its_own_structural_rules() {
    let toml = r#"
name = "mine"
description = "d"
severities = ["high"]
instructions = "i"

[[rules]]
id = "no-eval"
severity = "high"
title = "eval"
description = "eval of input"
ast_grep = """
id: eval-call
language: python
rule:
  pattern: eval($X)
---
id: exec-call
language: python
rule:
  pattern: exec($X)
"""
"#;
    let p = Pipeline::parse(toml, "mine.toml").unwrap();
    let set = RuleSet::load(&p, &[]).unwrap();
    assert_eq!(set.len(), 2);
    let (found, stats) = set.scan(&[
        StoredDocument::code("a.py", "eval(a)\nexec(b)\n"),
        StoredDocument::code("b.js", "eval(a)\n"),
    ]);
    assert_eq!(stats.files_scanned, 1, "no JavaScript rule: the .js file is not parsed");
    assert_eq!(
        found
            .iter()
            .map(|c| (c.rule.as_str(), c.line_start))
            .collect::<Vec<_>>(),
        [("no-eval", 1), ("no-eval", 2)]
    );
}

#[test]
fn large_files_are_counted_not_parsed() {
    let p = security();
    let set = RuleSet::load(&p, &[]).unwrap();
    let mut big = StoredDocument::code("big.py", "os.system(x)\n");
    big.bytes = MAX_FILE_BYTES + 1;
    let (found, stats) = set.scan(&[big, StoredDocument::code("small.py", "import os\nos.system(x)\n")]);
    assert_eq!((stats.files_scanned, stats.files_skipped), (1, 1));
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].path, "small.py");
}

#[test]
fn credentials_redacted_at_ingest_are_candidates_at_their_lines() {
    let rules = RuleSet::load(&security(), &[]).unwrap();
    let env = StoredDocument::code(".env", "DEBUG=1\nAWS_SECRET_ACCESS_KEY=[REDACTED:aws_secret]\n");
    let (found, _) = rules.scan(&[env]);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!((found[0].rule.as_str(), found[0].line_start), ("hard-coded-secret", 2));
    assert_eq!(found[0].check, "secrets-scan");
    assert!(found[0].message.contains("aws_secret"), "{}", found[0].message);
    // A pipeline without the shipped rules runs no secrets check.
    let mut p = security();
    p.structural_rules = None;
    assert!(RuleSet::load(&p, &[]).unwrap().is_empty());
}
