//! The recheck: when an answer cites none of the corpus's lines that
//! match the question, the question is asked again over those lines, in
//! the window that shows them (the same prefix as the first read: its KV
//! is reused).

use super::{answer_citations, RECHECK_TEMPLATE};
use crate::anchor::Anchor;
use crate::corpus::StoredDocument;
use crate::prompt::{ChatMessage, Content, DocumentBlock, Window};
use crate::tasks::citations::{cites_any, question_lines, CorpusIndex};
use crate::tasks::run::messages;

/// A small model may answer beside the point (copy the citation syntax,
/// cite some other file, make notes that miss the value) though the
/// corpus plainly holds the answer. The lines that match the question,
/// when `answer` cites none of them.
pub(super) fn uncited_lines(docs: &[StoredDocument], question: &str, answer: &str) -> Option<Vec<(Anchor, String)>> {
    let index = CorpusIndex::new(docs);
    let lines = question_lines(question, &index);
    let anchors: Vec<_> = lines.iter().map(|(a, _)| a.clone()).collect();
    (!lines.is_empty() && !cites_any(&answer_citations(answer, question, &index), &anchors)).then_some(lines)
}

/// The task that asks `question` again over `lines`.
pub(super) fn recheck_task(lines: &[(Anchor, String)], question: &str) -> String {
    let listed: String = lines.iter().map(|(a, text)| format!("[{a}] {text}\n")).collect();
    RECHECK_TEMPLATE
        .replace("{lines}", listed.trim_end())
        .replace("{question}", question.trim())
}

/// The window that shows `anchor`'s place (the first, for a place shown
/// in several).
pub(super) fn window_holding(windows: &[Window], blocks: &[DocumentBlock], anchor: &Anchor) -> Option<usize> {
    windows.iter().position(|w| {
        w.parts.iter().any(|part| {
            let block = &blocks[part.block];
            block.path == anchor.path()
                && block.pieces[part.pieces.clone()]
                    .iter()
                    .any(|(piece, _)| shows(piece, anchor))
        })
    })
}

/// Whether a piece anchored at `piece` shows the start of `anchor`.
fn shows(piece: &Anchor, anchor: &Anchor) -> bool {
    match (piece, anchor) {
        (Anchor::Lines { start, end, .. }, Anchor::Lines { start: line, .. }) => (start..=end).contains(&line),
        (Anchor::Document { .. }, _) => true,
        _ => piece.page().is_some() && piece.page() == anchor.page(),
    }
}

/// The recheck of an answer over a corpus read in one window: its
/// messages and the lines' anchors, or `None` when the answer cites them.
pub(super) fn recheck_messages(
    docs: &[StoredDocument],
    system: &str,
    window: &Content,
    question: &str,
    answer: &str,
) -> Option<(Vec<ChatMessage>, Vec<String>)> {
    let lines = uncited_lines(docs, question, answer)?;
    Some((
        messages(system, window, &recheck_task(&lines, question)),
        lines.iter().map(|(a, _)| a.to_string()).collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::{DocumentKind, Segment};
    use crate::prompt::{render_document, WindowPart};

    fn lines(path: &str, start: u32, end: u32) -> Anchor {
        Anchor::Lines {
            path: path.to_owned(),
            start,
            end,
        }
    }

    #[test]
    fn the_window_holding_a_line_is_the_one_showing_its_piece() {
        // a.md in two pieces (lines 1-10, 11-20) split over windows 0 and
        // 1; b.md whole in window 1.
        let a = StoredDocument::with_segments(
            "a.md",
            DocumentKind::Text,
            vec![
                Segment {
                    anchor: lines("a.md", 1, 10),
                    text: "x\n".repeat(10),
                },
                Segment {
                    anchor: lines("a.md", 11, 20),
                    text: "y\n".repeat(10),
                },
            ],
        );
        let b = StoredDocument::code("b.md", "z\n");
        let blocks: Vec<DocumentBlock> = [a, b].iter().map(|d| render_document(d, "s")).collect();
        assert_eq!(blocks[0].pieces.len(), 2, "one piece per segment");
        let part = |block, pieces| WindowPart {
            block,
            pieces,
            part: None,
            tokens: 0,
        };
        let windows = vec![
            Window {
                parts: vec![part(0, 0..1)],
                tokens: 0,
            },
            Window {
                parts: vec![part(0, 1..2), part(1, 0..1)],
                tokens: 0,
            },
        ];
        assert_eq!(window_holding(&windows, &blocks, &lines("a.md", 4, 4)), Some(0));
        assert_eq!(window_holding(&windows, &blocks, &lines("a.md", 15, 15)), Some(1));
        assert_eq!(window_holding(&windows, &blocks, &lines("b.md", 1, 1)), Some(1));
        assert_eq!(window_holding(&windows, &blocks, &lines("c.md", 1, 1)), None);
        assert_eq!(window_holding(&windows, &blocks, &lines("a.md", 30, 30)), None);
    }
}
