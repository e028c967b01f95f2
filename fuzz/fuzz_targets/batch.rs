//! The batch job parser on arbitrary lines: it never panics, every
//! non-blank line becomes exactly one job (or the whole file is refused for
//! a duplicate id), and no job names a path outside the allowed root or a
//! URL.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use scout::tasks::batch::{parse_jobs, BatchError, Source};

fn root() -> &'static PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("scout-fuzz-batch-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("docs")).expect("temp dir");
        std::fs::write(dir.join("c.db"), b"").expect("temp file");
        std::env::set_current_dir(&dir).expect("cd");
        dir.canonicalize().expect("canonical")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let root = root();
    match parse_jobs(text, std::slice::from_ref(root)) {
        Ok(jobs) => {
            assert_eq!(jobs.len(), text.lines().filter(|l| !l.trim().is_empty()).count());
            for job in &jobs {
                let paths = match job.spec.source() {
                    Some(Source::Corpus(p)) => vec![p.clone()],
                    Some(Source::Paths(ps)) => ps.clone(),
                    None => Vec::new(),
                };
                for p in paths {
                    assert!(!p.to_string_lossy().contains("://"), "{p:?}");
                    let real = p.canonicalize().expect("an accepted path exists");
                    assert!(real.starts_with(root), "{p:?} escapes the root");
                }
            }
        }
        Err(BatchError::DuplicateId { .. } | BatchError::NoJobs) => {}
        Err(e) => panic!("unexpected error: {e}"),
    }
});
