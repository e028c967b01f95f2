//! Git history, where a source is inside a git repository: the commit
//! ingested, and when each file last changed and in how many commits (for
//! the prefix-stable document order: a fresh clone gives every file the
//! same modification time, its history does not).
//!
//! Runs `git` itself (a missing `git` or a folder outside any repository
//! is simply no history). What the order needs of it, bounded and kept
//! between ingests, is [`super::history`].
//!
//! Never writes to the repository.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::child;

/// A repository a source lies in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repo {
    /// The working tree's top folder, absolute.
    pub top: PathBuf,
    /// The checked-out commit.
    pub head: String,
}

fn git(dir: &Path, args: &[&str], limit: Duration) -> Option<Vec<u8>> {
    let done = child::run(Command::new("git").arg("-C").arg(dir).args(args), b"", limit).ok()?;
    done.status.success().then_some(done.stdout)
}

/// The repository `path` (a folder or file) lies in, if any.
#[must_use]
pub fn repo(path: &Path) -> Option<Repo> {
    let dir = if path.is_dir() { path } else { path.parent()? };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    // Without a `.git` above it (and no GIT_DIR to say otherwise), git
    // would only say so: not worth starting it.
    if std::env::var_os("GIT_DIR").is_none()
        && !dir
            .canonicalize()
            .ok()?
            .ancestors()
            .any(|a| a.join(".git").symlink_metadata().is_ok())
    {
        return None;
    }
    let out = git(dir, &["rev-parse", "--show-toplevel", "HEAD"], Duration::from_secs(10))?;
    let out = String::from_utf8_lossy(&out);
    let mut lines = out.lines().map(str::trim);
    let (top, head) = (lines.next()?, lines.next()?);
    Some(Repo {
        top: PathBuf::from(top),
        head: head.to_owned(),
    })
}

/// A file's history: when it last changed in a commit (seconds since the
/// epoch), and in how many commits it changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileHistory {
    pub last: i64,
    pub commits: u32,
}

/// What a reading of the log gave.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Log {
    /// Each file's history, by path relative to the repository's top.
    pub files: HashMap<String, FileHistory>,
    /// Commits read.
    pub commits: usize,
    /// The earliest commit time among them.
    pub oldest: Option<i64>,
}

/// The log over all of history, or only the commits after `since` (which
/// must be an ancestor of HEAD: see [`is_ancestor`]), and at most the
/// `max_count` most recent of those. `None` when git fails or runs past
/// `limit`.
#[must_use]
pub fn last_changes(repo: &Repo, since: Option<&str>, max_count: Option<usize>, limit: Duration) -> Option<Log> {
    let range = since.map(|s| format!("{s}..HEAD"));
    let count = max_count.map(|n| format!("--max-count={n}"));
    let mut args = vec!["log", "--format=%x00%ct", "--name-only", "--no-renames", "-z"];
    args.extend(count.as_deref());
    args.extend(range.as_deref());
    let out = git(&repo.top, &args, limit)?;
    Some(parse_log(&out))
}

/// The paths of every file in HEAD's tree, relative to the repository's
/// top.
#[must_use]
pub fn tracked(repo: &Repo, limit: Duration) -> Option<Vec<String>> {
    let out = git(
        &repo.top,
        &["ls-tree", "-r", "-z", "--full-tree", "--name-only", "HEAD"],
        limit,
    )?;
    Some(
        out.split(|&b| b == 0)
            .filter(|p| !p.is_empty())
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect(),
    )
}

/// Whether `commit` is HEAD or one of its ancestors (false when git cannot
/// say: an unknown commit, a shallow clone that lacks it).
#[must_use]
pub fn is_ancestor(repo: &Repo, commit: &str) -> bool {
    git(
        &repo.top,
        &["merge-base", "--is-ancestor", commit, "HEAD"],
        Duration::from_secs(10),
    )
    .is_some()
}

/// Parses `git log --format=%x00%ct --name-only -z`, newest commit first.
/// Split at NULs, each commit is an empty field (the `%x00`), its time,
/// then its paths (the first after a newline). The first time a path
/// appears is its last change. (A time is only read right after an empty
/// field, so a file named `2024` stays a path.) Every appearance is a
/// commit that changed it.
fn parse_log(out: &[u8]) -> Log {
    let mut log = Log::default();
    let mut current: Option<i64> = None;
    let mut expect_time = false;
    for field in out.split(|&b| b == 0) {
        if field.is_empty() {
            expect_time = true;
            continue;
        }
        let text = String::from_utf8_lossy(field);
        if std::mem::take(&mut expect_time) {
            if let Ok(t) = text.trim().parse::<i64>() {
                current = Some(t);
                log.commits += 1;
                log.oldest = Some(log.oldest.map_or(t, |o| o.min(t)));
                continue;
            }
        }
        let path = text.trim_start_matches('\n');
        if let (Some(t), false) = (current, path.is_empty()) {
            log.files
                .entry(path.to_owned())
                .or_insert(FileHistory { last: t, commits: 0 })
                .commits += 1;
        }
    }
    log
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_commit_touching_a_path_is_its_last_change() {
        // Two commits, newest first, as git prints them.
        let log = b"\x00200\x00\nsrc/a.rs\x002024\x00\x00100\x00\nsrc/a.rs\x00old.txt\x00";
        let Log {
            files: t,
            commits,
            oldest,
        } = parse_log(log);
        assert_eq!((commits, oldest), (2, Some(100)));
        assert_eq!(t["src/a.rs"], FileHistory { last: 200, commits: 2 });
        assert_eq!(
            t["2024"],
            FileHistory { last: 200, commits: 1 },
            "a file named like a time is a path"
        );
        assert_eq!(t["old.txt"], FileHistory { last: 100, commits: 1 });
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn a_folder_outside_any_repository_has_no_history() {
        // (Dating from real history is tested end to end in tests/ingest.rs.)
        let dir = tempfile::tempdir().unwrap();
        assert!(repo(dir.path()).is_none());
    }
}
