//! The engines: a fixed number of worker threads, each owning one engine,
//! fed from one bounded queue. A request that finds the queue full is
//! refused at once (the API answers 429) instead of waiting unbounded.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use crate::engine::{Capabilities, Engine};

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
}

impl Pool {
    /// Starts `workers` threads, each loading its own engine (engines stay
    /// on the thread that made them); fails if any does not load.
    pub fn start(workers: usize, queue: usize, factory: &Arc<EngineFactory>) -> anyhow::Result<Self> {
        let (tx, rx) = sync_channel::<Work>(queue);
        let rx = Arc::new(Mutex::new(rx));
        let queued = Arc::new(AtomicUsize::new(0));
        let running = Arc::new(AtomicUsize::new(0));
        let (loaded_tx, loaded_rx) = std::sync::mpsc::channel();
        for i in 0..workers.max(1) {
            let (rx, queued, running) = (Arc::clone(&rx), Arc::clone(&queued), Arc::clone(&running));
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
                        worker(engine, &rx, &queued, &running);
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
        })
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

fn worker(mut engine: Box<dyn Engine>, rx: &Mutex<Receiver<Work>>, queued: &AtomicUsize, running: &AtomicUsize) {
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
        running.fetch_sub(1, Ordering::SeqCst);
        if outcome.is_err() {
            eprintln!("scout: a request panicked on an engine thread; the engine goes on");
        }
    }
}
