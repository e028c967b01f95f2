//! The `openai` backend: any OpenAI-compatible server (vLLM, SGLang,
//! llama-server, llama-cpp-python, Ollama, mistralrs-server), one or many.
//!
//! Chat completions with streaming (server-sent events), optional
//! `response_format` JSON schema, timeouts, retries with backoff on 429,
//! 5xx and broken connections, and least-loaded dispatch across several
//! endpoints: a request goes to the healthy endpoint with the fewest
//! requests in flight, and an endpoint that fails rests for a while.
//!
//! Token counts come from a local tokenizer (a GGUF's vocabulary): exact
//! when it is the served model's, an estimate otherwise; the server's own
//! `usage` is what a generation reports when the server sends it.
//!
//! With `vision` (the served model reads images), a message's images go
//! in as `image_url` parts holding data URLs, between its text parts.
//!
//! Never fetches anything but the endpoints it is given, and never shows a
//! piece of an answer twice across a failover.

use std::io::{BufRead, BufReader};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{
    Capabilities, ChatMessage, Engine, EngineError, EngineEvent, GenerateParams, Generation, Part, StopFilter,
    StopReason, Tokenizer,
};

/// Tokens of chat formatting per message (role header and end marker) when
/// the local tokenizer cannot render the server's template: generous for
/// `ChatML` and Llama 3/4 headers alike.
const TOKENS_PER_MESSAGE: u32 = 8;
/// Share of the context held back when counts are estimates.
const ESTIMATE_MARGIN: f64 = 0.10;
/// Longest `Retry-After` honoured.
const MAX_RETRY_AFTER_SECONDS: u64 = 60;
/// Context assumed when neither the user nor the server says.
const DEFAULT_CONTEXT: u32 = 8192;
/// How long an endpoint rests after a failure before it is tried again.
const REST: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct OpenAiOptions {
    /// Base URLs (`http://host:8000` or `http://host:8000/v1`).
    pub endpoints: Vec<String>,
    /// The served model's name; default: the first the server lists.
    pub model: Option<String>,
    pub api_key: Option<String>,
    /// Context tokens; default: what the server reports, else 8192.
    pub context: Option<u32>,
    /// Longest a request may take, answer included.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Attempts after the first, across endpoints.
    pub retries: u32,
    /// First backoff; doubles per attempt up to 8 s.
    pub backoff: Duration,
    /// The served model reads images: they go in as data URLs where they
    /// stand, budgeted at Llama 4's tile cost.
    pub vision: bool,
}

impl Default for OpenAiOptions {
    fn default() -> Self {
        Self {
            endpoints: Vec::new(),
            model: None,
            api_key: None,
            context: None,
            timeout: Duration::from_secs(1800),
            connect_timeout: Duration::from_secs(10),
            retries: 4,
            backoff: Duration::from_millis(250),
            vision: false,
        }
    }
}

/// One server, with what dispatch needs to know about it.
#[derive(Debug)]
pub struct Endpoint {
    pub url: String,
    in_flight: AtomicU32,
    served: AtomicU64,
    failures: AtomicU64,
    resting_until: Mutex<Option<Instant>>,
}

impl Endpoint {
    fn new(url: &str) -> Self {
        let trimmed = url.trim_end_matches('/');
        let url = if trimmed.ends_with("/v1") {
            trimmed.to_owned()
        } else {
            format!("{trimmed}/v1")
        };
        Self {
            url,
            in_flight: AtomicU32::new(0),
            served: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            resting_until: Mutex::new(None),
        }
    }

    fn resting(&self) -> bool {
        self.resting_until
            .lock()
            .is_ok_and(|r| r.is_some_and(|t| Instant::now() < t))
    }

    fn rest(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut r) = self.resting_until.lock() {
            *r = Some(Instant::now() + REST);
        }
    }

    /// Requests answered, and failures, so far.
    #[must_use]
    pub fn stats(&self) -> (u64, u64) {
        (
            self.served.load(Ordering::Relaxed),
            self.failures.load(Ordering::Relaxed),
        )
    }
}

/// The least-loaded endpoint that is not resting (all resting: the
/// least-loaded of all, so a run never stalls on a pause).
fn pick(endpoints: &[Endpoint], avoid: Option<usize>) -> usize {
    let load = |i: usize| {
        let e = &endpoints[i];
        (
            e.resting() || Some(i) == avoid,
            e.in_flight.load(Ordering::Relaxed),
            e.served.load(Ordering::Relaxed),
        )
    };
    (0..endpoints.len()).min_by_key(|&i| load(i)).unwrap_or(0)
}

/// A request that holds its endpoint's in-flight count until dropped.
struct InFlight<'a>(&'a Endpoint);

impl<'a> InFlight<'a> {
    fn new(e: &'a Endpoint) -> Self {
        e.in_flight.fetch_add(1, Ordering::Relaxed);
        Self(e)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

pub struct OpenAiEngine {
    endpoints: Vec<Endpoint>,
    agent: ureq::Agent,
    model: String,
    api_key: Option<String>,
    context_length: u32,
    tokenizer: Box<dyn Tokenizer + Send>,
    exact_counts: bool,
    model_id: String,
    options: OpenAiOptions,
    /// Sampling extensions (`repeat_penalty`, `repetition_penalty`) are
    /// sent until a server refuses them.
    send_extensions: bool,
    /// `response_format` as OpenAI spells it (`json_schema`) until a server
    /// refuses it; then the older `json_object` with a `schema`, which
    /// llama-cpp-python and others read.
    schema_as_json_object: bool,
}

impl std::fmt::Debug for OpenAiEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiEngine")
            .field("endpoints", &self.endpoints)
            .field("model", &self.model)
            .field("context_length", &self.context_length)
            .finish_non_exhaustive()
    }
}

/// What went wrong with one attempt, and whether another may succeed.
#[derive(Debug)]
enum Attempt {
    /// Worth retrying elsewhere (connection, 429, 5xx, a broken stream).
    Retry(String),
    /// A server asked to be left alone this long (`Retry-After`).
    RetryAfter(String, Duration),
    /// The request itself is wrong (4xx): retrying cannot help.
    Fatal(String),
}

impl OpenAiEngine {
    /// Connects to the endpoints (each is asked for its models; those that
    /// do not answer start out resting) and settles the model name and
    /// context. `tokenizer` counts tokens locally; `exact` says whether it
    /// is the served model's own.
    pub fn connect(
        options: OpenAiOptions,
        tokenizer: Box<dyn Tokenizer + Send>,
        exact: bool,
    ) -> Result<Self, EngineError> {
        if options.endpoints.is_empty() {
            return Err(EngineError::Inference(
                "no --endpoint given for the openai engine".into(),
            ));
        }
        let config = ureq::Agent::config_builder()
            .timeout_connect(Some(options.connect_timeout))
            .timeout_global(Some(options.timeout))
            .http_status_as_error(false)
            .build();
        let agent = ureq::Agent::new_with_config(config);
        let endpoints: Vec<Endpoint> = options.endpoints.iter().map(|u| Endpoint::new(u)).collect();
        let mut listed: Option<Value> = None;
        let mut errors = Vec::new();
        for e in &endpoints {
            match get_json(&agent, &format!("{}/models", e.url), options.api_key.as_deref()) {
                Ok(v) => {
                    listed.get_or_insert(v);
                }
                Err(why) => {
                    e.rest();
                    errors.push(format!("{}: {why}", e.url));
                }
            }
        }
        let Some(listed) = listed else {
            return Err(EngineError::Load {
                path: options.endpoints.join(", "),
                detail: format!("no endpoint answered: {}", errors.join("; ")),
            });
        };
        let entries = listed["data"].as_array().cloned().unwrap_or_default();
        let model = match &options.model {
            Some(m) => m.clone(),
            None => entries
                .first()
                .and_then(|m| m["id"].as_str())
                .map(str::to_owned)
                .ok_or_else(|| EngineError::Load {
                    path: options.endpoints.join(", "),
                    detail: "the server lists no models; name one with --model".into(),
                })?,
        };
        let entry = entries.iter().find(|m| m["id"].as_str() == Some(model.as_str()));
        let raw = options
            .context
            .or(entry.and_then(served_context))
            .unwrap_or(DEFAULT_CONTEXT);
        let context_length = if exact {
            raw
        } else {
            (f64::from(raw) * (1.0 - ESTIMATE_MARGIN)) as u32
        };
        let model_id = format!("openai-{model}-{}", tokenizer.tokenizer_id());
        Ok(Self {
            endpoints,
            agent,
            model,
            api_key: options.api_key.clone(),
            context_length,
            tokenizer,
            exact_counts: exact,
            model_id,
            options,
            send_extensions: true,
            schema_as_json_object: false,
        })
    }

    /// The served model's name.
    #[must_use]
    pub fn model(&self) -> &str {
        &self.model
    }

    /// Whether token counts are the served model's own (else estimates,
    /// with a margin taken off the context).
    #[must_use]
    pub fn exact_counts(&self) -> bool {
        self.exact_counts
    }

    #[must_use]
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    fn request_body(&self, messages: &[ChatMessage], params: &GenerateParams) -> Value {
        let mut body = json!({
            "model": self.model,
            "messages": messages.iter().map(message_json).collect::<Vec<_>>(),
            "stream": true,
            "stream_options": {"include_usage": true},
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "seed": params.seed,
        });
        if let Some(schema) = &params.json_schema {
            body["response_format"] = if self.schema_as_json_object {
                json!({"type": "json_object", "schema": schema})
            } else {
                json!({
                    "type": "json_schema",
                    "json_schema": {"name": "answer", "schema": schema, "strict": true},
                })
            };
        }
        if self.send_extensions && (params.repeat_penalty - 1.0).abs() > f32::EPSILON {
            body["repeat_penalty"] = json!(params.repeat_penalty);
            body["repetition_penalty"] = json!(params.repeat_penalty);
        }
        body
    }

    /// One attempt on endpoint `i`: streams the answer into `filter`,
    /// calling `on_event` with what is new beyond `shown` (the text an
    /// earlier, broken attempt already showed is not shown twice; an
    /// attempt that answers differently from it is an error, since shown
    /// text cannot be taken back).
    #[allow(clippy::too_many_arguments)]
    fn attempt(
        &self,
        i: usize,
        messages: &[ChatMessage],
        body: &Value,
        params: &GenerateParams,
        started: Instant,
        shown: &mut String,
        on_event: &mut dyn FnMut(EngineEvent<'_>),
    ) -> Result<Generation, Attempt> {
        let endpoint = &self.endpoints[i];
        let _guard = InFlight::new(endpoint);
        let mut req = self
            .agent
            .post(&format!("{}/chat/completions", endpoint.url))
            .header("Content-Type", "application/json")
            .header("Accept", "text/event-stream");
        if let Some(key) = &self.api_key {
            req = req.header("Authorization", &format!("Bearer {key}"));
        }
        let resp = req
            .send(body.to_string())
            .map_err(|e| Attempt::Retry(format!("{}: {e}", endpoint.url)))?;
        let status = resp.status().as_u16();
        if status != 200 {
            // Seconds only (the HTTP-date form is rare from these servers).
            let retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|s| Duration::from_secs(s.min(MAX_RETRY_AFTER_SECONDS)));
            let text = resp.into_body().read_to_string().unwrap_or_default();
            let detail = format!(
                "{} answered {status}: {}",
                endpoint.url,
                text.chars().take(300).collect::<String>()
            );
            return Err(if status == 429 || status >= 500 || status == 408 {
                match retry_after {
                    Some(wait) => Attempt::RetryAfter(detail, wait),
                    None => Attempt::Retry(detail),
                }
            } else {
                Attempt::Fatal(detail)
            });
        }
        let reader = BufReader::new(resp.into_body().into_reader());
        let mut filter = StopFilter::new(&params.stop);
        let mut first_token: Option<Instant> = None;
        let mut usage: Option<(u32, u32)> = None;
        let mut cached: u32 = 0;
        let mut finish: Option<String> = None;
        let mut stopped = false;
        let mut done = false;
        let url = endpoint.url.clone();
        let mut produced = String::new();
        let mut emit = |piece: &str, produced: &mut String, shown: &mut String| {
            produced.push_str(piece);
            let agrees = if produced.len() <= shown.len() {
                shown.starts_with(produced.as_str())
            } else {
                produced.starts_with(shown.as_str())
            };
            if !agrees {
                return Err(Attempt::Fatal(format!(
                    "{url} was retried after an endpoint failed mid-answer, and answered differently from what was already shown"
                )));
            }
            if produced.len() > shown.len() {
                on_event(EngineEvent::Text(&produced[shown.len()..]));
                shown.clone_from(produced);
            }
            Ok(())
        };
        for line in reader.lines() {
            params.cancel.check().map_err(|e| Attempt::Fatal(e.to_string()))?;
            let line = line.map_err(|e| Attempt::Retry(format!("{}: the stream broke: {e}", endpoint.url)))?;
            let Some(data) = line.strip_prefix("data:") else {
                continue;
            };
            let data = data.trim();
            if data == "[DONE]" {
                done = true;
                break;
            }
            let chunk: Value = serde_json::from_str(data)
                .map_err(|e| Attempt::Fatal(format!("{}: not a JSON event ({e}): {data}", endpoint.url)))?;
            if let Some(err) = chunk.get("error") {
                return Err(Attempt::Retry(format!("{}: {err}", endpoint.url)));
            }
            if let Some(u) = chunk.get("usage").filter(|u| !u.is_null()) {
                let n = |k: &str| u[k].as_u64().and_then(|v| u32::try_from(v).ok()).unwrap_or(0);
                usage = Some((n("prompt_tokens"), n("completion_tokens")));
                // vLLM and OpenAI say how much of the prompt their prefix
                // cache already held.
                cached = u["prompt_tokens_details"]["cached_tokens"]
                    .as_u64()
                    .and_then(|v| u32::try_from(v).ok())
                    .unwrap_or(0);
            }
            let Some(choice) = chunk["choices"].get(0) else {
                continue;
            };
            if let Some(text) = choice["delta"]["content"].as_str().filter(|t| !t.is_empty()) {
                first_token.get_or_insert_with(Instant::now);
                let (safe, hit) = filter.push(text);
                let safe = safe.to_owned();
                emit(&safe, &mut produced, shown)?;
                if hit {
                    stopped = true;
                    break;
                }
            }
            if let Some(f) = choice["finish_reason"].as_str() {
                finish = Some(f.to_owned());
            }
        }
        if !stopped && !done && finish.is_none() {
            return Err(Attempt::Retry(format!(
                "{}: the stream ended before the answer did",
                endpoint.url
            )));
        }
        let held = filter.flush().to_owned();
        emit(&held, &mut produced, shown)?;
        endpoint.served.fetch_add(1, Ordering::Relaxed);
        let text = filter.text().to_owned();
        let now = Instant::now();
        let first = first_token.unwrap_or(now);
        // The server's usage when it sends one; local counts otherwise.
        let (prompt_tokens, completion_tokens) =
            usage.unwrap_or_else(|| (self.estimate_chat(messages), self.tokenizer.count_tokens(&text)));
        Ok(Generation {
            text,
            prompt_tokens,
            completion_tokens,
            kv: super::KvUse {
                reused_tokens: cached.min(prompt_tokens),
                prefilled_tokens: prompt_tokens - cached.min(prompt_tokens),
                ..super::KvUse::default()
            },
            stop: if stopped {
                StopReason::StopSequence
            } else if finish.as_deref() == Some("length") {
                StopReason::MaxTokens
            } else {
                StopReason::EndOfText
            },
            ttft_ms: (first - started).as_millis() as u64,
            prefill_ms: (first - started).as_millis() as u64,
            decode_ms: (now - first).as_millis() as u64,
        })
    }

    /// Whether `detail` is a server refusing one of the optional
    /// spellings `body` used; if so, the next request leaves it out (some
    /// servers answer 500 to a request they cannot parse). Each spelling
    /// is given up at most once per engine.
    fn refused_spelling(&mut self, body: &Value, detail: &str) -> bool {
        if !self.schema_as_json_object && body.get("response_format").is_some() && detail.contains("response_format") {
            self.schema_as_json_object = true;
            return true;
        }
        if self.send_extensions
            && body.get("repeat_penalty").is_some()
            && (detail.contains("repeat_penalty") || detail.contains("repetition_penalty"))
        {
            self.send_extensions = false;
            return true;
        }
        false
    }

    fn estimate_chat(&self, messages: &[ChatMessage]) -> u32 {
        messages
            .iter()
            .map(|m| {
                self.tokenizer.count_tokens(&m.content)
                    + TOKENS_PER_MESSAGE
                    + m.images
                        .iter()
                        .map(|(_, i)| self.image_tokens(i.width, i.height).unwrap_or(0))
                        .sum::<u32>()
            })
            .sum::<u32>()
            + TOKENS_PER_MESSAGE
    }
}

/// A message as chat completions take it: its content a string, or, with
/// images, a list of text and `image_url` parts (each image a data URL,
/// scaled down first when it is larger than Llama 4's canvas for it).
fn message_json(m: &ChatMessage) -> Value {
    if m.images.is_empty() {
        return json!({"role": m.role.as_str(), "content": m.content});
    }
    let parts: Vec<Value> = m
        .parts(false)
        .into_iter()
        .map(|p| match p {
            Part::Text(text) => json!({"type": "text", "text": text}),
            Part::Image(image) => {
                let bytes = crate::ingest::image::fitted_for_llama4(&image.bytes, image.width, image.height);
                json!({"type": "image_url", "image_url": {"url": data_url(&bytes)}})
            }
        })
        .collect();
    json!({"role": m.role.as_str(), "content": parts})
}

/// `data:image/...;base64,...` for an image file's bytes.
fn data_url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    let mime = crate::ingest::image::mime_type(bytes);
    format!(
        "data:{mime};base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// The context a server reports for a model in its `/models` list: vLLM
/// and SGLang say `max_model_len`, llama-server `meta.n_ctx_train`.
fn served_context(entry: &Value) -> Option<u32> {
    entry["max_model_len"]
        .as_u64()
        .or_else(|| entry["meta"]["n_ctx_train"].as_u64())
        .or_else(|| entry["context_length"].as_u64())
        .and_then(|c| u32::try_from(c).ok())
}

/// A model an endpoint serves, as its `/models` list describes it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ServedModel {
    pub endpoint: String,
    pub id: String,
    /// The context the server reports, when it does.
    pub context_length: Option<u32>,
}

/// Every model each endpoint lists; an endpoint that does not answer is
/// an error naming it.
#[must_use]
pub fn list_models(endpoints: &[String], api_key: Option<&str>) -> Vec<Result<Vec<ServedModel>, String>> {
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(15)))
        .http_status_as_error(false)
        .build();
    let agent = ureq::Agent::new_with_config(config);
    endpoints
        .iter()
        .map(|u| {
            let e = Endpoint::new(u);
            let listed =
                get_json(&agent, &format!("{}/models", e.url), api_key).map_err(|why| format!("{}: {why}", e.url))?;
            Ok(listed["data"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|m| {
                            Some(ServedModel {
                                endpoint: e.url.clone(),
                                id: m["id"].as_str()?.to_owned(),
                                context_length: served_context(m),
                            })
                        })
                        .collect()
                })
                .unwrap_or_default())
        })
        .collect()
}

fn get_json(agent: &ureq::Agent, url: &str, key: Option<&str>) -> Result<Value, String> {
    let mut req = agent.get(url);
    if let Some(key) = key {
        req = req.header("Authorization", &format!("Bearer {key}"));
    }
    let resp = req.call().map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let text = resp.into_body().read_to_string().map_err(|e| e.to_string())?;
    if status != 200 {
        return Err(format!("HTTP {status}: {}", text.chars().take(200).collect::<String>()));
    }
    serde_json::from_str(&text).map_err(|e| format!("not JSON: {e}"))
}

impl Tokenizer for OpenAiEngine {
    fn tokenizer_id(&self) -> &str {
        self.tokenizer.tokenizer_id()
    }
    fn count_tokens(&self, text: &str) -> u32 {
        self.tokenizer.count_tokens(text)
    }
    fn counts_are_cheap(&self) -> bool {
        self.tokenizer.counts_are_cheap()
    }
    fn image_tokens(&self, width: u32, height: u32) -> Option<u32> {
        self.options
            .vision
            .then(|| crate::model::vision::llama4_tiling(width, height).tokens)
    }
}

impl Engine for OpenAiEngine {
    fn backend(&self) -> &'static str {
        "openai"
    }
    fn model_id(&self) -> &str {
        &self.model_id
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            vision: self.options.vision,
            ..Capabilities::text_with_schema(self.context_length)
        }
    }
    fn count_chat_tokens(&self, messages: &[ChatMessage]) -> Result<u32, EngineError> {
        Ok(self.estimate_chat(messages))
    }
    fn generate(
        &mut self,
        messages: &[ChatMessage],
        params: &GenerateParams,
        on_event: &mut dyn FnMut(EngineEvent<'_>),
    ) -> Result<Generation, EngineError> {
        let started = Instant::now();
        let mut shown = String::new();
        let mut last: Option<usize> = None;
        let mut errors = Vec::new();
        let mut tries = 0u32;
        loop {
            let i = pick(&self.endpoints, last);
            let body = self.request_body(messages, params);
            match self.attempt(i, messages, &body, params, started, &mut shown, on_event) {
                Ok(g) => return Ok(g),
                Err(Attempt::Fatal(detail) | Attempt::Retry(detail) | Attempt::RetryAfter(detail, _))
                    if self.refused_spelling(&body, &detail) =>
                {
                    errors.push(detail);
                }
                Err(Attempt::Fatal(detail)) => {
                    errors.push(detail);
                    return Err(EngineError::Inference(errors.join("; ")));
                }
                Err(Attempt::Retry(detail)) => {
                    self.after_failure(i, detail, None, &mut tries, &mut errors)?;
                    last = Some(i);
                }
                Err(Attempt::RetryAfter(detail, wait)) => {
                    self.after_failure(i, detail, Some(wait), &mut tries, &mut errors)?;
                    last = Some(i);
                }
            }
        }
    }
}

impl OpenAiEngine {
    /// After a failed attempt on endpoint `i`: rests it, and waits before
    /// the next attempt (the backoff; the server's `Retry-After` when no
    /// other endpoint is up); an error once the retries are spent.
    fn after_failure(
        &self,
        i: usize,
        detail: String,
        retry_after: Option<Duration>,
        tries: &mut u32,
        errors: &mut Vec<String>,
    ) -> Result<(), EngineError> {
        self.endpoints[i].rest();
        errors.push(detail);
        if *tries >= self.options.retries {
            return Err(EngineError::Inference(format!(
                "gave up after {} attempts: {}",
                *tries + 1,
                errors.join("; ")
            )));
        }
        let backoff = self
            .options
            .backoff
            .saturating_mul(1 << (*tries).min(5))
            .min(Duration::from_secs(8));
        let another_up = self.endpoints.iter().enumerate().any(|(j, e)| j != i && !e.resting());
        let wait = match retry_after {
            Some(asked) if !another_up => asked.max(backoff),
            _ => backoff,
        };
        std::thread::sleep(wait);
        *tries += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
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
}
