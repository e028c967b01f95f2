//! The servers behind the openai backend: each one's load, rest after a
//! failure and slots (requests it takes at once), the dispatch that picks
//! one for a request, and what each lists.
//!
//! A server's state is one per process, shared by every engine that names
//! its URL (the workers of `scout batch --concurrency`, the engines of
//! `scout serve`): their requests count against one set of slots, and a
//! request waits for a free slot rather than overfill a server.
//!
//! Never sends a chat request (the engine does).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long an endpoint rests after a failure before it is tried again.
const REST: Duration = Duration::from_secs(30);
/// Requests in flight per server when neither the user nor the server
/// says how many it takes.
pub const DEFAULT_SLOTS: u32 = 4;

/// One server, with what dispatch needs to know about it.
#[derive(Debug)]
pub struct Endpoint {
    pub url: String,
    /// Requests it is given at once.
    slots: AtomicU32,
    /// Where `slots` came from: `--slots`, the server, or the default.
    slots_from: Mutex<&'static str>,
    in_flight: AtomicU32,
    served: AtomicU64,
    failures: AtomicU64,
    resting_until: Mutex<Option<Instant>>,
}

impl Endpoint {
    pub(super) fn new(url: &str) -> Self {
        let trimmed = url.trim_end_matches('/');
        let url = if trimmed.ends_with("/v1") {
            trimmed.to_owned()
        } else {
            format!("{trimmed}/v1")
        };
        Self {
            url,
            slots: AtomicU32::new(DEFAULT_SLOTS),
            slots_from: Mutex::new("default"),
            in_flight: AtomicU32::new(0),
            served: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            resting_until: Mutex::new(None),
        }
    }

    pub(super) fn resting(&self) -> bool {
        self.resting_until
            .lock()
            .is_ok_and(|r| r.is_some_and(|t| Instant::now() < t))
    }

    pub(super) fn rest(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut r) = self.resting_until.lock() {
            *r = Some(Instant::now() + REST);
        }
    }

    /// The endpoint for `url`, shared with every engine of this process
    /// that names it.
    pub(super) fn shared(url: &str) -> Arc<Self> {
        static ALL: LazyLock<Mutex<HashMap<String, Weak<Endpoint>>>> = LazyLock::new(Mutex::default);
        let fresh = Self::new(url);
        let mut all = ALL.lock().unwrap_or_else(PoisonError::into_inner);
        all.retain(|_, e| e.strong_count() > 0);
        if let Some(e) = all.get(&fresh.url).and_then(Weak::upgrade) {
            return e;
        }
        let e = Arc::new(fresh);
        all.insert(e.url.clone(), Arc::downgrade(&e));
        e
    }

    /// Requests it is given at once.
    #[must_use]
    pub fn slots(&self) -> u32 {
        self.slots.load(Ordering::Relaxed)
    }

    /// Where [`Endpoint::slots`] came from: `--slots`, the server, or the
    /// default.
    #[must_use]
    pub fn slots_from(&self) -> &'static str {
        *self.slots_from.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn set_slots(&self, n: u32, from: &'static str) {
        self.slots.store(n.max(1), Ordering::Relaxed);
        *self.slots_from.lock().unwrap_or_else(PoisonError::into_inner) = from;
    }

    pub(super) fn served_one(&self) {
        self.served.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests answered, and failures, so far.
    #[must_use]
    pub fn stats(&self) -> (u64, u64) {
        (
            self.served.load(Ordering::Relaxed),
            self.failures.load(Ordering::Relaxed),
        )
    }

    /// The slots `--slots` gives, else those the server is known to take
    /// ([`known_slots`], from its `models` listing and what it reports),
    /// else [`DEFAULT_SLOTS`].
    pub(super) fn settle_slots(&self, agent: &ureq::Agent, key: Option<&str>, given: Option<u32>, models: &Value) {
        if let Some(n) = given {
            self.set_slots(n, "--slots");
        } else if let Some((n, from)) = known_slots(agent, &self.url, key, models) {
            self.set_slots(n, from);
        }
    }

    /// Requests in flight to it now.
    pub(super) fn busy(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }
}

/// The requests a server takes at once, and how scout knows: llama-server's
/// `/props` (`total_slots`), SGLang's `/get_server_info`
/// (`max_running_requests`); llama-cpp-python (its models are "owned by"
/// `me`) takes one, and by default cuts the answer it is giving short when
/// another request arrives. vLLM and most others do not say.
fn known_slots(agent: &ureq::Agent, url: &str, key: Option<&str>, models: &Value) -> Option<(u32, &'static str)> {
    if models["data"]
        .as_array()
        .is_some_and(|a| !a.is_empty() && a.iter().all(|m| m["owned_by"] == "me"))
    {
        return Some((1, "llama-cpp-python, one request at a time"));
    }
    let root = url.trim_end_matches("/v1");
    let read = |path: &str, field: &str| {
        get_json(agent, &format!("{root}/{path}"), key)
            .ok()
            .and_then(|v| v[field].as_u64())
            .and_then(|n| u32::try_from(n).ok())
            .filter(|&n| n > 0)
    };
    read("props", "total_slots")
        .or_else(|| read("get_server_info", "max_running_requests"))
        .map(|n| (n, "the server"))
}

/// The endpoint a request goes to: among those not resting, one with a
/// free slot and the fewest requests in flight per slot (all resting: the
/// least-loaded of all, so a run never stalls on a pause).
pub(super) fn pick<E: std::borrow::Borrow<Endpoint>>(endpoints: &[E], avoid: Option<usize>) -> usize {
    let load = |i: usize| {
        let e: &Endpoint = endpoints[i].borrow();
        let (busy, slots) = (e.in_flight.load(Ordering::Relaxed), e.slots());
        (
            e.resting() || Some(i) == avoid,
            busy >= slots,
            u64::from(busy) * 1_000_000 / u64::from(slots.max(1)),
            e.served.load(Ordering::Relaxed),
        )
    };
    (0..endpoints.len()).min_by_key(|&i| load(i)).unwrap_or(0)
}

/// Held while an endpoint is picked and its in-flight count raised, so
/// concurrent requests (of any engine in the process) see each other's.
static DISPATCH: Mutex<()> = Mutex::new(());
/// Told when a request ends and its slot frees.
static FREED: Condvar = Condvar::new();

/// Picks the endpoint for a request ([`pick`]) and takes one of its slots,
/// waiting while the one picked has none free: a request never overfills a
/// server, whichever engine of the process sends it.
pub(super) fn acquire(endpoints: &[Arc<Endpoint>], avoid: Option<usize>) -> (usize, InFlight<'_>) {
    let mut held = DISPATCH.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        let i = pick(endpoints, avoid);
        let e = &endpoints[i];
        if e.in_flight.load(Ordering::Relaxed) < e.slots() {
            return (i, InFlight::new(e));
        }
        // A slot freed by a request of another process is not signalled:
        // look again now and then.
        held = FREED
            .wait_timeout(held, Duration::from_millis(500))
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
}

/// A request that holds its endpoint's in-flight count until dropped.
pub(super) struct InFlight<'a>(&'a Endpoint);

impl<'a> InFlight<'a> {
    pub(super) fn new(e: &'a Endpoint) -> Self {
        e.in_flight.fetch_add(1, Ordering::Relaxed);
        Self(e)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        // Under the dispatch lock, so a request about to wait cannot miss it.
        let _held = DISPATCH.lock().unwrap_or_else(PoisonError::into_inner);
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        FREED.notify_all();
    }
}

/// The context a server reports for a model in its `/models` list: vLLM
/// and SGLang say `max_model_len`, llama-server `meta.n_ctx_train`.
pub(super) fn served_context(entry: &Value) -> Option<u32> {
    entry["max_model_len"]
        .as_u64()
        .or_else(|| entry["meta"]["n_ctx_train"].as_u64())
        .or_else(|| entry["context_length"].as_u64())
        .and_then(|c| u32::try_from(c).ok())
}

/// A model an endpoint serves, as its `/models` list describes it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ServedModel {
    pub endpoint: String,
    pub id: String,
    /// The context the server reports, when it does.
    pub context_length: Option<u32>,
    /// The requests it takes at once, when it says.
    pub slots: Option<u32>,
}

/// Every model each endpoint lists; an endpoint that does not answer is
/// an error naming it.
#[must_use]
pub fn list_models(endpoints: &[String], api_key: Option<&str>) -> Vec<Result<Vec<ServedModel>, String>> {
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(15)))
        .http_status_as_error(false)
        .build();
    let agent = ureq::Agent::new_with_config(config);
    endpoints
        .iter()
        .map(|u| {
            let e = Endpoint::new(u);
            let listed =
                get_json(&agent, &format!("{}/models", e.url), api_key).map_err(|why| format!("{}: {why}", e.url))?;
            let slots = known_slots(&agent, &e.url, api_key, &listed).map(|(n, _)| n);
            Ok(listed["data"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|m| {
                            Some(ServedModel {
                                endpoint: e.url.clone(),
                                id: m["id"].as_str()?.to_owned(),
                                context_length: served_context(m),
                                slots,
                            })
                        })
                        .collect()
                })
                .unwrap_or_default())
        })
        .collect()
}

pub(super) fn get_json(agent: &ureq::Agent, url: &str, key: Option<&str>) -> Result<Value, String> {
    let mut req = agent.get(url);
    if let Some(key) = key {
        req = req.header("Authorization", &format!("Bearer {key}"));
    }
    let resp = req.call().map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let text = resp.into_body().read_to_string().map_err(|e| e.to_string())?;
    if status != 200 {
        return Err(format!("HTTP {status}: {}", text.chars().take(200).collect::<String>()));
    }
    serde_json::from_str(&text).map_err(|e| format!("not JSON: {e}"))
}
