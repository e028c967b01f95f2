use super::*;
use crate::corpus::StoredDocument;
use crate::tasks::access::Access;
use crate::tasks::audit::RuleSet;
use crate::tasks::pipeline::Pipeline;

/// Vulnerable forms the shipped structural rules are not meant to match
/// (the bench has them so that rules alone can miss).
const RULES_MISS: [&str; 1] = ["path built in a helper function"];

fn tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in [
        ("app/main.py", "print('hi')\n"),
        ("app/util.py", "X = 1\n"),
        ("web/index.js", "module.exports = {};\n"),
        ("svc/main.go", "package svc\n\nfunc Main() {}\n"),
        ("README.md", "# a tree\n"),
    ] {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    dir
}

#[test]
fn every_template_s_safe_twin_is_silent_and_its_vulnerable_one_matches_unless_meant_not_to() {
    let p = Pipeline::load("security", &Access::Anywhere).unwrap();
    let rules = RuleSet::load(&p, &[]).unwrap();
    let mut rng = Rng::new(3);
    for (i, t) in TEMPLATES.iter().enumerate() {
        for vulnerable in [true, false] {
            let (text, file) = fill(
                if vulnerable { t.vulnerable } else { t.safe },
                t.lang,
                i,
                &mut rng,
                "pkg",
            );
            let (found, stats) = rules.scan(&[StoredDocument::code(&file, &text)]);
            assert_eq!(stats.files_scanned, 1, "{file}");
            let hit = found.iter().any(|c| c.rule == t.rule);
            let expected = vulnerable && !RULES_MISS.contains(&t.form);
            assert_eq!(
                hit,
                expected,
                "{} {} ({}), vulnerable {vulnerable}:\n{text}\n{found:#?}",
                t.cwe,
                t.lang.name(),
                t.form
            );
            // Only the twin's own rule may fire, and only on the vulnerable one.
            assert!(found.iter().all(|c| c.rule == t.rule), "{file}: {found:#?}");
            assert!(!text.contains('@'), "a placeholder left in {file}:\n{text}");
        }
    }
}

#[test]
fn twins_are_planted_beside_code_of_their_language_the_same_for_the_same_seed() {
    let cwes: Vec<String> = DEFAULT_CWES.map(String::from).to_vec();
    let a = tree();
    let truth = plant(a.path(), 12, &cwes, 9).unwrap();
    assert_eq!(truth.len(), 12);
    assert_eq!(truth.iter().filter(|t| t.vulnerable).count(), 6);
    for pair in truth.chunks(2) {
        assert!(pair[0].vulnerable && !pair[1].vulnerable);
        assert_eq!((&pair[0].cwe, &pair[0].form), (&pair[1].cwe, &pair[1].form));
    }
    for cwe in DEFAULT_CWES {
        assert_eq!(truth.iter().filter(|t| t.cwe == cwe).count(), 4, "{cwe}");
    }
    for t in &truth {
        let path = a.path().join(&t.path);
        let text = std::fs::read_to_string(&path).unwrap();
        let lang = Lang::of_path(&t.path).unwrap();
        // Beside code of its language when the tree has some.
        let dir = path.parent().unwrap();
        let neighbours = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.path() != path && Lang::of_path(&e.path().to_string_lossy()) == Some(lang))
            .count();
        if matches!(lang, Lang::Python | Lang::JavaScript | Lang::Go) {
            assert!(neighbours > 0, "{} alone in its folder", t.path);
        }
        if lang == Lang::Go {
            assert!(text.starts_with("package svc\n"), "{text}");
        }
    }
    let b = tree();
    assert_eq!(plant(b.path(), 12, &cwes, 9).unwrap(), truth);
    let c = tree();
    assert_ne!(plant(c.path(), 12, &cwes, 10).unwrap(), truth);
    let err = plant(c.path(), 2, &["CWE-1".to_owned()], 1).unwrap_err().to_string();
    assert!(err.contains("CWE-89"), "{err}");
}

#[test]
fn truth_files_are_read_line_by_line_with_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("truth.jsonl");
    std::fs::write(
        &file,
        "{\"path\": \"a.py\", \"cwe\": \"CWE-89\", \"vulnerable\": true, \"lines\": [3, 4]}\n\n{\"path\": \"b.py\", \"cwe\": \"CWE-22\", \"vulnerable\": false}\n",
    )
    .unwrap();
    let rule_of = |cwe: &str| (cwe != "CWE-1").then(|| format!("rule-of-{cwe}"));
    let truth = read_truth(&file, &rule_of).unwrap();
    assert_eq!(truth.len(), 2);
    assert_eq!(
        (truth[0].rule.as_str(), truth[0].lines),
        ("rule-of-CWE-89", Some((3, 4)))
    );
    std::fs::write(
        &file,
        "{\"path\": \"a.py\", \"cwe\": \"CWE-1\", \"vulnerable\": true}\n",
    )
    .unwrap();
    let err = read_truth(&file, &rule_of).unwrap_err().to_string();
    assert!(err.contains("truth.jsonl:1") && err.contains("CWE-1"), "{err}");
    std::fs::write(&file, "{\"path\": \"a.py\"}\n").unwrap();
    let err = read_truth(&file, &rule_of).unwrap_err().to_string();
    assert!(err.contains("truth.jsonl:1") && err.contains("cwe"), "{err}");
}

#[test]
fn scores_add_up() {
    let s = Score {
        cwe: "x".to_owned(),
        tp: 9,
        fn_: 1,
        fp: 2,
        tn: 8,
        ..Score::default()
    }
    .finish();
    assert!((s.tpr - 0.9).abs() < 1e-9 && (s.fpr - 0.2).abs() < 1e-9);
    assert!((s.youden - 0.7).abs() < 1e-9);
    assert!((s.precision - 9.0 / 11.0).abs() < 1e-9);
    assert!((s.f1 - 2.0 * (9.0 / 11.0) * 0.9 / (9.0 / 11.0 + 0.9)).abs() < 1e-9);
    let empty = Score::default().finish();
    assert_eq!((empty.tpr, empty.f1), (0.0, 0.0));
}
