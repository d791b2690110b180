//! CLIP's vision tower: a ViT with a class token, learned positions, a LayerNorm before the encoder
//! (`pre_layrnorm`, transformers' spelling) and one on the pooled class token (`post_layernorm`).
//!
//! Paper: Radford et al., "Learning Transferable Visual Models From Natural Language Supervision"
//! (2021); Dosovitskiy et al., "An Image is Worth 16x16 Words" (2020). Reference: transformers
//! `modeling_clip.py` (`CLIPVisionEmbeddings`, `CLIPVisionTransformer`).

use burn::module::{Module, Param};
use burn::nn::LayerNorm;
use burn::tensor::{Device, Distribution, Tensor};

use super::encoder::{Encoder, EncoderConfig, LinearHook, NoHook, layer_norm};
use crate::config::VisionConfig;
use crate::load::Weights;
use crate::{ClipError, Result};

/// Patch, class and position embeddings.
#[derive(Module, Debug)]
pub struct VisionEmbeddings {
    /// The class token, `[hidden]`.
    pub class_embedding: Param<Tensor<1>>,
    /// The patch convolution (stride = kernel = patch, no bias) as a matrix over flattened
    /// `(channel, row, col)` patches: `[channels * patch * patch, hidden]`.
    pub patch_embedding: Param<Tensor<2>>,
    /// Learned positions, `[1 + patches, hidden]`.
    pub position_embedding: Param<Tensor<2>>,
    /// Side of a patch.
    #[module(skip)]
    pub patch: usize,
    /// Input channels.
    #[module(skip)]
    pub channels: usize,
    /// Side of the input image.
    #[module(skip)]
    pub image_size: usize,
}

impl VisionEmbeddings {
    /// # Shapes
    /// - `pixels`: `[batch, channels, image, image]` -> `[batch, 1 + patches, hidden]`
    pub fn forward(&self, pixels: Tensor<4>) -> Tensor<3> {
        let [b, c, h, w] = pixels.dims();
        let p = self.patch;
        let (gh, gw) = (h / p, w / p);
        // [b, c, gh, p, gw, p] -> [b, gh, gw, c, p, p] -> [b, gh*gw, c*p*p]
        let patches = pixels
            .reshape([b, c, gh, p, gw, p])
            .permute([0, 2, 4, 1, 3, 5])
            .reshape([b, gh * gw, c * p * p]);
        let x = patches.matmul(self.patch_embedding.val().unsqueeze::<3>());
        let hidden = x.dims()[2];
        let cls = self
            .class_embedding
            .val()
            .reshape([1, 1, hidden])
            .expand([b, 1, hidden]);
        Tensor::cat(vec![cls, x], 1).add(self.position_embedding.val().unsqueeze::<3>())
    }
}

/// The vision transformer (`CLIPVisionTransformer`).
#[derive(Module, Debug)]
pub struct VisionTransformer {
    /// Embeddings.
    pub embeddings: VisionEmbeddings,
    /// LayerNorm before the encoder.
    pub pre_layrnorm: LayerNorm,
    /// The encoder.
    pub encoder: Encoder,
    /// LayerNorm on the pooled class token.
    pub post_layernorm: LayerNorm,
}

fn encoder_config(c: &VisionConfig) -> EncoderConfig {
    EncoderConfig {
        hidden: c.hidden_size,
        intermediate: c.intermediate_size,
        heads: c.num_attention_heads,
        layers: c.num_hidden_layers,
        act: c.hidden_act,
        eps: c.layer_norm_eps,
    }
}

impl VisionConfig {
    /// A vision tower with fresh weights (transformers' CLIP initialisation scales: class token and
    /// positions `N(0, hidden^-0.5)` and `N(0, 0.02)`, patch embedding Kaiming-uniform).
    #[must_use]
    pub fn init(&self, device: &Device) -> VisionTransformer {
        let h = self.hidden_size;
        let k = self.num_channels * self.patch_size * self.patch_size;
        let bound = (1.0 / k as f64).sqrt();
        VisionTransformer {
            embeddings: VisionEmbeddings {
                class_embedding: Param::from_tensor(Tensor::random(
                    [h],
                    Distribution::Normal(0.0, (h as f64).powf(-0.5)),
                    device,
                )),
                patch_embedding: Param::from_tensor(Tensor::random(
                    [k, h],
                    Distribution::Uniform(-bound, bound),
                    device,
                )),
                position_embedding: Param::from_tensor(Tensor::random(
                    [self.num_patches() + 1, h],
                    Distribution::Normal(0.0, 0.02),
                    device,
                )),
                patch: self.patch_size,
                channels: self.num_channels,
                image_size: self.image_size,
            },
            pre_layrnorm: layer_norm(h, self.layer_norm_eps, device),
            encoder: {
                let mut e = encoder_config(self).init(device);
                e.prefix = "vision_model.encoder".into();
                e
            },
            post_layernorm: layer_norm(h, self.layer_norm_eps, device),
        }
    }

    /// Loads `{prefix}.embeddings.*`, `{prefix}.pre_layrnorm`, `{prefix}.encoder.*`,
    /// `{prefix}.post_layernorm` (prefix `vision_model` in a `CLIPModel`,
    /// `vision_tower.vision_model` in LLaVA).
    ///
    /// # Errors
    /// A missing or mis-shaped tensor, named with its file.
    pub fn load(&self, w: &Weights<'_>, prefix: &str) -> Result<VisionTransformer> {
        let h = self.hidden_size;
        let (c, p) = (self.num_channels, self.patch_size);
        let conv = w.param(
            &format!("{prefix}.embeddings.patch_embedding.weight"),
            [h, c, p, p],
        )?;
        let patch_embedding = Param::from_tensor(conv.val().reshape([h, c * p * p]).transpose());
        // transformers' post_layernorm exists even in towers used only for their hidden states.
        Ok(VisionTransformer {
            embeddings: VisionEmbeddings {
                class_embedding: w.param(&format!("{prefix}.embeddings.class_embedding"), [h])?,
                patch_embedding,
                position_embedding: w.param(
                    &format!("{prefix}.embeddings.position_embedding.weight"),
                    [self.num_patches() + 1, h],
                )?,
                patch: p,
                channels: c,
                image_size: self.image_size,
            },
            pre_layrnorm: w.layer_norm(
                &format!("{prefix}.pre_layrnorm"),
                h,
                self.layer_norm_eps,
            )?,
            encoder: encoder_config(self).load(w, &format!("{prefix}.encoder"))?,
            post_layernorm: w.layer_norm(
                &format!("{prefix}.post_layernorm"),
                h,
                self.layer_norm_eps,
            )?,
        })
    }
}

impl VisionTransformer {
    /// Checks that `pixels` fit this tower.
    ///
    /// # Errors
    /// [`ClipError::Input`] naming the expected shape.
    pub fn check_pixels(&self, dims: [usize; 4]) -> Result<()> {
        let e = &self.embeddings;
        let [b, c, h, w] = dims;
        if b == 0 || c != e.channels || h != e.image_size || w != e.image_size {
            return Err(ClipError::Input(format!(
                "pixel_values have shape {dims:?}; this vision tower takes [batch >= 1, {}, {}, {}]",
                e.channels, e.image_size, e.image_size
            )));
        }
        Ok(())
    }

    /// The last hidden state and the pooled output (`post_layernorm` of the class token).
    ///
    /// # Shapes
    /// - `pixels`: `[batch, channels, image, image]`
    /// - output: `([batch, 1 + patches, hidden], [batch, hidden])`
    pub fn forward(&self, pixels: Tensor<4>) -> (Tensor<3>, Tensor<2>) {
        self.forward_with(pixels, &NoHook)
    }

    /// [`Self::forward`] with `hook` on the encoder's linear maps.
    ///
    /// # Shapes
    /// As [`Self::forward`].
    pub fn forward_with(&self, pixels: Tensor<4>, hook: &dyn LinearHook) -> (Tensor<3>, Tensor<2>) {
        let x = self.pre_layrnorm.forward(self.embeddings.forward(pixels));
        let last = self.encoder.forward_hooked(x, None, hook);
        let pooled = self.pool(&last);
        (last, pooled)
    }

    /// transformers' `hidden_states`: the embeddings after `pre_layrnorm`, then each layer's output
    /// (`layers + 1` tensors; LLaVA takes one of them as its image features).
    ///
    /// # Shapes
    /// - `pixels`: `[batch, channels, image, image]`; each output `[batch, 1 + patches, hidden]`
    pub fn hidden_states(&self, pixels: Tensor<4>) -> Vec<Tensor<3>> {
        let x = self.pre_layrnorm.forward(self.embeddings.forward(pixels));
        self.encoder.forward_all(x, None)
    }

    /// `post_layernorm` of the class token.
    ///
    /// # Shapes
    /// - `last`: `[batch, 1 + patches, hidden]` -> `[batch, hidden]`
    pub fn pool(&self, last: &Tensor<3>) -> Tensor<2> {
        let [b, _, h] = last.dims();
        self.post_layernorm
            .forward(last.clone().slice([0..b, 0..1, 0..h]).reshape([b, h]))
    }
}
