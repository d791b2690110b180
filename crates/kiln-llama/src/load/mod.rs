//! Checkpoint loading. Every format is read through [`WeightSource`], which serves tensors by their
//! Hugging Face names as `f32`; the name remapping of each format lives in one place, its module.

mod gguf;
mod hf;
mod nf4;
mod safetensors;

pub use gguf::{GgufWeights, config_from_gguf};
pub use hf::HfDirectory;
pub use nf4::{Nf4Rounded, QLORA_BLOCKSIZE};
pub use safetensors::SafetensorsWeights;

use kiln_backend::kernels::{QuantMatrix, WeightFormat};

use crate::Result;

/// Packs f32 values as the little-endian bytes of a [`WeightFormat::F32`] matrix.
pub(crate) fn f32_matrix(data: &[f32], rows: usize, cols: usize) -> Result<QuantMatrix> {
    let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    Ok(QuantMatrix::new(WeightFormat::F32, rows, cols, bytes)?)
}

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

    /// A `[rows, cols]` matrix in its stored format when the CPU kernels take it (Q4_0, Q4_1, Q8_0,
    /// F16, BF16, F32), otherwise dequantized to F32. Rows are in Hugging Face order.
    ///
    /// # Errors
    /// As [`WeightSource::tensor`].
    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<QuantMatrix> {
        let data = self.tensor(name, &[rows, cols])?;
        f32_matrix(&data, rows, cols)
    }
}
