//! `scout extract`: one JSON object per document or page under a schema, as
//! JSON lines.
//!
//! Never writes an object that failed validation as valid.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use super::sweep::{print_plan, SweepArgs};
use super::{open_sources, say, show_progress, Progress, TaskArgs};
use crate::engine::GenerateParams;
use crate::tasks::access::Access;
use crate::tasks::extract::{extract, plan, ExtractOptions};
use crate::tasks::schema::ExtractSchema;
use crate::tasks::sources::check_sources;
use crate::tasks::sweep::Rates;

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  scout extract scans/*.png --schema receipt
  scout extract invoices/ --schema invoice --jsonl invoices.jsonl
  scout extract forms.pdf --schema form --per-page
  scout extract receipts/ --schema my-schema.json
  scout extract scans/ --schema receipt --dry-run   # the plan: documents, tokens, time

Built-in schemas: receipt (company, date, address, total), invoice (numbers, parties,
amounts, line items), form (every labelled field as key and value). Any JSON Schema whose
top level is an object works.

Each output line: {path, page?, data, valid, errors, fields: [{pointer, value, found,
anchor, confidence}], constrained, usage, ms}. A field's anchor is path#page=N&bbox=x,y,w,h
for OCR text (with the OCR confidence of its lines), path#page=N for a PDF's text, and
found=false when the value is nowhere in the document.

Exit codes: 0 every object is valid; 2 at least one document failed or did not validate
(the others are still written).")]
pub(super) struct ExtractArgs {
    /// Files and folders to read (images, PDFs, text), or a corpus file.
    #[arg(required = true, value_name = "SOURCE")]
    pub(super) sources: Vec<PathBuf>,
    /// The JSON Schema each object must satisfy: a built-in name (receipt, invoice, form)
    /// or a file.
    #[arg(long, short, value_name = "NAME|FILE.json")]
    pub(super) schema: String,
    /// Write the objects as JSON lines to this file (default: stdout).
    #[arg(long, value_name = "FILE.jsonl")]
    pub(super) jsonl: Option<PathBuf>,
    /// One object per page of each PDF, not one per document.
    #[arg(long)]
    pub(super) per_page: bool,
    /// Most tokens the model may write per object.
    #[arg(long, default_value_t = 768)]
    pub(super) max_tokens: u32,
    #[command(flatten)]
    pub(super) sweep: SweepArgs,
    /// No progress on stderr.
    #[arg(long, short)]
    pub(super) quiet: bool,
    #[command(flatten)]
    pub(super) common: TaskArgs,
}

/// The extraction settings `scout extract` and `scout bench extract` share.
pub(super) fn extract_options(max_tokens: u32, per_page: bool) -> ExtractOptions {
    ExtractOptions {
        generate: GenerateParams {
            max_tokens,
            // Values are copied from the document: no penalty on repeats.
            repeat_penalty: 1.0,
            ..GenerateParams::default()
        },
        per_page,
        max_windows: None,
        rates: Rates::in_cache(),
    }
}

pub(super) fn run_extract(a: &ExtractArgs) -> Result<i32> {
    check_sources(&a.sources)?;
    let schema = ExtractSchema::load(a.schema.as_str(), &Access::Anywhere)?;
    let mut say = say(a.quiet);
    let (mut engine, engine_line) = a.common.model.engine(&a.common.run, &mut say)?;
    let (mut corpus, ingest_errors) = open_sources(&a.sources, &a.common.walk.options(true), a.quiet, &mut say)?;
    say(&format!(
        "scout: extracting with the {} schema on {engine_line}",
        schema.name
    ));
    if !engine.capabilities().json_schema {
        say("scout: this engine cannot constrain output to the schema; each object is validated after");
    }
    let opts = ExtractOptions {
        max_windows: a.sweep.max_windows,
        ..extract_options(a.max_tokens, a.per_page)
    };
    if a.sweep.dry_run {
        // The plan goes to stdout as JSON when the objects would (no
        // --jsonl file), as text otherwise.
        print_plan(&plan(&mut corpus, engine.as_ref(), &schema, &opts)?, a.jsonl.is_none())?;
        return Ok(if ingest_errors > 0 { 2 } else { 0 });
    }
    let mut sink: Box<dyn Write> = match &a.jsonl {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut write_error: Option<anyhow::Error> = None;
    let progress = Progress::prefill(a.quiet);
    let results = extract(
        &mut corpus,
        engine.as_mut(),
        &schema,
        &opts,
        &mut |event| show_progress(&progress, event),
        &mut |result| {
            progress.clear();
            if write_error.is_none() {
                let line = serde_json::to_string(result).map_err(anyhow::Error::from);
                if let Err(e) = line.and_then(|l| writeln!(sink, "{l}").and_then(|()| sink.flush()).map_err(Into::into))
                {
                    write_error = Some(e);
                }
            }
        },
    );
    progress.clear();
    if let Some(e) = write_error {
        return Err(e);
    }
    let results = results?;
    let valid = results.iter().filter(|r| r.valid).count();
    let fields: usize = results.iter().map(|r| r.fields.len()).sum();
    let located = results.iter().flat_map(|r| &r.fields).filter(|f| f.found).count();
    say(&format!(
        "scout: {} object{}: {valid} valid, {} failed or invalid; {located} of {fields} values found in their documents",
        results.len(),
        if results.len() == 1 { "" } else { "s" },
        results.len() - valid
    ));
    if let Some(path) = &a.jsonl {
        say(&format!("scout: wrote {}", path.display()));
    }
    Ok(if ingest_errors > 0 || valid < results.len() {
        2
    } else {
        0
    })
}
