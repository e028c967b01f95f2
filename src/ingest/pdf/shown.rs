//! How many visible glyphs a page can show at most, counted from the
//! strings in its content streams and in the forms it may draw. Where
//! `pdf_oxide` already found that many visible characters, pdf-extract
//! cannot find more, so it is not run for that page.
//!
//! In: a loaded lopdf document and a page number. Out: an upper bound of
//! the glyphs shown, or `None` where the page's content cannot be read
//! (the caller then runs pdf-extract as before).
//! Never decodes text; never inflates a stream `checks` has not bounded.

use std::collections::HashSet;

use super::checks::deref;

/// Form `XObjects` followed into forms that draw forms; past this depth the
/// count is unknown.
const MAX_FORM_DEPTH: usize = 4;

/// Visible glyphs the page with object `page` can show at most: string
/// bytes in its content streams and in every form its resources name
/// (drawn or not).
pub(super) fn page_glyphs(doc: &lopdf::Document, page: lopdf::ObjectId) -> Option<usize> {
    let content = doc.get_page_content(page).ok()?;
    let mut total = string_bytes(&content);
    let (direct, inherited) = doc.get_page_resources(page).ok()?;
    let mut resources: Vec<&lopdf::Dictionary> = direct.into_iter().collect();
    resources.extend(inherited.into_iter().filter_map(|id| doc.get_dictionary(id).ok()));
    let mut seen = HashSet::new();
    for r in resources {
        total += form_glyphs(doc, r, 0, &mut seen)?;
    }
    Some(total)
}

/// String bytes of the forms a resource dictionary names, and of the forms
/// those name in turn.
fn form_glyphs(
    doc: &lopdf::Document,
    resources: &lopdf::Dictionary,
    depth: usize,
    seen: &mut HashSet<lopdf::ObjectId>,
) -> Option<usize> {
    let Some(xobjects) = resources
        .get(b"XObject")
        .ok()
        .and_then(|x| deref(doc, x))
        .and_then(|x| x.as_dict().ok())
    else {
        return Some(0);
    };
    let mut total = 0;
    for (_, value) in xobjects {
        let Ok(id) = value.as_reference() else { continue };
        let Ok(lopdf::Object::Stream(form)) = doc.get_object(id) else {
            continue;
        };
        if form.dict.get(b"Subtype").and_then(lopdf::Object::as_name).ok() != Some(b"Form".as_slice()) {
            continue;
        }
        if !seen.insert(id) {
            continue;
        }
        if depth >= MAX_FORM_DEPTH {
            return None;
        }
        let content = form.decompressed_content().ok()?;
        total += string_bytes(&content);
        if let Some(inner) = form
            .dict
            .get(b"Resources")
            .ok()
            .and_then(|r| deref(doc, r))
            .and_then(|r| r.as_dict().ok())
        {
            total += form_glyphs(doc, inner, depth + 1, seen)?;
        }
    }
    Some(total)
}

/// Bytes other than ASCII white space inside the literal `( )` and
/// hexadecimal `< >` strings of a content stream: an upper bound of the
/// visible glyphs its text operators show. A glyph takes one byte or more,
/// and a one-byte white-space code shows no ink; a two-byte code counts
/// unless both its bytes are white space. Strings that are not shown
/// (marked-content properties) and bytes of inline images only raise the
/// count.
pub(super) fn string_bytes(content: &[u8]) -> usize {
    let mut count = 0;
    let mut i = 0;
    while i < content.len() {
        match content[i] {
            b'%' => {
                while i < content.len() && !matches!(content[i], b'\n' | b'\r') {
                    i += 1;
                }
            }
            b'(' => {
                let mut depth = 1;
                i += 1;
                while i < content.len() && depth > 0 {
                    match content[i] {
                        b'\\' => {
                            i += 1;
                            count += 1;
                        }
                        b'(' => {
                            depth += 1;
                            count += 1;
                        }
                        b')' => {
                            depth -= 1;
                            count += usize::from(depth > 0);
                        }
                        c => count += usize::from(!c.is_ascii_whitespace()),
                    }
                    i += 1;
                }
                continue;
            }
            b'<' if content.get(i + 1) == Some(&b'<') => i += 1,
            b'<' => {
                let mut digits = Vec::new();
                i += 1;
                while i < content.len() && content[i] != b'>' {
                    if content[i].is_ascii_hexdigit() {
                        digits.push(content[i]);
                    }
                    i += 1;
                }
                // An odd last digit is followed by 0 (ISO 32000-1, 7.3.4.3).
                count += digits
                    .chunks(2)
                    .filter(|pair| {
                        let byte = pair.iter().fold(0u8, |b, &d| (b << 4) | hex(d)) << (4 * (2 - pair.len()));
                        !byte.is_ascii_whitespace()
                    })
                    .count();
            }
            _ => {}
        }
        i += 1;
    }
    count
}

/// The value of a hexadecimal digit.
fn hex(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        _ => digit - b'A' + 10,
    }
}

#[cfg(test)]
mod tests {
    use super::string_bytes;

    #[test]
    fn string_bytes_count_literal_and_hex_strings_only() {
        assert_eq!(string_bytes(b"BT /F1 12 Tf (Hello) Tj ET"), 5);
        // A space byte shows no ink; in a hex string too (20).
        assert_eq!(string_bytes(b"BT (Hi there) Tj <48692074> Tj ET"), 10);
        // A two-byte code with one space byte still counts.
        assert_eq!(string_bytes(b"BT <00200041> Tj ET"), 3);
        // An odd last digit is followed by 0: <412> is 41 20.
        assert_eq!(string_bytes(b"BT <412> Tj ET"), 1);
        // Nested parentheses and escapes are one byte each; `)` inside
        // an escape does not end the string.
        assert_eq!(string_bytes(br"BT (a(b)c\)d\\) Tj ET"), 8);
        assert_eq!(string_bytes(b"BT [<48656C6C6F> -120 (W)] TJ ET"), 6);
        // A dictionary is not a string; a comment's brackets are not either.
        assert_eq!(string_bytes(b"/P <</MCID 0>> BDC % (not shown)\nEMC"), 0);
        assert_eq!(string_bytes(b"0 0 m 10 10 l S"), 0);
        // An unterminated string counts to the end.
        assert_eq!(string_bytes(b"(abc"), 3);
    }
}
