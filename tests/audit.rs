//! `scout audit` end to end with the real default model on a repository
//! with planted issues (tests/data/audit/README.md lists them).

use std::path::Path;

use serde_json::Value;

use crate::util::{data, model, scout, text};

fn schema(path: &Path) -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap()
}

fn assert_valid(validator: &jsonschema::Validator, value: &Value, what: &str) {
    let errors: Vec<String> = validator
        .iter_errors(value)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{what} does not validate:\n{}", errors.join("\n"));
}

/// The lines of a file, 1-based, as the report cites them.
fn lines(path: &Path, start: u64, end: u64) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .skip(start as usize - 1)
        .take((end - start + 1) as usize)
        .collect::<Vec<_>>()
        .join("\n")
}

fn squash(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

#[test]
fn audit_writes_every_format_and_checks_every_finding() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let (json, sarif, md, html) = (
        out_dir.join("r.json"),
        out_dir.join("r.sarif"),
        out_dir.join("r.md"),
        out_dir.join("r.html"),
    );
    let repo = data("audit");
    let out = scout(dir.path())
        .args([
            "audit",
            "--threads",
            "1",
            "--max-findings",
            "3",
            "--max-tokens",
            "600",
            "--model",
        ])
        .arg(model())
        .arg(&repo)
        .arg("--out")
        .arg(&json)
        .arg("--sarif")
        .arg(&sarif)
        .arg("--md")
        .arg(&md)
        .arg("--html")
        .arg(&html)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("in 5 of 6 files"), "the README is not code: {stdout}");

    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_valid(
        &schema(&Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/audit-report.schema.json")),
        &report,
        "the JSON report",
    );
    assert_eq!(report["pipeline"]["name"], "security");
    assert_eq!(report["windows"].as_array().unwrap().len(), 1);
    let findings = report["findings"].as_array().unwrap();
    // Whatever a 135M model says, each finding's check must be right:
    // recheck it here against the files themselves.
    let mut planted_found = 0;
    for f in findings {
        let a = &f["anchor"];
        let rel = a["path"].as_str().unwrap().rsplit("tests/data/audit/").next().unwrap();
        let file = repo.join(rel);
        let total = std::fs::read_to_string(&file).unwrap().lines().count() as u64;
        let (start, end) = (a["line_start"].as_u64().unwrap(), a["line_end"].as_u64().unwrap());
        let in_range = start >= 1 && end <= total;
        assert_eq!(a["status"] == "valid", in_range, "{f:#}");
        let evidence = squash(f["evidence"].as_str().unwrap());
        let in_lines = in_range && !evidence.is_empty() && squash(&lines(&file, start, end)).contains(&evidence);
        // (Evidence with an ellipsis may verify in parts; the fixture's
        // model output has none of those, and a plain quote must match.)
        if !f["evidence"].as_str().unwrap().contains("...") {
            assert_eq!(f["verified"], in_lines, "{f:#}");
        }
        if f["verified"] == true && f["rule_id"] != "hard-coded-secret" {
            planted_found += 1;
        }
        assert!(f["windows"].as_array().unwrap().iter().all(|w| w == 0));
    }
    // Recorded, not asserted: how many planted issues the model found.
    eprintln!(
        "audit: {} findings, {} verified (7 planted issues)",
        findings.len(),
        planted_found
    );

    let sarif: Value = serde_json::from_str(&std::fs::read_to_string(&sarif).unwrap()).unwrap();
    assert_valid(&schema(&data("sarif/sarif-schema-2.1.0.json")), &sarif, "the SARIF log");
    let run = &sarif["runs"][0];
    assert_eq!(run["tool"]["driver"]["name"], "scout");
    assert_eq!(run["results"].as_array().unwrap().len(), findings.len());
    assert!(run["originalUriBaseIds"]["%SRCROOT%"]["uri"]
        .as_str()
        .unwrap()
        .ends_with("/tests/data/audit/"));
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    assert!(rules.iter().all(|r| r["properties"]["tags"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t.as_str().unwrap().starts_with("external/cwe/cwe-"))));

    let md = std::fs::read_to_string(&md).unwrap();
    assert!(md.starts_with("# scout audit: security\n"), "{md}");
    assert_eq!(md.matches("\n### ").count(), findings.len(), "{md}");
    let html = std::fs::read_to_string(&html).unwrap();
    assert!(html.starts_with("<!doctype html>"));
    assert!(
        !html.contains("src=\"http") && !html.contains("href=\"http"),
        "self-contained"
    );
}

#[test]
fn audit_refuses_what_it_cannot_do() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        scout(dir.path())
            .args(["audit", "--model"])
            .arg(model())
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&[data("audit").to_str().unwrap(), "--pipeline", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("security, code-review, licenses"),
        "{}",
        text(&out.stderr)
    );
    let out = run(&[data("audit").to_str().unwrap(), "--fail-on", "urgent"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("critical, high, medium, low"),
        "{}",
        text(&out.stderr)
    );
    // Only PDFs and scans: nothing a security pipeline reads.
    let out = run(&[data("scans").to_str().unwrap(), "--no-ocr"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no file in the corpus"),
        "{}",
        text(&out.stderr)
    );
    // A pipeline of one's own, with a bad rule, says where.
    let bad = dir.path().join("mine.toml");
    std::fs::write(
        &bad,
        "name='mine'\ndescription='d'\nseverities=['high']\ninstructions='i'\n[[rules]]\nid='x'\nseverity='low'\ntitle='t'\ndescription='d'\n",
    )
    .unwrap();
    let out = run(&[data("audit").to_str().unwrap(), "--pipeline", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("mine.toml: rule x: severity"),
        "{}",
        text(&out.stderr)
    );
}
