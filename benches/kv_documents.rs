//! Document-granular KV reuse (`--kv-reuse documents`) after an edit in the
//! middle of a corpus: time to first token and answer quality against a
//! full read and against prefix reuse, for each recompute share.
//!
//! Run: `cargo bench --bench kv_documents` (the default model, fetched on
//! first use; about 15 minutes on 2 cores). The corpus is seven of scout's
//! own source files at a fixed commit (about 7,000 tokens, one context of
//! the default model); the edit inserts three lines in the middle of the
//! fourth file. Each configuration starts from the KV state of the corpus
//! before the edit, saved on disk as a first question would have left it,
//! and answers 20 fixed questions greedily: the first question's time to
//! first token is the cost of the shortcut; the answers and the first
//! answer token's distribution are compared with a full read's (exact
//! matches, and the mean KL divergence from the full read's distribution).
//! A second scenario moves the edited file to the end, as scout's git
//! order does with a file whose last commit is newest (time only).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use scout::engine::llamacpp::{LlamaCppEngine, LlamaCppOptions};
use scout::engine::{ChatMessage, Engine, GenerateParams, Generation, Role};
use scout::kv::disk::DiskTier;
use scout::kv::documents::KvReuse;

/// A line of the report on standard output.
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

const COMMIT: &str = "c576846";
const FILES: [&str; 7] = [
    "src/kv/usage.rs",
    "src/engine/threads.rs",
    "src/kv/tier.rs",
    "src/kv/host.rs",
    "src/engine/llamacpp/sequence.rs",
    "src/engine/llamacpp/template.rs",
    "src/kv/plan/machine.rs",
];
const EDITED: usize = 3;
const QUESTIONS: [&str; 20] = [
    "What does the free_cores function return?",
    "Which struct counts the tokens reused, restored and prefilled?",
    "Which trait do both KV tiers implement?",
    "Which entry does the host tier evict first when it is full?",
    "What magic number does check_state_file expect?",
    "Which version of the state file does check_state_file accept?",
    "Which function turns scout's token ids into llama.cpp tokens?",
    "What does Sequence0 wrap?",
    "What does the cut method of Sequence0 do?",
    "Why does the chat template render placeholders?",
    "What does memory_bandwidth measure?",
    "Which field counts tokens taken from another sequence of the same batch?",
    "What happens to a state larger than the host tier's whole budget?",
    "What does pinning an entry do?",
    "Which counters does a tier keep?",
    "What is unsaved_tokens?",
    "How are two KvUse values added?",
    "What does trims_content find out?",
    "What does the save method of Sequence0 return?",
    "Which tier is shared between processes?",
];
const SHARES: [f64; 6] = [0.0, 0.05, 0.1, 0.25, 0.5, 1.0];

fn main() {
    let model = scout::model::store::resolve(None, &mut |l| eprintln!("{l}")).expect("the default model");
    let files: Vec<(String, String)> = FILES
        .iter()
        .map(|f| {
            let out = Command::new("git")
                .args(["show", &format!("{COMMIT}:{f}")])
                .output()
                .expect("git");
            assert!(
                out.status.success(),
                "git show {COMMIT}:{f}: run from scout's own clone"
            );
            ((*f).to_owned(), String::from_utf8(out.stdout).unwrap())
        })
        .collect();
    let mut edited = files.clone();
    let text = &mut edited[EDITED].1;
    let middle = text[..text.len() / 2].rfind('\n').unwrap() + 1;
    text.insert_str(
        middle,
        "// Changed in this release: entries pinned by a corpus are kept\n\
         // even when the budget shrinks below them.\n\
         pub const KEEP_PINNED_OVER_BUDGET: bool = true;\n",
    );
    let mut moved = edited.clone();
    let last = moved.remove(EDITED);
    moved.push(last);
    let (old, new, new_moved) = (corpus(&files), corpus(&edited), corpus(&moved));

    let tmp = tempfile::tempdir().unwrap();
    let before = tmp.path().join("before");
    {
        let mut e = engine(&model, Some(&before), KvReuse::Prefix, 0.0);
        let g = ask(&mut e, &old, QUESTIONS[0]);
        eprintln!(
            "corpus before the edit: {} prompt tokens, read in {:.1} s and saved",
            g.prompt_tokens,
            g.prefill_ms as f64 / 1000.0
        );
    }

    out!("## Time to first token after an edit in the middle (one question)\n");
    out!("| corpus | reuse | kept | moved | recomputed | prefilled | first token |");
    out!("|---|---|---|---|---|---|---|");
    let mut configs: Vec<(String, KvReuse, f64, bool)> = vec![
        ("full read".into(), KvReuse::Prefix, 0.0, false),
        ("prefix".into(), KvReuse::Prefix, 0.0, true),
    ];
    configs.extend(SHARES.iter().map(|&s| {
        (
            format!("documents, {:.0}% recomputed", s * 100.0),
            KvReuse::Documents,
            s,
            true,
        )
    }));
    let mut results = Vec::new();
    for (label, reuse, share, stored) in &configs {
        let dir = stored.then(|| copy_dir(&before, &tmp.path().join("run")));
        let mut e = engine(&model, dir.as_deref(), *reuse, *share);
        let started = Instant::now();
        let answers: Vec<Generation> = QUESTIONS.iter().map(|q| ask(&mut e, &new, q)).collect();
        let first = &answers[0];
        let kv = first.kv;
        out!(
            "| edited in place | {label} | {} | {} | {} | {} | {:.2} s |",
            kv.reused_tokens + kv.restored_tokens,
            kv.shifted_tokens,
            kv.recomputed_tokens,
            kv.prefilled_tokens,
            first.ttft_ms as f64 / 1000.0
        );
        eprintln!("{label}: 20 questions in {:.0} s", started.elapsed().as_secs_f64());
        results.push((label.clone(), answers));
    }
    for (label, reuse, share, stored) in configs.iter().filter(|c| c.3 || c.0 == "full read").take(4) {
        let dir = stored.then(|| copy_dir(&before, &tmp.path().join("run")));
        let mut e = engine(&model, dir.as_deref(), *reuse, *share);
        let g = ask(&mut e, &new_moved, QUESTIONS[0]);
        out!(
            "| edited file moved to the end | {label} | {} | {} | {} | {} | {:.2} s |",
            g.kv.reused_tokens + g.kv.restored_tokens,
            g.kv.shifted_tokens,
            g.kv.recomputed_tokens,
            g.kv.prefilled_tokens,
            g.ttft_ms as f64 / 1000.0
        );
    }

    out!("\n## Answer quality against a full read (20 questions, greedy)\n");
    out!("| reuse | same answer | mean KL of the first token (nats) | same first token |");
    out!("|---|---|---|---|");
    let reference = &results[0].1;
    for (label, answers) in &results[1..] {
        let same = answers.iter().zip(reference).filter(|(a, r)| a.text == r.text).count();
        let kl: f64 = answers
            .iter()
            .zip(reference)
            .map(|(a, r)| kl(&r.first_logprobs, &a.first_logprobs))
            .sum::<f64>()
            / answers.len() as f64;
        let top = answers
            .iter()
            .zip(reference)
            .filter(|(a, r)| a.first_logprobs.first().map(|t| t.0) == r.first_logprobs.first().map(|t| t.0))
            .count();
        out!(
            "| {label} | {same}/{} | {kl:.4} | {top}/{} |",
            answers.len(),
            answers.len()
        );
    }
}

/// Each file under a header line, as one system message.
fn corpus(files: &[(String, String)]) -> String {
    let mut out = String::from("Answer questions about these source files.\n\n");
    for (path, text) in files {
        for piece in ["### FILE ", path, "\n", text, "\n"] {
            out.push_str(piece);
        }
    }
    out
}

fn engine(model: &Path, disk: Option<&Path>, reuse: KvReuse, share: f64) -> LlamaCppEngine {
    LlamaCppEngine::load(
        model,
        LlamaCppOptions {
            threads: scout::engine::threads::free_cores().max(1),
            kv_disk: disk.map(|d| DiskTier::new(d.to_path_buf(), 8 << 30)),
            kv_host_bytes: 4 << 30,
            kv_reuse: reuse,
            kv_recompute: share,
            ..LlamaCppOptions::default()
        },
    )
    .expect("load the model")
}

fn ask(e: &mut LlamaCppEngine, corpus: &str, question: &str) -> Generation {
    let messages = [
        ChatMessage::new(Role::System, corpus),
        ChatMessage::new(Role::User, format!("{question} Answer in one sentence.")),
    ];
    let params = GenerateParams {
        max_tokens: 32,
        first_logprobs: usize::MAX,
        ..GenerateParams::default()
    };
    e.generate(&messages, &params, &mut |_| {}).expect("generate")
}

/// KL(p || q) over two full distributions given as (token, log p) lists.
fn kl(p: &[(u32, f32)], q: &[(u32, f32)]) -> f64 {
    let q: std::collections::HashMap<u32, f32> = q.iter().copied().collect();
    p.iter()
        .map(|&(t, lp)| {
            let lq = q.get(&t).copied().unwrap_or(f32::NEG_INFINITY);
            f64::from(lp).exp() * (f64::from(lp) - f64::from(lq).max(-100.0))
        })
        .sum()
}

/// A fresh copy of the stored state folder (each configuration starts
/// from the state before the edit; a run saves its own).
fn copy_dir(from: &Path, to: &Path) -> PathBuf {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        if entry.path().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
    to.to_path_buf()
}
