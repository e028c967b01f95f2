//! What lopdf reads of a PDF's structure: encryption, title, bookmarks as
//! (level, title, page), and the images of pages without text (for OCR),
//! as JPEG as they are or wrapped as PNG.
//!
//! In: a checked lopdf document. Out: [`Structure`].
//! Never extracts page text (`text` does).

use super::checks::deref;
use super::BLANK_PAGE;
use crate::limits::{MAX_PDF_BOOKMARKS, MAX_SCAN_PIXELS};

/// Structure from lopdf: encrypted, bookmarks as (level, title, page),
/// title, and the images of the pages asked for.
#[derive(Debug, Default)]
pub(super) struct Structure {
    pub(super) encrypted: bool,
    pub(super) toc: Vec<(usize, String, u32)>,
    pub(super) title: Option<String>,
    pub(super) scans: Vec<(u32, Result<Vec<u8>, String>)>,
}

/// Why a text-less page has no image to read: lopdf, which takes images
/// out, does not find the page.
const UNLISTED_PAGE: &str = "lopdf does not find this page to take its image out";

pub(super) fn structure(doc: &lopdf::Document, textless_pages: &[u32]) -> Structure {
    let page_ids = doc.get_pages();
    let scans = textless_pages
        .iter()
        .map(|&n| {
            // A page the text extractors found where lopdf's page tree has
            // none (a damaged file): counted, its image out of reach.
            let Some(id) = page_ids.get(&n) else {
                return (n, Err(UNLISTED_PAGE.to_owned()));
            };
            let images = doc.get_page_images(*id).unwrap_or_default();
            // Neither text nor an image: a blank page, or one whose content
            // a damaged file lost. Counted, never passed over in silence.
            let Some(largest) = images.iter().max_by_key(|i| i.width.max(0) * i.height.max(0)) else {
                return (n, Err(BLANK_PAGE.to_owned()));
            };
            (n, page_image(largest, MAX_SCAN_PIXELS))
        })
        .collect();
    let toc = bookmarks(doc, &page_ids);
    let title = doc
        .trailer
        .get(b"Info")
        .ok()
        .and_then(|o| o.as_reference().ok())
        .and_then(|id| doc.get_dictionary(id).ok())
        .and_then(|info| info.get(b"Title").ok())
        .and_then(|t| t.as_str().ok())
        .map(|b| text_string(b).trim().to_owned())
        .filter(|t| !t.is_empty());
    Structure {
        encrypted: doc.is_encrypted(),
        toc,
        title,
        scans,
    }
}

/// Text of a PDF text string: UTF-16 with a byte-order mark, else UTF-8
/// when it is valid, else one byte per character (`PDFDocEncoding` is
/// Latin-1 for every printable letter).
pub(super) fn text_string(bytes: &[u8]) -> String {
    let utf16 = |big: bool| {
        let units: Vec<u16> = bytes[2..]
            .chunks_exact(2)
            .map(|c| {
                if big {
                    u16::from_be_bytes([c[0], c[1]])
                } else {
                    u16::from_le_bytes([c[0], c[1]])
                }
            })
            .collect();
        String::from_utf16_lossy(&units)
    };
    match bytes {
        [0xFE, 0xFF, ..] => utf16(true),
        [0xFF, 0xFE, ..] => utf16(false),
        _ => std::str::from_utf8(bytes).map_or_else(|_| bytes.iter().map(|&b| char::from(b)).collect(), str::to_owned),
    }
}

/// The page a bookmark goes to: its `/Dest` or its `/A` `GoTo` action's
/// `/D`, an explicit `[page ...]` array or a name looked up in the
/// catalog's `/Dests`. Name trees are not searched.
pub(super) fn bookmark_page(
    doc: &lopdf::Document,
    node: &lopdf::Dictionary,
    page_numbers: &std::collections::HashMap<lopdf::ObjectId, u32>,
) -> Option<u32> {
    let dest = if let Ok(d) = node.get(b"Dest") {
        deref(doc, d)?
    } else {
        let action = deref(doc, node.get(b"A").ok()?)?.as_dict().ok()?;
        if action.get(b"S").ok()?.as_name().ok()? != b"GoTo" {
            return None;
        }
        deref(doc, action.get(b"D").ok()?)?
    };
    let array = match dest {
        lopdf::Object::Array(a) => a,
        lopdf::Object::Name(name) | lopdf::Object::String(name, _) => {
            let dests = deref(doc, doc.catalog().ok()?.get(b"Dests").ok()?)?;
            match deref(doc, dests.as_dict().ok()?.get(name).ok()?)? {
                lopdf::Object::Array(a) => a,
                lopdf::Object::Dictionary(d) => deref(doc, d.get(b"D").ok()?)?.as_array().ok()?,
                _ => return None,
            }
        }
        _ => return None,
    };
    page_numbers.get(&array.first()?.as_reference().ok()?).copied()
}

/// The outline (bookmarks) as (level, title, page), in reading order. Every
/// node is visited once: a `/Next` or `/First` that points back (a cycle)
/// ends that branch, and the walk stops at [`MAX_PDF_BOOKMARKS`] nodes, so
/// a hostile outline costs bounded time and memory. Bookmarks that go
/// nowhere in this document are left out; the rest keep their titles even
/// when two are alike.
pub(super) fn bookmarks(
    doc: &lopdf::Document,
    pages: &std::collections::BTreeMap<u32, lopdf::ObjectId>,
) -> Vec<(usize, String, u32)> {
    let page_numbers: std::collections::HashMap<lopdf::ObjectId, u32> = pages.iter().map(|(&n, &id)| (id, n)).collect();
    let first_child = |d: &lopdf::Dictionary| d.get(b"First").ok().and_then(|f| f.as_reference().ok());
    let Some(root) = doc
        .catalog()
        .ok()
        .and_then(|c| c.get(b"Outlines").ok())
        .and_then(|o| o.as_reference().ok())
        .and_then(|id| doc.get_dictionary(id).ok())
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut visited = std::collections::HashSet::new();
    // Depth first, children before the next sibling: reading order.
    let mut stack: Vec<(lopdf::ObjectId, usize)> = first_child(root).map(|id| (id, 1)).into_iter().collect();
    while let Some((id, level)) = stack.pop() {
        if visited.len() >= MAX_PDF_BOOKMARKS || !visited.insert(id) {
            continue;
        }
        let Ok(node) = doc.get_dictionary(id) else {
            continue;
        };
        if let Some(next) = node.get(b"Next").ok().and_then(|n| n.as_reference().ok()) {
            stack.push((next, level));
        }
        if let Some(child) = first_child(node) {
            stack.push((child, level + 1));
        }
        let title = node
            .get(b"Title")
            .ok()
            .and_then(|t| match t {
                lopdf::Object::Reference(r) => doc.get_object(*r).ok(),
                other => Some(other),
            })
            .and_then(|t| t.as_str().ok())
            .map(|b| text_string(b).trim().to_owned());
        if let (Some(title), Some(page)) = (title, bookmark_page(doc, node, &page_numbers)) {
            out.push((level, title, page));
        }
    }
    out
}

/// A page image as bytes tesseract reads: JPEG as stored, or 8-bit gray or
/// RGB pixels (raw or Flate) wrapped as PNG. Decompression stops at the
/// size the image declares, so a bomb cannot grow past `max_pixels`.
pub(super) fn page_image(img: &lopdf::xobject::PdfImage<'_>, max_pixels: u64) -> Result<Vec<u8>, String> {
    let filters: Vec<&str> = img.filters.iter().flatten().map(String::as_str).collect();
    if filters == ["DCTDecode"] {
        return Ok(img.content.to_vec());
    }
    let (w, h) = (
        u64::try_from(img.width).unwrap_or(0),
        u64::try_from(img.height).unwrap_or(0),
    );
    if w == 0 || h == 0 || w * h > max_pixels {
        return Err(format!(
            "image of {w} x {h} pixels is outside the limit of {max_pixels}"
        ));
    }
    let channels: u64 = match img.color_space.as_deref() {
        Some("DeviceGray") => 1,
        Some("DeviceRGB") => 3,
        other => return Err(format!("unsupported color space {other:?}")),
    };
    if img.bits_per_component != Some(8) {
        return Err(format!("unsupported {:?} bits per component", img.bits_per_component));
    }
    if img.origin_dict.get(b"DecodeParms").is_ok() {
        return Err("image with a predictor (DecodeParms) is not supported".into());
    }
    let expected = w * h * channels;
    let pixels = match filters.as_slice() {
        [] => img.content.to_vec(),
        ["FlateDecode"] => {
            let mut out = Vec::with_capacity(expected as usize);
            std::io::Read::read_to_end(
                &mut std::io::Read::take(flate2::read::ZlibDecoder::new(img.content), expected + 1),
                &mut out,
            )
            .map_err(|e| format!("Flate stream: {e}"))?;
            out
        }
        other => return Err(format!("unsupported image filter {other:?}")),
    };
    if pixels.len() as u64 != expected {
        return Err(format!("image data is {} bytes, {expected} expected", pixels.len()));
    }
    Ok(png(w as u32, h as u32, channels == 3, &pixels))
}

/// A minimal PNG: one IDAT of rows without filtering.
pub(super) fn png(width: u32, height: u32, rgb: bool, pixels: &[u8]) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: [u8; 4], data: &[u8]) {
        out.extend((data.len() as u32).to_be_bytes());
        let mut crc = flate2::Crc::new();
        crc.update(&kind);
        crc.update(data);
        out.extend(kind);
        out.extend(data);
        out.extend(crc.sum().to_be_bytes());
    }
    let row = width as usize * if rgb { 3 } else { 1 };
    let mut raw = Vec::with_capacity(pixels.len() + height as usize);
    for line in pixels.chunks(row) {
        raw.push(0);
        raw.extend_from_slice(line);
    }
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    let _ = std::io::Write::write_all(&mut z, &raw);
    let idat = z.finish().unwrap_or_default();
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend(width.to_be_bytes());
    ihdr.extend(height.to_be_bytes());
    ihdr.extend([8, if rgb { 2 } else { 0 }, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut out, *b"IHDR", &ihdr);
    chunk(&mut out, *b"IDAT", &idat);
    chunk(&mut out, *b"IEND", &[]);
    out
}
