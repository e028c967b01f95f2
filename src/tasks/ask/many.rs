//! Several questions over one corpus at once: those that fit one window
//! and share their settings fork the corpus's KV; the others are asked one
//! by one.

use super::recheck::recheck_messages;
use super::{ask, finish, prepare, AskOptions, AskResult, Prepared, Recheck};
use crate::corpus::Corpus;
use crate::engine::{Engine, EngineEvent, GenerateParams};
use crate::prompt::ChatMessage;
use crate::tasks::run::{Caller, Step, TaskError, TaskEvent, Timings, Usage};

/// Whether two answers can be generated together: the same sampling,
/// limits, stops and schema.
fn same_generation(a: &GenerateParams, b: &GenerateParams) -> bool {
    a.max_tokens == b.max_tokens
        && a.temperature.to_bits() == b.temperature.to_bits()
        && a.seed == b.seed
        && a.repeat_penalty.to_bits() == b.repeat_penalty.to_bits()
        && a.stop == b.stop
        && a.json_schema == b.json_schema
}

/// Answers several questions over one corpus. Those whose corpus fits one
/// window and that are answered with the same settings go to the engine
/// together ([`Engine::generate_forked`]): the corpus is read (or
/// restored) once and every question forks its KV. The others are asked
/// one by one. Results come in the order of `opts`.
pub fn ask_many(
    corpus: &mut Corpus,
    engine: &mut dyn Engine,
    opts: &[AskOptions],
    on_event: &mut dyn FnMut(TaskEvent<'_>),
) -> Vec<Result<AskResult, TaskError>> {
    let mut results: Vec<Option<Result<AskResult, TaskError>>> = opts.iter().map(|_| None).collect();
    let mut together: Vec<(usize, Prepared)> = Vec::new();
    for (i, o) in opts.iter().enumerate() {
        match prepare(corpus, &*engine, o) {
            Ok(p) if p.windows.len() == 1 => together.push((i, p)),
            Ok(_) => results[i] = Some(ask(corpus, engine, o, on_event)),
            Err(e) => results[i] = Some(Err(e)),
        }
    }
    while !together.is_empty() {
        let params = together[0].1.answer_params().clone();
        let (group, rest): (Vec<_>, Vec<_>) = together
            .into_iter()
            .partition(|(_, p)| same_generation(p.answer_params(), &params));
        together = rest;
        let conversations: Vec<Vec<ChatMessage>> = group.iter().map(|(_, p)| p.answer_messages()).collect();
        let of = group.len();
        let mut first_event = true;
        let forked = engine.generate_forked(&conversations, &params, &mut |_, e| {
            if let EngineEvent::Prefill { done, total } = e {
                if std::mem::take(&mut first_event) {
                    on_event(TaskEvent::Step {
                        step: Step::Answer,
                        index: 0,
                        of,
                        prompt_tokens: total,
                    });
                }
                on_event(TaskEvent::Prefill { done, total });
            }
        });
        match forked {
            Ok(generations) => {
                for ((i, p), g) in group.into_iter().zip(generations) {
                    let usage = Usage::of(&g);
                    let timings = Timings::of_answer(&g, g.ttft_ms, g.prefill_ms, p.started);
                    // The same check as a question asked alone, one by one.
                    let window = p.windows[0].render(&p.blocks, &p.salt);
                    let (g, usage, recheck) = match (
                        opts[i].schema.is_none(),
                        recheck_messages(&p.docs, &p.system, &window, &opts[i].question, &g.text),
                    ) {
                        (true, Some((msgs, lines))) => {
                            let mut caller = Caller {
                                engine: &mut *engine,
                                params: &params,
                                on_event: &mut *on_event,
                                usage,
                                prefill_ms: 0,
                            };
                            match caller.call(&msgs, Step::Recheck, 0, 1, false) {
                                Ok(second) => (
                                    second,
                                    caller.usage,
                                    Some(Recheck {
                                        first_answer: g.text,
                                        lines,
                                    }),
                                ),
                                Err(e) => {
                                    results[i] = Some(Err(e));
                                    continue;
                                }
                            }
                        }
                        _ => (g, usage, None),
                    };
                    let mut result = finish(
                        &p.docs,
                        &opts[i],
                        g.text,
                        usage,
                        p.reports,
                        timings,
                        p.engine_name,
                        p.model,
                    );
                    result.recheck = recheck;
                    results[i] = Some(Ok(result));
                }
            }
            // Asked one by one, each failure is its own.
            Err(_) => {
                for (i, _) in group {
                    results[i] = Some(ask(corpus, engine, &opts[i], on_event));
                }
            }
        }
    }
    results
        .into_iter()
        .map(|r| r.expect("every question is answered or failed"))
        .collect()
}
