//! Outlines: the definitions in a source file (name, kind, line range),
//! from a tree-sitter parse.
//!
//! Used for line markers at symbol starts in the prompt, and so that a
//! citation can name its enclosing symbol. Parsing is bounded in time; a
//! parse that runs out of time, or whose tree is mostly errors, gives no
//! outline and the file stays plain text (each counted).

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tree_sitter::{Language, Node, ParseOptions, Parser, TreeCursor};

/// A definition in a source file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Symbol {
    pub name: String,
    pub kind: String,
    pub start_line: u32,
    pub end_line: u32,
}

/// Why a file has no outline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutlineFailure {
    /// The parse ran past its time limit.
    Timeout,
    /// More than half of the file parsed as errors.
    MostlyErrors,
}

/// (node kind, what to call it) for the definitions of each language.
fn definitions(language: &str) -> Option<(Language, &'static [(&'static str, &'static str)])> {
    Some(match language {
        "rust" => (
            tree_sitter_rust::LANGUAGE.into(),
            &[
                ("function_item", "fn"),
                ("struct_item", "struct"),
                ("enum_item", "enum"),
                ("trait_item", "trait"),
                ("impl_item", "impl"),
                ("mod_item", "mod"),
                ("type_item", "type"),
                ("macro_definition", "macro"),
                ("union_item", "union"),
            ],
        ),
        "python" => (
            tree_sitter_python::LANGUAGE.into(),
            &[("function_definition", "def"), ("class_definition", "class")],
        ),
        "javascript" => (
            tree_sitter_javascript::LANGUAGE.into(),
            &[
                ("function_declaration", "function"),
                ("generator_function_declaration", "function"),
                ("class_declaration", "class"),
                ("method_definition", "method"),
                ("variable_declarator", "function"),
            ],
        ),
        "typescript" => (
            tree_sitter_typescript::LANGUAGE_TSX.into(),
            &[
                ("function_declaration", "function"),
                ("generator_function_declaration", "function"),
                ("class_declaration", "class"),
                ("abstract_class_declaration", "class"),
                ("method_definition", "method"),
                ("interface_declaration", "interface"),
                ("type_alias_declaration", "type"),
                ("enum_declaration", "enum"),
                ("internal_module", "namespace"),
                ("variable_declarator", "function"),
            ],
        ),
        "go" => (
            tree_sitter_go::LANGUAGE.into(),
            &[
                ("function_declaration", "func"),
                ("method_declaration", "method"),
                ("type_spec", "type"),
            ],
        ),
        "java" => (
            tree_sitter_java::LANGUAGE.into(),
            &[
                ("class_declaration", "class"),
                ("interface_declaration", "interface"),
                ("enum_declaration", "enum"),
                ("record_declaration", "record"),
                ("method_declaration", "method"),
                ("constructor_declaration", "constructor"),
            ],
        ),
        "c" => (
            tree_sitter_c::LANGUAGE.into(),
            &[
                ("function_definition", "function"),
                ("struct_specifier", "struct"),
                ("enum_specifier", "enum"),
                ("union_specifier", "union"),
            ],
        ),
        "cpp" => (
            tree_sitter_cpp::LANGUAGE.into(),
            &[
                ("function_definition", "function"),
                ("class_specifier", "class"),
                ("struct_specifier", "struct"),
                ("enum_specifier", "enum"),
                ("namespace_definition", "namespace"),
            ],
        ),
        _ => return None,
    })
}

/// The outline of `text` in `language` (`Ok(None)` when there is no grammar
/// for it), parsing for at most `limit`.
pub fn outline(language: &str, text: &str, limit: Duration) -> Result<Option<Vec<Symbol>>, OutlineFailure> {
    let Some((grammar, kinds)) = definitions(language) else {
        return Ok(None);
    };
    let mut parser = Parser::new();
    if parser.set_language(&grammar).is_err() {
        return Ok(None);
    }
    let started = Instant::now();
    let mut past_limit = |_: &tree_sitter::ParseState| started.elapsed() > limit;
    let bytes = text.as_bytes();
    let tree = parser
        .parse_with_options(
            &mut |offset, _| if offset < bytes.len() { &bytes[offset..] } else { &[] },
            None,
            Some(ParseOptions::new().progress_callback(&mut past_limit)),
        )
        .ok_or(OutlineFailure::Timeout)?;
    let root = tree.root_node();
    if root.has_error() && error_bytes(root) * 2 > bytes.len() {
        return Err(OutlineFailure::MostlyErrors);
    }
    // Node kinds compared by id, not name: the walk visits every node.
    let ids: Vec<(u16, &str)> = kinds
        .iter()
        .map(|&(kind, label)| (grammar.id_for_node_kind(kind, true), label))
        // 0: a kind this grammar version does not have.
        .filter(|&(id, _)| id != 0)
        .collect();
    let mut symbols = Vec::new();
    collect(&mut tree.walk(), bytes, &ids, &mut symbols);
    Ok(Some(symbols))
}

/// Bytes covered by ERROR nodes (outermost ones only).
fn error_bytes(node: Node<'_>) -> usize {
    if node.is_error() {
        return node.byte_range().len();
    }
    if !node.has_error() {
        return 0;
    }
    let mut cursor = node.walk();
    node.children(&mut cursor).map(error_bytes).sum()
}

/// Every definition under the cursor's node, in document order.
fn collect(cursor: &mut TreeCursor<'_>, src: &[u8], kinds: &[(u16, &str)], out: &mut Vec<Symbol>) {
    loop {
        let node = cursor.node();
        if let Some((_, label)) = kinds.iter().find(|(k, _)| *k == node.kind_id()) {
            if let Some(name) = symbol_name(node, src) {
                out.push(Symbol {
                    name,
                    kind: (*label).to_owned(),
                    start_line: node.start_position().row as u32 + 1,
                    end_line: node.end_position().row as u32 + 1,
                });
            }
        }
        // Depth first: down, else along, else up until a sibling.
        if cursor.goto_first_child() || cursor.goto_next_sibling() {
            continue;
        }
        loop {
            if !cursor.goto_parent() {
                return;
            }
            if cursor.goto_next_sibling() {
                break;
            }
        }
    }
}

fn text_of(node: Node<'_>, src: &[u8]) -> String {
    String::from_utf8_lossy(&src[node.byte_range()]).into_owned()
}

/// The name a definition node declares, if it has one.
fn symbol_name(node: Node<'_>, src: &[u8]) -> Option<String> {
    match node.kind() {
        // `impl Trait for Type` is named by its type (and trait).
        "impl_item" => {
            let ty = node.child_by_field_name("type").map(|t| text_of(t, src))?;
            Some(match node.child_by_field_name("trait") {
                Some(tr) => format!("{} for {ty}", text_of(tr, src)),
                None => ty,
            })
        }
        // Only `const f = () => ...` and `const f = function ...`.
        "variable_declarator" => {
            let value = node.child_by_field_name("value")?;
            if !matches!(value.kind(), "arrow_function" | "function_expression" | "function") {
                return None;
            }
            node.child_by_field_name("name").map(|n| text_of(n, src))
        }
        // C and C++ functions: the name is inside nested declarators.
        "function_definition" if node.child_by_field_name("name").is_none() => {
            let mut d = node.child_by_field_name("declarator")?;
            while let Some(inner) = d.child_by_field_name("declarator") {
                if matches!(d.kind(), "qualified_identifier") {
                    break;
                }
                d = inner;
            }
            Some(text_of(d, src))
        }
        // A struct or enum used without a body (`struct s x;`) declares
        // nothing new.
        "struct_specifier" | "enum_specifier" | "union_specifier" | "class_specifier" => {
            node.child_by_field_name("body")?;
            node.child_by_field_name("name").map(|n| text_of(n, src))
        }
        _ => node.child_by_field_name("name").map(|n| text_of(n, src)),
    }
}

/// The innermost symbol containing `line`.
#[must_use]
pub fn enclosing(symbols: &[Symbol], line: u32) -> Option<&Symbol> {
    symbols
        .iter()
        .filter(|s| s.start_line <= line && line <= s.end_line)
        .min_by_key(|s| s.end_line - s.start_line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(language: &str, src: &str) -> String {
        outline(language, src, Duration::from_secs(5))
            .unwrap()
            .unwrap()
            .iter()
            .map(|s| format!("{} {} {}-{}", s.kind, s.name, s.start_line, s.end_line))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn rust() {
        let src = "struct Point { x: i32 }\n\nimpl Display for Point {\n    fn fmt(&self) {}\n}\n\nmod inner {\n    pub fn helper() -> u8 {\n        1\n    }\n}\n";
        insta::assert_snapshot!(shown("rust", src), @r"
        struct Point 1-1
        impl Display for Point 3-5
        fn fmt 4-4
        mod inner 7-11
        fn helper 8-10
        ");
    }

    #[test]
    fn python() {
        let src =
            "import os\n\nclass Store:\n    def get(self, key):\n        return key\n\n@cache\ndef load():\n    pass\n";
        insta::assert_snapshot!(shown("python", src), @r"
        class Store 3-5
        def get 4-5
        def load 8-9
        ");
    }

    #[test]
    fn javascript_and_typescript() {
        let js = "function a() {}\nconst b = () => 1;\nconst c = 3;\nclass D {\n  m() {}\n}\n";
        insta::assert_snapshot!(shown("javascript", js), @r"
        function a 1-1
        function b 2-2
        class D 4-6
        method m 5-5
        ");
        let ts = "interface User { id: number }\ntype Id = string;\nexport function find(id: Id): User | null {\n  return null;\n}\nenum Color { Red }\n";
        insta::assert_snapshot!(shown("typescript", ts), @r"
        interface User 1-1
        type Id 2-2
        function find 3-5
        enum Color 6-6
        ");
    }

    #[test]
    fn go_and_java() {
        let go = "package main\n\ntype Server struct{}\n\nfunc (s *Server) Run() error {\n\treturn nil\n}\n\nfunc main() {}\n";
        insta::assert_snapshot!(shown("go", go), @r"
        type Server 3-3
        method Run 5-7
        func main 9-9
        ");
        let java = "public class Account {\n  public Account() {}\n  void close() {}\n}\ninterface Repo {}\n";
        insta::assert_snapshot!(shown("java", java), @r"
        class Account 1-4
        constructor Account 2-2
        method close 3-3
        interface Repo 5-5
        ");
    }

    #[test]
    fn c_and_cpp() {
        let c = "struct node { int v; };\nstatic int *find(struct node *n) {\n  return 0;\n}\nstruct node x;\n";
        insta::assert_snapshot!(shown("c", c), @r"
        struct node 1-1
        function find 2-4
        ");
        let cpp = "namespace db {\nclass Conn {\n public:\n  void open();\n};\nvoid Conn::open() {}\n}\n";
        insta::assert_snapshot!(shown("cpp", cpp), @r"
        namespace db 1-7
        class Conn 2-5
        function Conn::open 6-6
        ");
    }

    #[test]
    fn garbage_is_mostly_errors_and_unknown_languages_have_no_outline() {
        let junk = ")))) ((( }}}} {{{ ;;; fn fn fn ))) (((".repeat(50);
        assert_eq!(
            outline("rust", &junk, Duration::from_secs(5)),
            Err(OutlineFailure::MostlyErrors)
        );
        assert_eq!(outline("cobol", "x", Duration::from_secs(5)), Ok(None));
    }

    #[test]
    fn a_zero_time_limit_times_out() {
        let big = "fn f() { let x = 1; }\n".repeat(20_000);
        assert_eq!(outline("rust", &big, Duration::ZERO), Err(OutlineFailure::Timeout));
    }

    #[test]
    fn the_innermost_enclosing_symbol_is_chosen() {
        let syms = outline(
            "rust",
            "mod m {\n    fn f() {\n        1;\n    }\n}\n",
            Duration::from_secs(5),
        )
        .unwrap()
        .unwrap();
        assert_eq!(enclosing(&syms, 3).unwrap().name, "f");
        assert_eq!(enclosing(&syms, 1).unwrap().name, "m");
        assert!(enclosing(&syms, 9).is_none());
    }
}
