//! QLoRA's base: the projection weights of a checkpoint quantized to NF4 exactly as bitsandbytes
//! does (`quantize_4bit(quant_type="nf4", blocksize=64, compress_statistics=True)`). The CPU
//! engine keeps them as NF4 blocks and multiplies on them; burn receives the dequantized values,
//! so training sees the same rounded base a bitsandbytes QLoRA run sees.

use kiln_backend::kernels::QuantMatrix;
use kiln_backend::nf4;

use super::WeightSource;
use crate::{Error, Result};

/// Block size of QLoRA's NF4 (bitsandbytes' default).
pub const QLORA_BLOCKSIZE: usize = 64;

/// A [`WeightSource`] whose decoder projection weights are rounded to NF4.
pub struct Nf4Rounded<'a> {
    inner: &'a dyn WeightSource,
}

impl<'a> Nf4Rounded<'a> {
    /// Wraps `inner`.
    #[must_use]
    pub fn new(inner: &'a dyn WeightSource) -> Self {
        Self { inner }
    }

    fn quantized(&self, name: &str, shape: &[usize]) -> Result<nf4::Nf4Tensor> {
        let data = self.inner.tensor(name, shape)?;
        nf4::quantize(&data, shape, QLORA_BLOCKSIZE, true).map_err(|e| {
            Error::Invalid(format!(
                "{}: NF4 quantization of `{name}`: {e}",
                self.inner.path()
            ))
        })
    }
}

/// Whether `name` is a decoder projection weight (what bitsandbytes replaces by `Linear4bit`;
/// the embeddings, norms and `lm_head` stay in full precision, as in QLoRA).
fn is_projection(name: &str) -> bool {
    name.starts_with("model.layers.") && name.ends_with("_proj.weight")
}

impl WeightSource for Nf4Rounded<'_> {
    fn path(&self) -> String {
        self.inner.path()
    }

    fn contains(&self, name: &str) -> bool {
        self.inner.contains(name)
    }

    fn tensor(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        if is_projection(name) {
            Ok(self.quantized(name, shape)?.dequantize())
        } else {
            self.inner.tensor(name, shape)
        }
    }

    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<QuantMatrix> {
        if is_projection(name) {
            Ok(QuantMatrix::from_nf4(
                &self.quantized(name, &[rows, cols])?,
            )?)
        } else {
            self.inner.matrix(name, rows, cols)
        }
    }
}
