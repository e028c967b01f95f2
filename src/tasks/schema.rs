//! Schemas: the JSON Schemas extraction and schema-held answers are held
//! to, built in by name, read from a file, or sent inline; the fields as a
//! model is told them; the object in a model's answer.
//!
//! In: a schema's name or text. Out: a checked [`ExtractSchema`] that
//! bounds generation and validates answers.
//! Never: calls a model or reads a corpus.

use std::fmt::Write as _;

use serde_json::Value;

use crate::limits::GENERATED_STRING_CHARS;
use crate::tasks::access::{Access, Found, Library, LookupError, Named};

/// The schemas shipped with scout, by name.
pub const BUILT_IN: [(&str, &str); 3] = [
    ("receipt", include_str!("../../prompts/schemas/receipt.json")),
    ("invoice", include_str!("../../prompts/schemas/invoice.json")),
    ("form", include_str!("../../prompts/schemas/form.json")),
];

const LIBRARY: Library = Library {
    kind: "schema",
    built_in: &BUILT_IN,
    folder: "prompts/schemas/",
    extension: ".json",
};

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error(transparent)]
    Lookup(#[from] LookupError),
    #[error("{path}: not JSON: {message}")]
    NotJson { path: String, message: String },
    #[error("{path}: not a valid JSON Schema: {message}")]
    Invalid { path: String, message: String },
    #[error("{path}: the schema must describe an object (\"type\": \"object\" with \"properties\"), one per document")]
    NotObject { path: String },
}

/// A checked JSON Schema for extraction.
#[derive(Clone)]
pub struct ExtractSchema {
    pub name: String,
    pub schema: Value,
    validator: std::sync::Arc<jsonschema::Validator>,
}

impl std::fmt::Debug for ExtractSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExtractSchema")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl ExtractSchema {
    /// A built-in schema by name (or `prompts/schemas/NAME.json`), a file
    /// (any file with [`Access::Anywhere`], only one under a root
    /// otherwise), or, from a request, the JSON Schema object itself.
    pub fn load(named: impl Into<Named>, access: &Access) -> Result<Self, SchemaError> {
        match named.into() {
            Named::Name(name) => match LIBRARY.find(&name, access)? {
                Found::BuiltIn { name, text } => Self::parse(text, name),
                Found::File { path, text } => Self::parse(&text, &path),
            },
            Named::Inline(schema) => Self::checked(schema, "request"),
        }
    }

    /// The schema the model's output is held to while it is generated:
    /// this one, with every free string (no `maxLength`, `enum`, `const`,
    /// `pattern` or `format`) bounded to [`GENERATED_STRING_CHARS`], so an
    /// answer that wanders inside a string must still close it and finish
    /// the object. Validation uses the schema as written.
    #[must_use]
    pub fn for_generation(&self) -> Value {
        fn bound(v: &mut Value) {
            match v {
                Value::Object(o) => {
                    let free_string = o.get("type").is_some_and(|t| {
                        t == "string" || t.as_array().is_some_and(|a| a.iter().any(|x| x == "string"))
                    }) && !["maxLength", "enum", "const", "pattern", "format"]
                        .iter()
                        .any(|k| o.contains_key(*k));
                    if free_string {
                        o.insert("maxLength".into(), GENERATED_STRING_CHARS.into());
                    }
                    o.values_mut().for_each(bound);
                }
                Value::Array(a) => a.iter_mut().for_each(bound),
                _ => {}
            }
        }
        let mut schema = self.schema.clone();
        bound(&mut schema);
        schema
    }

    pub fn parse(text: &str, name: &str) -> Result<Self, SchemaError> {
        let schema: Value = serde_json::from_str(text).map_err(|e| SchemaError::NotJson {
            path: name.to_owned(),
            message: e.to_string(),
        })?;
        Self::checked(schema, name)
    }

    /// A parsed schema, checked to describe one object.
    fn checked(schema: Value, name: &str) -> Result<Self, SchemaError> {
        if schema["type"] != "object" || !schema["properties"].is_object() {
            return Err(SchemaError::NotObject { path: name.to_owned() });
        }
        let validator = jsonschema::validator_for(&schema).map_err(|e| SchemaError::Invalid {
            path: name.to_owned(),
            message: e.to_string(),
        })?;
        Ok(Self {
            name: name.to_owned(),
            schema,
            validator: std::sync::Arc::new(validator),
        })
    }

    /// Why `value` does not validate (empty when it does).
    #[must_use]
    pub fn errors(&self, value: &Value) -> Vec<String> {
        self.validator
            .iter_errors(value)
            .map(|e| {
                let at = e.instance_path().to_string();
                if at.is_empty() {
                    e.to_string()
                } else {
                    format!("at {at}: {e}")
                }
            })
            .collect()
    }

    /// The fields as the model is shown them: one line per property.
    #[must_use]
    pub fn fields_text(&self) -> String {
        let mut out = String::new();
        if let Some(props) = self.schema["properties"].as_object() {
            for (name, p) in props {
                let _ = writeln!(out, "- {name} ({})", describe(p));
            }
        }
        out
    }
}

/// A property in words: its description, and the fields of an object or
/// of an array's items.
fn describe(p: &Value) -> String {
    let mut text = p["description"].as_str().unwrap_or("").to_owned();
    let inner = match p["type"].as_str() {
        Some("array") => p["items"]["properties"].as_object().map(|o| ("a list of", o)),
        Some("object") => p["properties"].as_object().map(|o| ("with", o)),
        _ => None,
    };
    if let Some((what, props)) = inner {
        let names: Vec<&str> = props.keys().map(String::as_str).collect();
        if !text.is_empty() {
            text.push_str("; ");
        }
        let _ = write!(text, "{what} {{{}}}", names.join(", "));
    }
    if text.is_empty() {
        p["type"].as_str().unwrap_or("value").to_owned()
    } else {
        text
    }
}

/// The JSON object in a model's answer (a code fence around it is allowed).
pub fn parse_object(text: &str) -> Option<Value> {
    let t = text.trim();
    let t = t
        .strip_prefix("```json")
        .or_else(|| t.strip_prefix("```"))
        .map_or(t, |rest| rest.trim_end().trim_end_matches("```"))
        .trim();
    serde_json::from_str::<Value>(t).ok().filter(Value::is_object)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_strings_are_bounded_while_generating_only() {
        let schema = ExtractSchema::parse(
            r#"{"type": "object", "properties": {
                "file": {"type": "string"},
                "code": {"type": "string", "pattern": "^[A-Z]+$"},
                "kind": {"type": "string", "enum": ["a", "b"]},
                "note": {"type": ["string", "null"], "maxLength": 20},
                "tags": {"type": "array", "items": {"type": "string"}},
                "type": {"type": "integer"}},
                "required": ["file"]}"#,
            "t",
        )
        .unwrap();
        let g = schema.for_generation();
        let p = &g["properties"];
        assert_eq!(p["file"]["maxLength"], GENERATED_STRING_CHARS);
        assert_eq!(p["tags"]["items"]["maxLength"], GENERATED_STRING_CHARS);
        assert!(p["code"]["maxLength"].is_null() && p["kind"]["maxLength"].is_null());
        assert_eq!(p["note"]["maxLength"], 20);
        assert!(p["type"]["maxLength"].is_null());
        // Validation keeps the schema as written: a longer string is valid.
        assert!(schema.schema["properties"]["file"]["maxLength"].is_null());
    }

    #[test]
    fn shipped_schemas_load_and_bad_ones_say_why() {
        for (name, _) in BUILT_IN {
            let s = ExtractSchema::load(name, &Access::Anywhere).unwrap();
            assert!(!s.fields_text().is_empty());
        }
        let r = ExtractSchema::load("prompts/schemas/receipt.json", &Access::Anywhere).unwrap();
        assert!(r.fields_text().contains("- total (the total amount paid"));
        assert!(r
            .errors(&serde_json::json!({"company": "x"}))
            .iter()
            .any(|e| e.contains("date")));
        let e = ExtractSchema::parse("{\"type\": \"array\"}", "a.json")
            .unwrap_err()
            .to_string();
        assert!(e.contains("must describe an object"), "{e}");
        let e = ExtractSchema::parse(
            "{\"type\": \"object\", \"properties\": {\"a\": {\"type\": 5}}}",
            "b.json",
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("b.json: not a valid JSON Schema"), "{e}");
        assert!(ExtractSchema::load("nope", &Access::Anywhere)
            .unwrap_err()
            .to_string()
            .contains("receipt, invoice, form"));
        let invoice = ExtractSchema::load("invoice", &Access::Anywhere).unwrap();
        assert!(invoice
            .fields_text()
            .contains("a list of {description, quantity, amount}"));
    }
}
