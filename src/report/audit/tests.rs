use super::*;

#[test]
fn levels_follow_names_then_place() {
    let scale: Vec<String> = ["p0", "p1", "p2", "p3"].map(String::from).to_vec();
    assert_eq!(sarif_level("critical", &scale), "error");
    assert_eq!(sarif_level("info", &scale), "note");
    assert_eq!(sarif_level("p0", &scale), "error");
    assert_eq!(sarif_level("p2", &scale), "warning");
    assert_eq!(sarif_level("p3", &scale), "note");
}

fn sample() -> AuditReport {
    use crate::tasks::audit::{AuditWindow, CodeSnippet, FindingAnchor, Hop, Origin, PipelineInfo, RuleMatch};
    let p = crate::tasks::pipeline::Pipeline::load("security", &crate::tasks::access::Access::Anywhere).unwrap();
    let finding = |rule: &str, sev: &str, path: &str, lines: (u32, u32), tier: Tier| {
        let verified = tier != Tier::Unverified;
        Finding {
            id: "0123456789abcdef".to_owned(),
            rule_id: rule.to_owned(),
            cwe: p.rule(rule).and_then(|r| r.cwe.clone()),
            tier,
            origin: Origin::Model,
            severity: sev.to_owned(),
            claimed_severity: None,
            rule_match: None,
            verdict: None,
            title: p.rule(rule).unwrap().title.clone(),
            anchor: FindingAnchor {
                path: path.to_owned(),
                line_start: lines.0,
                line_end: lines.1,
                symbol: verified.then(|| "function find_user".to_owned()),
                status: CitationStatus::Valid,
            },
            evidence: "query = \"SELECT \" + name".to_owned(),
            explanation: "The name is pasted into the SQL text.".to_owned(),
            fix: "Pass it as a parameter.".to_owned(),
            verified,
            evidence_match: if verified {
                EvidenceMatch::InCitedLines
            } else {
                EvidenceMatch::ElsewhereInFile
            },
            evidence_found_at: (!verified).then(|| format!("{path}:9")),
            code: Some(CodeSnippet {
                line_start: 9,
                text: "    query = \"SELECT \" + name\n".to_owned(),
            }),
            windows: vec![0],
            occurrences: 1,
        }
    };
    let mut confirmed = finding("injection", "high", "app/db.py", (9, 9), Tier::Confirmed);
    confirmed.origin = Origin::Both;
    confirmed.rule_match = Some(RuleMatch {
        check: "python-sql-built-from-strings".to_owned(),
        message: "SQL text built by formatting or concatenation".to_owned(),
    });
    confirmed.verdict = Some(Verdict {
        verdict: VerdictKind::Confirmed,
        reason: "name comes from the request".to_owned(),
        path: vec![
            Hop {
                anchor: "app/web.py:4".to_owned(),
                evidence: "name = request.args[\"name\"]".to_owned(),
                verified: true,
            },
            Hop {
                anchor: "app/db.py:9".to_owned(),
                evidence: "query".to_owned(),
                verified: true,
            },
        ],
        window: Some(0),
    });
    let mut candidate = finding("command-injection", "critical", "app/run.py", (3, 3), Tier::Candidate);
    candidate.id = "fedcba9876543210".to_owned();
    candidate.origin = Origin::Rule;
    candidate.rule_match = Some(RuleMatch {
        check: "python-shell-command-from-input".to_owned(),
        message: "A shell command built from a value that is not a constant".to_owned(),
    });
    candidate.verdict = Some(Verdict {
        verdict: VerdictKind::Dismissed,
        reason: "the host is a constant".to_owned(),
        path: vec![Hop {
            anchor: "app/run.py:2".to_owned(),
            evidence: "HOST = \"example.org\"".to_owned(),
            verified: true,
        }],
        window: Some(0),
    });
    candidate.windows = Vec::new();
    let mut unverified = finding("weak-crypto", "info", "app/my auth.py", (2, 3), Tier::Unverified);
    unverified.claimed_severity = Some("high".to_owned());
    let findings = vec![
        confirmed,
        finding("injection", "high", "app/report.py", (20, 21), Tier::Verified),
        candidate,
        unverified,
    ];
    let summary = crate::tasks::audit::tiers_summary(&findings, 1);
    AuditReport {
        format: crate::tasks::audit::REPORT_FORMAT,
        scout_version: "0.1.0".to_owned(),
        pipeline: PipelineInfo {
            name: p.name.clone(),
            version: p.version,
            description: p.description.clone(),
            source: p.source.clone(),
            severities: p.severities.clone(),
            rules: p.rules[..3].to_vec(),
        },
        files_audited: 4,
        files_in_corpus: 5,
        summary,
        findings,
        rules: Some(crate::tasks::audit::ScanStats {
            rules: 60,
            files_scanned: 4,
            files_skipped: 0,
            candidates: 2,
            ms: 12,
        }),
        model_read: true,
        diff: None,
        baseline: None,
        windows: vec![
            AuditWindow {
                documents: vec!["app/db.py".to_owned()],
                tokens: 900,
                findings: 2,
                candidates: 2,
                judged: 2,
                truncated: false,
                error: None,
            },
            AuditWindow {
                documents: vec!["app/big.py".to_owned()],
                tokens: 7000,
                findings: 0,
                candidates: 0,
                judged: 0,
                truncated: false,
                error: Some("the model's answer is not the findings JSON: sorry".to_owned()),
            },
        ],
        usage: crate::tasks::run::Usage::default(),
        timings: crate::tasks::run::Timings::default(),
        kv: crate::engine::KvUse::default(),
        engine: "llamacpp".to_owned(),
        model: "m.gguf".to_owned(),
    }
}

#[test]
fn every_format_on_a_small_report() {
    let r = sample();
    let shown = Shown::default();
    let md = markdown(&r, "repo.scout.db", shown);
    insta::assert_snapshot!("audit_markdown", md);
    // Tiers in order, each labelled; the unverified one collapsed.
    let at = |s: &str| md.find(s).unwrap_or_else(|| panic!("{s} not in {md}"));
    assert!(at("## Confirmed") < at("## Verified") && at("## Verified") < at("## Candidates"));
    assert!(at("## Candidates") < at("## Unverified") && at("## Unverified") < at("<details>"));
    assert!(markdown(&r, "x", Shown { unverified: true })
        .find("<details>")
        .is_none());
    let t = text(&r, shown);
    insta::assert_snapshot!("audit_text", t);
    assert!(t.starts_with("[confirmed]"), "{t}");
    assert!(
        !t.contains("my auth.py") && t.contains("1 unverified finding not listed"),
        "{t}"
    );
    assert!(text(&r, Shown { unverified: true }).contains("[unverified]  info"));
    let log = sarif(&r, Some(std::path::Path::new("/srv/my repo")), shown);
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/sarif/sarif-schema-2.1.0.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap();
    let errors: Vec<String> = validator.iter_errors(&log).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:#?}");
    insta::assert_json_snapshot!("audit_sarif", log);
    // No unverified finding in SARIF unless asked; none above info anywhere.
    let tiers: Vec<&str> = log["runs"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["properties"]["tier"].as_str().unwrap())
        .collect();
    assert_eq!(tiers, ["confirmed", "verified", "candidate"]);
    let all = sarif(&r, None, Shown { unverified: true });
    let last = &all["runs"][0]["results"][3];
    assert_eq!(
        (last["properties"]["tier"].as_str(), last["level"].as_str()),
        (Some("unverified"), Some("note"))
    );
    // The JSON report: snapshot, and valid against its published schema.
    let report = serde_json::to_value(&r).unwrap();
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/audit-report.schema.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator.iter_errors(&report).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:#?}");
    insta::assert_json_snapshot!("audit_json", report);
    let page = html(&r, "repo.scout.db", shown);
    let data = page
        .split("const data = ")
        .nth(1)
        .and_then(|rest| rest.split(";\nconst r = ").next())
        .unwrap();
    let data: Value = serde_json::from_str(data).unwrap();
    assert_eq!(data["report"]["findings"][3]["anchor"]["path"], "app/my auth.py");
    assert_eq!(data["report"]["findings"][3]["tier"], "unverified");
    assert_eq!(data["show_unverified"], false);
    assert_eq!(
        data["unverified"][3],
        "the quote is not in the cited lines but at app/my auth.py:9"
    );
    assert!(data["verdicts"][0].as_str().unwrap().contains("app/web.py:4 (checked)"));
}

#[test]
fn uris_and_fences() {
    assert_eq!(uri_path("src/a b/ü.rs"), "src/a%20b/%C3%BC.rs");
    assert_eq!(fence("plain"), "```");
    assert_eq!(fence("a ```` b"), "`````");
}
