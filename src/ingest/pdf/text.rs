//! Page text: `pdf_oxide` first, pdf-extract for what `pdf_oxide` cannot read.
//!
//! `pdf_oxide` reads each page on its own, in reading order (columns one after
//! the other), with encryption (RC4 40/128, AES 128/256) and predefined CJK
//! character maps. A page where it detects a table is written as Markdown, the table
//! as a Markdown table. pdf-extract, which reads the whole document at once, is
//! the fallback: for a document `pdf_oxide` cannot open or count the pages of,
//! and for a page `pdf_oxide` errs or panics on or finds next to no text on,
//! where pdf-extract finds more. Both run under `catch_unwind`: a panic in
//! either is a fact about this file, never the end of the run.

use std::panic::{catch_unwind, AssertUnwindSafe};

use pdf_oxide::converters::ConversionOptions;
use pdf_oxide::document::PdfDocument;

/// The environment variable that holds the password of encrypted PDFs that
/// an empty password does not open. An environment variable, never an
/// argument: arguments show in `ps`.
pub const PASSWORD_VAR: &str = "SCOUT_PDF_PASSWORD";

/// Why no text came out of a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextFailure {
    /// Encrypted, and neither the empty password nor the one given opens it.
    Locked(String),
    /// Neither extractor could read it.
    Unreadable(String),
    /// Neither extractor could read it, and one of them panicked.
    Panicked(String),
}

/// What pdf-extract, the fallback, needs of a document: `safe` says
/// whether it can read the document without overflowing its stack (`Err`:
/// why not; pdf-extract is not run then), asked only when pdf-extract is
/// about to run; `doc` gives the document as lopdf loaded it, if it could,
/// loading it when first asked.
pub struct FallbackChecks<'a> {
    pub safe: &'a dyn Fn() -> Result<(), String>,
    pub doc: &'a dyn Fn() -> Option<&'a lopdf::Document>,
}

/// The text of a document's pages, and whether it may have structure for
/// lopdf to read: an outline or a title (as `pdf_oxide` reads the catalog
/// and the trailer), or unknown because `pdf_oxide` could not read it.
pub struct PageTexts {
    pub pages: Vec<String>,
    pub structured: bool,
}

/// The text of every page of the PDF in `bytes`, in page order. A page
/// with fewer than `thin` visible characters from `pdf_oxide` is offered to
/// pdf-extract too, where the page's strings could hold more visible
/// glyphs than `pdf_oxide` found and `checks.safe` passes the document. The checks run only when pdf-extract
/// is needed: `pdf_oxide` bounds its own recursion, and on most documents
/// it reads every page.
pub fn page_texts(
    bytes: &[u8],
    password: Option<&str>,
    thin: usize,
    checks: &FallbackChecks<'_>,
) -> Result<PageTexts, TextFailure> {
    let mut fallback = Fallback::new(bytes, password, checks);
    let pages = oxide_page_texts(bytes, password, thin, &mut fallback)?;
    Ok(pages.unwrap_or_else(|pages| PageTexts {
        pages,
        structured: true,
    }))
}

/// [`page_texts`] by `pdf_oxide`, page by page (`Ok(Ok)`), or by
/// pdf-extract over the whole document where `pdf_oxide` cannot read it
/// (`Ok(Err)`).
fn oxide_page_texts(
    bytes: &[u8],
    password: Option<&str>,
    thin: usize,
    fallback: &mut Fallback<'_, '_>,
) -> Result<Result<PageTexts, Vec<String>>, TextFailure> {
    let doc = match catch_unwind(AssertUnwindSafe(|| PdfDocument::from_bytes(bytes.to_vec()))) {
        Ok(Ok(doc)) => doc,
        Ok(Err(e)) => return fallback.whole(&format!("pdf_oxide: {e}"), false).map(Err),
        Err(panic) => return fallback.whole(&oxide_panic(panic.as_ref()), true).map(Err),
    };
    if doc.is_encrypted() {
        unlock(&doc, password)?;
    }
    if let Err(why) = check_oxide_page_tree(&doc) {
        // Not a tree as pdf_oxide reads it: pdf-extract's reading (behind
        // lopdf's own page-tree check) or a typed failure, never the walk.
        return fallback.whole(&why, false).map(Err);
    }
    let count = match catch_unwind(AssertUnwindSafe(|| doc.page_count())) {
        Ok(Ok(n)) if n > 0 => n,
        Ok(Ok(_)) => return fallback.whole("pdf_oxide found no pages", false).map(Err),
        // Encrypted, though the trailer pdf_oxide read first did not say so.
        Ok(Err(pdf_oxide::error::Error::EncryptedPdf)) => {
            return fallback
                .whole("pdf_oxide: encrypted", false)
                .map(Err)
                .map_err(|_| TextFailure::Locked(locked_message(password)));
        }
        Ok(Err(e)) => return fallback.whole(&format!("pdf_oxide: {e}"), false).map(Err),
        Err(panic) => return fallback.whole(&oxide_panic(panic.as_ref()), true).map(Err),
    };
    let mut pages = Vec::with_capacity(count);
    for index in 0..count {
        // A page pdf_oxide errs or panics on is left to pdf-extract below;
        // where that finds nothing either, it is a text-less page, counted
        // as a blank or scanned page by the caller.
        let text = match catch_unwind(AssertUnwindSafe(|| page_text(&doc, index))) {
            Ok(Ok(text)) => text,
            Ok(Err(e)) => {
                tracing::warn!("pdf_oxide could not read page {}: {e}", index + 1);
                String::new()
            }
            Err(panic) => {
                tracing::warn!("page {}: {}", index + 1, oxide_panic(panic.as_ref()));
                String::new()
            }
        };
        let text = if visible(&text) < thin && fallback.may_find_more(index, count, visible(&text)) {
            match fallback.page(index, count) {
                Some(other) if visible(&other) > visible(&text) => other,
                _ => text,
            }
        } else {
            text
        };
        pages.push(text);
    }
    Ok(Ok(PageTexts {
        pages,
        structured: outline_or_title(&doc),
    }))
}

/// Whether the catalog names an outline or the trailer's /Info a title;
/// where either cannot be read, it may.
fn outline_or_title(doc: &PdfDocument) -> bool {
    use pdf_oxide::object::Object;
    let has = |object: &Object, key: &str| object.as_dict().is_none_or(|d| d.contains_key(key));
    let outline = doc.catalog().map_or(true, |catalog| has(&catalog, "Outlines"));
    let title = match doc.trailer().as_dict().and_then(|t| t.get("Info")) {
        None => false,
        Some(Object::Reference(info)) => doc.load_object(*info).map_or(true, |info| has(&info, "Title")),
        Some(info) => has(info, "Title"),
    };
    outline || title
}

/// One page's text; a page with a table `pdf_oxide` takes for a real grid is
/// written as Markdown, so the table stays a table.
fn page_text(doc: &PdfDocument, index: usize) -> pdf_oxide::error::Result<String> {
    let text = doc.extract_text(index)?;
    if !may_hold_a_table(&text) {
        return Ok(text);
    }
    let grids = doc
        .extract_tables(index)
        .map(|t| t.iter().any(pdf_oxide::structure::Table::is_real_grid));
    if !matches!(grids, Ok(true)) {
        return Ok(text);
    }
    let options = ConversionOptions {
        extract_tables: true,
        ..ConversionOptions::default()
    };
    match doc.to_markdown(index, &options) {
        Ok(markdown) if markdown.lines().any(is_table_rule) && keeps_words(&markdown, &text) => Ok(markdown),
        _ => Ok(text),
    }
}

/// Share of the plain text's words a Markdown rendering of the page must
/// keep.
const KEPT_WORDS: f64 = 0.95;

/// Share of a Markdown rendering's table words that may come again
/// outside its tables.
const REPEATED_TABLE_WORDS: f64 = 0.5;

/// Words of Markdown text, give or take its marks, counted.
fn markdown_words<'a>(lines: impl Iterator<Item = &'a str>) -> std::collections::HashMap<String, usize> {
    let mut counts = std::collections::HashMap::new();
    for line in lines.filter(|l| !is_table_rule(l)) {
        let line: String = line
            .chars()
            .map(|c| if matches!(c, '|' | '*' | '#' | '\\') { ' ' } else { c })
            .collect();
        for w in line.split_whitespace() {
            *counts.entry(w.to_owned()).or_insert(0) += 1;
        }
    }
    counts
}

/// How many of `want`'s words `have` holds, counted with repeats.
fn shared_words(
    want: &std::collections::HashMap<String, usize>,
    have: &std::collections::HashMap<String, usize>,
) -> usize {
    want.iter()
        .map(|(w, n)| (*n).min(have.get(w).copied().unwrap_or(0)))
        .sum()
}

/// Whether the Markdown rendering of a page says what its plain text says,
/// once. It must keep the plain text's words, give or take the Markdown
/// marks (it may hold more: the Markdown path finds text the plain one drops
/// on some pages). A grid that is no real table (a drawing's title block, a
/// form) comes out of the table detection with cells run together
/// (`DATED:<Drawn` for `DATED:` and `<Drawn`) or words cut in two; and a
/// rendering may give a table and then its text again as a paragraph. Such
/// a page keeps its plain text.
fn keeps_words(markdown: &str, text: &str) -> bool {
    let in_table = |l: &&str| l.trim_start().starts_with('|');
    let table = markdown_words(markdown.lines().filter(in_table));
    let rest = markdown_words(markdown.lines().filter(|l| !in_table(l)));
    let mut all = rest.clone();
    for (w, n) in &table {
        *all.entry(w.clone()).or_insert(0) += n;
    }
    let plain = markdown_words(text.lines());
    let total = plain.values().sum::<usize>().max(1) as f64;
    if (shared_words(&plain, &all) as f64) / total < KEPT_WORDS {
        return false;
    }
    let table_total = table.values().sum::<usize>().max(1) as f64;
    let repeated = shared_words(&table, &rest) as f64 / table_total;
    repeated < REPEATED_TABLE_WORDS
}

/// Whether a page's plain text has room for a table: two rows of two
/// cells at least. The table detection it guards is not cheap.
fn may_hold_a_table(text: &str) -> bool {
    text.lines()
        .filter(|line| line.split_whitespace().nth(1).is_some())
        .nth(1)
        .is_some()
}

/// A Markdown table's rule under its header: `|---|---|`.
fn is_table_rule(line: &str) -> bool {
    let line = line.trim();
    line.starts_with('|') && line.contains("---") && line.chars().all(|c| matches!(c, '|' | '-' | ':' | ' '))
}

/// Intermediate nodes of a page tree past this many: refused.
const MAX_PAGE_TREE_NODES: usize = 1 << 20;

/// Whether a page tree (as `pdf_oxide` reads it, with its rebuilt
/// cross-reference table) reaches a node of kids twice; such a document is
/// left to pdf-extract. `pdf_oxide`
/// counts pages by walking the tree to a depth of 50 without remembering
/// where it has been: a node listed twice among its own kids made that walk
/// take 2^50 steps (the fuzzer's find, `fuzz/seeds/pdf/kids-twice.pdf`).
/// lopdf's check in `checks` cannot see this when lopdf cannot load the file.
fn check_oxide_page_tree(doc: &PdfDocument) -> Result<(), String> {
    let Some(root) = doc.catalog().ok().and_then(|c| {
        c.as_dict()
            .and_then(|d| d.get("Pages"))
            .and_then(pdf_oxide::object::Object::as_reference)
    }) else {
        return Ok(());
    };
    let mut seen = std::collections::HashSet::new();
    // Nodes whose /Parent chain is known to end.
    let mut rooted = std::collections::HashSet::new();
    let mut stack = vec![root];
    while let Some(node) = stack.pop() {
        let Ok(object) = doc.load_object(node) else { continue };
        check_parent_chain(doc, node, &object, &mut rooted)?;
        let Some(kids) = object.as_dict().and_then(|d| d.get("Kids")).and_then(|k| k.as_array()) else {
            continue; // a page, or a node without kids
        };
        if !seen.insert(node) {
            return Err(format!(
                "cyclic page tree: the node of kids {} {} R is reached twice",
                node.id, node.gen
            ));
        }
        if seen.len() > MAX_PAGE_TREE_NODES {
            return Err(format!("page tree of more than {MAX_PAGE_TREE_NODES} nodes"));
        }
        stack.extend(kids.iter().filter_map(pdf_oxide::object::Object::as_reference));
    }
    Ok(())
}

/// Refuses a node whose /Parent chain comes back to itself: parsers walk
/// that chain for inherited attributes. `rooted` holds the nodes whose
/// chain is known to end, so each node is walked once.
fn check_parent_chain(
    doc: &PdfDocument,
    node: pdf_oxide::object::ObjectRef,
    object: &pdf_oxide::object::Object,
    rooted: &mut std::collections::HashSet<pdf_oxide::object::ObjectRef>,
) -> Result<(), String> {
    let parent_of = |o: &pdf_oxide::object::Object| {
        o.as_dict()
            .and_then(|d| d.get("Parent"))
            .and_then(pdf_oxide::object::Object::as_reference)
    };
    let mut chain = std::collections::HashSet::from([node]);
    let mut next = parent_of(object);
    while let Some(parent) = next {
        if rooted.contains(&parent) {
            break;
        }
        if !chain.insert(parent) || chain.len() > MAX_PAGE_TREE_NODES {
            return Err(format!(
                "cyclic page tree: the /Parent chain of object {} {} R loops at object {} {} R",
                node.id, node.gen, parent.id, parent.gen
            ));
        }
        next = doc.load_object(parent).ok().as_ref().and_then(parent_of);
    }
    rooted.extend(chain);
    Ok(())
}

/// Opens an encrypted document: `pdf_oxide` has tried the empty password
/// already; where that did not open it, the password given is tried. The
/// password applies to the files that need one, so one run can read those
/// and the files an empty password opens alike.
fn unlock(doc: &PdfDocument, password: Option<&str>) -> Result<(), TextFailure> {
    if doc.is_authenticated() {
        return Ok(());
    }
    let Some(password) = password else {
        return Err(TextFailure::Locked(locked_message(None)));
    };
    match doc.authenticate(password.as_bytes()) {
        Ok(true) => Ok(()),
        Ok(false) => Err(TextFailure::Locked(locked_message(Some(password)))),
        Err(e) => Err(TextFailure::Locked(format!(
            "encrypted PDF that scout cannot decrypt: {e}"
        ))),
    }
}

/// How a `pdf_oxide` panic is reported.
fn oxide_panic(panic: &(dyn std::any::Any + Send)) -> String {
    format!("pdf_oxide panicked: {}", crate::panic_message(panic))
}

/// What a locked document needs, given the password tried (if any).
fn locked_message(password: Option<&str>) -> String {
    if password.is_some() {
        format!("encrypted PDF: the password in {PASSWORD_VAR} does not open it")
    } else {
        format!("encrypted PDF that needs a password (the empty one does not open it); set {PASSWORD_VAR} to it")
    }
}

/// Non-whitespace characters.
pub(super) fn visible(text: &str) -> usize {
    text.chars().filter(|c| !c.is_whitespace()).count()
}

/// Why pdf-extract gave no pages, and whether it panicked.
pub(super) struct FallbackFailure {
    detail: String,
    panicked: bool,
}

/// pdf-extract, run only when first needed and only on a document
/// `checks.safe` passes: page by page over the document lopdf has loaded
/// (when it is not encrypted), else over the whole document at once.
pub(super) struct Fallback<'a, 'c> {
    bytes: &'a [u8],
    password: Option<&'a str>,
    checks: &'a FallbackChecks<'c>,
    safe: Option<Result<(), String>>,
    /// lopdf's pages by number, read when first needed.
    page_ids: std::cell::OnceCell<std::collections::BTreeMap<u32, lopdf::ObjectId>>,
    pub(super) pages: Option<Result<Vec<String>, FallbackFailure>>,
}

impl<'a, 'c> Fallback<'a, 'c> {
    pub(super) fn new(bytes: &'a [u8], password: Option<&'a str>, checks: &'a FallbackChecks<'c>) -> Self {
        Self {
            bytes,
            password,
            checks,
            safe: None,
            page_ids: std::cell::OnceCell::new(),
            pages: None,
        }
    }

    /// Page `index` of `count` as lopdf reads it, where lopdf loaded the
    /// document and finds as many pages.
    fn lopdf_page(&self, index: usize, count: usize) -> Option<(&'c lopdf::Document, lopdf::ObjectId)> {
        let doc = (self.checks.doc)()?;
        let ids = self.page_ids.get_or_init(|| doc.get_pages());
        if ids.len() != count {
            return None;
        }
        Some((doc, *ids.get(&(index as u32 + 1))?))
    }

    /// Whether pdf-extract could find more than `found` visible characters
    /// on page `index` of `count`: unknown where lopdf cannot read the page,
    /// else whether its strings hold more visible glyphs than that.
    fn may_find_more(&self, index: usize, count: usize, found: usize) -> bool {
        self.lopdf_page(index, count)
            .and_then(|(doc, id)| super::shown::page_glyphs(doc, id))
            .is_none_or(|glyphs| glyphs > found)
    }

    /// Whether pdf-extract may read the document (asked once).
    fn safe(&mut self) -> Result<(), String> {
        let checks = self.checks;
        self.safe.get_or_insert_with(|| (checks.safe)()).clone()
    }

    /// The whole document by pdf-extract, read once.
    fn run(&mut self) -> &Result<Vec<String>, FallbackFailure> {
        let safe = if self.pages.is_none() { self.safe() } else { Ok(()) };
        let (bytes, password) = (self.bytes, self.password);
        self.pages.get_or_insert_with(|| {
            if let Err(detail) = safe {
                return Err(FallbackFailure {
                    detail,
                    panicked: false,
                });
            }
            let attempt = |password: Option<&str>| {
                catch_unwind(AssertUnwindSafe(|| match password {
                    Some(p) => pdf_extract::extract_text_from_mem_by_pages_encrypted(bytes, p),
                    None => pdf_extract::extract_text_from_mem_by_pages(bytes),
                }))
            };
            let outcome = match password {
                Some(p) => match attempt(Some(p)) {
                    Ok(Ok(pages)) => Ok(Ok(pages)),
                    _ => attempt(None),
                },
                None => attempt(None),
            };
            match outcome {
                Ok(Ok(pages)) => Ok(pages),
                Ok(Err(e)) => Err(FallbackFailure {
                    detail: format!("pdf-extract: {e}"),
                    panicked: false,
                }),
                Err(panic) => Err(FallbackFailure {
                    detail: format!("pdf-extract panicked: {}", crate::panic_message(panic.as_ref())),
                    panicked: true,
                }),
            }
        })
    }

    /// Page `index` of `count` by pdf-extract, where it sees as many pages:
    /// read alone from lopdf's parse where lopdf has one (unencrypted), else
    /// from pdf-extract's reading of the whole document. A parse whose page
    /// count differs gives nothing: pdf-extract's own reading would see
    /// the same pages.
    pub(super) fn page(&mut self, index: usize, count: usize) -> Option<String> {
        if (self.checks.doc)().is_some_and(|doc| !doc.is_encrypted()) {
            let (doc, id) = self.lopdf_page(index, count)?;
            self.safe().ok()?;
            // pdf-extract reads one page of the document lopdf has loaded:
            // neither a second parse nor the pages pdf_oxide read well.
            let read = catch_unwind(AssertUnwindSafe(|| {
                let mut text = String::new();
                let mut output = pdf_extract::PlainTextOutput::new(&mut text);
                pdf_extract::output_doc_page(doc, &mut output, index as u32 + 1).map(|()| text)
            }));
            return match read {
                Ok(Ok(text)) => Some(text),
                Ok(Err(e)) => {
                    tracing::debug!(
                        "pdf-extract could not read page {} ({} {} R): {e}",
                        index + 1,
                        id.0,
                        id.1
                    );
                    None
                }
                // The worker's panic hook has said it in one line.
                Err(panic) => {
                    tracing::debug!(
                        "page {}: pdf-extract panicked: {}",
                        index + 1,
                        crate::panic_message(panic.as_ref())
                    );
                    None
                }
            };
        }
        match self.run() {
            Ok(pages) if pages.len() == count => pages.get(index).cloned(),
            _ => None,
        }
    }

    /// The whole document by pdf-extract, after `pdf_oxide` failed as `why`
    /// (`oxide_panicked`: by panicking).
    fn whole(&mut self, why: &str, oxide_panicked: bool) -> Result<Vec<String>, TextFailure> {
        match self.run() {
            // Pages without text are still pages: scans, for OCR.
            Ok(pages) if !pages.is_empty() => Ok(pages.clone()),
            Ok(_) => Err(TextFailure::Unreadable(format!(
                "{why}; pdf-extract found no pages either"
            ))),
            Err(e) if e.panicked || oxide_panicked => Err(TextFailure::Panicked(format!("{why}; {}", e.detail))),
            Err(e) => Err(TextFailure::Unreadable(format!("{why}; {}", e.detail))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::keeps_words;

    #[test]
    fn a_table_is_kept_only_when_it_keeps_the_pages_words_once() {
        let plain = "Item Quantity Price\nWidget 4 2.50\nBearing 3 9.10\n";
        let table = "| Item | Quantity | Price |\n|---|---|---|\n| Widget | 4 | 2.50 |\n| Bearing | 3 | 9.10 |\n";
        assert!(keeps_words(table, plain));
        // More than the plain text found is fine (the Markdown path reads
        // some text the plain one drops).
        assert!(keeps_words(&format!("## WhitePoint [ 1.0 ]\n\n{table}"), plain));
        // A title block read as a grid runs cells together.
        let plain = "DATED:\n<Drawn By>\nDATED:\n<Checked By>\nDRAWING NO:\nPCB\n";
        let glued = "| DATED:<Drawn By> | DRAWING NO:PCB |\n|---|---|\n| DATED:<Checked By> | |\n";
        assert!(!keeps_words(glued, plain));
        // A table, then its text again as a paragraph (pdf.js's
        // issue2074.pdf); prose after a table may share a few of its words.
        let plain = "German Ae: \u{c4}\nGerman Oe: \u{d6}\nPowered by TCPDF\n";
        let twice = "| German | Ae: \u{c4} |\n|---|---|\n| German | Oe: \u{d6} |\n| Powered by TCPDF | |\n\n\
                     German Ae: \u{c4} German Oe: \u{d6}\n";
        assert!(!keeps_words(twice, plain));
        let plain = "Item Quantity Price\nWidget 4 2.50\nBearing 3 9.10\nEach Widget ships in 4 days\n";
        let after = format!("{table}\nEach Widget ships in 4 days\n");
        assert!(keeps_words(&after, plain));
    }
}
