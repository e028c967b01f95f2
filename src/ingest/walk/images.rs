//! Image files to OCR, read on threads of their own: a walk worker that
//! meets one hands its path over and goes on with the text, so a
//! repository's text is not held up by tesseract (about 0.1-0.5 s of CPU
//! an image). Each image is read whole there (its size checked, decoded,
//! OCR'd, counted like any file) and sent on as the walk's workers send
//! theirs. Scanned PDF pages stay with the worker that reads the PDF: the
//! pages to OCR are known only once it is read.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{mpsc, Mutex};

use super::read_entry;
use crate::ingest::image::IMAGE_EXTENSIONS;
use crate::ingest::read::extension;
use crate::ingest::{Document, WalkItem, WalkOptions};

/// One image to read: its path and its shown path.
pub(super) type Image = (PathBuf, String);

/// Whether the walk hands `path` to the image threads: an image file,
/// with OCR on.
pub(super) fn is_deferred(path: &Path, opts: &WalkOptions) -> bool {
    opts.ocr_lang.is_some() && IMAGE_EXTENSIONS.contains(&extension(path).as_str())
}

/// How many image threads a walk on `walkers` threads gets: half as many,
/// at least one. tesseract runs on one core each (see `ocr`), so on a
/// 2-core machine one image is read beside the text at a time.
pub(super) fn threads(walkers: usize) -> usize {
    (walkers / 2).max(1)
}

/// One image thread: reads the images it is given until the walk is done
/// (every sender gone), running `each_document` on each document as the
/// walk workers do.
pub(super) fn read_images(
    queue: &Mutex<mpsc::Receiver<Image>>,
    opts: &WalkOptions,
    corpus_bytes: &AtomicU64,
    each_document: &(dyn Fn(&Document) + Sync),
    tx: &mpsc::Sender<Vec<WalkItem>>,
) {
    loop {
        let next = queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner).recv();
        let Ok((path, shown)) = next else { return };
        let item = read_entry(&path, shown, opts, corpus_bytes);
        if let WalkItem::Document(doc) = &item {
            each_document(doc);
        }
        if tx.send(vec![item]).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::super::{walk, walk_then, WalkItem, WalkOptions};

    fn scan() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/scans/handbook-page2.png")
    }

    #[test]
    fn an_image_does_not_hold_up_the_text_after_it() {
        // Roots are walked one after another, on one walk thread here:
        // read in line, the image's OCR (a tesseract run) would come
        // before the text of the next root.
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("notes.txt");
        std::fs::write(&text, "read while the image is OCR'd\n").unwrap();
        let opts = WalkOptions {
            ocr_lang: Some("eng".into()),
            threads: 1,
            ..WalkOptions::default()
        };
        let order = std::sync::Mutex::new(Vec::new());
        let mut items = Vec::new();
        walk_then(
            &[scan(), text],
            &opts,
            &|doc| order.lock().unwrap().push(doc.path.clone()),
            |item| items.push(item),
        );
        let order = order.into_inner().unwrap();
        assert_eq!(items.len(), 2);
        let image = items
            .iter()
            .find_map(|i| match i {
                WalkItem::Document(d) if d.kind == crate::ingest::DocumentKind::Image => Some(d),
                _ => None,
            })
            .expect("the image is a document");
        assert_eq!(
            image.ocr_outcomes,
            vec!["ok"],
            "tesseract is needed here (scripts/setup)"
        );
        assert!(image.segments.iter().any(|s| s.text.contains("Priya Raman")));
        assert!(order[0].ends_with("notes.txt"), "{order:?}");
    }

    #[test]
    fn with_ocr_off_images_are_read_by_the_walk_as_before() {
        let mut outcomes = Vec::new();
        walk(&[scan()], &WalkOptions::default(), |item| {
            if let WalkItem::Document(d) = item {
                outcomes.extend(d.ocr_outcomes);
            }
        });
        assert_eq!(outcomes, vec!["ocr_off"]);
    }

    #[test]
    fn half_the_walk_threads_read_images_and_never_none() {
        assert_eq!((super::threads(1), super::threads(2), super::threads(16)), (1, 1, 8));
    }
}
