//! What `scout serve` lets a client read: only files under its roots,
//! whatever field names them, and errors that never carry a file's text.

use std::time::Duration;

use serde_json::json;

use crate::serve::Serve;
use crate::util::data;

/// The server's environment holds this (its API key variable); a leak of
/// `/proc/self/environ` would show it.
const SECRET: &str = "test-key-4711";

/// Reliability case 26: the `pipeline` and `schema` fields of ask, audit,
/// extract and batch jobs were opened as any path the server could read,
/// and a parse error quoted the offending line: `{"pipeline":
/// "/proc/self/environ"}` returned the server's environment, API key
/// included, and the message told existing paths from missing ones.
#[test]
fn r26_pipeline_and_schema_fields_read_nothing_outside_the_roots() {
    let dir = tempfile::tempdir().unwrap();
    let s = Serve::start(dir.path(), &["--api-key-env", "SCOUT_TEST_KEY"]);
    s.create_needle();
    let outside = ["/proc/self/environ", "/etc/passwd", "/no/such/file.toml"];
    let mut messages = Vec::new();
    for path in outside {
        for (route, body) in [
            ("ask", json!({"question": "x", "pipeline": path})),
            ("ask", json!({"question": "x", "schema": path})),
            ("audit", json!({"pipeline": path})),
            ("extract", json!({"schema": path})),
        ] {
            let (status, body) = s.json("POST", &format!("/v1/corpora/needle/{route}"), Some(&body));
            let text = body.to_string();
            assert_eq!(status, 400, "{route} {path}: {text}");
            assert!(
                !text.contains(SECRET) && !text.contains("root:"),
                "{route} {path}: {text}"
            );
            let message = body["error"]["message"].as_str().unwrap().replace(path, "PATH");
            assert!(
                message.contains("no file of that name under the allowed roots"),
                "{message}"
            );
            messages.push((route, message));
        }
    }
    // The same words for an existing file and a missing one.
    for (route, message) in &messages {
        assert!(
            messages.iter().filter(|(r, m)| r == route && m == message).count() >= outside.len(),
            "{route}: {message}"
        );
    }

    // Inline pipelines and schemas are the way to send one's own.
    let bad_toml = json!({"pipeline": {"toml": "root:x:0:0:secret-line"}});
    let (status, body) = s.json("POST", "/v1/corpora/needle/audit", Some(&bad_toml));
    assert_eq!(status, 400, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("request: line 1, column") && !message.contains("secret-line"),
        "{body}"
    );
    let pipeline = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines/code-review.toml")).unwrap();
    let (status, body) = s.json(
        "POST",
        "/v1/corpora/absent/audit",
        Some(&json!({"pipeline": {"toml": pipeline}})),
    );
    assert_eq!(status, 404, "a valid inline pipeline passes its checks: {body}");
    let schema = json!({"type": "object", "properties": {"code": {"type": "string"}}});
    let (status, body) = s.json("POST", "/v1/corpora/absent/extract", Some(&json!({"schema": schema})));
    assert_eq!(status, 404, "a valid inline schema passes its checks: {body}");
    let (status, body) = s.json(
        "POST",
        "/v1/corpora/absent/extract",
        Some(&json!({"schema": {"type": "array"}})),
    );
    assert_eq!(status, 400, "{body}");

    // A batch job names pipelines the same way; its failure says why and
    // carries nothing of the file.
    let needle = data("needle").display().to_string();
    let jobs = format!(
        "{}\n{}\n",
        json!({"id": "p", "task": "audit", "paths": [needle], "pipeline": "/proc/self/environ"}),
        json!({"id": "s", "task": "extract", "paths": [needle], "schema": "/etc/passwd"}),
    );
    let (st, results) = s.batch(&jobs, Duration::from_secs(120));
    assert_eq!(st["failed"], 2, "{st}");
    assert!(!results.contains(SECRET) && !results.contains("root:"), "{results}");
    assert_eq!(
        results.matches("no file of that name under the allowed roots").count(),
        2,
        "{results}"
    );
}
