//! What a caller may make scout read: paths checked against the allowed
//! roots, and pipelines and schemas named by a request.
//!
//! In: a path or a name as a caller wrote it (a batch line, an HTTP body),
//! and the [`Access`] in force: the CLI reads any file its user names; a
//! server or a batch reads only under its roots.
//! Out: a real path under a root, or the text of a built-in, of a file
//! under a root, or sent inline in the request.
//! Never: opens a path before it is known to lie under a root; tells a
//! caller whether a path outside the roots exists (outside and missing give
//! one message); puts a file's lines in an error.

use std::path::{Component, Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

/// The largest pipeline or schema file read: the shipped ones are a few
/// KiB; past this a name points at something else (a log, a device).
pub const MAX_NAMED_FILE_BYTES: u64 = 1024 * 1024;

/// Which files a caller may name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Any file the process can read: the command line, where the caller
    /// is the user who runs scout.
    Anywhere,
    /// Only files under these folders (canonical paths): `scout serve`,
    /// and the jobs of a batch.
    Under(Vec<PathBuf>),
}

/// A pipeline or a schema as a request gives it: a name (built-in, or a
/// file's path) or the thing itself (`{"toml": "..."}` for a pipeline, the
/// JSON Schema object for a schema).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Named {
    Name(String),
    Inline(Value),
}

impl From<&str> for Named {
    fn from(name: &str) -> Self {
        Named::Name(name.to_owned())
    }
}

/// Where a named thing's text came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    BuiltIn { name: &'static str, text: &'static str },
    File { path: String, text: String },
}

/// The things of one kind scout ships, and how users spell their names.
pub struct Library {
    /// `pipeline` or `schema`, for messages.
    pub kind: &'static str,
    pub built_in: &'static [(&'static str, &'static str)],
    /// `pipelines/NAME.toml` names the built-in `NAME` outside a checkout.
    pub folder: &'static str,
    pub extension: &'static str,
}

#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("no {kind} named {name:?}: give a file's path, or one of {names}")]
    Unknown {
        kind: &'static str,
        name: String,
        names: String,
    },
    #[error("no built-in {kind} named {name:?} and no file of that name under the allowed roots ({roots}); built-in: {names}")]
    NotUnderRoots {
        kind: &'static str,
        name: String,
        roots: String,
        names: String,
    },
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: the file is over the {limit}-byte limit for a {kind}")]
    TooLarge {
        kind: &'static str,
        path: String,
        limit: u64,
    },
}

impl Library {
    /// The text `name` stands for: a file (any file with
    /// [`Access::Anywhere`]; only one under a root otherwise), else a
    /// built-in by name.
    pub fn find(&self, name: &str, access: &Access) -> Result<Found, LookupError> {
        let file = match access {
            Access::Anywhere => Path::new(name).is_file().then(|| PathBuf::from(name)),
            Access::Under(roots) => allowed_path(name, roots).ok().filter(|p| p.is_file()),
        };
        if let Some(path) = file {
            return read_bounded(&path, self.kind).map(|text| Found::File {
                path: name.to_owned(),
                text,
            });
        }
        let short = name
            .strip_prefix(self.folder)
            .and_then(|n| n.strip_suffix(self.extension))
            .unwrap_or(name);
        if let Some(&(name, text)) = self.built_in.iter().find(|(n, _)| *n == short) {
            return Ok(Found::BuiltIn { name, text });
        }
        let names = self.built_in.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ");
        Err(match access {
            Access::Anywhere => LookupError::Unknown {
                kind: self.kind,
                name: name.to_owned(),
                names,
            },
            Access::Under(roots) => LookupError::NotUnderRoots {
                kind: self.kind,
                name: name.to_owned(),
                roots: shown(roots),
                names,
            },
        })
    }
}

/// A file's text, refused past [`MAX_NAMED_FILE_BYTES`] before it is read.
fn read_bounded(path: &Path, kind: &'static str) -> Result<String, LookupError> {
    use std::io::Read as _;
    let read_error = |source| LookupError::Read {
        path: path.display().to_string(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut text = String::new();
    file.take(MAX_NAMED_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(read_error)?;
    if text.len() as u64 > MAX_NAMED_FILE_BYTES {
        return Err(LookupError::TooLarge {
            kind,
            path: path.display().to_string(),
            limit: MAX_NAMED_FILE_BYTES,
        });
    }
    Ok(text)
}

fn shown(roots: &[PathBuf]) -> String {
    roots
        .iter()
        .map(|r| r.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Resolves a path named by a caller and checks that it lies under an
/// allowed root; the real path is returned, so what is read is what was
/// checked. URLs are refused: scout never fetches. A path that is
/// outside the roots and one that does not exist get the same message, so
/// the answer says nothing about files outside the roots; a missing path
/// that would lie under a root says so plainly.
pub fn allowed_path(p: &str, roots: &[PathBuf]) -> Result<PathBuf, String> {
    if p.contains("://") {
        return Err(format!("{p}: URLs are never fetched; give a local path"));
    }
    let outside = || {
        format!(
            "{p} is outside the allowed roots ({}) or does not exist; add --root to allow a folder",
            shown(roots)
        )
    };
    let path = Path::new(p);
    match path.canonicalize() {
        Ok(real) if under_roots(&real, roots) => Ok(real),
        Err(e) if lexical_absolute(path).is_some_and(|a| under_roots(&a, roots)) => Err(format!("{p}: {e}")),
        Ok(_) | Err(_) => Err(outside()),
    }
}

/// Whether `real` (a canonical path) lies under one of `roots`.
#[must_use]
pub fn under_roots(real: &Path, roots: &[PathBuf]) -> bool {
    roots.iter().any(|r| real.starts_with(r))
}

/// Whether a document's shown path (as a corpus keeps it: the root as it
/// was given, joined with the path below it) lies under one of `roots`,
/// by its names alone: a relative one is taken from the current folder.
#[must_use]
pub fn shown_under_roots(shown: &str, roots: &[PathBuf]) -> bool {
    lexical_absolute(Path::new(shown)).is_some_and(|p| under_roots(&p, roots))
}

/// `path` made absolute against the current folder, with `.` and `..`
/// taken away by their names alone (no link is followed).
fn lexical_absolute(path: &Path) -> Option<PathBuf> {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().ok()?.join(path)
    };
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIBRARY: Library = Library {
        kind: "pipeline",
        built_in: &[("security", "built-in text")],
        folder: "pipelines/",
        extension: ".toml",
    };

    #[test]
    fn paths_outside_the_roots_and_missing_paths_read_alike() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(dir.path().join("secret.txt"), "s").unwrap();
        std::fs::write(root.join("ok.txt"), "o").unwrap();
        let roots = [root.canonicalize().unwrap()];
        let outside = dir.path().join("secret.txt").display().to_string();
        let missing = dir.path().join("nothing.txt").display().to_string();
        let e1 = allowed_path(&outside, &roots).unwrap_err().replace(&outside, "P");
        let e2 = allowed_path(&missing, &roots).unwrap_err().replace(&missing, "P");
        assert_eq!(e1, e2, "an existing outside file must not be told from a missing one");
        let inside = allowed_path(&root.join("ok.txt").display().to_string(), &roots).unwrap();
        assert_eq!(inside, roots[0].join("ok.txt"));
        let e = allowed_path(&root.join("gone.txt").display().to_string(), &roots).unwrap_err();
        assert!(!e.contains("outside"), "a missing file under a root says so: {e}");
        let up = format!("{}/../secret.txt", root.display());
        assert!(allowed_path(&up, &roots).unwrap_err().contains("outside"));
    }

    #[test]
    fn a_link_under_a_root_to_a_file_outside_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(dir.path().join("secret.toml"), "s").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret.toml"), root.join("link.toml")).unwrap();
        let roots = vec![root.canonicalize().unwrap()];
        let link = root.join("link.toml").display().to_string();
        assert!(allowed_path(&link, &roots).is_err());
        let e = LIBRARY.find(&link, &Access::Under(roots)).unwrap_err().to_string();
        assert!(e.contains("no built-in pipeline"), "{e}");
        assert!(matches!(LIBRARY.find(&link, &Access::Anywhere), Ok(Found::File { .. })));
    }

    #[test]
    fn names_find_built_ins_and_files_under_roots() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("mine.toml"), "mine").unwrap();
        let roots = Access::Under(vec![dir.path().canonicalize().unwrap()]);
        for name in ["security", "pipelines/security.toml"] {
            assert_eq!(
                LIBRARY.find(name, &roots).unwrap(),
                Found::BuiltIn {
                    name: "security",
                    text: "built-in text"
                }
            );
        }
        let mine = dir.path().join("mine.toml").display().to_string();
        assert!(matches!(LIBRARY.find(&mine, &roots), Ok(Found::File { text, .. }) if text == "mine"));
        for name in ["/proc/self/environ", "/etc/passwd", "/nonexistent/x.toml"] {
            let e = LIBRARY.find(name, &roots).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("no built-in pipeline named {name:?} and no file")),
                "{e}"
            );
        }
    }

    #[test]
    fn a_huge_file_is_refused_before_it_is_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.toml");
        std::fs::write(&big, vec![b'#'; MAX_NAMED_FILE_BYTES as usize + 10]).unwrap();
        let e = LIBRARY.find(&big.display().to_string(), &Access::Anywhere).unwrap_err();
        assert!(matches!(e, LookupError::TooLarge { .. }), "{e}");
    }
}
