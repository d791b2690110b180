//! Training data: JSONL in chat form (`{"messages": [...]}`), Alpaca form
//! (`instruction` / `input` / `output`) or plain text (`{"text": ...}`, or a `.txt` file with one
//! example per line), turned into token ids with labels. Chats go through the model's chat
//! template and only assistant tokens are labelled (the turn's end token included, so the model
//! learns to stop); plain text is labelled everywhere.

use std::path::Path;

use kiln_core::{ChatMessage, Role, TextGenerator};
use serde_json::Value;

use super::IGNORE;
use crate::generate::LlamaGenerator;
use crate::{Error, Result};

/// One tokenized training example.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// Token ids.
    pub ids: Vec<u32>,
    /// `labels[i] = ids[i]` where position `i` is learned, [`IGNORE`] elsewhere.
    pub labels: Vec<i64>,
}

/// The form of a data file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DataFormat {
    /// Decided per line from its fields (`messages`, `instruction`, `text`).
    #[default]
    Auto,
    /// `{"messages": [{"role", "content"}, ...]}`.
    Chat,
    /// `{"instruction", "input", "output"}`.
    Alpaca,
    /// `{"text"}` lines, or raw lines of a `.txt` file.
    Text,
}

/// Reads and tokenizes a data file; sequences are cut to `max_len` tokens and examples left with
/// no label token are dropped.
///
/// # Errors
/// I/O errors, malformed lines (named by file and line number), a chat without an assistant
/// turn, or a model without a chat template for chat data.
pub fn load_examples(
    path: &Path,
    format: DataFormat,
    model: &LlamaGenerator,
    max_len: usize,
) -> Result<Vec<Example>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let is_txt = path.extension().is_some_and(|e| e == "txt");
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let at = |message: String| Error::Config {
            path: format!("{}:{}", path.display(), n + 1),
            message,
        };
        let example = if is_txt {
            text_example(model, line)?
        } else {
            let v: Value =
                serde_json::from_str(line).map_err(|e| at(format!("not a JSON object: {e}")))?;
            let kind = match format {
                DataFormat::Auto if v.get("messages").is_some() => DataFormat::Chat,
                DataFormat::Auto if v.get("instruction").is_some() => DataFormat::Alpaca,
                DataFormat::Auto if v.get("text").is_some() => DataFormat::Text,
                DataFormat::Auto => {
                    return Err(at(
                        "expected a `messages`, `instruction` or `text` field".into()
                    ));
                }
                f => f,
            };
            match kind {
                DataFormat::Chat => {
                    let messages: Vec<ChatMessage> =
                        serde_json::from_value(v.get("messages").cloned().unwrap_or(Value::Null))
                            .map_err(|e| at(format!("`messages`: {e}")))?;
                    chat_example(model, &messages).map_err(|e| at(e.to_string()))?
                }
                DataFormat::Alpaca => {
                    let field = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("");
                    let (instruction, input, output) =
                        (field("instruction"), field("input"), field("output"));
                    if instruction.is_empty() || output.is_empty() {
                        return Err(at("`instruction` and `output` must be non-empty".into()));
                    }
                    let user = if input.is_empty() {
                        instruction.to_string()
                    } else {
                        format!("{instruction}\n\n{input}")
                    };
                    let messages = vec![ChatMessage::user(user), ChatMessage::assistant(output)];
                    chat_example(model, &messages).map_err(|e| at(e.to_string()))?
                }
                _ => {
                    let t = v
                        .get("text")
                        .and_then(Value::as_str)
                        .ok_or_else(|| at("`text` must be a string".into()))?;
                    text_example(model, t)?
                }
            }
        };
        let mut e = example;
        e.ids.truncate(max_len);
        e.labels.truncate(max_len);
        if e.ids.len() >= 2 && e.labels[1..].iter().any(|&l| l != IGNORE) {
            out.push(e);
        }
    }
    if out.is_empty() {
        return Err(Error::Config {
            path: path.display().to_string(),
            message: "holds no usable training example".into(),
        });
    }
    Ok(out)
}

fn text_example(model: &LlamaGenerator, text: &str) -> Result<Example> {
    let mut ids = model
        .tokenizer()
        .inner()
        .encode(text, true)
        .map_err(|e| Error::Invalid(format!("tokenizing: {e}")))?
        .get_ids()
        .to_vec();
    if let Some(&eos) = model.special_tokens().eos_token_ids.first() {
        ids.push(eos);
    }
    let labels = ids.iter().map(|&i| i64::from(i)).collect();
    Ok(Example { ids, labels })
}

/// Renders the chat, tokenizes it with offsets, and labels the tokens inside each assistant
/// turn: from the end of the prompt rendered with the generation prompt to the end of the
/// conversation rendered through that turn.
fn chat_example(model: &LlamaGenerator, messages: &[ChatMessage]) -> Result<Example> {
    let render = |m: &[ChatMessage], add_prompt: bool| {
        model
            .apply_chat_template(m, add_prompt)
            .map_err(|e| Error::ChatTemplate(e.to_string()))
    };
    let full = render(messages, false)?;
    let mut spans = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        if m.role != Role::Assistant {
            continue;
        }
        let start = render(&messages[..i], true)?;
        let end = render(&messages[..=i], false)?;
        if !full.starts_with(&start) || !full.starts_with(&end) {
            return Err(Error::ChatTemplate(
                "the chat template does not render conversations prefix by prefix, so assistant \
                 tokens cannot be located"
                    .into(),
            ));
        }
        spans.push(start.len()..end.len());
    }
    if spans.is_empty() {
        return Err(Error::Invalid(
            "the conversation has no assistant turn".into(),
        ));
    }
    let enc = model
        .tokenizer()
        .inner()
        .encode(full.as_str(), false)
        .map_err(|e| Error::Invalid(format!("tokenizing: {e}")))?;
    let ids = enc.get_ids().to_vec();
    let labels = ids
        .iter()
        .zip(enc.get_offsets())
        .map(|(&id, &(s, e))| {
            let inside = spans.iter().any(|r| s >= r.start && s < r.end && e > s);
            if inside { i64::from(id) } else { IGNORE }
        })
        .collect();
    Ok(Example { ids, labels })
}
