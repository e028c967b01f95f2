//! Checking the model's findings against the corpus: a finding's lines
//! must lie in its file and its evidence quote must be found there; one
//! that fails is kept and marked unverified, never dropped. Findings of the
//! same rule on the same lines are merged.

use std::sync::LazyLock;

use regex::Regex;

use crate::anchor::Anchor;

use super::{
    CodeSnippet, EvidenceMatch, Finding, FindingAnchor, Origin, RawFinding, RawFindings, Tier, CODE_LINES, MERGE_GAP,
};
use crate::tasks::citations::{lines_of, locate, squash, CitationStatus, CorpusIndex};
use crate::tasks::pipeline::Pipeline;

pub(super) fn excerpt(text: &str) -> String {
    let t = text.trim();
    let cut: String = t.chars().take(120).collect();
    if cut.len() < t.len() {
        format!("{cut}…")
    } else {
        cut
    }
}

/// Parses the model's findings. An answer cut off by the token limit
/// keeps the findings completed before the cut (`true` says so); `None`
/// when nothing parses.
pub(super) fn parse_findings(text: &str) -> Option<(RawFindings, bool)> {
    let t = text.trim();
    // Unconstrained engines may wrap the JSON in a code fence.
    let t = t
        .strip_prefix("```json")
        .or_else(|| t.strip_prefix("```"))
        .map_or(t, |rest| rest.trim_end().trim_end_matches("```"))
        .trim();
    if !t.starts_with('{') {
        return None;
    }
    if let Ok(parsed) = serde_json::from_str::<RawFindings>(t) {
        return Some((parsed, false));
    }
    // Cut off: close what is open after the last complete object, or after
    // the first array's opening when no object is complete.
    let mut ends: Vec<usize> = t.match_indices('}').map(|(i, _)| i + 1).collect();
    ends.reverse();
    ends.extend(t.find('[').map(|i| i + 1));
    ends.into_iter().find_map(|end| {
        let closed = close_json(&t[..end])?;
        serde_json::from_str::<RawFindings>(&closed).ok().map(|p| (p, true))
    })
}

/// `prefix` with the brackets it leaves open closed; `None` when it ends
/// inside a string.
fn close_json(prefix: &str) -> Option<String> {
    let mut open = Vec::new();
    let (mut in_string, mut escaped) = (false, false);
    for c in prefix.chars() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '{' => open.push('}'),
            '[' => open.push(']'),
            '}' | ']' => {
                open.pop();
            }
            _ => {}
        }
    }
    if in_string {
        return None;
    }
    let mut out = prefix.trim_end().trim_end_matches(',').to_owned();
    out.extend(open.iter().rev());
    Some(out)
}

static MARKER: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\[L\d+\]").expect("valid regex"));

/// The evidence's pieces that must each be found: line markers the model
/// copied from the prompt are removed, and an ellipsis splits the quote.
pub(super) fn evidence_parts(evidence: &str) -> Vec<String> {
    let cleaned = MARKER.replace_all(evidence, "");
    cleaned
        .split("...")
        .flat_map(|p| p.split('…'))
        .map(squash)
        .filter(|p| !p.is_empty())
        .collect()
}

/// One model finding checked against the corpus.
pub(super) fn check(raw: &RawFinding, window: usize, p: &Pipeline, index: &CorpusIndex<'_>) -> Finding {
    let (start, end) = if raw.line_start <= raw.line_end {
        (raw.line_start, raw.line_end)
    } else {
        (raw.line_end, raw.line_start)
    };
    let written = Anchor::Lines {
        path: raw.path.trim().to_owned(),
        start,
        end,
    };
    let (resolved, status, cited) = index.resolve_full(&written);
    let parts = evidence_parts(&raw.evidence);
    let doc = index.find(resolved.path());
    let (evidence_match, found_at) = if parts.is_empty() {
        (EvidenceMatch::Empty, None)
    } else {
        let in_cited = cited.as_deref().is_some_and(|c| {
            let c = squash(c);
            parts.iter().all(|p| c.contains(p.as_str()))
        });
        if in_cited {
            (EvidenceMatch::InCitedLines, None)
        } else {
            match doc.and_then(|d| locate(d, &parts)) {
                Some(lines) => (EvidenceMatch::ElsewhereInFile, Some(lines)),
                None => (EvidenceMatch::NotFound, None),
            }
        }
    };
    let verified = status == CitationStatus::Valid && evidence_match == EvidenceMatch::InCitedLines;
    // The code to show: the cited lines, or where the quote really is.
    let shown = match (status, found_at) {
        (_, Some(lines)) => Some(lines),
        (CitationStatus::Valid, None) => Some((start, end)),
        _ => None,
    };
    let code = doc.zip(shown).map(|(d, (a, b))| CodeSnippet {
        line_start: a,
        text: lines_of(d, a, b.min(a + CODE_LINES - 1)),
    });
    let rule = p.rule(&raw.rule);
    let severity = if p.severities.contains(&raw.severity) {
        raw.severity.clone()
    } else {
        rule.map_or_else(
            || p.severities.last().cloned().unwrap_or_default(),
            |r| r.severity.clone(),
        )
    };
    let title = if raw.title.trim().is_empty() {
        rule.map_or_else(|| raw.rule.clone(), |r| r.title.clone())
    } else {
        raw.title.trim().to_owned()
    };
    let path = resolved.path().to_owned();
    let id = super::tiers::fingerprint(&raw.rule, &path, &parts.concat());
    Finding {
        id,
        rule_id: raw.rule.clone(),
        cwe: rule.and_then(|r| r.cwe.clone()),
        tier: if verified { Tier::Verified } else { Tier::Unverified },
        origin: Origin::Model,
        severity,
        claimed_severity: None,
        rule_match: None,
        verdict: None,
        title,
        anchor: FindingAnchor {
            symbol: (status == CitationStatus::Valid)
                .then(|| index.symbol(&resolved))
                .flatten(),
            path,
            line_start: start,
            line_end: end,
            status,
        },
        evidence: raw.evidence.trim().to_owned(),
        explanation: raw.explanation.trim().to_owned(),
        fix: raw.fix.trim().to_owned(),
        verified,
        evidence_match,
        evidence_found_at: found_at.map(|(a, b)| {
            Anchor::Lines {
                path: resolved.path().to_owned(),
                start: a,
                end: b,
            }
            .to_string()
        }),
        code,
        windows: vec![window],
        occurrences: 1,
    }
}

/// Whether `evidence` is found in lines `start..=end` of `path`: the
/// anchor as the corpus spells it, and the answer. Checks one hop of a
/// verdict's source path.
pub(super) fn quote_in_lines(
    index: &CorpusIndex<'_>,
    path: &str,
    start: u32,
    end: u32,
    evidence: &str,
) -> (String, bool) {
    let written = Anchor::Lines {
        path: path.trim().to_owned(),
        start: start.min(end),
        end: start.max(end),
    };
    let (resolved, status, cited) = index.resolve_full(&written);
    let parts = evidence_parts(evidence);
    let found = status == CitationStatus::Valid
        && !parts.is_empty()
        && cited.as_deref().is_some_and(|c| {
            let c = squash(c);
            parts.iter().all(|p| c.contains(p.as_str()))
        });
    (resolved.to_string(), found)
}

/// Whether two findings report the same problem: same rule and file, and
/// lines that overlap or nearly touch, or the same evidence.
pub(super) fn same_problem(a: &Finding, b: &Finding) -> bool {
    if a.rule_id != b.rule_id || a.anchor.path != b.anchor.path {
        return false;
    }
    let near = a.anchor.line_start <= b.anchor.line_end.saturating_add(MERGE_GAP)
        && b.anchor.line_start <= a.anchor.line_end.saturating_add(MERGE_GAP);
    near || (!a.evidence.is_empty() && squash(&a.evidence) == squash(&b.evidence))
}

/// Merges duplicates (the better-checked report of each problem stands;
/// windows and counts add up) and sorts by severity, then place.
pub(super) fn merge(findings: Vec<Finding>, p: &Pipeline) -> Vec<Finding> {
    let mut out: Vec<Finding> = Vec::new();
    for f in findings {
        match out.iter_mut().find(|o| same_problem(o, &f)) {
            Some(o) => {
                let mut windows = o.windows.clone();
                windows.extend(&f.windows);
                windows.sort_unstable();
                windows.dedup();
                let occurrences = o.occurrences + f.occurrences;
                let better = (f.verified, f.evidence_match == EvidenceMatch::ElsewhereInFile)
                    > (o.verified, o.evidence_match == EvidenceMatch::ElsewhereInFile)
                    || (f.verified == o.verified && p.severity_rank(&f.severity) < p.severity_rank(&o.severity));
                if better {
                    *o = f;
                }
                o.windows = windows;
                o.occurrences = occurrences;
            }
            None => out.push(f),
        }
    }
    out.sort_by(|a, b| {
        p.severity_rank(&a.severity)
            .cmp(&p.severity_rank(&b.severity))
            .then_with(|| a.anchor.path.cmp(&b.anchor.path))
            .then_with(|| a.anchor.line_start.cmp(&b.anchor.line_start))
            .then_with(|| a.rule_id.cmp(&b.rule_id))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus::StoredDocument;

    fn raw(rule: &str, path: &str, lines: (u32, u32), evidence: &str) -> RawFinding {
        RawFinding {
            rule: rule.to_owned(),
            path: path.to_owned(),
            line_start: lines.0,
            line_end: lines.1,
            evidence: evidence.to_owned(),
            severity: "high".to_owned(),
            title: "t".to_owned(),
            explanation: "e".to_owned(),
            fix: "f".to_owned(),
        }
    }

    const APP: &str = "import os\n\ndef run(cmd):\n    os.system(\"ls \" + cmd)\n\ndef read(name):\n    return open('/srv/' + name).read()\n";

    #[test]
    fn findings_are_checked_against_the_cited_lines() {
        let docs = vec![StoredDocument::code("src/app.py", APP)];
        let index = CorpusIndex::new(&docs);
        let p = Pipeline::load("security", &crate::tasks::access::Access::Anywhere).unwrap();
        let ok = check(
            &raw("command-injection", "src/app.py", (4, 4), "os.system(\"ls \"  +  cmd)"),
            0,
            &p,
            &index,
        );
        assert!(ok.verified, "{ok:?}");
        assert_eq!(ok.cwe.as_deref(), Some("CWE-78"));
        assert_eq!(ok.code.as_ref().unwrap().text, "    os.system(\"ls \" + cmd)\n");
        // A suffix of the path resolves to the corpus path.
        let suffix = check(&raw("command-injection", "app.py", (4, 4), "os.system"), 0, &p, &index);
        assert!(suffix.verified);
        assert_eq!(suffix.anchor.path, "src/app.py");
        // The quote is in the file, but not on the cited lines.
        let moved = check(
            &raw("path-traversal", "src/app.py", (1, 2), "open('/srv/' + name)"),
            0,
            &p,
            &index,
        );
        assert!(!moved.verified);
        assert_eq!(moved.evidence_match, EvidenceMatch::ElsewhereInFile);
        assert_eq!(moved.evidence_found_at.as_deref(), Some("src/app.py:7"));
        assert_eq!(moved.code.as_ref().unwrap().line_start, 7);
        // Invented code, lines past the end, an unknown file, no quote.
        let invented = check(
            &raw("injection", "src/app.py", (1, 3), "cursor.execute(q)"),
            0,
            &p,
            &index,
        );
        assert_eq!(invented.evidence_match, EvidenceMatch::NotFound);
        assert!(!invented.verified);
        let past = check(&raw("injection", "src/app.py", (40, 41), "os.system"), 0, &p, &index);
        assert_eq!(past.anchor.status, CitationStatus::OutOfRange);
        assert!(!past.verified);
        let unknown = check(&raw("injection", "nope.py", (1, 1), "x"), 0, &p, &index);
        assert_eq!(unknown.anchor.status, CitationStatus::Unknown);
        let empty = check(&raw("injection", "src/app.py", (4, 4), "  "), 0, &p, &index);
        assert_eq!(empty.evidence_match, EvidenceMatch::Empty);
        assert!(!empty.verified);
        // Markers copied from the prompt and an ellipsis do not hide a match.
        let marked = check(
            &raw(
                "command-injection",
                "src/app.py",
                (3, 4),
                "[L3] def run(cmd): ... os.system",
            ),
            0,
            &p,
            &index,
        );
        assert!(marked.verified, "{marked:?}");
        // Reversed line numbers are put in order.
        let reversed = check(
            &raw("command-injection", "src/app.py", (4, 3), "os.system"),
            0,
            &p,
            &index,
        );
        assert_eq!((reversed.anchor.line_start, reversed.anchor.line_end), (3, 4));
    }

    #[test]
    fn duplicates_merge_and_the_verified_report_stands() {
        let docs = vec![StoredDocument::code("src/app.py", APP)];
        let index = CorpusIndex::new(&docs);
        let p = Pipeline::load("security", &crate::tasks::access::Access::Anywhere).unwrap();
        let a = check(
            &raw("command-injection", "src/app.py", (1, 1), "nothing like it"),
            0,
            &p,
            &index,
        );
        let b = check(
            &raw("command-injection", "src/app.py", (3, 4), "os.system"),
            2,
            &p,
            &index,
        );
        let c = check(
            &raw("command-injection", "src/app.py", (4, 4), "os.system"),
            2,
            &p,
            &index,
        );
        let other_rule = check(&raw("injection", "src/app.py", (4, 4), "os.system"), 1, &p, &index);
        let far = check(&raw("path-traversal", "src/app.py", (7, 7), "open("), 1, &p, &index);
        let merged = merge(vec![a, b.clone(), c, other_rule, far], &p);
        assert_eq!(merged.len(), 3, "{merged:#?}");
        let ci = merged.iter().find(|f| f.rule_id == "command-injection").unwrap();
        assert!(ci.verified);
        assert_eq!(ci.anchor.line_start, b.anchor.line_start);
        assert_eq!(ci.windows, vec![0, 2]);
        assert_eq!(ci.occurrences, 3);
        // Sorted by severity: command injection is critical.
        assert_eq!(merged[0].rule_id, "command-injection");
    }

    #[test]
    fn truncated_answers_keep_their_complete_findings() {
        let one = r#"{"rule":"injection","path":"a.py","line_start":1,"line_end":2,"evidence":"x","severity":"high","title":"t","explanation":"e","fix":"f"}"#;
        let full = format!("{{\"findings\": [{one}, {one}]}}");
        let n = |text: &str| parse_findings(text).map(|(f, t)| (f.verdicts.len(), f.findings.len(), t));
        assert_eq!(n(&full), Some((0, 2, false)));
        let cut = format!("{{\"findings\": [{one}, {{\"rule\":\"inj");
        assert_eq!(n(&cut), Some((0, 1, true)));
        assert_eq!(n("{\"findings\": [{\"rule\":\"inj"), Some((0, 0, true)));
        let fenced = format!("```json\n{full}\n```");
        assert_eq!(n(&fenced), Some((0, 2, false)));
        assert!(parse_findings("I found no problems.").is_none());
        // Verdicts first, cut inside a hop of the second verdict: the first
        // verdict stands.
        let v = r#"{"candidate":"C1","verdict":"confirmed","source":[{"path":"a.py","line":3,"evidence":"name"}],"reason":"r"}"#;
        let cut = format!("{{\"verdicts\": [{v}, {{\"candidate\":\"C2\",\"verdict\":\"dismissed\",\"source\":[{{\"path\":\"a.py\",\"li");
        assert_eq!(n(&cut), Some((1, 0, true)));
        let both = format!("{{\"verdicts\": [{v}], \"findings\": [{one}]}}");
        assert_eq!(n(&both), Some((1, 1, false)));
        // A string with brackets and an escaped quote in it.
        let tricky = r#"{"findings": [{"rule":"injection","path":"a.py","line_start":1,"line_end":2,"evidence":"x[\"}\"]","severity":"high","title":"t","explanation":"e","fix":"f"}, {"rule""#;
        assert_eq!(n(tricky), Some((0, 1, true)));
    }
}
