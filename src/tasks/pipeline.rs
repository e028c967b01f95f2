//! Audit pipelines: which files an audit reads, what the model is told,
//! which rules a finding may name and the severity scale.
//!
//! Pipelines are TOML files (`pipelines/*.toml`); the shipped ones are
//! built in by name; another is a file (under the roots, for a server or a
//! batch job) or, from a request, sent inline.
//!
//! Never reads a file the caller's [`Access`] does not allow, and never
//! quotes a file's lines in an error.

use globset::{GlobBuilder, GlobMatcher};
use serde::{Deserialize, Serialize};

use crate::tasks::access::{Access, Found, Library, LookupError, Named};

/// The pipelines shipped with scout, by name.
pub const BUILT_IN: [(&str, &str); 3] = [
    ("security", include_str!("../../pipelines/security.toml")),
    ("code-review", include_str!("../../pipelines/code-review.toml")),
    ("licenses", include_str!("../../pipelines/licenses.toml")),
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Short, stable, kebab-case: what findings and SARIF name.
    pub id: String,
    /// The CWE the rule maps to, as `CWE-89` (absent for non-security rules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwe: Option<String>,
    /// The rule's default severity (one of the pipeline's `severities`).
    pub severity: String,
    pub title: String,
    pub description: String,
    /// Structural rules for it, in ast-grep's YAML rule format (several
    /// documents, `---` between them): their matches are candidates of
    /// this rule.
    #[serde(default, skip_serializing)]
    pub ast_grep: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PipelineFile {
    name: String,
    #[serde(default = "one")]
    version: u32,
    description: String,
    #[serde(default)]
    include: Vec<String>,
    #[serde(default)]
    exclude: Vec<String>,
    severities: Vec<String>,
    instructions: String,
    #[serde(default)]
    structural_rules: Option<String>,
    rules: Vec<Rule>,
}

fn one() -> u32 {
    1
}

/// A loaded, checked pipeline.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub name: String,
    pub version: u32,
    pub description: String,
    /// Highest first.
    pub severities: Vec<String>,
    pub instructions: String,
    pub rules: Vec<Rule>,
    /// The rule set shipped with scout whose structural rules the audit
    /// runs (`pipelines/rules/NAME/`).
    pub structural_rules: Option<String>,
    /// Where it came from: `built-in` or the file's path.
    pub source: String,
    include: Vec<PathGlob>,
    exclude: Vec<PathGlob>,
    include_patterns: Vec<String>,
}

const LIBRARY: Library = Library {
    kind: "pipeline",
    built_in: &BUILT_IN,
    folder: "pipelines/",
    extension: ".toml",
};

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Lookup(#[from] LookupError),
    #[error("{source_name}: {message}")]
    Invalid { source_name: String, message: String },
}

/// A TOML error as line, column and message, without the quoted source
/// line that its `Display` adds: the file may not be the caller's to read.
#[must_use]
pub fn toml_error(text: &str, e: &toml::de::Error) -> String {
    match e.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before.chars().rev().take_while(|&c| c != '\n').count() + 1;
            format!("line {line}, column {column}: {}", e.message().trim_end())
        }
        None => e.message().trim_end().to_owned(),
    }
}

/// A gitignore-style glob: without a `/` it matches a path's file name at
/// any depth; with one it matches the whole path (a leading `/` anchors it
/// at the root, as in .gitignore).
#[derive(Debug, Clone)]
struct PathGlob {
    matcher: GlobMatcher,
    whole_path: bool,
}

impl PathGlob {
    fn new(pattern: &str) -> Result<Self, globset::Error> {
        let whole_path = pattern.contains('/');
        let text = pattern.trim_start_matches('/');
        let matcher = GlobBuilder::new(text)
            .literal_separator(true)
            .build()?
            .compile_matcher();
        Ok(Self { matcher, whole_path })
    }

    fn is_match(&self, path: &str) -> bool {
        if self.whole_path {
            self.matcher.is_match(path)
        } else {
            self.matcher.is_match(path.rsplit('/').next().unwrap_or(path))
        }
    }
}

impl Pipeline {
    /// A built-in pipeline by name, a TOML file by path (any file with
    /// [`Access::Anywhere`], only one under a root otherwise), or, from a
    /// request, `{"toml": "..."}`.
    pub fn load(named: impl Into<Named>, access: &Access) -> Result<Self, PipelineError> {
        match named.into() {
            Named::Name(name) => match LIBRARY.find(&name, access)? {
                Found::BuiltIn { text, .. } => Self::parse(text, "built-in"),
                Found::File { path, text } => Self::parse(&text, &path),
            },
            Named::Inline(value) => match value.get("toml").and_then(serde_json::Value::as_str) {
                Some(text) => Self::parse(text, "request"),
                None => Err(PipelineError::Invalid {
                    source_name: "request".to_owned(),
                    message: "an inline pipeline is {\"toml\": \"...the pipeline's TOML text...\"}".to_owned(),
                }),
            },
        }
    }

    /// Parses and checks a pipeline's TOML text.
    pub fn parse(text: &str, source: &str) -> Result<Self, PipelineError> {
        let invalid = |message: String| PipelineError::Invalid {
            source_name: source.to_owned(),
            message,
        };
        let file: PipelineFile = toml::from_str(text).map_err(|e| invalid(toml_error(text, &e)))?;
        if file.rules.is_empty() {
            return Err(invalid("a pipeline needs at least one [[rules]] entry".to_owned()));
        }
        if file.severities.is_empty() {
            return Err(invalid(
                "`severities` must list at least one level, highest first".to_owned(),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for r in &file.rules {
            if r.id.is_empty() || !r.id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                return Err(invalid(format!(
                    "rule id {:?}: use letters, digits, - and _ only",
                    r.id
                )));
            }
            if !seen.insert(r.id.as_str()) {
                return Err(invalid(format!("rule id {:?} appears twice", r.id)));
            }
            if !file.severities.contains(&r.severity) {
                return Err(invalid(format!(
                    "rule {}: severity {:?} is not one of {:?}",
                    r.id, r.severity, file.severities
                )));
            }
            if let Some(cwe) = &r.cwe {
                let ok = cwe
                    .strip_prefix("CWE-")
                    .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
                if !ok {
                    return Err(invalid(format!(
                        "rule {}: cwe {cwe:?} is not of the form CWE-123",
                        r.id
                    )));
                }
            }
        }
        let globs = |list: &[String]| -> Result<Vec<PathGlob>, PipelineError> {
            list.iter()
                .map(|p| PathGlob::new(p).map_err(|e| invalid(format!("glob {p:?}: {e}"))))
                .collect()
        };
        Ok(Self {
            include: globs(&file.include)?,
            include_patterns: file.include.clone(),
            exclude: globs(&file.exclude)?,
            name: file.name,
            version: file.version,
            description: file.description,
            severities: file.severities,
            instructions: file.instructions.trim().to_owned(),
            rules: file.rules,
            structural_rules: file.structural_rules,
            source: source.to_owned(),
        })
    }

    /// Whether the pipeline reads the file at corpus path `path`.
    #[must_use]
    pub fn reads(&self, path: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|g| g.is_match(path)))
            && !self.exclude.iter().any(|g| g.is_match(path))
    }

    /// The files it reads, in words (for errors when it reads none).
    #[must_use]
    pub fn reads_text(&self) -> String {
        match self.include_patterns.as_slice() {
            [] => "every text and code file".to_owned(),
            list if list.len() <= 6 => list.join(" "),
            list => format!("{} and {} more", list[..6].join(" "), list.len() - 6),
        }
    }

    #[must_use]
    pub fn rule(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.id == id)
    }

    /// Rank of a severity: 0 is the highest; unknown ones sort last.
    #[must_use]
    pub fn severity_rank(&self, severity: &str) -> usize {
        self.severities
            .iter()
            .position(|s| s == severity)
            .unwrap_or(self.severities.len())
    }

    /// The rules as the model is shown them.
    #[must_use]
    pub fn rules_text(&self) -> String {
        self.rules
            .iter()
            .map(|r| {
                let cwe = r.cwe.as_deref().map(|c| format!(", {c}")).unwrap_or_default();
                format!("- {} ({}{cwe}): {}\n", r.id, r.title, r.description)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_pipelines_load() {
        for (name, _) in BUILT_IN {
            let p = Pipeline::load(name, &Access::Anywhere).unwrap();
            assert_eq!(p.name, name);
            assert!(!p.rules.is_empty());
        }
        let security = Pipeline::load("security", &Access::Anywhere).unwrap();
        assert!(
            security.rules.iter().all(|r| r.cwe.is_some()),
            "every security check names its CWE"
        );
        for id in [
            "injection",
            "path-traversal",
            "unsafe-deserialization",
            "hard-coded-secret",
            "weak-crypto",
            "missing-auth",
            "memory-safety",
        ] {
            assert!(security.rule(id).is_some(), "{id}");
        }
    }

    #[test]
    fn globs_follow_gitignore_rules() {
        let p = Pipeline::load("security", &Access::Anywhere).unwrap();
        assert!(p.reads("app.py"));
        assert!(p.reads("deep/in/src/main.rs"));
        assert!(p.reads("docker/Dockerfile"));
        assert!(!p.reads("README.md"));
        assert!(!p.reads("web/vendor/jquery.min.js"), "excluded by *.min.js");
        let l = Pipeline::load("licenses", &Access::Anywhere).unwrap();
        assert!(l.reads("LICENSE"));
        assert!(l.reads("third_party/zlib/LICENSE.txt"));
        let text = "name='x'\ndescription='d'\nseverities=['high']\ninstructions='i'\ninclude=['/src/*.rs']\n\
                    [[rules]]\nid='a'\nseverity='high'\ntitle='t'\ndescription='d'\n";
        let anchored = Pipeline::parse(text, "test").unwrap();
        assert!(anchored.reads("src/main.rs"));
        assert!(!anchored.reads("src/deep/main.rs"), "* does not cross /");
        assert!(!anchored.reads("other/src/main.rs"), "a leading / anchors at the root");
    }

    #[test]
    fn bad_pipelines_are_refused_with_the_reason() {
        let base = "name='x'\ndescription='d'\nseverities=['high']\ninstructions='i'\n";
        let cases = [
            (format!("{base}rules=[]"), "at least one"),
            (
                format!("{base}[[rules]]\nid='a'\nseverity='urgent'\ntitle='t'\ndescription='d'\n"),
                "not one of",
            ),
            (
                format!("{base}[[rules]]\nid='a b'\nseverity='high'\ntitle='t'\ndescription='d'\n"),
                "letters, digits",
            ),
            (
                format!("{base}[[rules]]\nid='a'\ncwe='89'\nseverity='high'\ntitle='t'\ndescription='d'\n"),
                "CWE-123",
            ),
            (
                format!(
                    "{base}[[rules]]\nid='a'\nseverity='high'\ntitle='t'\ndescription='d'\n\
                     [[rules]]\nid='a'\nseverity='high'\ntitle='t'\ndescription='d'\n"
                ),
                "twice",
            ),
            (format!("{base}colour='red'\n"), "unknown field"),
        ];
        for (text, why) in cases {
            let e = Pipeline::parse(&text, "p.toml").unwrap_err().to_string();
            assert!(e.contains(why), "{e}");
            assert!(e.starts_with("p.toml: "), "{e}");
        }
        let e = Pipeline::load("no-such-pipeline", &Access::Anywhere)
            .unwrap_err()
            .to_string();
        assert!(e.contains("security, code-review, licenses"), "{e}");
    }

    /// A server once answered `{"pipeline": "/etc/shadow"}` with the file's
    /// first line inside the TOML error: an error names the line and
    /// column, never the text there.
    #[test]
    fn a_parse_error_does_not_quote_the_file() {
        let text = "root:$6$secrethash:19000:0:99999:7:::\n";
        let e = Pipeline::parse(text, "shadow").unwrap_err().to_string();
        assert!(!e.contains("secrethash") && !e.contains("root:"), "{e}");
        assert!(e.starts_with("shadow: line 1, column "), "{e}");
        let inline = Named::Inline(serde_json::json!({"toml": text}));
        let e = Pipeline::load(inline, &Access::Under(Vec::new()))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("request: line 1") && !e.contains("secrethash"), "{e}");
        let ok = Named::Inline(serde_json::json!({"toml": BUILT_IN[0].1}));
        assert_eq!(Pipeline::load(ok, &Access::Under(Vec::new())).unwrap().name, "security");
    }
}
