//! Anchors: where in the corpus a piece of text lives.
//!
//! Every segment carries one, the prompt shows them to the model, the model
//! cites them back, and the task layer resolves each citation against the
//! corpus. Forms:
//! `path:start-end` for lines of text or code, `path#page=N` for a PDF page,
//! and the bare `path` for a whole document (an image).
//!
//! Never reads the corpus: resolving an anchor is the tasks' job.

use std::fmt;
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

/// A place in the corpus. Line and page numbers start at 1.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Anchor {
    Lines {
        path: String,
        start: u32,
        end: u32,
    },
    Page {
        path: String,
        page: u32,
    },
    /// A region of a page (OCR words, lines, blocks), in pixels of the
    /// page image: left, top, width, height.
    Region {
        path: String,
        page: u32,
        x: u32,
        y: u32,
        w: u32,
        h: u32,
    },
    Document {
        path: String,
    },
}

impl Anchor {
    #[must_use]
    pub fn path(&self) -> &str {
        match self {
            Anchor::Lines { path, .. }
            | Anchor::Page { path, .. }
            | Anchor::Region { path, .. }
            | Anchor::Document { path } => path,
        }
    }

    /// The page a page or region anchor points into.
    #[must_use]
    pub fn page(&self) -> Option<u32> {
        match self {
            Anchor::Page { page, .. } | Anchor::Region { page, .. } => Some(*page),
            Anchor::Lines { .. } | Anchor::Document { .. } => None,
        }
    }

    /// The same anchor on another path (used when a citation named a path by
    /// a unique suffix and is normalised to the corpus's own path).
    #[must_use]
    pub fn with_path(&self, new_path: &str) -> Anchor {
        let path = new_path.to_owned();
        match *self {
            Anchor::Lines { start, end, .. } => Anchor::Lines { path, start, end },
            Anchor::Page { page, .. } => Anchor::Page { path, page },
            Anchor::Region { page, x, y, w, h, .. } => Anchor::Region { path, page, x, y, w, h },
            Anchor::Document { .. } => Anchor::Document { path },
        }
    }
}

impl fmt::Display for Anchor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Anchor::Lines { path, start, end } if start == end => write!(f, "{path}:{start}"),
            Anchor::Lines { path, start, end } => write!(f, "{path}:{start}-{end}"),
            Anchor::Page { path, page } => write!(f, "{path}#page={page}"),
            Anchor::Region { path, page, x, y, w, h } => write!(f, "{path}#page={page}&bbox={x},{y},{w},{h}"),
            Anchor::Document { path } => write!(f, "{path}"),
        }
    }
}

/// Path characters a citation may contain: no spaces, quotes or brackets, so
/// that an anchor inside prose or `[...]` is found without its surroundings.
const PATH_CHARS: &str = r"[A-Za-z0-9_./\\@+~-]+";

static CITATION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(
        r"(?x)
        (?P<path>{PATH_CHARS}\.[A-Za-z0-9_]+|{PATH_CHARS}/[A-Za-z0-9_.-]+)
        (?:
            \#page=(?P<page>\d+)(?:&bbox=(?P<x>\d+),(?P<y>\d+),(?P<w>\d+),(?P<h>\d+))?
          | (?::|\#)L?(?P<start>\d+)(?:\s*[-–]\s*L?(?P<end>\d+))?
        )?"
    ))
    .expect("citation pattern is valid")
});

/// Extensions of files people cite; a bare `name.ext` without a line or
/// page is taken as a citation only with one of these.
const FILE_EXTENSIONS: &[&str] = &[
    "rs",
    "py",
    "pyi",
    "js",
    "mjs",
    "cjs",
    "jsx",
    "ts",
    "tsx",
    "go",
    "java",
    "kt",
    "c",
    "h",
    "cc",
    "cpp",
    "cxx",
    "hpp",
    "cs",
    "rb",
    "php",
    "swift",
    "scala",
    "sh",
    "bash",
    "sql",
    "lua",
    "pl",
    "hs",
    "ml",
    "ex",
    "exs",
    "erl",
    "zig",
    "r",
    "md",
    "rst",
    "txt",
    "adoc",
    "pdf",
    "json",
    "yaml",
    "yml",
    "toml",
    "ini",
    "cfg",
    "conf",
    "xml",
    "html",
    "htm",
    "css",
    "csv",
    "tsv",
    "lock",
    "gradle",
    "proto",
    "tf",
    "env",
    "png",
    "jpg",
    "jpeg",
    "gif",
    "webp",
    "tif",
    "tiff",
    "bmp",
    "svg",
    "dockerfile",
    "mk",
    "cmake",
    "vue",
    "svelte",
];

fn has_file_extension(path: &str) -> bool {
    path.rsplit_once('.')
        .is_some_and(|(_, ext)| FILE_EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str()))
}

/// A citation the model wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenCitation {
    pub anchor: Anchor,
}

/// Finds everything in `text` that looks like an anchor: `path:12-20`,
/// `path:12`, `path#L12-L20`, `path#page=3`, or a bare path with an
/// extension. Whether each exists is for the resolver to say.
#[must_use]
pub fn find_citations(text: &str) -> Vec<WrittenCitation> {
    let mut out: Vec<WrittenCitation> = Vec::new();
    for caps in CITATION.captures_iter(text) {
        let m = caps.get(0).expect("group 0 always matches");
        let path = caps["path"].trim_end_matches(['.', '/']);
        // Version numbers and decimals ("0.1", "3.5") are not paths, and
        // neither is the tail of a URL or of a longer token ("scheme://x",
        // "user:x/y").
        let before = text[..m.start()].chars().next_back();
        if path.chars().all(|c| c.is_ascii_digit() || c == '.')
            || path.starts_with("//")
            || before.is_some_and(|c| c == ':' || c.is_alphanumeric())
        {
            continue;
        }
        let path = path.trim_start_matches("./").to_owned();
        let number = |name: &str| caps.name(name).and_then(|m| m.as_str().parse::<u32>().ok());
        let anchor = if let (Some(page), Some(x), Some(y), Some(w), Some(h)) =
            (number("page"), number("x"), number("y"), number("w"), number("h"))
        {
            Anchor::Region { path, page, x, y, w, h }
        } else if let Some(page) = number("page") {
            Anchor::Page { path, page }
        } else if let Some(start) = number("start") {
            let end = number("end").unwrap_or(start);
            Anchor::Lines {
                path,
                start: start.min(end),
                end: start.max(end),
            }
        } else if path.contains('/') || has_file_extension(&path) {
            Anchor::Document { path }
        } else {
            // A dotted identifier (`level.units`, `os.path`) is code, not a
            // file; with a line number it would still be checked.
            continue;
        };
        if !out.iter().any(|c| c.anchor == anchor) {
            out.push(WrittenCitation { anchor });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anchors(text: &str) -> Vec<String> {
        find_citations(text).into_iter().map(|c| c.anchor.to_string()).collect()
    }

    #[test]
    fn display_forms() {
        let a = Anchor::Lines {
            path: "src/a.rs".into(),
            start: 3,
            end: 9,
        };
        assert_eq!(a.to_string(), "src/a.rs:3-9");
        let one = Anchor::Lines {
            path: "a.rs".into(),
            start: 4,
            end: 4,
        };
        assert_eq!(one.to_string(), "a.rs:4");
        let p = Anchor::Page {
            path: "doc.pdf".into(),
            page: 2,
        };
        assert_eq!(p.to_string(), "doc.pdf#page=2");
    }

    #[test]
    fn finds_line_ranges_pages_and_bare_paths() {
        let text = "See [src/lib.rs:10-12] and docs/guide.md:4, also report.pdf#page=3 \
                    and (config.toml). Version 0.1.2 is not a path.";
        assert_eq!(
            anchors(text),
            vec![
                "src/lib.rs:10-12",
                "docs/guide.md:4",
                "report.pdf#page=3",
                "config.toml"
            ]
        );
    }

    #[test]
    fn accepts_github_style_and_reversed_ranges() {
        assert_eq!(anchors("main.go#L5-L9"), vec!["main.go:5-9"]);
        assert_eq!(anchors("main.go:9-5"), vec!["main.go:5-9"]);
        assert_eq!(anchors("a.py:3 – 7"), vec!["a.py:3-7"]);
    }

    #[test]
    fn parses_what_it_displays() {
        for a in [
            Anchor::Lines {
                path: "x/y.rs".into(),
                start: 1,
                end: 20,
            },
            Anchor::Page {
                path: "p.pdf".into(),
                page: 7,
            },
            Anchor::Region {
                path: "scan.png".into(),
                page: 1,
                x: 10,
                y: 20,
                w: 300,
                h: 40,
            },
            Anchor::Document {
                path: "img/scan.png".into(),
            },
        ] {
            assert_eq!(find_citations(&a.to_string())[0].anchor, a);
        }
    }

    #[test]
    fn dotted_identifiers_are_not_bare_file_citations() {
        // Regression: "if level.units + delta" in an answer was reported as
        // an unknown citation `level.units`.
        assert!(anchors("if level.units + delta > settings.MAX and os.path").is_empty());
        assert_eq!(
            anchors("see config.yaml and docs/notes"),
            vec!["config.yaml", "docs/notes"]
        );
        assert_eq!(
            anchors("stock.units:4"),
            vec!["stock.units:4"],
            "with a line it is still checked"
        );
    }

    #[test]
    fn url_parts_are_not_citations() {
        // Regression: `postgres://billing@db.internal/billing` in an answer
        // was reported as an unknown citation `//billing@db.internal`.
        assert!(anchors("uses postgres://billing@db.internal/billing and https://x.org/a.html").is_empty());
    }

    #[test]
    fn duplicates_are_listed_once() {
        assert_eq!(anchors("a.rs:1 then a.rs:1 again"), vec!["a.rs:1"]);
    }
}
