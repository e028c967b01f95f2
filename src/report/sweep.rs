//! A sweep's plan as one line for stderr (and for `--dry-run`'s stdout).

use super::thousands;
use crate::tasks::run::Step;
use crate::tasks::sweep::SweepPlan;

/// `5 windows (map, then reduce): 27,134 prompt tokens, 2,048 held in the
/// KV cache, 25,086 to read; 5 at once (8 slots on the servers); about
/// 2 min 10 s at the last sweep's 208 tokens/s`.
#[must_use]
pub fn sweep_text(plan: &SweepPlan) -> String {
    let what = match (plan.step, plan.windows) {
        (Step::Answer, _) => "1 window (the whole corpus in one prompt)".to_owned(),
        (Step::Map, n) => format!("{n} windows (each read for its notes, then the notes combined)"),
        (Step::Audit, n) => format!("{n} windows, each checked against the pipeline's rules"),
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
        _ => "time unknown (no run of this model, engine and slots measured yet)".to_owned(),
    };
    format!(
        "{what}: {} prompt tokens, {held}, {} to read; {}; {time}",
        thousands(plan.prompt_tokens),
        thousands(plan.to_read()),
        plan.dispatch
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
}
