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

/// Cosine similarity of two embeddings; 0 when either is zero or their lengths differ.
#[must_use]
pub fn cosine_similarity(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return 0.0;
    }
    let (mut dot, mut na, mut nb) = (0.0f32, 0.0f32, 0.0f32);
    for (x, y) in a.iter().zip(b) {
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na.sqrt() * nb.sqrt())
    }
}
