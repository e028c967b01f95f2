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
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("SCOUT_CACHE_DIR", cache)
        .env_remove("SCOUT_MODEL")
        .env_remove("SCOUT_THREADS");
    cmd
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
