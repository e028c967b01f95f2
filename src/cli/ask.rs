//! `scout ask`: a question over a corpus or sources, the answer streamed to
//! stdout with its citations, progress on stderr.
//!
//! Never mixes progress into stdout, which carries only the answer.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::sweep::{print_plan, SweepArgs};
use super::{open_sources, say, Progress, TaskArgs};
use crate::engine::GenerateParams;
use crate::limits::ANSWER_TOKENS;
use crate::report;
use crate::tasks::access::Access;
use crate::tasks::ask::{ask, plan, AskOptions};
use crate::tasks::pipeline::Pipeline;
use crate::tasks::run::{Step, TaskEvent};
use crate::tasks::schema::ExtractSchema;
use crate::tasks::sources::check_sources;
use crate::tasks::sweep::Rates;

#[derive(Debug, Args)]
pub(super) struct AskArgs {
    /// A corpus file made by `scout ingest`, or folders and files to read on the fly
    /// (kept in a cache corpus, so asking again re-reads only what changed).
    #[arg(required = true, value_name = "SOURCE")]
    pub(super) sources: Vec<PathBuf>,
    /// The question.
    #[arg(value_name = "QUESTION")]
    pub(super) question: String,
    /// Print the result as JSON on stdout instead of streaming the answer.
    #[arg(long)]
    pub(super) json: bool,
    /// Most tokens the answer may have.
    #[arg(long, default_value_t = ANSWER_TOKENS)]
    pub(super) max_tokens: u32,
    /// Sampling temperature; 0 is greedy and repeatable.
    #[arg(long, default_value_t = 0.0)]
    pub(super) temperature: f32,
    /// Seed for sampling when the temperature is above 0.
    #[arg(long, default_value_t = 0)]
    pub(super) seed: u32,
    /// Ask over the files an audit pipeline reads (security, code-review, licenses, or a
    /// TOML file), with its rules given to the model as the checklist to answer by.
    #[arg(long, value_name = "NAME|FILE.toml")]
    pub(super) pipeline: Option<String>,
    /// Answer as JSON for this schema (receipt, invoice, form, or a JSON Schema file):
    /// constrained where the engine can, validated after; `--json` adds `data` and
    /// `schema_errors`.
    #[arg(long, value_name = "NAME|FILE.json")]
    pub(super) schema: Option<String>,
    #[command(flatten)]
    pub(super) sweep: SweepArgs,
    /// Print each step's token counts and the usage line on stderr.
    #[arg(long, short)]
    pub(super) verbose: bool,
    /// No progress on stderr.
    #[arg(long, short)]
    pub(super) quiet: bool,
    #[command(flatten)]
    pub(super) common: TaskArgs,
}

pub(super) fn run_ask(a: &AskArgs) -> Result<i32> {
    check_sources(&a.sources)?;
    // Checked before the model loads: a typo should not cost a load.
    let pipeline = a
        .pipeline
        .as_deref()
        .map(|p| Pipeline::load(p, &Access::Anywhere))
        .transpose()?;
    let schema = a
        .schema
        .as_deref()
        .map(|s| ExtractSchema::load(s, &Access::Anywhere))
        .transpose()?;
    let mut say = say(a.quiet);
    let (mut engine, engine_line) = a.common.model.engine(&a.common.run, &mut say)?;

    let (mut corpus, ingest_errors) = open_sources(&a.sources, &a.common.walk.options(false), a.quiet, &mut say)?;
    say(&format!("scout: asking {engine_line}"));

    let opts = AskOptions {
        question: a.question.clone(),
        generate: GenerateParams {
            max_tokens: a.max_tokens,
            temperature: a.temperature,
            seed: a.seed,
            ..GenerateParams::default()
        },
        pipeline,
        schema,
        max_windows: a.sweep.max_windows,
        rates: Rates::in_cache(),
    };
    if a.sweep.dry_run {
        print_plan(&plan(&mut corpus, engine.as_ref(), &opts)?, a.json)?;
        return Ok(if ingest_errors > 0 { 2 } else { 0 });
    }
    let stream = !a.json;
    // On a terminal, control characters the model echoes from the corpus
    // are shown escaped; into a pipe the answer goes as it is.
    let on_terminal = std::io::stdout().is_terminal();
    let mut out = std::io::stdout().lock();
    let mut write_error: Option<std::io::Error> = None;
    let progress = Progress::prefill(a.quiet);
    let verbose = a.verbose && !a.quiet;
    let result = ask(&mut corpus, engine.as_mut(), &opts, &mut |event| match event {
        TaskEvent::Answer(text) => {
            progress.clear();
            if stream && write_error.is_none() {
                let shown = if on_terminal {
                    report::terminal::text(text)
                } else {
                    text.into()
                };
                if let Err(e) = out.write_all(shown.as_bytes()).and_then(|()| out.flush()) {
                    write_error = Some(e);
                }
            }
        }
        TaskEvent::KvKept(k) if verbose => progress.say(&report::sweep::kept_text(k)),
        _ => show_progress(&progress, event),
    });
    progress.clear();
    if let Some(e) = write_error {
        return Err(e.into());
    }
    let result = result?;
    if a.json {
        let mut value = serde_json::to_value(&result)?;
        value["corpus"] = serde_json::Value::String(corpus.path().display().to_string());
        writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
    } else {
        writeln!(out, "\n")?;
        write!(out, "{}", report::citations_text(&result))?;
    }
    if verbose || (!a.quiet && !a.json && std::io::stderr().is_terminal()) {
        eprintln!("scout: {}", report::usage_text(&result));
    }
    if let Some(line) = report::tiers_text(&engine.kv_tiers()).filter(|_| verbose) {
        eprintln!("scout: {line}");
    }
    Ok(if ingest_errors > 0 {
        2
    } else {
        i32::from(!result.found || !result.has_valid_citation())
    })
}

/// A task's steps and prefill on the progress bar (answer text is the
/// caller's to show).
pub(super) fn show_progress(progress: &Progress, event: TaskEvent<'_>) {
    match event {
        TaskEvent::Step {
            step,
            index,
            of,
            prompt_tokens,
        } => progress.step(&step_text(step, index, of), prompt_tokens),
        TaskEvent::Prefill { done, total } => progress.prefill_progress(done, total),
        TaskEvent::Plan(plan) => progress.say(&format!("plan: {}", report::sweep::sweep_text(plan))),
        TaskEvent::Sweep { of, prompt_tokens, .. } => progress.sweep(of, prompt_tokens),
        TaskEvent::Done { index, done, of, .. } => progress.window_done(index, done, of),
        // Every window kept is said under --verbose (by the caller); a
        // window not kept always.
        TaskEvent::KvKept(k) if !k.all_kept() => progress.say(&report::sweep::kept_text(k)),
        TaskEvent::KvKept(_) | TaskEvent::Answer(_) => {}
        TaskEvent::Rules(stats) => progress.say(&report::audit::rules_text(stats)),
    }
}

/// What a model call is doing, for the progress line.
pub(super) fn step_text(step: Step, index: usize, of: usize) -> String {
    match step {
        Step::Answer => "answering".to_owned(),
        Step::Audit if of > 1 => format!("auditing window {} of {of}", index + 1),
        Step::Audit => "auditing".to_owned(),
        Step::Extract => format!("extracting {} of {of}", index + 1),
        Step::Map => format!("reading window {} of {of}", index + 1),
        Step::Reduce if of > 1 => format!("combining notes, group {} of {of}", index + 1),
        Step::Reduce => "combining the windows' notes".to_owned(),
        Step::Recheck => "asking again over the lines that match the question".to_owned(),
    }
}
