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
    let started = Instant::now();
    // Rust blocks that hold no definitions are parsed empty: most of a
    // file's bytes are function bodies, and tree-sitter reads about 11
    // MB/s. A hollowed file that parses with errors is parsed again whole,
    // so the errors are judged on the file itself.
    if language == "rust" {
        if let Some(hollow) = hollow_rust(text) {
            match symbols(&grammar, kinds, hollow.as_bytes(), started, limit) {
                Err(OutlineFailure::MostlyErrors) | Ok((_, true)) => {}
                other => return other.map(|(found, _)| Some(found)),
            }
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
    let mut past_limit = |_: &tree_sitter::ParseState| started.elapsed() > limit;
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

/// Keywords that begin a Rust definition: a block holding none of them
/// holds no definition.
const RUST_ITEMS: &[&[u8]] = &[
    b"fn",
    b"struct",
    b"enum",
    b"trait",
    b"impl",
    b"mod",
    b"type",
    b"union",
    b"macro_rules",
];

/// `src` with the inside of every brace block that holds no definition
/// keyword (a function body without nested items, a struct's fields, a
/// match) emptied but for its newlines, so every definition keeps its
/// lines and its name. Strings, characters, raw strings and comments are
/// skipped while matching braces. Only a block that follows `)`, `]`,
/// `>` or a word is emptied: one after `<` or `,` is a const generic
/// argument, part of an `impl`'s name. A `macro_rules!` body is kept (an
/// empty one is not a macro definition). `None` when the braces do not
/// balance (the file is parsed as it is).
fn hollow_rust(src: &str) -> Option<String> {
    let b = src.as_bytes();
    let n = b.len();
    // Open blocks: (where the `{` is, whether a keyword was seen inside,
    // whether it may be emptied).
    let mut open: Vec<(usize, bool, bool)> = Vec::new();
    // Byte ranges kept only as their newlines (and a space, for a block
    // comment between two tokens).
    let mut empty: Vec<(usize, usize, bool)> = Vec::new();
    let mut keep_next = false;
    // The last byte of code before this one, outside comments and
    // whitespace (`a` for any word, `"` for a string).
    let mut last = b'{';
    let mut i = 0;
    while i < n {
        let c = b[i];
        let comment = c == b'/' && matches!(b.get(i + 1), Some(b'/' | b'*'));
        if !(c.is_ascii_whitespace() || comment) {
            last = match c {
                b'{' | b'}' => last,
                b'_' | b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z' | 0x80.. => b'a',
                _ => c,
            };
        }
        match c {
            // Comments go too (doc comments are much of a Rust file).
            b'/' if b.get(i + 1) == Some(&b'/') => {
                let end = b[i..].iter().position(|&x| x == b'\n').map_or(n, |p| i + p);
                empty.push((i, end, false));
                i = end;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let from = i;
                let mut depth = 1;
                i += 2;
                while i < n && depth > 0 {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                    } else {
                        i += 1;
                    }
                }
                empty.push((from, i.min(n), true));
            }
            b'"' => i = skip_string(b, i + 1)?,
            b'\'' => {
                // A character ('x', '\n', '\u{1F600}', 'é') or a lifetime.
                if b.get(i + 1) == Some(&b'\\') {
                    i += 3;
                    while i < n && b[i] != b'\'' && b[i] != b'\n' {
                        i += 1;
                    }
                    i += 1;
                } else {
                    let width = src
                        .get(i + 1..)
                        .and_then(|r| r.chars().next())
                        .map_or(1, char::len_utf8);
                    i += if b.get(i + 1 + width) == Some(&b'\'') {
                        2 + width
                    } else {
                        1
                    };
                }
            }
            b'{' => {
                let may_empty = matches!(last, b')' | b']' | b'>' | b'a');
                open.push((i, keep_next, may_empty));
                keep_next = false;
                last = b'{';
                i += 1;
            }
            b'}' => {
                let (start, keyword, may_empty) = open.pop()?;
                last = b'}';
                if keyword {
                    if let Some(parent) = open.last_mut() {
                        parent.1 = true;
                    }
                } else if may_empty {
                    // Inner blocks emptied already lie inside this one.
                    while empty.last().is_some_and(|&(s, _, _)| s > start) {
                        empty.pop();
                    }
                    empty.push((start + 1, i, false));
                }
                i += 1;
            }
            c if c == b'_' || c.is_ascii_alphabetic() || c >= 0x80 => {
                let end = b[i..]
                    .iter()
                    .position(|&x| !(x == b'_' || x.is_ascii_alphanumeric() || x >= 0x80))
                    .map_or(n, |p| i + p);
                let word = &b[i..end];
                // Raw strings: r"..", r#".."#, br#".."#.
                if matches!(word, b"r" | b"br" | b"cr") && matches!(b.get(end), Some(b'"' | b'#')) {
                    let hashes = b[end..].iter().take_while(|&&x| x == b'#').count();
                    if b.get(end + hashes) == Some(&b'"') {
                        i = skip_raw(b, end + hashes + 1, hashes)?;
                        continue;
                    }
                }
                if RUST_ITEMS.contains(&word) {
                    if let Some(top) = open.last_mut() {
                        top.1 = true;
                    }
                    keep_next = word == b"macro_rules";
                }
                i = end;
            }
            _ => i += 1,
        }
    }
    if !open.is_empty() || empty.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(src.len() / 2);
    let mut at = 0;
    for (start, end, space) in empty {
        out.push_str(&src[at..start]);
        if space {
            out.push(' ');
        }
        out.extend(src[start..end].bytes().filter(|&x| x == b'\n').map(char::from));
        at = end;
    }
    out.push_str(&src[at..]);
    Some(out)
}

/// Past the end of a string whose contents start at `i` (escapes
/// skipped); `None` when it never ends.
fn skip_string(b: &[u8], mut i: usize) -> Option<usize> {
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// Past the end of a raw string with `hashes` #s whose contents start at
/// `i`.
fn skip_raw(b: &[u8], mut i: usize, hashes: usize) -> Option<usize> {
    while i < b.len() {
        if b[i] == b'"' && b[i + 1..].iter().take(hashes).filter(|&&x| x == b'#').count() == hashes {
            return Some(i + 1 + hashes);
        }
        i += 1;
    }
    None
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
    fn unhollowed(src: &str) -> Vec<Symbol> {
        let (grammar, kinds) = definitions("rust").unwrap();
        symbols(&grammar, kinds, src.as_bytes(), Instant::now(), Duration::from_secs(5))
            .unwrap()
            .0
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
            // macro_rules bodies stay; match arms and closures go.
            "macro_rules! m {\n    ($x:expr) => {{ $x }};\n}\nfn f(v: u8) -> u8 {\n    match v { 0 => { 1 } _ => (|| { v })() }\n}\n",
            // Comments outside bodies go too; one between tokens leaves a space.
            "/// Docs with a { brace.\n/** Block } docs. */\npub /* here */ fn documented() {}\n// trailing\nstruct S;\n",
            // Traits, impls with methods, modules, where clauses.
            "trait T {\n    fn f(&self) -> u8 { 1 }\n    type Out;\n}\nmod m {\n    pub fn g<T>(t: T) -> Vec<T> where T: Clone {\n        vec![t]\n    }\n}\n",
        ];
        let (grammar, kinds) = definitions("rust").unwrap();
        for src in cases {
            let hollow = hollow_rust(src).expect("balanced");
            assert_eq!(hollow.lines().count(), src.lines().count(), "{src}");
            // The hollowed text itself parses cleanly to the same outline
            // (not only through the whole-parse fallback).
            let (found, errors) = symbols(
                &grammar,
                kinds,
                hollow.as_bytes(),
                Instant::now(),
                Duration::from_secs(5),
            )
            .unwrap();
            assert!(!errors, "{src}\nhollowed:\n{hollow}");
            assert_eq!(found, unhollowed(src), "{src}\nhollowed:\n{hollow}");
            assert_eq!(outline("rust", src, Duration::from_secs(5)).unwrap().unwrap(), found);
            assert!(!found.is_empty());
        }
        // A body without items is emptied to its newlines.
        assert_eq!(hollow_rust("fn a() {\n    call(1);\n}\n").unwrap(), "fn a() {\n\n}\n");
        // Unbalanced braces: parsed as they are.
        assert_eq!(hollow_rust("fn a() {\n"), None);
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
