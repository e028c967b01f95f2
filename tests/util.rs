//! Helpers: run the binary, find fixtures, share the default model.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(rel)
}

/// A `scout` command with its own empty cache folder (so on-the-fly
/// corpora never leak between tests), run from the crate root.
pub fn scout(cache: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_scout"));
    isolated(&mut cmd, cache);
    cmd
}

/// [`scout`] started with Ctrl-C (SIGINT) at its default action. A suite
/// started in the background by a shell without job control (`cmd &` in a
/// script, or under `nohup`) ignores SIGINT, and every process it starts
/// inherits that: a test that interrupts scout would find it running on.
pub fn scout_interruptible(cache: &Path) -> Command {
    let mut cmd = Command::new("env");
    cmd.arg("--default-signal=INT").arg(env!("CARGO_BIN_EXE_scout"));
    isolated(&mut cmd, cache);
    cmd
}

fn isolated(cmd: &mut Command, cache: &Path) {
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("SCOUT_CACHE_DIR", cache)
        .env_remove("SCOUT_MODEL")
        .env_remove("SCOUT_THREADS")
        .env_remove("SCOUT_ENGINE")
        .env_remove("SCOUT_API_KEY");
}

/// `scout ask --json` on the default model, one thread, with `extra`
/// options.
pub fn ask(cache: &Path, source: &Path, question: &str, extra: &[&str]) -> std::process::Output {
    scout(cache)
        .args(["ask", "--json", "--threads", "1", "--model"])
        .arg(model())
        .args(extra)
        .arg(source)
        .arg(question)
        .output()
        .unwrap()
}

/// The default model, fetched on first use into the user's real cache so
/// that it is fetched once per machine, not once per test.
pub fn model() -> &'static Path {
    static MODEL: OnceLock<PathBuf> = OnceLock::new();
    MODEL.get_or_init(|| {
        let out = Command::new(env!("CARGO_BIN_EXE_scout"))
            .args(["models", "--fetch", "--json"])
            .env_remove("SCOUT_CACHE_DIR")
            .output()
            .expect("run scout models");
        assert!(
            out.status.success(),
            "fetching the default model failed:\n{}",
            text(&out.stderr)
        );
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("models --json is JSON");
        let default = list
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["default"] == true)
            .expect("a default model");
        PathBuf::from(default["path"].as_str().unwrap())
    })
}

/// `scout ingest --no-tokens --json --corpus CORPUS EXTRA... SOURCE`, with
/// `cache` as its cache folder.
pub fn ingest(cache: &Path, corpus: &Path, source: &Path, extra: &[&str]) -> Output {
    scout(cache)
        .args(["ingest", "--no-tokens", "--json", "--corpus"])
        .arg(corpus)
        .args(extra)
        .arg(source)
        .output()
        .unwrap()
}

/// A TCP port on 127.0.0.1 that nothing listens on (it was free a moment ago).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            text(&out.stdout),
            text(&out.stderr)
        )
    })
}

/// Generation parameters holding an answer to a small schema: a port (an
/// integer) and a service name (a string), nothing else.
pub fn port_service_params() -> scout::engine::GenerateParams {
    scout::engine::GenerateParams {
        json_schema: Some(serde_json::json!({
            "type": "object",
            "properties": {"port": {"type": "integer"}, "service": {"type": "string"}},
            "required": ["port", "service"],
            "additionalProperties": false
        })),
        max_tokens: 60,
        ..scout::engine::GenerateParams::default()
    }
}

/// A short prompt whose answer fits [`port_service_params`]'s schema.
pub fn port_service_messages() -> [scout::engine::ChatMessage; 2] {
    use scout::engine::{ChatMessage, Role};
    [
        ChatMessage::new(Role::System, "The api service listens on port 8412."),
        ChatMessage::new(Role::User, "Give the port and the service name as JSON."),
    ]
}

/// Asserts that `answer` is JSON valid for [`port_service_params`]'s schema.
pub fn assert_port_service_json(answer: &str) {
    let v: serde_json::Value = serde_json::from_str(answer).unwrap_or_else(|err| panic!("not JSON ({err}): {answer}"));
    let obj = v.as_object().unwrap_or_else(|| panic!("not an object: {v}"));
    assert!(
        obj["port"].is_i64() && obj["service"].is_string() && obj.len() == 2,
        "{v}"
    );
}

/// Runs git in `repo` with fixed dates and identity, asserting success.
pub fn git_at(repo: &Path, args: &[&str], date: &str) {
    let ok = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .env("GIT_AUTHOR_DATE", date)
        .env("GIT_COMMITTER_DATE", date)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .status()
        .unwrap()
        .success();
    assert!(ok, "git {args:?}");
}

/// Sets every file under `dir` modified in the last minute as modified an
/// hour ago (older files keep their time): a file modified in the 2
/// seconds before an ingest reads it is read again by the next one (its
/// time cannot show an edit made in the same clock tick), so tests of
/// what a re-ingest does not read age their files first.
pub fn backdate(dir: &Path) {
    let now = std::time::SystemTime::now();
    let hour_ago = now - std::time::Duration::from_secs(3600);
    let minute_ago = now - std::time::Duration::from_secs(60);
    let walk = ignore::WalkBuilder::new(dir)
        .hidden(false)
        .filter_entry(|e| e.file_name() != ".git")
        .build();
    for entry in walk.flatten() {
        let recent = entry
            .metadata()
            .and_then(|m| Ok(m.modified()?))
            .is_ok_and(|t| t > minute_ago);
        if entry.file_type().is_some_and(|t| t.is_file()) && recent {
            std::fs::File::options()
                .write(true)
                .open(entry.path())
                .and_then(|f| f.set_modified(hour_ago))
                .unwrap();
        }
    }
}
