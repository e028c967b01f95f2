//! `scout serve`: the options of the server, then the server.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;

use super::{say, TaskArgs};
use crate::engine::open::EngineKind;
use crate::ingest::WalkOptions;
use crate::limits::ANSWER_TOKENS;
use crate::model::store;

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  scout serve                                   # http://127.0.0.1:8080, the page at /
  scout serve --root ~/code --api-key-env SCOUT_API_KEY --listen 0.0.0.0:8080
  curl -s localhost:8080/v1/corpora -d '{\"id\": \"demo\", \"paths\": [\"examples/demo\"]}' -H 'content-type: application/json'
  curl -s localhost:8080/v1/corpora/demo/ask -d '{\"question\": \"What port?\"}' -H 'content-type: application/json'

Routes: GET / (the page), GET /healthz, GET /metrics (Prometheus), GET /v1/models,
POST /v1/chat/completions (OpenAI; add \"scout\": {\"corpus\": \"ID\"} to put a corpus first),
GET|POST /v1/corpora, GET|DELETE /v1/corpora/ID, GET /v1/corpora/ID/source?path=P,
POST /v1/corpora/ID/ask|audit|extract (\"stream\": true on ask for server-sent events),
POST /v1/batches (a JSONL body), GET /v1/batches/ID, GET /v1/batches/ID/results.

Corpora: creating an id that exists is refused (409) unless the body says \"replace\": true
(make it again) or \"add\": true (add the paths to it). Corpora stay in --corpora across
runs; one holding a document from outside this run's --root is listed as not served and
never read (DELETE it, or replace it). A pipeline or schema is a built-in name, a file
under a --root, or sent inline: \"pipeline\": {\"toml\": \"...\"}, \"schema\": {...}.

Answers are the JSON the CLI prints. Requests past --queue get 429 with Retry-After.")]
pub(super) struct ServeArgs {
    /// The address to listen on. The default is loopback only; to listen on other
    /// addresses, set an API key.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR:PORT")]
    pub(super) listen: std::net::SocketAddr,
    /// The environment variable holding the API key every route but /healthz and / then
    /// requires, as `Authorization: Bearer KEY`. Without this option, `SCOUT_API_KEY` is
    /// used when it is set. (A key is never taken on the command line, where other users
    /// of the machine can read it.)
    #[arg(long, value_name = "VAR")]
    pub(super) api_key_env: Option<String>,
    /// A folder corpora may be read from (repeatable). Default: the current folder.
    #[arg(long, value_name = "DIR")]
    pub(super) root: Vec<PathBuf>,
    /// Where the server keeps its batches, and its corpora unless --corpora says.
    /// Default: the cache folder's server/.
    #[arg(long, value_name = "DIR")]
    pub(super) data: Option<PathBuf>,
    /// Where the server keeps its corpora (DATA/corpora by default). Give two servers
    /// with different roots their own folders; a corpus holding any document from
    /// outside the roots is listed as not served, never read.
    #[arg(long, value_name = "DIR")]
    pub(super) corpora: Option<PathBuf>,
    /// Engines (each a worker thread with its own copy of the model).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub(super) workers: usize,
    /// Batches (POST /v1/batches) run at once, each on an engine of its own beside the
    /// workers; past this a new batch is refused with 429.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub(super) batches: usize,
    /// Requests that may wait for an engine; past this they are refused with 429.
    #[arg(long, default_value_t = crate::limits::SERVER_QUEUE, value_name = "N")]
    pub(super) queue: usize,
    /// Seconds one generation may run before it is stopped (504).
    #[arg(long, default_value_t = crate::limits::GENERATION_SECONDS, value_name = "SECONDS")]
    pub(super) timeout: u64,
    /// The largest request body accepted, in bytes.
    #[arg(long, default_value_t = crate::limits::SERVER_BODY_BYTES, value_name = "BYTES")]
    pub(super) max_body_bytes: usize,
    /// Seconds a client may take to send a request's headers, and again
    /// its body; slower clients are cut off (408 for a slow body).
    #[arg(long, default_value_t = crate::limits::SERVER_CLIENT_SECONDS, value_name = "SECONDS")]
    pub(super) client_timeout: u64,
    /// Answer length when a request does not say.
    #[arg(long, default_value_t = ANSWER_TOKENS)]
    pub(super) max_tokens: u32,
    /// Keep this corpus's KV resident (repeatable, by corpus id): asks over it pin its
    /// prefix in memory and on disk, where least-recently-used eviction never takes
    /// it; other corpora's KV goes first. It still counts against --kv-host-gib and
    /// --kv-disk-gib.
    #[arg(long, value_name = "ID")]
    pub(super) pin: Vec<String>,
    #[command(flatten)]
    pub(super) common: TaskArgs,
}

pub(super) fn run_serve(a: &ServeArgs) -> Result<i32> {
    let api_key = match &a.api_key_env {
        Some(var) => Some(std::env::var(var).with_context(|| format!("--api-key-env {var}: not set"))?),
        None => std::env::var("SCOUT_API_KEY").ok().filter(|k| !k.is_empty()),
    };
    if api_key.is_none() && !a.listen.ip().is_loopback() {
        bail!(
            "--listen {} reaches beyond this machine: set an API key first (SCOUT_API_KEY, or --api-key-env VAR)",
            a.listen
        );
    }
    let roots: Vec<PathBuf> = if a.root.is_empty() {
        vec![std::env::current_dir().context("the current folder")?]
    } else {
        a.root.clone()
    }
    .iter()
    .map(|r| r.canonicalize().with_context(|| format!("--root {}", r.display())))
    .collect::<Result<_>>()?;
    let mut say = say(false);
    // Resolve (and fetch) the model once, before the engines start.
    let mut model = a.common.model.clone();
    if model.engine == EngineKind::Llamacpp {
        model.model = Some(store::resolve(model.model.as_deref(), &mut say)?);
    }
    let run = crate::engine::open::RunArgs {
        resident_contexts: true,
        ..a.common.run.clone()
    };
    let factory: std::sync::Arc<crate::server::EngineFactory> =
        std::sync::Arc::new(move || Ok(model.engine(&run, &mut |_| {})?.0));
    let data = a.data.clone().unwrap_or_else(|| store::cache_dir().join("server"));
    let options = crate::server::ServeOptions {
        listen: a.listen,
        api_key,
        roots: roots.clone(),
        data_dir: data.clone(),
        corpora_dir: a.corpora.clone().unwrap_or_else(|| data.join("corpora")),
        workers: a.workers.max(1),
        queue: a.queue,
        timeout: std::time::Duration::from_secs(a.timeout.max(1)),
        body_limit: a.max_body_bytes,
        client_timeout: std::time::Duration::from_secs(a.client_timeout.max(1)),
        // Every file a request makes the server read must lie under its
        // roots, however links and swaps resolve.
        walk: WalkOptions {
            confine: Some(roots.clone()),
            ..a.common.walk.options(false)
        },
        extract_walk: WalkOptions {
            confine: Some(roots.clone()),
            ..a.common.walk.options(true)
        },
        max_tokens: a.max_tokens,
        pinned: a.pin.clone(),
        batches: a.batches.max(1),
    };
    say(&format!(
        "scout: loading {} engine{}",
        options.workers,
        if options.workers == 1 { "" } else { "s" }
    ));
    let corpora = options.corpora_dir.clone();
    crate::server::serve(options, factory, |addr, unserved| {
        for line in unserved {
            eprintln!("scout: {line}");
        }
        eprintln!(
            "scout: listening on http://{addr} (corpora in {}, readable roots: {})",
            corpora.display(),
            roots
                .iter()
                .map(|r| r.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    })?;
    Ok(0)
}
