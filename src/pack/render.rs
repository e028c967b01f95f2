//! The four formats of `scout pack`, part by part: the head, one entry per
//! document (whole, or its outline), the table of contents, the list of
//! what was left out, the changes since a revision, the end.
//!
//! Markdown and XML show each document as the model reads it (line
//! markers, `[page N]` lines) inside the format's own quoting: a fence
//! longer than any run of backticks in the text, or escaped characters;
//! `plain` is the prompt layout itself, salted boundaries and all; JSON
//! holds each document's text as the corpus holds it, without markers.
//!
//! Never lets a document's text end its own entry early.

use std::fmt::Write as _;

use serde_json::json;

use super::{DiffSection, Form, Format, Left};
use crate::anchor::Anchor;
use crate::corpus::StoredDocument;
use crate::document::DocumentKind;
use crate::prompt::{data_block, extent_attribute, preamble, render_document, table_of_contents};

/// A document ready to render: its pieces (text with markers, one per
/// segment) and the images that stand before some of them.
pub(super) struct Item<'a> {
    pub doc: &'a StoredDocument,
    pub pieces: Vec<(Anchor, String)>,
    /// (piece index, file the Markdown links to, what it shows).
    pub images: Vec<(usize, String, String)>,
}

/// What the head says.
pub(super) struct Meta<'a> {
    pub sources: &'a [String],
    pub tokenizer: &'a str,
    pub salt: &'a str,
    pub budget: Option<u64>,
    pub whole: usize,
    pub outlined: usize,
    pub left_out: usize,
    pub document_tokens: u64,
}

pub(super) fn head(format: Format, m: &Meta<'_>) -> String {
    let budget = m.budget.map(|b| format!(", budget {b}")).unwrap_or_default();
    let summary = format!(
        "{} documents: {} whole, {} as outlines, {} left out; {} tokens of documents ({}{budget})",
        m.whole + m.outlined + m.left_out,
        m.whole,
        m.outlined,
        m.left_out,
        m.document_tokens,
        m.tokenizer
    );
    match format {
        Format::Markdown => {
            let mut s = format!("# {}\n\n", m.sources.join(", "));
            let _ = writeln!(
                s,
                "Packed by scout {}. {summary}. Lines are numbered with markers like [L10]; \
                 cite them as path:line, PDF pages as path#page=N.\n",
                env!("CARGO_PKG_VERSION")
            );
            s
        }
        Format::Xml => format!(
            "<scout version=\"{}\" sources=\"{}\" tokenizer=\"{}\">\n<summary>{}</summary>\n",
            env!("CARGO_PKG_VERSION"),
            xml_escape(&m.sources.join(" ")),
            xml_escape(m.tokenizer),
            xml_escape(&summary)
        ),
        Format::Plain => format!("{}\n\n", preamble(m.salt)),
        Format::Json => {
            let head = json!({
                "format": "scout-pack",
                "scout": env!("CARGO_PKG_VERSION"),
                "sources": m.sources,
                "tokenizer": m.tokenizer,
                "budget": m.budget,
                "summary": summary,
            })
            .to_string();
            // The object stays open: documents follow.
            format!("{},\n\"documents\": [\n", &head[..head.len() - 1])
        }
    }
}

/// Between two entries (JSON's array needs commas).
pub(super) fn separator(format: Format) -> &'static str {
    match format {
        Format::Json => ",\n",
        _ => "",
    }
}

/// A document whole.
pub(super) fn whole(format: Format, item: &Item<'_>, salt: &str) -> String {
    let doc = item.doc;
    match format {
        Format::Markdown => {
            let mut s = format!("### {}\n\n{}\n\n", md_path(&doc.path), md_attributes(doc));
            let body: String = item.pieces.iter().map(|(_, p)| p.as_str()).collect();
            let fence = "`".repeat(longest_run(&body, '`').max(2) + 1);
            let lang = doc.language.as_deref().unwrap_or("text");
            let mut open = false;
            for (i, (_, piece)) in item.pieces.iter().enumerate() {
                for (_, file, label) in item.images.iter().filter(|(at, _, _)| *at == i) {
                    if std::mem::take(&mut open) {
                        let _ = writeln!(s, "{fence}");
                    }
                    let _ = writeln!(s, "![{}]({})\n", md_label(label), file);
                }
                if !open {
                    let _ = writeln!(s, "{fence}{lang}");
                    open = true;
                }
                s.push_str(piece);
            }
            if open {
                let _ = writeln!(s, "{fence}");
            }
            s.push('\n');
            s
        }
        Format::Xml => {
            let mut s = format!("<document {}>\n", xml_attributes(doc));
            for (_, piece) in &item.pieces {
                s.push_str(&xml_escape(piece));
            }
            s.push_str("</document>\n");
            s
        }
        Format::Plain => render_document(doc, salt).render(),
        Format::Json => {
            let mut v = json!({
                "path": doc.path,
                "kind": doc.kind.as_str(),
                "lang": doc.language,
                "extent": extent_attribute(doc),
                "form": "whole",
            });
            if matches!(doc.kind, DocumentKind::Pdf) {
                v["pages"] = doc
                    .segments
                    .iter()
                    .map(|s| json!({"page": s.anchor.page(), "text": s.text}))
                    .collect();
            } else {
                v["text"] = doc.segments.iter().map(|s| s.text.as_str()).collect::<String>().into();
            }
            v.to_string()
        }
    }
}

/// A document as its outline only: its definitions (a PDF's bookmarks)
/// with where each stands. `None` when it has none.
pub(super) fn outline(format: Format, doc: &StoredDocument, salt: &str) -> Option<String> {
    if doc.symbols.is_empty() {
        return None;
    }
    let pdf = matches!(doc.kind, DocumentKind::Pdf);
    let lines: Vec<(String, String)> = doc
        .symbols
        .iter()
        .map(|s| {
            let at = match (pdf, s.start_line == s.end_line) {
                (true, _) => format!("page {}", s.start_line),
                (false, true) => format!("L{}", s.start_line),
                (false, false) => format!("L{}-{}", s.start_line, s.end_line),
            };
            (at, format!("{} {}", s.kind, s.name))
        })
        .collect();
    let note = "the text is left out to fit the budget; its outline:";
    Some(match format {
        Format::Markdown => {
            let mut s = format!(
                "### {} (outline)\n\n{}; {note}\n\n",
                md_path(&doc.path),
                md_attributes(doc)
            );
            for (at, what) in &lines {
                let _ = writeln!(s, "- [{at}] {}", md_label(what));
            }
            s.push('\n');
            s
        }
        Format::Xml => {
            let mut s = format!("<outline {}>\n", xml_attributes(doc));
            for (at, what) in &lines {
                let _ = writeln!(s, "<at lines=\"{at}\">{}</at>", xml_escape(what));
            }
            s.push_str("</outline>\n");
            s
        }
        Format::Plain => {
            let mut body = format!("({}; {note})\n", extent_attribute(doc));
            for (at, what) in &lines {
                let _ = writeln!(body, "[{at}] {what}");
            }
            data_block(&doc.path, &body, salt)
        }
        Format::Json => json!({
            "path": doc.path,
            "kind": doc.kind.as_str(),
            "lang": doc.language,
            "extent": extent_attribute(doc),
            "form": "outline",
            "outline": lines.iter().map(|(at, what)| json!({"at": at, "what": what})).collect::<Vec<_>>(),
        })
        .to_string(),
    })
}

/// One line of the table of contents.
pub(super) fn toc_line(format: Format, doc: &StoredDocument, form: Form, tokens: u64) -> String {
    let extent = extent_attribute(doc);
    let form = match form {
        Form::Outline => ", outline",
        _ => "",
    };
    match format {
        Format::Markdown => format!("- {} ({extent}{form}, {tokens} tokens)\n", md_path(&doc.path)),
        Format::Xml => format!(
            "<file path=\"{}\" {extent} tokens=\"{tokens}\"{}/>\n",
            xml_escape(&doc.path),
            if form.is_empty() { "" } else { " form=\"outline\"" }
        ),
        // The layout's own table; see `toc`.
        Format::Plain | Format::Json => String::new(),
    }
}

/// The table of contents around its lines, for Markdown and XML (placed
/// after the head); the layout's (after the documents) for plain.
pub(super) fn toc(format: Format, lines: &str, entries: &[(String, String, u32)], salt: &str) -> String {
    match format {
        Format::Markdown => format!("## Contents\n\n{lines}\n"),
        Format::Xml => format!("<contents>\n{lines}</contents>\n"),
        Format::Plain => format!("{}\n", table_of_contents(entries, salt)),
        Format::Json => String::new(),
    }
}

/// One line of the list of what is left out: a document, or a folder
/// (`path/`) all or some of whose documents are.
pub(super) fn left_out_line(format: Format, g: &Left) -> String {
    let (label, files, of, tokens) = (&g.label, g.files, g.of, g.tokens);
    let what = match (files, of) {
        (1, 1) => format!("{tokens} tokens"),
        (f, o) if f == o => format!("{f} files, {tokens} tokens"),
        (f, o) => format!("{f} of its {o} files, {tokens} tokens"),
    };
    match format {
        Format::Markdown => format!("- {} ({what})\n", md_path(label)),
        Format::Xml => format!(
            "<left path=\"{}\" files=\"{files}\" of=\"{of}\" tokens=\"{tokens}\"/>\n",
            xml_escape(label)
        ),
        Format::Plain => format!("- {label} ({what})\n"),
        Format::Json => json!({"path": label, "files": files, "of": of, "tokens": tokens}).to_string(),
    }
}

/// The list of documents left out, around its lines; `unlisted` more are
/// left out without a line (the budget has no room for their names).
pub(super) fn left_out(format: Format, lines: &[String], unlisted: usize, salt: &str) -> String {
    let more = (unlisted > 0)
        .then(|| format!("and {unlisted} more files and folders, not listed: the budget has no room for their names"));
    match format {
        Format::Markdown => {
            let mut s = String::from("## Left out to fit the budget\n\n");
            s.push_str(&lines.concat());
            if let Some(m) = more {
                let _ = writeln!(s, "- {m}");
            }
            s.push('\n');
            s
        }
        Format::Xml => {
            let mut s = format!("<left-out unlisted=\"{unlisted}\">\n");
            s.push_str(&lines.concat());
            s.push_str("</left-out>\n");
            s
        }
        Format::Plain => {
            let mut body: String = lines.concat();
            if let Some(m) = more {
                let _ = writeln!(body, "- {m}");
            }
            format!("{}\n", data_block("files left out to fit the budget", &body, salt))
        }
        Format::Json => format!(
            ",\n\"left_out\": [{}],\n\"left_out_unlisted\": {unlisted}",
            lines.join(",\n")
        ),
    }
}

/// The changes since a revision: the changed files, then the patch.
pub(super) fn diff(format: Format, d: &DiffSection, salt: &str) -> String {
    match format {
        Format::Markdown => {
            let mut s = format!("## Changes since {}\n\n", md_label(&d.rev));
            for c in &d.files {
                let _ = writeln!(s, "- {} {}", c.status, md_path(&c.path));
            }
            if d.files.is_empty() {
                s.push_str("No file changed.\n");
            }
            if !d.patch.is_empty() {
                let fence = "`".repeat(longest_run(&d.patch, '`').max(2) + 1);
                let _ = write!(s, "\n{fence}diff\n{}", d.patch);
                if !d.patch.ends_with('\n') {
                    s.push('\n');
                }
                let _ = writeln!(s, "{fence}");
            }
            s.push('\n');
            s
        }
        Format::Xml => {
            let mut s = format!("<changes since=\"{}\">\n", xml_escape(&d.rev));
            for c in &d.files {
                let _ = writeln!(s, "<file status=\"{}\" path=\"{}\"/>", c.status, xml_escape(&c.path));
            }
            let _ = writeln!(s, "<patch>\n{}</patch>\n</changes>", xml_escape(&d.patch));
            s
        }
        Format::Plain => {
            let mut body = String::new();
            for c in &d.files {
                let _ = writeln!(body, "{} {}", c.status, c.path);
            }
            body.push('\n');
            body.push_str(&d.patch);
            format!("{}\n", data_block(&format!("changes since {}", d.rev), &body, salt))
        }
        Format::Json => format!(
            ",\n\"changes\": {}",
            json!({"since": d.rev, "files": d.files, "patch": d.patch})
        ),
    }
}

/// The end of the output.
pub(super) fn end(format: Format) -> &'static str {
    match format {
        Format::Xml => "</scout>\n",
        Format::Json => "\n}\n",
        Format::Markdown | Format::Plain => "",
    }
}

/// Where JSON's documents array closes (before the lists that follow).
pub(super) fn documents_end(format: Format) -> &'static str {
    match format {
        Format::Json => "\n]",
        _ => "",
    }
}

fn md_attributes(doc: &StoredDocument) -> String {
    let mut s = format!("{} {}", doc.kind.as_str(), extent_attribute(doc));
    if let Some(lang) = &doc.language {
        let _ = write!(s, " lang={lang}");
    }
    if let Some(title) = &doc.title {
        let _ = write!(s, " title: {}", md_label(title));
    }
    s
}

fn xml_attributes(doc: &StoredDocument) -> String {
    let mut s = format!(
        "path=\"{}\" kind=\"{}\" {}",
        xml_escape(&doc.path),
        doc.kind.as_str(),
        extent_attribute(doc).replace('=', "=\"") + "\""
    );
    if let Some(lang) = &doc.language {
        let _ = write!(s, " lang=\"{}\"", xml_escape(lang));
    }
    if let Some(title) = &doc.title {
        let _ = write!(s, " title=\"{}\"", xml_escape(title));
    }
    s
}

/// A path as inline code that no backtick or line break in it can end.
fn md_path(path: &str) -> String {
    let path = path.replace(['\n', '\r'], " ");
    let ticks = "`".repeat(longest_run(&path, '`') + 1);
    let pad = if path.starts_with('`') || path.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{ticks}{pad}{path}{pad}{ticks}")
}

/// Text on one Markdown line that cannot start a block or a link.
fn md_label(text: &str) -> String {
    text.replace(['\n', '\r'], " ").replace('[', "\\[").replace(']', "\\]")
}

fn longest_run(text: &str, c: char) -> usize {
    let (mut best, mut run) = (0, 0);
    for ch in text.chars() {
        if ch == c {
            run += 1;
            best = best.max(run);
        } else {
            run = 0;
        }
    }
    best
}

pub(super) fn xml_escape(text: &str) -> String {
    let mut s = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => s.push_str("&amp;"),
            '<' => s.push_str("&lt;"),
            '>' => s.push_str("&gt;"),
            '"' => s.push_str("&quot;"),
            _ => s.push(c),
        }
    }
    s
}
