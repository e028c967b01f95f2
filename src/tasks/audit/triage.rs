//! Model triage of structural candidates. A window's candidates are listed
//! after its files (the files' prefix, and its KV, stay the same whatever
//! the rules found), each with an id (`C1`, `C2`, ...) the answer's schema
//! allows and nothing else. For each, the model says confirmed, dismissed
//! or uncertain, and gives the path from an untrusted source to the sink as
//! citations; scout checks every hop's quote against its lines.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::check::quote_in_lines;
use super::rules::Candidate;
use crate::tasks::citations::CorpusIndex;

/// Tokens held back for the candidates' list: its opening paragraph, and
/// each judged candidate's line (rule, place, the code's first 120
/// characters, the rule's message).
const LIST_TOKENS: u32 = 160;
const LINE_TOKENS: u32 = 72;
/// Answer tokens held back per judged candidate, for its verdict.
const VERDICT_TOKENS: u32 = 112;
/// Most hops of a source path.
const MAX_HOPS: u32 = 3;

/// Prompt and answer room for judging `n` candidates: what a window is
/// cut to leave free. A window whose list still comes out longer judges
/// fewer (see `read::prepare`).
#[must_use]
pub(super) fn reserve(n: u32) -> u32 {
    if n == 0 {
        0
    } else {
        LIST_TOKENS + n * (LINE_TOKENS + VERDICT_TOKENS)
    }
}

/// Answer room for `n` verdicts.
#[must_use]
pub(super) fn answer_room(n: usize) -> u32 {
    n as u32 * VERDICT_TOKENS
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct RawVerdict {
    candidate: String,
    verdict: String,
    #[serde(default)]
    source: Vec<RawHop>,
    #[serde(default)]
    reason: String,
}

#[derive(Debug, Clone, Deserialize)]
struct RawHop {
    path: String,
    line: u32,
    #[serde(default)]
    evidence: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VerdictKind {
    /// Untrusted input reaches it.
    Confirmed,
    /// It is safe.
    Dismissed,
    /// The model could not tell.
    Uncertain,
    /// Over `--max-candidates` for its window, or its window failed.
    NotJudged,
}

/// One step of the path from an untrusted source to the sink.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hop {
    pub anchor: String,
    pub evidence: String,
    /// The quote is in the cited line.
    pub verified: bool,
}

/// The model's verdict on a candidate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub verdict: VerdictKind,
    pub reason: String,
    /// Source first, sink last.
    pub path: Vec<Hop>,
    /// The window (0-based) that judged it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<usize>,
}

impl Verdict {
    /// Every hop the model cited checks out (none cited counts as none
    /// failing).
    #[must_use]
    pub fn path_verified(&self) -> bool {
        self.path.iter().all(|h| h.verified)
    }

    /// Confirmed, with a path that checks out.
    #[must_use]
    pub fn confirms(&self) -> bool {
        self.verdict == VerdictKind::Confirmed && self.path_verified()
    }

    /// Dismissed, citing at least one line (what makes it safe) and every
    /// cited line checking out. A dismissal that cites nothing checkable
    /// does not overrule a rule's match.
    #[must_use]
    pub fn dismisses(&self) -> bool {
        self.verdict == VerdictKind::Dismissed && !self.path.is_empty() && self.path_verified()
    }
}

/// The candidates in one window's files.
pub(super) struct WindowCandidates {
    /// Indices into the audit's candidate list, of those the model judges.
    pub judged: Vec<usize>,
    /// Candidates in the window's files, judged or not.
    pub all: usize,
}

impl WindowCandidates {
    pub fn of(candidates: &[Candidate], paths: &[&str], most: usize) -> Self {
        let inside: Vec<usize> = candidates
            .iter()
            .enumerate()
            .filter(|(_, c)| paths.contains(&c.path.as_str()))
            .map(|(i, _)| i)
            .collect();
        Self {
            all: inside.len(),
            judged: inside.into_iter().take(most).collect(),
        }
    }

    /// The ids the model may name.
    pub fn ids(&self) -> Vec<String> {
        (1..=self.judged.len()).map(|n| format!("C{n}")).collect()
    }

    /// The list shown after the task; empty when there is nothing to judge.
    pub fn text(&self, candidates: &[Candidate]) -> String {
        if self.judged.is_empty() {
            return String::new();
        }
        let mut out = String::from(
            "\n\nStructural rules matched the places below in the files above. Judge each one in \
             `verdicts`: `confirmed` when input an attacker controls reaches it, `dismissed` when it \
             is safe, `uncertain` when the files do not show. In `source`, cite lines as file, line \
             and a short quote copied exactly from that line: for `confirmed`, the path from where \
             the untrusted value enters to this place, one step per line; for `dismissed`, the line \
             that makes it safe (a constant, a bound parameter, a check).\n",
        );
        for (n, &i) in self.judged.iter().enumerate() {
            let c = &candidates[i];
            let code: String = c.text.lines().next().unwrap_or_default().chars().take(120).collect();
            let _ = writeln!(
                out,
                "- C{}: {} at {}:{}: `{}` ({})",
                n + 1,
                c.rule,
                c.path,
                c.line_start,
                code.trim(),
                c.message
            );
        }
        out
    }

    /// The model's verdicts, checked, by index into the candidate list;
    /// candidates it did not judge are marked so.
    pub fn verdicts(&self, raw: &[RawVerdict], window: usize, index: &CorpusIndex<'_>) -> Vec<(usize, Verdict)> {
        let mut out: Vec<(usize, Verdict)> = Vec::new();
        for v in raw {
            let Some(n) = v
                .candidate
                .trim()
                .strip_prefix('C')
                .and_then(|n| n.parse::<usize>().ok())
            else {
                continue;
            };
            let Some(&i) = n.checked_sub(1).and_then(|k| self.judged.get(k)) else {
                continue;
            };
            if out.iter().any(|(j, _)| *j == i) {
                continue;
            }
            let verdict = match v.verdict.as_str() {
                "confirmed" => VerdictKind::Confirmed,
                "dismissed" => VerdictKind::Dismissed,
                _ => VerdictKind::Uncertain,
            };
            let path = v
                .source
                .iter()
                .take(MAX_HOPS as usize)
                .map(|h| {
                    let (anchor, verified) = quote_in_lines(index, &h.path, h.line, h.line, &h.evidence);
                    Hop {
                        anchor,
                        evidence: h.evidence.trim().to_owned(),
                        verified,
                    }
                })
                .collect();
            out.push((
                i,
                Verdict {
                    verdict,
                    reason: v.reason.trim().to_owned(),
                    path,
                    window: Some(window),
                },
            ));
        }
        out
    }
}

/// The schema of the verdicts: one per listed candidate.
#[must_use]
pub(super) fn verdicts_schema(ids: &[String], path: &Value) -> Value {
    json!({
        "type": "array",
        "minItems": ids.len(),
        "maxItems": ids.len(),
        "items": {
            "type": "object",
            "properties": {
                "candidate": {"type": "string", "enum": ids},
                "verdict": {"type": "string", "enum": ["confirmed", "dismissed", "uncertain"]},
                "source": {
                    "type": "array",
                    "maxItems": MAX_HOPS,
                    "items": {
                        "type": "object",
                        "properties": {
                            "path": path,
                            "line": {"type": "integer", "minimum": 1},
                            "evidence": {"type": "string", "maxLength": 120}
                        },
                        "required": ["path", "line", "evidence"],
                        "additionalProperties": false
                    }
                },
                "reason": {"type": "string", "maxLength": 160}
            },
            "required": ["candidate", "verdict", "source", "reason"],
            "additionalProperties": false
        }
    })
}
