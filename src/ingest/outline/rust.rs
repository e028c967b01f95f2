//! Rust hollowed for the outline parse: the same lines, with what cannot
//! hold a definition emptied (blocks without definition keywords,
//! comments, attributes, signatures after the name, `use` paths), by a small
//! lexer that skips strings, raw strings, characters and lifetimes. A const
//! generic block or a `macro_rules!` body is kept.
//!
//! In: a file's text. Out: the hollowed text, or `None` when the lexer
//! loses its way (the file is then parsed whole).
//! Never parses: tree-sitter does, in `outline`.

/// Keywords that begin a Rust definition: a block holding none of them
/// holds no definition.
const RUST_ITEMS: &[&[u8]] = &[
    b"fn",
    b"struct",
    b"enum",
    b"trait",
    b"impl",
    b"mod",
    b"type",
    b"union",
    b"macro_rules",
];

/// `src` with the inside of every brace block that holds no definition
/// keyword (a function body without nested items, a struct's fields, a
/// match) emptied but for its newlines, so every definition keeps its
/// lines and its name. Also emptied: comments, attributes, a function's
/// signature after its name (`fn name() {`) and a `use` declaration's path
/// (`use x;`). Strings, characters, raw strings and comments are skipped
/// while matching braces. Only a block that follows `)`, `]`, `>` or a
/// word is emptied: one after `<` or `,` is a const generic argument, part
/// of an `impl`'s name. A `macro_rules!` body is kept whole (an empty one
/// is not a macro definition). `None` when the braces do not balance (the
/// file is parsed as it is).
pub(super) fn hollow_rust(src: &str) -> Option<String> {
    let b = src.as_bytes();
    let n = b.len();
    // Open blocks: (where the `{` is, whether a keyword was seen inside,
    // whether it may be emptied, whether it is a `macro_rules!` body).
    let mut open: Vec<(usize, bool, bool, bool)> = Vec::new();
    let mut macro_bodies = 0usize;
    // Byte ranges kept only as their newlines, after what stands in for
    // them.
    let mut empty: Vec<(usize, usize, &str)> = Vec::new();
    let mut keep_next = false;
    // The last byte of code before this one, outside comments and
    // whitespace (`a` for any word, `"` for a string).
    let mut last = b'{';
    let mut i = 0;
    while i < n {
        let c = b[i];
        let comment = c == b'/' && matches!(b.get(i + 1), Some(b'/' | b'*'));
        if !(c.is_ascii_whitespace() || comment) {
            last = match c {
                b'{' | b'}' => last,
                b'_' | b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z' | 0x80.. => b'a',
                _ => c,
            };
        }
        match c {
            // Comments go too (doc comments are much of a Rust file).
            b'/' if b.get(i + 1) == Some(&b'/') => {
                let end = b[i..].iter().position(|&x| x == b'\n').map_or(n, |p| i + p);
                empty.push((i, end, ""));
                i = end;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let from = i;
                i = skip_block_comment(b, i);
                // A space, for a comment between two tokens.
                empty.push((from, i, " "));
            }
            b'"' => i = skip_string(b, i + 1)?,
            b'\'' => i = skip_char_or_lifetime(src, i),
            // Attributes (`#[..]`, `#![..]`) are not part of an item's
            // lines.
            b'#' if macro_bodies == 0 && (b.get(i + 1) == Some(&b'[') || b[i + 1..].starts_with(b"![")) => {
                let bracket = i + 1 + usize::from(b[i + 1] == b'!');
                match rust_group_end(src, bracket + 1, b"]") {
                    Some(end) => {
                        empty.push((i, end + 1, ""));
                        i = end + 1;
                    }
                    None => i += 1,
                }
            }
            b'{' => {
                let may_empty = matches!(last, b')' | b']' | b'>' | b'a');
                open.push((i, keep_next, may_empty, keep_next));
                macro_bodies += usize::from(keep_next);
                keep_next = false;
                last = b'{';
                i += 1;
            }
            b'}' => {
                let (start, keyword, may_empty, macro_body) = open.pop()?;
                macro_bodies -= usize::from(macro_body);
                last = b'}';
                if keyword {
                    if let Some(parent) = open.last_mut() {
                        parent.1 = true;
                    }
                } else if may_empty {
                    // Inner blocks emptied already lie inside this one.
                    while empty.last().is_some_and(|&(s, _, _)| s > start) {
                        empty.pop();
                    }
                    empty.push((start + 1, i, ""));
                }
                i += 1;
            }
            c if c == b'_' || c.is_ascii_alphabetic() || c >= 0x80 => {
                let end = word_end(b, i);
                let word = &b[i..end];
                // Raw strings: r"..", r#".."#, br#".."#.
                if matches!(word, b"r" | b"br" | b"cr") && matches!(b.get(end), Some(b'"' | b'#')) {
                    let hashes = b[end..].iter().take_while(|&&x| x == b'#').count();
                    if b.get(end + hashes) == Some(&b'"') {
                        i = skip_raw(b, end + hashes + 1, hashes)?;
                        continue;
                    }
                }
                if RUST_ITEMS.contains(&word) {
                    if let Some(top) = open.last_mut() {
                        top.1 = true;
                    }
                    keep_next = word == b"macro_rules";
                }
                i = end;
                if macro_bodies > 0 {
                    continue;
                }
                let next = i + b[i..].iter().take_while(|x| x.is_ascii_whitespace()).count();
                let starts_word = b
                    .get(next)
                    .is_some_and(|&x| x == b'_' || x.is_ascii_alphabetic() || x >= 0x80);
                if word == b"fn" && starts_word && !b[next..].starts_with(b"r#") {
                    // `fn name(..) -> T where .. {` becomes `fn name() {`.
                    let name_end = word_end(b, next);
                    if let Some(sig_end) = rust_group_end(src, name_end, b"{;") {
                        empty.push((name_end, sig_end, "()"));
                        i = sig_end;
                        last = b')';
                    }
                } else if word == b"use" && (starts_word || matches!(b.get(next), Some(b':' | b'{'))) {
                    if let Some(semicolon) = rust_group_end(src, next, b";") {
                        empty.push((end, semicolon, " x"));
                        i = semicolon;
                    }
                }
            }
            _ => i += 1,
        }
    }
    if !open.is_empty() || empty.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(src.len() / 2);
    let mut at = 0;
    for (start, end, stand_in) in empty {
        out.push_str(&src[at..start]);
        out.push_str(stand_in);
        out.extend(src[start..end].bytes().filter(|&x| x == b'\n').map(char::from));
        at = end;
    }
    out.push_str(&src[at..]);
    Some(out)
}

/// Past the end of the identifier or keyword starting at `i`.
fn word_end(b: &[u8], i: usize) -> usize {
    b[i..]
        .iter()
        .position(|&x| !(x == b'_' || x.is_ascii_alphanumeric() || x >= 0x80))
        .map_or(b.len(), |p| i + p)
}

/// Past the end of the block comment starting at `i` (they nest).
fn skip_block_comment(b: &[u8], mut i: usize) -> usize {
    let mut depth = 1;
    i += 2;
    while i < b.len() && depth > 0 {
        if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
            depth += 1;
            i += 2;
        } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
            depth -= 1;
            i += 2;
        } else {
            i += 1;
        }
    }
    i.min(b.len())
}

/// Past a character literal ('x', '\n', '\u{1F600}', 'é') or a lifetime's
/// quote, at `i`.
fn skip_char_or_lifetime(src: &str, i: usize) -> usize {
    let b = src.as_bytes();
    if b.get(i + 1) == Some(&b'\\') {
        let mut k = i + 3;
        while k < b.len() && b[k] != b'\'' && b[k] != b'\n' {
            k += 1;
        }
        return k + 1;
    }
    let width = src
        .get(i + 1..)
        .and_then(|r| r.chars().next())
        .map_or(1, char::len_utf8);
    if b.get(i + 1 + width) == Some(&b'\'') {
        i + 2 + width
    } else {
        i + 1
    }
}

/// Where the first of `stops` outside brackets, braces and parentheses
/// opened after `from` stands (a closing one at depth 0 closes a group
/// opened before `from`); strings, characters and comments skipped.
/// `None` when there is none, or a group opened before `from` closes
/// first.
fn rust_group_end(src: &str, from: usize, stops: &[u8]) -> Option<usize> {
    let b = src.as_bytes();
    let mut depth = 0usize;
    let mut i = from;
    while i < b.len() {
        let c = b[i];
        if depth == 0 && stops.contains(&c) {
            return Some(i);
        }
        match c {
            b'"' => i = skip_string(b, i + 1)?,
            b'\'' => i = skip_char_or_lifetime(src, i),
            b'/' if b.get(i + 1) == Some(&b'/') => {
                i = b[i..].iter().position(|&x| x == b'\n').map_or(b.len(), |p| i + p);
            }
            b'/' if b.get(i + 1) == Some(&b'*') => i = skip_block_comment(b, i),
            b'(' | b'[' | b'{' => {
                depth += 1;
                i += 1;
            }
            b')' | b']' | b'}' => {
                depth = depth.checked_sub(1)?;
                i += 1;
            }
            _ => i += 1,
        }
    }
    None
}

/// Past the end of a string whose contents start at `i` (escapes
/// skipped); `None` when it never ends.
fn skip_string(b: &[u8], mut i: usize) -> Option<usize> {
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// Past the end of a raw string with `hashes` #s whose contents start at
/// `i`.
fn skip_raw(b: &[u8], mut i: usize, hashes: usize) -> Option<usize> {
    while i < b.len() {
        if b[i] == b'"' && b[i + 1..].iter().take(hashes).filter(|&&x| x == b'#').count() == hashes {
            return Some(i + 1 + hashes);
        }
        i += 1;
    }
    None
}
