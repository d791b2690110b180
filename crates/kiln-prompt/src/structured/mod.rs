//! Structured output: JSON (any object, or one that validates against a JSON schema) by masking
//! logits at each step.
//!
//! [`JsonConstraint`] compiles a schema into a byte-level JSON automaton. Its
//! [`LogitsProcessor`] walks the tokenizer's vocabulary (sorted once per vocabulary, so tokens that
//! share a prefix share the work, and a rejected byte prunes every token that starts with it) from
//! the current state, sets every token that cannot continue a valid output to `-inf`, caches the
//! mask per state, and once the value is whole allows only end-of-sequence. Engines honour it
//! through [`kiln_core::ResponseFormat`] ([`factory_for`] maps a format to a processor factory).
//!
//! Supported: `type` (one or a list), `properties`, `required`, `additionalProperties: false`
//! (the default for objects with properties: only declared keys are written, in any order), objects
//! without properties (any keys), `items`, `minItems`, `maxItems`, `minLength`, `maxLength`, `enum`,
//! `const`, `anyOf`, `oneOf`, `$ref` to `#/$defs/...` (recursion included), `true`/`{}` (any value),
//! and annotations (`title`, `description`, `default`, `examples`, ...). Any other keyword
//! (`pattern`, `format`, `minimum`, ...) is refused with [`Error::Schema`](crate::Error::Schema),
//! so an output never fails validation silently. Whitespace between tokens is limited to 24 bytes
//! in a row and numbers to 15 digits, which keeps a small model from looping.
//!
//! ```
//! use kiln_prompt::structured::JsonConstraint;
//! use serde_json::json;
//!
//! let c = JsonConstraint::from_schema(&json!({
//!     "type": "object",
//!     "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
//!     "required": ["name", "age"]
//! }))?;
//! assert!(c.accepts(r#"{"name": "Ada", "age": 36}"#));
//! assert!(!c.accepts(r#"{"name": "Ada"}"#));
//! assert!(JsonConstraint::from_schema(&json!({"type": "string", "pattern": "a+"})).is_err());
//! # Ok::<(), kiln_prompt::Error>(())
//! ```

mod machine;
mod schema;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use kiln_core::{LogitsProcessor, LogitsProcessorFactory, ResponseFormat, TokenVocabulary};
use serde_json::Value;

use crate::Result;
use machine::State;
use schema::Grammar;

/// States whose masks a processor keeps (each is one bit per token).
const MASK_CACHE: usize = 4096;

/// A JSON constraint: any JSON object, or the values of a JSON schema.
#[derive(Debug, Clone)]
pub struct JsonConstraint {
    grammar: Arc<Grammar>,
}

impl JsonConstraint {
    /// Values that validate against `schema` (see the module documentation for the keywords).
    ///
    /// # Errors
    /// [`crate::Error::Schema`] naming the unsupported keyword and where it is.
    pub fn from_schema(schema: &Value) -> Result<Self> {
        Ok(Self {
            grammar: Arc::new(Grammar::from_schema(schema)?),
        })
    }

    /// Any JSON object (OpenAI's `json_object` mode).
    #[must_use]
    pub fn any_object() -> Self {
        Self {
            grammar: Arc::new(Grammar::any_object()),
        }
    }

    /// Whether `text` is a whole value this constraint produces (the automaton's own check: no
    /// whitespace around the value, at most 24 whitespace bytes in a row inside).
    #[must_use]
    pub fn accepts(&self, text: &str) -> bool {
        State::start(&self.grammar)
            .step_all(&self.grammar, text.as_bytes())
            .is_some_and(|s| s.can_finish(&self.grammar))
    }

    /// Whether `text` can be continued into a value this constraint produces.
    #[must_use]
    pub fn accepts_prefix(&self, text: &str) -> bool {
        State::start(&self.grammar)
            .step_all(&self.grammar, text.as_bytes())
            .is_some()
    }

    /// A processor for one generation with this vocabulary.
    #[must_use]
    pub fn processor(&self, vocab: &Arc<TokenVocabulary>) -> JsonProcessor {
        JsonProcessor {
            grammar: self.grammar.clone(),
            index: VocabIndex::shared(vocab),
            state: State::start(&self.grammar),
            consumed: 0,
            cache: HashMap::new(),
        }
    }
}

impl LogitsProcessorFactory for JsonConstraint {
    fn create(&self, vocab: &Arc<TokenVocabulary>) -> kiln_core::Result<Box<dyn LogitsProcessor>> {
        Ok(Box::new(self.processor(vocab)))
    }
}

/// The processor factory for a response format: `None` for plain text, the JSON constraint for
/// `json_object` and `json_schema`, the custom factory as it is.
///
/// # Errors
/// [`kiln_core::Error::InvalidParameter`] (`response_format`) for a schema the constraint cannot
/// enforce.
pub fn factory_for(
    format: &ResponseFormat,
) -> kiln_core::Result<Option<Arc<dyn LogitsProcessorFactory>>> {
    Ok(match format {
        ResponseFormat::Text => None,
        ResponseFormat::JsonObject => Some(Arc::new(JsonConstraint::any_object())),
        ResponseFormat::JsonSchema { json_schema } => Some(Arc::new(
            JsonConstraint::from_schema(&json_schema.schema).map_err(|e| {
                kiln_core::Error::InvalidParameter {
                    name: "response_format",
                    message: e.to_string(),
                }
            })?,
        )),
        ResponseFormat::Custom(f) => Some(f.0.clone()),
    })
}

/// Token ids sorted by their bytes: a trie in a flat list.
#[derive(Debug)]
struct VocabIndex {
    vocab: Arc<TokenVocabulary>,
    sorted: Vec<u32>,
}

impl VocabIndex {
    /// The index of a vocabulary, built once while the vocabulary lives.
    fn shared(vocab: &Arc<TokenVocabulary>) -> Arc<VocabIndex> {
        static LAST: Mutex<Option<(Weak<TokenVocabulary>, Arc<VocabIndex>)>> = Mutex::new(None);
        let mut last = LAST
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((weak, index)) = last.as_ref()
            && weak.upgrade().is_some_and(|v| Arc::ptr_eq(&v, vocab))
        {
            return index.clone();
        }
        let mut sorted: Vec<u32> = (0..vocab.bytes.len() as u32)
            .filter(|&id| !vocab.bytes[id as usize].is_empty())
            .collect();
        sorted.sort_by(|&a, &b| vocab.bytes[a as usize].cmp(&vocab.bytes[b as usize]));
        let index = Arc::new(VocabIndex {
            vocab: vocab.clone(),
            sorted,
        });
        *last = Some((Arc::downgrade(vocab), index.clone()));
        index
    }

    fn bytes(&self, id: u32) -> &[u8] {
        &self.vocab.bytes[id as usize]
    }

    /// Marks in `allowed` every token of `sorted[lo..hi]` (which share `depth` bytes, already read
    /// into `state`) that keeps the output valid.
    fn collect(
        &self,
        g: &Grammar,
        state: &State,
        lo: usize,
        hi: usize,
        depth: usize,
        allowed: &mut [u64],
    ) {
        let mut i = lo;
        while i < hi && self.bytes(self.sorted[i]).len() == depth {
            let id = self.sorted[i] as usize;
            allowed[id / 64] |= 1 << (id % 64);
            i += 1;
        }
        while i < hi {
            let b = self.bytes(self.sorted[i])[depth];
            let end = i + self.sorted[i..hi].partition_point(|&id| self.bytes(id)[depth] <= b);
            if let Some(next) = state.step(g, b) {
                self.collect(g, &next, i, end, depth + 1, allowed);
            }
            i = end;
        }
    }
}

/// The [`LogitsProcessor`] of a [`JsonConstraint`].
pub struct JsonProcessor {
    grammar: Arc<Grammar>,
    index: Arc<VocabIndex>,
    state: State,
    consumed: usize,
    cache: HashMap<State, Arc<Vec<u64>>>,
}

impl std::fmt::Debug for JsonProcessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonProcessor")
            .field("consumed", &self.consumed)
            .field("cached_masks", &self.cache.len())
            .finish_non_exhaustive()
    }
}

impl JsonProcessor {
    /// Reads the tokens generated since the last call.
    fn advance(&mut self, generated: &[u32]) -> kiln_core::Result<()> {
        for &id in generated.get(self.consumed..).unwrap_or_default() {
            let bytes = self
                .index
                .vocab
                .bytes
                .get(id as usize)
                .map_or(&[][..], Vec::as_slice);
            self.state = self
                .state
                .step_all(&self.grammar, bytes)
                .filter(|_| !bytes.is_empty())
                .ok_or_else(|| {
                    kiln_core::Error::Model(format!(
                        "token {id} ({:?}) breaks the JSON constraint",
                        String::from_utf8_lossy(bytes)
                    ))
                })?;
        }
        self.consumed = generated.len();
        Ok(())
    }

    /// The allowed tokens of the current state, one bit per token id.
    fn mask(&mut self) -> Arc<Vec<u64>> {
        if let Some(m) = self.cache.get(&self.state) {
            return m.clone();
        }
        let n = self.index.vocab.bytes.len();
        let mut allowed = vec![0u64; n.div_ceil(64)];
        let idx = &self.index;
        idx.collect(
            &self.grammar,
            &self.state,
            0,
            idx.sorted.len(),
            0,
            &mut allowed,
        );
        if self.state.can_finish(&self.grammar) {
            for &id in &idx.vocab.eos_token_ids {
                if let Some(w) = allowed.get_mut(id as usize / 64) {
                    *w |= 1 << (id % 64);
                }
            }
        }
        let m = Arc::new(allowed);
        if self.cache.len() >= MASK_CACHE {
            self.cache.clear();
        }
        self.cache.insert(self.state.clone(), m.clone());
        m
    }
}

impl LogitsProcessor for JsonProcessor {
    fn process(&mut self, generated: &[u32], logits: &mut [f32]) -> kiln_core::Result<()> {
        self.advance(generated)?;
        let mask = self.mask();
        let mut any = false;
        for (id, l) in logits.iter_mut().enumerate() {
            let ok = mask.get(id / 64).is_some_and(|w| w & (1 << (id % 64)) != 0);
            if ok && !l.is_nan() {
                any = true;
            } else {
                *l = f32::NEG_INFINITY;
            }
        }
        if any {
            Ok(())
        } else {
            Err(kiln_core::Error::Model(
                "no token of the vocabulary can continue the JSON output".into(),
            ))
        }
    }

    fn is_complete(&mut self, generated: &[u32]) -> bool {
        self.advance(generated).is_ok() && self.state.is_done()
    }
}
