//! Tests of when pdf-extract, the fallback, reads a page, and what it reads.

use super::*;

/// The glyphs a page can show bound the text any extractor finds on it.
#[test]
fn a_pages_string_bytes_bound_its_text() {
    for path in [
        "/examples/demo/docs/operations-handbook.pdf",
        "/tests/data/pdf-layout/two-column.pdf",
        "/tests/data/pdf-layout/cjk.pdf",
        "/tests/data/pdf-layout/table.pdf",
        "/tests/data/pdfs/bookmarked.pdf",
    ] {
        let bytes = std::fs::read(format!("{}{path}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        let doc = lopdf::Document::load_mem(&bytes).unwrap();
        let none = || Ok(());
        let checks = FallbackChecks {
            safe: &none,
            doc: &|| Some(&doc),
        };
        let pages = page_texts(&bytes, None, SCAN_TEXT_CHARS, &checks).unwrap().pages;
        for (n, id) in doc.get_pages() {
            let glyphs = shown::page_glyphs(&doc, id).unwrap();
            // A table's Markdown marks are scout's, not the page's.
            let text: String = pages[n as usize - 1]
                .chars()
                .filter(|c| !matches!(c, '|' | '-'))
                .collect();
            assert!(glyphs >= visible(&text), "{path} page {n}: {glyphs} glyphs, {text:?}");
            assert!(visible(&text) > 0, "{path} page {n}");
        }
    }
}

/// A one-page PDF drawing `content` with Helvetica as /F1.
fn text_page_pdf(content: &str) -> Vec<u8> {
    use lopdf::{dictionary, Object, Stream};
    let mut doc = lopdf::Document::with_version("1.5");
    let font = doc.add_object(dictionary! {"Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica"});
    let content = doc.add_object(Stream::new(dictionary! {}, content.as_bytes().to_vec()));
    let pages = doc.new_object_id();
    let page = doc.add_object(dictionary! {
        "Type" => "Page",
        "Parent" => pages,
        "MediaBox" => vec![0.into(), 0.into(), 612.into(), 792.into()],
        "Contents" => content,
        "Resources" => dictionary! {"Font" => dictionary! {"F1" => font}},
    });
    doc.objects.insert(
        pages,
        Object::Dictionary(dictionary! {"Type" => "Pages", "Kids" => vec![page.into()], "Count" => 1}),
    );
    let catalog = doc.add_object(dictionary! {"Type" => "Catalog", "Pages" => pages});
    doc.trailer.set("Root", catalog);
    let mut bytes = Vec::new();
    doc.save_to(&mut bytes).unwrap();
    bytes
}

/// pdf-extract is asked for a thin page only where the page's strings
/// could hold a page of text, and then reads that page alone from the
/// document lopdf loaded, giving what its whole-document reading gives.
#[test]
fn pdf_extract_reads_only_thin_pages_that_could_hold_more() {
    let asked = std::cell::Cell::new(0);
    let counted = || {
        asked.set(asked.get() + 1);
        Ok(())
    };
    // "Hi": thin, and two glyphs are all the page could show.
    let bytes = text_page_pdf("BT /F1 12 Tf 72 700 Td (Hi) Tj ET");
    let doc = lopdf::Document::load_mem(&bytes).unwrap();
    let checks = FallbackChecks {
        safe: &counted,
        doc: &|| Some(&doc),
    };
    let pages = page_texts(&bytes, None, SCAN_TEXT_CHARS, &checks).unwrap().pages;
    assert_eq!(pages[0].trim(), "Hi");
    assert_eq!(asked.get(), 0, "pdf-extract was asked for a page of two glyphs");
    // Forty glyphs drawn where no page shows them: thin for pdf_oxide,
    // but the strings could hold more, so pdf-extract is asked.
    let hidden = format!(
        "BT /F1 12 Tf 72 700 Td (Hi) Tj 3 Tr 72 -900 Td ({}) Tj ET",
        "w".repeat(40)
    );
    let bytes = text_page_pdf(&hidden);
    let doc = lopdf::Document::load_mem(&bytes).unwrap();
    let checks = FallbackChecks {
        safe: &counted,
        doc: &|| Some(&doc),
    };
    page_texts(&bytes, None, SCAN_TEXT_CHARS, &checks).unwrap();
    // pdf_oxide leaves out the line drawn off the page, so the page is thin.
    let oxide = pdf_oxide::document::PdfDocument::from_bytes(bytes.clone())
        .unwrap()
        .extract_text(0)
        .unwrap();
    assert!(visible(&oxide) < SCAN_TEXT_CHARS, "{oxide:?}");
    assert_eq!(
        asked.get(),
        1,
        "pdf-extract was not asked for a thin page that could hold more"
    );

    // One page read from the loaded document is that page of the whole
    // reading.
    let handbook = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/demo/docs/operations-handbook.pdf"
    ))
    .unwrap();
    let doc = lopdf::Document::load_mem(&handbook).unwrap();
    let whole = pdf_extract::extract_text_from_mem_by_pages(&handbook).unwrap();
    let checks = FallbackChecks {
        safe: &counted,
        doc: &|| Some(&doc),
    };
    let mut fallback = Fallback::new(&handbook, None, &checks);
    for (i, page) in whole.iter().enumerate() {
        assert_eq!(fallback.page(i, whole.len()).as_ref(), Some(page));
    }
    assert!(fallback.pages.is_none(), "the whole document was read");
}
