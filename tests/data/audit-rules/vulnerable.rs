use std::fs;
use std::process::Command;

pub fn find_user(conn: &Connection, name: &str) -> Result<Rows> {
    conn.query(&format!("SELECT * FROM users WHERE name = '{name}'"), &[]) // expect: injection
}

pub fn ping(host: &str) -> std::io::Result<std::process::Output> {
    Command::new("sh").arg("-c").arg(format!("ping -c 1 {host}")).output() // expect: command-injection
}

pub fn read(root: &str, name: &str) -> std::io::Result<String> {
    fs::read_to_string(format!("{root}/{name}")) // expect: path-traversal
}

pub async fn fetch(url: String) -> reqwest::Result<reqwest::Response> {
    reqwest::get(url).await // expect: ssrf
}

pub fn digest(password: &str) -> md5::Digest {
    md5::compute(password) // expect: weak-crypto
}

pub fn first(v: &[u8]) -> u8 {
    unsafe { *v.get_unchecked(0) } // expect: memory-safety
}

pub fn session_cookie(sid: String) -> Cookie<'static> {
    Cookie::build(("session", sid)).http_only(true).build() // expect: insecure-cookie
}
