//! Text that reaches a terminal: control characters from files (their
//! names, their contents quoted in citations, a model's answer that echoes
//! them) are written out as escapes, so a file named with an ESC sequence
//! cannot rewrite the user's terminal and a newline in a name cannot forge
//! a line of a summary. JSON output needs none of this (serde escapes).
//!
//! In: any text. Out: the same text with control characters, and the
//! Unicode controls that reorder what is shown (bidirectional overrides),
//! as `\x1B` or `\u{202E}`.
//! Never changes printable text.

use std::borrow::Cow;
use std::fmt::Write as _;

fn unsafe_char(c: char, keep_newlines: bool) -> bool {
    match c {
        '\n' | '\t' => !keep_newlines,
        c if c.is_control() => true,
        // Bidirectional embeddings, overrides and isolates (Trojan Source).
        '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' => true,
        _ => false,
    }
}

fn escaped(s: &str, keep_newlines: bool) -> Cow<'_, str> {
    if !s.chars().any(|c| unsafe_char(c, keep_newlines)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if unsafe_char(c, keep_newlines) {
            if (c as u32) < 0x80 {
                let _ = write!(out, "\\x{:02X}", c as u32);
            } else {
                let _ = write!(out, "\\u{{{:X}}}", c as u32);
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// One field of a line (a path, a reason, a quote): every control
/// character escaped, newlines and tabs too.
#[must_use]
pub fn field(s: &str) -> Cow<'_, str> {
    escaped(s, false)
}

/// A block of text (an answer, a summary): control characters escaped,
/// newlines and tabs kept.
#[must_use]
pub fn text(s: &str) -> Cow<'_, str> {
    escaped(s, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_newlines() {
        assert_eq!(field("plain.rs"), "plain.rs");
        assert!(matches!(field("plain.rs"), Cow::Borrowed(_)));
        assert_eq!(field("a\x1b]0;pwned\x07b"), "a\\x1B]0;pwned\\x07b");
        assert_eq!(field("evil\nscout: 0 secrets"), "evil\\x0Ascout: 0 secrets");
        assert_eq!(text("line one\nline\x1b[2J two\n"), "line one\nline\\x1B[2J two\n");
        assert_eq!(field("abc\u{202E}cba"), "abc\\u{202E}cba");
        assert_eq!(field("\u{9b}31m"), "\\u{9B}31m");
        assert_eq!(text("café ✓"), "café ✓");
    }
}
