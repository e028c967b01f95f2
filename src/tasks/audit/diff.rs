//! `scout audit --diff REF`: the lines changed since a git revision, so
//! that an audit reports only findings on them. The files stay whole in
//! the prompt (a window holding a changed file is read as a full audit
//! reads it, and its KV is the last audit's); windows with no changed file
//! are not read at all.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    #[error("--diff {rev}: {message}")]
    Git { rev: String, message: String },
}

/// Changed line ranges (new-file numbering), by path relative to the
/// audited folder.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ChangedLines {
    pub rev: String,
    /// The audited folder as the corpus spells its paths' start.
    #[serde(skip)]
    pub prefix: String,
    pub files: BTreeMap<String, Vec<(u32, u32)>>,
    /// Each changed file's last commit time as of `rev` (seconds), so that
    /// an edit does not move it to the end of the prompt order (documents
    /// go least recently changed first): its window is then cut as the
    /// last audit cut it, and that window's prefix before it is the last
    /// audit's KV.
    #[serde(skip)]
    pub dated: BTreeMap<String, i64>,
}

/// Past this many changed files their commit times are not looked up (one
/// `git log` each); they then sort as edited files do.
const MOST_DATED: usize = 200;

fn git(folder: &Path, rev: &str, args: &[&str]) -> Result<String, DiffError> {
    let fail = |message: String| DiffError::Git {
        rev: rev.to_owned(),
        message,
    };
    let out = Command::new("git")
        .arg("-C")
        .arg(folder)
        .args(args)
        .output()
        .map_err(|e| fail(format!("running git: {e}")))?;
    if !out.status.success() {
        return Err(fail(String::from_utf8_lossy(&out.stderr).trim().to_owned()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `+c,d` of a hunk header as a line range; `None` for a pure deletion.
fn hunk_range(header: &str) -> Option<(u32, u32)> {
    let plus = header.split_whitespace().find(|w| w.starts_with('+'))?;
    let mut parts = plus[1..].split(',');
    let start: u32 = parts.next()?.parse().ok()?;
    let count: u32 = parts.next().map_or(Some(1), |c| c.parse().ok())?;
    (count > 0).then(|| (start, start + count - 1))
}

/// Parses `git diff --unified=0` output into ranges by path.
fn parse_diff(text: &str) -> BTreeMap<String, Vec<(u32, u32)>> {
    let mut files: BTreeMap<String, Vec<(u32, u32)>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if let Some(path) = line.strip_prefix("+++ ") {
            current = path.strip_prefix("b/").map(str::to_owned);
            if let Some(p) = &current {
                files.entry(p.clone()).or_default();
            }
        } else if line.starts_with("@@") {
            if let (Some(p), Some(r)) = (&current, hunk_range(line)) {
                files.entry(p.clone()).or_default().push(r);
            }
        }
    }
    files.retain(|_, r| !r.is_empty());
    files
}

impl ChangedLines {
    /// What changed in `folder` (a git working tree) since `rev`: committed,
    /// staged and unstaged edits, and new files not ignored (whole).
    /// `prefix` is how the corpus spells `folder` at the start of paths.
    pub fn since(folder: &Path, rev: &str, prefix: &str) -> Result<Self, DiffError> {
        git(
            folder,
            rev,
            &["rev-parse", "--verify", "--quiet", &format!("{rev}^{{commit}}")],
        )
        .map_err(|_| DiffError::Git {
            rev: rev.to_owned(),
            message: format!("not a commit of the git repository at {}", folder.display()),
        })?;
        let diff = git(
            folder,
            rev,
            &[
                "diff",
                "--relative",
                "--unified=0",
                "--no-color",
                "--no-ext-diff",
                rev,
                "--",
                ".",
            ],
        )?;
        let mut files = parse_diff(&diff);
        let mut dated = BTreeMap::new();
        if files.len() <= MOST_DATED {
            for path in files.keys() {
                let out = git(folder, rev, &["log", "-1", "--format=%ct", rev, "--", path])?;
                if let Ok(t) = out.trim().parse::<i64>() {
                    dated.insert(path.clone(), t);
                }
            }
        }
        for path in git(folder, rev, &["ls-files", "--others", "--exclude-standard", "--", "."])?.lines() {
            files.insert(path.to_owned(), vec![(1, u32::MAX)]);
        }
        Ok(Self {
            rev: rev.to_owned(),
            prefix: prefix.trim_end_matches('/').trim_start_matches("./").to_owned(),
            files,
            dated,
        })
    }

    /// A corpus path relative to the audited folder.
    fn relative<'a>(&self, corpus_path: &'a str) -> &'a str {
        let p = corpus_path.trim_start_matches("./");
        if self.prefix.is_empty() || self.prefix == "." {
            return p;
        }
        p.strip_prefix(self.prefix.as_str())
            .and_then(|rest| rest.strip_prefix('/'))
            .unwrap_or(p)
    }

    /// A changed file's last commit time as of the revision.
    #[must_use]
    pub fn dated(&self, corpus_path: &str) -> Option<i64> {
        self.dated.get(self.relative(corpus_path)).copied()
    }

    /// Whether the file at `corpus_path` changed at all.
    #[must_use]
    pub fn file_changed(&self, corpus_path: &str) -> bool {
        self.files.contains_key(self.relative(corpus_path))
    }

    /// Whether lines `start..=end` of the file touch a changed line.
    #[must_use]
    pub fn touches(&self, corpus_path: &str, start: u32, end: u32) -> bool {
        self.files
            .get(self.relative(corpus_path))
            .is_some_and(|ranges| ranges.iter().any(|&(a, b)| start <= b && a <= end))
    }

    /// Changed lines in all (a new file counts its lines as one range).
    #[must_use]
    pub fn ranges(&self) -> usize {
        self.files.values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hunks_become_new_file_ranges() {
        let diff = "diff --git a/app/db.py b/app/db.py\n--- a/app/db.py\n+++ b/app/db.py\n@@ -3 +3 @@ def f():\n-x\n+y\n@@ -10,0 +11,3 @@\n+a\n+b\n+c\n@@ -20,2 +23,0 @@\n-gone\n-gone\ndiff --git a/old.py b/old.py\n--- a/old.py\n+++ /dev/null\n@@ -1,2 +0,0 @@\n";
        let files = parse_diff(diff);
        assert_eq!(files.len(), 1);
        assert_eq!(files["app/db.py"], vec![(3, 3), (11, 13)]);
        let c = ChangedLines {
            rev: "HEAD".to_owned(),
            prefix: "/tmp/repo".to_owned(),
            files,
            dated: BTreeMap::new(),
        };
        assert!(c.touches("/tmp/repo/app/db.py", 12, 20));
        assert!(!c.touches("/tmp/repo/app/db.py", 4, 10));
        assert!(c.file_changed("/tmp/repo/app/db.py") && !c.file_changed("/tmp/repo/app/x.py"));
    }

    #[test]
    fn a_checkout_s_edits_and_new_files_since_a_commit() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path();
        let run = |args: &[&str]| {
            let ok = Command::new("git")
                .arg("-C")
                .arg(repo)
                .args([
                    "-c",
                    "user.name=t",
                    "-c",
                    "user.email=t@t",
                    "-c",
                    "commit.gpgsign=false",
                ])
                .args(args)
                .output()
                .unwrap();
            assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
        };
        run(&["init", "-q"]);
        std::fs::create_dir(repo.join("app")).unwrap();
        std::fs::write(repo.join("app/a.py"), "one\ntwo\nthree\n").unwrap();
        run(&["add", "."]);
        run(&["commit", "-q", "-m", "first"]);
        std::fs::write(repo.join("app/a.py"), "one\nTWO\nthree\nfour\n").unwrap();
        std::fs::write(repo.join("app/new.py"), "x\n").unwrap();
        let prefix = repo.to_string_lossy().into_owned();
        let c = ChangedLines::since(&repo.join("app"), "HEAD", &format!("{prefix}/app")).unwrap();
        assert_eq!(c.files["a.py"], vec![(2, 2), (4, 4)]);
        assert!(c.touches(&format!("{prefix}/app/new.py"), 1, 1));
        assert!(!c.touches(&format!("{prefix}/app/a.py"), 3, 3));
        // The edited file keeps its commit's time; the new one has none.
        let committed: i64 = String::from_utf8(
            Command::new("git")
                .arg("-C")
                .arg(repo)
                .args(["log", "-1", "--format=%ct"])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap()
        .trim()
        .parse()
        .unwrap();
        assert_eq!(c.dated(&format!("{prefix}/app/a.py")), Some(committed));
        assert_eq!(c.dated(&format!("{prefix}/app/new.py")), None);
        let err = ChangedLines::since(repo, "no-such-ref", "").unwrap_err().to_string();
        assert!(err.starts_with("--diff no-such-ref:"), "{err}");
    }
}
