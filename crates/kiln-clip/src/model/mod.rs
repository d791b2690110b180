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

pub use encoder::{LinearHook, NoHook};
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

/// A projection (`[batch, in]`) with the hook's update for `key`.
fn project(l: &Linear, x: Tensor<2>, key: &str, hook: &dyn LinearHook) -> Tensor<2> {
    let [b, d] = x.dims();
    let x3 = x.reshape([1, b, d]);
    let y = hook.adapt(key, &x3, l.forward(x3.clone()));
    let o = y.dims()[2];
    y.reshape([b, o])
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
        self.image_features_with(pixels, &NoHook)
    }

    /// [`Self::image_features`] with `hook` on every linear map (LoRA during training).
    ///
    /// # Shapes
    /// As [`Self::image_features`].
    ///
    /// # Errors
    /// Pixels of the wrong shape.
    pub fn image_features_with(
        &self,
        pixels: Tensor<4>,
        hook: &dyn LinearHook,
    ) -> Result<Tensor<2>> {
        self.vision_model.check_pixels(pixels.dims())?;
        let (_, pooled) = self.vision_model.forward_with(pixels, hook);
        Ok(project(
            &self.visual_projection,
            pooled,
            "visual_projection",
            hook,
        ))
    }

    /// Projected (not normalised) text embeddings, transformers' `get_text_features`.
    ///
    /// # Shapes
    /// - `tokens`: `[batch, len]` -> `[batch, projection]`
    ///
    /// # Errors
    /// Ids outside the vocabulary or rows longer than the context.
    pub fn text_features(&self, tokens: &TokenBatch) -> Result<Tensor<2>> {
        self.text_features_with(tokens, &NoHook)
    }

    /// [`Self::text_features`] with `hook` on every linear map (LoRA during training).
    ///
    /// # Shapes
    /// As [`Self::text_features`].
    ///
    /// # Errors
    /// As [`Self::text_features`].
    pub fn text_features_with(
        &self,
        tokens: &TokenBatch,
        hook: &dyn LinearHook,
    ) -> Result<Tensor<2>> {
        let (_, pooled) = self.text_model.forward_with(tokens, hook)?;
        Ok(project(
            &self.text_projection,
            pooled,
            "text_projection",
            hook,
        ))
    }

    /// Every linear map as PEFT names it on a `CLIPModel` (encoder layers of both towers and the
    /// two projections), for LoRA target matching.
    #[must_use]
    pub fn linear_modules(&self) -> Vec<kiln_lora::LinearModule> {
        let mut out = self.vision_model.encoder.linear_modules();
        out.extend(self.text_model.encoder.linear_modules());
        for (key, l) in [
            ("visual_projection", &self.visual_projection),
            ("text_projection", &self.text_projection),
        ] {
            let [n_in, n_out] = l.weight.val().dims();
            out.push(kiln_lora::LinearModule {
                key: key.into(),
                in_features: n_in,
                out_features: n_out,
                is_output: false,
            });
        }
        out
    }

    /// Adds `weight` times the adapter's update (`scaling · B A`) into the weights it targets
    /// (merging; the model then runs without the adapter at no extra cost).
    ///
    /// # Errors
    /// An adapter module this model does not have, or of other shapes.
    pub fn merge_lora(&mut self, adapter: &kiln_lora::LoraAdapter, weight: f32) -> Result<()> {
        let modules = self.linear_modules();
        adapter
            .check_against(&modules)
            .map_err(|e| crate::ClipError::Input(format!("LoRA adapter: {e}")))?;
        let device = self.device();
        for (key, w) in &adapter.modules {
            let Some(lin) = self.linear_mut(key) else {
                return Err(crate::ClipError::Input(format!(
                    "LoRA adapter module `{key}` is not a linear map of this CLIP"
                )));
            };
            let delta: Vec<f32> = w.delta().iter().map(|v| v * weight).collect();
            let d = Tensor::<2>::from_data(
                TensorData::new(delta, [w.out_features, w.in_features]),
                &device,
            )
            .transpose();
            lin.weight = lin.weight.clone().map(|t| t + d);
        }
        Ok(())
    }

    fn linear_mut(&mut self, key: &str) -> Option<&mut Linear> {
        match key {
            "visual_projection" => return Some(&mut self.visual_projection),
            "text_projection" => return Some(&mut self.text_projection),
            _ => {}
        }
        let (encoder, rest) = if let Some(r) =
            key.strip_prefix(&format!("{}.layers.", self.vision_model.encoder.prefix))
        {
            (&mut self.vision_model.encoder, r)
        } else if let Some(r) =
            key.strip_prefix(&format!("{}.layers.", self.text_model.encoder.prefix))
        {
            (&mut self.text_model.encoder, r)
        } else {
            return None;
        };
        let (idx, name) = rest.split_once('.')?;
        let layer = encoder.layers.get_mut(idx.parse::<usize>().ok()?)?;
        match name {
            "self_attn.q_proj" => Some(&mut layer.self_attn.q_proj),
            "self_attn.k_proj" => Some(&mut layer.self_attn.k_proj),
            "self_attn.v_proj" => Some(&mut layer.self_attn.v_proj),
            "self_attn.out_proj" => Some(&mut layer.self_attn.out_proj),
            "mlp.fc1" => Some(&mut layer.mlp.fc1),
            "mlp.fc2" => Some(&mut layer.mlp.fc2),
            _ => None,
        }
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
