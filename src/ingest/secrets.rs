//! Secrets: likely credentials found in text and redacted before the text
//! is stored, so neither the corpus file nor any prompt holds them.
//!
//! Detected: private key blocks, cloud and service tokens with known
//! shapes (AWS, GitHub, GitLab, Slack, Google, Stripe, OpenAI-style, JWT),
//! passwords inside connection URLs, and high-entropy values assigned to
//! key-like names (`password = "..."`, `API_TOKEN=...`). A redaction keeps
//! the line structure (`[REDACTED:kind]` in place of the value), so line
//! anchors stay exact.
//!
//! Never stores or prints a secret it found, only its kind and place.

use std::sync::LazyLock;

use regex::Regex;

pub use crate::document::SecretFinding;

struct Rule {
    kind: &'static str,
    re: Regex,
    /// Capture group holding the secret (0: the whole match).
    group: usize,
}

// Word boundaries and name characters are ASCII (`(?-u:\b)`, not `\b`/`\w`):
// a Unicode `\b` keeps the regex engine off its DFA, and the scan ran at a
// few MB/s, the slowest step of an ingest.
/// What each rule finds: (kind, pattern, capture group holding the secret,
/// 0 for the whole match).
const PATTERNS: [(&str, &str, usize); 11] = [
    ("aws_access_key_id", r"(?-u:\b)(?:AKIA|ASIA)[0-9A-Z]{16}(?-u:\b)", 0),
    (
        "github_token",
        r"(?-u:\b)(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{60,})(?-u:\b)",
        0,
    ),
    ("gitlab_token", r"(?-u:\b)glpat-[A-Za-z0-9_\-]{20,}(?-u:\b)", 0),
    ("slack_token", r"(?-u:\b)xox[abprs]-[A-Za-z0-9\-]{10,}(?-u:\b)", 0),
    ("google_api_key", r"(?-u:\b)AIza[0-9A-Za-z_\-]{35}(?-u:\b)", 0),
    (
        "stripe_secret_key",
        r"(?-u:\b)(?:sk|rk)_live_[0-9A-Za-z]{20,}(?-u:\b)",
        0,
    ),
    ("openai_api_key", r"(?-u:\b)sk-(?:proj-)?[A-Za-z0-9_\-]{32,}(?-u:\b)", 0),
    (
        "jwt",
        r"(?-u:\b)eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}",
        0,
    ),
    (
        "url_password",
        r"[A-Za-z][A-Za-z0-9+.\-]*://[^/\s:@]+:([^@\s/]{4,})@",
        1,
    ),
    // name = "value" / name: 'value' / "name": "value"
    (
        "assigned_secret",
        r#"(?i)(?-u:\b)[A-Za-z0-9_.\-]*(?:password|passwd|pwd|secret|token|api[_\-]?key|apikey|access[_\-]?key|auth[_\-]?key|private[_\-]?key|credentials?)[A-Za-z0-9_.\-]*["']?\s*[:=]\s*["']([^"'\s]{8,})["']"#,
        1,
    ),
    // NAME=value lines of .env files and shell scripts.
    (
        "assigned_secret",
        r"(?im)^\s*(?:export\s+)?[A-Z0-9_]*(?:PASSWORD|PASSWD|SECRET|TOKEN|API_KEY|APIKEY|ACCESS_KEY|PRIVATE_KEY)[A-Z0-9_]*\s*=\s*([^\s'\x22#]{8,})\s*$",
        1,
    ),
];

/// The rules one by one, compiled only for a file that [`ANY`] matched
/// (most runs meet none: compiling them all took longer than a re-ingest
/// of an unchanged tree).
static RULES: LazyLock<Vec<Rule>> = LazyLock::new(|| {
    PATTERNS
        .iter()
        .map(|&(kind, pattern, group)| Rule {
            kind,
            re: Regex::new(pattern).expect("secret patterns are valid"),
            group,
        })
        .collect()
});

const PRIVATE_KEY_BEGIN_PATTERN: &str = r"-----BEGIN [A-Z ]*PRIVATE KEY( BLOCK)?-----";

static PRIVATE_KEY_BEGIN: LazyLock<Regex> = LazyLock::new(|| Regex::new(PRIVATE_KEY_BEGIN_PATTERN).expect("valid"));
static PRIVATE_KEY_END: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"-----END [A-Z ]*PRIVATE KEY( BLOCK)?-----").expect("valid"));

/// Bits of Shannon entropy per character.
fn entropy(s: &str) -> f64 {
    let mut counts = std::collections::HashMap::new();
    for c in s.chars() {
        *counts.entry(c).or_insert(0usize) += 1;
    }
    let n = s.chars().count() as f64;
    counts.values().map(|&k| k as f64 / n).map(|p| -p * p.log2()).sum()
}

/// Whether a value assigned to a key-like name looks like a real secret
/// rather than code, a placeholder or a variable reference.
fn looks_secret(value: &str) -> bool {
    let lower = value.to_ascii_lowercase();
    let placeholder = [
        "changeme",
        "change_me",
        "example",
        "placeholder",
        "your_",
        "xxxx",
        "****",
        "redacted",
        "dummy",
        "<",
        "${",
        "{{",
        "%(",
    ];
    if placeholder.iter().any(|p| lower.contains(p)) {
        return false;
    }
    // Code, not a literal: calls, attribute paths, environment lookups.
    if value.contains('(') || lower.starts_with("os.") || lower.starts_with("env") || lower.starts_with("process.") {
        return false;
    }
    let has_digit = value.chars().any(|c| c.is_ascii_digit());
    let has_alpha = value.chars().any(char::is_alphabetic);
    entropy(value) >= 3.0 && (has_digit || !has_alpha || value.len() >= 20)
}

/// Every pattern at once: one pass over a whole file tells whether any
/// line needs the per-line work (most files hold no secret at all).
static ANY: LazyLock<regex::RegexSet> = LazyLock::new(|| {
    let patterns = PATTERNS.iter().map(|p| p.1).chain([PRIVATE_KEY_BEGIN_PATTERN]);
    regex::RegexSet::new(patterns).expect("secret patterns are valid")
});

/// Finds and redacts secrets in `text` (a file, or a PDF page), returning
/// the redacted text and what was found. Lines are never added or removed.
#[must_use]
pub fn redact(path: &str, text: &str) -> (String, Vec<SecretFinding>) {
    if !ANY.is_match(text) {
        return (text.to_owned(), Vec::new());
    }
    let mut findings = Vec::new();
    let mut out = String::with_capacity(text.len());
    let mut in_key = false;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let n = i as u32 + 1;
        let (body, newline) = line.strip_suffix('\n').map_or((line, ""), |b| (b, "\n"));
        if in_key || PRIVATE_KEY_BEGIN.is_match(body) {
            if !in_key {
                findings.push(SecretFinding {
                    path: path.to_owned(),
                    line: n,
                    page: None,
                    kind: "private_key".into(),
                });
            }
            in_key = !PRIVATE_KEY_END.is_match(body);
            out.push_str(if findings.last().is_some_and(|f| f.line == n) {
                "[REDACTED:private_key]"
            } else {
                "[REDACTED]"
            });
            out.push_str(newline);
            continue;
        }
        let mut redacted = body.to_owned();
        for r in RULES.iter() {
            // Collect spans first: replacing shifts offsets.
            let spans: Vec<(usize, usize)> =
                r.re.captures_iter(&redacted)
                    .filter_map(|c| c.get(r.group))
                    .filter(|m| r.kind != "assigned_secret" || looks_secret(m.as_str()))
                    .map(|m| (m.start(), m.end()))
                    .collect();
            for &(start, end) in spans.iter().rev() {
                redacted.replace_range(start..end, &format!("[REDACTED:{}]", r.kind));
            }
            if !spans.is_empty() {
                findings.push(SecretFinding {
                    path: path.to_owned(),
                    line: n,
                    page: None,
                    kind: r.kind.to_owned(),
                });
            }
        }
        out.push_str(&redacted);
        out.push_str(newline);
    }
    (out, findings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<(u32, String)> {
        redact("f", text).1.into_iter().map(|f| (f.line, f.kind)).collect()
    }

    #[test]
    fn known_token_shapes_are_found_and_redacted() {
        let text = "aws = AKIAIOSFODNN7EXAMPLQ\n\
                    gh = ghp_0123456789abcdefghijklmnopqrstuvwxyz\n\
                    db = postgres://app:s3cr3tP4ss@db.internal/app\n\
                    nothing here\n";
        let (out, found) = redact("f", text);
        assert_eq!(
            found.iter().map(|f| (f.line, f.kind.as_str())).collect::<Vec<_>>(),
            vec![(1, "aws_access_key_id"), (2, "github_token"), (3, "url_password")]
        );
        assert!(
            !out.contains("AKIAIOSFODNN7EXAMPLQ") && !out.contains("s3cr3tP4ss"),
            "{out}"
        );
        assert!(
            out.contains("postgres://app:[REDACTED:url_password]@db.internal/app"),
            "{out}"
        );
        assert_eq!(out.lines().count(), 4, "lines are kept");
    }

    #[test]
    fn private_key_blocks_are_redacted_line_for_line() {
        let text = "before\n-----BEGIN RSA PRIVATE KEY-----\nMIIEow\nAIBAAK\n-----END RSA PRIVATE KEY-----\nafter\n";
        let (out, found) = redact("k", text);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].line, 2);
        assert_eq!(
            out,
            "before\n[REDACTED:private_key]\n[REDACTED]\n[REDACTED]\n[REDACTED]\nafter\n"
        );
    }

    #[test]
    fn high_entropy_values_of_key_like_names_are_secrets_and_code_is_not() {
        assert_eq!(
            kinds("DB_PASSWORD = \"x9Qv!2mLp#7Rt\"\n"),
            vec![(1, "assigned_secret".into())]
        );
        assert_eq!(
            kinds("API_TOKEN=9f8e7d6c5b4a39281706\n"),
            vec![(1, "assigned_secret".into())]
        );
        assert!(kinds("password = get_password(user)\n").is_empty());
        assert!(kinds("token = \"changeme-please\"\n").is_empty());
        assert!(kinds("SECRET_KEY = os.environ[\"SECRET_KEY\"]\n").is_empty());
        assert!(kinds("password_hint = \"ask the admin\"\n").is_empty());
    }

    #[test]
    fn ordinary_code_has_no_findings() {
        let code = "fn main() {\n    let token_count = tokens.len();\n    println!(\"{token_count}\");\n}\n";
        assert!(kinds(code).is_empty());
    }
}
