//! The Llama decoder: embeddings, a stack of pre-norm decoder layers (grouped-query attention with
//! RoPE, SwiGLU MLP), a final RMSNorm and the output projection.
//!
//! Paper: Touvron et al., "LLaMA: Open and Efficient Foundation Language Models" (2023) and
//! "Llama 2" (2023); reference implementation: Hugging Face transformers `modeling_llama.py`.
//! The weights are plain tensors (the base model is never trained here; adapters are modules of
//! their own), the KV cache is passed in explicitly.

use burn::tensor::activation::{silu, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::cache::KvCache;
use crate::config::{LlamaConfig, rope_inv_freq};
use crate::frozen::{FrozenWeight, frozen_linear};
use crate::load::WeightSource;
use crate::lora::{LinearAdapter, NoAdapter, Proj, Site};
use crate::{Error, Result};

/// The weight of a [`Linear`] projection.
// One per projection of a loaded model: the size of the dense variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum LinearWeight {
    /// A dense `[in, out]` tensor on the model's device.
    Dense(Tensor<2>),
    /// A frozen `[out, in]` matrix kept in its stored block format (QLoRA on the CPU; see
    /// [`crate::frozen`]).
    Frozen(FrozenWeight),
}

/// A linear projection `y = x W + b`.
#[derive(Debug, Clone)]
pub struct Linear {
    /// The weight.
    pub weight: LinearWeight,
    /// The bias, `[out]`.
    pub bias: Option<Tensor<1>>,
}

impl Linear {
    /// A projection with a dense `[in, out]` weight.
    #[must_use]
    pub fn dense(weight: Tensor<2>, bias: Option<Tensor<1>>) -> Self {
        Self {
            weight: LinearWeight::Dense(weight),
            bias,
        }
    }

    /// The weight as a dense `[in, out]` tensor on `device` (a frozen one dequantized).
    #[must_use]
    pub fn dense_weight(&self, device: &Device) -> Tensor<2> {
        match &self.weight {
            LinearWeight::Dense(w) => w.clone(),
            LinearWeight::Frozen(w) => w.to_dense(device),
        }
    }

    /// Applies the projection.
    ///
    /// # Shapes
    /// - `x`: `[..., in]` -> `[..., out]`
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        match &self.weight {
            LinearWeight::Dense(w) => burn::tensor::module::linear(x, w.clone(), self.bias.clone()),
            LinearWeight::Frozen(w) => {
                let y = frozen_linear(x, w);
                match &self.bias {
                    Some(b) => {
                        let mut shape = [1usize; D];
                        shape[D - 1] = b.dims()[0];
                        y + b.clone().reshape(shape)
                    }
                    None => y,
                }
            }
        }
    }

    /// Applies the projection plus the adapter's update at `site`.
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, in]` -> `[batch, seq, out]`
    pub fn forward_at(&self, x: Tensor<3>, site: Site, adapter: &dyn LinearAdapter) -> Tensor<3> {
        let y = self.forward(x.clone());
        adapter.adapt(site, &x, y)
    }
}

/// Root-mean-square layer normalisation with a learned scale.
#[derive(Debug, Clone)]
pub struct RmsNorm {
    /// The scale, `[hidden]`.
    pub weight: Tensor<1>,
    /// Added to the mean square.
    pub eps: f32,
}

impl RmsNorm {
    /// Normalises over the last dimension.
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, hidden]` -> same
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let ms = x.clone().powf_scalar(2.0).mean_dim(2);
        let inv = ms.add_scalar(self.eps).sqrt().recip();
        x.mul(inv).mul(self.weight.clone().unsqueeze::<3>())
    }
}

/// Rotary position embedding tables.
#[derive(Debug, Clone)]
pub struct Rope {
    cos: Tensor<2>,
    sin: Tensor<2>,
}

impl Rope {
    /// Precomputes `cos` and `sin` for every position of the context.
    #[must_use]
    pub fn new(cfg: &LlamaConfig, device: &Device) -> Self {
        let inv = rope_inv_freq(cfg);
        let half = inv.len();
        let n = cfg.max_position_embeddings;
        let mut cos = Vec::with_capacity(n * half);
        let mut sin = Vec::with_capacity(n * half);
        for p in 0..n {
            for f in &inv {
                let angle = p as f32 * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        Self {
            cos: Tensor::from_data(TensorData::new(cos, [n, half]), device),
            sin: Tensor::from_data(TensorData::new(sin, [n, half]), device),
        }
    }

    /// Rotates `x` by positions `start..start + seq` (rotate-half layout, as transformers).
    ///
    /// # Shapes
    /// - `x`: `[batch, heads, seq, head_dim]` -> same
    pub fn apply(&self, x: Tensor<4>, start: usize) -> Tensor<4> {
        let [b, h, t, d] = x.dims();
        let half = d / 2;
        let cos = self
            .cos
            .clone()
            .slice([start..start + t, 0..half])
            .unsqueeze::<4>();
        let sin = self
            .sin
            .clone()
            .slice([start..start + t, 0..half])
            .unsqueeze::<4>();
        let x1 = x.clone().slice([0..b, 0..h, 0..t, 0..half]);
        let x2 = x.slice([0..b, 0..h, 0..t, half..d]);
        let r1 = x1.clone().mul(cos.clone()).sub(x2.clone().mul(sin.clone()));
        let r2 = x2.mul(cos).add(x1.mul(sin));
        Tensor::cat(vec![r1, r2], 3)
    }
}

/// Grouped-query self-attention.
#[derive(Debug, Clone)]
pub struct Attention {
    /// Query projection.
    pub q_proj: Linear,
    /// Key projection.
    pub k_proj: Linear,
    /// Value projection.
    pub v_proj: Linear,
    /// Output projection.
    pub o_proj: Linear,
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
}

impl Attention {
    /// Attends over the cached positions plus the new ones.
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, hidden]` -> `[batch, seq, hidden]`
    pub fn forward(
        &self,
        x: Tensor<3>,
        rope: &Rope,
        layer: usize,
        cache: &mut KvCache,
        adapter: &dyn LinearAdapter,
    ) -> Tensor<3> {
        let [b, t, _] = x.dims();
        let start = cache.len();
        let (h, kvh, hd) = (self.n_heads, self.n_kv_heads, self.head_dim);
        let at = |p| Site::Layer(layer, p);
        let q = self
            .q_proj
            .forward_at(x.clone(), at(Proj::Q), adapter)
            .reshape([b, t, h, hd])
            .swap_dims(1, 2);
        let k = self
            .k_proj
            .forward_at(x.clone(), at(Proj::K), adapter)
            .reshape([b, t, kvh, hd])
            .swap_dims(1, 2);
        let v = self
            .v_proj
            .forward_at(x, at(Proj::V), adapter)
            .reshape([b, t, kvh, hd])
            .swap_dims(1, 2);
        let q = rope.apply(q, start);
        let k = rope.apply(k, start);
        let (k, v) = cache.append(layer, k, v);
        let s = start + t;
        let (k, v) = if kvh == h {
            (k, v)
        } else {
            let g = h / kvh;
            let rep = |x: Tensor<4>| {
                x.unsqueeze_dim::<5>(2)
                    .repeat_dim(2, g)
                    .reshape([b, h, s, hd])
            };
            (rep(k), rep(v))
        };
        let scale = 1.0 / (hd as f32).sqrt();
        let mut scores = q.matmul(k.swap_dims(2, 3)).mul_scalar(scale);
        if t > 1 {
            let mut mask = vec![0f32; t * s];
            for i in 0..t {
                for j in (start + i + 1)..s {
                    mask[i * s + j] = f32::NEG_INFINITY;
                }
            }
            let mask = Tensor::<2>::from_data(TensorData::new(mask, [t, s]), &scores.device());
            scores = scores.add(mask.unsqueeze::<4>());
        }
        let probs = softmax(scores, 3);
        let out = probs.matmul(v).swap_dims(1, 2).reshape([b, t, h * hd]);
        self.o_proj.forward_at(out, at(Proj::O), adapter)
    }
}

/// The SwiGLU feed-forward block.
#[derive(Debug, Clone)]
pub struct Mlp {
    /// Gate projection.
    pub gate_proj: Linear,
    /// Up projection.
    pub up_proj: Linear,
    /// Down projection.
    pub down_proj: Linear,
}

impl Mlp {
    /// `down(silu(gate(x)) * up(x))`.
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, hidden]` -> same
    pub fn forward(&self, x: Tensor<3>, layer: usize, adapter: &dyn LinearAdapter) -> Tensor<3> {
        let at = |p| Site::Layer(layer, p);
        let g = silu(
            self.gate_proj
                .forward_at(x.clone(), at(Proj::Gate), adapter),
        );
        let u = self.up_proj.forward_at(x, at(Proj::Up), adapter);
        self.down_proj.forward_at(g.mul(u), at(Proj::Down), adapter)
    }
}

/// One pre-norm decoder layer.
#[derive(Debug, Clone)]
pub struct DecoderLayer {
    /// Norm before attention.
    pub input_layernorm: RmsNorm,
    /// Self-attention.
    pub self_attn: Attention,
    /// Norm before the MLP.
    pub post_attention_layernorm: RmsNorm,
    /// The MLP.
    pub mlp: Mlp,
}

/// A Llama-family causal language model.
#[derive(Debug, Clone)]
pub struct Llama {
    /// The configuration.
    pub config: LlamaConfig,
    /// Token embeddings, `[vocab, hidden]`.
    pub embed_tokens: Tensor<2>,
    /// The decoder layers.
    pub layers: Vec<DecoderLayer>,
    /// The final norm.
    pub norm: RmsNorm,
    /// The output projection, `[hidden, vocab]` (a transposed copy of the embeddings when tied).
    pub lm_head: Linear,
    rope: Rope,
    device: Device,
}

impl Llama {
    /// Builds the model from a checkpoint whose tensors are looked up by Hugging Face names.
    ///
    /// # Errors
    /// [`Error::MissingTensor`], [`Error::TensorShape`] or errors of the source.
    pub fn load(config: LlamaConfig, source: &dyn WeightSource, device: &Device) -> Result<Self> {
        Self::load_with(config, source, device, false)
    }

    /// Builds a QLoRA base: on the Flex (CPU) backend the decoder projections stay in the
    /// source's block format ([`WeightSource::matrix`]: NF4 from [`crate::load::Nf4Rounded`], a
    /// GGUF file's own blocks) and are multiplied by [`crate::frozen::frozen_linear`], so neither
    /// the model nor a training step's graph holds them in f32. Embeddings, norms and the output
    /// projection are dense, as in QLoRA. On other backends this is [`Llama::load`].
    ///
    /// # Errors
    /// As [`Llama::load`].
    pub fn load_frozen(
        config: LlamaConfig,
        source: &dyn WeightSource,
        device: &Device,
    ) -> Result<Self> {
        Self::load_with(config, source, device, FrozenWeight::supported_on(device))
    }

    fn load_with(
        config: LlamaConfig,
        source: &dyn WeightSource,
        device: &Device,
        frozen: bool,
    ) -> Result<Self> {
        let c = &config;
        let (hd, h, kvh) = (c.head_dim, c.num_attention_heads, c.num_key_value_heads);
        let matrix = |name: &str, rows: usize, cols: usize| -> Result<Tensor<2>> {
            let data = source.tensor(name, &[rows, cols])?;
            Ok(Tensor::<2>::from_data(
                TensorData::new(data, [rows, cols]),
                device,
            ))
        };
        let vector = |name: &str, n: usize| -> Result<Tensor<1>> {
            let data = source.tensor(name, &[n])?;
            Ok(Tensor::<1>::from_data(TensorData::new(data, [n]), device))
        };
        // HF stores Linear weights `[out, in]`; the model multiplies by `[in, out]`.
        let linear = |prefix: &str, inp: usize, out: usize, bias: bool| -> Result<Linear> {
            let name = format!("{prefix}.weight");
            let weight = if frozen && prefix.starts_with("model.layers.") {
                LinearWeight::Frozen(FrozenWeight::new(source.matrix(&name, out, inp)?))
            } else {
                LinearWeight::Dense(contiguous(matrix(&name, out, inp)?.transpose()))
            };
            let bias = if bias {
                Some(vector(&format!("{prefix}.bias"), out)?)
            } else {
                None
            };
            Ok(Linear { weight, bias })
        };
        let norm = |name: &str| -> Result<RmsNorm> {
            Ok(RmsNorm {
                weight: vector(name, c.hidden_size)?,
                eps: c.rms_norm_eps,
            })
        };
        let embed_tokens = matrix("model.embed_tokens.weight", c.vocab_size, c.hidden_size)?;
        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        for i in 0..c.num_hidden_layers {
            let p = format!("model.layers.{i}");
            let ab = c.attention_bias;
            let mb = c.mlp_bias;
            layers.push(DecoderLayer {
                input_layernorm: norm(&format!("{p}.input_layernorm.weight"))?,
                self_attn: Attention {
                    q_proj: linear(&format!("{p}.self_attn.q_proj"), c.hidden_size, h * hd, ab)?,
                    k_proj: linear(
                        &format!("{p}.self_attn.k_proj"),
                        c.hidden_size,
                        kvh * hd,
                        ab,
                    )?,
                    v_proj: linear(
                        &format!("{p}.self_attn.v_proj"),
                        c.hidden_size,
                        kvh * hd,
                        ab,
                    )?,
                    o_proj: linear(&format!("{p}.self_attn.o_proj"), h * hd, c.hidden_size, ab)?,
                    n_heads: h,
                    n_kv_heads: kvh,
                    head_dim: hd,
                },
                post_attention_layernorm: norm(&format!("{p}.post_attention_layernorm.weight"))?,
                mlp: Mlp {
                    gate_proj: linear(
                        &format!("{p}.mlp.gate_proj"),
                        c.hidden_size,
                        c.intermediate_size,
                        mb,
                    )?,
                    up_proj: linear(
                        &format!("{p}.mlp.up_proj"),
                        c.hidden_size,
                        c.intermediate_size,
                        mb,
                    )?,
                    down_proj: linear(
                        &format!("{p}.mlp.down_proj"),
                        c.intermediate_size,
                        c.hidden_size,
                        mb,
                    )?,
                },
            });
        }
        let norm_f = norm("model.norm.weight")?;
        let lm_head = if c.tie_word_embeddings || !source.contains("lm_head.weight") {
            Linear::dense(contiguous(embed_tokens.clone().transpose()), None)
        } else {
            linear("lm_head", c.hidden_size, c.vocab_size, false)?
        };
        let rope = Rope::new(c, device);
        Ok(Self {
            config,
            embed_tokens,
            layers,
            norm: norm_f,
            lm_head,
            rope,
            device: device.clone(),
        })
    }

    /// The device the weights live on.
    #[must_use]
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// A cache sized for this model's context.
    #[must_use]
    pub fn new_cache(&self) -> KvCache {
        KvCache::new(
            self.config.num_hidden_layers,
            self.config.max_position_embeddings,
        )
    }

    /// Hidden states after the final norm, for new tokens appended to the cache.
    ///
    /// # Shapes
    /// - `ids`: `[batch, seq]` -> `[batch, seq, hidden]`
    ///
    /// # Errors
    /// [`Error::Invalid`] when the cache would overflow the context.
    pub fn hidden_states(&self, ids: Tensor<2, Int>, cache: &mut KvCache) -> Result<Tensor<3>> {
        self.hidden_states_with(ids, cache, &NoAdapter)
    }

    /// [`Llama::hidden_states`] with adapter updates added to the linear maps.
    ///
    /// # Shapes
    /// - `ids`: `[batch, seq]` -> `[batch, seq, hidden]`
    ///
    /// # Errors
    /// As [`Llama::hidden_states`].
    pub fn hidden_states_with(
        &self,
        ids: Tensor<2, Int>,
        cache: &mut KvCache,
        adapter: &dyn LinearAdapter,
    ) -> Result<Tensor<3>> {
        let x = self.embed(ids);
        self.hidden_states_from_embeds(x, cache, adapter)
    }

    /// The token embeddings of `ids`.
    ///
    /// # Shapes
    /// - `ids`: `[batch, seq]` -> `[batch, seq, hidden]`
    #[must_use]
    pub fn embed(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        let [b, t] = ids.dims();
        self.embed_tokens
            .clone()
            .select(0, ids.reshape([b * t]))
            .reshape([b, t, self.config.hidden_size])
    }

    /// The decoder stack run on given input embeddings (transformers' `inputs_embeds`: token
    /// embeddings with other features spliced in, as a vision-language model does).
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, hidden]` -> `[batch, seq, hidden]` (after the final norm)
    ///
    /// # Errors
    /// As [`Llama::hidden_states`].
    pub fn hidden_states_from_embeds(
        &self,
        mut x: Tensor<3>,
        cache: &mut KvCache,
        adapter: &dyn LinearAdapter,
    ) -> Result<Tensor<3>> {
        let [_, t, _] = x.dims();
        let needed = cache.len() + t;
        let limit = cache.max_len().min(self.config.max_position_embeddings);
        if needed > limit {
            return Err(Error::Core(kiln_core::Error::ContextLength {
                needed,
                limit,
            }));
        }
        for (i, layer) in self.layers.iter().enumerate() {
            let h = layer.self_attn.forward(
                layer.input_layernorm.forward(x.clone()),
                &self.rope,
                i,
                cache,
                adapter,
            );
            x = x.add(h);
            let h = layer.mlp.forward(
                layer.post_attention_layernorm.forward(x.clone()),
                i,
                adapter,
            );
            x = x.add(h);
        }
        cache.advance(t);
        Ok(self.norm.forward(x))
    }

    /// The output layer applied to final hidden states.
    ///
    /// # Shapes
    /// - `h`: `[batch, seq, hidden]` -> `[batch, seq, vocab]`
    #[must_use]
    pub fn logits(&self, h: Tensor<3>, adapter: &dyn LinearAdapter) -> Tensor<3> {
        self.lm_head.forward_at(h, Site::LmHead, adapter)
    }

    /// Logits for every new position.
    ///
    /// # Shapes
    /// - `ids`: `[batch, seq]` -> `[batch, seq, vocab]`
    ///
    /// # Errors
    /// As [`Llama::hidden_states`].
    pub fn forward(&self, ids: Tensor<2, Int>, cache: &mut KvCache) -> Result<Tensor<3>> {
        self.forward_with(ids, cache, &NoAdapter)
    }

    /// [`Llama::forward`] with adapter updates.
    ///
    /// # Shapes
    /// - `ids`: `[batch, seq]` -> `[batch, seq, vocab]`
    ///
    /// # Errors
    /// As [`Llama::hidden_states`].
    pub fn forward_with(
        &self,
        ids: Tensor<2, Int>,
        cache: &mut KvCache,
        adapter: &dyn LinearAdapter,
    ) -> Result<Tensor<3>> {
        let h = self.hidden_states_with(ids, cache, adapter)?;
        Ok(self.lm_head.forward_at(h, Site::LmHead, adapter))
    }

    /// Logits of the last position only (what generation needs).
    ///
    /// # Shapes
    /// - `ids`: `[batch, seq]` -> `[batch, vocab]`
    ///
    /// # Errors
    /// As [`Llama::hidden_states`].
    pub fn forward_last(&self, ids: Tensor<2, Int>, cache: &mut KvCache) -> Result<Tensor<2>> {
        self.forward_last_with(ids, cache, &NoAdapter)
    }

    /// [`Llama::forward_last`] with adapter updates.
    ///
    /// # Shapes
    /// - `ids`: `[batch, seq]` -> `[batch, vocab]`
    ///
    /// # Errors
    /// As [`Llama::hidden_states`].
    pub fn forward_last_with(
        &self,
        ids: Tensor<2, Int>,
        cache: &mut KvCache,
        adapter: &dyn LinearAdapter,
    ) -> Result<Tensor<2>> {
        let h = self.hidden_states_with(ids, cache, adapter)?;
        let [b, t, d] = h.dims();
        let last = h.slice([0..b, t - 1..t, 0..d]);
        let logits = self.lm_head.forward_at(last, Site::LmHead, adapter);
        let v = logits.dims()[2];
        Ok(logits.reshape([b, v]))
    }

    /// Builds an id tensor `[batch, seq]` on the model's device.
    #[must_use]
    pub fn ids_tensor(&self, ids: &[u32], batch: usize) -> Tensor<2, Int> {
        let seq = ids.len() / batch.max(1);
        let data: Vec<i64> = ids.iter().map(|&i| i64::from(i)).collect();
        Tensor::<2, Int>::from_data(TensorData::new(data, [batch, seq]), &self.device)
    }
}

/// Materialises a (possibly strided) tensor in row-major order, so that later matmuls read it
/// sequentially.
fn contiguous(t: Tensor<2>) -> Tensor<2> {
    let device = t.device();
    let data = t.into_data();
    Tensor::<2>::from_data(data, &device)
}
