//! Prefix stability: how much of a corpus's prompt survives a commit.
//!
//! A KV cache can only keep the longest unchanged prefix of a prompt. This
//! replays a repository's recent commits in a scratch worktree, ingests
//! each into one corpus (only what changed is read again) and measures,
//! per commit, the share of the prompt's document tokens that lie before
//! the first document that changed: once with documents in path order,
//! once in scout's order (least recently changed first, dated from git);
//! and the share a cache keyed by document would keep (every unchanged
//! document, wherever it now sits).
//!
//! Never touches the repository's working tree: commits are checked out
//! in a scratch worktree.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

use crate::corpus::{Corpus, StoredDocument};
use crate::ingest::WalkOptions;
use crate::prompt::{order_documents, render_document, Tokenizer};

use super::ingest::{document_tokens, ingest};

#[derive(Debug, Clone, Serialize)]
pub struct CommitStability {
    pub commit: String,
    /// Documents added, changed or removed since the previous commit.
    pub changed_documents: u64,
    pub total_tokens: u64,
    /// Share of tokens before the first changed document, path order.
    pub path_order: f64,
    /// The same in scout's order.
    pub scout_order: f64,
    /// Share of tokens in documents the previous commit had unchanged,
    /// wherever they sit: what KV kept by document could reuse.
    pub by_document: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct StabilityReport {
    pub repository: String,
    pub commits: Vec<CommitStability>,
    pub median_path_order: f64,
    pub median_scout_order: f64,
    pub median_by_document: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum StabilityError {
    #[error("git {args}: {detail}")]
    Git { args: String, detail: String },
    #[error(transparent)]
    Corpus(#[from] crate::corpus::CorpusError),
    #[error("{0} has fewer than 2 commits to compare")]
    TooFewCommits(String),
}

fn git(dir: &Path, args: &[&str]) -> Result<String, StabilityError> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .map_err(|e| StabilityError::Git {
            args: args.join(" "),
            detail: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(StabilityError::Git {
            args: args.join(" "),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// A prompt's documents, in order: each rendered block's hash and tokens.
type Sequence = Vec<(blake3::Hash, u64)>;

/// Each document's rendered block as (hash, tokens), in the order given.
fn sequence(docs: &[StoredDocument], salt: &str, tokens: &std::collections::HashMap<String, u64>) -> Sequence {
    docs.iter()
        .map(|d| {
            let block = render_document(d, salt);
            let mut h = blake3::Hasher::new();
            h.update(block.header(None).as_bytes());
            for (_, p) in &block.pieces {
                h.update(p.as_bytes());
            }
            (h.finalize(), tokens.get(&d.path).copied().unwrap_or(0))
        })
        .collect()
}

/// The share of `now`'s tokens in blocks before the first that differs
/// from `before`.
fn surviving(before: &[(blake3::Hash, u64)], now: &[(blake3::Hash, u64)]) -> f64 {
    let total: u64 = now.iter().map(|b| b.1).sum();
    let kept: u64 = before
        .iter()
        .zip(now)
        .take_while(|(a, b)| a.0 == b.0)
        .map(|(_, b)| b.1)
        .sum();
    if total == 0 {
        1.0
    } else {
        kept as f64 / total as f64
    }
}

/// The share of `now`'s tokens in blocks `before` also had, anywhere
/// (each block of `before` matched at most once).
fn reusable(before: &[(blake3::Hash, u64)], now: &[(blake3::Hash, u64)]) -> f64 {
    let total: u64 = now.iter().map(|b| b.1).sum();
    let mut left: std::collections::HashMap<blake3::Hash, usize> = std::collections::HashMap::new();
    for b in before {
        *left.entry(b.0).or_default() += 1;
    }
    let kept: u64 = now
        .iter()
        .filter(|b| match left.get_mut(&b.0) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        })
        .map(|b| b.1)
        .sum();
    if total == 0 {
        1.0
    } else {
        kept as f64 / total as f64
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        f64::midpoint(v[n / 2 - 1], v[n / 2])
    }
}

/// Replays the last `commits` commits of `repo` (first parents, oldest
/// first) and measures prefix stability between consecutive ones.
/// `scratch` holds the worktree and the corpus; documents are dated by
/// `history` commits of git history (`None`: all of it), as an ingest
/// would; `on_commit` is told of each commit as it is done.
pub fn prefix_stability(
    repo: &Path,
    commits: usize,
    history: Option<usize>,
    scratch: &Path,
    tokenizer: &dyn Tokenizer,
    on_commit: &mut dyn FnMut(&CommitStability),
) -> Result<StabilityReport, StabilityError> {
    let list = git(
        repo,
        &[
            "rev-list",
            "--first-parent",
            &format!("--max-count={}", commits + 1),
            "HEAD",
        ],
    )?;
    let mut ids: Vec<String> = list.lines().map(str::to_owned).collect();
    ids.reverse();
    if ids.len() < 2 {
        return Err(StabilityError::TooFewCommits(repo.display().to_string()));
    }
    let worktree: PathBuf = scratch.join("worktree");
    git(
        repo,
        &[
            "worktree",
            "add",
            "--detach",
            "--force",
            &worktree.to_string_lossy(),
            &ids[0],
        ],
    )?;
    let result = replay(repo, &ids, history, &worktree, scratch, tokenizer, on_commit);
    let _ = git(repo, &["worktree", "remove", "--force", &worktree.to_string_lossy()]);
    result
}

fn replay(
    repo: &Path,
    ids: &[String],
    history: Option<usize>,
    worktree: &Path,
    scratch: &Path,
    tokenizer: &dyn Tokenizer,
    on_commit: &mut dyn FnMut(&CommitStability),
) -> Result<StabilityReport, StabilityError> {
    let mut corpus = Corpus::open(&scratch.join("stability.scout.db"))?;
    let roots = [worktree.to_path_buf()];
    let opts = WalkOptions {
        ocr_lang: None,
        history: crate::ingest::history::HistoryOptions {
            commits: history,
            cache: None,
        },
        ..WalkOptions::default()
    };
    let mut previous: Option<(Sequence, Sequence)> = None;
    let mut rows = Vec::new();
    for id in ids {
        git(worktree, &["checkout", "--quiet", "--detach", id])?;
        let summary = ingest(&mut corpus, &roots, &opts, Some(tokenizer), &mut |_| {})?;
        let tokens: std::collections::HashMap<String, u64> = document_tokens(&mut corpus, tokenizer)?
            .into_iter()
            .map(|(p, _, n)| (p, n))
            .collect();
        let mut docs = corpus.documents()?;
        docs.sort_by(|a, b| a.path.cmp(&b.path));
        let by_path = sequence(&docs, corpus.salt(), &tokens);
        order_documents(&mut docs);
        let by_scout = sequence(&docs, corpus.salt(), &tokens);
        if let Some((path_before, scout_before)) = &previous {
            let row = CommitStability {
                commit: id[..id.len().min(12)].to_owned(),
                changed_documents: summary.added + summary.changed + summary.removed,
                total_tokens: by_path.iter().map(|b| b.1).sum(),
                path_order: surviving(path_before, &by_path),
                scout_order: surviving(scout_before, &by_scout),
                by_document: reusable(scout_before, &by_scout),
            };
            on_commit(&row);
            rows.push(row);
        }
        previous = Some((by_path, by_scout));
    }
    Ok(StabilityReport {
        repository: repo.display().to_string(),
        median_path_order: median(rows.iter().map(|r| r.path_order).collect()),
        median_scout_order: median(rows.iter().map(|r| r.scout_order).collect()),
        median_by_document: median(rows.iter().map(|r| r.by_document).collect()),
        commits: rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> blake3::Hash {
        blake3::hash(s.as_bytes())
    }

    #[test]
    fn the_prefix_ends_at_the_first_changed_block() {
        let before = [(h("a"), 10), (h("b"), 30), (h("c"), 60)];
        let now = [(h("a"), 10), (h("B"), 30), (h("c"), 60)];
        assert!((surviving(&before, &now) - 0.1).abs() < 1e-9);
        assert!((surviving(&before, &before) - 1.0).abs() < 1e-9);
        // A document added at the end leaves everything before it.
        let grown = [(h("a"), 10), (h("b"), 30), (h("c"), 60), (h("d"), 100)];
        assert!((surviving(&before, &grown) - 0.5).abs() < 1e-9);
        assert!((median(vec![0.2, 0.9, 0.5]) - 0.5).abs() < 1e-9);
        assert!((median(vec![0.2, 0.4]) - 0.3).abs() < 1e-9);
    }

    #[test]
    fn documents_are_reused_wherever_they_moved_and_each_once() {
        let before = [(h("a"), 10), (h("b"), 30), (h("c"), 60)];
        // b changed: a and c kept, whatever their place.
        let now = [(h("a"), 10), (h("c"), 60), (h("B"), 30)];
        assert!((reusable(&before, &now) - 0.7).abs() < 1e-9);
        assert!((surviving(&before, &now) - 0.1).abs() < 1e-9);
        // Two copies now of a block held once before: one is reused.
        let twice = [(h("a"), 10), (h("a"), 10)];
        assert!((reusable(&before, &twice) - 0.5).abs() < 1e-9);
        assert!((reusable(&before, &[]) - 1.0).abs() < 1e-9);
        assert!((median(vec![0.2, 0.4]) - 0.3).abs() < 1e-9);
    }
}
