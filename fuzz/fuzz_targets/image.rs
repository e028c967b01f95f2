//! The image path on arbitrary bytes: the header probe, the limited open
//! and the decode either succeed with consistent sizes or fail typed;
//! nothing allocates past the limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scout::ingest::image;

/// Small enough that libFuzzer's memory cap is never the limit that holds.
const MAX_PIXELS: u64 = 4_000_000;

fuzz_target!(|data: &[u8]| {
    let _ = image::probe(data);
    let Ok(opened) = image::open(data, MAX_PIXELS) else {
        return;
    };
    assert!(opened.pixels() <= MAX_PIXELS);
    let tiling = scout::model::vision::llama4_tiling(opened.info.width, opened.info.height);
    assert!(tiling.tokens > 0 || opened.pixels() == 0);
    if let Ok(img) = image::decode(data, &opened) {
        assert_eq!((img.width(), img.height()), (opened.info.width, opened.info.height));
    }
});
