//! The openai engine against a real third-party OpenAI-compatible server:
//! llama-cpp-python's, started here on loopback with the default model.
//! `scripts/setup --test` builds it once into ~/.cache/scout/test-server.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use scout::engine::llamacpp::LlamaCppTokenizer;
use scout::engine::openai::{OpenAiEngine, OpenAiOptions};
use scout::engine::{ChatMessage, Engine, EngineEvent, GenerateParams, Role};

use crate::util::{model, scout, text};

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
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
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
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
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
