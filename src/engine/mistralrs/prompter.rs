//! The prompt as scout writes it for mistral.rs: a Hugging Face chat
//! template rendered around placeholders (minijinja), the template's pieces
//! tokenized with special tokens parsed and message contents as plain text,
//! and Llama 4's image text; or a GGUF's own vocabulary.
//!
//! Never runs the model.

use std::path::Path;
use std::sync::Arc;

use super::folder::read_optional_json;
use crate::engine::{ChatMessage, EngineError, Tokenizer};

/// A Hugging Face chat template with the tokenizer it goes with.
pub(super) struct HfPrompter {
    /// Splits special tokens out of the text (for the template's pieces).
    pub(super) special: tokenizers::Tokenizer,
    /// Reads special tokens as text (for message contents).
    pub(super) plain: tokenizers::Tokenizer,
    /// The chat template, compiled once (prompts are rendered for every
    /// count and every request).
    pub(super) env: minijinja::Environment<'static>,
    pub(super) bos: String,
    pub(super) eos: String,
    pub(super) trims_content: bool,
    pub(super) tokenizer_id: String,
    pub(super) end_tokens: Vec<u32>,
    /// A Llama 4 with its vision tower: images go in the prompt.
    pub(super) llama4_vision: bool,
}

/// A token written in `tokenizer_config.json`: a string or `{content: ...}`.
pub(super) fn token_text(v: Option<&serde_json::Value>) -> String {
    match v {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(o) => o.get("content").and_then(|c| c.as_str()).unwrap_or_default().to_owned(),
        None => String::new(),
    }
}

/// The chat template of a model folder: `chat_template.jinja`,
/// `chat_template.json`, or `tokenizer_config.json` (a string, or a list whose
/// `default` entry is taken).
pub(super) fn chat_template(dir: &Path, tokenizer_config: &serde_json::Value) -> Result<String, EngineError> {
    if let Ok(t) = std::fs::read_to_string(dir.join("chat_template.jinja")) {
        return Ok(t);
    }
    let from = |v: &serde_json::Value| -> Option<String> {
        match v.get("chat_template")? {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Array(list) => list
                .iter()
                .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))
                .and_then(|t| t.get("template")?.as_str().map(str::to_owned)),
            _ => None,
        }
    };
    if let Some(t) = read_optional_json(&dir.join("chat_template.json"))?
        .as_ref()
        .and_then(from)
    {
        return Ok(t);
    }
    from(tokenizer_config).ok_or_else(|| {
        EngineError::Template(format!(
            "{} has no chat template (tokenizer_config.json's chat_template, chat_template.jinja or chat_template.json)",
            dir.display()
        ))
    })
}

/// A Hugging Face chat template compiled as transformers renders them
/// (Python string methods, blocks trimmed, `raise_exception`).
pub(super) fn template_env(template: String) -> Result<minijinja::Environment<'static>, EngineError> {
    let mut env = minijinja::Environment::new();
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.set_lstrip_blocks(true);
    env.set_trim_blocks(true);
    env.add_function("raise_exception", |msg: String| -> Result<String, minijinja::Error> {
        Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, msg))
    });
    env.add_function("strftime_now", |_fmt: String| -> String { String::new() });
    env.add_template_owned("chat", template)
        .map_err(|e| EngineError::Template(e.to_string()))?;
    Ok(env)
}

impl HfPrompter {
    pub(super) fn load(dir: &Path, generation_eos: &[u32]) -> Result<Self, EngineError> {
        let tokenizer_path = dir.join("tokenizer.json");
        let err = |detail: String| EngineError::Load {
            path: tokenizer_path.display().to_string(),
            detail,
        };
        let special = tokenizers::Tokenizer::from_file(&tokenizer_path).map_err(|e| err(e.to_string()))?;
        let mut plain = special.clone();
        plain.set_encode_special_tokens(true);
        // Optional, but when it is there it must parse: it holds the chat
        // template and the begin and end tokens.
        let config = read_optional_json(&dir.join("tokenizer_config.json"))?.unwrap_or(serde_json::Value::Null);
        let env = template_env(chat_template(dir, &config)?)?;
        let bos = token_text(config.get("bos_token"));
        let eos = token_text(config.get("eos_token"));
        let bytes = std::fs::read(&tokenizer_path).map_err(|e| err(e.to_string()))?;
        let tokenizer_id = blake3::hash(&bytes).to_hex()[..16].to_owned();
        // Every token that ends a turn or the text (finding 5): the
        // tokenizer's end token, generation_config.json's, and the chat
        // formats' own.
        let mut end_tokens: Vec<u32> = generation_eos.to_vec();
        for name in [
            eos.as_str(),
            "<|eot|>",
            "<|eom|>",
            "<|end_of_text|>",
            "<|eot_id|>",
            "<|im_end|>",
            "<end_of_turn>",
            "</s>",
        ] {
            if let Some(id) = special.token_to_id(name).filter(|_| !name.is_empty()) {
                end_tokens.push(id);
            }
        }
        end_tokens.sort_unstable();
        end_tokens.dedup();
        let mut me = Self {
            special,
            plain,
            env,
            bos,
            eos,
            trims_content: false,
            tokenizer_id,
            end_tokens,
            llama4_vision: false,
        };
        let probe = me.render(
            &[ChatMessage::new(crate::engine::Role::User, " \nscout-probe\n ")],
            false,
        )?;
        me.trims_content = !probe.contains(" \nscout-probe\n ");
        Ok(me)
    }

    pub(super) fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String, EngineError> {
        let messages: Vec<serde_json::Value> = messages
            .iter()
            .map(|m| serde_json::json!({"role": m.role.as_str(), "content": m.content}))
            .collect();
        self.env
            .get_template("chat")
            .and_then(|t| {
                t.render(minijinja::context! {
                    messages => messages,
                    add_generation_prompt => add_generation_prompt,
                    bos_token => self.bos,
                    eos_token => self.eos,
                })
            })
            .map_err(|e| EngineError::Template(e.to_string()))
    }

    pub(super) fn chat_tokens(&self, messages: &[ChatMessage]) -> Result<(Vec<u32>, usize), EngineError> {
        let (messages, _) = self.neutralized(messages);
        let messages = &*messages;
        let slotted: Vec<ChatMessage> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| ChatMessage::new(m.role, crate::engine::slot(i)))
            .collect();
        let rendered = self.render(&slotted, true)?;
        let mut tokens = Vec::new();
        let mut failed = None;
        let prefix = crate::engine::tokenize_slotted(
            &rendered,
            messages,
            self.trims_content,
            &mut tokens,
            &mut |text, special, out| {
                let tok = if special { &self.special } else { &self.plain };
                match tok.encode_fast(text, false) {
                    Ok(e) => out.extend_from_slice(e.get_ids()),
                    Err(e) => failed = Some(e.to_string()),
                }
            },
            &mut |image, out| {
                if !self.llama4_vision {
                    return Err(crate::engine::no_vision(image));
                }
                let text = crate::model::vision::llama4_image_text(image.width, image.height);
                let e = self
                    .special
                    .encode_fast(text, false)
                    .map_err(|e| EngineError::Inference(format!("tokenizing an image's tokens: {e}")))?;
                out.extend_from_slice(e.get_ids());
                Ok(())
            },
        )?;
        match failed {
            Some(e) => Err(EngineError::Inference(format!("tokenizing the prompt: {e}"))),
            None => Ok((tokens, prefix)),
        }
    }

    pub(super) fn count(&self, text: &str) -> u32 {
        self.plain
            .encode_fast(text, false)
            .map_or(0, |e| e.get_ids().len() as u32)
    }
}

impl Tokenizer for HfPrompter {
    fn tokenizer_id(&self) -> &str {
        &self.tokenizer_id
    }
    fn count_tokens(&self, text: &str) -> u32 {
        self.count(text)
    }
    fn image_tokens(&self, width: u32, height: u32) -> Option<u32> {
        self.llama4_vision
            .then(|| crate::model::vision::llama4_tiling(width, height).tokens)
    }
}

impl HfPrompter {
    /// mistral.rs's Llama 4 processor renders the chat template around
    /// messages with images and tokenizes the result with special tokens
    /// parsed. So that document text cannot turn into special tokens there,
    /// a word joiner (U+2060) goes after the first character of any special
    /// token's text in such messages (scout counts the messages as they are
    /// sent). Returns the messages and how many tokens were broken up;
    /// messages without images come back as they are.
    pub(super) fn neutralized<'m>(&self, messages: &'m [ChatMessage]) -> (std::borrow::Cow<'m, [ChatMessage]>, usize) {
        if !self.llama4_vision || messages.iter().all(|m| m.images.is_empty()) {
            return (std::borrow::Cow::Borrowed(messages), 0);
        }
        let specials: Vec<String> = self
            .special
            .get_added_tokens_decoder()
            .into_values()
            .filter(|t| t.special && t.content.len() > 1)
            .map(|t| t.content)
            .collect();
        let mut broken = 0;
        let out = messages
            .iter()
            .map(|m| {
                let mut content = crate::prompt::Content::default();
                for part in m.parts(false) {
                    match part {
                        crate::engine::Part::Text(text) => {
                            let mut text = text.to_owned();
                            for s in &specials {
                                let n = text.matches(s.as_str()).count();
                                if n > 0 {
                                    broken += n;
                                    let split = s.chars().next().map_or(1, char::len_utf8);
                                    text = text.replace(s.as_str(), &format!("{}\u{2060}{}", &s[..split], &s[split..]));
                                }
                            }
                            content.push_str(&text);
                        }
                        crate::engine::Part::Image(image) => content.push_image(Arc::new(image.clone())),
                    }
                }
                content.into_message(m.role)
            })
            .collect();
        (std::borrow::Cow::Owned(out), broken)
    }

    /// Messages as mistral.rs's Llama 4 processor takes them with images:
    /// (role, text with `<|image|>` where each image stands); it writes
    /// each `<|image|>` out as the image's tiles.
    pub(super) fn llama4_vision_messages(&self, messages: &[ChatMessage]) -> Vec<(String, String)> {
        messages
            .iter()
            .map(|m| {
                let mut content = String::new();
                for part in m.parts(self.trims_content) {
                    match part {
                        crate::engine::Part::Text(text) => content.push_str(text),
                        crate::engine::Part::Image(_) => content.push_str("<|image|>"),
                    }
                }
                (m.role.as_str().to_owned(), content)
            })
            .collect()
    }
}

/// The tokenizer of a Hugging Face model folder (tokenizer.json), for
/// counting without loading the weights.
pub fn folder_tokenizer(dir: &Path) -> Result<Box<dyn Tokenizer + Send + Sync>, EngineError> {
    Ok(Box::new(HfPrompter::load(dir, &[])?))
}

/// How the engine turns messages into tokens.
pub(super) enum Prompter {
    Folder(Box<HfPrompter>),
    #[cfg(feature = "llamacpp")]
    Gguf(Box<crate::engine::llamacpp::LlamaCppTokenizer>),
}

impl Prompter {
    pub(super) fn chat_tokens(&self, messages: &[ChatMessage]) -> Result<(Vec<u32>, usize), EngineError> {
        match self {
            Prompter::Folder(p) => p.chat_tokens(messages),
            #[cfg(feature = "llamacpp")]
            Prompter::Gguf(t) => t.chat_tokens(messages),
        }
    }
}
