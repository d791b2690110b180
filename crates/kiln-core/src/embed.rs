//! Embeddings of text and images.

use crate::{ImageSource, Result};

/// What to embed.
#[derive(Debug, Clone, PartialEq)]
pub enum EmbeddingInput {
    /// A text.
    Text(String),
    /// An image.
    Image(ImageSource),
}

/// A dense embedding vector.
pub type Embedding = Vec<f32>;

/// A model that maps texts and/or images into one vector space.
pub trait Embedder: Send + Sync {
    /// The model's name.
    fn name(&self) -> &str;
    /// The dimension of the vectors.
    fn dimension(&self) -> usize;
    /// Whether [`EmbeddingInput::Image`] is accepted.
    fn supports_images(&self) -> bool {
        false
    }
    /// Embeds a batch; the output has one vector per input, in order.
    ///
    /// # Errors
    /// Returns an error for unsupported input kinds or model failures.
    fn embed(&self, inputs: &[EmbeddingInput]) -> Result<Vec<Embedding>>;
}
