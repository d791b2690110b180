//! The CLIP model: a vision tower and a text tower projected into one embedding space, compared by
//! cosine similarity scaled by a learned temperature (`logit_scale`).
//!
//! Paper: Radford et al., "Learning Transferable Visual Models From Natural Language Supervision"
//! (2021). Reference: transformers `modeling_clip.py` (`CLIPModel`).

pub mod encoder;
pub mod text;
pub mod vision;

use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor, TensorData};
use kiln_backend::safetensors::SafetensorsFiles;

pub use text::{Pooling, TextTransformer, TokenBatch};
pub use vision::{VisionEmbeddings, VisionTransformer};

use crate::Result;
use crate::config::ClipConfig;
use crate::load::Weights;

/// CLIP (`CLIPModel`).
#[derive(Module, Debug)]
pub struct ClipModel {
    /// The vision tower.
    pub vision_model: VisionTransformer,
    /// The text tower.
    pub text_model: TextTransformer,
    /// Vision pooled output -> shared space (no bias), `[vision hidden, projection]`.
    pub visual_projection: Linear,
    /// Text pooled output -> shared space (no bias), `[text hidden, projection]`.
    pub text_projection: Linear,
    /// Log of the inverse temperature, `[1]`.
    pub logit_scale: Param<Tensor<1>>,
}

impl ClipConfig {
    /// A model with fresh weights.
    #[must_use]
    pub fn init(&self, device: &Device) -> ClipModel {
        let no_bias = |i, o| LinearConfig::new(i, o).with_bias(false).init(device);
        ClipModel {
            vision_model: self.vision_config.init(device),
            text_model: self.text_config.init(device),
            visual_projection: no_bias(self.vision_config.hidden_size, self.projection_dim),
            text_projection: no_bias(self.text_config.hidden_size, self.projection_dim),
            logit_scale: Param::from_tensor(Tensor::from_data(
                TensorData::new(vec![self.logit_scale_init_value], [1]),
                device,
            )),
        }
    }

    /// Loads a `CLIPModel` checkpoint in transformers' names.
    ///
    /// # Errors
    /// A missing or mis-shaped tensor, named with its file.
    pub fn load(&self, files: &SafetensorsFiles, device: &Device) -> Result<ClipModel> {
        let w = Weights::new(files, device);
        let p = self.projection_dim;
        let scale = files.f32("logit_scale", &[])?;
        Ok(ClipModel {
            vision_model: self.vision_config.load(&w, "vision_model")?,
            text_model: self.text_config.load(&w, "text_model")?,
            visual_projection: w.linear(
                "visual_projection",
                self.vision_config.hidden_size,
                p,
                false,
            )?,
            text_projection: w.linear("text_projection", self.text_config.hidden_size, p, false)?,
            logit_scale: Param::from_tensor(Tensor::from_data(TensorData::new(scale, [1]), device)),
        })
    }
}

/// Divides each row by its L2 norm.
///
/// # Shapes
/// - `x`: `[batch, dim]` -> same
#[must_use]
pub fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().powf_scalar(2.0).sum_dim(1).sqrt();
    x.div(norm)
}

impl ClipModel {
    /// The device the weights live on.
    #[must_use]
    pub fn device(&self) -> Device {
        self.logit_scale.val().device()
    }

    /// Projected (not normalised) image embeddings, transformers' `get_image_features`.
    ///
    /// # Shapes
    /// - `pixels`: `[batch, channels, image, image]` -> `[batch, projection]`
    ///
    /// # Errors
    /// Pixels of the wrong shape.
    pub fn image_features(&self, pixels: Tensor<4>) -> Result<Tensor<2>> {
        self.vision_model.check_pixels(pixels.dims())?;
        let (_, pooled) = self.vision_model.forward(pixels);
        Ok(self.visual_projection.forward(pooled))
    }

    /// Projected (not normalised) text embeddings, transformers' `get_text_features`.
    ///
    /// # Shapes
    /// - `tokens`: `[batch, len]` -> `[batch, projection]`
    ///
    /// # Errors
    /// Ids outside the vocabulary or rows longer than the context.
    pub fn text_features(&self, tokens: &TokenBatch) -> Result<Tensor<2>> {
        let (_, pooled) = self.text_model.forward(tokens)?;
        Ok(self.text_projection.forward(pooled))
    }

    /// `logits_per_image`: `exp(logit_scale)` times the cosine similarity of every image with
    /// every text (`logits_per_text` is its transpose).
    ///
    /// # Shapes
    /// - `image_embeds`: `[images, projection]`, `text_embeds`: `[texts, projection]` (either
    ///   normalised or not) -> `[images, texts]`
    #[must_use]
    pub fn logits(&self, image_embeds: Tensor<2>, text_embeds: Tensor<2>) -> Tensor<2> {
        let sim = l2_normalize(image_embeds).matmul(l2_normalize(text_embeds).transpose());
        sim.mul(self.logit_scale.val().exp().unsqueeze::<2>())
    }
}
