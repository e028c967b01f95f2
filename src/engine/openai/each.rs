//! Independent calls (a sweep's windows) on the openai backend, as many at
//! once as the servers have slots: one thread per slot takes the next call
//! in order, and everything a thread reports comes back to the caller's
//! thread, which alone calls `on_event`.
//!
//! Never changes an answer: each call is the request a call alone would
//! send, and results come back in the calls' order.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use super::OpenAiEngine;
use crate::engine::{Call, EachEvent, Engine, EngineError, EngineEvent, Generation};

/// What a worker thread reports of call `usize`.
enum Report {
    Started,
    Prefill { done: u32, total: u32 },
    Text(String),
    Finished(Result<Generation, EngineError>),
}

pub(super) fn generate_each(
    engine: &OpenAiEngine,
    calls: &[Call<'_>],
    on_event: &mut dyn FnMut(usize, EachEvent<'_>),
) -> Vec<Result<Generation, EngineError>> {
    let mut results: Vec<Option<Result<Generation, EngineError>>> = calls.iter().map(|_| None).collect();
    let workers = engine.slots().min(calls.len());
    let next = AtomicUsize::new(0);
    let (tx, rx) = mpsc::channel::<(usize, Report)>();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let tx = tx.clone();
            let next = &next;
            scope.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(call) = calls.get(i) else { break };
                let _ = tx.send((i, Report::Started));
                let g = engine.generate_shared(call.messages, call.params, &mut |e| {
                    let _ = tx.send((
                        i,
                        match e {
                            EngineEvent::Prefill { done, total } => Report::Prefill { done, total },
                            EngineEvent::Text(t) => Report::Text(t.to_owned()),
                        },
                    ));
                });
                let _ = tx.send((i, Report::Finished(g)));
            });
        }
        // The workers hold the only senders left: the loop ends when the
        // last of them is done.
        drop(tx);
        for (i, report) in rx {
            match report {
                Report::Started => on_event(i, EachEvent::Started),
                Report::Prefill { done, total } => on_event(i, EachEvent::Engine(EngineEvent::Prefill { done, total })),
                Report::Text(t) => on_event(i, EachEvent::Engine(EngineEvent::Text(&t))),
                Report::Finished(g) => {
                    let ok = g.is_ok();
                    results[i] = Some(g);
                    on_event(i, EachEvent::Finished(ok));
                }
            }
        }
    });
    results
        .into_iter()
        .map(|r| {
            r.unwrap_or_else(|| {
                Err(EngineError::Inference(
                    "a request thread ended without an answer".into(),
                ))
            })
        })
        .collect()
}
