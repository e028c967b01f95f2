//! The plan of a sweep (a task over more than one window), made before any
//! model call: the windows, the prompt tokens to read and how many of them
//! the engine's KV cache holds, the engine's slots, and a time estimate
//! from the rate the last sweep with this model and engine measured.
//!
//! In: a task's calls and an engine. Out: a [`SweepPlan`]; the measured
//! rates are kept in a small JSON file by [`Rates`].
//! Never calls a model.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::engine::{Call, Engine, EngineError};
use crate::tasks::run::Step;

/// What a sweep will do, said before it starts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SweepPlan {
    pub step: Step,
    /// Model calls of the sweep (windows, or documents).
    pub windows: usize,
    /// Prompt tokens of all of them together.
    pub prompt_tokens: u64,
    /// Of those, the tokens whose KV the engine holds (memory or disk) and
    /// would restore instead of reading; absent where the engine cannot
    /// tell (a remote server, which keeps its own cache).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_tokens: Option<u64>,
    /// Calls the engine runs at once (its servers' slots).
    pub slots: usize,
    /// How the calls go out, in words ("5 at once on 2 servers", ...).
    pub dispatch: String,
    /// Tokens per second (prompt tokens read, over the wall time of the
    /// whole sweep) that the last sweep of this model, engine and slots
    /// measured; absent the first time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub measured_rate: Option<f64>,
    /// Seconds the sweep should take at that rate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimate_s: Option<f64>,
    /// The engine's key for rates (model and slots).
    #[serde(skip)]
    pub rate_key: String,
}

impl SweepPlan {
    /// The plan for `calls` on `engine`, at `rates`' last measured rate.
    pub fn new(step: Step, engine: &dyn Engine, calls: &[Call<'_>], rates: &Rates) -> Result<Self, EngineError> {
        let mut prompt_tokens = 0u64;
        let mut held: Option<u64> = Some(0);
        for c in calls {
            prompt_tokens += u64::from(engine.count_chat_tokens(c.messages)?);
            held = match (held, engine.kv_held(c.messages)) {
                (Some(sum), Some(n)) => Some(sum + u64::from(n)),
                _ => None,
            };
        }
        let slots = engine.slots();
        let rate_key = rate_key(engine);
        let measured_rate = rates.get(&rate_key);
        let to_read = prompt_tokens - held.unwrap_or(0).min(prompt_tokens);
        Ok(Self {
            step,
            windows: calls.len(),
            prompt_tokens,
            held_tokens: held,
            slots,
            dispatch: dispatch_text(engine.backend(), slots, calls.len()),
            measured_rate,
            estimate_s: measured_rate.filter(|r| *r > 0.0).map(|r| to_read as f64 / r),
            rate_key,
        })
    }

    /// Prompt tokens the sweep must read (not held in the KV cache).
    #[must_use]
    pub fn to_read(&self) -> u64 {
        self.prompt_tokens - self.held_tokens.unwrap_or(0).min(self.prompt_tokens)
    }
}

/// How an engine's calls go out.
fn dispatch_text(backend: &str, slots: usize, calls: usize) -> String {
    let at_once = slots.min(calls).max(1);
    match backend {
        "openai" if at_once > 1 => format!("{at_once} at once ({slots} slots on the servers)"),
        "openai" => "one at a time (1 slot on the server; --slots N for more)".to_owned(),
        // Measured: batching windows as parallel sequences on this CPU is
        // slower than reading them one after another, and changes greedy
        // answers.
        "llamacpp" => "one after another (llamacpp reads one window at a time)".to_owned(),
        other => format!("one after another ({other})"),
    }
}

/// The key rates are kept under: the engine's model identity and its slots
/// (another model, or another number of servers, measures anew).
fn rate_key(engine: &dyn Engine) -> String {
    format!("{} slots={}", engine.model_id(), engine.slots())
}

/// The last measured sweep rate per engine, kept in a JSON file.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Rates {
    #[serde(skip)]
    path: Option<PathBuf>,
    rates: BTreeMap<String, f64>,
}

/// Entries kept at most (the oldest keys go first when over).
const MAX_RATES: usize = 64;

impl Rates {
    /// The rates in `path` (none when it is missing or unreadable: rates
    /// only inform an estimate).
    #[must_use]
    pub fn load(path: &Path) -> Self {
        let mut r: Self = std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        r.path = Some(path.to_owned());
        r
    }

    #[must_use]
    pub fn get(&self, key: &str) -> Option<f64> {
        self.rates.get(key).copied().filter(|r| r.is_finite() && *r > 0.0)
    }

    /// Records a sweep that read `tokens` prompt tokens in `wall_ms`, and
    /// writes the file (a failure to write only loses the estimate).
    pub fn record(&mut self, plan: &SweepPlan, tokens: u64, wall_ms: u64) {
        if tokens == 0 || wall_ms == 0 {
            return;
        }
        self.rates
            .insert(plan.rate_key.clone(), tokens as f64 * 1000.0 / wall_ms as f64);
        while self.rates.len() > MAX_RATES {
            let first = self.rates.keys().next().cloned().unwrap_or_default();
            self.rates.remove(&first);
        }
        if let Some(path) = &self.path {
            if let Ok(bytes) = serde_json::to_vec_pretty(self) {
                if let Some(dir) = path.parent() {
                    let _ = std::fs::create_dir_all(dir);
                }
                let tmp = path.with_extension("json.tmp");
                if std::fs::write(&tmp, bytes).is_ok() {
                    let _ = std::fs::rename(&tmp, path);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_survive_a_reload_and_bad_files_read_as_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rates.json");
        let plan = SweepPlan {
            step: Step::Map,
            windows: 3,
            prompt_tokens: 3000,
            held_tokens: None,
            slots: 2,
            dispatch: String::new(),
            measured_rate: None,
            estimate_s: None,
            rate_key: "m slots=2".to_owned(),
        };
        let mut r = Rates::load(&path);
        assert_eq!(r.get("m slots=2"), None);
        r.record(&plan, 3000, 1500);
        assert_eq!(Rates::load(&path).get("m slots=2"), Some(2000.0));
        assert_eq!(Rates::load(&path).get("m slots=4"), None);
        std::fs::write(&path, "not json").unwrap();
        assert_eq!(Rates::load(&path).get("m slots=2"), None);
    }

    #[test]
    fn dispatch_says_how_calls_go_out() {
        assert_eq!(dispatch_text("openai", 8, 5), "5 at once (8 slots on the servers)");
        assert!(dispatch_text("llamacpp", 1, 5).starts_with("one after another"));
    }
}
