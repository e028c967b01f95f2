//! `scout audit` and `scout extract` end to end with the real default model:
//! a repository with planted issues (tests/data/audit/README.md lists them)
//! and scanned receipts with known fields (tests/data/receipts).

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
    // Recorded, not asserted: how many planted issues were found, and how
    // the model judged the rules' candidates.
    eprintln!(
        "audit: {} findings, {} verified (7 planted issues); tiers {}",
        findings.len(),
        planted_found,
        report["summary"]["by_tier"]
    );

    let sarif: Value = serde_json::from_str(&std::fs::read_to_string(&sarif).unwrap()).unwrap();
    assert_valid(&schema(&data("sarif/sarif-schema-2.1.0.json")), &sarif, "the SARIF log");
    let run = &sarif["runs"][0];
    assert_eq!(run["tool"]["driver"]["name"], "scout");
    // Unverified findings stay out of SARIF, and never rank above info.
    let unverified: Vec<&Value> = findings.iter().filter(|f| f["tier"] == "unverified").collect();
    assert!(unverified.iter().all(|f| f["severity"] == "info"), "{unverified:#?}");
    assert_eq!(
        run["results"].as_array().unwrap().len(),
        findings.len() - unverified.len()
    );
    assert!(run["results"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["properties"]["tier"] != "unverified"));
    // Findings come best tier first; the planted injection is found by the
    // structural rules at its line whatever the model says.
    let order = ["confirmed", "verified", "candidate", "unverified"];
    let ranks: Vec<usize> = findings
        .iter()
        .map(|f| order.iter().position(|t| f["tier"] == *t).unwrap())
        .collect();
    assert!(ranks.windows(2).all(|w| w[0] <= w[1]), "{ranks:?}");
    assert!(findings.iter().any(|f| f["rule_id"] == "injection"
        && f["anchor"]["path"].as_str().unwrap().ends_with("app/db.py")
        && f["anchor"]["line_start"] == 9
        && f["verified"] == true));
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

#[test]
fn extract_writes_one_valid_object_per_receipt_with_traced_fields() {
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("receipts.jsonl");
    let receipts = data("receipts");
    let out = scout(dir.path())
        .args(["extract", "--threads", "1", "--schema", "receipt", "--model"])
        .arg(model())
        .arg(receipts.join("receipt1.png"))
        .arg(receipts.join("receipt2.png"))
        .arg("--jsonl")
        .arg(&out_file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let schema = schema(&Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts/schemas/receipt.json"));
    let truth: Vec<Value> = std::fs::read_to_string(receipts.join("truth.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let lines: Vec<Value> = std::fs::read_to_string(&out_file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "one object per document");
    let mut exact = 0;
    for r in &lines {
        assert_eq!(r["valid"], true, "{r:#}");
        assert_eq!(r["constrained"], true);
        assert_valid(&schema, &r["data"], "an extracted receipt");
        for f in r["fields"].as_array().unwrap() {
            let pointer = f["pointer"].as_str().unwrap();
            assert_eq!(&r["data"].pointer(pointer).unwrap(), &&f["value"], "{f:#}");
            if f["found"] == true {
                // Found in OCR text: a box on page 1 and the lines' confidence.
                assert!(f["anchor"].as_str().unwrap().contains("#page=1&bbox="), "{f:#}");
                let c = f["confidence"].as_f64().unwrap();
                assert!((0.0..=100.0).contains(&c), "{f:#}");
            } else {
                assert!(f.get("anchor").is_none(), "{f:#}");
            }
        }
        let name = r["path"].as_str().unwrap().rsplit('/').next().unwrap();
        let t = truth.iter().find(|t| t["file"] == name).unwrap();
        for key in ["company", "date", "address", "total"] {
            exact += usize::from(r["data"][key] == t[key]);
        }
    }
    // Recorded, not asserted (see BENCHMARKS.md): field exact-match.
    eprintln!("extract: {exact} of 8 receipt fields exactly right");

    let out = scout(dir.path())
        .args(["extract", "--schema", "nope", "--model"])
        .arg(model())
        .arg(&receipts)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("receipt, invoice, form"),
        "{}",
        text(&out.stderr)
    );
}

/// A batch killed mid-run (SIGKILL) and resumed: every job ends with
/// exactly one result, and no job that had one runs again.
#[test]
fn batch_resumes_after_sigkill_with_one_result_per_job() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let needle = data("needle");
    let questions = [
        "What is the vault unseal phrase?",
        "Which port does the service use?",
        "What does the README say?",
        "Who maintains the service?",
        "What language is the code in?",
        "What is stored in the vault?",
        "How is the service started?",
        "What is the project called?",
    ];
    let mut jobs: String = questions
        .iter()
        .enumerate()
        .map(|(i, q)| {
            serde_json::json!({"id": format!("q{i}"), "task": "ask", "paths": [needle], "question": q, "max_tokens": 24})
                .to_string()
                + "\n"
        })
        .collect();
    jobs.push_str(
        &(serde_json::json!({"custom_id": "chat-1", "method": "POST", "url": "/v1/chat/completions",
            "body": {"messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8}})
        .to_string()
            + "\n"),
    );
    jobs.push_str("{\"id\": \"outside\", \"task\": \"ask\", \"paths\": [\"/etc\"], \"question\": \"q\"}\n");
    let jobs_file = work.join("jobs.jsonl");
    std::fs::write(&jobs_file, &jobs).unwrap();
    let out_file = work.join("results.jsonl");
    let batch = |resume: bool| {
        let mut c = scout(dir.path());
        c.current_dir(&work)
            .args([
                "batch",
                "jobs.jsonl",
                "--out",
                "results.jsonl",
                "--threads",
                "1",
                "--root",
            ])
            .arg(&needle)
            .arg("--model")
            .arg(model());
        if resume {
            c.arg("--resume");
        }
        c
    };
    let lines = |path: &Path| -> Vec<Value> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    let mut child = batch(false)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while lines(&out_file).len() < 2 {
        assert!(started.elapsed().as_secs() < 300, "no result after 5 minutes");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the batch ended before it was killed"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = lines(&out_file);
    assert!(before.len() < 10, "killed mid-run: {} results", before.len());

    // Without --resume the state is not clobbered.
    let out = batch(false).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--resume"), "{}", text(&out.stderr));

    let out = batch(true).output().unwrap();
    // One job is outside the allowed roots: it fails, the rest succeed.
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("finished in an earlier run"),
        "{}",
        text(&out.stderr)
    );
    let after = lines(&out_file);
    let ids: Vec<String> = after
        .iter()
        .map(|r| {
            r.get("custom_id")
                .or_else(|| r.get("id"))
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let unique: std::collections::BTreeSet<&String> = ids.iter().collect();
    assert_eq!(ids.len(), 10, "{ids:?}");
    assert_eq!(unique.len(), 10, "exactly one result per job: {ids:?}");
    // Results from before the kill are kept as they were.
    assert_eq!(&after[..before.len()], before.as_slice());
    for r in &after {
        match r.get("custom_id") {
            Some(_) => {
                assert_eq!(r["response"]["status_code"], 200, "{r:#}");
                assert_eq!(r["response"]["body"]["object"], "chat.completion");
            }
            None if r["id"] == "outside" => {
                assert_eq!(r["status"], "failed");
                assert!(r["error"].as_str().unwrap().contains("outside the allowed roots"));
            }
            None => {
                assert_eq!(r["status"], "ok", "{r:#}");
                assert!(r["result"]["answer"].is_string());
            }
        }
    }
    // Ask jobs over one corpus are answered together, four at a time: the
    // first of each reads (or restores) the corpus, the others fork its KV.
    let forked = after
        .iter()
        .filter(|r| r["result"]["kv"]["forked_tokens"].as_u64().unwrap_or(0) > 0)
        .count();
    assert!(forked >= 3, "{after:#?}");
}

/// `ask --schema`: the answer is JSON for the schema, parsed and
/// validated; `--pipeline` limits the files to the pipeline's.
#[test]
fn ask_answers_in_a_schema_and_within_a_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let schema_file = dir.path().join("port.json");
    std::fs::write(
        &schema_file,
        r#"{"type": "object", "properties": {"port": {"type": "integer", "description": "the port number"},
            "file": {"type": "string", "description": "the file that sets it"}},
            "required": ["port", "file"], "additionalProperties": false}"#,
    )
    .unwrap();
    let out = scout(dir.path())
        .args(["ask", "--json", "--threads", "1", "--model"])
        .arg(model())
        .arg("--schema")
        .arg(&schema_file)
        .arg(data("../../examples/demo"))
        .arg("What port does the server listen on, and in which file?")
        .output()
        .unwrap();
    let r: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", text(&out.stderr)));
    assert!(r["data"]["port"].is_u64(), "{r:#}");
    assert!(r["data"]["file"].is_string(), "{r:#}");
    assert_eq!(r["schema_errors"], serde_json::json!([]), "{r:#}");

    // The security pipeline reads code, not the README.
    let out = scout(dir.path())
        .args([
            "ask",
            "--json",
            "--threads",
            "1",
            "--max-tokens",
            "16",
            "--pipeline",
            "security",
            "--model",
        ])
        .arg(model())
        .arg(data("audit"))
        .arg("Is user input put into SQL?")
        .output()
        .unwrap();
    let r: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", text(&out.stderr)));
    let docs = r["windows"][0]["documents"].as_array().unwrap();
    assert_eq!(docs.len(), 5, "{docs:?}");
    assert!(
        docs.iter().all(|d| !d.as_str().unwrap().ends_with("README.md")),
        "{docs:?}"
    );
}
