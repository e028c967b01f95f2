//! `scout serve` on loopback with the real default model: the API end to
//! end, and a bounded load test (the page in a browser: `serve_page.rs`).

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::util::{data, model, scout};

const KEY: &str = "test-key-4711";

/// A `scout serve` on loopback with the default model, killed when dropped.
pub struct Serve {
    child: Child,
    pub url: String,
    log: tempfile::NamedTempFile,
}

impl Serve {
    /// A server over the test data, its corpora in `cache/server`.
    pub fn start(cache: &Path, extra: &[&str]) -> Serve {
        Self::start_in(cache, &[&data("")], extra)
    }

    /// A server that reads under `roots` alone.
    pub fn start_in(cache: &Path, roots: &[&Path], extra: &[&str]) -> Serve {
        let log = tempfile::NamedTempFile::new().unwrap();
        let mut command = scout(cache);
        command.args(["serve", "--listen", "127.0.0.1:0", "--threads", "1"]);
        for root in roots {
            command.arg("--root").arg(root);
        }
        let child = command
            .arg("--data")
            .arg(cache.join("server"))
            .arg("--model")
            .arg(model())
            .args(extra)
            .env("SCOUT_TEST_KEY", KEY)
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap();
        let mut s = Serve {
            child,
            url: String::new(),
            log,
        };
        let started = Instant::now();
        loop {
            let text = std::fs::read_to_string(s.log.path()).unwrap_or_default();
            if let Some(rest) = text.split("listening on ").nth(1) {
                rest.split_whitespace().next().unwrap().clone_into(&mut s.url);
                return s;
            }
            if let Ok(Some(status)) = s.child.try_wait() {
                panic!("scout serve exited ({status}):\n{text}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "scout serve did not start:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// (status, body) of a request; `key` adds the bearer token.
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>, key: bool) -> (u16, String) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(300)))
            .build()
            .into();
        let url = format!("{}{path}", self.url);
        let auth = format!("Bearer {KEY}");
        let resp = match (method, body) {
            ("GET", _) => {
                let mut r = agent.get(&url);
                if key {
                    r = r.header("authorization", &auth);
                }
                r.call()
            }
            ("DELETE", _) => {
                let mut r = agent.delete(&url);
                if key {
                    r = r.header("authorization", &auth);
                }
                r.call()
            }
            (_, b) => {
                let mut r = agent.post(&url).header("content-type", "application/json");
                if key {
                    r = r.header("authorization", &auth);
                }
                r.send(b.map_or_else(String::new, Value::to_string))
            }
        }
        .unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", self.log()));
        let status = resp.status().as_u16();
        let text = resp.into_body().read_to_string().unwrap_or_default();
        (status, text)
    }

    /// (status, body) of `POST /v1/batches` with `jobs` as its body.
    pub fn post_jobs(&self, jobs: &str) -> (u16, String) {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let resp = agent
            .post(&format!("{}/v1/batches", self.url))
            .header("authorization", &format!("Bearer {KEY}"))
            .send(jobs)
            .unwrap_or_else(|e| panic!("POST /v1/batches: {e}\n{}", self.log()));
        let status = resp.status().as_u16();
        (status, resp.into_body().read_to_string().unwrap_or_default())
    }

    /// Runs a batch of JSONL `jobs` to its end (at most `within`): its
    /// last status and its results file.
    pub fn batch(&self, jobs: &str, within: Duration) -> (Value, String) {
        let (status, text) = self.post_jobs(jobs);
        assert_eq!(status, 202, "{text}");
        let id = serde_json::from_str::<Value>(&text).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let started = Instant::now();
        loop {
            let (_, st) = self.json("GET", &format!("/v1/batches/{id}"), None);
            if st["status"] != "running" {
                let (_, results) = self.call("GET", &format!("/v1/batches/{id}/results"), None, true);
                return (st, results);
            }
            assert!(started.elapsed() < within, "batch still running: {st}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Creates corpus `needle` from the needle's files.
    pub fn create_needle(&self) {
        let (status, body) = self.json(
            "POST",
            "/v1/corpora",
            Some(&json!({"id": "needle", "paths": [data("needle")]})),
        );
        assert_eq!(status, 201, "{body}");
    }

    pub fn json(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let (status, text) = self.call(method, path, body, true);
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Server-sent events as (event name, data) pairs.
fn events(text: &str) -> Vec<(String, String)> {
    text.split("\n\n")
        .filter(|b| !b.trim().is_empty())
        .map(|block| {
            let mut name = "message".to_owned();
            let mut data = String::new();
            for line in block.lines() {
                if let Some(n) = line.strip_prefix("event:") {
                    n.trim().clone_into(&mut name);
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.strip_prefix(' ').unwrap_or(d));
                }
            }
            (name, data)
        })
        .collect()
}

/// A counter or gauge's value (all of scout's are whole numbers).
fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

#[test]
fn serve_answers_every_route_with_the_cli_json() {
    let dir = tempfile::tempdir().unwrap();
    let s = Serve::start(dir.path(), &["--api-key-env", "SCOUT_TEST_KEY"]);
    let needle = data("needle");

    // Health is open; everything else needs the key.
    assert_eq!(s.call("GET", "/healthz", None, false).0, 200);
    assert_eq!(s.call("GET", "/v1/models", None, false).0, 401);
    // Each request is logged with its id, route, status and time.
    let log = s.log();
    assert!(
        log.contains("scout: request 1 GET /healthz 200 ") && log.contains("scout: request 2 GET /v1/models 401 "),
        "{log}"
    );
    let (status, page) = s.call("GET", "/", None, false);
    assert_eq!(status, 200);
    assert!(
        page.contains("<title>scout</title>") && !page.contains("src=\"http"),
        "self-contained page"
    );
    let (status, models) = s.json("GET", "/v1/models", None);
    assert_eq!(status, 200);
    assert_eq!(models["data"][0]["capabilities"]["json_schema"], true);

    // Corpora: paths only under the roots.
    let (status, body) = s.json("POST", "/v1/corpora", Some(&json!({"id": "n", "paths": ["/etc"]})));
    assert_eq!(status, 403, "{body}");
    let (status, body) = s.json("POST", "/v1/corpora", Some(&json!({"id": "../x", "paths": [needle]})));
    assert_eq!(status, 400, "{body}");
    // URLs are never fetched; `..` cannot climb out of a root.
    let (status, body) = s.json(
        "POST",
        "/v1/corpora",
        Some(&json!({"id": "u", "paths": ["https://example.invalid/repo"]})),
    );
    assert!(status == 400 || status == 403, "{status} {body}");
    assert!(body.to_string().contains("URL"), "{body}");
    let climb = format!("{}/../../../../../../etc", needle.display());
    let (status, body) = s.json("POST", "/v1/corpora", Some(&json!({"id": "c", "paths": [climb]})));
    assert_eq!(status, 403, "{body}");
    let (status, body) = s.json("POST", "/v1/corpora", Some(&json!({"id": "needle", "paths": [needle]})));
    assert_eq!(status, 201, "{body}");
    assert!(body["documents"].as_u64().unwrap() >= 3, "{body}");
    let (_, list) = s.json("GET", "/v1/corpora", None);
    assert_eq!(list["data"][0]["id"], "needle");
    let (_, inspect) = s.json("GET", "/v1/corpora/needle", None);
    assert!(inspect["tokens"].as_u64().unwrap() > 500, "{inspect:#}");
    assert!(inspect["skips"].is_array(), "{inspect:#}");
    // The needle lies in this checkout: when that is a git repository, the
    // corpus names the commit it was read at.
    let head = std::process::Command::new("git")
        .args(["-C", env!("CARGO_MANIFEST_DIR"), "rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    if let Some(head) = head {
        assert_eq!(inspect["git_head"], head.as_str(), "{inspect:#}");
        assert_eq!(inspect["git_heads"].as_object().unwrap().len(), 1, "{inspect:#}");
    } else {
        assert!(inspect["git_head"].is_null(), "{inspect:#}");
    }
    let config = inspect["documents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["path"].as_str().unwrap().ends_with("vault/config.py"))
        .expect("the needle's file is listed")["path"]
        .as_str()
        .unwrap()
        .to_owned();

    // Ask: the same JSON as `scout ask --json`.
    let q = json!({"question": "What is the vault unseal phrase?"});
    let (status, r) = s.json("POST", "/v1/corpora/needle/ask", Some(&q));
    assert_eq!(status, 200, "{r}");
    assert!(r["answer"].as_str().unwrap().contains("amber-falcon-7731"), "{r:#}");
    assert!(r["citations"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["status"] == "valid"));
    assert!(r["kv"]["prefilled_tokens"].as_u64().is_some());

    // Streamed: tokens, then the result.
    let (status, text) = s.call(
        "POST",
        "/v1/corpora/needle/ask",
        Some(&json!({"question": "What is the vault unseal phrase?", "stream": true})),
        true,
    );
    assert_eq!(status, 200);
    let ev = events(&text);
    let streamed: String = ev
        .iter()
        .filter(|(n, _)| n == "token")
        .map(|(_, d)| {
            serde_json::from_str::<Value>(d).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let (_, result_data) = ev.iter().rfind(|(n, _)| n == "result").expect("a result event");
    let result: Value = serde_json::from_str(result_data).unwrap();
    assert_eq!(streamed, result["answer"].as_str().unwrap());
    // The second question reused the corpus's KV (kept in memory) instead
    // of reading it.
    assert!(
        result["kv"]["reused_tokens"].as_u64().unwrap() > 0,
        "{:#}",
        result["kv"]
    );

    // The cited source, for the page.
    let (status, src) = s.json("GET", &format!("/v1/corpora/needle/source?path={config}"), None);
    assert_eq!(status, 200);
    assert!(src["segments"][0]["text"]
        .as_str()
        .unwrap()
        .contains("amber-falcon-7731"));

    // A scan's image, for the page to outline the cited region on; only
    // image documents of the corpus.
    let (status, body) = s.json(
        "POST",
        "/v1/corpora",
        Some(&json!({"id": "scans", "paths": [data("receipts/receipt1.png"), data("scans/scanned-handbook.pdf")]})),
    );
    assert_eq!(status, 201, "{body}");
    // A scanned PDF page's image is kept in the corpus.
    let pdf = data("scans/scanned-handbook.pdf");
    let resp = ureq::get(&format!(
        "{}/v1/corpora/scans/image?path={}&page=2",
        s.url,
        pdf.display()
    ))
    .header("authorization", &format!("Bearer {KEY}"))
    .call()
    .unwrap();
    let kind = resp.headers().get("content-type").unwrap().to_str().unwrap().to_owned();
    assert!(kind == "image/jpeg" || kind == "image/png", "{kind}");
    assert!(resp.into_body().read_to_vec().unwrap().len() > 1000);
    let png = data("receipts/receipt1.png");
    let resp = ureq::get(&format!("{}/v1/corpora/scans/image?path={}", s.url, png.display()))
        .header("authorization", &format!("Bearer {KEY}"))
        .call()
        .unwrap();
    assert_eq!(resp.headers().get("content-type").unwrap(), "image/png");
    assert_eq!(resp.into_body().read_to_vec().unwrap(), std::fs::read(&png).unwrap());
    assert_eq!(
        s.call("GET", &format!("/v1/corpora/needle/image?path={config}"), None, true)
            .0,
        404
    );

    // OpenAI chat with the corpus in front, plain and streamed.
    let chat = json!({"messages": [{"role": "user", "content": "What is the vault unseal phrase?"}],
                      "scout": {"corpus": "needle"}, "max_tokens": 40});
    let (status, c) = s.json("POST", "/v1/chat/completions", Some(&chat));
    assert_eq!(status, 200, "{c}");
    assert_eq!(c["object"], "chat.completion");
    // The corpus leads the prompt (the 135M model's answer itself is not
    // reliable without scout's ask instructions, so it is not checked).
    assert!(c["usage"]["prompt_tokens"].as_u64().unwrap() > 1000, "{c:#}");
    assert!(
        !c["choices"][0]["message"]["content"].as_str().unwrap().is_empty(),
        "{c:#}"
    );
    let mut streaming = chat.clone();
    streaming["stream"] = json!(true);
    let (_, text) = s.call("POST", "/v1/chat/completions", Some(&streaming), true);
    let data: Vec<String> = events(&text).into_iter().map(|(_, d)| d).collect();
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let content: String = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str().map(str::to_owned))
        .collect();
    assert!(!content.is_empty());
    let final_chunk: Value = serde_json::from_str(&data[data.len() - 2]).unwrap();
    assert!(
        final_chunk["usage"]["prompt_tokens"].as_u64().unwrap() > 1000,
        "{final_chunk:#}"
    );

    // A batch runs in the background; its results come back as JSONL.
    let jobs = format!(
        "{}\n{}\n",
        json!({"id": "b1", "task": "ask", "paths": [needle], "question": "What is the vault unseal phrase?", "max_tokens": 24}),
        json!({"custom_id": "b2", "method": "POST", "url": "/v1/chat/completions",
               "body": {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}})
    );
    let (st, results) = s.batch(&jobs, Duration::from_secs(240));
    assert_eq!(st["status"], "done", "{st}");
    assert_eq!((st["done"].as_u64(), st["failed"].as_u64()), (Some(2), Some(0)), "{st}");
    assert_eq!(results.lines().count(), 2, "{results}");

    // Metrics, then delete.
    let (_, m) = s.call("GET", "/metrics", None, true);
    assert!(
        m.contains("scout_requests_total{route=\"/v1/corpora/{id}/ask\",status=\"200\"} 2"),
        "{m}"
    );
    assert!(metric(&m, "scout_kv_hits_total") >= 2, "{m}");
    assert_eq!(s.call("DELETE", "/v1/corpora/needle", None, true).0, 204);
    assert_eq!(s.json("POST", "/v1/corpora/needle/ask", Some(&q)).0, 404);
}

/// 64 clients at once on one corpus, one engine and a short queue: every
/// request is answered or refused with 429 and Retry-After, memory stays
/// bounded, and the corpus was read (prefilled) once: every other answer
/// reused its KV from memory.
#[test]
fn serve_under_load_answers_or_refuses_and_reads_the_corpus_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = Serve::start(
        dir.path(),
        &["--workers", "1", "--queue", "4", "--max-body-bytes", "65536"],
    );
    // An oversized body is refused before anything runs.
    let big = json!({"question": "x".repeat(100_000)});
    assert_eq!(s.call("POST", "/v1/corpora/needle/ask", Some(&big), false).0, 413);
    s.create_needle();
    let rss = |pid: u32| -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    let pid = s.child.id();
    let before = rss(pid);
    let url = s.url.clone();
    let outcomes: Vec<(u16, bool, u64)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..64)
            .map(|i| {
                let url = url.clone();
                scope.spawn(move || {
                    let agent: ureq::Agent = ureq::Agent::config_builder()
                        .http_status_as_error(false)
                        .timeout_global(Some(Duration::from_secs(300)))
                        .build()
                        .into();
                    let resp = agent
                        .post(&format!("{url}/v1/corpora/needle/ask"))
                        .header("content-type", "application/json")
                        .send(
                            json!({"question": format!("What is the vault unseal phrase? ({i})"), "max_tokens": 8})
                                .to_string(),
                        )
                        .unwrap();
                    let status = resp.status().as_u16();
                    let retry_after = resp.headers().get("retry-after").is_some();
                    // An answer's model calls: one, or two when scout asked
                    // again over the lines that match the question.
                    let calls = if status == 200 {
                        let body: serde_json::Value =
                            serde_json::from_str(&resp.into_body().read_to_string().unwrap()).unwrap();
                        body["usage"]["calls"].as_u64().unwrap()
                    } else {
                        0
                    };
                    (status, retry_after, calls)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let calls: u64 = outcomes.iter().map(|o| o.2).sum();
    let outcomes: Vec<(u16, bool)> = outcomes.into_iter().map(|(s, r, _)| (s, r)).collect();
    let ok = outcomes.iter().filter(|(s, _)| *s == 200).count();
    let refused = outcomes.iter().filter(|(s, _)| *s == 429).count();
    assert_eq!(ok + refused, 64, "{outcomes:?}\n{}", s.log());
    assert!(ok >= 1 && refused >= 1, "{ok} answered, {refused} refused");
    assert!(
        outcomes.iter().filter(|(s, _)| *s == 429).all(|(_, r)| *r),
        "429s carry Retry-After"
    );
    let after = rss(pid);
    eprintln!("load: {ok} answered, {refused} refused; RSS {before} kB -> {after} kB");
    assert!(after < before + 512 * 1024, "RSS grew from {before} kB to {after} kB");
    let (_, m) = s.call("GET", "/metrics", None, false);
    assert_eq!(
        metric(&m, "scout_kv_offloads_total"),
        1,
        "the prefix went to memory once:\n{m}"
    );
    // Per request: a request whose first call read the corpus and whose
    // recheck reused it counts as a hit; every answered request counts once.
    assert_eq!(
        metric(&m, "scout_kv_hits_total") + metric(&m, "scout_kv_misses_total"),
        ok as u64,
        "{m}"
    );
    assert_eq!(metric(&m, "scout_rejected_total"), refused as u64);
    assert_eq!(metric(&m, "scout_queue_depth"), 0);
    // Every call but the first reused the whole corpus prefix, from the
    // live context that still held it (a resident context) or else from the
    // host tier, which took it once. (An engine publishes its tier counters
    // after its answer is sent, so the last one may still be on its way.)
    let reused_tokens = metric(&m, "scout_kv_reused_tokens_total");
    assert!(
        calls > 1 && reused_tokens.is_multiple_of(calls - 1),
        "{calls} calls: {m}"
    );
    let prefix = reused_tokens / (calls - 1);
    assert!(prefix > 400, "{m}");
    let from_memory = |m: &str| {
        metric(m, "scout_kv_resident_tokens_total") + metric(m, "scout_kv_tier_hits_total{tier=\"memory\"}") * prefix
    };
    let mut m = m;
    for _ in 0..50 {
        if from_memory(&m) == reused_tokens {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        m = s.call("GET", "/metrics", None, false).1;
    }
    assert_eq!(
        from_memory(&m),
        reused_tokens,
        "every call but the first found the corpus in memory: {m}"
    );
    assert!(
        metric(&m, "scout_kv_resident_total") >= 1,
        "follow-ups read into resident contexts: {m}"
    );
    assert_eq!(metric(&m, "scout_kv_tier_stores_total{tier=\"memory\"}"), 1, "{m}");
    assert_eq!(
        metric(&m, "scout_kv_tier_misses_total{tier=\"memory\"}"),
        1,
        "the corpus is read once: {m}"
    );
}

/// A generation past `--timeout` is stopped and answered with 504; the
/// engine is free for the next request.
#[test]
fn serve_stops_a_generation_at_its_time_limit() {
    let dir = tempfile::tempdir().unwrap();
    let s = Serve::start(dir.path(), &["--timeout", "1"]);
    s.create_needle();
    // Reading ~1,000 prompt tokens takes longer than a second here.
    let started = Instant::now();
    let (status, body) = s.json(
        "POST",
        "/v1/corpora/needle/ask",
        Some(&json!({"question": "What is the vault unseal phrase?"})),
    );
    assert_eq!(status, 504, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("time limit"),
        "{body}"
    );
    assert!(started.elapsed() < Duration::from_secs(20), "stopped promptly");
    assert_eq!(s.call("GET", "/healthz", None, false).0, 200);
}

/// Slow clients (reliability case 23): one that never finishes its
/// headers is disconnected, one that never finishes its body gets 408,
/// both after `--client-timeout`, and the server goes on answering.
#[test]
fn serve_cuts_off_slow_clients() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let s = Serve::start(dir.path(), &["--client-timeout", "2"]);
    let addr = s.url.trim_start_matches("http://").to_owned();
    let read_all = |mut c: std::net::TcpStream| {
        c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut got = Vec::new();
        let _ = c.read_to_end(&mut got);
        String::from_utf8_lossy(&got).into_owned()
    };

    let started = Instant::now();
    let mut headers = std::net::TcpStream::connect(&addr).unwrap();
    headers.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").unwrap();
    let answer = read_all(headers);
    let cut = started.elapsed();
    assert!(!answer.contains("200 OK"), "{answer}");
    assert!(
        cut >= Duration::from_millis(1500) && cut < Duration::from_secs(10),
        "{cut:?}"
    );

    let started = Instant::now();
    let mut body = std::net::TcpStream::connect(&addr).unwrap();
    body.write_all(
        b"POST /v1/corpora HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"id\":",
    )
    .unwrap();
    let answer = read_all(body);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("--client-timeout"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(10));
    eprintln!(
        "figure: case 23: slow headers cut after {cut:.1?}; slow body answered 408 after {:.1?}",
        started.elapsed()
    );

    assert_eq!(s.call("GET", "/healthz", None, false).0, 200);
}
