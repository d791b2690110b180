//! Continuous batching: a step-level interface where sequences join and leave a running batch
//! between decode steps.
//!
//! A serving engine holds one [`DecodeBatch`] per model on a scheduler thread. Between two calls to
//! [`DecodeBatch::step`] it adds waiting requests with [`DecodeBatch::join`] (the implementation runs
//! their prefill, now or at the next step) and removes cancelled ones with [`DecodeBatch::leave`]
//! (their KV cache is freed). Each step decodes one token for every running sequence in one forward
//! pass and reports, per sequence, the streamed [`StreamEvent`]s and, for the sequences that ended,
//! their [`GenerationOutput`]; ended sequences leave the batch by themselves.
//!
//! Models that cannot batch implement only [`TextGenerator`](crate::TextGenerator); servers then run
//! one sequence per worker.
//!
//! ```
//! use kiln_core::{BatchGenerator, DecodeBatch, GenerationRequest, SequenceId};
//!
//! // A scheduler's loop, written against the traits only.
//! fn drain(model: &dyn BatchGenerator, requests: &[GenerationRequest]) -> kiln_core::Result<usize> {
//!     let mut batch = model.start_batch(4)?;
//!     for r in requests {
//!         batch.join(r)?;
//!     }
//!     let mut finished = 0;
//!     while !batch.is_empty() {
//!         finished += batch.step(&mut |_id: SequenceId, _event| {})?.len();
//!     }
//!     Ok(finished)
//! }
//! ```

use crate::{GenerationOutput, GenerationRequest, Result, StreamEvent};

/// The handle of a sequence inside one [`DecodeBatch`], unique for the batch's lifetime.
pub type SequenceId = u64;

/// A model that can run several sequences in one forward pass.
///
/// Object-safe: servers hold an `Arc<dyn BatchGenerator>` next to the model's
/// `Arc<dyn TextGenerator>`.
pub trait BatchGenerator: Send + Sync {
    /// Starts an empty batch that runs at most `max_sequences` sequences at once. The batch may
    /// borrow the model; it is driven from one thread.
    ///
    /// # Errors
    /// When the model cannot allocate the batch (for example its KV caches).
    fn start_batch(&self, max_sequences: usize) -> Result<Box<dyn DecodeBatch + '_>>;
}

/// A running batch of sequences, advanced one token per sequence per [`step`](Self::step).
pub trait DecodeBatch: Send {
    /// Adds a sequence. Validation errors (parameters, context length, unknown adapter) are returned
    /// here, before the sequence takes a slot.
    ///
    /// Every sequence keeps its own request: sampling, stop conditions, `max_tokens`,
    /// log-probabilities, its [`ResponseFormat`](crate::ResponseFormat)'s logits processor and its
    /// `adapters`. One batch may mix sequences on different adapters and on the base model.
    ///
    /// # Errors
    /// As [`TextGenerator::generate_stream`](crate::TextGenerator::generate_stream) would for the
    /// request, or [`Error::Unsupported`](crate::Error::Unsupported) when the batch is full.
    fn join(&mut self, request: &GenerationRequest) -> Result<SequenceId>;

    /// Removes a sequence before it ended (its client went away) and frees its cache; returns its
    /// output so far with [`FinishReason::Cancelled`](crate::FinishReason::Cancelled), or `None`
    /// for an unknown id.
    fn leave(&mut self, id: SequenceId) -> Option<GenerationOutput>;

    /// Decodes one token for every running sequence, calling `on_event` with each sequence's
    /// events, and returns the sequences that ended at this step (they have left the batch), each
    /// with its output or its own error.
    ///
    /// # Errors
    /// A failure of the whole batch (the model's forward pass); every sequence is then lost.
    fn step(
        &mut self,
        on_event: &mut dyn FnMut(SequenceId, StreamEvent<'_>),
    ) -> Result<Vec<(SequenceId, Result<GenerationOutput>)>>;

    /// The number of running sequences.
    fn len(&self) -> usize;

    /// Whether no sequence is running.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
