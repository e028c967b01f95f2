//! Reports: results as text for people and JSON for programs.
//!
//! In: plain result data from `tasks` and `corpus`. Out: strings. Never
//! calls an engine and never decides anything: what is valid or skipped
//! was settled before it gets here.

pub mod audit;
pub mod audit_bench;
pub mod map;
pub mod needle;
pub mod plan;
pub mod sweep;
pub mod terminal;

use std::fmt::Write as _;

use crate::corpus::{GitSummary, IngestSummary};
use crate::tasks::ask::AskResult;
use crate::tasks::citations::{Citation, CitationSource, CitationStatus};
use terminal::field;

/// Skips listed one by one in the text summary before "and N more".
const SKIPS_LISTED: usize = 20;

#[must_use]
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The ingest summary as people read it.
#[must_use]
pub fn ingest_text(s: &IngestSummary, tokens_counted: bool) -> String {
    let mut out = String::new();
    let kinds: Vec<String> = s.by_kind.iter().map(|(k, n)| format!("{n} {k}")).collect();
    let _ = writeln!(
        out,
        "{} documents ({}), {} segments, {} bytes{}",
        thousands(s.documents),
        if kinds.is_empty() {
            "none".to_owned()
        } else {
            kinds.join(", ")
        },
        thousands(s.segments),
        thousands(s.bytes),
        if tokens_counted {
            format!(", {} tokens", thousands(s.tokens))
        } else {
            String::new()
        },
    );
    let _ = writeln!(
        out,
        "this run: {} added, {} changed, {} re-read unchanged, {} not re-read (same size and time), {} removed",
        s.added, s.changed, s.unchanged, s.reused, s.removed
    );
    if s.listing == crate::corpus::ListingUse::Used {
        let _ = writeln!(
            out,
            "walk: no folder or ignore file changed since the last ingest, so its listing was used (--rescan walks anyway)"
        );
    }
    if s.llama4_image_tokens > 0 {
        let _ = writeln!(
            out,
            "images: {} prompt tokens as Llama 4 vision tiles (not sent to engines without vision)",
            thousands(s.llama4_image_tokens)
        );
    }
    if !s.ocr.is_empty() {
        let parts: Vec<String> = s.ocr.iter().map(|(k, n)| format!("{n} {k}")).collect();
        let _ = writeln!(
            out,
            "OCR of images and scanned pages read this run: {}{}",
            parts.join(", "),
            if s.ocr.contains_key("decorative") {
                " (decorative: logos, icons and the like, passed over; --ocr-all reads them)"
            } else {
                ""
            }
        );
    }
    if s.replaced_chars > 0 {
        let _ = writeln!(
            out,
            "invalid UTF-8: {} sequences replaced with U+FFFD",
            s.replaced_chars
        );
    }
    if !s.secrets.is_empty() || s.secrets_in_corpus > 0 {
        let _ = writeln!(
            out,
            "secrets redacted: {} in the files read this run, {} in the corpus (--keep-secrets to keep them)",
            s.secrets.len(),
            s.secrets_in_corpus
        );
        for f in s.secrets.iter().take(SKIPS_LISTED) {
            let path = field(&f.path);
            let place = f.page.map_or_else(
                || format!("{path}:{}", f.line),
                |p| format!("{path}#page={p} line {}", f.line),
            );
            let _ = writeln!(out, "  {place} [{}]", field(&f.kind));
        }
        if s.secrets.len() > SKIPS_LISTED {
            let _ = writeln!(
                out,
                "  ... and {} more (--json lists all)",
                s.secrets.len() - SKIPS_LISTED
            );
        }
    }
    if s.outlined > 0 || !s.outline_fallbacks.is_empty() {
        let fallbacks: Vec<String> = s.outline_fallbacks.iter().map(|(k, n)| format!("{n} {k}")).collect();
        let _ = writeln!(
            out,
            "outlines: {} files read this run (definitions in source code, bookmarks in PDFs){}",
            s.outlined,
            if fallbacks.is_empty() {
                String::new()
            } else {
                format!("; kept as plain text: {}", fallbacks.join(", "))
            }
        );
    }
    for g in &s.git {
        let commit = &g.commit[..g.commit.len().min(12)];
        let _ = match &g.error {
            Some(e) => writeln!(
                out,
                "git: {} at {commit}: history not read ({}); file times used",
                field(&g.repository),
                field(e)
            ),
            None => writeln!(
                out,
                "git: {} at {commit}; {} documents dated by their last commit ({})",
                field(&g.repository),
                g.dated,
                history_read(g)
            ),
        };
    }
    if s.skipped.is_empty() {
        let _ = writeln!(out, "skipped: none");
    } else {
        let parts: Vec<String> = s.skipped.iter().map(|(k, n)| format!("{n} {k}")).collect();
        let _ = writeln!(out, "skipped: {}", parts.join(", "));
        for skip in s.skips.iter().take(SKIPS_LISTED) {
            let _ = writeln!(
                out,
                "  {} [{}]: {}",
                field(&skip.path),
                skip.reason.as_str(),
                field(&skip.detail)
            );
        }
        if s.skips.len() > SKIPS_LISTED {
            let _ = writeln!(
                out,
                "  ... and {} more (--json lists all)",
                s.skips.len() - SKIPS_LISTED
            );
        }
    }
    out
}

fn mark(status: CitationStatus) -> &'static str {
    match status {
        CitationStatus::Valid => "ok",
        CitationStatus::OutOfRange => "OUT OF RANGE",
        CitationStatus::Unknown => "UNKNOWN",
    }
}

fn citation_line(c: &Citation) -> String {
    let mut line = format!("  [{}] {}", mark(c.status), field(&c.anchor));
    if let Some(sym) = &c.symbol {
        let _ = write!(line, " ({})", field(sym));
    }
    if let Some(w) = &c.written {
        let _ = write!(line, " (written as {})", field(w));
    }
    if let Some(q) = &c.quote {
        let first = q.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
        let short: String = first.chars().take(90).collect();
        let ellipsis = if short.len() < first.len() || q.lines().count() > 1 {
            " …"
        } else {
            ""
        };
        let _ = write!(line, "  \"{}{ellipsis}\"", field(&short));
    }
    line
}

/// The citations block printed after a streamed answer: the model's own
/// anchors and scout's attribution, kept apart.
#[must_use]
pub fn citations_text(result: &AskResult) -> String {
    let mut out = String::new();
    for (source, title, none) in [
        (CitationSource::Model, "Citations written by the model:", "  (none)"),
        (
            CitationSource::Attribution,
            "Found by scout in the corpus:",
            "  (no span of the corpus holds the answer's distinctive words)",
        ),
    ] {
        let _ = writeln!(out, "{title}");
        let mut any = false;
        for c in result.citations.iter().filter(|c| c.source == source) {
            any = true;
            let _ = writeln!(out, "{}", citation_line(c));
        }
        if !any {
            let _ = writeln!(out, "{none}");
        }
    }
    out
}

/// The KV tiers' counters over a run, for `--verbose`: one line.
#[must_use]
pub fn tiers_text(tiers: &[(&str, crate::kv::tier::TierCounters)]) -> Option<String> {
    if tiers.is_empty() {
        return None;
    }
    let parts: Vec<String> = tiers
        .iter()
        .map(|(name, c)| {
            format!(
                "{name}: {} hit{}, {} miss{}, {} stored, {} evicted",
                c.hits,
                if c.hits == 1 { "" } else { "s" },
                c.misses,
                if c.misses == 1 { "" } else { "es" },
                c.stores,
                c.evictions
            )
        })
        .collect();
    Some(format!("KV tiers: {}", parts.join("; ")))
}

/// One line of usage and speed, for `--verbose` and the end of a run.
#[must_use]
pub fn usage_text(result: &AskResult) -> String {
    let kv = &result.kv;
    let mut parts: Vec<String> = [
        (kv.restored_tokens, "restored from disk"),
        (kv.reused_tokens, "reused"),
        (kv.shifted_tokens, "moved from before an edit"),
        (kv.recomputed_tokens, "recomputed"),
    ]
    .into_iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{} {what}", thousands(u64::from(n))))
    .collect();
    parts.push(format!("{} prefilled", thousands(u64::from(kv.prefilled_tokens))));
    if kv.saved_bytes > 0 {
        parts.push(format!(
            "{:.1} MB saved for later questions",
            kv.saved_bytes as f64 / 1e6
        ));
    }
    format!(
        "{} window(s), {} model call(s), {} prompt + {} answer tokens; first token after {:.1} s, {:.1} tokens/s; KV: {}",
        result.windows.len(),
        result.usage.calls,
        thousands(result.usage.prompt_tokens),
        thousands(result.usage.completion_tokens),
        result.timings.ttft_ms as f64 / 1000.0,
        result.timings.decode_tokens_per_s,
        parts.join(", ")
    )
}

/// How a repository's history was read, for the summary's git line.
fn history_read(g: &GitSummary) -> String {
    use crate::ingest::history::Source;
    if g.incremental {
        return if g.dated == 0 {
            "no new commits touch them since the last ingest".to_owned()
        } else {
            "commits since the last ingest".to_owned()
        };
    }
    let span = g
        .bounded
        .map_or_else(|| "whole history".to_owned(), |n| format!("last {n} commits"));
    let source = match g.history {
        Some(Source::Cached) => ", kept from an earlier ingest at this commit",
        Some(Source::Extended) => ", kept from an earlier ingest, and the commits since",
        _ => "",
    };
    let rest = if g.bounded.is_some() {
        "; files they do not touch go first, by path"
    } else {
        ""
    };
    format!("{span}{source}{rest}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn tier_counters_read_as_one_line() {
        use crate::kv::tier::TierCounters;
        assert_eq!(tiers_text(&[]), None);
        let memory = TierCounters {
            hits: 1,
            misses: 2,
            stores: 3,
            evictions: 0,
        };
        assert_eq!(
            tiers_text(&[("memory", memory), ("disk", TierCounters::default())]).unwrap(),
            "KV tiers: memory: 1 hit, 2 misses, 3 stored, 0 evicted; disk: 0 hits, 0 misses, 0 stored, 0 evicted"
        );
    }
}
