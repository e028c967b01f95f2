//! The languages structural rules are written for, as ast-grep sees them:
//! the tree-sitter grammars scout already builds for outlines, plus PHP and
//! Ruby.

use std::borrow::Cow;
use std::path::Path;
use std::sync::LazyLock;

use ast_grep_core::matcher::{Pattern, PatternBuilder, PatternError};
use ast_grep_core::tree_sitter::{LanguageExt, StrDoc, TSLanguage};
use ast_grep_core::Language;
use serde::{Deserialize, Deserializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Lang {
    C,
    Cpp,
    Go,
    Java,
    JavaScript,
    Php,
    Python,
    Ruby,
    Rust,
    Tsx,
    TypeScript,
}

/// Names a rule's `language:` may use (case does not matter), the first
/// being the one scout prints.
const NAMES: [(Lang, &[&str]); 11] = [
    (Lang::C, &["c"]),
    (Lang::Cpp, &["cpp", "c++", "cc", "cxx"]),
    (Lang::Go, &["go", "golang"]),
    (Lang::Java, &["java"]),
    (Lang::JavaScript, &["javascript", "js", "jsx"]),
    (Lang::Php, &["php"]),
    (Lang::Python, &["python", "py"]),
    (Lang::Ruby, &["ruby", "rb"]),
    (Lang::Rust, &["rust", "rs"]),
    (Lang::Tsx, &["tsx"]),
    (Lang::TypeScript, &["typescript", "ts"]),
];

/// File extensions, by language.
const EXTENSIONS: [(Lang, &[&str]); 11] = [
    (Lang::C, &["c", "h"]),
    (Lang::Cpp, &["cc", "cpp", "cxx", "c++", "hh", "hpp", "hxx", "h++"]),
    (Lang::Go, &["go"]),
    (Lang::Java, &["java"]),
    (Lang::JavaScript, &["js", "mjs", "cjs", "jsx"]),
    (Lang::Php, &["php", "phtml"]),
    (Lang::Python, &["py", "pyi", "pyw"]),
    (Lang::Ruby, &["rb", "rake", "gemspec"]),
    (Lang::Rust, &["rs"]),
    (Lang::Tsx, &["tsx"]),
    (Lang::TypeScript, &["ts", "mts", "cts"]),
];

/// The grammars, in `NAMES` order, made once.
static GRAMMARS: LazyLock<[TSLanguage; 11]> = LazyLock::new(|| {
    [
        tree_sitter_c::LANGUAGE.into(),
        tree_sitter_cpp::LANGUAGE.into(),
        tree_sitter_go::LANGUAGE.into(),
        tree_sitter_java::LANGUAGE.into(),
        tree_sitter_javascript::LANGUAGE.into(),
        tree_sitter_php::LANGUAGE_PHP_ONLY.into(),
        tree_sitter_python::LANGUAGE.into(),
        tree_sitter_ruby::LANGUAGE.into(),
        tree_sitter_rust::LANGUAGE.into(),
        tree_sitter_typescript::LANGUAGE_TSX.into(),
        tree_sitter_typescript::LANGUAGE_TYPESCRIPT.into(),
    ]
});

/// What stands for `$` in a pattern where `$` cannot start an identifier
/// (the pattern is parsed as code of the language).
const EXPANDO: char = 'µ';

impl Lang {
    fn index(self) -> usize {
        NAMES.iter().position(|(l, _)| *l == self).unwrap_or(0)
    }

    #[must_use]
    pub fn name(self) -> &'static str {
        NAMES[self.index()].1[0]
    }

    /// A language by one of its names.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        let name = name.to_ascii_lowercase();
        NAMES
            .iter()
            .find(|(_, names)| names.contains(&name.as_str()))
            .map(|(l, _)| *l)
    }

    /// The language of a file, by its extension.
    #[must_use]
    pub fn of_path(path: &str) -> Option<Self> {
        let ext = path.rsplit_once('.')?.1.to_ascii_lowercase();
        EXTENSIONS
            .iter()
            .find(|(_, exts)| exts.contains(&ext.as_str()))
            .map(|(l, _)| *l)
    }

    /// The languages a rule written for this one also runs on, whose
    /// grammars extend this one's: JavaScript rules run on TypeScript, C
    /// rules on C++ (where the pattern parses there too).
    #[must_use]
    pub fn extended_by(self) -> &'static [Lang] {
        match self {
            Lang::JavaScript => &[Lang::TypeScript, Lang::Tsx],
            Lang::TypeScript => &[Lang::Tsx],
            Lang::C => &[Lang::Cpp],
            _ => &[],
        }
    }

    /// Every name scout knows, for errors.
    #[must_use]
    pub fn known() -> String {
        NAMES.iter().map(|(_, n)| n[0]).collect::<Vec<_>>().join(", ")
    }

    fn dollar_is_identifier(self) -> bool {
        matches!(self, Lang::JavaScript | Lang::TypeScript | Lang::Tsx | Lang::Java)
    }
}

impl<'de> Deserialize<'de> for Lang {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Lang::from_name(&name).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "language {name:?} is not one scout's rules read ({})",
                Lang::known()
            ))
        })
    }
}

impl serde::Serialize for Lang {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// `$NAME`, `$$NAME`, `$$$NAME`, `$_` and `$$$` with their `$` replaced by
/// `expando`; a `$` that starts no metavariable (PHP's `$x`, a string's
/// `$`) is left alone.
fn metavariables_to(query: &str, expando: char) -> String {
    let mut out = String::with_capacity(query.len());
    let mut dollars = 0usize;
    for c in query.chars() {
        if c == '$' {
            dollars += 1;
            continue;
        }
        let meta = dollars > 0 && (c.is_ascii_uppercase() || c == '_' || dollars == 3);
        out.extend(std::iter::repeat_n(if meta { expando } else { '$' }, dollars));
        dollars = 0;
        out.push(c);
    }
    out.extend(std::iter::repeat_n(if dollars == 3 { expando } else { '$' }, dollars));
    out
}

impl Language for Lang {
    fn pre_process_pattern<'q>(&self, query: &'q str) -> Cow<'q, str> {
        if self.dollar_is_identifier() {
            Cow::Borrowed(query)
        } else {
            Cow::Owned(metavariables_to(query, EXPANDO))
        }
    }

    fn expando_char(&self) -> char {
        if self.dollar_is_identifier() {
            '$'
        } else {
            EXPANDO
        }
    }

    fn from_path<P: AsRef<Path>>(path: P) -> Option<Self> {
        Lang::of_path(&path.as_ref().to_string_lossy())
    }

    fn kind_to_id(&self, kind: &str) -> u16 {
        self.get_ts_language().id_for_node_kind(kind, true)
    }

    fn field_to_id(&self, field: &str) -> Option<u16> {
        self.get_ts_language()
            .field_id_for_name(field)
            .map(std::num::NonZero::get)
    }

    fn build_pattern(&self, builder: &PatternBuilder) -> Result<Pattern, PatternError> {
        builder.build(|src| StrDoc::try_new(src, *self))
    }
}

impl LanguageExt for Lang {
    fn get_ts_language(&self) -> TSLanguage {
        GRAMMARS[self.index()].clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_extensions_and_metavariables() {
        assert_eq!(Lang::from_name("Python"), Some(Lang::Python));
        assert_eq!(Lang::from_name("c++"), Some(Lang::Cpp));
        assert_eq!(Lang::from_name("cobol"), None);
        assert_eq!(Lang::of_path("src/db.py"), Some(Lang::Python));
        assert_eq!(Lang::of_path("web/App.TSX"), Some(Lang::Tsx));
        assert_eq!(Lang::of_path("README"), None);
        for (lang, _) in NAMES {
            assert_eq!(Lang::from_name(lang.name()), Some(lang));
        }
        assert_eq!(metavariables_to("os.system($CMD)", 'µ'), "os.system(µCMD)");
        assert_eq!(metavariables_to("f($$$ARGS, $_)", 'µ'), "f(µµµARGS, µ_)");
        assert_eq!(metavariables_to("g($$$)", 'µ'), "g(µµµ)");
        // PHP variables and a lone `$` stay.
        assert_eq!(metavariables_to("$x = $Q . $y; '$'", 'µ'), "$x = µQ . $y; '$'");
    }
}
