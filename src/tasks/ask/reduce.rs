//! The reduce step: the windows' notes combined into one answer, in
//! rounds of groups that fit a prompt while all of them do not.

use super::{is_nothing, NOT_FOUND};
use crate::engine::Engine;
use crate::prompt::{data_block, ChatMessage, Content};
use crate::tasks::run::{messages, Caller, Step, TaskError};

/// Map notes laid out as data blocks, like documents (they quote the
/// corpus, so they get the same boundary protection).
pub(super) fn notes_body(notes: &[String], salt: &str) -> String {
    // One data block holding a numbered list: the notes quote the corpus,
    // so they stay inside a salted boundary, but as one block; given one
    // block per note, the default model echoed the block format instead of
    // answering.
    let list: String = notes
        .iter()
        .enumerate()
        .map(|(i, note)| format!("{}. {}\n", i + 1, note.trim()))
        .collect();
    data_block("notes from every part of the corpus", &list, salt)
}

/// While all notes together do not fit one prompt, combine them in groups
/// that do (each group's answer becomes a note of the next round).
pub(super) fn reduce_until_fits(
    caller: &mut Caller<'_, '_, '_>,
    system: &str,
    salt: &str,
    mut notes: Vec<String>,
    task: &str,
) -> Result<Vec<String>, TaskError> {
    let context = caller.engine.capabilities().context_length;
    let answer = caller.params.max_tokens;
    let fits = |engine: &dyn Engine, group: &[String]| -> Result<bool, TaskError> {
        Ok(
            engine.count_chat_tokens(&messages(system, &Content::text(notes_body(group, salt)), task))? + answer
                <= context,
        )
    };
    while !fits(&*caller.engine, &notes)? {
        let mut groups: Vec<Vec<String>> = Vec::new();
        let mut current: Vec<String> = Vec::new();
        for note in notes.drain(..) {
            current.push(note);
            if current.len() > 1 && !fits(&*caller.engine, &current)? {
                let last = current.pop().expect("pushed above");
                groups.push(std::mem::take(&mut current));
                current.push(last);
            }
        }
        groups.push(current);
        if groups.iter().any(|g| g.len() == 1) && groups.len() == 1 {
            let tokens = caller.engine.count_chat_tokens(&messages(
                system,
                &Content::text(notes_body(&groups[0], salt)),
                task,
            ))?;
            return Err(TaskError::NotesTooLarge { notes: 1, tokens });
        }
        // The groups of a round are independent: they go out together.
        let msgs: Vec<Vec<ChatMessage>> = groups
            .iter()
            .map(|group| messages(system, &Content::text(notes_body(group, salt)), task))
            .collect();
        for g in caller.call_each(&msgs, Step::Reduce) {
            let text = g?.text.trim().to_owned();
            if !is_nothing(&text) {
                notes.push(text);
            }
        }
        if notes.is_empty() {
            notes.push(NOT_FOUND.to_owned());
        }
    }
    Ok(notes)
}
