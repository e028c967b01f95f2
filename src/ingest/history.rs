//! A repository's file histories at its HEAD, for the prefix-stable
//! document order: read from git (only the most recent commits, when
//! bounded), or taken from what an earlier ingest of the same checkout
//! kept.
//!
//! Kept per repository (its top folder) and bound in one file in a cache
//! folder: the commit it was read at, and each path's last change and
//! commit count. A new corpus of the same checkout at the same commit reads no
//! history; at a later commit that descends from the kept one, only the
//! commits since. A kept file that cannot be read is read again from git.
//!
//! Never writes to the repository.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use super::git::{self, FileHistory, Repo};

/// How much history is read, and where it is kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryOptions {
    /// Read only this many of the most recent commits; `None`: all of
    /// history.
    pub commits: Option<usize>,
    /// Folder histories are kept in for the next ingest of the same
    /// checkout; `None`: kept nowhere.
    pub cache: Option<PathBuf>,
}

/// Commits read by default: on ruff (16,863 commits) the last 2,000 are
/// about eight months and take a seventh of the whole log's time, and the
/// order's prefix stability over its recent commits is the same (see
/// BENCHMARKS.md, "Ingest of a git checkout").
pub const DEFAULT_COMMITS: usize = 2000;

/// How a history was had.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Read from git.
    #[default]
    Read,
    /// Kept by an earlier ingest at the same commit.
    Cached,
    /// Kept at an earlier commit, and the commits since read from git.
    Extended,
}

/// Each file's history at HEAD, by path relative to the repository's top.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History {
    pub files: HashMap<String, FileHistory>,
    /// `Some(n)` when only the last `n` commits were read and the
    /// repository has more: every file in HEAD's tree that they do not
    /// touch is dated a second before the oldest of them, with no commits,
    /// so that those files go first, by path.
    pub bounded: Option<usize>,
    pub source: Source,
}

/// Most histories kept in the cache folder; the least recently written go
/// first.
const KEPT: usize = 32;

/// The history of `repo` at its HEAD, as `opts` asks: from the cache when
/// it holds this repository at this commit (or an ancestor of it), else
/// from git (then kept). `None` when git fails or runs past `limit`.
#[must_use]
pub fn history(repo: &Repo, opts: &HistoryOptions, limit: Duration) -> Option<History> {
    let file = opts.cache.as_deref().map(|dir| cache_file(dir, repo, opts.commits));
    let kept = file.as_deref().and_then(|f| load(f, repo, opts.commits));
    let history = match kept {
        Some((head, history)) if head == repo.head => History {
            source: Source::Cached,
            ..history
        },
        Some((head, mut history)) if git::is_ancestor(repo, &head) => {
            let since = git::last_changes(repo, Some(&head), None, limit)?;
            for (path, h) in since.files {
                let entry = history.files.entry(path).or_insert(FileHistory {
                    last: h.last,
                    commits: 0,
                });
                entry.last = h.last;
                entry.commits += h.commits;
            }
            History {
                source: Source::Extended,
                ..history
            }
        }
        _ => read(repo, opts.commits, limit)?,
    };
    if history.source != Source::Cached {
        if let Some(f) = &file {
            // A cache that cannot be written costs the next ingest a read.
            let _ = save(f, repo, opts.commits, &history);
        }
    }
    Some(history)
}

/// Reads the history from git: all of it, or the last `commits` commits
/// and the files of HEAD's tree they do not touch.
fn read(repo: &Repo, commits: Option<usize>, limit: Duration) -> Option<History> {
    let log = git::last_changes(repo, None, commits, limit)?;
    let mut files = log.files;
    // Exactly `n` read may be the whole history: then the fill below
    // finds every file already dated.
    let bounded = commits.filter(|&n| log.commits >= n);
    if bounded.is_some() {
        let floor = log.oldest.unwrap_or(0);
        for path in git::tracked(repo, limit)? {
            files.entry(path).or_insert(FileHistory {
                last: floor - 1,
                commits: 0,
            });
        }
    }
    Some(History {
        files,
        bounded,
        source: Source::Read,
    })
}

/// The file a history of `repo` read with the bound `commits` is kept in.
fn cache_file(dir: &Path, repo: &Repo, commits: Option<usize>) -> PathBuf {
    let key = blake3::hash(repo.top.as_os_str().as_encoded_bytes()).to_hex();
    dir.join(format!("{}-{}.history", &key[..32], bound_label(commits)))
}

/// First field of a kept history.
const MAGIC: &str = "scout git history 1";

/// What a bound is written as.
fn bound_label(commits: Option<usize>) -> String {
    commits.map_or_else(|| "all".to_owned(), |n| n.to_string())
}

/// A kept history of `repo` read with the bound `commits`: its commit and
/// history. `None` when there is none, it is damaged, or it was read with
/// another bound or for another folder.
fn load(file: &Path, repo: &Repo, commits: Option<usize>) -> Option<(String, History)> {
    let bytes = std::fs::read(file).ok()?;
    let mut fields = bytes.split(|&b| b == 0).map(|f| std::str::from_utf8(f).ok());
    let mut next = || fields.next().flatten();
    if next()? != MAGIC {
        return None;
    }
    let head = next()?.to_owned();
    let (bound, top, bounded) = (next()?, next()?, next()?);
    if bound != bound_label(commits) || Path::new(top) != repo.top {
        return None;
    }
    let bounded = match bounded {
        "" => None,
        n => Some(n.parse().ok()?),
    };
    let count: usize = next()?.parse().ok()?;
    let mut files = HashMap::with_capacity(count);
    for _ in 0..count {
        let (last, n, path) = (next()?.parse().ok()?, next()?.parse().ok()?, next()?);
        files.insert(path.to_owned(), FileHistory { last, commits: n });
    }
    Some((
        head,
        History {
            files,
            bounded,
            source: Source::Read,
        },
    ))
}

/// Keeps `history` (of `repo` at its HEAD, read with the bound `commits`)
/// in `file`, written whole or not at all; then drops the oldest kept
/// histories past [`KEPT`].
fn save(file: &Path, repo: &Repo, commits: Option<usize>, history: &History) -> std::io::Result<()> {
    let dir = file.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut out = String::new();
    let top = repo.top.to_string_lossy();
    let bounded = history.bounded.map(|n| n.to_string()).unwrap_or_default();
    let _ = write!(
        out,
        "{MAGIC}\0{}\0{}\0{top}\0{bounded}\0{}\0",
        repo.head,
        bound_label(commits),
        history.files.len()
    );
    for (path, h) in &history.files {
        let _ = write!(out, "{}\0{}\0{path}\0", h.last, h.commits);
    }
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, out.as_bytes())?;
    tmp.persist(file).map_err(|e| e.error)?;
    prune(dir);
    Ok(())
}

/// Drops the least recently written histories in `dir` past [`KEPT`].
fn prune(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut kept: Vec<(std::time::SystemTime, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "history"))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    if kept.len() <= KEPT {
        return;
    }
    kept.sort();
    for (_, path) in &kept[..kept.len() - KEPT] {
        let _ = std::fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn git_in(dir: &Path, args: &[&str], when: i64) {
        let date = format!("@{when} +0000");
        let ok = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "-c",
                "commit.gpgsign=false",
            ])
            .args(args)
            .env("GIT_AUTHOR_DATE", &date)
            .env("GIT_COMMITTER_DATE", &date)
            .status()
            .unwrap()
            .success();
        assert!(ok, "git {args:?}");
    }

    /// A repository with `old.txt` committed at t=100, then `a.rs`
    /// changed at 200, 300 and 400.
    fn repository() -> (tempfile::TempDir, Repo) {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        git_in(d, &["init", "-q"], 0);
        std::fs::write(d.join("old.txt"), "old").unwrap();
        git_in(d, &["add", "."], 0);
        git_in(d, &["commit", "-qm", "old"], 100);
        for t in [200, 300, 400] {
            std::fs::write(d.join("a.rs"), t.to_string()).unwrap();
            git_in(d, &["add", "."], 0);
            git_in(d, &["commit", "-qm", "a"], t);
        }
        let repo = git::repo(d).unwrap();
        (dir, repo)
    }

    const LIMIT: Duration = Duration::from_secs(30);

    #[test]
    fn a_bounded_history_dates_untouched_files_before_the_commits_read() {
        let (_dir, repo) = repository();
        let opts = HistoryOptions {
            commits: Some(2),
            cache: None,
        };
        let h = history(&repo, &opts, LIMIT).unwrap();
        assert_eq!(h.bounded, Some(2));
        assert_eq!(h.files["a.rs"], FileHistory { last: 400, commits: 2 });
        assert_eq!(
            h.files["old.txt"],
            FileHistory { last: 299, commits: 0 },
            "tracked, not in the last two commits: just before them"
        );
        // The recently changed file still goes last, as with all of history.
        let whole = history(&repo, &HistoryOptions::default(), LIMIT).unwrap();
        assert_eq!(whole.bounded, None);
        assert_eq!(whole.files["old.txt"], FileHistory { last: 100, commits: 1 });
        assert!(h.files["old.txt"].last < h.files["a.rs"].last);
        // A bound past the whole history reads it all, unbounded.
        let more = HistoryOptions {
            commits: Some(10),
            cache: None,
        };
        assert_eq!(history(&repo, &more, LIMIT).unwrap().files, whole.files);
    }

    #[test]
    fn a_kept_history_is_read_again_only_for_new_commits() {
        let (dir, repo) = repository();
        let cache = tempfile::tempdir().unwrap();
        let opts = HistoryOptions {
            commits: None,
            cache: Some(cache.path().to_owned()),
        };
        let first = history(&repo, &opts, LIMIT).unwrap();
        assert_eq!(first.source, Source::Read);
        let second = history(&repo, &opts, LIMIT).unwrap();
        assert_eq!(second.source, Source::Cached);
        assert_eq!(second.files, first.files);
        // Each bound is kept apart.
        let bounded = HistoryOptions {
            commits: Some(2),
            ..opts.clone()
        };
        assert_eq!(history(&repo, &bounded, LIMIT).unwrap().source, Source::Read);
        assert_eq!(history(&repo, &bounded, LIMIT).unwrap().source, Source::Cached);
        assert_eq!(history(&repo, &opts, LIMIT).unwrap().source, Source::Cached);
        // A new commit: the kept history, extended by it, is what a whole
        // read gives.
        std::fs::write(dir.path().join("b.md"), "b").unwrap();
        git_in(dir.path(), &["add", "."], 0);
        git_in(dir.path(), &["commit", "-qm", "b"], 500);
        let repo = git::repo(dir.path()).unwrap();
        let extended = history(&repo, &opts, LIMIT).unwrap();
        assert_eq!(extended.source, Source::Extended);
        let fresh = history(&repo, &HistoryOptions::default(), LIMIT).unwrap();
        assert_eq!(extended.files, fresh.files);
        assert_eq!(extended.files["b.md"], FileHistory { last: 500, commits: 1 });
        // A damaged kept file is read again from git.
        for f in std::fs::read_dir(cache.path()).unwrap() {
            std::fs::write(f.unwrap().path(), b"scout git history 1\0garbage").unwrap();
        }
        let again = history(&repo, &opts, LIMIT).unwrap();
        assert_eq!((again.source, again.files), (Source::Read, fresh.files));
    }
}
