//! The `openai` backend: any OpenAI-compatible server (vLLM, SGLang,
//! llama-server, llama-cpp-python, Ollama, mistralrs-server), one or many.
//!
//! Chat completions with streaming (server-sent events), optional
//! `response_format` JSON schema, timeouts, retries with backoff on 429,
//! 5xx and broken connections, and least-loaded dispatch across several
//! endpoints: a request goes to the healthy endpoint with the fewest
//! requests in flight per slot, and an endpoint that fails rests for a
//! while. Independent calls (a sweep's windows) run at once, as many as
//! the servers have slots (`each.rs`).
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

mod each;
mod endpoints;
#[cfg(test)]
mod tests;

use std::io::{BufRead, BufReader};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use endpoints::{acquire, get_json, served_context};
pub use endpoints::{list_models, Endpoint, ServedModel, DEFAULT_SLOTS};

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
    /// Requests each server is given at once; default: what the server
    /// reports, else [`DEFAULT_SLOTS`].
    pub slots: Option<u32>,
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
            slots: None,
            vision: false,
        }
    }
}

pub struct OpenAiEngine {
    endpoints: Vec<std::sync::Arc<Endpoint>>,
    agent: ureq::Agent,
    model: String,
    api_key: Option<String>,
    context_length: u32,
    tokenizer: Box<dyn Tokenizer + Send + Sync>,
    exact_counts: bool,
    model_id: String,
    options: OpenAiOptions,
    /// Sampling extensions (`repeat_penalty`, `repetition_penalty`) are
    /// sent until a server refuses them.
    send_extensions: AtomicBool,
    /// `response_format` as OpenAI spells it (`json_schema`) until a server
    /// refuses it; then the older `json_object` with a `schema`, which
    /// llama-cpp-python and others read.
    schema_as_json_object: AtomicBool,
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
    /// The server cut this answer short for another request: ask again
    /// at once (the server is well).
    Again(String),
}

impl OpenAiEngine {
    /// Connects to the endpoints (each is asked for its models; those that
    /// do not answer start out resting) and settles the model name and
    /// context. `tokenizer` counts tokens locally; `exact` says whether it
    /// is the served model's own.
    pub fn connect(
        options: OpenAiOptions,
        tokenizer: Box<dyn Tokenizer + Send + Sync>,
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
        let endpoints: Vec<std::sync::Arc<Endpoint>> = options.endpoints.iter().map(|u| Endpoint::shared(u)).collect();
        let mut listed: Option<Value> = None;
        let mut errors = Vec::new();
        for e in &endpoints {
            match get_json(&agent, &format!("{}/models", e.url), options.api_key.as_deref()) {
                Ok(v) => {
                    e.settle_slots(&agent, options.api_key.as_deref(), options.slots, &v);
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
            send_extensions: AtomicBool::new(true),
            schema_as_json_object: AtomicBool::new(false),
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
    pub fn endpoints(&self) -> &[std::sync::Arc<Endpoint>] {
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
            body["response_format"] = if self.schema_as_json_object.load(Ordering::Relaxed) {
                json!({"type": "json_object", "schema": schema})
            } else {
                json!({
                    "type": "json_schema",
                    "json_schema": {"name": "answer", "schema": schema, "strict": true},
                })
            };
        }
        if self.send_extensions.load(Ordering::Relaxed) && (params.repeat_penalty - 1.0).abs() > f32::EPSILON {
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
        if !stopped && finish.is_none() && endpoint.busy() > 1 {
            // An answer ended without saying why while another request
            // was waiting: llama-cpp-python cuts the answer it is giving
            // short when another arrives (unless started with
            // --interrupt_requests false). One request at a time from now.
            endpoint.set_slots(1, "an answer cut short for another request");
            return Err(Attempt::Again(format!(
                "{}: the server ended an answer without a finish reason when another request arrived; sending it one request at a time",
                endpoint.url
            )));
        }
        let held = filter.flush().to_owned();
        emit(&held, &mut produced, shown)?;
        endpoint.served_one();
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
            first_logprobs: Vec::new(),
            ttft_ms: (first - started).as_millis() as u64,
            prefill_ms: (first - started).as_millis() as u64,
            decode_ms: (now - first).as_millis() as u64,
        })
    }

    /// Whether `detail` is a server refusing one of the optional
    /// spellings `body` used; if so, the next request leaves it out (some
    /// servers answer 500 to a request they cannot parse). Each spelling
    /// is given up at most once per engine.
    fn refused_spelling(&self, body: &Value, detail: &str) -> bool {
        // A body spells what the flags said when it was made, so a refused
        // spelling is given up once whichever request saw it first.
        if body["response_format"]["type"] == "json_schema" && detail.contains("response_format") {
            self.schema_as_json_object.store(true, Ordering::Relaxed);
            return true;
        }
        if body.get("repeat_penalty").is_some()
            && (detail.contains("repeat_penalty") || detail.contains("repetition_penalty"))
        {
            self.send_extensions.store(false, Ordering::Relaxed);
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
        self.generate_shared(messages, params, on_event)
    }
    fn slots(&self) -> usize {
        self.endpoints.iter().map(|e| e.slots() as usize).sum::<usize>().max(1)
    }
    fn generate_each(
        &mut self,
        calls: &[super::Call<'_>],
        on_event: &mut dyn FnMut(usize, super::EachEvent<'_>),
    ) -> Vec<Result<Generation, EngineError>> {
        each::generate_each(self, calls, on_event)
    }
}

impl OpenAiEngine {
    /// [`Engine::generate`] on a shared engine: several run at once.
    fn generate_shared(
        &self,
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
            let (i, guard) = acquire(&self.endpoints, last);
            let body = self.request_body(messages, params);
            let outcome = self.attempt(i, messages, &body, params, started, &mut shown, on_event);
            drop(guard);
            match outcome {
                Ok(g) => return Ok(g),
                Err(Attempt::Again(detail)) => {
                    tracing::warn!("{detail}");
                    errors.push(detail);
                    if tries >= self.options.retries {
                        return Err(EngineError::Inference(errors.join("; ")));
                    }
                    tries += 1;
                }
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
