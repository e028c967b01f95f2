//! Text and code files: decoding and splitting into line-anchored segments.
//!
//! In: a file's bytes. Out: text with a count of replaced bytes, and
//! segments of whole lines. Never drops a byte without counting it.

use crate::anchor::Anchor;
use crate::limits::{SEGMENT_MAX_BYTES, SEGMENT_MAX_LINES};

use super::Segment;

/// Decodes bytes as UTF-8, replacing invalid sequences, and says how many
/// were replaced (so the report can say the text is not byte-exact). A UTF-8
/// byte-order mark is dropped; carriage returns before newlines are dropped
/// so line numbers match what editors show.
#[must_use]
pub fn decode(bytes: &[u8]) -> (String, u64) {
    if let Some(decoded) = decode_utf16(bytes) {
        return decoded;
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut replaced = 0u64;
    let text = if let Ok(s) = std::str::from_utf8(bytes) {
        s.to_owned()
    } else {
        let mut out = String::with_capacity(bytes.len());
        for chunk in bytes.utf8_chunks() {
            out.push_str(chunk.valid());
            if !chunk.invalid().is_empty() {
                out.push(char::REPLACEMENT_CHARACTER);
                replaced += 1;
            }
        }
        out
    };
    let text = if text.contains("\r\n") {
        text.replace("\r\n", "\n")
    } else {
        text
    };
    (text, replaced)
}

/// Text with a UTF-16 byte-order mark (as Windows tools write it),
/// decoded; unpaired surrogates and a dangling odd byte count as replaced.
fn decode_utf16(bytes: &[u8]) -> Option<(String, u64)> {
    let little = match bytes.get(..2) {
        Some(b"\xFF\xFE") => true,
        Some(b"\xFE\xFF") => false,
        _ => return None,
    };
    let body = &bytes[2..];
    let units = body.chunks_exact(2).map(|p| {
        if little {
            u16::from_le_bytes([p[0], p[1]])
        } else {
            u16::from_be_bytes([p[0], p[1]])
        }
    });
    let mut replaced = u64::from(body.len() % 2 == 1);
    let mut text = String::with_capacity(body.len() / 2);
    for c in char::decode_utf16(units) {
        text.push(c.unwrap_or_else(|_| {
            replaced += 1;
            char::REPLACEMENT_CHARACTER
        }));
    }
    if replaced > 0 && body.len() % 2 == 1 {
        text.push(char::REPLACEMENT_CHARACTER);
    }
    let text = if text.contains("\r\n") {
        text.replace("\r\n", "\n")
    } else {
        text
    };
    Some((text, replaced))
}

/// Splits text into segments of whole lines, at most [`SEGMENT_MAX_LINES`]
/// lines and about [`SEGMENT_MAX_BYTES`] bytes each (a single longer line is
/// its own segment: lines are never cut, so anchors stay exact). Every
/// segment's text ends with a newline.
#[must_use]
pub fn split_text(path: &str, text: &str) -> Vec<Segment> {
    let mut segments = Vec::new();
    let mut buf = String::new();
    let mut start = 1u32;
    let mut lines_in = 0usize;
    let mut line_no = 0u32;
    for line in text.split_inclusive('\n') {
        line_no += 1;
        if lines_in > 0 && (lines_in >= SEGMENT_MAX_LINES || buf.len() + line.len() > SEGMENT_MAX_BYTES) {
            segments.push(Segment {
                anchor: Anchor::Lines {
                    path: path.to_owned(),
                    start,
                    end: line_no - 1,
                },
                text: std::mem::take(&mut buf),
            });
            start = line_no;
            lines_in = 0;
        }
        buf.push_str(line);
        lines_in += 1;
    }
    if lines_in > 0 {
        if !buf.ends_with('\n') {
            buf.push('\n');
        }
        segments.push(Segment {
            anchor: Anchor::Lines {
                path: path.to_owned(),
                start,
                end: line_no,
            },
            text: buf,
        });
    }
    segments
}

/// The language of a source file from its extension, or `None` for prose
/// and data. Code gets sparse line markers; the name is shown in the prompt.
#[must_use]
pub fn code_language(path: &str) -> Option<&'static str> {
    let name = path.rsplit(['/', '\\']).next().unwrap_or(path);
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    Some(match ext.as_deref()? {
        "rs" => "rust",
        "py" | "pyi" => "python",
        "js" | "mjs" | "cjs" | "jsx" | "vue" | "svelte" => "javascript",
        "ts" | "tsx" | "mts" | "cts" => "typescript",
        "go" => "go",
        "java" => "java",
        "kt" | "kts" => "kotlin",
        "c" | "h" => "c",
        "cc" | "cpp" | "cxx" | "hpp" | "hh" | "hxx" => "cpp",
        "cs" => "csharp",
        "rb" => "ruby",
        "php" => "php",
        "swift" => "swift",
        "scala" => "scala",
        "sh" | "bash" | "zsh" => "shell",
        "sql" => "sql",
        "lua" => "lua",
        "pl" | "pm" => "perl",
        "hs" => "haskell",
        "ml" | "mli" => "ocaml",
        "ex" | "exs" => "elixir",
        "erl" => "erlang",
        "zig" => "zig",
        "r" => "r",
        "m" => "objective-c",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_counts_replacements_and_normalises_newlines() {
        let (text, replaced) = decode(b"\xEF\xBB\xBFok\r\nbad \xFF\xFE here\r\n");
        assert_eq!(text, "ok\nbad \u{FFFD}\u{FFFD} here\n");
        assert_eq!(replaced, 2);
        assert_eq!(decode(b"clean\n"), ("clean\n".to_owned(), 0));
    }

    #[test]
    fn utf16_with_a_bom_is_decoded() {
        let mut le = b"\xFF\xFE".to_vec();
        le.extend("héllo\r\nwörld\n".encode_utf16().flat_map(u16::to_le_bytes));
        assert_eq!(decode(&le), ("héllo\nwörld\n".to_owned(), 0));
        let mut be = b"\xFE\xFF".to_vec();
        be.extend("ok".encode_utf16().flat_map(u16::to_be_bytes));
        be.extend([0xD8, 0x00]); // an unpaired high surrogate
        assert_eq!(decode(&be), ("ok\u{FFFD}".to_owned(), 1));
    }

    #[test]
    fn segments_cover_every_line_once_with_exact_anchors() {
        let text: String = (1..=250).map(|i| format!("line {i}\n")).collect();
        let segs = split_text("a.txt", &text);
        assert_eq!(segs.len(), 3);
        let ranges: Vec<String> = segs.iter().map(|s| s.anchor.to_string()).collect();
        assert_eq!(ranges, vec!["a.txt:1-120", "a.txt:121-240", "a.txt:241-250"]);
        let joined: String = segs.iter().map(|s| s.text.as_str()).collect();
        assert_eq!(joined, text);
        assert!(segs[1].text.starts_with("line 121\n"));
    }

    #[test]
    fn long_lines_are_never_cut() {
        let long = "x".repeat(SEGMENT_MAX_BYTES * 2);
        let text = format!("a\n{long}\nb");
        let segs = split_text("f", &text);
        let ranges: Vec<String> = segs.iter().map(|s| s.anchor.to_string()).collect();
        assert_eq!(ranges, vec!["f:1", "f:2", "f:3"]);
        assert_eq!(segs[2].text, "b\n", "a last line without newline gets one");
    }

    #[test]
    fn languages_from_extensions() {
        assert_eq!(code_language("src/main.rs"), Some("rust"));
        assert_eq!(code_language("README.md"), None);
        assert_eq!(code_language("Makefile"), None);
        assert_eq!(code_language("a/B.JAVA"), Some("java"));
    }
}
