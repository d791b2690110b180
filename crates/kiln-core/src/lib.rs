//! # kiln-core
//!
//! The burn-free vocabulary that every Kiln crate speaks. Model crates (kiln-llama, kiln-clip) implement
//! these traits; the prompt and serving crates consume them through `Arc<dyn Trait>` without compiling a
//! tensor library.
//!
//! - [`Tokenizer`]: text to ids and back, with [`HfTokenizer`] over the `tokenizers` crate.
//! - [`TextGenerator`]: object-safe, `Send + Sync` text generation that streams decoded text and can be
//!   cancelled through a [`CancelToken`].
//! - [`BatchGenerator`] / [`DecodeBatch`]: continuous batching, sequences joining and leaving a
//!   running batch between decode steps.
//! - [`Embedder`]: text and image embeddings.
//! - [`LogitsProcessor`] and [`ResponseFormat`]: the constrained-generation hook engines call before
//!   sampling (JSON, JSON schema, custom).
//! - [`Tool`]: a function an agent can call (name, description, JSON schema of its arguments).
//! - [`ChatMessage`] with text and image [`ContentPart`]s, [`SamplingParams`], [`StopConditions`],
//!   [`GenerationOutput`] with its [`FinishReason`], [`Usage`] and [`Timings`].
//!
//! ```
//! use kiln_core::{ChatMessage, GenerationRequest, SamplingParams};
//! let request = GenerationRequest::chat(vec![
//!     ChatMessage::system("You are terse."),
//!     ChatMessage::user("What is the capital of France?"),
//! ])
//! .with_sampling(SamplingParams::greedy())
//! .with_max_tokens(32);
//! assert_eq!(request.max_tokens, 32);
//! ```

mod batch;
mod chat;
mod constraint;
mod embed;
mod error;
pub mod fs;
mod generate;
#[cfg(feature = "plot")]
pub mod plot;
mod tokenizer;
mod tool;
mod utf8;

pub use batch::{BatchGenerator, DecodeBatch, SequenceId};
pub use chat::{ChatMessage, ContentPart, ImageSource, Role};
pub use constraint::{
    JsonSchemaFormat, LogitsProcessor, LogitsProcessorFactory, ProcessorFactory, ResponseFormat,
    TokenVocabulary,
};
pub use embed::{Embedder, Embedding, EmbeddingInput, cosine_similarity};
pub use error::{Error, Result};
pub use generate::{
    AdapterChoice, CancelToken, FinishReason, GenerationOutput, GenerationRequest, Prompt,
    SamplingParams, StopConditions, StreamEvent, TextGenerator, Timings, TokenLogprob, Usage,
    WithAdapters,
};
pub use tokenizer::{HfTokenizer, Tokenizer};
pub use tool::Tool;
pub use utf8::IncrementalDecoder;
