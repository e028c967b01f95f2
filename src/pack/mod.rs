//! `scout pack`: a corpus laid out as one file to paste into a chat or
//! send to any API, in the order and with the markers the models read.
//!
//! In: the corpus's documents, a format, a tokenizer (a model's, or an
//! OpenAI encoding), and optionally a token budget and the changes since a
//! revision. Out: the text, its exact token count, and what was kept whole,
//! kept as an outline, or left out.
//!
//! A budget is met without failing: documents are ranked (see [`rank`]);
//! in rank order each goes in whole if it fits in what is left of the
//! budget (and takes at most a [`WHOLE_SHARE`] of it), else as its outline (its definitions with their lines) if that
//! fits, else it is left out. Everything left out is listed at the end
//! (a folder all of whose documents are out as one line), while the
//! budget has room for the names. The count is of the whole output, exact
//! for the tokenizer, and the least important are taken a step further
//! down until it fits: the budget holds to the token.
//!
//! Never drops a document without saying so.

mod encoding;
mod left;
mod rank;
mod render;

use crate::corpus::StoredDocument;
use crate::document::DocumentKind;
use crate::ingest::gitdiff::Change;
use crate::prompt::{document_pieces, extent_attribute, order_documents, Tokenizer};

pub use encoding::Encoding;
use left::{left_out_groups, Left};
pub use rank::{references, scores};
use render::Item;

/// Under a budget, a document goes in whole only if it takes at most this
/// share of the budget (1/16: 8,000 tokens of 128,000), or [`WHOLE_FLOOR`]; a larger one goes
/// in as its outline. One lockfile or generated schema would otherwise
/// take the room of dozens of files.
pub const WHOLE_SHARE: u64 = 16;

/// ...but a document of up to this many tokens may always go in whole
/// (when it fits): a small budget is not cut into crumbs.
pub const WHOLE_FLOOR: u64 = 2_000;

/// The output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Markdown: a heading and a fenced block per document, a table of contents.
    #[value(alias = "md")]
    Markdown,
    /// XML tags around each document (`<document path=...>`), text escaped.
    Xml,
    /// The prompt layout itself: the preamble, salted boundaries, the table of contents.
    Plain,
    /// One JSON object: the documents' text as stored, without markers.
    Json,
}

/// How a document is in the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Form {
    Whole,
    Outline,
    LeftOut,
}

/// The changes since a revision, with paths as the corpus spells them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffSection {
    pub rev: String,
    pub files: Vec<Change>,
    pub patch: String,
}

pub struct PackOptions {
    pub format: Format,
    /// The most tokens the whole output may take.
    pub budget: Option<u64>,
    /// The sources, as the head names them.
    pub sources: Vec<String>,
    pub diff: Option<DiffSection>,
    /// Markdown only: the folder (as the Markdown links to it) the images
    /// are written to; `None` leaves images out (their OCR text stays).
    pub images: Option<String>,
}

/// One document's place in the output.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Placed {
    pub path: String,
    pub form: Form,
    /// Tokens its entry takes in the output; for one left out, what it
    /// would have taken whole.
    pub tokens: u64,
    /// Its rank's score in [0, 1] (higher is kept longer).
    pub score: f64,
}

pub struct Pack {
    pub text: String,
    /// Tokens of the whole text, exact for the tokenizer.
    pub tokens: u64,
    /// Every document, in the output's order (left-out ones where they
    /// would have stood).
    pub documents: Vec<Placed>,
    /// Left-out documents and folders (`path/`) the output has no room to
    /// name.
    pub unlisted: Vec<String>,
    /// Images to write beside a Markdown output: (file name, bytes).
    pub images: Vec<(String, Vec<u8>)>,
    /// The counts this pack made, by the hash of the text counted (see
    /// [`pack_counted`]).
    pub fresh_counts: Vec<(String, u32)>,
}

#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error(
        "a budget of {budget} tokens cannot hold even the pack's head and the list of what is left out \
         ({needed} tokens with every document left out); give a larger --budget"
    )]
    BudgetTooSmall { budget: u64, needed: u64 },
}

/// Gives the stored image bytes of a document's page (1 for an image file).
pub type ImageLoader<'a> = dyn FnMut(&StoredDocument, u32) -> Option<Vec<u8>> + 'a;

/// Counts kept from earlier packs: given the hashes of rendered texts,
/// their counts with the pack's tokenizer where known.
pub type KnownCounts<'a> = dyn Fn(&[String]) -> Vec<Option<u32>> + 'a;

/// Lays out `docs` as one output.
pub fn pack(
    docs: Vec<StoredDocument>,
    salt: &str,
    tokenizer: &dyn Tokenizer,
    options: &PackOptions,
    load_image: &mut ImageLoader<'_>,
) -> Result<Pack, PackError> {
    pack_counted(docs, salt, tokenizer, options, load_image, &|h| vec![None; h.len()])
}

/// [`pack`], with the counts of documents rendered as before taken from
/// `known` instead of counted again; the counts it made are in
/// [`Pack::fresh_counts`], to keep for the next time.
pub fn pack_counted(
    mut docs: Vec<StoredDocument>,
    salt: &str,
    tokenizer: &dyn Tokenizer,
    options: &PackOptions,
    load_image: &mut ImageLoader<'_>,
    known: &KnownCounts<'_>,
) -> Result<Pack, PackError> {
    let format = options.format;
    let mut fresh_counts = Vec::new();
    order_documents(&mut docs);
    let scores = scores(&docs);
    let mut images = Vec::new();
    let items: Vec<Item<'_>> = docs
        .iter()
        .map(|doc| {
            let pieces = document_pieces(doc);
            let placed = match (&options.images, format) {
                (Some(folder), Format::Markdown) => place_images(doc, &pieces, folder, &mut images, load_image),
                _ => Vec::new(),
            };
            Item {
                doc,
                pieces,
                images: placed,
            }
        })
        .collect();
    let whole: Vec<String> = items.iter().map(|i| render::whole(format, i, salt)).collect();
    // Outlines stand in for documents only to fit a budget.
    let outlines: Vec<Option<String>> = match options.budget {
        Some(_) => docs.iter().map(|d| render::outline(format, d, salt)).collect(),
        None => vec![None; docs.len()],
    };
    let whole_texts: Vec<&str> = whole.iter().map(String::as_str).collect();
    let whole_tokens = count_known(&whole_texts, tokenizer, known, &mut fresh_counts);
    let outline_texts: Vec<&str> = outlines.iter().flatten().map(String::as_str).collect();
    let mut outline_counts = count_known(&outline_texts, tokenizer, known, &mut fresh_counts).into_iter();
    let outline_tokens: Vec<Option<u64>> = outlines
        .iter()
        .map(|o| o.as_ref().and_then(|_| outline_counts.next()))
        .collect();
    let mut forms = vec![Form::Whole; docs.len()];
    let mut listed = usize::MAX;
    // The list of what is left out takes about an eighth of a budget at
    // most (some 16 tokens a line): past that, folders are named in place
    // of their files, deepest first.
    let max_lines = options.budget.map_or(usize::MAX, |b| (b / 8 / 16).max(1) as usize);
    let assemble = |forms: &[Form], listed: usize| {
        assemble(
            format,
            options,
            salt,
            tokenizer,
            &docs,
            (&whole, &outlines),
            (&whole_tokens, &outline_tokens),
            (listed, max_lines),
            forms,
        )
    };
    let mut text = assemble(&forms, listed);
    let mut tokens = text.tokens(tokenizer);
    if let Some(budget) = options.budget.filter(|&b| tokens > b) {
        // Each form's cost with its line in the contents; a document left
        // out costs little (the list names whole folders where it can).
        let toc = |form: Form| -> Vec<u64> {
            let lines: Vec<String> = docs
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    let t = if form == Form::Outline {
                        outline_tokens[i].unwrap_or(0)
                    } else {
                        whole_tokens[i]
                    };
                    render::toc_line(format, d, form, t)
                })
                .collect();
            count_all(&lines.iter().map(String::as_str).collect::<Vec<_>>(), tokenizer)
        };
        let (toc_whole, toc_outline) = (toc(Form::Whole), toc(Form::Outline));
        let cost = |i: usize, form: Form| match form {
            Form::Whole => whole_tokens[i] + toc_whole[i],
            Form::Outline => outline_tokens[i].map_or(u64::MAX, |t| t + toc_outline[i]),
            Form::LeftOut => 0,
        };
        // Most important first: whole while it fits (and takes no more
        // than its share), else its outline while that fits, else out.
        let mut order: Vec<usize> = (0..docs.len()).collect();
        order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
        forms.fill(Form::LeftOut);
        let floor = assemble(&forms, listed).tokens(tokenizer);
        let mut room = budget.saturating_sub(floor);
        let most = (budget / WHOLE_SHARE).max(WHOLE_FLOOR);
        for &i in &order {
            for form in [Form::Whole, Form::Outline] {
                if cost(i, form) <= room && (form == Form::Outline || whole_tokens[i] <= most) {
                    room -= cost(i, form);
                    forms[i] = form;
                    break;
                }
            }
        }
        text = assemble(&forms, listed);
        tokens = text.tokens(tokenizer);
        // The estimate is close, not exact (tokens across the joins, a
        // longer list of what is left out): take the least important
        // still in one step down until the whole output fits.
        while tokens > budget {
            let mut over = tokens - budget;
            let mut changed = false;
            for &i in order.iter().rev() {
                if over == 0 {
                    break;
                }
                let next = match forms[i] {
                    Form::Whole if cost(i, Form::Outline) < cost(i, Form::Whole) => Form::Outline,
                    Form::Whole | Form::Outline => Form::LeftOut,
                    Form::LeftOut => continue,
                };
                over = over.saturating_sub(cost(i, forms[i]).saturating_sub(cost(i, next)).max(1));
                forms[i] = next;
                changed = true;
            }
            if !changed {
                // Every document is out: name fewer of them (the list is
                // in path order; the last named go first).
                let groups = left_out_groups(&docs, &forms, &whole_tokens, max_lines);
                listed = listed.min(groups.len());
                let mut saved = 0;
                let before = listed;
                while listed > 0 && saved < over {
                    listed -= 1;
                    saved += u64::from(tokenizer.count_tokens(&render::left_out_line(format, &groups[listed])));
                }
                if listed == before {
                    return Err(PackError::BudgetTooSmall { budget, needed: tokens });
                }
            }
            text = assemble(&forms, listed);
            tokens = text.tokens(tokenizer);
        }
    }
    let groups = left_out_groups(&docs, &forms, &whole_tokens, max_lines);
    let unlisted: Vec<String> = groups.iter().skip(listed).map(|g| g.label.clone()).collect();
    let documents = docs
        .iter()
        .enumerate()
        .map(|(i, d)| Placed {
            path: d.path.clone(),
            form: forms[i],
            tokens: match forms[i] {
                Form::Outline => outline_tokens[i].unwrap_or(0),
                _ => whole_tokens[i],
            },
            score: scores[i],
        })
        .collect();
    // Only the images of documents kept whole are linked.
    let linked: std::collections::HashSet<&str> = items
        .iter()
        .zip(&forms)
        .filter(|(_, f)| **f == Form::Whole)
        .flat_map(|(item, _)| item.images.iter().map(|(_, file, _)| file.as_str()))
        .collect();
    let folder = options.images.as_deref().unwrap_or("");
    images.retain(|(name, _): &(String, Vec<u8>)| linked.contains(format!("{folder}/{name}").as_str()));
    Ok(Pack {
        text: text.text,
        tokens,
        documents,
        unlisted,
        images,
        fresh_counts,
    })
}

/// The whole output for these forms, naming the first `listed` of the
/// documents left out.
#[allow(clippy::too_many_arguments)]
fn assemble(
    format: Format,
    options: &PackOptions,
    salt: &str,
    tokenizer: &dyn Tokenizer,
    docs: &[StoredDocument],
    (whole, outlines): (&[String], &[Option<String>]),
    (whole_tokens, outline_tokens): (&[u64], &[Option<u64>]),
    (listed, max_lines): (usize, usize),
    forms: &[Form],
) -> Assembled {
    let kept_tokens = |i: usize| match forms[i] {
        Form::Outline => outline_tokens[i].unwrap_or(0),
        _ => whole_tokens[i],
    };
    let count = |form: Form| forms.iter().filter(|f| **f == form).count();
    let meta = render::Meta {
        sources: &options.sources,
        tokenizer: tokenizer.tokenizer_id(),
        salt,
        budget: options.budget,
        whole: count(Form::Whole),
        outlined: count(Form::Outline),
        left_out: count(Form::LeftOut),
        document_tokens: (0..docs.len())
            .filter(|&i| forms[i] != Form::LeftOut)
            .map(kept_tokens)
            .sum(),
    };
    let mut out = render::head(format, &meta);
    let kept: Vec<usize> = (0..docs.len()).filter(|&i| forms[i] != Form::LeftOut).collect();
    let toc_lines: String = kept
        .iter()
        .map(|&i| render::toc_line(format, &docs[i], forms[i], kept_tokens(i)))
        .collect();
    let toc_entries: Vec<(String, String, u32)> = kept
        .iter()
        .map(|&i| {
            let extent = extent_attribute(&docs[i]);
            let extent = if forms[i] == Form::Outline {
                format!("{extent}, outline")
            } else {
                extent
            };
            (docs[i].path.clone(), extent, kept_tokens(i) as u32)
        })
        .collect();
    let toc = render::toc(format, &toc_lines, &toc_entries, salt);
    if format != Format::Plain {
        out.push_str(&toc);
    }
    let mut known = Vec::with_capacity(kept.len());
    for (n, &i) in kept.iter().enumerate() {
        if n > 0 {
            out.push_str(render::separator(format));
        }
        let start = out.len();
        match forms[i] {
            Form::Outline => out.push_str(outlines[i].as_deref().unwrap_or_default()),
            _ => out.push_str(&whole[i]),
        }
        known.push((start..out.len(), kept_tokens(i)));
    }
    out.push_str(render::documents_end(format));
    if format == Format::Plain {
        out.push_str("\n\n");
        out.push_str(&toc);
    }
    let groups = left_out_groups(docs, forms, whole_tokens, max_lines);
    if !groups.is_empty() {
        let lines: Vec<String> = groups
            .iter()
            .take(listed)
            .map(|g| render::left_out_line(format, g))
            .collect();
        out.push_str(&render::left_out(format, &lines, groups.len() - lines.len(), salt));
    }
    if let Some(d) = &options.diff {
        out.push_str(&render::diff(format, d, salt));
    }
    out.push_str(render::end(format));
    Assembled { text: out, known }
}

/// An output, with the places of the documents in it whose counts are
/// known.
struct Assembled {
    text: String,
    known: Vec<(std::ops::Range<usize>, u64)>,
}

impl Assembled {
    /// The output's exact count. Where the tokenizer's counts add up at line
    /// starts, a document that begins and ends at one counts as already
    /// counted and only the rest (heading, contents, joins) is counted;
    /// otherwise the whole text is.
    fn tokens(&self, tokenizer: &dyn Tokenizer) -> u64 {
        if !tokenizer.counts_add_at_line_starts() {
            return u64::from(tokenizer.count_tokens(&self.text));
        }
        let bytes = self.text.as_bytes();
        let (mut rest, mut counted, mut from) = (String::new(), 0, 0);
        for (range, tokens) in &self.known {
            if encoding::is_line_start(bytes, range.start) && encoding::is_line_start(bytes, range.end) {
                rest.push_str(&self.text[from..range.start]);
                counted += tokens;
                from = range.end;
            }
        }
        // The pieces of the rest begin and end at line starts too, so
        // they join into one text whose count is their sum.
        rest.push_str(&self.text[from..]);
        counted + u64::from(tokenizer.count_tokens(&rest))
    }
}

/// Puts a document's images where they stand: an image file before its
/// text, a scanned page's image before that page. Returns (piece, link,
/// label) and adds the files to `images`.
fn place_images(
    doc: &StoredDocument,
    pieces: &[(crate::anchor::Anchor, String)],
    folder: &str,
    images: &mut Vec<(String, Vec<u8>)>,
    load: &mut ImageLoader<'_>,
) -> Vec<(usize, String, String)> {
    let pages: Vec<(u32, usize)> = match doc.kind {
        DocumentKind::Image => vec![(1, 0)],
        DocumentKind::Pdf => {
            let mut seen = Vec::new();
            for (i, (anchor, _)) in pieces.iter().enumerate() {
                if let Some(p) = anchor.page() {
                    if !seen.iter().any(|(q, _)| *q == p) {
                        seen.push((p, i));
                    }
                }
            }
            seen
        }
        DocumentKind::Text | DocumentKind::Code => return Vec::new(),
    };
    let mut placed = Vec::new();
    for (page, at) in pages {
        let Some(bytes) = load(doc, page) else { continue };
        let Ok(kind) = image::guess_format(&bytes) else {
            continue;
        };
        let ext = kind.extensions_str().first().copied().unwrap_or("img");
        let stem: String = doc
            .path
            .rsplit('/')
            .next()
            .unwrap_or("image")
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' })
            .take(60)
            .collect();
        let name = format!("{:04}-{stem}-p{page}.{ext}", images.len() + 1);
        let label = match doc.kind {
            DocumentKind::Image => doc.path.clone(),
            _ => format!("{}#page={page}", doc.path),
        };
        placed.push((at, format!("{folder}/{name}"), label));
        images.push((name, bytes));
    }
    placed
}

/// Token counts of `texts`: those `known` has (by the hash of the text),
/// the others counted and added to `fresh`.
fn count_known(
    texts: &[&str],
    tokenizer: &dyn Tokenizer,
    known: &KnownCounts<'_>,
    fresh: &mut Vec<(String, u32)>,
) -> Vec<u64> {
    let hashes: Vec<String> = texts
        .iter()
        .map(|t| blake3::hash(t.as_bytes()).to_hex().to_string())
        .collect();
    let mut counts = known(&hashes);
    if counts.len() != texts.len() {
        counts = vec![None; texts.len()];
    }
    let missing: Vec<usize> = (0..texts.len()).filter(|&i| counts[i].is_none()).collect();
    let missing_texts: Vec<&str> = missing.iter().map(|&i| texts[i]).collect();
    for (&i, n) in missing.iter().zip(count_all(&missing_texts, tokenizer)) {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        counts[i] = Some(n);
        fresh.push((hashes[i].clone(), n));
    }
    counts.into_iter().map(|c| u64::from(c.unwrap_or(0))).collect()
}

/// Token counts of many texts, on every core.
fn count_all(texts: &[&str], tokenizer: &dyn Tokenizer) -> Vec<u64> {
    on_every_core(texts, &|t| u64::from(tokenizer.count_tokens(t)))
}

/// `count` of each of `texts`, in their order, the texts shared out among
/// the cores in runs.
fn on_every_core(texts: &[&str], count: &(dyn Fn(&str) -> u64 + Sync)) -> Vec<u64> {
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let chunk = texts.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = texts
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(|t| count(t)).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("counting tokens panicked"))
            .collect()
    })
}

#[cfg(test)]
mod tests;
