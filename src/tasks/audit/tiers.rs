//! Tiers: how far a finding can be trusted, and the order findings are
//! listed in. Confirmed (a structural rule matched and the model confirmed
//! it, every cited hop checked) first; then the model's findings whose
//! quoted code is in the cited lines; then rule matches the model did not
//! confirm; unverified findings last, never above `info`.
//!
//! Also the findings' fingerprints (rule, path and the squashed evidence,
//! never a line number, so they survive lines added above) and `--baseline`.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::check::same_problem;
use super::rules::Candidate;
use super::{
    AuditReport, AuditSummary, CodeSnippet, EvidenceMatch, Finding, FindingAnchor, Origin, RuleMatch, Verdict,
};
use crate::tasks::audit::VerdictKind;
use crate::tasks::citations::{lines_of, squash, CitationStatus, CorpusIndex};
use crate::tasks::pipeline::Pipeline;

/// The severity an unverified finding carries, whatever the model said.
pub const UNVERIFIED_SEVERITY: &str = "info";
/// Lines of code shown with a rule match.
const SHOWN_LINES: u32 = 12;

/// How far a finding can be trusted, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// A structural rule matched and the model confirmed it (its source
    /// path, where it gave one, checked hop by hop).
    Confirmed,
    /// The model found it, and its quoted code is in the cited lines.
    Verified,
    /// A structural rule matched; the model did not confirm it.
    Candidate,
    /// The model's lines or quote could not be found in the corpus.
    Unverified,
}

impl Tier {
    pub const ALL: [Tier; 4] = [Tier::Confirmed, Tier::Verified, Tier::Candidate, Tier::Unverified];

    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Tier::Confirmed => "confirmed",
            Tier::Verified => "verified",
            Tier::Candidate => "candidate",
            Tier::Unverified => "unverified",
        }
    }

    /// What the tier means, for a report's reader.
    #[must_use]
    pub fn meaning(self) -> &'static str {
        match self {
            Tier::Confirmed => "a structural rule matched and the model confirmed it",
            Tier::Verified => "found by the model; the quoted code is in the cited lines",
            Tier::Candidate => "a structural rule matched; the model did not confirm it",
            Tier::Unverified => "the model's lines or quote are not in the file; severity capped at info",
        }
    }
}

/// A fingerprint from the rule, the path and the code, without lines.
pub(super) fn fingerprint(rule: &str, path: &str, evidence: &str) -> String {
    blake3::hash(format!("{rule}\0{path}\0{}", squash(evidence)).as_bytes()).to_hex()[..16].to_owned()
}

/// A structural match as a finding: exact lines, its code as evidence.
pub(super) fn candidate_finding(c: &Candidate, p: &Pipeline, index: &CorpusIndex<'_>) -> Finding {
    let rule = p.rule(&c.rule);
    let anchor = crate::anchor::Anchor::Lines {
        path: c.path.clone(),
        start: c.line_start,
        end: c.line_end,
    };
    let doc = index.find(&c.path);
    Finding {
        id: fingerprint(&c.rule, &c.path, &c.text),
        rule_id: c.rule.clone(),
        cwe: rule.and_then(|r| r.cwe.clone()),
        tier: Tier::Candidate,
        origin: Origin::Rule,
        severity: rule.map_or_else(|| UNVERIFIED_SEVERITY.to_owned(), |r| r.severity.clone()),
        claimed_severity: None,
        rule_match: Some(RuleMatch {
            check: c.check.clone(),
            message: c.message.clone(),
        }),
        verdict: None,
        title: rule.map_or_else(|| c.rule.clone(), |r| r.title.clone()),
        anchor: FindingAnchor {
            symbol: index.symbol(&anchor),
            path: c.path.clone(),
            line_start: c.line_start,
            line_end: c.line_end,
            status: CitationStatus::Valid,
        },
        evidence: c.text.lines().next().unwrap_or_default().trim().to_owned(),
        explanation: c.message.clone(),
        fix: String::new(),
        verified: true,
        evidence_match: EvidenceMatch::InCitedLines,
        evidence_found_at: None,
        code: doc.map(|d| CodeSnippet {
            line_start: c.line_start,
            text: lines_of(d, c.line_start, c.line_end.min(c.line_start + SHOWN_LINES - 1)),
        }),
        windows: Vec::new(),
        occurrences: 1,
    }
}

/// Rule matches and the model's findings as one list: a model finding of
/// the same rule on the same lines as a match joins it; verdicts are laid
/// on their matches; every finding gets its tier, the order and an id
/// unique in the report.
pub(super) fn join(
    mut candidates: Vec<Finding>,
    model: Vec<Finding>,
    verdicts: &[(usize, Verdict)],
    p: &Pipeline,
) -> Vec<Finding> {
    for (i, v) in verdicts {
        if let Some(c) = candidates.get_mut(*i) {
            c.verdict = Some(v.clone());
            c.windows.extend(v.window);
        }
    }
    let mut out: Vec<Finding> = Vec::new();
    let mut model_left = Vec::new();
    for f in model {
        match candidates.iter_mut().find(|c| same_problem(c, &f) && f.verified) {
            Some(c) => {
                // The match keeps its exact lines and code; the model's
                // words join it.
                c.origin = Origin::Both;
                if !f.explanation.is_empty() {
                    c.explanation = f.explanation;
                }
                c.fix = f.fix;
                c.windows.extend(f.windows);
                c.occurrences += f.occurrences;
            }
            None => model_left.push(f),
        }
    }
    for mut c in candidates {
        let confirmed = c.origin == Origin::Both || c.verdict.as_ref().is_some_and(Verdict::confirms);
        if c.verdict.as_ref().is_some_and(|v| v.verdict == VerdictKind::Confirmed) {
            c.origin = Origin::Both;
        }
        c.tier = if confirmed { Tier::Confirmed } else { Tier::Candidate };
        c.windows.sort_unstable();
        c.windows.dedup();
        out.push(c);
    }
    for mut f in model_left {
        if f.verified {
            f.tier = Tier::Verified;
        } else {
            f.tier = Tier::Unverified;
            if f.severity != UNVERIFIED_SEVERITY {
                f.claimed_severity = Some(std::mem::replace(&mut f.severity, UNVERIFIED_SEVERITY.to_owned()));
            }
        }
        out.push(f);
    }
    out.sort_by(|a, b| {
        a.tier
            .cmp(&b.tier)
            .then_with(|| p.severity_rank(&a.severity).cmp(&p.severity_rank(&b.severity)))
            .then_with(|| a.anchor.path.cmp(&b.anchor.path))
            .then_with(|| a.anchor.line_start.cmp(&b.anchor.line_start))
            .then_with(|| a.rule_id.cmp(&b.rule_id))
    });
    unique_ids(&mut out);
    out
}

/// Findings with one fingerprint (the same code matched twice in a file)
/// are told apart by their order in the file, which lines added elsewhere
/// do not change.
fn unique_ids(findings: &mut [Finding]) {
    let mut order: Vec<usize> = (0..findings.len()).collect();
    order.sort_by_key(|&i| (findings[i].id.clone(), findings[i].anchor.line_start));
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for i in order {
        let n = seen.entry(findings[i].id.clone()).or_default();
        *n += 1;
        if *n > 1 {
            findings[i].id = format!("{}-{n}", findings[i].id);
        }
    }
}

/// The totals of a list of findings.
#[must_use]
pub fn summarize(findings: &[Finding], failed_windows: usize) -> AuditSummary {
    let mut s = AuditSummary {
        findings: findings.len(),
        verified: findings.iter().filter(|f| f.verified).count(),
        failed_windows,
        ..AuditSummary::default()
    };
    s.unverified = s.findings - s.verified;
    for f in findings {
        *s.by_tier.entry(f.tier).or_default() += 1;
        *s.by_severity.entry(f.severity.clone()).or_default() += 1;
        *s.by_rule.entry(f.rule_id.clone()).or_default() += 1;
    }
    s
}

/// What a baseline took out of a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BaselineUse {
    pub file: String,
    /// Findings the baseline already had, left out.
    pub known: usize,
}

/// The finding ids of an earlier SARIF log (scout's `partialFingerprints`).
#[must_use]
pub fn baseline_ids(sarif: &Value) -> HashSet<String> {
    sarif["runs"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|run| run["results"].as_array().into_iter().flatten())
        .filter_map(|r| r["partialFingerprints"][super::FINGERPRINT_KEY].as_str())
        .map(str::to_owned)
        .collect()
}

/// Leaves out the findings whose ids `known` holds, and says so.
pub fn apply_baseline<S: std::hash::BuildHasher>(report: &mut AuditReport, known: &HashSet<String, S>, file: &str) {
    let before = report.findings.len();
    report.findings.retain(|f| !known.contains(&f.id));
    report.summary = summarize(&report.findings, report.summary.failed_windows);
    report.baseline = Some(BaselineUse {
        file: file.to_owned(),
        known: before - report.findings.len(),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus::StoredDocument;
    use crate::tasks::access::Access;
    use crate::tasks::audit::check::check;
    use crate::tasks::audit::{Hop, RawFinding};

    const DB: &str =
        "import sqlite3\n\n\ndef find(cursor, name):\n    cursor.execute(\"SELECT * FROM t WHERE n = '%s'\" % name)\n";

    fn raw(rule: &str, lines: (u32, u32), evidence: &str, severity: &str) -> RawFinding {
        serde_json::from_value(serde_json::json!({
            "rule": rule, "path": "db.py", "line_start": lines.0, "line_end": lines.1,
            "evidence": evidence, "severity": severity, "title": "", "explanation": "said the model", "fix": "bind it"
        }))
        .unwrap()
    }

    fn the_match() -> Candidate {
        Candidate {
            rule: "injection".to_owned(),
            check: "python-sql-built-from-strings".to_owned(),
            message: "SQL text built by formatting".to_owned(),
            path: "db.py".to_owned(),
            line_start: 5,
            line_end: 5,
            text: "\"SELECT * FROM t WHERE n = '%s'\" % name".to_owned(),
        }
    }

    fn verdict(kind: VerdictKind, hop_verified: bool) -> Verdict {
        Verdict {
            verdict: kind,
            reason: String::new(),
            path: vec![Hop {
                anchor: "db.py:4".to_owned(),
                evidence: "name".to_owned(),
                verified: hop_verified,
            }],
            window: Some(0),
        }
    }

    #[test]
    fn tiers_order_findings_and_unverified_ones_never_rank_above_info() {
        let docs = vec![StoredDocument::code("db.py", DB)];
        let index = CorpusIndex::new(&docs);
        let p = Pipeline::load("security", &Access::Anywhere).unwrap();
        let cand = || vec![candidate_finding(&the_match(), &p, &index)];
        let invented = check(
            &raw("command-injection", (1, 1), "os.system(x)", "critical"),
            0,
            &p,
            &index,
        );
        let verified_other = check(&raw("weak-crypto", (1, 1), "import sqlite3", "medium"), 0, &p, &index);
        // The model alone: its invented critical finding is unverified, info.
        let out = join(Vec::new(), vec![invented.clone(), verified_other.clone()], &[], &p);
        assert_eq!(
            out.iter().map(|f| f.tier).collect::<Vec<_>>(),
            [Tier::Verified, Tier::Unverified]
        );
        assert_eq!(out[1].severity, "info");
        assert_eq!(out[1].claimed_severity.as_deref(), Some("critical"));
        assert!(!out[1].gates() && out[0].gates());
        // A rule match the model said nothing of stays a candidate, at its
        // exact lines, above the unverified one.
        let out = join(cand(), vec![invented.clone()], &[], &p);
        assert_eq!(out[0].tier, Tier::Candidate);
        assert!(out[0].verified && out[0].gates());
        assert_eq!((out[0].anchor.line_start, out[0].origin), (5, Origin::Rule));
        // The model reporting the same problem, verified: confirmed, first.
        let agrees = check(&raw("injection", (5, 5), "cursor.execute(", "high"), 0, &p, &index);
        let out = join(cand(), vec![verified_other.clone(), agrees], &[], &p);
        assert_eq!((out[0].tier, out[0].origin), (Tier::Confirmed, Origin::Both));
        assert_eq!(out[0].explanation, "said the model");
        assert_eq!(out[1].tier, Tier::Verified);
        // A verdict confirms only when its hops check out.
        let out = join(cand(), Vec::new(), &[(0, verdict(VerdictKind::Confirmed, true))], &p);
        assert_eq!(out[0].tier, Tier::Confirmed);
        let out = join(cand(), Vec::new(), &[(0, verdict(VerdictKind::Confirmed, false))], &p);
        assert_eq!(out[0].tier, Tier::Candidate);
        let out = join(cand(), Vec::new(), &[(0, verdict(VerdictKind::Dismissed, true))], &p);
        assert_eq!(out[0].tier, Tier::Candidate);
        assert!(out[0].gates(), "a dismissed rule match still counts for --fail-on");
        assert!(verdict(VerdictKind::Dismissed, true).dismisses());
        // A dismissal citing a line whose quote is not there, or nothing, does
        // not count as one.
        assert!(!verdict(VerdictKind::Dismissed, false).dismisses());
        let mut bare = verdict(VerdictKind::Dismissed, true);
        bare.path.clear();
        assert!(!bare.dismisses());
    }

    #[test]
    fn fingerprints_ignore_lines_and_tell_repeats_apart() {
        let p = Pipeline::load("security", &Access::Anywhere).unwrap();
        let shifted = format!("{}{DB}{DB}", "# new line\n".repeat(10));
        let ids = |text: &str| {
            let docs = vec![StoredDocument::code("db.py", text)];
            let index = CorpusIndex::new(&docs);
            let set = crate::tasks::audit::RuleSet::load(&p, &[]).unwrap();
            let (found, _) = set.scan(&docs);
            let fs: Vec<Finding> = found.iter().map(|c| candidate_finding(c, &p, &index)).collect();
            join(fs, Vec::new(), &[], &p)
                .into_iter()
                .map(|f| (f.id, f.anchor.line_start))
                .collect::<Vec<_>>()
        };
        let before = ids(DB);
        let after = ids(&shifted);
        assert_eq!(before.len(), 1);
        assert_eq!(after.len(), 2);
        assert_eq!(after[0].0, before[0].0, "the same code keeps its id 10 lines down");
        assert_eq!(after[1].0, format!("{}-2", before[0].0));
        assert_eq!((after[0].1, after[1].1), (15, 20));
    }

    #[test]
    fn a_baseline_leaves_out_what_it_already_has() {
        let sarif = serde_json::json!({"runs": [{"results": [
            {"partialFingerprints": {"scoutFindingId/v1": "aaaa"}},
            {"partialFingerprints": {"other/v1": "bbbb"}}
        ]}]});
        let ids = baseline_ids(&sarif);
        assert_eq!(ids.into_iter().collect::<Vec<_>>(), ["aaaa"]);
        assert!(baseline_ids(&serde_json::json!({"version": "2.1.0"})).is_empty());
    }
}
