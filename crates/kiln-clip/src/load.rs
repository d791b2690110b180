//! Reading CLIP checkpoints in Hugging Face's layout: PyTorch-order tensors (`Linear` weights
//! `[out, in]`) from safetensors files, turned into burn parameters (`Linear` weights `[in, out]`).
//! Every missing or mis-shaped tensor is an error naming the file and the tensor.

use burn::module::Param;
use burn::nn::{LayerNorm, Linear};
use burn::tensor::{Device, Tensor, TensorData};
use kiln_backend::safetensors::SafetensorsFiles;

use crate::Result;
use crate::model::encoder::{layer_norm, param};

/// A checkpoint's tensors bound to the device they are loaded onto.
#[derive(Debug)]
pub struct Weights<'a> {
    files: &'a SafetensorsFiles,
    device: &'a Device,
}

impl<'a> Weights<'a> {
    /// Reads from `files` onto `device`.
    #[must_use]
    pub fn new(files: &'a SafetensorsFiles, device: &'a Device) -> Self {
        Self { files, device }
    }

    /// The device tensors are created on.
    #[must_use]
    pub fn device(&self) -> &Device {
        self.device
    }

    /// Whether the checkpoint holds `name`.
    #[must_use]
    pub fn contains(&self, name: &str) -> bool {
        self.files.contains(name)
    }

    /// Tensor `name` with its PyTorch shape checked, as a parameter of the same shape.
    ///
    /// # Errors
    /// Missing, mis-shaped or non-float tensor.
    pub fn param<const D: usize>(&self, name: &str, shape: [usize; D]) -> Result<Param<Tensor<D>>> {
        Ok(param(self.files.f32(name, &shape)?, shape, self.device))
    }

    /// `{prefix}.weight` `[out, in]` (and `{prefix}.bias` `[out]`) as a burn `Linear` (`[in, out]`).
    ///
    /// # Errors
    /// Missing or mis-shaped tensor.
    pub fn linear(&self, prefix: &str, d_in: usize, d_out: usize, bias: bool) -> Result<Linear> {
        let w = self
            .files
            .f32(&format!("{prefix}.weight"), &[d_out, d_in])?;
        let weight =
            Tensor::<2>::from_data(TensorData::new(w, [d_out, d_in]), self.device).transpose();
        let bias = if bias {
            Some(self.param(&format!("{prefix}.bias"), [d_out])?)
        } else {
            None
        };
        Ok(Linear {
            weight: Param::from_tensor(weight),
            bias,
        })
    }

    /// `{prefix}.weight` and `{prefix}.bias`, both `[d]`, as a LayerNorm.
    ///
    /// # Errors
    /// Missing or mis-shaped tensor.
    pub fn layer_norm(&self, prefix: &str, d: usize, eps: f64) -> Result<LayerNorm> {
        let mut ln = layer_norm(d, eps, self.device);
        ln.gamma = self.param(&format!("{prefix}.weight"), [d])?;
        ln.beta = Some(self.param(&format!("{prefix}.bias"), [d])?);
        Ok(ln)
    }
}
