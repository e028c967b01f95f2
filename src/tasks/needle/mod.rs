//! The needle bench: how well a model reads a corpus, measured on that
//! corpus. A haystack is cut from the corpus's own documents at each
//! prompt length; a generated fact is planted at each depth; the question
//! goes through the normal [`ask`] path (windows, map and reduce, the
//! recheck, citations), and the answer is scored: found (the value is in
//! it) and cited (a valid citation covers the planted line).
//!
//! In: a corpus, an engine, a grid and a seed. Out: every trial and the
//! grid's cells, as data; progress as events. Reproducible: the same
//! corpus, seed and grid give the same haystacks, needles, places and
//! boundary salt.

pub mod plant;

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use crate::anchor::Anchor;
use crate::corpus::{Corpus, CorpusError, StoredDocument};
use crate::document::{Document, DocumentKind};
use crate::engine::{Engine, GenerateParams};
use crate::ingest::{code_language, split_text, WalkItem};
use crate::prompt::{order_documents, Tokenizer};
use crate::tasks::ask::{ask, AskOptions};
use crate::tasks::citations::cites_any;
use crate::tasks::ingest::document_tokens;
use crate::tasks::run::{TaskError, TaskEvent};
use crate::tasks::sweep::Rates;
pub use plant::NeedleKind;
use plant::{usable, HayDocument, Haystack, Needle};

#[derive(Debug, Clone)]
pub struct NeedleOptions {
    /// Prompt lengths in tokens (the haystack's documents as laid out).
    pub lengths: Vec<u64>,
    /// Depths in percent of the haystack's text before the needle.
    pub depths: Vec<u32>,
    pub kinds: Vec<NeedleKind>,
    /// Needles per cell (per length, depth and kind).
    pub needles: usize,
    pub seed: u64,
    pub generate: GenerateParams,
    /// The rates earlier sweeps measured: each question's plan estimates its
    /// time from them, and each question's sweep records its own.
    pub rates: Rates,
}

/// One question asked: where its needle was, what came back.
#[derive(Debug, Clone, Serialize)]
pub struct Trial {
    pub kind: NeedleKind,
    pub length: u64,
    pub depth: u32,
    /// The share of the haystack's prompt tokens before the needle, as the
    /// prompt laid the documents out.
    pub depth_measured: f64,
    pub needle: String,
    pub question: String,
    pub value: String,
    pub path: String,
    pub line: u32,
    pub windows: usize,
    pub answer: String,
    pub found: bool,
    pub cited: bool,
    /// Whether scout asked again over the lines matching the question.
    pub rechecked: bool,
    pub seconds: f64,
}

/// The trials of one length, depth and kind, counted.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    pub kind: NeedleKind,
    pub length: u64,
    pub depth: u32,
    pub trials: usize,
    pub found: usize,
    pub cited: usize,
    pub median_seconds: f64,
}

/// A haystack as built for one length.
#[derive(Debug, Clone, Serialize)]
pub struct HaystackReport {
    pub length: u64,
    /// Prompt tokens of its documents (without a needle).
    pub tokens: u64,
    pub documents: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct NeedleReport {
    pub engine: String,
    pub model: String,
    pub seed: u64,
    pub needles: usize,
    pub kinds: Vec<NeedleKind>,
    pub depths: Vec<u32>,
    pub haystacks: Vec<HaystackReport>,
    pub cells: Vec<Cell>,
    pub trials: Vec<Trial>,
}

impl NeedleReport {
    /// Trials, found, cited over the whole grid.
    #[must_use]
    pub fn totals(&self) -> (usize, usize, usize) {
        let found = self.trials.iter().filter(|t| t.found).count();
        let cited = self.trials.iter().filter(|t| t.cited).count();
        (self.trials.len(), found, cited)
    }
}

/// Progress of a bench run.
#[derive(Debug, Clone, Copy)]
pub enum NeedleEvent<'a> {
    /// A haystack is ready; its trials follow.
    Haystack(&'a HaystackReport),
    /// A trial's question is being answered.
    Task(TaskEvent<'a>),
    /// A trial ended (`done` of `of`).
    Trial { trial: &'a Trial, done: usize, of: usize },
}

#[derive(Debug, thiserror::Error)]
pub enum NeedleError {
    #[error(transparent)]
    Corpus(#[from] CorpusError),
    #[error(transparent)]
    Task(#[from] TaskError),
    #[error("nothing to bench: {0}")]
    Empty(&'static str),
    #[error("the corpus's text and code hold {have} prompt tokens, too few for a {length}-token haystack; give more sources or a shorter --lengths")]
    TooShort { length: u64, have: u64 },
}

/// Runs the grid over `corpus`'s text and code documents with `engine`;
/// the haystack corpora are written under `scratch`.
pub fn needle_bench(
    corpus: &mut Corpus,
    engine: &mut dyn Engine,
    scratch: &Path,
    opts: &NeedleOptions,
    on_event: &mut dyn FnMut(NeedleEvent<'_>),
) -> Result<NeedleReport, NeedleError> {
    if opts.lengths.is_empty() || opts.depths.is_empty() || opts.kinds.is_empty() || opts.needles == 0 {
        return Err(NeedleError::Empty(
            "the grid has no cells (lengths, depths, kinds and needles all needed)",
        ));
    }
    let mut docs: Vec<StoredDocument> = corpus.documents()?.into_iter().filter(usable).collect();
    if docs.is_empty() {
        return Err(NeedleError::Empty("the corpus has no text or code documents"));
    }
    order_documents(&mut docs);
    let totals: HashMap<String, u64> = document_tokens(corpus, &*engine)?
        .into_iter()
        .map(|(path, _, n)| (path, n))
        .collect();
    let have: u64 = docs.iter().map(|d| totals.get(&d.path).copied().unwrap_or(0)).sum();
    let mut haystacks = Vec::new();
    for &length in &opts.lengths {
        let hay = Haystack::cut(&docs, &totals, length, &*engine).ok_or(NeedleError::TooShort { length, have })?;
        haystacks.push((length, hay));
    }
    // One salt for every haystack of this corpus and seed: the boundaries
    // are part of what the model reads, so they are part of the bench.
    let salt = blake3::hash(format!("scout needle bench\0{}\0{}", corpus.salt(), opts.seed).as_bytes()).to_hex()[..16]
        .to_owned();

    let of = opts.lengths.len() * opts.depths.len() * opts.kinds.len() * opts.needles;
    let mut report = NeedleReport {
        engine: engine.backend().to_owned(),
        model: engine.model_id().to_owned(),
        seed: opts.seed,
        needles: opts.needles,
        kinds: opts.kinds.clone(),
        depths: opts.depths.clone(),
        haystacks: Vec::new(),
        cells: Vec::new(),
        trials: Vec::new(),
    };
    for (length, hay) in &mut haystacks {
        let mut stack = Corpus::open(&scratch.join(format!("haystack-{length}.scout.db")))?;
        stack.set_salt(&salt)?;
        let stack_totals = store_within(&mut stack, &*engine, hay, (&docs, &totals), *length)?;
        let hay = &*hay;
        let built = HaystackReport {
            length: *length,
            tokens: stack_totals.values().sum(),
            documents: hay.documents.len(),
        };
        on_event(NeedleEvent::Haystack(&built));
        for &kind in &opts.kinds {
            for index in 0..opts.needles {
                // A value the haystack already holds would score a miss as found.
                let needle = (0..100)
                    .map(|attempt| Needle::generate(kind, opts.seed, index, attempt))
                    .find(|n| !hay.contains(&n.value))
                    .ok_or(NeedleError::Empty(
                        "every generated value already occurs in the haystack",
                    ))?;
                for &depth in &opts.depths {
                    let trial = run_trial(
                        &mut stack,
                        engine,
                        hay,
                        &stack_totals,
                        &needle,
                        (*length, depth),
                        opts,
                        on_event,
                    )?;
                    report.trials.push(trial);
                    let done = report.trials.len();
                    on_event(NeedleEvent::Trial {
                        trial: &report.trials[done - 1],
                        done,
                        of,
                    });
                }
            }
        }
        // Back to the haystack without a needle (what the report's tokens say).
        store(&mut stack, &hay.documents)?;
        report.haystacks.push(built);
    }
    report.cells = cells(&report.trials);
    Ok(report)
}

/// Stores `hay` in `stack` and counts it as a prompt. Lines counted one by
/// one can come to a little less than the text counted whole (a merge across
/// a line break, the path in a boundary), so a haystack over `length` is cut
/// again, shorter by what it went over, until it fits.
fn store_within(
    stack: &mut Corpus,
    tokenizer: &dyn Tokenizer,
    hay: &mut Haystack,
    (docs, totals): (&[StoredDocument], &HashMap<String, u64>),
    length: u64,
) -> Result<HashMap<String, u64>, NeedleError> {
    let mut target = length;
    loop {
        store(stack, &hay.documents)?;
        let counted: HashMap<String, u64> = document_tokens(stack, tokenizer)?
            .into_iter()
            .map(|(path, _, n)| (path, n))
            .collect();
        let tokens: u64 = counted.values().sum();
        if tokens <= length {
            return Ok(counted);
        }
        target = target.saturating_sub(tokens - length);
        let have = docs.iter().map(|d| totals.get(&d.path).copied().unwrap_or(0)).sum();
        *hay = Haystack::cut(docs, totals, target, tokenizer).ok_or(NeedleError::TooShort { length, have })?;
    }
}

#[allow(clippy::too_many_arguments)]
fn run_trial(
    stack: &mut Corpus,
    engine: &mut dyn Engine,
    hay: &Haystack,
    totals: &HashMap<String, u64>,
    needle: &Needle,
    (length, depth): (u64, u32),
    opts: &NeedleOptions,
    on_event: &mut dyn FnMut(NeedleEvent<'_>),
) -> Result<Trial, NeedleError> {
    let place = hay.place(depth);
    let (planted, line) = hay.planted(place, &needle.line);
    store(stack, &planted)?;
    let path = planted[place.document].path.clone();
    // Tokens before the needle: the documents before its own (whole, as
    // laid out) and the share of its own text before it.
    let all: u64 = hay
        .documents
        .iter()
        .map(|d| totals.get(&d.path).copied().unwrap_or(0))
        .sum();
    let before: u64 = hay.documents[..place.document]
        .iter()
        .map(|d| totals.get(&d.path).copied().unwrap_or(0))
        .sum::<u64>()
        + own_share(hay, totals, place);
    let ask_opts = AskOptions {
        question: needle.question.clone(),
        generate: opts.generate.clone(),
        rates: opts.rates.reloaded(),
        ..AskOptions::default()
    };
    let started = Instant::now();
    let result = ask(stack, engine, &ask_opts, &mut |e| on_event(NeedleEvent::Task(e)))?;
    let seconds = started.elapsed().as_secs_f64();
    let anchor = Anchor::Lines {
        path: path.clone(),
        start: line,
        end: line,
    };
    Ok(Trial {
        kind: needle.kind,
        length,
        depth,
        depth_measured: before as f64 / all.max(1) as f64,
        needle: needle.line.clone(),
        question: needle.question.clone(),
        value: needle.value.clone(),
        path,
        line,
        windows: result.windows.len(),
        found: needle.found_in(&result.answer),
        cited: cites_any(&result.citations, &[anchor]),
        rechecked: result.recheck.is_some(),
        answer: result.answer,
        seconds,
    })
}

/// The prompt tokens of the needle's own document that come before it.
fn own_share(hay: &Haystack, totals: &HashMap<String, u64>, place: plant::Place) -> u64 {
    let doc = &hay.documents[place.document];
    let whole = totals.get(&doc.path).copied().unwrap_or(0);
    let share = place.line as f64 / doc.lines.len().max(1) as f64;
    (whole as f64 * share) as u64
}

/// Stores `docs` as the corpus's documents, in this order (their
/// modification times say so: the prompt lays out the least recently
/// changed first). Unchanged documents are not rewritten.
fn store(stack: &mut Corpus, docs: &[HayDocument]) -> Result<(), CorpusError> {
    let items: Vec<WalkItem> = docs
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let text = d.text();
            let mut doc = Document::new(
                d.path.clone(),
                d.kind,
                blake3::hash(text.as_bytes()).to_hex().to_string(),
                text.len() as u64,
                (i as i64 + 1) * 1_000_000_000,
            );
            if d.kind == DocumentKind::Code {
                doc.language = code_language(&d.path);
            }
            doc.segments = split_text(&d.path, &text);
            WalkItem::Document(Box::new(doc))
        })
        .collect();
    stack.store_run(&[], items, false)?;
    Ok(())
}

/// The trials counted by cell, in grid order (kind, length, depth).
fn cells(trials: &[Trial]) -> Vec<Cell> {
    let mut keys: Vec<(NeedleKind, u64, u32)> = Vec::new();
    for t in trials {
        let key = (t.kind, t.length, t.depth);
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys.sort_by_key(|&(kind, length, depth)| (kind.as_str(), length, depth));
    keys.into_iter()
        .map(|(kind, length, depth)| {
            let of: Vec<&Trial> = trials
                .iter()
                .filter(|t| (t.kind, t.length, t.depth) == (kind, length, depth))
                .collect();
            let mut seconds: Vec<f64> = of.iter().map(|t| t.seconds).collect();
            seconds.sort_by(f64::total_cmp);
            Cell {
                kind,
                length,
                depth,
                trials: of.len(),
                found: of.iter().filter(|t| t.found).count(),
                cited: of.iter().filter(|t| t.cited).count(),
                median_seconds: seconds.get(seconds.len() / 2).copied().unwrap_or(0.0),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Words, plus one token for each digit: a salt of digits costs more
    /// than one of letters, as hex salts of one length tokenize to
    /// different counts with a real tokenizer.
    struct Digits;

    impl Tokenizer for Digits {
        fn tokenizer_id(&self) -> &'static str {
            "digits"
        }
        fn count_tokens(&self, text: &str) -> u32 {
            (text.split_whitespace().count() + text.chars().filter(char::is_ascii_digit).count()) as u32
        }
    }

    #[test]
    fn a_haystack_that_counts_over_its_length_is_cut_again_until_it_fits() {
        let dir = tempfile::tempdir().unwrap();
        let mut source = Corpus::open(&dir.path().join("source.scout.db")).unwrap();
        source.set_salt("abcdefabcdefabcd").unwrap();
        let docs: Vec<HayDocument> = ["a.txt", "b.txt"]
            .iter()
            .map(|path| HayDocument {
                path: (*path).to_owned(),
                kind: DocumentKind::Text,
                lines: (0..200).map(|_| format!("{path} line\n")).collect(),
            })
            .collect();
        store(&mut source, &docs).unwrap();
        let docs = source.documents().unwrap();
        let totals: HashMap<String, u64> = document_tokens(&mut source, &Digits)
            .unwrap()
            .into_iter()
            .map(|(path, _, n)| (path, n))
            .collect();
        let length = 1000;

        // Cut by the source's counts, the haystack under the bench's salt
        // goes over.
        let salt = "1234567890123456";
        let mut first = Corpus::open(&dir.path().join("first.scout.db")).unwrap();
        first.set_salt(salt).unwrap();
        let cut = Haystack::cut(&docs, &totals, length, &Digits).unwrap();
        store(&mut first, &cut.documents).unwrap();
        let over: u64 = document_tokens(&mut first, &Digits).unwrap().iter().map(|d| d.2).sum();
        assert!(over > length, "the case needs a first cut over the length: {over}");

        let mut stack = Corpus::open(&dir.path().join("stack.scout.db")).unwrap();
        stack.set_salt(salt).unwrap();
        let mut hay = cut;
        let counted = store_within(&mut stack, &Digits, &mut hay, (&docs, &totals), length).unwrap();
        let tokens: u64 = counted.values().sum();
        assert!((length * 9 / 10..=length).contains(&tokens), "{tokens} tokens");
        // What was counted is what is stored.
        let stored: u64 = document_tokens(&mut stack, &Digits).unwrap().iter().map(|d| d.2).sum();
        assert_eq!(stored, tokens);
        assert_eq!(stack.documents().unwrap().len(), hay.documents.len());
    }
}
