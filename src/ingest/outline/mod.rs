//! Outlines: the definitions in a source file (name, kind, line range),
//! from a tree-sitter parse.
//!
//! Used for line markers at symbol starts in the prompt, and so that a
//! citation can name its enclosing symbol. Parsing is bounded in time; a
//! parse that runs out of time, or whose tree is mostly errors, gives no
//! outline and the file stays plain text (each counted).
//!
//! Rust and Python are parsed from a hollowed copy: the same lines with
//! what cannot hold a definition left out (tree-sitter reads about 11
//! MB/s, and most of a file is bodies and signatures). The hollowed
//! outline must equal the whole parse's; `hollowed_outlines_over_a_tree`
//! checks that over any tree.
//!
//! Never lets a parse run past its time limit.

mod python;
mod rust;

use std::time::{Duration, Instant};

use tree_sitter::{Language, Node, ParseOptions, Parser, TreeCursor};

pub use crate::document::Symbol;
use python::hollow_python;
use rust::hollow_rust;

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
    let started = Instant::now();
    // A hollowed file that parses with errors is parsed again whole, so
    // the errors are judged on the file itself.
    let hollow = match language {
        "rust" => hollow_rust(text),
        "python" => hollow_python(text),
        _ => None,
    };
    if let Some(hollow) = hollow {
        match symbols(&grammar, kinds, hollow.as_bytes(), started, limit) {
            Err(OutlineFailure::MostlyErrors) | Ok((_, true)) => {}
            other => return other.map(|(found, _)| Some(found)),
        }
    }
    symbols(&grammar, kinds, text.as_bytes(), started, limit).map(|(found, _)| Some(found))
}

/// The definitions in `bytes`, parsed until `limit` past `started`, and
/// whether the tree has errors.
fn symbols(
    grammar: &Language,
    kinds: &[(&str, &'static str)],
    bytes: &[u8],
    started: Instant,
    limit: Duration,
) -> Result<(Vec<Symbol>, bool), OutlineFailure> {
    let mut parser = Parser::new();
    if parser.set_language(grammar).is_err() {
        return Ok((Vec::new(), false));
    }
    let mut past_limit = |_: &tree_sitter::ParseState| {
        if started.elapsed() > limit {
            std::ops::ControlFlow::Break(())
        } else {
            std::ops::ControlFlow::Continue(())
        }
    };
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
    let mut found = Vec::new();
    collect(&mut tree.walk(), bytes, &ids, &mut found);
    Ok((found, root.has_error()))
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

    /// The outline from a parse of the whole file, without hollowing.
    fn unhollowed(language: &str, src: &str) -> Vec<Symbol> {
        let (grammar, kinds) = definitions(language).unwrap();
        symbols(&grammar, kinds, src.as_bytes(), Instant::now(), Duration::from_secs(5))
            .unwrap()
            .0
    }

    /// Each case hollows to text with the same lines that parses cleanly
    /// to the whole parse's (non-empty) outline, not only through the
    /// whole-parse fallback.
    fn assert_hollowed_like_whole(language: &str, hollow: fn(&str) -> Option<String>, cases: &[&str]) {
        let (grammar, kinds) = definitions(language).unwrap();
        for src in cases {
            let text = hollow(src).expect("hollowed");
            assert_eq!(text.matches('\n').count(), src.matches('\n').count(), "{src}");
            let (found, errors) =
                symbols(&grammar, kinds, text.as_bytes(), Instant::now(), Duration::from_secs(5)).unwrap();
            assert!(!errors, "{src}\nhollowed:\n{text}");
            assert_eq!(found, unhollowed(language, src), "{src}\nhollowed:\n{text}");
            assert_eq!(outline(language, src, Duration::from_secs(5)).unwrap().unwrap(), found);
            assert!(!found.is_empty());
        }
    }

    #[test]
    fn hollowed_rust_outlines_equal_whole_parses() {
        let cases = [
            // Nested items inside a body are kept (the body is not emptied).
            "fn outer() {\n    let x = 1;\n    fn inner() -> u8 {\n        2\n    }\n}\n",
            // Braces in strings, raw strings, characters, bytes, comments.
            "fn a() {\n    let s = \"}{\";\n    let r = r#\"}\"{\"#;\n    let c = '{';\n    let b = b'}';\n    // }\n    /* { /* } */ */\n}\nstruct After;\n",
            // Lifetimes are not characters; escapes are.
            "fn l<'a>(x: &'a str) -> &'a str {\n    let q = '\\'';\n    let u = '\\u{7B}';\n    x\n}\nenum E { A { x: u8 }, B }\n",
            // A const generic block is part of an impl's name.
            "impl Field<Client, { crate::ID }> for X {\n    fn get(&self) {}\n}\nimpl Bits<{ u32::MAX }> {}\n",
            // macro_rules bodies stay whole; match arms and closures go.
            "macro_rules! m {\n    ($(#[$a:meta])* $x:expr) => {{ fn f(x: u8) {} $x }};\n}\nfn f(v: u8) -> u8 {\n    match v { 0 => { 1 } _ => (|| { v })() }\n}\n",
            // Comments outside bodies go too; one between tokens leaves a space.
            "/// Docs with a { brace.\n/** Block } docs. */\npub /* here */ fn documented() {}\n// trailing\nstruct S;\n",
            // Traits, impls with methods, modules, where clauses.
            "trait T {\n    fn f(&self) -> u8 { 1 }\n    type Out;\n}\nmod m {\n    pub fn g<T>(t: T) -> Vec<T> where T: Clone {\n        vec![t]\n    }\n}\n",
            // Attributes (brackets and strings inside) and use paths go;
            // signatures with closures, arrays and fn pointers shrink.
            "#![allow(dead_code)]\nuse std::{io::{self, Read}, fmt};\npub(crate) use a::b as c;\n#[derive(Debug)]\n#[doc = \"a ] in [ a string\"]\npub struct P { f: fn(u8) -> u8 }\n#[cfg(test)]\nmod tests {\n    use super::*;\n    #[test]\n    fn t() {}\n}\npub async unsafe fn h<F: Fn(u8) -> [u8; 4]>(\n    f: F,\n    x: &[(u8, u16); 2],\n) -> impl Iterator<Item = u8>\nwhere\n    F: Clone,\n{\n    std::iter::empty()\n}\nextern \"C\" {\n    fn ext(x: *const u8) -> i32;\n}\n",
        ];
        assert_hollowed_like_whole("rust", hollow_rust, &cases);
        // A signature shrinks to `()`, a use path to `x`, an attribute to
        // its newlines.
        assert_eq!(
            hollow_rust("#[inline]\npub fn a(x: u8,\n  y: u8) -> u8 {\n    x\n}\nuse a::{b,\n c};\n").unwrap(),
            "\npub fn a()\n{\n\n}\nuse x\n;\n"
        );
        // A body without items is emptied to its newlines.
        assert_eq!(hollow_rust("fn a() {\n    call(1);\n}\n").unwrap(), "fn a(){\n\n}\n");
        // Unbalanced braces: parsed as they are.
        assert_eq!(hollow_rust("fn a() {\n"), None);
    }

    /// Over every Rust and Python file under `SCOUT_OUTLINE_TREE` whose
    /// whole parse is clean: where the hollowed text parses cleanly, its
    /// outline is the whole parse's. Reads a real tree, so it is ignored:
    /// `SCOUT_OUTLINE_TREE=DIR cargo test --release --lib outlines_over_a_tree -- --ignored`.
    #[test]
    #[ignore = "reads the tree named by SCOUT_OUTLINE_TREE"]
    fn hollowed_outlines_over_a_tree() {
        let root = std::env::var_os("SCOUT_OUTLINE_TREE").expect("SCOUT_OUTLINE_TREE=DIR");
        let limit = Duration::from_secs(60);
        let (mut clean, mut hollowed, mut differ) = (0, 0, Vec::new());
        for entry in ignore::WalkBuilder::new(root).build().filter_map(Result::ok) {
            let path = entry.path();
            let (language, hollow): (_, fn(&str) -> Option<String>) = match path.extension().and_then(|e| e.to_str()) {
                Some("rs") => ("rust", hollow_rust),
                Some("py" | "pyi") => ("python", hollow_python),
                _ => continue,
            };
            let Ok(src) = std::fs::read_to_string(path) else {
                continue;
            };
            let (grammar, kinds) = definitions(language).unwrap();
            let Ok((whole, false)) = symbols(&grammar, kinds, src.as_bytes(), Instant::now(), limit) else {
                continue;
            };
            clean += 1;
            let Some(text) = hollow(&src) else { continue };
            let rows = |t: &str| t.bytes().filter(|&x| x == b'\n').count();
            assert_eq!(rows(&text), rows(&src), "{}", path.display());
            let Ok((found, false)) = symbols(&grammar, kinds, text.as_bytes(), Instant::now(), limit) else {
                continue;
            };
            hollowed += 1;
            if found != whole {
                differ.push(path.display().to_string());
            }
        }
        // The figure this ignored test exists to show (run with --nocapture).
        let _ = std::io::Write::write_fmt(
            &mut std::io::stderr(),
            format_args!(
                "{clean} files parse cleanly whole, {hollowed} of them hollowed, {} differ\n",
                differ.len()
            ),
        );
        assert!(differ.is_empty(), "{differ:#?}");
    }

    #[test]
    fn hollowed_python_outlines_equal_whole_parses() {
        let cases = [
            // Statements, decorators, a multi-line header, a body on the
            // header's line, nested definitions.
            "import os\n\n@decorate(\n    arg=1,\n)\nclass Store(Base, metaclass=M):\n    x: int = 1\n    def get(self, key):\n        value = self.data[\n            key\n        ]\n        return value\n\n    def many(\n        self,\n        *keys: str,\n    ) -> list[str]: ...\n\nasync def run(): await go()\n",
            // Strings that look like code or hold brackets and quotes.
            "def f():\n    s = '''\n>>> def fake(): (\n'''\n    t = \"(\" + 'x\\'y' + f\"{'['}\"\n    return s\n\nclass After: pass\n",
            // Compound statements, one-liners, match, try.
            "def g(x):\n    if x: return 1\n    elif x > 2:\n        y = 2\n    else:\n        y = 3\n    for i in range(3):\n        pass\n    while False: break\n    with open(p) as h, open(q):\n        h.read()\n    try:\n        z = 1\n    except (A, B) as e:\n        raise\n    finally:\n        pass\n    match x:\n        case [1, 2]:\n            def inner(): pass\n        case _:\n            pass\n    return y\n",
            // Trailing comments belong to a body; a comment deeper than the
            // next statement; a backslash continuation.
            "def h():\n    a = 1\n    # trailing comment\n\nclass K:\n    b = [1,\n         2]  # why\n         # and more\n    c = 3\n\ndef m():\n    total = 1 + \\\n        2\n    return total\n",
        ];
        assert_hollowed_like_whole("python", hollow_python, &cases);
        // Statements in a row keep only the last `pass`; a header keeps
        // its name; a decorator and comments shrink.
        assert_eq!(
            hollow_python("@d\ndef f(a, b=2) -> int:\n    x = 1\n    y = 2\n    # c\n    return x\n").unwrap(),
            "\ndef f():\n\n    pass\n    #\n    pass\n"
        );
        // A string that never ends, or a replaced line with a line that
        // starts like a definition: parsed as they are.
        assert_eq!(hollow_python("x = 'abc\n"), None);
        assert_eq!(hollow_python("x = \"\"\"\ndef f(): pass\n\"\"\"\n"), None);
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
