//! Python hollowed for the outline parse: logical lines found by following
//! strings, brackets and backslashes; statements become `pass` (only the
//! last of a run at one indentation), headers keep their keyword and name,
//! decorators go, comments shrink to `#`, backslash-continued lines stay
//! whole.
//!
//! In: a file's text. Out: the hollowed text, or `None` (parsed whole).
//! Never parses: tree-sitter does, in `outline`.

/// Words that begin a Python logical line kept as it is: definitions and
/// compound statements, whose bodies follow on indented lines (`match` and
/// `case` may be plain names: keeping a line is always safe).
const PYTHON_KEPT: &[&[u8]] = &[
    b"def", b"class", b"async", b"if", b"elif", b"else", b"try", b"except", b"finally", b"for", b"while", b"with",
    b"match", b"case",
];

/// `src` with every Python logical line that is not a definition or a
/// block header (a line ending in `:`) replaced by `pass` at its
/// indentation, on its last line (its other lines left empty), and only
/// where the next statement is not one more such line at the same
/// indentation; headers shortened to their keyword and a definition's name
/// (see [`python_header`]); decorators and blank lines emptied, comments
/// shortened to `#`.
/// A definition keeps its lines, its name and its last line. Strings,
/// brackets and backslashes are followed to find where a logical line
/// ends; a line continued with a backslash is kept as it is (tree-sitter
/// and Python disagree on some). `None` (the file is parsed as it is) when
/// a string does not end on its line, a bracket closes what was not
/// opened, or a replaced line has a later line that starts like a
/// definition (a mis-read string would otherwise hide it).
pub(super) fn hollow_python(src: &str) -> Option<String> {
    let b = src.as_bytes();
    let n = b.len();
    let mut out = String::with_capacity(n / 4);
    // The last `pass` written, while it may still be dropped: (its range
    // in `out`, its indentation).
    let mut pending: Option<(std::ops::Range<usize>, &str)> = None;
    let mut i = 0;
    while i < n {
        let first = i + b[i..]
            .iter()
            .take_while(|&&x| matches!(x, b' ' | b'\t' | b'\x0c'))
            .count();
        let indent = &src[i..first];
        if first == n || matches!(b[first], b'\n' | b'\r' | b'#') {
            let end = b[first..].iter().position(|&x| x == b'\n').map_or(n, |p| first + p + 1);
            // A comment stays, but for its text: one at a body's
            // indentation after its last statement is part of the body.
            // (So the statement before it keeps its `pass`.)
            if b.get(first) == Some(&b'#') {
                out.push_str(indent);
                out.push('#');
                pending = None;
            }
            if b[end - 1] == b'\n' {
                out.push('\n');
            }
            i = end;
            continue;
        }
        let (end, last, continued, commented) = python_logical_line(b, first)?;
        let word_len = b[first..end]
            .iter()
            .take_while(|&&x| x == b'_' || x.is_ascii_alphanumeric())
            .count();
        let word = &b[first..first + word_len];
        let ends_line = b[end - 1] == b'\n';
        let inner_newlines = src[i..end].matches('\n').count() - usize::from(ends_line);
        // A comment ending the line stays (as `#`): one on the next line
        // at a deeper indentation is then read as its continuation.
        let newline = match (commented, ends_line) {
            (true, true) => " #\n",
            (true, false) => " #",
            (false, true) => "\n",
            (false, false) => "",
        };
        let replaced = !continued && b[first] != b'@' && last != b':' && !PYTHON_KEPT.contains(&word);
        if let Some((range, pending_indent)) = pending.take() {
            if replaced && pending_indent == indent {
                out.replace_range(range, "");
            }
        }
        if continued {
            out.push_str(&src[i..end]);
        } else if b[first] == b'@' {
            // A decorator is not part of the definition's lines.
            out.extend(std::iter::repeat_n('\n', inner_newlines + usize::from(ends_line)));
        } else if let Some(head) = python_header(&src[first..end], word, last == b':') {
            out.push_str(indent);
            out.push_str(&head);
            if last == b':' {
                out.extend(std::iter::repeat_n('\n', inner_newlines));
            } else if inner_newlines == 0 {
                out.push_str(" pass");
            } else {
                // The body on the header's last line: `pass` there, one
                // column in.
                out.extend(std::iter::repeat_n('\n', inner_newlines));
                out.push_str(indent);
                out.push_str(" pass");
            }
            out.push_str(newline);
        } else if !replaced {
            out.push_str(&src[i..end]);
        } else {
            let mut k = first;
            for _ in 0..inner_newlines {
                k += b[k..end].iter().position(|&x| x == b'\n')? + 1;
                let rest = &b[k..end];
                let code = rest
                    .iter()
                    .position(|x| !x.is_ascii_whitespace())
                    .map_or(rest, |p| &rest[p..]);
                if [&b"def "[..], b"class ", b"async def "]
                    .iter()
                    .any(|w| code.starts_with(w))
                {
                    return None;
                }
            }
            out.extend(std::iter::repeat_n('\n', inner_newlines));
            let at = out.len();
            out.push_str(indent);
            out.push_str("pass");
            if !commented {
                pending = Some((at..out.len(), indent));
            }
            out.push_str(newline);
        }
        i = end;
    }
    Some(out)
}

/// Where the Python logical line starting at `first` ends (past its
/// newline), its last byte of code, whether a backslash continues it and
/// whether it ends in a comment.
fn python_logical_line(b: &[u8], first: usize) -> Option<(usize, u8, bool, bool)> {
    let n = b.len();
    let mut depth = 0usize;
    let mut last = 0u8;
    let mut continued = false;
    let mut commented = false;
    let mut j = first;
    loop {
        let Some(&c) = b.get(j) else {
            return Some((n, last, continued, commented));
        };
        match c {
            b'\n' if depth == 0 => return Some((j + 1, last, continued, commented)),
            b'\n' => {
                commented = false;
                j += 1;
            }
            b'\\' if matches!(b.get(j + 1), Some(b'\n' | b'\r')) => {
                continued = true;
                j += if b[j + 1..].starts_with(b"\r\n") { 3 } else { 2 };
            }
            b'#' => {
                commented = true;
                j = b[j..].iter().position(|&x| x == b'\n').map_or(n, |p| j + p);
            }
            b'"' | b'\'' => {
                j = skip_python_string(b, j)?;
                last = c;
            }
            b'(' | b'[' | b'{' => {
                depth += 1;
                last = c;
                j += 1;
            }
            b')' | b']' | b'}' => {
                depth = depth.checked_sub(1)?;
                last = c;
                j += 1;
            }
            c if c.is_ascii_whitespace() => j += 1,
            _ => {
                last = c;
                j += 1;
            }
        }
    }
}

/// The shortest header with the same outline as the logical line `line`
/// (from its first word `word`; `block` when it ends in `:`): a definition
/// keeps its name, a compound statement only its keyword. `None` when the
/// line is kept as it is.
fn python_header(line: &str, word: &[u8], block: bool) -> Option<String> {
    // The name at the start of `rest`, if one of `follow` comes next.
    fn name_then<'a>(rest: &'a str, follow: &[char]) -> Option<&'a str> {
        let len = rest
            .bytes()
            .take_while(|&x| x == b'_' || x.is_ascii_alphanumeric() || x >= 0x80)
            .count();
        let (name, tail) = rest.split_at(len);
        (len > 0 && tail.trim_start_matches([' ', '\t']).starts_with(follow)).then_some(name)
    }
    let after = |w: &str| line[w.len()..].trim_start_matches([' ', '\t']);
    Some(match word {
        b"def" => format!("def {}():", name_then(after("def"), &['(', '['])?),
        b"async" => {
            let rest = after("async");
            let rest = rest.strip_prefix("def")?.trim_start_matches([' ', '\t']);
            format!("async def {}():", name_then(rest, &['(', '['])?)
        }
        b"class" => format!("class {}:", name_then(after("class"), &['(', '[', ':'])?),
        _ if !block => return None,
        b"if" => "if 1:".to_owned(),
        b"elif" => "elif 1:".to_owned(),
        b"while" => "while 1:".to_owned(),
        b"for" => "for _ in _:".to_owned(),
        b"with" => "with _:".to_owned(),
        b"except" => "except _:".to_owned(),
        b"match" => "match _:".to_owned(),
        b"case" => "case _:".to_owned(),
        _ => return None,
    })
}

/// Past the end of the Python string whose opening quote is at `at`
/// (single or triple, escapes skipped, raw or not alike); `None` when a
/// single-quoted string meets a line end or a string never ends.
fn skip_python_string(b: &[u8], at: usize) -> Option<usize> {
    let q = b[at];
    let triple = b.get(at + 1) == Some(&q) && b.get(at + 2) == Some(&q);
    let mut k = at + if triple { 3 } else { 1 };
    while k < b.len() {
        match b[k] {
            b'\\' => k += 2,
            c if c == q && (!triple || (b.get(k + 1) == Some(&q) && b.get(k + 2) == Some(&q))) => {
                return Some(k + if triple { 3 } else { 1 });
            }
            b'\n' if !triple => return None,
            _ => k += 1,
        }
    }
    None
}
