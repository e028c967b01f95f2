//! The openai backend against loopback stand-ins for servers.

use std::sync::{Arc, Mutex};

use super::endpoints::{acquire, pick, Endpoint, InFlight};
use super::*;

/// A loopback stand-in for a server that lists one model and answers
/// every chat request with `pieces` as server-sent events, then
/// `[DONE]` if `finish`, else a cut connection; with `throttle`, the
/// first chat request gets a 429 with `Retry-After: 1`. Returns its
/// base URL.
/// A whole HTTP request: headers, then as many body bytes as they
/// announce. (Answering after a partial read and closing would reset
/// the connection while the client still sends, which a loaded machine
/// turns into a spurious connection error.)
fn read_request(stream: &mut std::net::TcpStream) -> String {
    use std::io::Read;
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = stream.read(&mut buf).unwrap_or(0);
        if n == 0 {
            break;
        }
        data.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&data);
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if data.len() >= end + 4 + length {
                break;
            }
        }
    }
    String::from_utf8_lossy(&data).into_owned()
}

fn canned(pieces: &'static [&'static str], finish: bool, throttle: bool) -> String {
    canned_recording(pieces, finish, throttle, std::sync::Arc::default())
}

/// [`canned`], keeping each chat request's body in `seen`.
fn canned_recording(
    pieces: &'static [&'static str],
    finish: bool,
    throttle: bool,
    seen: std::sync::Arc<Mutex<Vec<String>>>,
) -> String {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut throttle = throttle;
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let request = read_request(&mut stream);
            if !request.starts_with("GET") {
                if let Some((_, body)) = request.split_once("\r\n\r\n") {
                    seen.lock().unwrap().push(body.to_owned());
                }
            }
            if !request.starts_with("GET") && std::mem::take(&mut throttle) {
                let _ = write!(
                    stream,
                    "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbusy"
                );
                continue;
            }
            let (kind, body) = if request.starts_with("GET") {
                ("application/json", r#"{"data":[{"id":"canned"}]}"#.to_owned())
            } else {
                let mut body: String = pieces
                    .iter()
                    .map(|p| format!("data: {}\n\n", json!({"choices": [{"delta": {"content": p}}]})))
                    .collect();
                if finish {
                    body.push_str("data: [DONE]\n\n");
                }
                ("text/event-stream", body)
            };
            // A cut stream claims more bytes than it sends.
            let length = body.len() + if finish || kind != "text/event-stream" { 0 } else { 100 };
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n{body}"
            );
        }
    });
    url
}

use crate::prompt::Words;

fn engine_over(urls: &[String]) -> OpenAiEngine {
    let options = OpenAiOptions {
        endpoints: urls.to_vec(),
        backoff: Duration::from_millis(1),
        ..OpenAiOptions::default()
    };
    OpenAiEngine::connect(options, Box::new(Words), true).unwrap()
}

fn run(e: &mut OpenAiEngine) -> (Result<Generation, EngineError>, String) {
    let mut shown = String::new();
    let messages = [ChatMessage::new(super::super::Role::User, "q")];
    let r = e.generate(&messages, &GenerateParams::default(), &mut |ev| {
        if let EngineEvent::Text(t) = ev {
            shown.push_str(t);
        }
    });
    (r, shown)
}

#[test]
fn images_go_to_a_server_that_reads_them_as_data_urls_between_the_text() {
    use base64::Engine as _;
    let mut png = Vec::new();
    image::DynamicImage::ImageRgb8(image::RgbImage::new(672, 336))
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let mut c = crate::prompt::Content::text("Scan follows:\n");
    c.push_image(std::sync::Arc::new(super::super::PromptImage {
        bytes: png.clone(),
        width: 672,
        height: 336,
        label: "scan.pdf#page=1".into(),
    }));
    c.push_str("\nEnd of scan.");
    let messages = [
        c.into_message(super::super::Role::System),
        ChatMessage::new(super::super::Role::User, "q"),
    ];
    let seen = std::sync::Arc::default();
    let url = canned_recording(&["ok"], true, false, std::sync::Arc::clone(&seen));
    let mut e = engine_over(&[url]);
    assert!(
        !e.capabilities().vision,
        "only when the user says the model reads images"
    );
    assert_eq!(e.image_tokens(672, 336), None);
    e.options.vision = true;
    assert!(e.capabilities().vision);
    // Budgeted at Llama 4's cost: two tiles and the global one.
    let text_only = [
        ChatMessage::new(super::super::Role::System, "Scan follows:\n\nEnd of scan."),
        messages[1].clone(),
    ];
    assert_eq!(
        e.count_chat_tokens(&messages).unwrap(),
        e.count_chat_tokens(&text_only).unwrap() + 437
    );
    e.generate(&messages, &GenerateParams::default(), &mut |_| {}).unwrap();
    let body: Value = serde_json::from_str(&seen.lock().unwrap()[0]).unwrap();
    let content = &body["messages"][0]["content"];
    assert_eq!(content[0], json!({"type": "text", "text": "Scan follows:\n"}));
    assert_eq!(content[1]["type"], "image_url");
    let url = content[1]["image_url"]["url"].as_str().unwrap();
    let data = url.strip_prefix("data:image/png;base64,").expect(url);
    assert_eq!(base64::engine::general_purpose::STANDARD.decode(data).unwrap(), png);
    assert_eq!(content[2], json!({"type": "text", "text": "\nEnd of scan."}));
    assert_eq!(body["messages"][1]["content"], "q", "text-only messages stay strings");
}

#[test]
fn a_retry_that_agrees_continues_the_answer_without_repeating_it() {
    let cut = canned(&["The port ", "is "], false, false);
    let whole = canned(&["The port ", "is ", "8412."], true, false);
    let mut e = engine_over(&[cut, whole]);
    let (g, shown) = run(&mut e);
    assert_eq!(g.unwrap().text, "The port is 8412.");
    assert_eq!(shown, "The port is 8412.");
    assert_eq!(e.endpoints()[0].stats(), (0, 1));
}

#[test]
fn a_retry_that_answers_differently_is_an_error_not_a_splice() {
    let cut = canned(&["The port ", "is "], false, false);
    let other = canned(&["Backups run ", "nightly."], true, false);
    let mut e = engine_over(&[cut, other]);
    let (g, shown) = run(&mut e);
    let err = g.unwrap_err().to_string();
    assert!(err.contains("answered differently"), "{err}");
    assert_eq!(shown, "The port is ");
}

#[test]
fn a_lone_throttled_server_is_waited_for_as_it_asks() {
    let busy = canned(&["ok"], true, true);
    let mut e = engine_over(&[busy]);
    let started = std::time::Instant::now();
    let (g, _) = run(&mut e);
    assert_eq!(g.unwrap().text, "ok");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 was honoured"
    );
}

#[test]
fn endpoint_urls_end_in_v1() {
    assert_eq!(Endpoint::new("http://h:8000").url, "http://h:8000/v1");
    assert_eq!(Endpoint::new("http://h:8000/v1/").url, "http://h:8000/v1");
}

#[test]
fn dispatch_prefers_the_least_loaded_endpoint_that_is_not_resting() {
    let e = [
        Endpoint::new("http://a"),
        Endpoint::new("http://b"),
        Endpoint::new("http://c"),
    ];
    assert_eq!(pick(&e, None), 0);
    let a = InFlight::new(&e[0]);
    assert_eq!(pick(&e, None), 1);
    let _b = InFlight::new(&e[1]);
    e[2].rest();
    // c is resting: a and b are busy alike, a comes first.
    assert_eq!(pick(&e, None), 0);
    // After a failure on a, the other busy one.
    assert_eq!(pick(&e, Some(0)), 1);
    drop(a);
    assert_eq!(pick(&e, None), 0);
}

/// A server that takes one request at a time and answers each chat
/// request `delay` after reading it, with the text of its own request
/// count (so answers show which request they were).
fn slow(delay: Duration) -> String {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let request = read_request(&mut stream);
            let (kind, body) = if request.starts_with("GET") {
                ("application/json", r#"{"data":[{"id":"slow"}]}"#.to_owned())
            } else {
                std::thread::sleep(delay);
                // The answer names the question it was asked.
                let asked = request
                    .rsplit("\"content\":\"")
                    .next()
                    .unwrap_or("")
                    .split('"')
                    .next()
                    .unwrap_or("");
                (
                    "text/event-stream",
                    format!(
                        "data: {}\n\ndata: [DONE]\n\n",
                        json!({"choices": [{"delta": {"content": format!("re {asked}")}}]})
                    ),
                )
            };
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

#[test]
fn independent_calls_run_on_every_server_at_once_and_come_back_in_order() {
    let delay = Duration::from_millis(600);
    let options = OpenAiOptions {
        endpoints: vec![slow(delay), slow(delay)],
        slots: Some(1),
        ..OpenAiOptions::default()
    };
    let mut e = OpenAiEngine::connect(options, Box::new(Words), true).unwrap();
    assert_eq!(e.slots(), 2);
    let asks: Vec<Vec<ChatMessage>> = (0..4)
        .map(|i| vec![ChatMessage::new(super::super::Role::User, format!("q{i}"))])
        .collect();
    let params = GenerateParams::default();
    let calls: Vec<super::super::Call<'_>> = asks
        .iter()
        .map(|m| super::super::Call {
            messages: m,
            params: &params,
        })
        .collect();
    let mut most_in_flight = 0;
    let mut in_flight = 0;
    let started = Instant::now();
    let results = e.generate_each(&calls, &mut |_, ev| match ev {
        super::super::EachEvent::Started => {
            in_flight += 1;
            most_in_flight = most_in_flight.max(in_flight);
        }
        super::super::EachEvent::Finished(_) => in_flight -= 1,
        super::super::EachEvent::Engine(_) => {}
    });
    let wall = started.elapsed();
    let answers: Vec<String> = results.into_iter().map(|r| r.unwrap().text).collect();
    assert_eq!(answers, ["re q0", "re q1", "re q2", "re q3"]);
    // Four calls of 600 ms each on two one-at-a-time servers: 1.2 s when
    // both work at once, 2.4 s one after another.
    assert!(wall < delay * 3, "took {wall:?}");
    assert_eq!(most_in_flight, 2, "one call per slot");
    let served: Vec<u64> = e.endpoints().iter().map(|x| x.stats().0).collect();
    assert_eq!(served, [2, 2]);
}

#[test]
fn dispatch_fills_free_slots_before_busy_ones() {
    let e = [Endpoint::new("http://a"), Endpoint::new("http://b")];
    e[0].set_slots(2, "--slots");
    e[1].set_slots(1, "--slots");
    let _a = InFlight::new(&e[0]);
    // a has 1 of 2 busy, b 0 of 1: b first.
    assert_eq!(pick(&e, None), 1);
    let _b = InFlight::new(&e[1]);
    // b is full, a has a free slot.
    assert_eq!(pick(&e, None), 0);
}

#[test]
fn engines_naming_one_server_share_its_slots_and_a_request_waits_for_a_free_one() {
    let url = slow(Duration::from_millis(1));
    let options = OpenAiOptions {
        endpoints: vec![url],
        slots: Some(1),
        ..OpenAiOptions::default()
    };
    let a = OpenAiEngine::connect(options.clone(), Box::new(Words), true).unwrap();
    let b = OpenAiEngine::connect(options, Box::new(Words), true).unwrap();
    assert!(Arc::ptr_eq(&a.endpoints()[0], &b.endpoints()[0]));
    let (_, held) = acquire(a.endpoints(), None);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let (i, _slot) = acquire(b.endpoints(), None);
            tx.send(i).unwrap();
        });
        // b's request waits while a's holds the only slot...
        assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
        drop(held);
        // ...and goes as soon as it frees.
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(0));
    });
}
