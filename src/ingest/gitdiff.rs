//! What changed in a source since a revision, as git says: the changed
//! files and the patch, for `scout pack --diff REV`.
//!
//! The working tree is compared with the revision, so commits since it,
//! staged and unstaged edits all count; files git does not track yet (and
//! does not ignore) count as added. Renames are a deletion and an addition.
//!
//! Never writes to the repository, and never passes the revision where git
//! could read it as an option.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::child;

/// How long each git command may take.
const GIT_SECONDS: u64 = 120;

/// One changed file, its path relative to the source (`/`-separated).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    /// git's status letter: `A` added (or untracked), `M` modified, `D`
    /// deleted, `T` type changed.
    pub status: char,
    pub path: String,
}

/// The changes in one source since a revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changes {
    pub files: Vec<Change>,
    /// `git diff`'s unified patch of the tracked files.
    pub patch: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    #[error("{} is not inside a git repository, so there is nothing to diff against", .0.display())]
    NotARepository(PathBuf),
    #[error("`{0}` is not a revision (it starts with `-`)")]
    BadRevision(String),
    #[error("{rev} is not a commit in the repository of {}: {message}", folder.display())]
    UnknownRevision {
        folder: PathBuf,
        rev: String,
        message: String,
    },
    #[error("git {what} in {}: {message}", folder.display())]
    Git {
        what: &'static str,
        folder: PathBuf,
        message: String,
    },
}

/// The changes in `source` (a folder, or a file) since `rev`.
pub fn changes_since(source: &Path, rev: &str, limit: Duration) -> Result<Changes, DiffError> {
    if rev.starts_with('-') || rev.is_empty() {
        return Err(DiffError::BadRevision(rev.to_owned()));
    }
    let (dir, spec) = if source.is_dir() {
        (source.to_path_buf(), ".".to_owned())
    } else {
        let parent = source.parent().filter(|p| !p.as_os_str().is_empty());
        let name = source.file_name().map(|n| n.to_string_lossy().into_owned());
        (
            parent.map_or_else(|| PathBuf::from("."), Path::to_path_buf),
            name.unwrap_or_else(|| ".".to_owned()),
        )
    };
    if super::git::repo(&dir).is_none() {
        return Err(DiffError::NotARepository(source.to_path_buf()));
    }
    let git = |what: &'static str, args: &[&str]| -> Result<child::Finished, DiffError> {
        let failed = |message: String| DiffError::Git {
            what,
            folder: source.to_path_buf(),
            message,
        };
        let done = child::run(
            Command::new("git")
                .arg("-C")
                .arg(&dir)
                .args(["-c", "core.quotepath=off"])
                .args(args),
            b"",
            limit,
        )
        .map_err(|e| failed(format!("{e:?}")))?;
        Ok(done)
    };
    let commit = format!("{rev}^{{commit}}");
    let verified = git(
        "rev-parse",
        &["rev-parse", "--verify", "--quiet", "--end-of-options", &commit],
    )?;
    if !verified.status.success() {
        return Err(DiffError::UnknownRevision {
            folder: source.to_path_buf(),
            rev: rev.to_owned(),
            message: "git rev-parse --verify found no such commit".to_owned(),
        });
    }
    let sha = String::from_utf8_lossy(&verified.stdout).trim().to_owned();
    let ok = |what: &'static str, done: child::Finished| -> Result<Vec<u8>, DiffError> {
        if done.status.success() {
            Ok(done.stdout)
        } else {
            Err(DiffError::Git {
                what,
                folder: source.to_path_buf(),
                message: done.stderr.trim().to_owned(),
            })
        }
    };
    let common = [
        "--no-color",
        "--no-ext-diff",
        "--no-textconv",
        "--no-renames",
        "--relative",
    ];
    let mut args = vec!["diff", "--name-status", "-z"];
    args.extend(common);
    args.extend([sha.as_str(), "--", spec.as_str()]);
    let names = ok("diff --name-status", git("diff", &args)?)?;
    let mut files = parse_name_status(&names);
    let untracked = ok(
        "ls-files",
        git(
            "ls-files",
            &["ls-files", "--others", "--exclude-standard", "-z", "--", spec.as_str()],
        )?,
    )?;
    files.extend(untracked.split(|&b| b == 0).filter(|p| !p.is_empty()).map(|p| Change {
        status: 'A',
        path: String::from_utf8_lossy(p).into_owned(),
    }));
    files.sort_by(|a, b| a.path.cmp(&b.path));
    files.dedup();
    let mut args = vec!["diff"];
    args.extend(common);
    args.extend([sha.as_str(), "--", spec.as_str()]);
    let patch = ok("diff", git("diff", &args)?)?;
    Ok(Changes {
        files,
        patch: String::from_utf8_lossy(&patch).into_owned(),
    })
}

/// [`changes_since`] with the default time limit.
pub fn changes_since_rev(source: &Path, rev: &str) -> Result<Changes, DiffError> {
    changes_since(source, rev, Duration::from_secs(GIT_SECONDS))
}

/// Parses `git diff --name-status -z --no-renames`: status, NUL, path, NUL.
fn parse_name_status(out: &[u8]) -> Vec<Change> {
    let mut fields = out.split(|&b| b == 0).filter(|f| !f.is_empty());
    let mut files = Vec::new();
    while let (Some(status), Some(path)) = (fields.next(), fields.next()) {
        files.push(Change {
            status: status.first().map_or('M', |&b| b as char),
            path: String::from_utf8_lossy(path).into_owned(),
        });
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_status_pairs_a_status_with_its_path() {
        let out = b"M\0src/a.rs\0D\0old file.txt\0A\0new.md\0";
        let files = parse_name_status(out);
        assert_eq!(
            files.iter().map(|c| (c.status, c.path.as_str())).collect::<Vec<_>>(),
            vec![('M', "src/a.rs"), ('D', "old file.txt"), ('A', "new.md")]
        );
    }

    #[test]
    fn a_revision_that_looks_like_an_option_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            changes_since_rev(dir.path(), "--output=/tmp/x"),
            Err(DiffError::BadRevision(_))
        ));
        assert!(matches!(
            changes_since_rev(dir.path(), "HEAD"),
            Err(DiffError::NotARepository(_))
        ));
    }
}
