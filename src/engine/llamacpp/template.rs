//! The model's chat template: found in the GGUF (`ChatML` without one),
//! applied to placeholders, and the rendered text tokenized with the
//! template's own pieces parsed for special tokens and message contents as
//! plain text, so a document that spells `<|im_start|>` stays text. Images
//! become stand-in spans as long as the projector makes them.
//!
//! Never samples or decodes.

use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};

use super::mtmd::{span_tokens, ImageSpan, Prompt, Vision};
use super::{ChatMessage, EngineError};

/// The GGUF's chat template; `ChatML` for a GGUF without one (what most small
/// instruction models were tuned on).
pub(super) fn template_of(model: &LlamaModel) -> Result<LlamaChatTemplate, EngineError> {
    model
        .chat_template(None)
        .or_else(|_| LlamaChatTemplate::new("chatml"))
        .map_err(|e| EngineError::Template(e.to_string()))
}

/// Whether `template` trims message content (scout renders the template
/// around placeholders, so it must do the trimming itself): a probe with
/// surrounding whitespace shows it.
pub(super) fn trims_content(model: &LlamaModel, template: &LlamaChatTemplate) -> Result<bool, EngineError> {
    let probe = LlamaChatMessage::new("user".to_owned(), " \nscout-probe\n ".to_owned())
        .map_err(|e| EngineError::Template(e.to_string()))?;
    let rendered = model
        .apply_chat_template(template, &[probe], false)
        .map_err(|e| EngineError::Template(e.to_string()))?;
    Ok(!rendered.contains(" \nscout-probe\n "))
}

/// `messages` in `model`'s chat `template`, as tokens: the template's own
/// text with special tokens parsed, message contents as plain text, each
/// image a stand-in span as long as `vision`'s projector makes it (an
/// error without one).
pub(super) fn chat_tokens(
    model: &LlamaModel,
    template: &LlamaChatTemplate,
    trims_content: bool,
    vision: Option<&Vision>,
    messages: &[ChatMessage],
) -> Result<Prompt, EngineError> {
    let slotted: Vec<LlamaChatMessage> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| LlamaChatMessage::new(m.role.as_str().to_owned(), crate::engine::slot(i)))
        .collect::<Result<_, _>>()
        .map_err(|e| EngineError::Template(e.to_string()))?;
    let rendered = model
        .apply_chat_template(template, &slotted, true)
        .map_err(|e| EngineError::Template(e.to_string()))?;
    let vocab = model.vocab();
    let mut tokens = Vec::new();
    if vocab.should_add_bos() {
        tokens.push(vocab.bos());
    }
    let mut images = Vec::new();
    let prefix = crate::engine::tokenize_slotted(
        &rendered,
        messages,
        trims_content,
        &mut tokens,
        &mut |text, special, out| {
            vocab.tokenize_into(text.as_bytes(), out, false, special);
        },
        &mut |image, out| {
            let vision = vision.ok_or_else(|| crate::engine::no_vision(image))?;
            let len = vision.tokens(image.width, image.height)? as usize;
            let start = out.len();
            span_tokens(image, len, out);
            // The message's own shared copy (no copy of the bytes).
            let shared = messages
                .iter()
                .flat_map(|m| &m.images)
                .find(|(_, a)| std::ptr::eq(std::ptr::from_ref(&**a), image))
                .map_or_else(|| std::sync::Arc::new(image.clone()), |(_, a)| a.clone());
            images.push(ImageSpan {
                start,
                len,
                image: shared,
            });
            Ok(())
        },
    )?;
    Ok(Prompt { tokens, prefix, images })
}
