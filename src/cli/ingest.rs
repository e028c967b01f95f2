//! `scout ingest`: folders and files into a corpus file, with the summary
//! (or its JSON), an optional map page, and exit 2 when files could not be
//! read.
//!
//! Never leaves a skip uncounted in the summary.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use super::{say, Progress, WalkArgs};
use crate::corpus::Corpus;
use crate::engine::open::ModelArgs;
use crate::report;
use crate::report::map::{map_html, MapEntry};
use crate::tasks::ingest::{document_tokens, ingest_while_loading, TokenizerWhenReady};
use crate::tasks::sources::check_sources;

#[derive(Debug, Args)]
pub(super) struct IngestArgs {
    /// Folders and files to read.
    #[arg(required = true, value_name = "PATH")]
    pub(super) paths: Vec<PathBuf>,
    /// The corpus file to create or update.
    #[arg(long, value_name = "FILE")]
    pub(super) corpus: PathBuf,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    pub(super) json: bool,
    /// Do not count tokens (no model needed; the summary then has no token count).
    #[arg(long)]
    pub(super) no_tokens: bool,
    /// No progress on stderr.
    #[arg(long, short)]
    pub(super) quiet: bool,
    /// Also write a self-contained HTML page with a treemap of where the corpus's
    /// tokens go, its biggest documents, and every skipped file.
    #[arg(long, value_name = "FILE.html")]
    pub(super) map: Option<PathBuf>,
    #[command(flatten)]
    pub(super) project: super::ProjectArgs,
    #[command(flatten)]
    pub(super) walk: WalkArgs,
    #[command(flatten)]
    pub(super) model: ModelArgs,
}

pub(super) fn run_ingest(a: &IngestArgs) -> Result<i32> {
    check_sources(&a.paths)?;
    let mut corpus = Corpus::open(&a.corpus)?;
    let progress = Progress::files(a.quiet);
    let options = a.walk.options(false);
    let loaded: std::sync::OnceLock<Result<(Box<dyn crate::prompt::Tokenizer + Send + Sync>, PathBuf)>> =
        std::sync::OnceLock::new();
    // A drawn bar wants the number of files: the kept listing may say.
    let bar_listing = if progress.visible() {
        Some(if options.rescan { None } else { corpus.walk_listing()? })
    } else {
        None
    };
    let summary = std::thread::scope(|scope| {
        if let Some(kept) = bar_listing {
            // The bar's length (and so an ETA) comes while the real walk
            // is already under way: from the last walk's listing when it
            // still holds (as the ingest will find), else from a quick
            // walk without reading.
            let (progress, paths, options) = (&progress, &a.paths, &options);
            scope.spawn(move || {
                let mut as_ingested = options.clone();
                as_ingested.exclude.push(a.corpus.clone());
                let listed = kept
                    .as_deref()
                    .and_then(|b| crate::ingest::check_listing(paths, &as_ingested, b));
                progress.set_total(listed.map_or_else(
                    || crate::ingest::count_files(paths, options),
                    |l| l.entries.iter().filter(|e| !e.is_dir).count() as u64,
                ));
            });
        }
        if !a.no_tokens {
            // The tokenizer loads while the walk begins; the first document
            // to count waits for it. Set even if loading panics, so no
            // one waits for ever.
            scope.spawn(|| {
                let load = || a.model.tokenizer(&mut say(a.quiet)).map_err(anyhow::Error::from);
                let _ = loaded.set(
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(load))
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("loading the tokenizer failed (a panic)"))),
                );
            });
        }
        let wait = || {
            loaded
                .wait()
                .as_ref()
                .ok()
                .map(|(t, _)| t.as_ref() as &dyn crate::prompt::Tokenizer)
        };
        ingest_while_loading(
            &mut corpus,
            &a.paths,
            &options,
            (!a.no_tokens).then_some(&wait as &TokenizerWhenReady<'_>),
            &mut |path| progress.file(path),
        )
    });
    progress.finish();
    let (tokenizer, model_path) = match loaded.into_inner() {
        Some(Ok((t, path))) => (Some(t), Some(path)),
        Some(Err(e)) => return Err(e),
        None => (None, None),
    };
    let summary = summary?;
    if let Some(map) = &a.map {
        let entries: Vec<MapEntry> = match &tokenizer {
            Some(t) => document_tokens(&mut corpus, t.as_ref())?
                .into_iter()
                .map(|(path, kind, size)| MapEntry { path, kind, size })
                .collect(),
            None => corpus
                .documents()?
                .into_iter()
                .map(|d| MapEntry {
                    path: d.path,
                    kind: d.kind.as_str().to_owned(),
                    size: d.bytes,
                })
                .collect(),
        };
        // The model's context, from its GGUF header (a vocabulary-only
        // load does not report it).
        let context = model_path
            .as_ref()
            .and_then(|p| crate::model::facts::load(&p.to_string_lossy()).ok())
            .map(|f| f.max_context as u32)
            .filter(|&c| c > 0);
        let html = map_html(
            &a.corpus.display().to_string(),
            &entries,
            &summary,
            tokenizer.is_some(),
            context,
        );
        std::fs::write(map, html).with_context(|| format!("writing {}", map.display()))?;
        if !a.quiet {
            eprintln!("scout: map written to {}", map.display());
        }
    }
    let mut out = std::io::stdout().lock();
    if a.json {
        let mut value = serde_json::to_value(&summary)?;
        value["corpus"] = serde_json::Value::String(a.corpus.display().to_string());
        if a.no_tokens {
            value["tokens"] = serde_json::Value::Null;
        }
        writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
    } else {
        write!(out, "{}", report::ingest_text(&summary, !a.no_tokens))?;
        writeln!(out, "corpus: {}", a.corpus.display())?;
    }
    // The process ends with this command: freeing the corpus connection
    // and the tokenizer's tables would only delay that.
    std::mem::forget((corpus, tokenizer));
    Ok(if summary.errors > 0 { 2 } else { 0 })
}
