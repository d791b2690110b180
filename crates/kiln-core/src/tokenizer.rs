//! The [`Tokenizer`] trait and its implementation over the `tokenizers` crate.

use std::path::Path;

use crate::{Error, Result};

/// Text to token ids and back.
pub trait Tokenizer: Send + Sync {
    /// Encodes `text`; `add_special_tokens` adds what the tokenizer's post-processor adds (BOS, ...).
    ///
    /// # Errors
    /// When the underlying tokenizer fails.
    fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>>;

    /// Decodes ids to text.
    ///
    /// # Errors
    /// When an id is out of range or the decoder fails.
    fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String>;

    /// The number of ids, added tokens included.
    fn vocab_size(&self) -> usize;

    /// The id of a token string, if it is in the vocabulary.
    fn token_to_id(&self, token: &str) -> Option<u32>;

    /// The string of a token id, if the id exists.
    fn id_to_token(&self, id: u32) -> Option<String>;
}

/// A [`Tokenizer`] over a Hugging Face `tokenizers::Tokenizer` (a `tokenizer.json`, or one built in
/// memory, for example from GGUF metadata).
#[derive(Clone)]
pub struct HfTokenizer {
    inner: tokenizers::Tokenizer,
    /// `get_vocab_size(true)` builds the whole vocabulary map: computed once.
    vocab_size: usize,
}

impl std::fmt::Debug for HfTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HfTokenizer")
            .field("vocab_size", &self.vocab_size())
            .finish()
    }
}

impl HfTokenizer {
    /// Wraps a tokenizer.
    #[must_use]
    pub fn new(inner: tokenizers::Tokenizer) -> Self {
        let vocab_size = inner.get_vocab_size(true);
        Self { inner, vocab_size }
    }

    /// Loads a `tokenizer.json`.
    ///
    /// # Errors
    /// [`Error::TokenizerLoad`] naming the file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let inner = tokenizers::Tokenizer::from_file(path).map_err(|e| Error::TokenizerLoad {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Ok(Self::new(inner))
    }

    /// The wrapped tokenizer.
    #[must_use]
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
}

impl Tokenizer for HfTokenizer {
    fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, add_special_tokens)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        let size = self.vocab_size();
        if let Some(bad) = ids.iter().find(|&&id| id as usize >= size) {
            return Err(Error::Tokenizer(format!(
                "token id {bad} is out of range for a vocabulary of {size}"
            )));
        }
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| Error::Tokenizer(e.to_string()))
    }

    fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }
}
