//! The openai engine against a real third-party OpenAI-compatible server:
//! llama-cpp-python's, started here on loopback with the default model.
//! `scripts/setup --test` builds it once into ~/.cache/scout/test-server.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use scout::engine::llamacpp::LlamaCppTokenizer;
use scout::engine::openai::{OpenAiEngine, OpenAiOptions};
use scout::engine::{ChatMessage, Engine, EngineEvent, GenerateParams, Role};

use crate::util::{free_port, model, scout, text};

fn server_python() -> PathBuf {
    let dir = std::env::var_os("SCOUT_TEST_SERVER_DIR").map_or_else(
        || {
            dirs::home_dir()
                .expect("a home folder")
                .join(".cache/scout/test-server")
        },
        PathBuf::from,
    );
    dir.join("venv/bin/python")
}

/// A llama-cpp-python server on a free loopback port, killed when dropped.
struct Server {
    child: Child,
    url: String,
    log: tempfile::NamedTempFile,
}

impl Server {
    fn start() -> Server {
        let python = server_python();
        assert!(
            python.exists(),
            "no test server at {}: run scripts/setup --test",
            python.display()
        );
        let port = free_port();
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new(&python)
            .args(["-m", "llama_cpp.server", "--host", "127.0.0.1", "--n_ctx", "8192"])
            // One thread each: two servers then decode alike, token for token.
            .args(["--n_threads", "1", "--port", &port.to_string(), "--model"])
            .arg(model())
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap();
        let mut server = Server {
            child,
            url: format!("http://127.0.0.1:{port}/v1"),
            log,
        };
        let started = Instant::now();
        loop {
            if ureq::get(&format!("{}/models", server.url)).call().is_ok() {
                return server;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("the test server exited ({status}):\n{}", server.log());
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "the test server did not come up:\n{}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn engine(urls: &[&str]) -> OpenAiEngine {
    let tokenizer = LlamaCppTokenizer::load(model()).unwrap();
    let options = OpenAiOptions {
        endpoints: urls.iter().map(|u| (*u).to_owned()).collect(),
        backoff: Duration::from_millis(50),
        ..OpenAiOptions::default()
    };
    OpenAiEngine::connect(options, Box::new(tokenizer), true).unwrap()
}

fn question(q: &str) -> Vec<ChatMessage> {
    vec![
        ChatMessage::new(
            Role::System,
            "The server listens on port 8412. Backups run nightly at 02:00 UTC.",
        ),
        ChatMessage::new(Role::User, q),
    ]
}

#[test]
fn ask_answers_through_a_real_server() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let out = scout(dir.path())
        .args(["ask", "examples/demo", "What port does the server listen on?"])
        .args(["--engine", "openai", "--endpoint", &server.url, "--tokenizer"])
        .arg(model())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}\n{}", text(&out.stderr), server.log());
    let answer = text(&out.stdout);
    assert!(answer.contains("8412"), "{answer}");
    assert!(
        text(&out.stderr).contains("(openai, context 8192"),
        "{}",
        text(&out.stderr)
    );
    // `scout models` lists what the server serves.
    let out = scout(dir.path())
        .args(["models", "--json", "--endpoint", &server.url])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = v["served"][0]["models"][0]["id"].as_str().unwrap();
    assert!(id.contains("SmolLM2"), "{v:#}");
}

#[test]
fn streaming_shows_the_answer_in_pieces_and_usage_matches_the_prompt() {
    let server = Server::start();
    let mut e = engine(&[&server.url]);
    let messages = question("What port does the server listen on?");
    let mut pieces = Vec::new();
    let g = e
        .generate(&messages, &GenerateParams::default(), &mut |ev| {
            if let EngineEvent::Text(t) = ev {
                pieces.push(t.to_owned());
            }
        })
        .unwrap();
    assert!(pieces.len() > 2, "{pieces:?}");
    assert_eq!(pieces.concat(), g.text);
    assert!(g.text.contains("8412"), "{}", g.text);
    // The server's own count of the prompt, against scout's estimate from
    // the same vocabulary: the chat wrapping is all that differs.
    let local = e.count_chat_tokens(&messages).unwrap();
    assert!(
        g.prompt_tokens > 20 && g.prompt_tokens <= local,
        "{} vs {local}",
        g.prompt_tokens
    );
    assert!(g.completion_tokens > 0);
}

#[test]
fn json_schema_output_parses_and_validates() {
    let server = Server::start();
    let mut e = engine(&[&server.url]);
    let params = crate::util::port_service_params();
    let g = e
        .generate(
            &question("Give the port the server listens on, and the service name 'api', as JSON."),
            &params,
            &mut |_| {},
        )
        .unwrap();
    crate::util::assert_port_service_json(&g.text);
}

#[test]
fn two_endpoints_share_the_work_and_one_dying_mid_answer_loses_nothing() {
    let mut a = Server::start();
    let b = Server::start();
    let mut e = engine(&[&a.url, &b.url]);
    let params = GenerateParams {
        max_tokens: 48,
        ..GenerateParams::default()
    };
    let ask = |e: &mut OpenAiEngine, q: &str| e.generate(&question(q), &params, &mut |_| {}).unwrap().text;
    // The reference answer, and the second request goes to the other server.
    let reference = ask(&mut e, "When do backups run, and on which port is the server?");
    ask(&mut e, "What port does the server listen on?");
    let served = |e: &OpenAiEngine| e.endpoints().iter().map(|x| x.stats().0).collect::<Vec<_>>();
    assert_eq!(served(&e), vec![1, 1], "least-loaded dispatch alternates");
    // Server a dies as its first words arrive: the answer moves to b, and
    // what was already shown is not shown twice.
    let mut shown = String::new();
    let g = e
        .generate(
            &question("When do backups run, and on which port is the server?"),
            &params,
            &mut |ev| {
                if let EngineEvent::Text(t) = ev {
                    if shown.is_empty() {
                        a.kill();
                    }
                    shown.push_str(t);
                }
            },
        )
        .unwrap();
    assert_eq!(g.text, reference);
    assert_eq!(shown, reference);
    let (a_served, a_failed) = e.endpoints()[0].stats();
    assert_eq!((a_served, a_failed), (1, 1));
    // Later requests go to b alone while a rests.
    ask(&mut e, "What port does the server listen on?");
    assert_eq!(served(&e), vec![1, 3]);
}

#[test]
fn no_endpoint_up_is_a_clear_error() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let out = scout(dir.path())
        .args(["ask", "examples/demo", "What port?", "--engine", "openai"])
        .args(["--endpoint", &format!("http://127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("no endpoint answered"), "{err}");
    let out = scout(dir.path())
        .args(["models", "--endpoint", &format!("http://127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stdout).contains("not reachable"), "{}", text(&out.stdout));
}

/// Three essays of about 550 tokens, one fact each: three windows at a
/// context of 1,024.
fn essays(dir: &std::path::Path) {
    use std::fmt::Write as _;
    let facts = [
        "The archive of old maps is kept in the city of Tallinn.",
        "The observatory's largest telescope has a mirror of 4.1 metres.",
        "The river ferry leaves the north pier every 35 minutes.",
    ];
    std::fs::create_dir_all(dir).unwrap();
    for (i, fact) in facts.iter().enumerate() {
        let mut text = String::new();
        for k in 0..18 {
            writeln!(
                text,
                "Paragraph {k} of essay {i} describes the weather, the roads and the markets of the region in plain words."
            )
            .unwrap();
            if k == 9 {
                text.push_str(fact);
                text.push('\n');
            }
        }
        std::fs::write(dir.join(format!("essay{i}.txt")), text).unwrap();
    }
}

/// `scout ask` over the essays through `endpoints`, as JSON, with stderr.
fn sweep(
    cache: &std::path::Path,
    corpus: &std::path::Path,
    endpoints: &[&str],
    extra: &[&str],
) -> std::process::Output {
    let mut cmd = scout(cache);
    cmd.arg("ask")
        .arg(corpus)
        .arg("Where is the archive of old maps kept?")
        .args(["--engine", "openai", "--tokenizer"])
        .arg(model())
        .args(["--context", "1024", "--max-tokens", "32", "--json"])
        .args(extra);
    for e in endpoints {
        cmd.args(["--endpoint", e]);
    }
    cmd.output().unwrap()
}

#[test]
fn a_sweep_keeps_both_servers_busy_at_once_and_answers_as_one_server_does() {
    let a = Server::start();
    let b = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("essays");
    essays(&corpus);
    // llama-cpp-python takes one request at a time: scout knows it by its
    // model listing.
    let one = sweep(dir.path(), &corpus, &[&a.url], &[]);
    let both = sweep(dir.path(), &corpus, &[&a.url, &b.url], &[]);
    // Told it takes three, it cuts an answer short when the next request
    // arrives: scout asks again, one at a time from then on.
    let forced = sweep(dir.path(), &corpus, &[&a.url], &["--slots", "3"]);
    for out in [&one, &both, &forced] {
        assert!(matches!(out.status.code(), Some(0 | 1)), "{}", text(&out.stderr));
    }
    assert!(
        text(&one.stderr).contains("(1 slot from llama-cpp-python, one request at a time)"),
        "{}",
        text(&one.stderr)
    );
    let (one_json, both_json) = (crate::util::json(&one), crate::util::json(&both));
    assert_eq!(both_json["plan"]["windows"], 3, "{both_json:#}");
    // The same notes per window and the same answer, whichever server read
    // which window, and however many requests it was sent at once.
    for other in [&both_json, &crate::util::json(&forced)] {
        assert_eq!(one_json["windows"], other["windows"]);
        assert_eq!(one_json["answer"], other["answer"]);
    }
    // With two servers, the second window went out before the first came
    // back: both servers were busy at once.
    let err = text(&both.stderr);
    let second_started = err.find("reading window 2 of 3").expect("window 2's line");
    let first_done = err.find("done (1 of 3)").expect("a done line");
    assert!(second_started < first_done, "{err}");
    let err = text(&one.stderr);
    assert!(
        err.find("reading window 2 of 3").unwrap() > err.find("done (1 of 3)").unwrap(),
        "one slot: one window at a time\n{err}"
    );
    assert!(err.contains("plan: 3 windows"), "{err}");
}

/// A server that lists a model and answers every chat request with a 500,
/// counting them.
pub(crate) fn failing_server(chats: std::sync::Arc<std::sync::atomic::AtomicUsize>) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut buf = vec![0u8; 65536];
            let n = stream.read(&mut buf).unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]).into_owned();
            let (status, body) = if head.starts_with("GET") && head.contains("/models") {
                ("200 OK", r#"{"data":[{"id":"failing"}]}"#)
            } else if head.starts_with("GET") {
                ("404 Not Found", "{}")
            } else {
                chats.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                ("500 Internal Server Error", r#"{"error":"always"}"#)
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

#[test]
fn a_dry_run_plans_without_a_model_call_and_max_windows_refuses_a_larger_sweep() {
    let chats = std::sync::Arc::default();
    let url = failing_server(std::sync::Arc::clone(&chats));
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("essays");
    essays(&corpus);
    let out = sweep(dir.path(), &corpus, &[&url], &["--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v = crate::util::json(&out);
    assert_eq!(v["plan"]["windows"], 3, "{v:#}");
    assert_eq!(v["plan"]["slots"], 4, "no slots reported: the default");
    assert!(v["plan"]["prompt_tokens"].as_u64().unwrap() > 1500, "{v:#}");
    let out = sweep(dir.path(), &corpus, &[&url], &["--max-windows", "2"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("plan: 3 windows"), "{err}");
    assert!(
        err.contains("3 windows of this engine's context, over --max-windows 2"),
        "{err}"
    );
    assert_eq!(
        chats.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "no chat request was sent"
    );
}

/// `scout extract` plans its documents too: `--dry-run` calls no model,
/// `--max-windows` refuses a larger extraction with exit 2.
#[test]
fn an_extraction_plans_its_documents_and_max_windows_refuses_more() {
    let chats = std::sync::Arc::default();
    let url = failing_server(std::sync::Arc::clone(&chats));
    let dir = tempfile::tempdir().unwrap();
    let run = |extra: &[&str]| {
        scout(dir.path())
            .arg("extract")
            .arg(crate::util::data("receipts"))
            .args([
                "--schema",
                "receipt",
                "--engine",
                "openai",
                "--endpoint",
                &url,
                "--tokenizer",
            ])
            .arg(model())
            .args(["--context", "4096"])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = run(&["--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v = crate::util::json(&out);
    // Two receipts, the folder's README and its truth file.
    assert_eq!(v["plan"]["windows"], 4, "{v:#}");
    assert_eq!(v["plan"]["step"], "extract", "{v:#}");
    let out = run(&["--max-windows", "3"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("plan: 4 documents or pages"), "{err}");
    assert!(err.contains("takes 4 model calls (one per document"), "{err}");
    assert_eq!(
        chats.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "no chat request was sent"
    );
}
