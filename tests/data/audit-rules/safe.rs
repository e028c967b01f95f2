use std::path::{Path, PathBuf};
use std::process::Command;

pub fn find_user(conn: &Connection, name: &str) -> Result<Rows> {
    conn.query("SELECT * FROM users WHERE name = $1", &[&name])
}

pub fn ping(host: &str) -> std::io::Result<std::process::Output> {
    Command::new("ping").args(["-c", "1", host]).output()
}

pub fn read(root: &Path, name: &str) -> std::io::Result<String> {
    let path: PathBuf = root.join(name).canonicalize()?;
    if !path.starts_with(root) {
        return Err(std::io::Error::other("outside the root"));
    }
    std::fs::read_to_string(path)
}

pub async fn fetch() -> reqwest::Result<reqwest::Response> {
    reqwest::get("https://api.example.com/items").await
}

pub fn digest(password: &str) -> [u8; 32] {
    sha2::Sha256::digest(password).into()
}

pub fn first(v: &[u8]) -> Option<u8> {
    v.first().copied()
}

pub fn session_cookie(sid: String) -> Cookie<'static> {
    Cookie::build(("session", sid)).http_only(true).secure(true).build()
}
