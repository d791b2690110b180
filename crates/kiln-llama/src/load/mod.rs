//! Checkpoint loading. Every format is read through [`WeightSource`], which serves tensors by their
//! Hugging Face names as `f32`; the name remapping of each format lives in one place, its module.

mod gguf;
mod hf;
mod safetensors;

pub use gguf::{GgufWeights, config_from_gguf};
pub use hf::HfDirectory;
pub use safetensors::SafetensorsWeights;

use crate::Result;

/// Tensors of a checkpoint, looked up by Hugging Face names (`model.layers.0.self_attn.q_proj.weight`).
pub trait WeightSource {
    /// The file or directory, for error messages.
    fn path(&self) -> String;

    /// Whether the checkpoint has this tensor.
    fn contains(&self, name: &str) -> bool;

    /// The tensor as row-major `f32`, checked against `shape` (PyTorch order).
    ///
    /// # Errors
    /// `MissingTensor`, `TensorShape`, `UnsupportedDtype` naming the tensor and file.
    fn tensor(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>>;
}
