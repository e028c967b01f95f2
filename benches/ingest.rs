//! Ingest throughput: walking and reading a tree, re-ingesting it when
//! nothing changed, counting tokens with the default model's tokenizer,
//! and the tree-sitter outlines alone.
//!
//! Run: `cargo bench --bench ingest`. The tree is generated: 400 source
//! files of 200 lines (about 8 MB). The token bench needs the default model
//! in the cache (`scout models --fetch`) and is skipped without it. Figures
//! are per whole tree; compare ratios within one run. `SCOUT_BENCH_TREE=DIR`
//! runs the outline bench over the source files of a real tree instead
//! (one core: what outlines cost an ingest in CPU time).

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use scout::corpus::Corpus;
use scout::engine::llamacpp::LlamaCppTokenizer;
use scout::ingest::WalkOptions;
use scout::model::store;
use scout::prompt::Tokenizer;
use scout::tasks::ingest::{document_tokens, ingest};

fn tree(root: &Path) -> u64 {
    let mut bytes = 0;
    for i in 0..400 {
        let dir = root.join(format!("pkg{}", i % 20));
        std::fs::create_dir_all(&dir).unwrap();
        let text: String = (0..200)
            .map(|l| format!("def handler_{i}_{l}(request):\n    return respond(request, code={l})  # {i}\n"))
            .collect();
        bytes += text.len() as u64;
        std::fs::write(dir.join(format!("mod_{i}.py")), text).unwrap();
    }
    bytes
}

fn bench_ingest(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tree");
    let bytes = tree(&root);
    let roots = vec![root];
    let opts = WalkOptions::default();
    let mut group = c.benchmark_group("ingest");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(bytes));
    group.bench_function("walk+read+store (fresh corpus)", |b| {
        b.iter(|| {
            let store = tempfile::tempdir().unwrap();
            let mut corpus = Corpus::open(&store.path().join("c.db")).unwrap();
            ingest(&mut corpus, &roots, &opts, None, &mut |_| {}).unwrap().documents
        });
    });
    let store = tempfile::tempdir().unwrap();
    let mut corpus = Corpus::open(&store.path().join("c.db")).unwrap();
    ingest(&mut corpus, &roots, &opts, None, &mut |_| {}).unwrap();
    group.bench_function("re-ingest, nothing changed", |b| {
        b.iter(|| ingest(&mut corpus, &roots, &opts, None, &mut |_| {}).unwrap().reused);
    });
    let model = store::default_model_path();
    if model.is_file() {
        let tokenizer = LlamaCppTokenizer::load(&model).unwrap();
        group.bench_function("count tokens (no cache)", |b| {
            b.iter(|| {
                let store = tempfile::tempdir().unwrap();
                let mut fresh = Corpus::open(&store.path().join("c.db")).unwrap();
                ingest(&mut fresh, &roots, &opts, None, &mut |_| {}).unwrap();
                document_tokens(&mut fresh, &tokenizer as &dyn Tokenizer).unwrap().len()
            });
        });
    } else {
        eprintln!(
            "skipping the token bench: no default model at {} (scout models --fetch)",
            model.display()
        );
    }
    group.finish();
    bench_outlines(c, &dir.path().join("tree"));
}

/// Outlines alone (tree-sitter parse and definition walk), over the
/// source files of `SCOUT_BENCH_TREE` or the generated tree.
fn bench_outlines(c: &mut Criterion, generated: &Path) {
    let root = std::env::var_os("SCOUT_BENCH_TREE").map_or_else(|| generated.to_path_buf(), Into::into);
    let files: Vec<(&str, String)> = ignore::WalkBuilder::new(&root)
        .build()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let language = scout::ingest::code_language(&e.path().to_string_lossy())?;
            Some((language, std::fs::read_to_string(e.path()).ok()?))
        })
        .collect();
    let bytes: u64 = files.iter().map(|(_, t)| t.len() as u64).sum();
    let mut group = c.benchmark_group("outlines");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(bytes));
    let limit = std::time::Duration::from_secs(10);
    group.bench_function(format!("{} source files of {}", files.len(), root.display()), |b| {
        b.iter(|| {
            files
                .iter()
                .filter_map(|(language, text)| scout::ingest::outline::outline(language, text, limit).ok())
                .count()
        });
    });
    group.finish();
}

criterion_group!(benches, bench_ingest);
criterion_main!(benches);
