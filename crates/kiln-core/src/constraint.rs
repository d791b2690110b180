//! Constrained generation: a logits-processor hook that engines call at every step before sampling,
//! and the [`ResponseFormat`] a request asks for (plain text, any JSON object, a JSON schema, or a
//! custom processor).
//!
//! Engines turn a [`GenerationRequest`](crate::GenerationRequest)'s format into a
//! [`LogitsProcessor`] once per request: `JsonObject` and `JsonSchema` through kiln-prompt's JSON
//! grammar, `Custom` through its [`LogitsProcessorFactory`]. At each step they call
//! [`LogitsProcessor::process`] on the raw logits (tokens it forbids get `-inf`), sample, and stop
//! when the processor [`is_complete`](LogitsProcessor::is_complete).
//!
//! [`ResponseFormat`] serializes as OpenAI's `response_format` (`{"type": "text"}`,
//! `{"type": "json_object"}`, `{"type": "json_schema", "json_schema": {"name", "schema", "strict"}}`).
//!
//! ```
//! use kiln_core::ResponseFormat;
//! let f: ResponseFormat = serde_json::from_str(
//!     r#"{"type": "json_schema", "json_schema": {"name": "person", "schema": {"type": "object"}}}"#,
//! )?;
//! assert!(matches!(f, ResponseFormat::JsonSchema { .. }));
//! # Ok::<(), serde_json::Error>(())
//! ```

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{HfTokenizer, Result, Tokenizer};

/// Edits the logits of each step before sampling; one instance serves one generation.
pub trait LogitsProcessor: Send {
    /// Masks or biases `logits` (`[vocab]`) for the next token, given every token generated so far
    /// (the prompt excluded). Forbidden tokens get `f32::NEG_INFINITY`.
    ///
    /// # Errors
    /// A generated token the processor cannot accept, or no token left to choose.
    fn process(&mut self, generated: &[u32], logits: &mut [f32]) -> Result<()>;

    /// Whether the output is complete with `generated` and nothing may follow: the engine then stops
    /// as on an end-of-sequence token.
    fn is_complete(&mut self, generated: &[u32]) -> bool {
        let _ = generated;
        false
    }
}

/// The bytes of every token of a model's vocabulary and its end-of-sequence ids: what a processor
/// needs to know which tokens spell what. Engines compute it once per model.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenVocabulary {
    /// `bytes[id]` is the UTF-8 (or partial UTF-8) text token `id` adds; empty for special tokens,
    /// which constrained output never uses.
    pub bytes: Vec<Vec<u8>>,
    /// The ids that end generation.
    pub eos_token_ids: Vec<u32>,
}

impl TokenVocabulary {
    /// The vocabulary of a Hugging Face tokenizer: byte-level BPE tokens (`Ġ`) mapped back to their
    /// bytes, SentencePiece tokens with `▁` as a space and `<0xXX>` byte tokens as that byte; added
    /// tokens (special ones) and the end-of-sequence ids are left empty.
    #[must_use]
    pub fn from_hf(tokenizer: &HfTokenizer, eos_token_ids: &[u32]) -> Self {
        let inner = tokenizer.inner();
        let byte_level = inner
            .get_decoder()
            .and_then(|d| serde_json::to_string(d).ok())
            .is_some_and(|d| d.contains("ByteLevel"));
        let unbyte = byte_decoder();
        let added = inner.get_added_tokens_decoder();
        let bytes = (0..tokenizer.vocab_size() as u32)
            .map(|id| {
                if added.contains_key(&id) || eos_token_ids.contains(&id) {
                    return Vec::new();
                }
                let Some(raw) = inner.id_to_token(id) else {
                    return Vec::new();
                };
                if let Some(hex) = raw.strip_prefix("<0x").and_then(|r| r.strip_suffix('>'))
                    && let Ok(b) = u8::from_str_radix(hex, 16)
                {
                    return vec![b];
                }
                if byte_level {
                    if let Some(b) = raw.chars().map(|c| unbyte.get(&c).copied()).collect() {
                        return b;
                    }
                    return raw.into_bytes();
                }
                raw.replace('\u{2581}', " ").into_bytes()
            })
            .collect();
        Self {
            bytes,
            eos_token_ids: eos_token_ids.to_vec(),
        }
    }
}

/// GPT-2's byte-to-character table, reversed: the character byte-level BPE writes for each byte.
fn byte_decoder() -> std::collections::HashMap<char, u8> {
    let mut map = std::collections::HashMap::with_capacity(256);
    let mut n = 0u32;
    for b in 0..=255u8 {
        let printable = matches!(b, 33..=126 | 161..=172 | 174..=255);
        let c = if printable {
            char::from(b)
        } else {
            n += 1;
            char::from_u32(255 + n).unwrap_or('\0')
        };
        map.insert(c, b);
    }
    map
}

/// Makes a [`LogitsProcessor`] for one generation.
pub trait LogitsProcessorFactory: Send + Sync + std::fmt::Debug {
    /// A fresh processor for a model with this vocabulary.
    ///
    /// # Errors
    /// A constraint that cannot be built (for example an unsupported schema).
    fn create(&self, vocab: &Arc<TokenVocabulary>) -> Result<Box<dyn LogitsProcessor>>;
}

/// A shared [`LogitsProcessorFactory`]; equal when it is the same factory.
#[derive(Debug, Clone)]
pub struct ProcessorFactory(pub Arc<dyn LogitsProcessorFactory>);

impl PartialEq for ProcessorFactory {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// The schema part of [`ResponseFormat::JsonSchema`], as OpenAI's API takes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonSchemaFormat {
    /// A name for the schema.
    #[serde(default)]
    pub name: String,
    /// What the output is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The JSON schema the output must validate against.
    pub schema: Value,
    /// OpenAI's strict flag (Kiln's constraint is always strict).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// What form the output must take.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    /// Free text (no constraint).
    #[default]
    Text,
    /// Any JSON object.
    JsonObject,
    /// JSON that validates against a schema.
    JsonSchema {
        /// The schema and its name.
        json_schema: JsonSchemaFormat,
    },
    /// A custom processor (not serializable).
    #[serde(skip)]
    Custom(ProcessorFactory),
}

impl ResponseFormat {
    /// JSON constrained by `schema`.
    #[must_use]
    pub fn json_schema(schema: Value) -> Self {
        ResponseFormat::JsonSchema {
            json_schema: JsonSchemaFormat {
                name: "response".into(),
                description: None,
                schema,
                strict: Some(true),
            },
        }
    }

    /// A custom processor factory.
    #[must_use]
    pub fn custom(factory: Arc<dyn LogitsProcessorFactory>) -> Self {
        ResponseFormat::Custom(ProcessorFactory(factory))
    }

    /// Whether this is plain text.
    #[must_use]
    pub fn is_text(&self) -> bool {
        matches!(self, ResponseFormat::Text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_decoder_covers_every_byte() {
        let m = byte_decoder();
        assert_eq!(m.len(), 256);
        assert_eq!(m[&'\u{120}'], b' ');
        assert_eq!(m[&'\u{10A}'], b'\n');
        assert_eq!(m[&'a'], b'a');
    }

    #[test]
    fn serializes_like_openai() {
        let f = ResponseFormat::json_schema(serde_json::json!({"type": "integer"}));
        let v = serde_json::to_value(&f).expect("serialize");
        assert_eq!(v["type"], "json_schema");
        assert_eq!(v["json_schema"]["schema"]["type"], "integer");
        let back: ResponseFormat = serde_json::from_value(v).expect("deserialize");
        assert_eq!(back, f);
        let obj: ResponseFormat =
            serde_json::from_str(r#"{"type":"json_object"}"#).expect("json_object");
        assert_eq!(obj, ResponseFormat::JsonObject);
    }
}
