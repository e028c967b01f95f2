//! Counters for `GET /metrics`, in Prometheus's text format.
//!
//! Never blocks a request: counters are atomic or briefly locked.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use crate::engine::KvUse;

/// One counter of a KV tier, for the metrics text.
type TierField = fn(&crate::kv::tier::TierCounters) -> u64;

#[derive(Debug, Default)]
struct Inner {
    /// (route, status) -> requests.
    requests: BTreeMap<(String, u16), u64>,
    /// route -> (seconds summed, count).
    latency: BTreeMap<String, (f64, u64)>,
    prompt_tokens: u64,
    completion_tokens: u64,
    kv: KvTotals,
    rejected: u64,
}

#[derive(Debug, Default, Clone, Copy)]
struct KvTotals {
    reused_tokens: u64,
    restored_tokens: u64,
    prefilled_tokens: u64,
    saved_bytes: u64,
    /// Model calls whose prompt prefix came back from the disk tier.
    restores: u64,
    /// Model calls that reused KV already resident.
    hits: u64,
    /// Model calls that prefilled their whole prompt.
    misses: u64,
    /// Prefixes written to the disk tier.
    saves: u64,
    /// Prefixes dropped from the host tier to make room.
    evictions: u64,
    /// Prefixes copied from an engine's context into host memory.
    offloads: u64,
    offloaded_bytes: u64,
    /// Model calls whose prefix was forked from another sequence of their
    /// batch, and the tokens so shared.
    forks: u64,
    forked_tokens: u64,
    /// Model calls whose prefix was still in a resident context (no copy),
    /// and its tokens.
    resident: u64,
    resident_tokens: u64,
    /// Prefix tokens whose KV the disk budget did not keep.
    unsaved_tokens: u64,
}

#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    pub fn request(&self, route: &str, status: u16, seconds: f64) {
        if let Ok(mut m) = self.inner.lock() {
            *m.requests.entry((route.to_owned(), status)).or_default() += 1;
            let l = m.latency.entry(route.to_owned()).or_default();
            l.0 += seconds;
            l.1 += 1;
            if status == 429 {
                m.rejected += 1;
            }
        }
    }

    /// One request's model calls: tokens and KV use, summed.
    pub fn generation(&self, prompt: u64, completion: u64, kv: KvUse) {
        if let Ok(mut m) = self.inner.lock() {
            m.prompt_tokens += prompt;
            m.completion_tokens += completion;
            let k = &mut m.kv;
            k.reused_tokens += u64::from(kv.reused_tokens);
            k.restored_tokens += u64::from(kv.restored_tokens);
            k.prefilled_tokens += u64::from(kv.prefilled_tokens);
            k.saved_bytes += kv.saved_bytes;
            k.restores += u64::from(kv.restored_tokens > 0);
            k.hits += u64::from(kv.reused_tokens > 0);
            k.misses += u64::from(kv.reused_tokens == 0 && kv.restored_tokens == 0 && kv.forked_tokens == 0);
            k.saves += u64::from(kv.saved_bytes > 0);
            k.evictions += u64::from(kv.evictions);
            k.offloads += u64::from(kv.offloaded_bytes > 0);
            k.offloaded_bytes += kv.offloaded_bytes;
            k.forks += u64::from(kv.forked_tokens > 0);
            k.forked_tokens += u64::from(kv.forked_tokens);
            k.resident += u64::from(kv.resident_tokens > 0);
            k.resident_tokens += u64::from(kv.resident_tokens);
            k.unsaved_tokens += u64::from(kv.unsaved_tokens);
        }
    }

    /// The text for `GET /metrics`; `queued` and `running` are the pool's
    /// gauges now, `tiers` its engines' KV tier counters.
    #[must_use]
    pub fn render(
        &self,
        queued: usize,
        running: usize,
        workers: usize,
        tiers: &[(&str, crate::kv::tier::TierCounters)],
    ) -> String {
        let Ok(m) = self.inner.lock() else {
            return String::new();
        };
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, value: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
        };
        counter(
            "scout_prompt_tokens_total",
            "Prompt tokens of all model calls.",
            m.prompt_tokens,
        );
        counter(
            "scout_completion_tokens_total",
            "Tokens generated.",
            m.completion_tokens,
        );
        counter(
            "scout_kv_reused_tokens_total",
            "Prompt tokens whose KV was already resident.",
            m.kv.reused_tokens,
        );
        counter(
            "scout_kv_restored_tokens_total",
            "Prompt tokens whose KV was restored from disk.",
            m.kv.restored_tokens,
        );
        counter(
            "scout_kv_prefilled_tokens_total",
            "Prompt tokens computed.",
            m.kv.prefilled_tokens,
        );
        counter(
            "scout_kv_saved_bytes_total",
            "Bytes of KV written to the disk tier.",
            m.kv.saved_bytes,
        );
        counter("scout_kv_hits_total", "Requests that reused resident KV.", m.kv.hits);
        counter(
            "scout_kv_restores_total",
            "Requests whose corpus KV was restored from disk.",
            m.kv.restores,
        );
        counter(
            "scout_kv_misses_total",
            "Requests that prefilled their whole prompt (the corpus was read).",
            m.kv.misses,
        );
        counter("scout_kv_saves_total", "Prefixes saved to the disk tier.", m.kv.saves);
        counter(
            "scout_kv_offloads_total",
            "Corpus prefixes copied from an engine's context into host memory.",
            m.kv.offloads,
        );
        counter(
            "scout_kv_offloaded_bytes_total",
            "Bytes of KV copied into host memory.",
            m.kv.offloaded_bytes,
        );
        counter(
            "scout_kv_forks_total",
            "Model calls whose corpus prefix was forked from another sequence of their batch (no recompute).",
            m.kv.forks,
        );
        counter(
            "scout_kv_forked_tokens_total",
            "Prompt tokens shared by forking.",
            m.kv.forked_tokens,
        );
        counter(
            "scout_kv_resident_total",
            "Model calls whose corpus prefix was still in a context kept alive since an earlier request (no copy).",
            m.kv.resident,
        );
        counter(
            "scout_kv_resident_tokens_total",
            "Prompt tokens read from resident contexts.",
            m.kv.resident_tokens,
        );
        counter(
            "scout_kv_unsaved_tokens_total",
            "Corpus prefix tokens whose KV the disk budget did not keep.",
            m.kv.unsaved_tokens,
        );
        counter(
            "scout_kv_evictions_total",
            "Corpus prefixes dropped from memory (least recently used) to make room.",
            m.kv.evictions,
        );
        counter(
            "scout_rejected_total",
            "Requests refused with 429 (queue full).",
            m.rejected,
        );
        let fields: [(&str, &str, TierField); 4] = [
            ("hits", "Lookups that found the prefix's KV in the tier.", |c| c.hits),
            ("misses", "Lookups that did not.", |c| c.misses),
            ("stores", "Prefixes' KV stored in the tier.", |c| c.stores),
            (
                "evictions",
                "Entries sent out of the tier (least recently used) to make room.",
                |c| c.evictions,
            ),
        ];
        for (field, help, value) in fields {
            let name = format!("scout_kv_tier_{field}_total");
            let _ = writeln!(
                out,
                "# HELP {name} {help} By tier (memory, disk).\n# TYPE {name} counter"
            );
            for (tier, c) in tiers {
                let _ = writeln!(out, "{name}{{tier=\"{tier}\"}} {}", value(c));
            }
        }
        let _ = writeln!(
            out,
            "# HELP scout_requests_total Requests by route and status.\n# TYPE scout_requests_total counter"
        );
        for ((route, status), n) in &m.requests {
            let _ = writeln!(out, "scout_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP scout_request_seconds Request latency.\n# TYPE scout_request_seconds summary"
        );
        for (route, (sum, count)) in &m.latency {
            let _ = writeln!(out, "scout_request_seconds_sum{{route=\"{route}\"}} {sum:.6}");
            let _ = writeln!(out, "scout_request_seconds_count{{route=\"{route}\"}} {count}");
        }
        let _ = writeln!(
            out,
            "# HELP scout_queue_depth Requests waiting for an engine.\n# TYPE scout_queue_depth gauge\nscout_queue_depth {queued}"
        );
        let _ = writeln!(
            out,
            "# HELP scout_in_flight Requests running on an engine.\n# TYPE scout_in_flight gauge\nscout_in_flight {running}"
        );
        let _ = writeln!(
            out,
            "# HELP scout_engines Engine workers.\n# TYPE scout_engines gauge\nscout_engines {workers}"
        );
        out
    }
}
