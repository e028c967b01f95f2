//! The engines: a fixed number of worker threads, each owning one engine,
//! fed from one bounded queue. A request that finds the queue full is
//! refused at once (the API answers 429) instead of waiting unbounded.
//!
//! Never lets a request wait without bound, and never lets a panic in one
//! request take its engine (and loaded model) down.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use crate::engine::{Capabilities, Engine};
use crate::kv::tier::TierCounters;

/// Work for an engine; it runs on a worker thread.
pub type Work = Box<dyn FnOnce(&mut dyn Engine) + Send>;

/// Makes one engine (each worker calls it once).
pub type EngineFactory = dyn Fn() -> anyhow::Result<Box<dyn Engine>> + Send + Sync;

/// The queue is full.
#[derive(Debug)]
pub struct Busy;

pub struct Pool {
    tx: SyncSender<Work>,
    /// Work queued and not yet started.
    queued: Arc<AtomicUsize>,
    /// Work running now.
    running: Arc<AtomicUsize>,
    pub workers: usize,
    pub model: String,
    pub backend: &'static str,
    pub capabilities: Capabilities,
    /// Each worker's engine's KV tier counters, as of its last request.
    tiers: Arc<Mutex<Vec<Tiers>>>,
}

/// An engine's KV tiers: name and counters.
type Tiers = Vec<(&'static str, TierCounters)>;

impl Pool {
    /// Starts `workers` threads, each loading its own engine (engines stay
    /// on the thread that made them); fails if any does not load.
    pub fn start(workers: usize, queue: usize, factory: &Arc<EngineFactory>) -> anyhow::Result<Self> {
        let (tx, rx) = sync_channel::<Work>(queue);
        let rx = Arc::new(Mutex::new(rx));
        let queued = Arc::new(AtomicUsize::new(0));
        let running = Arc::new(AtomicUsize::new(0));
        let tiers = Arc::new(Mutex::new(vec![Tiers::new(); workers.max(1)]));
        let (loaded_tx, loaded_rx) = std::sync::mpsc::channel();
        for i in 0..workers.max(1) {
            let (rx, queued, running) = (Arc::clone(&rx), Arc::clone(&queued), Arc::clone(&running));
            let tiers = Arc::clone(&tiers);
            let (factory, loaded) = (Arc::clone(factory), loaded_tx.clone());
            std::thread::Builder::new()
                .name(format!("scout-engine-{i}"))
                .spawn(move || match factory() {
                    Ok(engine) => {
                        let _ = loaded.send(Ok((
                            engine.model_id().to_owned(),
                            engine.backend(),
                            engine.capabilities(),
                        )));
                        drop(loaded);
                        worker(engine, &rx, &queued, &running, &|t| {
                            if let Ok(mut all) = tiers.lock() {
                                all[i] = t;
                            }
                        });
                    }
                    Err(e) => {
                        let _ = loaded.send(Err(e));
                    }
                })?;
        }
        drop(loaded_tx);
        let mut first = None;
        for outcome in loaded_rx {
            let facts = outcome?;
            first.get_or_insert(facts);
        }
        let (model, backend, capabilities) = first.ok_or_else(|| anyhow::anyhow!("no engine started"))?;
        Ok(Self {
            tx,
            queued,
            running,
            workers: workers.max(1),
            model,
            backend,
            capabilities,
            tiers,
        })
    }

    /// The KV tiers' counters summed over the workers' engines (by tier
    /// name, in the order the engines list them).
    #[must_use]
    pub fn kv_tiers(&self) -> Tiers {
        let mut sum = Tiers::new();
        let Ok(all) = self.tiers.lock() else {
            return sum;
        };
        for (name, c) in all.iter().flatten() {
            match sum.iter_mut().find(|(n, _)| n == name) {
                Some((_, s)) => {
                    s.hits += c.hits;
                    s.misses += c.misses;
                    s.stores += c.stores;
                    s.evictions += c.evictions;
                }
                None => sum.push((name, *c)),
            }
        }
        sum
    }

    /// Queues `work`, or says the queue is full.
    pub fn try_submit(&self, work: Work) -> Result<(), Busy> {
        self.queued.fetch_add(1, Ordering::SeqCst);
        match self.tx.try_send(work) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.queued.fetch_sub(1, Ordering::SeqCst);
                Err(Busy)
            }
        }
    }

    #[must_use]
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::SeqCst)
    }

    #[must_use]
    pub fn running(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }
}

fn worker(
    mut engine: Box<dyn Engine>,
    rx: &Mutex<Receiver<Work>>,
    queued: &AtomicUsize,
    running: &AtomicUsize,
    publish: &dyn Fn(Tiers),
) {
    loop {
        let work = match rx.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(work) = work else { return };
        queued.fetch_sub(1, Ordering::SeqCst);
        running.fetch_add(1, Ordering::SeqCst);
        // A panic in one request must not take the worker (and its loaded
        // model) down with it.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(engine.as_mut())));
        publish(engine.kv_tiers());
        running.fetch_sub(1, Ordering::SeqCst);
        if outcome.is_err() {
            tracing::error!("a request panicked on an engine thread; the engine goes on");
        }
    }
}
