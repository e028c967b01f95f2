//! Checks a loaded PDF passes before any extractor reads it: bounds on
//! objects and inflated stream bytes (a decompression bomb is refused from a
//! count, never inflated whole) and a page tree without cycles; and, before
//! pdf-extract reads it, form `XObjects` that neither draw themselves nor
//! nest without end.
//!
//! In: a lopdf document. Out: `Ok`, or why it is refused.
//! Never extracts text.

use crate::limits::{MAX_PDF_FORM_DEPTH, MAX_PDF_INFLATED_BYTES, MAX_PDF_OBJECTS, MAX_PDF_STREAM_BYTES};

/// Bounds on what a PDF may inflate to, checked before any parser
/// decompresses it for real.
#[derive(Debug, Clone, Copy)]
pub struct PdfBounds {
    pub stream_bytes: u64,
    pub inflated_bytes: u64,
    pub objects: usize,
}

impl Default for PdfBounds {
    fn default() -> Self {
        Self {
            stream_bytes: MAX_PDF_STREAM_BYTES,
            inflated_bytes: MAX_PDF_INFLATED_BYTES,
            objects: MAX_PDF_OBJECTS,
        }
    }
}

/// The most a deflate stream inflates to, per byte of it (a 258-byte match
/// costs at least two bits; zlib's figure).
const MAX_INFLATE_RATIO: u64 = 1032;

/// Whether `bytes` of deflate data cannot inflate past `bounds`, whatever
/// they hold: then nothing need be inflated to know.
pub(super) fn inflation_bounded(bytes: u64, bounds: PdfBounds) -> bool {
    bytes.saturating_mul(MAX_INFLATE_RATIO) <= bounds.stream_bytes.min(bounds.inflated_bytes)
}

/// Refuses a document past `bounds`: each Flate stream is inflated into a
/// counter through a reader that stops one byte past the limit, so a bomb
/// costs at most the limit in time and nothing in memory. Streams too
/// short to reach the limits together are not inflated.
pub(super) fn check_bounds(doc: &lopdf::Document, bounds: PdfBounds) -> Result<(), String> {
    if doc.objects.len() > bounds.objects {
        return Err(format!(
            "{} objects, more than the {} allowed",
            doc.objects.len(),
            bounds.objects
        ));
    }
    let flate: Vec<(&lopdf::ObjectId, &lopdf::Stream)> = doc
        .objects
        .iter()
        .filter_map(|(id, object)| match object {
            lopdf::Object::Stream(stream) => Some((id, stream)),
            _ => None,
        })
        .filter(|(_, stream)| {
            let first_filter = match stream.dict.get(b"Filter") {
                Ok(lopdf::Object::Name(n)) => Some(n.as_slice()),
                Ok(lopdf::Object::Array(a)) => a.first().and_then(|f| f.as_name().ok()),
                _ => None,
            };
            first_filter == Some(b"FlateDecode".as_slice())
        })
        .collect();
    if inflation_bounded(flate.iter().map(|(_, s)| s.content.len() as u64).sum(), bounds) {
        return Ok(());
    }
    let mut total = 0u64;
    for (id, stream) in flate {
        let mut bounded = std::io::Read::take(
            flate2::read::ZlibDecoder::new(stream.content.as_slice()),
            bounds.stream_bytes + 1,
        );
        // A corrupt stream counts what inflated before the damage.
        let inflated = std::io::copy(&mut bounded, &mut std::io::sink()).unwrap_or(0);
        if inflated > bounds.stream_bytes {
            return Err(format!(
                "decompression bomb: stream {} {} inflates past {} MiB",
                id.0,
                id.1,
                bounds.stream_bytes >> 20
            ));
        }
        total += inflated;
        if total > bounds.inflated_bytes {
            return Err(format!(
                "decompression bomb: its streams inflate past {} MiB in all",
                bounds.inflated_bytes >> 20
            ));
        }
    }
    Ok(())
}

/// Refuses a page tree with a cycle: a page whose `/Parent` chain comes
/// back to itself (parsers walk it for inherited resources and never stop),
/// or a page reached twice from the root (a `/Kids` array that points back
/// up, which lopdf cuts off only after repeating pages many times).
pub(super) fn check_page_tree(doc: &lopdf::Document) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for (n, id) in doc.page_iter().enumerate() {
        if !seen.insert(id) {
            return Err(format!(
                "cyclic page tree: page object {} {} is reached again as page {}",
                id.0,
                id.1,
                n + 1
            ));
        }
        let mut up = std::collections::HashSet::from([id]);
        let mut node = id;
        while let Some(parent) = doc
            .get_dictionary(node)
            .ok()
            .and_then(|d| d.get(b"Parent").ok())
            .and_then(|p| p.as_reference().ok())
        {
            if !up.insert(parent) {
                return Err(format!(
                    "cyclic page tree: the /Parent chain of page {} loops at object {} {}",
                    n + 1,
                    parent.0,
                    parent.1
                ));
            }
            node = parent;
        }
    }
    Ok(())
}

/// The object `o` stands for: the one it refers to, or itself.
pub(super) fn deref<'a>(doc: &'a lopdf::Document, o: &'a lopdf::Object) -> Option<&'a lopdf::Object> {
    match o {
        lopdf::Object::Reference(id) => doc.get_object(*id).ok(),
        other => Some(other),
    }
}

/// Every dictionary in `object`, nested ones included (a page's direct
/// `/Resources`), to a bounded depth.
pub(super) fn dictionaries<'a>(object: &'a lopdf::Object, depth: usize, out: &mut Vec<&'a lopdf::Dictionary>) {
    let dict = match object {
        lopdf::Object::Dictionary(d) => d,
        lopdf::Object::Stream(s) => &s.dict,
        lopdf::Object::Array(a) if depth > 0 => {
            for o in a {
                dictionaries(o, depth - 1, out);
            }
            return;
        }
        _ => return,
    };
    out.push(dict);
    if depth > 0 {
        for (_, v) in dict {
            dictionaries(v, depth - 1, out);
        }
    }
}

/// Refuses form `XObjects` that draw themselves, directly or through other
/// forms, or that nest deeper than [`MAX_PDF_FORM_DEPTH`]: text extractors
/// follow `Do` by recursion, so such a document overflows their stack.
/// A form's `Do` names are looked up in its own `/XObject` resources, or,
/// for a form without resources (which inherits them), in those of every
/// resource dictionary that names it.
pub(super) fn check_forms(doc: &lopdf::Document) -> Result<(), String> {
    use std::collections::HashMap;
    fn xobjects_of<'a>(doc: &'a lopdf::Document, d: &'a lopdf::Dictionary) -> Option<&'a lopdf::Dictionary> {
        d.get(b"XObject")
            .ok()
            .and_then(|x| deref(doc, x))
            .and_then(|x| x.as_dict().ok())
    }
    // Every stream that some /XObject dictionary names can be drawn with
    // `Do`, whatever its /Subtype says (the extractor does not check), and
    // each dictionary naming it is one it may inherit resources from.
    let mut named_in: HashMap<lopdf::ObjectId, Vec<&lopdf::Dictionary>> = HashMap::new();
    for object in doc.objects.values() {
        let mut dicts = Vec::new();
        dictionaries(object, 4, &mut dicts);
        for xobjects in dicts.into_iter().filter_map(|d| xobjects_of(doc, d)) {
            for (_, v) in xobjects {
                if let Ok(id) = v.as_reference() {
                    if matches!(doc.objects.get(&id), Some(lopdf::Object::Stream(_))) {
                        named_in.entry(id).or_default().push(xobjects);
                    }
                }
            }
        }
    }
    let mut edges: HashMap<lopdf::ObjectId, Vec<lopdf::ObjectId>> = HashMap::new();
    for (&id, parents) in &named_in {
        let Some(lopdf::Object::Stream(form)) = doc.objects.get(&id) else {
            continue;
        };
        // The form's own resources when they are a dictionary; else the
        // caller's, as the extractor does.
        let scopes: Vec<&lopdf::Dictionary> = match form
            .dict
            .get(b"Resources")
            .ok()
            .and_then(|r| deref(doc, r))
            .and_then(|r| r.as_dict().ok())
        {
            Some(r) => xobjects_of(doc, r).into_iter().collect(),
            None => parents.clone(),
        };
        let content = form.decompressed_content().unwrap_or_else(|_| form.content.clone());
        // The same content parser the extractor uses, so names match as it
        // reads them (`#xx` escapes included).
        let names: Vec<Vec<u8>> = lopdf::content::Content::decode(&content)
            .map(|c| {
                c.operations
                    .into_iter()
                    .filter(|op| op.operator == "Do")
                    .filter_map(|op| op.operands.first().and_then(|n| n.as_name().ok()).map(<[u8]>::to_vec))
                    .collect()
            })
            .unwrap_or_default();
        let mut targets: Vec<lopdf::ObjectId> = names
            .iter()
            .flat_map(|name| {
                scopes
                    .iter()
                    .filter_map(move |x| x.get(name).ok().and_then(|v| v.as_reference().ok()))
            })
            .filter(|t| named_in.contains_key(t))
            .collect();
        targets.sort_unstable();
        targets.dedup();
        edges.insert(id, targets);
    }
    // Depth-first from every form: a form met again on the current path
    // is a cycle; a path longer than the limit is too deep.
    let mut done = std::collections::HashSet::new();
    for &start in edges.keys() {
        if done.contains(&start) {
            continue;
        }
        let mut path = vec![start];
        let mut stack = vec![(start, 0usize)];
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            let children = &edges[&node];
            if *next == children.len() {
                done.insert(node);
                stack.pop();
                path.pop();
                continue;
            }
            let child = children[*next];
            *next += 1;
            if path.contains(&child) {
                return Err(format!(
                    "cyclic form XObjects: object {} {} draws itself",
                    child.0, child.1
                ));
            }
            if done.contains(&child) {
                continue;
            }
            if path.len() >= MAX_PDF_FORM_DEPTH {
                return Err(format!("form XObjects nest deeper than {MAX_PDF_FORM_DEPTH} levels"));
            }
            path.push(child);
            stack.push((child, 0));
        }
    }
    Ok(())
}
