//! The PDF ingest path on arbitrary bytes: every input ends as pages or a
//! typed failure, within the time limit. A panic inside the parser thread
//! is what scout catches and types (`pdf_panic`), so it is allowed there;
//! a panic anywhere else, a timeout (the worker would be killed), or
//! memory past libFuzzer's cap is a finding.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use scout::ingest::pdf::extract_pages;
use scout::ingest::SkipReason;

fuzz_target!(
    init: {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().name() != Some("pdf-parser") {
                default(info);
                std::process::abort();
            }
        }));
    },
    |data: &[u8]| {
        match extract_pages("fuzz.pdf", data.to_vec(), Duration::from_secs(5)) {
            Ok(content) => {
                for (i, page) in content.pages.iter().enumerate() {
                    assert_eq!(page.anchor.page(), Some(i as u32 + 1), "pages are numbered in order");
                    assert!(!page.text.is_empty(), "every page says something, even when blank");
                }
            }
            Err(failure) => assert!(
                failure.reason != SkipReason::PdfTimeout,
                "slow input: {}",
                failure.detail
            ),
        }
    }
);
