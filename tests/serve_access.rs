//! What `scout serve` lets a client read: only files under its roots,
//! whatever field names them, and errors that never carry a file's text.

use std::time::Duration;

use serde_json::{json, Value};

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

/// Two folders, each with a `c` holding one file.
fn two_roots() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("A"), dir.path().join("B"));
    std::fs::create_dir_all(a.join("c")).unwrap();
    std::fs::create_dir_all(b.join("c")).unwrap();
    std::fs::write(a.join("c/a.txt"), "The launch code is ALPHA-7781.\n").unwrap();
    std::fs::write(b.join("c/log.txt"), "The log says the night was quiet.\n").unwrap();
    (dir, a.canonicalize().unwrap(), b.canonicalize().unwrap())
}

/// Issue: a corpus made by `scout serve --root A` was still served by a
/// later `scout serve --root B` with the same cache folder, and creating
/// its id again merged B's files into it: an ask over it read both.
#[test]
fn a_corpus_made_under_one_root_is_not_served_under_another() {
    let (dir, a, b) = two_roots();
    let cache = dir.path().join("cache");
    let key = ["--api-key-env", "SCOUT_TEST_KEY"];
    {
        let s = Serve::start_in(&cache, &[&a], &key);
        let (status, body) = s.json("POST", "/v1/corpora", Some(&json!({"id": "c", "paths": [a.join("c")]})));
        assert_eq!(status, 201, "{body}");
    }
    let s = Serve::start_in(&cache, &[&b], &key);
    assert!(s.log().contains("corpus \"c\" is not served"), "{}", s.log());
    let (_, list) = s.json("GET", "/v1/corpora", None);
    assert_eq!(list["data"][0]["served"], false, "{list}");
    assert!(
        list["data"][0]["reason"].as_str().unwrap().contains("outside"),
        "{list}"
    );
    let a_file = a.join("c/a.txt").display().to_string();
    for (method, path, body) in [
        (
            "POST",
            "/v1/corpora/c/ask".to_owned(),
            Some(json!({"question": "What is the launch code?"})),
        ),
        ("GET", format!("/v1/corpora/c/source?path={a_file}"), None),
        ("GET", "/v1/corpora/c".to_owned(), None),
        (
            "POST",
            "/v1/chat/completions".to_owned(),
            Some(json!({"messages": [{"role": "user", "content": "code?"}], "scout": {"corpus": "c"}})),
        ),
    ] {
        let (status, text) = s.call(method, &path, body.as_ref(), true);
        assert_eq!(status, 403, "{method} {path}: {text}");
        assert!(!text.contains("ALPHA-7781") && text.contains("not served"), "{text}");
    }

    // Creating the id again is a choice: 409 names where it was read from;
    // adding to it is refused while it holds outside text; replacing works.
    let create = |extra: Value| {
        let mut body = json!({"id": "c", "paths": [b.join("c")]});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        s.json("POST", "/v1/corpora", Some(&body))
    };
    let (status, body) = create(json!({}));
    assert_eq!(status, 409, "{body}");
    assert!(body.to_string().contains(&a.join("c").display().to_string()), "{body}");
    let (status, body) = create(json!({"add": true}));
    assert_eq!(status, 409, "{body}");
    let (status, body) = create(json!({"replace": true}));
    assert_eq!(status, 201, "{body}");
    let (status, answer) = s.json(
        "POST",
        "/v1/corpora/c/ask",
        Some(&json!({"question": "What does the log say?", "max_tokens": 8})),
    );
    assert_eq!(status, 200, "{answer}");
    let documents: Vec<&str> = answer["windows"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|w| w["documents"].as_array().unwrap())
        .map(|d| d.as_str().unwrap())
        .collect();
    assert_eq!(documents, [b.join("c/log.txt").display().to_string()], "{answer}");
    let (_, list) = s.json("GET", "/v1/corpora", None);
    assert_eq!(list["data"][0]["served"], true, "{list}");

    // Adding to a served corpus keeps what it had.
    std::fs::create_dir_all(b.join("more")).unwrap();
    std::fs::write(b.join("more/x.txt"), "more\n").unwrap();
    let (status, body) = s.json(
        "POST",
        "/v1/corpora",
        Some(&json!({"id": "c", "paths": [b.join("more")], "add": true})),
    );
    assert_eq!(status, 200, "{body}");
    let (_, inspect) = s.json("GET", "/v1/corpora/c", None);
    assert_eq!(inspect["documents"].as_array().unwrap().len(), 2, "{inspect}");
}

/// `--corpora` keeps two servers' corpora apart.
#[test]
fn servers_with_their_own_corpora_folders_do_not_see_each_others() {
    let (dir, a, b) = two_roots();
    let cache = dir.path().join("cache");
    let folder = |name: &str| dir.path().join(name).display().to_string();
    let (fa, fb) = (folder("corpora-a"), folder("corpora-b"));
    let sa = Serve::start_in(&cache, &[&a], &["--corpora", &fa]);
    let sb = Serve::start_in(&cache, &[&b], &["--corpora", &fb]);
    for (s, root) in [(&sa, &a), (&sb, &b)] {
        let (status, body) = s.json(
            "POST",
            "/v1/corpora",
            Some(&json!({"id": "c", "paths": [root.join("c")]})),
        );
        assert_eq!(status, 201, "{body}");
        let (_, list) = s.json("GET", "/v1/corpora", None);
        assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");
        assert_eq!(list["data"][0]["served"], true, "{list}");
    }
    assert!(std::path::Path::new(&fa).join("c.scout.db").exists());
    assert!(std::path::Path::new(&fb).join("c.scout.db").exists());
}
