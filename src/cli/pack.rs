//! `scout pack`: the laid-out corpus as one file (Markdown, XML, plain or
//! JSON), counted exactly, fitted to a budget, with the changes since a
//! revision; images beside a Markdown file.
//!
//! Never leaves out a document without listing it (in the output, or on
//! stderr when the budget has no room for its name).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;

use super::{open_sources, say, ProjectArgs, WalkArgs};
use crate::corpus::Corpus;
use crate::engine::open::load_tokenizer;
use crate::ingest::display_path;
use crate::ingest::gitdiff::{changes_since_rev, Change};
use crate::model::store;
use crate::pack::{pack_counted, DiffSection, Encoding, Form, Format, PackOptions};
use crate::prompt::Tokenizer;

const AFTER_HELP: &str = "\
Examples:
  scout pack ./my-repo -o my-repo.md
  scout pack ./my-repo --format xml --encoding o200k --budget 128k -o prompt.xml
  scout pack ./my-repo --diff main -o review.md
  scout pack my-repo.scout.db --format json | jq '.documents[].path'

Markdown and XML show each document as the models read it: numbered line markers
([L10]), [page N] lines in PDFs, the documents in the prompt's order (least recently
changed first). `plain` is the prompt layout itself; JSON holds each document's text
as the corpus holds it.

With --budget the whole output fits in N tokens, counted exactly: documents are
ranked (how many other files refer to them, how many commits changed them, how
recently), the lowest-ranked reduced to their outline (definitions with their lines)
or left out, and everything left out is listed at the end.";

#[derive(Debug, Args)]
#[command(after_help = AFTER_HELP)]
pub(super) struct PackArgs {
    /// Folders and files to pack, or one corpus file made by `scout ingest`.
    #[arg(required = true, value_name = "SOURCE")]
    sources: Vec<PathBuf>,
    /// Write the output to this file (default: stdout). A Markdown output's images
    /// go to a folder beside it, named after it (`FILE.assets/`).
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
    /// The output format.
    #[arg(long, value_enum, default_value_t = Format::Markdown)]
    format: Format,
    /// Count tokens with an OpenAI encoding (the counts tiktoken, code2prompt and
    /// repomix give) instead of the model's vocabulary.
    #[arg(long, value_enum, conflicts_with = "tokenizer")]
    encoding: Option<Encoding>,
    /// Count tokens with this GGUF's vocabulary. Default: the default model's.
    #[arg(long, value_name = "FILE.gguf")]
    tokenizer: Option<PathBuf>,
    /// Fit the whole output in this many tokens (`128k` is 128,000; `1m` a
    /// million), reducing or leaving out the lowest-ranked documents.
    #[arg(long, value_name = "TOKENS", value_parser = parse_tokens)]
    budget: Option<u64>,
    /// Add the changes since this git revision (commits since it and uncommitted
    /// edits; untracked files count as added): the changed files, then the patch.
    #[arg(long, value_name = "REV")]
    diff: Option<String>,
    /// No progress and no summary on stderr.
    #[arg(long, short)]
    quiet: bool,
    #[command(flatten)]
    project: ProjectArgs,
    #[command(flatten)]
    walk: WalkArgs,
}

impl PackArgs {
    pub(super) fn quiet(&self) -> bool {
        self.quiet
    }
}

/// `128000`, `128k`, `1.5m`.
pub(super) fn parse_tokens(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let (number, scale) = match t.strip_suffix('k') {
        Some(n) => (n, 1e3),
        None => match t.strip_suffix('m') {
            Some(n) => (n, 1e6),
            None => (t.as_str(), 1.0),
        },
    };
    match number.parse::<f64>() {
        Ok(n) if n.is_finite() && n >= 1.0 => Ok((n * scale).round() as u64),
        _ => Err(format!("`{s}` is not a token count (such as 100000, 128k, 1m)")),
    }
}

pub(super) fn run_pack(a: &PackArgs) -> Result<i32> {
    crate::tasks::sources::check_sources(&a.sources)?;
    let mut say = say(a.quiet);
    if let Some(out) = &a.output {
        if a.sources.iter().any(|s| same_file(s, out)) {
            bail!(
                "--output {} is one of the sources; write the pack elsewhere",
                out.display()
            );
        }
    }
    let tokenizer: Box<dyn Tokenizer + Send + Sync> = match a.encoding {
        Some(e) => Box::new(e),
        None => load_tokenizer(store::resolve(a.tokenizer.as_deref(), &mut say)?)?.0,
    };
    let mut walk = a.walk.options(false);
    if let Some(out) = &a.output {
        // An earlier pack in the folder is not a source.
        walk.exclude.push(out.clone());
        walk.exclude.push(assets_dir(out));
    }
    let (mut corpus, errors) = open_sources(&a.sources, &walk, a.quiet, &mut say)?;
    let diff = match &a.diff {
        Some(rev) => Some(diff_section(&corpus, &a.sources, rev)?),
        None => None,
    };
    let images = match (&a.output, a.format) {
        (Some(out), Format::Markdown) => Some(assets_link(out)),
        _ => None,
    };
    if a.output.is_none() && a.format == Format::Markdown && !a.quiet {
        // Said once, before the work: images need a folder to go to.
        say("scout: writing to stdout, so images are left out (their OCR text stays); use -o FILE.md to write them beside it");
    }
    let options = PackOptions {
        format: a.format,
        budget: a.budget,
        sources: a.sources.iter().map(|s| display_path(s)).collect(),
        diff,
        images,
    };
    let docs = corpus.documents()?;
    // A document rendered as in an earlier pack of this corpus, with the
    // same tokenizer, is not counted again.
    let tokenizer_id = tokenizer.tokenizer_id().to_owned();
    let known = |hashes: &[String]| {
        corpus.token_counts(&tokenizer_id, hashes).unwrap_or_else(|e| {
            tracing::warn!("the corpus's kept token counts could not be read, so every document is counted: {e}");
            vec![None; hashes.len()]
        })
    };
    let packed = pack_counted(
        docs,
        corpus.salt(),
        tokenizer.as_ref(),
        &options,
        &mut |d, page| corpus.page_image(d.id, page).ok().flatten(),
        &known,
    )?;
    if let Err(e) = corpus.store_token_counts(&tokenizer_id, &packed.fresh_counts) {
        tracing::warn!("the token counts could not be kept for the next pack: {e}");
    }
    match &a.output {
        Some(out) => {
            std::fs::write(out, &packed.text).with_context(|| format!("writing {}", out.display()))?;
            if !packed.images.is_empty() {
                let dir = assets_dir(out);
                std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
                for (name, bytes) in &packed.images {
                    let path = dir.join(name);
                    std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
                }
            }
        }
        None => std::io::stdout().lock().write_all(packed.text.as_bytes())?,
    }
    if !a.quiet {
        let count = |f: Form| packed.documents.iter().filter(|d| d.form == f).count();
        let left = count(Form::LeftOut);
        say(&format!(
            "scout: packed {} documents ({} whole, {} as outlines, {left} left out) in {} tokens ({}){}{}",
            packed.documents.len(),
            count(Form::Whole),
            count(Form::Outline),
            packed.tokens,
            tokenizer.tokenizer_id(),
            a.budget.map(|b| format!(", budget {b}")).unwrap_or_default(),
            a.output
                .as_ref()
                .map(|o| format!(" -> {}", o.display()))
                .unwrap_or_default(),
        ));
        if !packed.images.is_empty() {
            say(&format!(
                "scout: {} images written to {}",
                packed.images.len(),
                assets_dir(a.output.as_deref().unwrap_or(Path::new("."))).display()
            ));
        }
        if !packed.unlisted.is_empty() {
            // The output names the first ones; these it had no room for.
            say(&format!(
                "scout: {} files and folders left out are not named in the output (no room in the budget):",
                packed.unlisted.len()
            ));
            for label in &packed.unlisted {
                say(&format!("  {label}"));
            }
        }
    }
    std::mem::forget((corpus, tokenizer));
    Ok(if errors > 0 { 2 } else { 0 })
}

/// `out.md` -> `out.md.assets`.
fn assets_dir(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_owned();
    name.push(".assets");
    out.with_file_name(name)
}

/// How the Markdown at `out` links to its images' folder: by the folder's
/// name, since it sits beside the file (a space would end the link).
fn assets_link(out: &Path) -> String {
    let dir = assets_dir(out);
    dir.file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .replace(' ', "%20")
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// The changes since `rev` in every source folder (or, for a corpus file,
/// in the folders it was made from), with paths as the corpus spells them.
fn diff_section(corpus: &Corpus, sources: &[PathBuf], rev: &str) -> Result<DiffSection> {
    let roots: Vec<PathBuf> = if sources.len() == 1 && Corpus::is_corpus_file(&sources[0]) {
        let roots: Vec<PathBuf> = corpus.ingest_roots()?.into_iter().map(PathBuf::from).collect();
        if let Some(missing) = roots.iter().find(|r| !r.exists()) {
            bail!(
                "--diff reads the folders the corpus was made from, and {} is not here (run from where `scout ingest` ran, or pack the folders)",
                missing.display()
            );
        }
        roots
    } else {
        sources.to_vec()
    };
    let mut files: Vec<Change> = Vec::new();
    let mut patch = String::new();
    for root in &roots {
        let changes = changes_since_rev(root, rev)?;
        files.extend(changes.files.into_iter().map(|c| Change {
            path: if root.is_dir() {
                display_path(&root.join(&c.path))
            } else {
                display_path(root)
            },
            status: c.status,
        }));
        patch.push_str(&changes.patch);
    }
    Ok(DiffSection {
        rev: rev.to_owned(),
        files,
        patch,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_read_like_people_write_them() {
        assert_eq!(parse_tokens("128k"), Ok(128_000));
        assert_eq!(parse_tokens("1.5M"), Ok(1_500_000));
        assert_eq!(parse_tokens("4096"), Ok(4096));
        assert!(parse_tokens("0").is_err());
        assert!(parse_tokens("lots").is_err());
    }

    #[test]
    fn images_go_beside_the_output() {
        let out = Path::new("/tmp/x/pack.md");
        assert_eq!(assets_dir(out), Path::new("/tmp/x/pack.md.assets"));
        assert_eq!(assets_link(Path::new("my pack.md")), "my%20pack.md.assets");
    }
}
