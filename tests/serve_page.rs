//! The page `scout serve` serves, in headless Chromium through `WebDriver`:
//! ask, watch the answer stream in, click a citation, see the cited line.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::serve::Serve;
use crate::util::free_port;

/// A minimal `WebDriver` client (the W3C protocol over HTTP) for the page test.
struct Browser {
    driver: Child,
    base: String,
    agent: ureq::Agent,
    /// The browser's temporary folder (Chromium leaves its scoped folders
    /// behind when it quits): removed with the browser.
    _tmp: tempfile::TempDir,
}

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A `WebDriver` reply's `value`.
fn value(reply: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Value {
    let text = reply.unwrap().into_body().read_to_string().unwrap();
    serde_json::from_str::<Value>(&text).unwrap()["value"].clone()
}

impl Browser {
    fn start() -> Browser {
        let port = free_port();
        let tmp = tempfile::tempdir().unwrap();
        let driver = std::process::Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .env("TMPDIR", tmp.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian's chromium-driver; scripts/setup --test installs it)");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let root = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        while agent.get(&format!("{root}/status")).call().is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "chromedriver did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"]}}}});
        let mut b = Browser {
            driver,
            base: root.clone(),
            agent,
            _tmp: tmp,
        };
        let session = b.post("/session", &caps);
        let id = session["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {session}"));
        b.base = format!("{root}/session/{id}");
        b
    }

    fn post(&self, path: &str, body: &Value) -> Value {
        value(
            self.agent
                .post(&format!("{}{path}", self.base))
                .header("content-type", "application/json")
                .send(body.to_string()),
        )
    }

    fn get(&self, path: &str) -> Value {
        value(self.agent.get(&format!("{}{path}", self.base)).call())
    }

    /// The first element matching `css`, once there is one.
    fn find(&self, css: &str) -> String {
        let started = Instant::now();
        loop {
            let v = self.post("/element", &json!({"using": "css selector", "value": css}));
            if let Some(id) = v[ELEMENT].as_str() {
                return id.to_owned();
            }
            assert!(started.elapsed() < Duration::from_secs(120), "no element {css}: {v}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn text(&self, element: &str) -> String {
        self.get(&format!("/element/{element}/text"))
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    /// Waits until the text of `css` satisfies `ok`; returns it.
    fn wait_text(&self, css: &str, ok: impl Fn(&str) -> bool) -> String {
        let started = Instant::now();
        loop {
            let t = self.text(&self.find(css));
            if ok(&t) {
                return t;
            }
            assert!(
                started.elapsed() < Duration::from_secs(180),
                "{css} never matched; last text: {t:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.agent.delete(&self.base).call();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// The page in headless Chromium: ask, watch the answer stream in, click
/// the citation, and see the cited line highlighted in the source.
#[test]
fn page_asks_streams_and_highlights_the_cited_source() {
    let dir = tempfile::tempdir().unwrap();
    let s = Serve::start(dir.path(), &[]);
    s.create_needle();
    let b = Browser::start();
    b.post("/url", &json!({"url": format!("{}/", s.url)}));
    // The page picks the only corpus.
    b.wait_text(".corpus.on", |t| t == "needle");
    let q = b.find("#question");
    b.post(
        &format!("/element/{q}/value"),
        &json!({"text": "What is the vault unseal phrase?"}),
    );
    let go = b.find("#go");
    b.post(&format!("/element/{go}/click"), &json!({}));
    let answer = b.wait_text("#answer", |t| t.contains("amber-falcon-7731"));
    assert!(answer.contains("amber-falcon-7731"));
    let cite = b.find("#citations .cite:not(.bad)");
    let anchor = b.text(&cite);
    assert!(anchor.contains("vault/config.py"), "{anchor}");
    b.post(&format!("/element/{cite}/click"), &json!({}));
    let highlighted = b.wait_text("#source .line.hl", |t| !t.is_empty());
    assert!(
        highlighted.contains("amber-falcon-7731"),
        "highlighted: {highlighted:?}"
    );
    assert!(b.text(&b.find("#sourcetitle")).contains("vault/config.py"));
}
