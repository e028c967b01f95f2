//! `scout serve`: one long-running process that keeps the model loaded
//! and serves the tasks over HTTP: an OpenAI-compatible chat API (a chat
//! may name a corpus, whose documents then lead the prompt), corpus
//! routes (create by ingesting paths under the allowed roots, list,
//! inspect, delete, ask, audit, extract, read a source file), batches,
//! Prometheus metrics, and a page at `/`.
//!
//! Every route goes through the tasks layer, so answers are the same JSON
//! the CLI prints. Engines run on their own threads behind a bounded queue
//! (`pool`): past it, requests are refused with 429 and `Retry-After`.
//! Each generation has a time limit and stops when its client goes away.
//!
//! Never reads a file outside the roots, and never answers with a file's
//! text outside them.

mod batches;
mod corpora;
mod metrics;
mod pool;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, MatchedPath, Path as UrlPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

use crate::engine::{Cancel, Engine, GenerateParams};
use crate::ingest::WalkOptions;
use crate::tasks::access::{Access, Named};
use crate::tasks::ask::{ask, corpus_message, AskOptions};
use crate::tasks::audit::{audit, AuditOptions};
use crate::tasks::chat::chat;
use crate::tasks::extract::{extract, ExtractOptions};
use crate::tasks::pipeline::Pipeline;
use crate::tasks::run::TaskEvent;
use crate::tasks::schema::ExtractSchema;
use crate::tasks::sweep::Rates;

pub use pool::EngineFactory;
use pool::Pool;

const PAGE: &str = include_str!("page.html");

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    /// Required as a bearer token on every route but `/healthz` and `/`.
    pub api_key: Option<String>,
    /// Folders corpora may be made from (canonical paths).
    pub roots: Vec<PathBuf>,
    /// Where batches (and, by default, corpora) are kept.
    pub data_dir: PathBuf,
    /// Where corpora are kept (`--corpora`; default `data_dir/corpora`).
    pub corpora_dir: PathBuf,
    pub workers: usize,
    /// Requests that may wait for an engine; past this, 429.
    pub queue: usize,
    /// Longest a generation may run.
    pub timeout: Duration,
    pub body_limit: usize,
    /// Longest a client may take to send its headers, and then its body.
    pub client_timeout: Duration,
    /// How corpora are read; `extract_walk` for extraction (scans as rows).
    pub walk: WalkOptions,
    pub extract_walk: WalkOptions,
    /// Answer length when a request does not say.
    pub max_tokens: u32,
    /// Batches that may run at once, each on an engine of its own (past
    /// this, 429): a batch's engine is a copy of the model beside the
    /// workers'.
    pub batches: usize,
    /// Corpora whose KV stays resident: asks over them pin their prefix in
    /// the KV tiers, out of least-recently-used eviction.
    pub pinned: Vec<String>,
}

struct App {
    opts: ServeOptions,
    corpora: Arc<corpora::Corpora>,
    pool: Pool,
    metrics: metrics::Metrics,
    factory: Arc<EngineFactory>,
    batches: batches::Batches,
    /// Requests seen, for their ids.
    requests: std::sync::atomic::AtomicU64,
}

impl App {
    /// What a request may name: files under the server's roots only.
    fn access(&self) -> Access {
        Access::Under(self.opts.roots.clone())
    }
}

/// An error as the API returns it: OpenAI's `{"error": {...}}` shape.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
    fn internal(e: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
    fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    fn busy() -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "every engine is busy and the queue is full; retry after the Retry-After seconds",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let kind = match self.status.as_u16() {
            400 | 404 | 408 | 409 | 413 | 422 => "invalid_request_error",
            401 => "authentication_error",
            403 => "permission_error",
            429 => "rate_limit_error",
            504 => "timeout",
            _ => "server_error",
        };
        let mut r = (
            self.status,
            Json(json!({"error": {"message": self.message, "type": kind, "code": self.status.as_u16()}})),
        )
            .into_response();
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
        }
        r
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// Runs the server until Ctrl-C; `on_ready` gets the bound address (the
/// port is chosen by the system when the listen address says 0) and a line
/// for each corpus in the folder that will not be served, with the reason.
pub fn serve(
    opts: ServeOptions,
    factory: Arc<EngineFactory>,
    on_ready: impl FnOnce(SocketAddr, &[String]),
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&opts.corpora_dir)?;
    std::fs::create_dir_all(opts.data_dir.join("batches"))?;
    let pool = Pool::start(opts.workers, opts.queue, &factory)?;
    let corpora = Arc::new(corpora::Corpora::new(opts.corpora_dir.clone(), opts.roots.clone()));
    let opts_batches = opts.batches;
    let app = Arc::new(App {
        corpora,
        opts,
        pool,
        metrics: metrics::Metrics::default(),
        factory,
        batches: batches::Batches::new(opts_batches),
        requests: std::sync::atomic::AtomicU64::new(0),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(app.opts.listen).await?;
        on_ready(listener.local_addr()?, &app.corpora.unserved());
        let router = router(Arc::clone(&app));
        accept_loop(listener, router, app.opts.client_timeout).await;
        Ok(())
    })
}

/// Serves connections until Ctrl-C, then lets those in flight finish (for
/// at most the generation limit). Unlike `axum::serve`, a client that does
/// not finish sending its headers within `client_timeout` is disconnected,
/// so slow clients cannot pile up open connections.
async fn accept_loop(listener: tokio::net::TcpListener, router: Router, client_timeout: Duration) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(client_timeout);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                // Out of file descriptors and the like: pause, try again.
                let Ok((stream, _)) = accepted else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let service = hyper_util::service::TowerToHyperService::new(router.clone());
                let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
                tokio::spawn(async move {
                    // A client that went away or was cut off: nothing to report.
                    let _ = connection.await;
                });
            }
            _ = &mut ctrl_c => break,
        }
    }
    let _ = tokio::time::timeout(
        Duration::from_secs(crate::limits::GENERATION_SECONDS),
        graceful.shutdown(),
    )
    .await;
}

fn router(app: Arc<App>) -> Router {
    let limit = app.opts.body_limit;
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/corpora", get(corpora::list_corpora).post(corpora::create_corpus))
        .route(
            "/v1/corpora/{id}",
            get(corpora::inspect_corpus).delete(corpora::delete_corpus),
        )
        .route("/v1/corpora/{id}/source", get(corpora::source))
        .route("/v1/corpora/{id}/image", get(corpora::image))
        .route("/v1/corpora/{id}/ask", post(ask_route))
        .route("/v1/corpora/{id}/audit", post(audit_route))
        .route("/v1/corpora/{id}/extract", post(extract_route))
        .route("/v1/batches", post(batches::create_batch))
        .route("/v1/batches/{id}", get(batches::batch_status))
        .route("/v1/batches/{id}/results", get(batches::batch_results))
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&app), guard))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(app)
}

/// Authentication (when a key is set), request metrics, and one log line
/// per request (its id, also sent back as `x-request-id`, method, route,
/// status and time).
async fn guard(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = app.requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let mut response = checked(&app, &route, request, next).await;
    let seconds = started.elapsed().as_secs_f64();
    let status = response.status().as_u16();
    app.metrics.request(&route, status, seconds);
    tracing::info!("request {id} {method} {route} {status} {:.0} ms", seconds * 1000.0);
    if let Ok(value) = HeaderValue::from_str(&id.to_string()) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// The request's key checked and its body read, then the route run.
async fn checked(app: &App, route: &str, request: Request, next: Next) -> Response {
    let open = route == "/healthz" || route == "/";
    if let (Some(key), false) = (&app.opts.api_key, open) {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(key.as_str()) {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "this server needs its API key: send `Authorization: Bearer KEY`",
            )
            .into_response();
        }
    }
    match read_body(request, app.opts.body_limit, app.opts.client_timeout).await {
        Ok(request) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

/// The request with its whole body read, which must arrive within
/// `within` (else 408) and hold at most `limit` bytes (else 413).
async fn read_body(request: Request, limit: usize, within: Duration) -> Result<Request, ApiError> {
    let (parts, body) = request.into_parts();
    match tokio::time::timeout(within, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => Ok(Request::from_parts(parts, axum::body::Body::from(bytes))),
        Ok(Err(e)) => {
            let too_large = std::error::Error::source(&e)
                .is_some_and(<dyn std::error::Error>::is::<http_body_util::LengthLimitError>);
            Err(if too_large {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the request body is over the {limit}-byte limit (--max-body-bytes)"),
                )
            } else {
                ApiError::new(StatusCode::BAD_REQUEST, format!("reading the request body: {e}"))
            })
        }
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body did not arrive within {} s (--client-timeout)",
                within.as_secs()
            ),
        )),
    }
}

async fn healthz(State(app): State<Arc<App>>) -> Json<Value> {
    Json(json!({"status": "ok", "model": app.pool.model, "engines": app.pool.workers}))
}

async fn metrics_text(State(app): State<Arc<App>>) -> Response {
    let text = app.metrics.render(
        app.pool.queued(),
        app.pool.running(),
        app.pool.workers,
        &app.pool.kv_tiers(),
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn models(State(app): State<Arc<App>>) -> Json<Value> {
    let c = app.pool.capabilities;
    Json(json!({"object": "list", "data": [{
        "id": app.pool.model,
        "object": "model",
        "owned_by": "scout",
        "engine": app.pool.backend,
        "context_length": c.context_length,
        "capabilities": {"vision": c.vision, "json_schema": c.json_schema, "kv_operations": c.kv_operations},
    }]}))
}

/// Cancels a generation when the request's future is dropped (the client
/// went away) before it finished.
struct CancelOnDrop(Option<Cancel>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            c.cancel();
        }
    }
}

/// Runs `f` on an engine and waits for its result.
async fn on_engine<T: Send + 'static>(
    app: &Arc<App>,
    f: impl FnOnce(&mut dyn Engine, Cancel) -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    let (tx, rx) = oneshot::channel();
    let cancel = Cancel::after(app.opts.timeout);
    let for_work = cancel.clone();
    app.pool
        .try_submit(Box::new(move |engine| {
            let _ = tx.send(f(engine, for_work));
        }))
        .map_err(|_| ApiError::busy())?;
    let mut guard = CancelOnDrop(Some(cancel));
    let result = rx
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the engine stopped"))?;
    guard.0 = None;
    result
}

/// Runs `f` on an engine, streaming the events it sends as server-sent
/// events. Refused at once (429) when the queue is full.
fn streamed(
    app: &Arc<App>,
    f: impl FnOnce(&mut dyn Engine, Cancel, &mpsc::Sender<Event>) + Send + 'static,
) -> ApiResult<Response> {
    let (tx, rx) = mpsc::channel::<Event>(256);
    let cancel = Cancel::after(app.opts.timeout);
    app.pool
        .try_submit(Box::new(move |engine| f(engine, cancel, &tx)))
        .map_err(|_| ApiError::busy())?;
    let stream = ReceiverStream::new(rx);
    // Events are wrapped as `Ok` on their way out.
    let (otx, orx) = mpsc::channel::<Result<Event, Infallible>>(256);
    tokio::spawn(async move {
        let mut stream = stream;
        while let Some(e) = stream.next().await {
            if otx.send(Ok(e)).await.is_err() {
                break;
            }
        }
    });
    Ok(Sse::new(ReceiverStream::new(orx))
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// Sends an event from an engine thread; a client that went away cancels
/// the generation.
fn send(tx: &mpsc::Sender<Event>, cancel: &Cancel, event: Event) {
    if tx.blocking_send(event).is_err() {
        cancel.cancel();
    }
}

fn json_event(name: &str, value: &Value) -> Event {
    Event::default().event(name).data(value.to_string())
}

fn task_error(e: impl std::fmt::Display) -> ApiError {
    let message = e.to_string();
    if message.starts_with("stopped:") {
        ApiError::new(StatusCode::GATEWAY_TIMEOUT, message)
    } else {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }
}

#[derive(Debug, Deserialize)]
struct AskBody {
    question: String,
    #[serde(default)]
    max_tokens: Option<u32>,
    /// A built-in name, a file under the roots, or the JSON Schema itself.
    #[serde(default)]
    schema: Option<Named>,
    /// A built-in name, a file under the roots, or `{"toml": "..."}`.
    #[serde(default)]
    pipeline: Option<Named>,
    #[serde(default)]
    stream: bool,
}

async fn ask_route(
    State(app): State<Arc<App>>,
    UrlPath(id): UrlPath<String>,
    Json(body): Json<AskBody>,
) -> ApiResult<Response> {
    if !app.corpora.path(&id)?.exists() {
        return Err(ApiError::not_found(format!(
            "no corpus {id:?}; create it with POST /v1/corpora"
        )));
    }
    if body.question.trim().is_empty() {
        return Err(ApiError::bad("`question` is empty"));
    }
    let access = app.access();
    let pipeline = body
        .pipeline
        .clone()
        .map(|p| Pipeline::load(p, &access))
        .transpose()
        .map_err(|e| ApiError::bad(e.to_string()))?;
    let schema = body
        .schema
        .clone()
        .map(|s| ExtractSchema::load(s, &access))
        .transpose()
        .map_err(|e| ApiError::bad(e.to_string()))?;
    let max_tokens = body.max_tokens.unwrap_or(app.opts.max_tokens);
    let pin_prefix = app.opts.pinned.contains(&id);
    let options = move |cancel: Cancel| AskOptions {
        question: body.question.clone(),
        generate: GenerateParams {
            max_tokens,
            cancel,
            pin_prefix,
            ..GenerateParams::default()
        },
        pipeline: pipeline.clone(),
        schema: schema.clone(),
        // Plans estimate from, and sweeps record, the rates the command
        // line uses.
        rates: Rates::in_cache(),
        ..AskOptions::default()
    };
    let app2 = Arc::clone(&app);
    if body.stream {
        let sse = streamed(&app, move |engine, cancel, tx| {
            let mut run = || -> ApiResult<Value> {
                let mut corpus = app2.corpora.open(&id)?;
                let opts = options(cancel.clone());
                let r = ask(&mut corpus, engine, &opts, &mut |e| match e {
                    TaskEvent::Answer(t) => send(tx, &cancel, json_event("token", &json!({"text": t}))),
                    TaskEvent::Step {
                        index,
                        of,
                        prompt_tokens,
                        ..
                    } => send(
                        tx,
                        &cancel,
                        json_event(
                            "step",
                            &json!({"index": index, "of": of, "prompt_tokens": prompt_tokens}),
                        ),
                    ),
                    TaskEvent::Prefill { done, total } => {
                        send(
                            tx,
                            &cancel,
                            json_event("prefill", &json!({"done": done, "total": total})),
                        );
                    }
                    TaskEvent::Plan(plan) => send(tx, &cancel, json_event("plan", &json!(plan))),
                    TaskEvent::KvKept(kept) => send(tx, &cancel, json_event("kv_kept", &json!(kept))),
                    TaskEvent::Rules(stats) => send(tx, &cancel, json_event("rules", &json!(stats))),
                    TaskEvent::Sweep { of, prompt_tokens, .. } => send(
                        tx,
                        &cancel,
                        json_event("sweep", &json!({"of": of, "prompt_tokens": prompt_tokens})),
                    ),
                    TaskEvent::Done { index, of, done, .. } => send(
                        tx,
                        &cancel,
                        json_event("window_done", &json!({"index": index, "of": of, "done": done})),
                    ),
                })
                .map_err(task_error)?;
                app2.metrics
                    .generation(r.usage.prompt_tokens, r.usage.completion_tokens, r.kv);
                let mut v = serde_json::to_value(&r).unwrap_or(Value::Null);
                v["corpus"] = json!(id);
                Ok(v)
            };
            let event = match run() {
                Ok(v) => json_event("result", &v),
                Err(e) => json_event("error", &json!({"message": e.message, "code": e.status.as_u16()})),
            };
            send(tx, &cancel, event);
        })?;
        return Ok(sse);
    }
    let v = on_engine(&app, move |engine, cancel| {
        let mut corpus = app2.corpora.open(&id)?;
        let opts = options(cancel);
        let r = ask(&mut corpus, engine, &opts, &mut |_| {}).map_err(task_error)?;
        app2.metrics
            .generation(r.usage.prompt_tokens, r.usage.completion_tokens, r.kv);
        let mut v = serde_json::to_value(&r).unwrap_or(Value::Null);
        v["corpus"] = json!(id);
        Ok(v)
    })
    .await?;
    Ok(Json(v).into_response())
}

#[derive(Debug, Deserialize)]
struct AuditBody {
    /// A built-in name, a file under the roots, or `{"toml": "..."}`.
    #[serde(default)]
    pipeline: Option<Named>,
    #[serde(default)]
    max_findings: Option<u32>,
    #[serde(default)]
    max_tokens: Option<u32>,
}

async fn audit_route(
    State(app): State<Arc<App>>,
    UrlPath(id): UrlPath<String>,
    Json(body): Json<AuditBody>,
) -> ApiResult<Json<Value>> {
    app.corpora.path(&id)?;
    let pipeline = Pipeline::load(
        body.pipeline.clone().unwrap_or_else(|| "security".into()),
        &app.access(),
    )
    .map_err(|e| ApiError::bad(e.to_string()))?;
    let app2 = Arc::clone(&app);
    let v = on_engine(&app, move |engine, cancel| {
        let mut corpus = app2.corpora.open(&id)?;
        let opts = AuditOptions::new(
            pipeline,
            GenerateParams {
                max_tokens: body.max_tokens.unwrap_or(1536),
                repeat_penalty: 1.0,
                cancel,
                ..GenerateParams::default()
            },
            body.max_findings.unwrap_or(8),
        )
        .map_err(|e| ApiError::bad(e.to_string()))?;
        let r = audit(&mut corpus, Some(engine), &opts, &mut |_| {}).map_err(task_error)?;
        app2.metrics
            .generation(r.usage.prompt_tokens, r.usage.completion_tokens, r.kv);
        Ok(serde_json::to_value(&r).unwrap_or(Value::Null))
    })
    .await?;
    Ok(Json(v))
}

#[derive(Debug, Deserialize)]
struct ExtractBody {
    /// A built-in name, a file under the roots, or the JSON Schema itself.
    schema: Named,
    #[serde(default)]
    per_page: bool,
    #[serde(default)]
    max_tokens: Option<u32>,
}

async fn extract_route(
    State(app): State<Arc<App>>,
    UrlPath(id): UrlPath<String>,
    Json(body): Json<ExtractBody>,
) -> ApiResult<Json<Value>> {
    app.corpora.path(&id)?;
    let schema = ExtractSchema::load(body.schema.clone(), &app.access()).map_err(|e| ApiError::bad(e.to_string()))?;
    let app2 = Arc::clone(&app);
    let v = on_engine(&app, move |engine, cancel| {
        let mut corpus = app2.corpora.open(&id)?;
        let opts = ExtractOptions {
            generate: GenerateParams {
                max_tokens: body.max_tokens.unwrap_or(768),
                repeat_penalty: 1.0,
                cancel,
                ..GenerateParams::default()
            },
            per_page: body.per_page,
            max_windows: None,
            rates: Rates::in_cache(),
        };
        let results = extract(&mut corpus, engine, &schema, &opts, &mut |_| {}, &mut |_| {}).map_err(task_error)?;
        for r in &results {
            app2.metrics
                .generation(r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.kv);
        }
        Ok(json!({"data": results}))
    })
    .await?;
    Ok(Json(v))
}

async fn chat_completions(State(app): State<Arc<App>>, Json(body): Json<Value>) -> ApiResult<Response> {
    if !body["messages"].is_array() {
        return Err(ApiError::bad("`messages` must be an array"));
    }
    let corpus = body["scout"]["corpus"].as_str().map(str::to_owned);
    if let Some(id) = &corpus {
        if !app.corpora.path(id)?.exists() {
            return Err(ApiError::not_found(format!("no corpus {id:?}")));
        }
    }
    let max_tokens = app.opts.max_tokens;
    let stream = body["stream"].as_bool().unwrap_or(false);
    let app2 = Arc::clone(&app);
    let run = move |engine: &mut dyn Engine, cancel: Cancel, on_text: &mut dyn FnMut(&str)| -> ApiResult<Value> {
        let prefix = match &corpus {
            Some(id) => {
                let mut c = app2.corpora.open(id)?;
                Some(corpus_message(&mut c, engine, max_tokens).map_err(task_error)?)
            }
            None => None,
        };
        let (v, kv) = chat(engine, &body, max_tokens, prefix, cancel, on_text).map_err(task_error)?;
        let u = &v["usage"];
        app2.metrics.generation(
            u["prompt_tokens"].as_u64().unwrap_or(0),
            u["completion_tokens"].as_u64().unwrap_or(0),
            kv,
        );
        Ok(v)
    };
    if !stream {
        let v = on_engine(&app, move |engine, cancel| run(engine, cancel, &mut |_| {})).await?;
        return Ok(Json(v).into_response());
    }
    let model = app.pool.model.clone();
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let chunk_id = format!("chatcmpl-{created:x}");
    let sse = streamed(&app, move |engine, cancel, tx| {
        let chunk = |delta: Value, finish: Value, usage: Option<&Value>| {
            let mut c = json!({"id": chunk_id, "object": "chat.completion.chunk", "created": created, "model": model,
                                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
            if let Some(u) = usage {
                c["usage"] = u.clone();
            }
            Event::default().data(c.to_string())
        };
        send(
            tx,
            &cancel,
            chunk(json!({"role": "assistant", "content": ""}), Value::Null, None),
        );
        let outcome = run(engine, cancel.clone(), &mut |t| {
            send(tx, &cancel, chunk(json!({"content": t}), Value::Null, None));
        });
        match outcome {
            Ok(v) => send(
                tx,
                &cancel,
                chunk(json!({}), v["choices"][0]["finish_reason"].clone(), Some(&v["usage"])),
            ),
            Err(e) => send(
                tx,
                &cancel,
                Event::default().data(json!({"error": {"message": e.message, "code": e.status.as_u16()}}).to_string()),
            ),
        }
        send(tx, &cancel, Event::default().data("[DONE]"));
    })?;
    Ok(sse)
}
