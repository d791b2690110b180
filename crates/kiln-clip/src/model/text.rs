//! CLIP's text tower: token and position embeddings, a causal transformer, a final LayerNorm, and
//! pooling at the end-of-text token.
//!
//! Reference: transformers `modeling_clip.py` (`CLIPTextEmbeddings`, `CLIPTextTransformer`). The
//! pooled position is the first `eos_token_id` of each row, or, for configs with `eos_token_id == 2`
//! (written before transformers 4.31), the position of the largest id, as transformers does.

use burn::module::{Module, Param};
use burn::nn::LayerNorm;
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};

use super::encoder::{Encoder, EncoderConfig, LinearHook, NoHook, layer_norm};
use crate::config::TextConfig;
use crate::load::Weights;
use crate::{ClipError, Result};

/// A batch of token rows of equal length with their attention mask (`false` at padding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBatch {
    /// Ids, row-major `[batch, len]`.
    pub ids: Vec<u32>,
    /// `true` where a token is real, `[batch, len]`.
    pub mask: Vec<bool>,
    /// Rows.
    pub batch: usize,
    /// Row length.
    pub len: usize,
}

impl TokenBatch {
    /// Pads `rows` (each BOS ... EOS) to the longest with `pad`, masking the padding.
    ///
    /// # Errors
    /// [`ClipError::Input`] for an empty batch or an empty row.
    pub fn from_rows(rows: &[Vec<u32>], pad: u32) -> Result<Self> {
        let len = rows.iter().map(Vec::len).max().unwrap_or(0);
        if rows.is_empty() || rows.iter().any(Vec::is_empty) {
            return Err(ClipError::Input(
                "a text batch needs at least one row, and no row may be empty".into(),
            ));
        }
        let mut ids = Vec::with_capacity(rows.len() * len);
        let mut mask = Vec::with_capacity(rows.len() * len);
        for r in rows {
            ids.extend_from_slice(r);
            ids.extend(std::iter::repeat_n(pad, len - r.len()));
            mask.extend(std::iter::repeat_n(true, r.len()));
            mask.extend(std::iter::repeat_n(false, len - r.len()));
        }
        Ok(Self {
            ids,
            mask,
            batch: rows.len(),
            len,
        })
    }

    /// Rows already of equal length with an explicit mask (e.g. transformers' `attention_mask`).
    ///
    /// # Errors
    /// [`ClipError::Input`] when the sizes disagree.
    pub fn new(ids: Vec<u32>, mask: Vec<bool>, batch: usize, len: usize) -> Result<Self> {
        if batch == 0 || len == 0 || ids.len() != batch * len || mask.len() != batch * len {
            return Err(ClipError::Input(format!(
                "token batch of {batch}x{len} needs {} ids and mask values, got {} and {}",
                batch * len,
                ids.len(),
                mask.len()
            )));
        }
        Ok(Self {
            ids,
            mask,
            batch,
            len,
        })
    }
}

/// How the text tower picks the position it pools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// The first position holding this id (0 if none), transformers >= 4.31.
    FirstEos(u32),
    /// The position of the largest id (legacy configs).
    Argmax,
}

/// The text transformer (`CLIPTextTransformer`).
#[derive(Module, Debug)]
pub struct TextTransformer {
    /// Token embeddings, `[vocab, hidden]`.
    pub token_embedding: Param<Tensor<2>>,
    /// Position embeddings, `[context, hidden]`.
    pub position_embedding: Param<Tensor<2>>,
    /// The encoder (causal).
    pub encoder: Encoder,
    /// LayerNorm after the encoder.
    pub final_layer_norm: LayerNorm,
    /// Pooling rule.
    #[module(skip)]
    pub pooling: Pooling,
}

fn encoder_config(c: &TextConfig) -> EncoderConfig {
    EncoderConfig {
        hidden: c.hidden_size,
        intermediate: c.intermediate_size,
        heads: c.num_attention_heads,
        layers: c.num_hidden_layers,
        act: c.hidden_act,
        eps: c.layer_norm_eps,
    }
}

impl TextConfig {
    fn pooling(&self) -> Pooling {
        match self.eos_token_id {
            Some(eos) if !self.pools_at_argmax() => {
                Pooling::FirstEos(u32::try_from(eos).unwrap_or(u32::MAX))
            }
            _ => Pooling::Argmax,
        }
    }

    /// A text tower with fresh weights (token embeddings `N(0, 0.02)`, positions `N(0, 0.01)`, as
    /// transformers initialises CLIP).
    #[must_use]
    pub fn init(&self, device: &Device) -> TextTransformer {
        let h = self.hidden_size;
        TextTransformer {
            token_embedding: Param::from_tensor(Tensor::random(
                [self.vocab_size, h],
                Distribution::Normal(0.0, 0.02),
                device,
            )),
            position_embedding: Param::from_tensor(Tensor::random(
                [self.max_position_embeddings, h],
                Distribution::Normal(0.0, 0.01),
                device,
            )),
            encoder: {
                let mut e = encoder_config(self).init(device);
                e.prefix = "text_model.encoder".into();
                e
            },
            final_layer_norm: layer_norm(h, self.layer_norm_eps, device),
            pooling: self.pooling(),
        }
    }

    /// Loads `{prefix}.embeddings.*`, `{prefix}.encoder.*`, `{prefix}.final_layer_norm`.
    ///
    /// # Errors
    /// A missing or mis-shaped tensor, named with its file.
    pub fn load(&self, w: &Weights<'_>, prefix: &str) -> Result<TextTransformer> {
        let h = self.hidden_size;
        Ok(TextTransformer {
            token_embedding: w.param(
                &format!("{prefix}.embeddings.token_embedding.weight"),
                [self.vocab_size, h],
            )?,
            position_embedding: w.param(
                &format!("{prefix}.embeddings.position_embedding.weight"),
                [self.max_position_embeddings, h],
            )?,
            encoder: encoder_config(self).load(w, &format!("{prefix}.encoder"))?,
            final_layer_norm: w.layer_norm(
                &format!("{prefix}.final_layer_norm"),
                h,
                self.layer_norm_eps,
            )?,
            pooling: self.pooling(),
        })
    }
}

impl TextTransformer {
    /// The pooled position of each row.
    #[must_use]
    pub fn pooled_positions(&self, tokens: &TokenBatch) -> Vec<usize> {
        tokens
            .ids
            .chunks(tokens.len)
            .map(|row| match self.pooling {
                Pooling::FirstEos(eos) => row.iter().position(|&t| t == eos).unwrap_or(0),
                // torch.argmax returns the first of equal maxima.
                Pooling::Argmax => {
                    row.iter()
                        .enumerate()
                        .fold(
                            (0, 0u32),
                            |(bi, bv), (i, &v)| if v > bv || i == 0 { (i, v) } else { (bi, bv) },
                        )
                        .0
                }
            })
            .collect()
    }

    /// Checks ids and length against the tower.
    ///
    /// # Errors
    /// [`ClipError::Input`] naming the offending row or id.
    pub fn check_tokens(&self, tokens: &TokenBatch) -> Result<()> {
        let [vocab, _] = self.token_embedding.val().dims();
        let [context, _] = self.position_embedding.val().dims();
        if tokens.len > context {
            return Err(ClipError::Input(format!(
                "text rows of {} tokens exceed the context length {context}",
                tokens.len
            )));
        }
        if let Some((i, &id)) = tokens
            .ids
            .iter()
            .enumerate()
            .find(|(_, id)| **id as usize >= vocab)
        {
            return Err(ClipError::Input(format!(
                "token id {id} in row {} is outside the vocabulary of {vocab}",
                i / tokens.len
            )));
        }
        Ok(())
    }

    /// The last hidden state (after `final_layer_norm`) and the pooled output.
    ///
    /// # Shapes
    /// - `tokens`: `[batch, len]`
    /// - output: `([batch, len, hidden], [batch, hidden])`
    ///
    /// # Errors
    /// As [`Self::check_tokens`].
    pub fn forward(&self, tokens: &TokenBatch) -> Result<(Tensor<3>, Tensor<2>)> {
        self.forward_with(tokens, &NoHook)
    }

    /// [`Self::forward`] with `hook` on the encoder's linear maps.
    ///
    /// # Shapes
    /// As [`Self::forward`].
    ///
    /// # Errors
    /// As [`Self::check_tokens`].
    pub fn forward_with(
        &self,
        tokens: &TokenBatch,
        hook: &dyn LinearHook,
    ) -> Result<(Tensor<3>, Tensor<2>)> {
        self.check_tokens(tokens)?;
        let device = self.token_embedding.val().device();
        let (b, l) = (tokens.batch, tokens.len);
        let ids: Vec<i64> = tokens.ids.iter().map(|&t| i64::from(t)).collect();
        let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [b, l]), &device);
        let emb = burn::tensor::module::embedding(self.token_embedding.val(), ids);
        let h = emb.dims()[2];
        let pos = self
            .position_embedding
            .val()
            .slice([0..l, 0..h])
            .unsqueeze::<3>();
        let mask = causal_padding_mask(tokens, &device);
        let last = self.final_layer_norm.forward(self.encoder.forward_hooked(
            emb + pos,
            Some(&mask),
            hook,
        ));
        let rows: Vec<i64> = self
            .pooled_positions(tokens)
            .iter()
            .enumerate()
            .map(|(r, &p)| (r * l + p) as i64)
            .collect();
        let rows = Tensor::<1, Int>::from_data(TensorData::new(rows, [b]), &device);
        let pooled = last.clone().reshape([b * l, h]).select(0, rows);
        Ok((last, pooled))
    }
}

/// The additive mask of a causal model over padded rows: `-inf`-like where a key lies in the
/// future or is padding, `0` elsewhere.
///
/// # Shapes
/// - output: `[batch, 1, len, len]`
fn causal_padding_mask(tokens: &TokenBatch, device: &Device) -> Tensor<4> {
    let (b, l) = (tokens.batch, tokens.len);
    let mut m = vec![0f32; b * l * l];
    for r in 0..b {
        for i in 0..l {
            for j in 0..l {
                if j > i || !tokens.mask[r * l + j] {
                    m[(r * l + i) * l + j] = f32::MIN;
                }
            }
        }
    }
    Tensor::from_data(TensorData::new(m, [b, 1, l, l]), device)
}
