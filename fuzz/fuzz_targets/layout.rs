//! The prompt layout on arbitrary document text and paths: a document can
//! never open or close a block (exactly two boundary marks per block, the
//! real ones), no line is dropped, and rendering is deterministic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scout::corpus::StoredDocument;
use scout::ingest::{decode, split_text, DocumentKind};
use scout::prompt::{escape, render_document};

fuzz_target!(|data: &[u8]| {
    // First byte picks the salt's length, the first line is the path.
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let salt = &"0123456789abcdef0123456789abcdef"[..1 + usize::from(pick % 32)];
    let (text, _) = decode(rest);
    let (path, body) = text.split_once('\n').unwrap_or(("f.rs", text.as_str()));
    let mut doc = StoredDocument::with_segments(path, DocumentKind::Code, split_text(path, body));
    doc.language = Some("rust".into());
    doc.title = Some(body.chars().take(40).collect());
    let block = render_document(&doc, salt);
    let rendered = block.render();
    assert_eq!(rendered, render_document(&doc, salt).render(), "deterministic");
    let mark = format!("-{salt}");
    assert_eq!(rendered.matches(&mark).count(), 2, "only the real boundaries: {rendered:?}");
    assert!(rendered.starts_with(&format!("<<<doc{mark} path=\"")));
    assert!(rendered.ends_with(&format!("<<<end{mark}>>>\n")));
    // Lines end at '\n' only (a lone '\r' is text), as split_text cuts them.
    let lines = |s: &str| -> Vec<String> {
        s.split_inclusive('\n').map(|l| l.strip_suffix('\n').unwrap_or(l).to_owned()).collect()
    };
    let (body_lines, shown_lines) = (lines(body), lines(&rendered));
    assert_eq!(shown_lines.len(), 2 + body_lines.len(), "one line per line, plus the boundaries");
    // Every line is there, in order, escaped and perhaps with a marker.
    let mut inside = shown_lines.iter().skip(1);
    for line in &body_lines {
        let shown = inside.next().expect("a line per line");
        assert!(shown.ends_with(&escape(line, salt)), "{line:?} shown as {shown:?}");
    }
});
