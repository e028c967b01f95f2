//! Prompt layout throughput: rendering documents (boundaries, escaping,
//! line markers) and packing them into windows, without a model.
//!
//! Run: `cargo bench --bench layout`. The figure is the time to lay out a
//! synthetic corpus of 200 files x 300 lines (about 2.4 MB of text); it
//! bounds how much `scout ask` spends outside the model per question.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use scout::corpus::StoredDocument;
use scout::ingest::{split_text, DocumentKind};
use scout::prompt::{order_documents, plan_windows, render_document, BlockTokens};

fn corpus() -> Vec<StoredDocument> {
    (0..200)
        .map(|i| {
            let path = format!("src/module_{i:03}.rs");
            let text: String = (0..300)
                .map(|l| format!("    let value_{l} = compute({i}, {l}); // step {l}\n"))
                .collect();
            StoredDocument {
                id: i,
                path: path.clone(),
                kind: DocumentKind::Code,
                language: Some("rust".into()),
                content_hash: String::new(),
                bytes: text.len() as u64,
                modified: i % 17,
                replaced_chars: 0,
                image: None,
                segments: split_text(&path, &text),
                symbols: Vec::new(),
                title: None,
                commits: 0,
            }
        })
        .collect()
}

fn bench_layout(c: &mut Criterion) {
    let docs = corpus();
    let bytes: u64 = docs.iter().map(|d| d.bytes).sum();
    let mut group = c.benchmark_group("layout");
    group.throughput(Throughput::Bytes(bytes));
    group.bench_function("order+render", |b| {
        b.iter(|| {
            let mut d = docs.clone();
            order_documents(&mut d);
            d.iter()
                .map(|d| render_document(d, "0123456789abcdef").render().len())
                .sum::<usize>()
        });
    });
    let blocks: Vec<_> = docs.iter().map(|d| render_document(d, "0123456789abcdef")).collect();
    // Roughly 4 bytes a token, as a stand-in for a real tokenizer.
    let counts: Vec<BlockTokens> = blocks
        .iter()
        .map(|b| BlockTokens {
            header: 12,
            pieces: b.pieces.iter().map(|(_, p)| (p.len() / 4) as u32).collect(),
            footer: 8,
        })
        .collect();
    group.bench_function("plan_windows_8k", |b| {
        b.iter(|| plan_windows(&blocks, &counts, 7000).map(|w| w.len()));
    });
    group.finish();
}

criterion_group!(benches, bench_layout);
criterion_main!(benches);
