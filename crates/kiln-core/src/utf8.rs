//! Streaming detokenization that never splits a UTF-8 character.

use crate::{Result, Tokenizer};

/// Turns a growing id sequence into text deltas.
///
/// Tokens of byte-level vocabularies may hold part of a multi-byte character; decoding them alone gives
/// U+FFFD. The decoder keeps a short window of ids and only releases text once it no longer ends in an
/// incomplete character, the approach of Hugging Face TGI. Decoding the window rather than single tokens
/// also keeps SentencePiece's leading-space handling right.
#[derive(Debug, Clone, Default)]
pub struct IncrementalDecoder {
    ids: Vec<u32>,
    prefix_offset: usize,
    read_offset: usize,
}

impl IncrementalDecoder {
    /// A decoder with no ids yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A decoder whose window starts after `context` (for example the prompt's last ids), so that
    /// the first generated token is decoded in context.
    #[must_use]
    pub fn with_context(context: &[u32]) -> Self {
        Self {
            ids: context.to_vec(),
            prefix_offset: 0,
            read_offset: context.len(),
        }
    }

    /// Adds one id and returns the text it completes (possibly empty).
    ///
    /// # Errors
    /// When the tokenizer cannot decode.
    pub fn push(&mut self, tokenizer: &dyn Tokenizer, id: u32) -> Result<String> {
        self.ids.push(id);
        let prefix = tokenizer.decode(&self.ids[self.prefix_offset..self.read_offset], false)?;
        let full = tokenizer.decode(&self.ids[self.prefix_offset..], false)?;
        if full.len() > prefix.len()
            && !full.ends_with('\u{FFFD}')
            && full.is_char_boundary(prefix.len())
        {
            let delta = full[prefix.len()..].to_string();
            self.prefix_offset = self.read_offset;
            self.read_offset = self.ids.len();
            Ok(delta)
        } else {
            Ok(String::new())
        }
    }

    /// Returns whatever text is still held back (an incomplete character at the end of the stream is
    /// released as U+FFFD).
    ///
    /// # Errors
    /// When the tokenizer cannot decode.
    pub fn flush(&mut self, tokenizer: &dyn Tokenizer) -> Result<String> {
        let prefix = tokenizer.decode(&self.ids[self.prefix_offset..self.read_offset], false)?;
        let full = tokenizer.decode(&self.ids[self.prefix_offset..], false)?;
        self.prefix_offset = self.ids.len();
        self.read_offset = self.ids.len();
        Ok(full.get(prefix.len()..).unwrap_or_default().to_string())
    }
}
