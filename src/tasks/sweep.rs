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

use crate::engine::{Call, Engine, EngineError, KvUse};
use crate::kv::budget::CorpusKv;
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
    /// The windows' KV against the engine's disk tier: whether it will
    /// all be kept for the next question; absent where the engine keeps
    /// no KV on disk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kv: Option<CorpusKv>,
    /// The engine's key for rates (model and slots).
    #[serde(skip)]
    pub rate_key: String,
}

impl SweepPlan {
    /// The plan for `calls` on `engine`, at `rates`' last measured rate.
    pub fn new(step: Step, engine: &dyn Engine, calls: &[Call<'_>], rates: &Rates) -> Result<Self, EngineError> {
        let mut tally = Tally::default();
        tally.add(engine, calls)?;
        Ok(Self::of(step, engine, &tally, rates))
    }

    /// The plan for calls counted into `tally` (a task that makes its
    /// calls group by group).
    #[must_use]
    pub fn of(step: Step, engine: &dyn Engine, tally: &Tally, rates: &Rates) -> Self {
        let prompt_tokens: u64 = tally.counts.iter().sum();
        let held = tally.held;
        let slots = engine.slots();
        let rate_key = rate_key(engine, step);
        let measured_rate = rates.get(&rate_key);
        let to_read = prompt_tokens - held.unwrap_or(0).min(prompt_tokens);
        let calls = tally.counts.len();
        Self {
            step,
            windows: calls,
            prompt_tokens,
            held_tokens: held,
            slots,
            dispatch: dispatch_text(engine.backend(), slots, calls),
            measured_rate,
            estimate_s: measured_rate.filter(|r| *r > 0.0).map(|r| to_read as f64 / r),
            // Only a corpus's windows are kept for the next question.
            kv: engine
                .kv_store()
                .filter(|_| step.prefix_is_corpus())
                .map(|store| CorpusKv::new(&store, &tally.counts)),
            rate_key,
        }
    }

    /// Prompt tokens the sweep must read (not held in the KV cache).
    #[must_use]
    pub fn to_read(&self) -> u64 {
        self.prompt_tokens - self.held_tokens.unwrap_or(0).min(self.prompt_tokens)
    }
}

/// Prompt tokens of a sweep's calls, and how many of them the engine's KV
/// cache holds (`None` where the engine cannot tell).
#[derive(Debug, Clone)]
pub struct Tally {
    counts: Vec<u64>,
    held: Option<u64>,
}

impl Default for Tally {
    fn default() -> Self {
        Self {
            counts: Vec::new(),
            held: Some(0),
        }
    }
}

impl Tally {
    /// Counts `calls` in.
    pub fn add(&mut self, engine: &dyn Engine, calls: &[Call<'_>]) -> Result<(), EngineError> {
        for c in calls {
            self.counts.push(u64::from(engine.count_chat_tokens(c.messages)?));
            self.held = match (self.held, engine.kv_held(c.messages)) {
                (Some(sum), Some(n)) => Some(sum + u64::from(n)),
                _ => None,
            };
        }
        Ok(())
    }
}

/// The name a sweep's windows are kept under as one group in the disk
/// tier: the model and every window's prompt before its last message (the
/// corpus, not the question), so the next question over the same corpus
/// and model is the same group, and an edited corpus another.
#[must_use]
pub fn kv_group(model_id: &str, calls: &[Call<'_>]) -> String {
    let mut h = blake3::Hasher::new();
    h.update(model_id.as_bytes());
    for c in calls {
        let before_last = &c.messages[..c.messages.len().saturating_sub(1)];
        for m in before_last {
            h.update(&(m.content.len() as u64).to_le_bytes());
            h.update(m.content.as_bytes());
            h.update(&(m.images.len() as u64).to_le_bytes());
        }
        h.update(b"\0window");
    }
    format!("sweep-{}", &h.finalize().to_hex()[..24])
}

/// What a sweep's windows left in the engine's disk tier for the next
/// question, said after the sweep.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KvKept {
    /// Windows whose prefix the disk tier can keep (long enough).
    pub windows: usize,
    /// Of those, the windows whose KV it holds now.
    pub kept: usize,
    /// Bytes those hold.
    pub bytes: u64,
    /// Windows (numbered from 1) refused for want of room: the sweep's
    /// other windows, or pinned corpora, hold the budget.
    pub over_budget: Vec<usize>,
    /// Windows whose KV was kept or restored and is gone since (evicted
    /// for another corpus, or removed as damaged), or failed to save.
    pub not_kept: Vec<usize>,
    /// Windows whose call failed (nothing read, nothing to keep).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<usize>,
    pub budget: u64,
    pub budget_note: String,
}

impl KvKept {
    /// Asks `engine` what it holds of each of `calls` (whose generations'
    /// KV use is `kv`, `None` for a failed call). `None` where the engine
    /// keeps no KV on disk.
    pub fn after(engine: &dyn Engine, calls: &[Call<'_>], kv: &[Option<KvUse>]) -> Option<Self> {
        let store = engine.kv_store()?;
        let saved: Vec<Option<u64>> = calls.iter().map(|c| engine.kv_saved(c.messages)).collect();
        Some(Self::of(&saved, kv, store.budget, store.budget_note))
    }

    /// From each window's stored bytes (`None`: too short to keep) and
    /// its generation's KV use.
    #[must_use]
    pub fn of(saved: &[Option<u64>], kv: &[Option<KvUse>], budget: u64, budget_note: String) -> Self {
        let mut k = Self {
            windows: 0,
            kept: 0,
            bytes: 0,
            over_budget: Vec::new(),
            not_kept: Vec::new(),
            failed: Vec::new(),
            budget,
            budget_note,
        };
        for (i, bytes) in saved.iter().enumerate() {
            let Some(bytes) = *bytes else { continue };
            k.windows += 1;
            let used = kv.get(i).copied().flatten();
            if bytes > 0 {
                k.kept += 1;
                k.bytes += bytes;
            } else if used.is_none() {
                k.failed.push(i + 1);
            } else if used.is_some_and(|u| u.unsaved_tokens > 0) {
                k.over_budget.push(i + 1);
            } else {
                k.not_kept.push(i + 1);
            }
        }
        k
    }

    /// Every window that was read and can be kept is.
    #[must_use]
    pub fn all_kept(&self) -> bool {
        self.kept + self.failed.len() == self.windows
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

/// The key rates are kept under: the engine's model identity, its slots
/// and the step (another model, another number of servers, or an audit's
/// longer answers after a question's notes, measures anew).
fn rate_key(engine: &dyn Engine, step: Step) -> String {
    format!("{} slots={} step={step:?}", engine.model_id(), engine.slots())
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

    /// The rates kept in scout's cache folder (`rates.json`).
    #[must_use]
    pub fn in_cache() -> Self {
        Self::load(&crate::model::store::cache_dir().join("rates.json"))
    }

    /// These rates as their file holds them now (what later sweeps have
    /// recorded since they were loaded); a copy when they have no file.
    #[must_use]
    pub fn reloaded(&self) -> Self {
        self.path.as_deref().map_or_else(|| self.clone(), Self::load)
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
            kv: None,
            rate_key: "m slots=2".to_owned(),
        };
        let mut r = Rates::load(&path);
        assert_eq!(r.get("m slots=2"), None);
        let before = r.clone();
        r.record(&plan, 3000, 1500);
        assert_eq!(Rates::load(&path).get("m slots=2"), Some(2000.0));
        assert_eq!(
            before.reloaded().get("m slots=2"),
            Some(2000.0),
            "what was recorded since"
        );
        assert_eq!(Rates::default().reloaded().get("m slots=2"), None);
        assert_eq!(Rates::load(&path).get("m slots=4"), None);
        std::fs::write(&path, "not json").unwrap();
        assert_eq!(Rates::load(&path).get("m slots=2"), None);
    }

    #[test]
    fn kept_windows_are_told_apart_from_refused_and_evicted_ones() {
        let refused = KvUse {
            unsaved_tokens: 4000,
            ..KvUse::default()
        };
        let saved = [Some(100), None, Some(0), Some(0), Some(0), Some(120)];
        let kv = [
            None,
            None,
            Some(refused),
            Some(KvUse::default()),
            None,
            Some(KvUse::default()),
        ];
        let k = KvKept::of(&saved, &kv, 1000, "set".to_owned());
        assert_eq!(
            (k.windows, k.kept, k.bytes),
            (5, 2, 220),
            "the second window is too short to keep"
        );
        assert_eq!(k.over_budget, vec![3]);
        assert_eq!(k.not_kept, vec![4], "saved then evicted");
        assert_eq!(k.failed, vec![5], "a failed call read nothing to keep");
        assert!(!k.all_kept());
        // Windows whose calls failed are no fault of the cache's.
        let k = KvKept::of(&[Some(100), Some(0)], &[None, None], 1000, "set".to_owned());
        assert_eq!((k.kept, k.failed.clone()), (1, vec![2]));
        assert!(k.all_kept());
    }

    #[test]
    fn a_sweeps_group_is_its_corpus_not_its_question() {
        use crate::prompt::{ChatMessage, Role};
        let params = crate::engine::GenerateParams::default();
        let convo = |corpus: &str, question: &str| {
            vec![
                ChatMessage::new(Role::System, corpus),
                ChatMessage::new(Role::User, question),
            ]
        };
        let group = |windows: &[Vec<ChatMessage>]| {
            let calls: Vec<Call<'_>> = windows
                .iter()
                .map(|m| Call {
                    messages: m,
                    params: &params,
                })
                .collect();
            kv_group("model", &calls)
        };
        let a = group(&[convo("w1", "who?"), convo("w2", "who?")]);
        assert_eq!(a, group(&[convo("w1", "why?"), convo("w2", "why?")]));
        assert_ne!(a, group(&[convo("w1", "who?"), convo("w2 edited", "who?")]));
        assert_ne!(a, group(&[convo("w1w2", "who?")]));
        assert!(a.starts_with("sweep-") && a.len() == 30);
    }

    #[test]
    fn dispatch_says_how_calls_go_out() {
        assert_eq!(dispatch_text("openai", 8, 5), "5 at once (8 slots on the servers)");
        assert!(dispatch_text("llamacpp", 1, 5).starts_with("one after another"));
    }
}
