//! Tests of PDF reading: bounds, cycles, structure, scans, text, workers.

use super::*;

/// The demo handbook with one more stream: `inflated` zero bytes,
/// Flate-compressed.
fn with_zero_stream(inflated: u64) -> lopdf::Document {
    let mut doc = lopdf::Document::load(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/demo/docs/operations-handbook.pdf"
    ))
    .unwrap();
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    let chunk = vec![0u8; 1 << 20];
    let mut left = inflated;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        std::io::Write::write_all(&mut z, &chunk[..n]).unwrap();
        left -= n as u64;
    }
    let dict = lopdf::dictionary! { "Filter" => "FlateDecode" };
    doc.add_object(lopdf::Stream::new(dict, z.finish().unwrap()));
    doc
}

#[test]
fn streams_past_the_bounds_are_refused_without_inflating_them_whole() {
    let doc = with_zero_stream(1 << 20);
    assert!(check_bounds(&doc, PdfBounds::default()).is_ok());
    let small = PdfBounds {
        stream_bytes: 64 * 1024,
        ..PdfBounds::default()
    };
    assert!(check_bounds(&doc, small)
        .unwrap_err()
        .starts_with("decompression bomb: stream"));
    let total = PdfBounds {
        inflated_bytes: 512 * 1024,
        ..PdfBounds::default()
    };
    assert!(check_bounds(&doc, total).unwrap_err().contains("in all"));
    let few = PdfBounds {
        objects: 3,
        ..PdfBounds::default()
    };
    assert!(check_bounds(&doc, few).unwrap_err().contains("objects"));
}

#[test]
fn a_decompression_bomb_is_a_typed_error() {
    // 600 MiB of zeros in under a megabyte.
    let mut doc = with_zero_stream(600 << 20);
    let mut bytes = Vec::new();
    doc.save_to(&mut bytes).unwrap();
    assert!(bytes.len() < 1 << 20, "{}", bytes.len());
    let started = std::time::Instant::now();
    let err = extract_pages("bomb.pdf", bytes, Duration::from_secs(30)).unwrap_err();
    assert_eq!(err.reason, SkipReason::PdfBomb, "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn truncated_and_bad_xref_pdfs_are_typed_errors_or_recovered() {
    let good = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/demo/docs/operations-handbook.pdf"
    ))
    .unwrap();
    let limit = Duration::from_secs(10);
    // Cut in half: pdf_oxide rebuilds the cross-reference table and
    // recovers the first page, which is whole. Each case is read or a
    // typed `pdf_error`, never a panic.
    let cut = extract_pages("cut.pdf", good[..good.len() / 2].to_vec(), limit);
    // startxref pointing past the end of the file.
    let at = good.windows(9).rposition(|w| w == b"startxref").unwrap();
    let end = at + 10 + good[at + 10..].iter().position(|&b| b == b'\n').unwrap();
    let mut bad = good[..at].to_vec();
    bad.extend_from_slice(b"startxref\n999999");
    bad.extend_from_slice(&good[end..]);
    let xref = extract_pages("xref.pdf", bad, limit);
    // Every xref offset 1,000 bytes off.
    let table = good.windows(5).position(|w| w == b"xref\n").unwrap();
    let mut shifted = good.clone();
    let mut i = table;
    while i + 7 <= (table + 200).min(shifted.len()) {
        if &shifted[i..i + 7] == b"0000000" {
            shifted[i + 6] = b'1';
            i += 7;
        } else {
            i += 1;
        }
    }
    assert_ne!(shifted, good);
    let shifted = extract_pages("shifted.pdf", shifted, limit);
    for r in [&cut, &xref, &shifted] {
        if let Err(e) = r {
            assert_eq!(e.reason, SkipReason::PdfError, "{e:?}");
        }
    }
    assert!(cut.unwrap().pages[0].text.contains("Tidewater Operations Handbook"));
    // Past the end: the table is found by scanning; both pages read.
    let xref = xref.unwrap();
    assert_eq!(xref.pages.len(), 2);
    assert!(xref.pages[1].text.contains("Priya Raman"));
    // Shifted: both pages found, but neither extractor finds their text
    // (poppler does; a known gap). Both are counted: the first as blank,
    // the second as out of lopdf's reach (it recovers one page).
    let shifted = shifted.unwrap();
    assert_eq!(shifted.pages.len(), 2);
    assert_eq!(shifted.scans.len(), 2, "{:?}", shifted.scans);
    assert_eq!(shifted.scans[0], (1, Err(BLANK_PAGE.to_owned())));
    assert!(shifted.scans[1].1.as_ref().unwrap_err().contains("does not find"));
}

#[test]
fn garbage_is_a_typed_error_not_a_panic() {
    let err = extract_pages(
        "x.pdf",
        b"%PDF-1.4\nthis is not a pdf".to_vec(),
        Duration::from_secs(10),
    )
    .unwrap_err();
    assert!(
        matches!(err.reason, SkipReason::PdfError | SkipReason::PdfPanic),
        "{err:?}"
    );
}

/// The fuzzer's find (`fuzz/seeds/pdf/outline-cycle.pdf`): a bookmark
/// whose `/Next` is itself made lopdf's outline walk grow without end.
#[test]
fn a_cyclic_outline_is_read_once_and_alike_titles_are_kept() {
    let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/seeds/pdf/outline-cycle.pdf")).unwrap();
    let started = std::time::Instant::now();
    let content = extract_pages("c.pdf", bytes, Duration::from_secs(10)).expect("read");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(content.pages.len(), 3);
    let names: Vec<&str> = content.sections.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, vec!["Introduction"]);

    // Children and siblings pointing back, and two bookmarks alike.
    let mut doc =
        lopdf::Document::load(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/pdfs/bookmarked.pdf")).unwrap();
    let pages = doc.get_pages();
    let (p1, p2) = (pages[&1], pages[&2]);
    let outlines = doc.new_object_id();
    let (a, b, c) = (doc.new_object_id(), doc.new_object_id(), doc.new_object_id());
    let node = |title: &str, page, next: lopdf::ObjectId, first: Option<lopdf::ObjectId>| {
        let mut d = lopdf::Dictionary::new();
        d.set("Title", lopdf::Object::string_literal(title));
        d.set("Parent", outlines);
        d.set("Dest", vec![lopdf::Object::Reference(page), "Fit".into()]);
        d.set("Next", next);
        if let Some(f) = first {
            d.set("First", f);
        }
        d
    };
    doc.objects.insert(a, node("Same", p1, b, Some(c)).into());
    doc.objects.insert(b, node("Same", p2, a, None).into());
    doc.objects.insert(c, node("Child", p1, a, Some(c)).into());
    let mut root_outline = lopdf::Dictionary::new();
    root_outline.set("Type", "Outlines");
    root_outline.set("First", a);
    doc.objects.insert(outlines, root_outline.into());
    let root = doc.trailer.get(b"Root").unwrap().as_reference().unwrap();
    doc.get_dictionary_mut(root).unwrap().set("Outlines", outlines);
    let got = bookmarks(&doc, &doc.get_pages());
    assert_eq!(
        got,
        vec![
            (1, "Same".to_owned(), 1),
            (2, "Child".to_owned(), 1),
            (1, "Same".to_owned(), 2)
        ]
    );
}

/// The fuzzer's second find (`fuzz/seeds/pdf/parent-cycle.pdf`): a page
/// that is its own `/Parent` sent pdf-extract into an endless loop. Kids
/// that point back up are refused the same way.
#[test]
fn a_cyclic_page_tree_is_a_fast_typed_error() {
    let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/seeds/pdf/parent-cycle.pdf")).unwrap();
    let started = std::time::Instant::now();
    let failure = extract_pages("p.pdf", bytes, Duration::from_secs(20)).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(failure.reason, SkipReason::PdfError);
    assert!(failure.detail.starts_with("cyclic page tree"), "{}", failure.detail);

    let mut doc =
        lopdf::Document::load(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/pdfs/bookmarked.pdf")).unwrap();
    let root_pages = doc.catalog().unwrap().get(b"Pages").unwrap().as_reference().unwrap();
    let pages = doc.get_dictionary_mut(root_pages).unwrap();
    let mut kids = pages.get(b"Kids").unwrap().as_array().unwrap().clone();
    kids.push(lopdf::Object::Reference(root_pages));
    pages.set("Kids", kids);
    let mut bytes = Vec::new();
    doc.save_to(&mut bytes).unwrap();
    let failure = extract_pages("k.pdf", bytes, Duration::from_secs(20)).unwrap_err();
    assert!(failure.detail.starts_with("cyclic page tree"), "{}", failure.detail);
}

/// The fuzzer's third find: a form that draws itself overflowed
/// pdf-extract's stack (`fuzz/seeds/pdf/form-cycle.pdf`). `pdf_oxide` bounds
/// its own depth and reads the file; pdf-extract, asked for the page
/// because `pdf_oxide` found next to no text on it, is kept from it by the
/// form check. The check runs only when pdf-extract is wanted: never on a
/// document whose pages all have text. Cycles through inherited resources
/// and through other forms are refused too; a form drawing an image, and
/// forms nested a few deep, are not.
#[test]
fn form_xobjects_that_draw_themselves_are_kept_from_pdf_extract() {
    let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/seeds/pdf/form-cycle.pdf")).unwrap();
    let doc = lopdf::Document::load_mem(&bytes).unwrap();
    assert!(check_forms(&doc).unwrap_err().starts_with("cyclic form XObjects"));
    let checks = std::cell::Cell::new(0);
    let counted = || {
        checks.set(checks.get() + 1);
        check_forms(&doc)
    };
    let fallback = FallbackChecks {
        safe: &counted,
        doc: &|| Some(&doc),
    };
    let pages = page_texts(&bytes, None, SCAN_TEXT_CHARS, &fallback).unwrap().pages;
    assert_eq!((pages.len(), checks.get()), (1, 1), "{pages:?}");
    let content = extract_pages("f.pdf", bytes.clone(), Duration::from_secs(20)).unwrap();
    assert_eq!(content.pages.len(), 1);

    let handbook = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/demo/docs/operations-handbook.pdf"
    ))
    .unwrap();
    checks.set(0);
    let pages = page_texts(&handbook, None, SCAN_TEXT_CHARS, &fallback).unwrap().pages;
    assert_eq!((pages.len(), checks.get()), (2, 0));

    // Page resources {A, B, I}; `forms` gives each form's content and
    // whether it has resources of its own (the page's, again).
    let check = |forms: &[(&str, bool)]| {
        let mut doc = lopdf::Document::with_version("1.5");
        let mut page_x = lopdf::Dictionary::new();
        let image = doc.add_object(lopdf::Stream::new(
            {
                let mut d = lopdf::Dictionary::new();
                d.set("Subtype", "Image");
                d
            },
            vec![0],
        ));
        page_x.set("I", image);
        let ids: Vec<lopdf::ObjectId> = forms.iter().map(|_| doc.new_object_id()).collect();
        for (name, id) in ["A", "B"].iter().zip(&ids) {
            page_x.set(*name, *id);
        }
        let x = doc.add_object(page_x);
        for ((content, own), id) in forms.iter().zip(&ids) {
            let mut d = lopdf::Dictionary::new();
            d.set("Subtype", "Form");
            if *own {
                let mut r = lopdf::Dictionary::new();
                r.set("XObject", x);
                d.set("Resources", r);
            }
            doc.objects
                .insert(*id, lopdf::Stream::new(d, content.as_bytes().to_vec()).into());
        }
        let mut res = lopdf::Dictionary::new();
        res.set("XObject", x);
        let mut page = lopdf::Dictionary::new();
        page.set("Type", "Page");
        page.set("Resources", res);
        doc.add_object(page);
        check_forms(&doc)
    };
    assert!(
        check(&[("/A Do", false)]).unwrap_err().starts_with("cyclic"),
        "inherited"
    );
    assert!(
        check(&[("/B Do", true), ("q /A Do Q", true)])
            .unwrap_err()
            .starts_with("cyclic"),
        "mutual"
    );
    assert_eq!(check(&[("/B Do /I Do", true), ("/I Do", false)]), Ok(()));
}

#[test]
fn bookmarks_become_page_ranges() {
    let toc = vec![
        (1, "Intro".to_owned(), 1),
        (2, "Scope".to_owned(), 2),
        (1, "Methods".to_owned(), 4),
        (1, "Broken".to_owned(), 99),
    ];
    let got: Vec<(String, u32, u32)> = sections(&toc, 6)
        .into_iter()
        .map(|s| (s.name, s.start_line, s.end_line))
        .collect();
    assert_eq!(
        got,
        vec![("Intro".into(), 1, 3), ("Scope".into(), 2, 3), ("Methods".into(), 4, 6)]
    );
}

#[test]
fn a_real_pdf_gives_pages_and_title() {
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/demo/docs/operations-handbook.pdf"
    ))
    .unwrap();
    let c = extract_pages("h.pdf", bytes, Duration::from_secs(10)).unwrap();
    assert_eq!(c.pages.len(), 2);
    assert_eq!(c.title.as_deref(), Some("scout example"));
    assert!(c.pages[1].text.contains("Priya Raman"));

    // A title in UTF-16 (with its byte-order mark), as many producers
    // write one with letters outside Latin-1, is read as text.
    let mut doc = lopdf::Document::load_mem(
        &std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/demo/docs/operations-handbook.pdf"
        ))
        .unwrap(),
    )
    .unwrap();
    let title: Vec<u8> = [0xFE, 0xFF]
        .into_iter()
        .chain("Für Ärzte – 東京".encode_utf16().flat_map(u16::to_be_bytes))
        .collect();
    let info = doc.trailer.get(b"Info").unwrap().as_reference().unwrap();
    doc.get_dictionary_mut(info)
        .unwrap()
        .set("Title", lopdf::Object::String(title, lopdf::StringFormat::Hexadecimal));
    let mut bytes = Vec::new();
    doc.save_to(&mut bytes).unwrap();
    let c = extract_pages("t.pdf", bytes, Duration::from_secs(10)).unwrap();
    assert_eq!(c.title.as_deref(), Some("Für Ärzte – 東京"));
}

#[test]
fn scanned_pages_yield_their_images() {
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/scans/scanned-handbook.pdf"
    ))
    .unwrap();
    let c = extract_pages("s.pdf", bytes.clone(), Duration::from_secs(20)).unwrap();
    assert_eq!(c.pages.len(), 2);
    assert_eq!(c.scans.len(), 2, "both pages have no text layer");
    let jpeg = c.scans[0].1.as_ref().unwrap();
    assert!(jpeg.starts_with(b"\xFF\xD8"), "DCT images are passed on as JPEG");
    let png = c.scans[1].1.as_ref().unwrap();
    assert!(png.starts_with(b"\x89PNG"), "Flate pixels are wrapped as PNG");
    let info = super::super::image::probe(png).unwrap();
    assert_eq!((info.width, info.height), (850, 1100));
    // The same page is refused under a pixel limit smaller than it.
    let doc = lopdf::Document::load_mem(&bytes).unwrap();
    let page2 = doc.get_pages()[&2];
    let images = doc.get_page_images(page2).unwrap();
    assert!(page_image(&images[0], 1000).unwrap_err().contains("outside the limit"));
}

#[test]
fn a_text_pdf_has_no_scans() {
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/demo/docs/operations-handbook.pdf"
    ))
    .unwrap();
    assert!(extract_pages("h.pdf", bytes, Duration::from_secs(10))
        .unwrap()
        .scans
        .is_empty());
}

#[cfg(unix)]
fn stand_in_worker(dir: &std::path::Path, script: &str) -> PdfIsolation {
    use std::os::unix::fs::PermissionsExt;
    let exe = dir.join("worker.sh");
    std::fs::write(&exe, format!("#!/bin/sh\n{script}\n")).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    PdfIsolation::Process(std::sync::Arc::new(WorkerPool::new(exe, 1 << 30)))
}

#[cfg(unix)]
#[test]
fn a_hung_worker_is_killed_and_reported_as_a_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let err = extract(
        "h.pdf",
        b"%PDF".to_vec(),
        Duration::from_secs(1),
        &stand_in_worker(dir.path(), "sleep 60"),
    )
    .unwrap_err();
    assert_eq!(err.reason, SkipReason::PdfTimeout);
    assert!(
        started.elapsed() < Duration::from_secs(1 + pool::WORKER_GRACE_SECONDS + 3),
        "killed, not waited for"
    );
}

#[cfg(unix)]
#[test]
fn a_crashed_or_confused_worker_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let crash = extract(
        "c.pdf",
        b"%PDF".to_vec(),
        Duration::from_secs(5),
        &stand_in_worker(dir.path(), "kill -SEGV $$"),
    )
    .unwrap_err();
    assert_eq!(crash.reason, SkipReason::PdfPanic);
    assert!(crash.detail.contains("died"), "{}", crash.detail);
    let garbage = extract(
        "g.pdf",
        b"%PDF".to_vec(),
        Duration::from_secs(5),
        &stand_in_worker(dir.path(), "echo nonsense"),
    )
    .unwrap_err();
    assert!(garbage.detail.contains("unreadable answer"), "{}", garbage.detail);
}

#[test]
fn page_text_is_tidied() {
    assert_eq!(normalise_page_text("\n\nTitle  \n\n\n\nBody\n\n"), "Title\n\nBody\n");
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn read_with(name: &str, password: Option<&str>) -> Result<PdfContent, PdfFailure> {
    extract_pages_with(
        name,
        fixture(name),
        Duration::from_secs(20),
        password.map(str::to_owned),
    )
}

/// All of a document's text, pages joined.
fn all_text(content: &PdfContent) -> String {
    content.pages.iter().map(|p| p.text.as_str()).collect()
}

#[test]
fn encrypted_files_open_with_the_empty_password() {
    for cipher in ["rc4-40", "rc4-128", "aes-128", "aes-256"] {
        let name = format!("pdf-encryption/{cipher}-empty.pdf");
        let content = read_with(&name, None).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(content.pages.len(), 3, "{name}");
        assert!(
            content.pages[1].text.contains("key rotation overdue by 41 days"),
            "{name}: {:?}",
            content.pages[1].text
        );
    }
}

#[test]
fn a_password_opens_what_the_empty_one_does_not_and_a_wrong_one_is_typed() {
    let name = "pdf-encryption/aes-256-password.pdf";
    let missing = read_with(name, None).unwrap_err();
    assert_eq!(missing.reason, SkipReason::PdfEncrypted, "{missing:?}");
    assert!(missing.detail.contains(PASSWORD_VAR), "{}", missing.detail);
    let wrong = read_with(name, Some("guess")).unwrap_err();
    assert_eq!(wrong.reason, SkipReason::PdfEncrypted, "{wrong:?}");
    assert!(wrong.detail.contains("does not open it"), "{}", wrong.detail);
    let right = read_with(name, Some("s3cret")).unwrap();
    assert!(all_text(&right).contains("Raw logs are kept for 90 days"));
    // A password given for some files leaves those the empty one opens
    // readable.
    assert_eq!(
        read_with("pdf-encryption/aes-128-empty.pdf", Some("s3cret"))
            .unwrap()
            .pages
            .len(),
        3
    );
    // The owner password opens it too, as in a viewer.
    assert_eq!(read_with(name, Some("owner-pw")).unwrap().pages.len(), 3);
}

/// pdf-extract run over a whole document ran the last word of a page into
/// the first of the next; each page is its own segment now.
#[test]
fn pages_stay_apart() {
    let content = read_with("pdfs/bookmarked.pdf", None).unwrap();
    let texts: Vec<&str> = content.pages.iter().map(|p| p.text.trim()).collect();
    assert_eq!(
        texts,
        vec![
            "Introduction\nThis report covers the audit.",
            "Findings\nThe audit found the key rotation overdue by 41 days.",
            "Appendix\nRaw logs are kept for 90 days."
        ]
    );
    for (i, page) in content.pages.iter().enumerate() {
        assert_eq!(
            page.anchor,
            Anchor::Page {
                path: "pdfs/bookmarked.pdf".into(),
                page: i as u32 + 1
            }
        );
    }
}

#[test]
fn a_two_column_page_is_read_column_by_column() {
    let text = all_text(&read_with("pdf-layout/two-column.pdf", None).unwrap());
    let at = |needle: &str| {
        text.find(needle)
            .unwrap_or_else(|| panic!("{needle:?} not in {text:?}"))
    };
    let last_left = at("line four about the gauges");
    let first_right = at("Right column line one");
    assert!(at("Left column line one") < at("line two about the valves"));
    assert!(last_left < first_right, "columns interleaved: {text:?}");
    assert!(at("line three on the schedule") < at("line four on the risks"));
}

#[test]
fn a_table_keeps_its_rows() {
    let text = all_text(&read_with("pdf-layout/table.pdf", None).unwrap());
    let row = |cells: &[&str]| {
        text.lines().any(|line| {
            let got: Vec<&str> = line.trim().trim_matches('|').split('|').map(str::trim).collect();
            got == cells
        })
    };
    assert!(row(&["Item", "Quantity", "Price"]), "{text}");
    assert!(row(&["Widget", "4", "2.50"]), "{text}");
    assert!(row(&["Bearing", "3", "9.10"]), "{text}");
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with('|') && l.contains("---")),
        "a Markdown table: {text}"
    );
    assert!(text.contains("Prices are per unit, before tax."), "{text}");
}

#[test]
fn a_cjk_page_with_a_predefined_cmap_is_read() {
    let text = all_text(&read_with("pdf-layout/cjk.pdf", None).unwrap());
    assert!(
        text.contains("\u{65e5}\u{672c}\u{8a9e}\u{306e}\u{6587}\u{66f8}"),
        "{text:?}"
    );
}

/// The fuzzer's find on the `pdf_oxide` path (`fuzz/seeds/pdf/kids-twice.pdf`):
/// a damaged file lopdf cannot load, whose rebuilt page tree lists a node of
/// kids among its own kids, twice. `pdf_oxide`'s page count walked it for
/// 2^50 steps; now `pdf_oxide` is not asked, and pdf-extract cannot read
/// it either: a typed error at once.
#[test]
fn a_page_tree_node_among_its_own_kids_is_a_fast_typed_error() {
    let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/seeds/pdf/kids-twice.pdf")).unwrap();
    let started = std::time::Instant::now();
    let failure = extract_pages("k.pdf", bytes, Duration::from_secs(20)).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    assert_eq!(failure.reason, SkipReason::PdfError);
    assert!(failure.detail.starts_with("cyclic page tree"), "{}", failure.detail);
}
