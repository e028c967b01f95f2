//! A sweep's plan as one line for stderr (and for `--dry-run`'s stdout).

use std::fmt::Write as _;

use super::thousands;
use crate::kv::budget::{size_text, CorpusKv};
use crate::tasks::run::Step;
use crate::tasks::sweep::{KvKept, SweepPlan};

/// `5 windows (map, then reduce): 27,134 prompt tokens, 2,048 held in the
/// KV cache, 25,086 to read; 5 at once (8 slots on the servers); about
/// 2 min 10 s at the last sweep's 208 tokens/s`.
#[must_use]
pub fn sweep_text(plan: &SweepPlan) -> String {
    let what = match (plan.step, plan.windows) {
        (Step::Answer, _) => "1 window (the whole corpus in one prompt)".to_owned(),
        (Step::Map, n) => format!("{n} windows (each read for its notes, then the notes combined)"),
        (Step::Audit, n) => format!("{n} windows, each checked against the pipeline's rules"),
        (Step::Extract, n) => format!("{n} documents or pages, one object each"),
        (_, n) => format!("{n} calls"),
    };
    let held = match plan.held_tokens {
        Some(0) => "none held in the KV cache".to_owned(),
        Some(n) => format!("{} held in the KV cache", thousands(n)),
        None => "the server's own cache unknown here".to_owned(),
    };
    let time = match (plan.estimate_s, plan.measured_rate) {
        (Some(s), Some(rate)) => format!(
            "about {} at the last run's {} tokens/s",
            duration_text(s),
            thousands(rate.round() as u64)
        ),
        _ => "time unknown (no run of this model, engine, slots and step measured yet)".to_owned(),
    };
    let kv = plan
        .kv
        .as_ref()
        .and_then(kv_warning)
        .map_or(String::new(), |w| format!("; {w}"));
    format!(
        "{what}: {} prompt tokens, {held}, {} to read; {}; {time}{kv}",
        thousands(plan.prompt_tokens),
        thousands(plan.to_read()),
        plan.dispatch
    )
}

/// What the user is told before a sweep whose KV will not all be kept on
/// disk: the numbers, and what would make it fit. `None` when it fits.
#[must_use]
pub fn kv_warning(kv: &CorpusKv) -> Option<String> {
    if kv.fits() {
        return None;
    }
    let offer = match &kv.smaller {
        Some(s) if s.fits => format!(
            "--kv-type {} takes {} and fits (or raise --kv-disk-gib)",
            s.kv_type,
            size_text(s.bytes)
        ),
        Some(s) => format!(
            "--kv-type {} takes {}, still over: raise --kv-disk-gib to at least that",
            s.kv_type,
            size_text(s.bytes)
        ),
        None => format!("raise --kv-disk-gib to at least {}", size_text(kv.bytes)),
    };
    Some(format!(
        "the corpus's KV takes {} at {} ({:.1} KiB a token x {} tokens), over the KV disk budget of {}: \
         {} of {} windows will be kept for later questions, the rest read again each time; {offer}",
        size_text(kv.bytes),
        kv.kv_type,
        kv.bytes_per_token / 1024.0,
        thousands(kv.tokens),
        size_text(kv.budget),
        kv.windows_kept,
        kv.windows,
    ))
}

/// After a sweep: `KV kept on disk for the next question: 25 of 25 windows
/// (4.3 GiB of a 12.0 GiB budget, a quarter of the 48.1 GiB free there)`,
/// and which windows were not kept, and why.
#[must_use]
pub fn kept_text(k: &KvKept) -> String {
    let mut text = format!(
        "KV kept on disk for the next question: {} of {} windows ({} of a {} budget, {})",
        k.kept,
        k.windows,
        size_text(k.bytes),
        size_text(k.budget),
        k.budget_note
    );
    if !k.over_budget.is_empty() {
        let _ = write!(
            text,
            "; not kept, over the budget: {} (raise --kv-disk-gib, or --kv-type q8_0)",
            windows_text(&k.over_budget)
        );
    }
    if !k.not_kept.is_empty() {
        let _ = write!(
            text,
            "; not kept, evicted for other corpora or not saved (see warnings): {}",
            windows_text(&k.not_kept)
        );
    }
    if !k.failed.is_empty() {
        let _ = write!(text, "; not read, their calls failed: {}", windows_text(&k.failed));
    }
    text
}

/// `windows 3, 5-9`.
fn windows_text(numbers: &[usize]) -> String {
    let mut runs: Vec<String> = Vec::new();
    let mut i = 0;
    while i < numbers.len() {
        let mut j = i;
        while j + 1 < numbers.len() && numbers[j + 1] == numbers[j] + 1 {
            j += 1;
        }
        runs.push(if j > i {
            format!("{}-{}", numbers[i], numbers[j])
        } else {
            numbers[i].to_string()
        });
        i = j + 1;
    }
    format!(
        "window{} {}",
        if numbers.len() == 1 { "" } else { "s" },
        runs.join(", ")
    )
}

fn duration_text(seconds: f64) -> String {
    let s = seconds.round() as u64;
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_line_says_what_is_read_and_how_long_it_takes() {
        let plan = SweepPlan {
            step: Step::Map,
            windows: 5,
            prompt_tokens: 27_134,
            held_tokens: Some(2_048),
            slots: 8,
            dispatch: "5 at once (8 slots on the servers)".to_owned(),
            measured_rate: Some(208.4),
            estimate_s: Some(130.0),
            kv: None,
            rate_key: String::new(),
        };
        assert_eq!(
            sweep_text(&plan),
            "5 windows (each read for its notes, then the notes combined): 27,134 prompt tokens, 2,048 held in the KV cache, 25,086 to read; 5 at once (8 slots on the servers); about 2 min 10 s at the last run's 208 tokens/s"
        );
        let first = SweepPlan {
            held_tokens: None,
            measured_rate: None,
            estimate_s: None,
            ..plan
        };
        assert!(sweep_text(&first).contains("time unknown"));
    }

    #[test]
    fn a_corpus_over_the_kv_budget_is_told_before_and_after_the_sweep() {
        let store = crate::kv::budget::KvStore {
            kv_type: "f16".to_owned(),
            bytes_per_token: 23_040.0,
            smaller: Some(("q8_0".to_owned(), 12_240.0)),
            budget: 4 << 30,
            budget_note: "set by --kv-disk-gib".to_owned(),
        };
        let kv = CorpusKv::new(&store, &[8_000; 25]);
        let text = kv_warning(&kv).unwrap();
        assert_eq!(
            text,
            "the corpus's KV takes 4.3 GiB at f16 (22.5 KiB a token x 200,000 tokens), over the KV disk budget of 4.0 GiB: \
             23 of 25 windows will be kept for later questions, the rest read again each time; \
             --kv-type q8_0 takes 2.3 GiB and fits (or raise --kv-disk-gib)"
        );
        let tight = CorpusKv::new(
            &crate::kv::budget::KvStore {
                budget: 1 << 30,
                ..store.clone()
            },
            &[8_000; 25],
        );
        assert!(kv_warning(&tight)
            .unwrap()
            .ends_with("--kv-type q8_0 takes 2.3 GiB, still over: raise --kv-disk-gib to at least that"));
        assert_eq!(kv_warning(&CorpusKv::new(&store, &[8_000; 2])), None);

        let kept = KvKept {
            windows: 25,
            kept: 20,
            bytes: 4 << 30,
            over_budget: vec![21, 22, 23, 24, 25],
            not_kept: vec![3],
            failed: vec![],
            budget: 4 << 30,
            budget_note: "set by --kv-disk-gib".to_owned(),
        };
        assert_eq!(
            kept_text(&kept),
            "KV kept on disk for the next question: 20 of 25 windows (4.0 GiB of a 4.0 GiB budget, set by --kv-disk-gib); \
             not kept, over the budget: windows 21-25 (raise --kv-disk-gib, or --kv-type q8_0); \
             not kept, evicted for other corpora or not saved (see warnings): window 3"
        );
        let failed = KvKept {
            windows: 2,
            kept: 0,
            bytes: 0,
            over_budget: vec![],
            not_kept: vec![],
            failed: vec![1, 2],
            budget: 4 << 30,
            budget_note: "set".to_owned(),
        };
        assert!(kept_text(&failed).ends_with("; not read, their calls failed: windows 1-2"));
    }
}
