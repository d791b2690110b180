//! The transformer shared by CLIP's two towers: pre-LayerNorm encoder layers of multi-head
//! self-attention and a two-layer MLP, each with a residual connection.
//!
//! Reference: transformers `modeling_clip.py` (`CLIPAttention`, `CLIPMLP`, `CLIPEncoderLayer`,
//! `CLIPEncoder`).

use burn::module::{Module, Param};
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::{gelu, gelu_approximate, relu, sigmoid, softmax};
use burn::tensor::{Device, Tensor, TensorData};

use crate::Result;
use crate::config::Activation;
use crate::load::Weights;

/// Adds an update to a linear map's output: how LoRA factors (kiln-lora's `StepFactors` during
/// training) reach the towers without the towers knowing about adapters.
pub trait LinearHook {
    /// `y` plus this hook's update for the module `key` (PEFT's module name, e.g.
    /// `vision_model.encoder.layers.0.self_attn.q_proj`) at input `x`.
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, in]`, `y`: `[batch, seq, out]` -> `[batch, seq, out]`
    fn adapt(&self, key: &str, x: &Tensor<3>, y: Tensor<3>) -> Tensor<3>;
}

/// No update.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHook;

impl LinearHook for NoHook {
    fn adapt(&self, _key: &str, _x: &Tensor<3>, y: Tensor<3>) -> Tensor<3> {
        y
    }
}

/// `linear(x)` plus the hook's update for `key`.
fn hooked(l: &Linear, x: Tensor<3>, key: &str, hook: &dyn LinearHook) -> Tensor<3> {
    let y = l.forward(x.clone());
    hook.adapt(key, &x, y)
}

impl Activation {
    /// Applies the activation elementwise.
    #[must_use]
    pub fn apply<const D: usize>(self, y: Tensor<D>) -> Tensor<D> {
        match self {
            Activation::QuickGelu => y.clone().mul(sigmoid(y.mul_scalar(1.702))),
            Activation::Gelu => gelu(y),
            Activation::GeluTanh => gelu_approximate(y),
            Activation::Relu => relu(y),
        }
    }
}

/// The shape of one tower's encoder.
#[derive(Debug, Clone, Copy)]
pub struct EncoderConfig {
    /// Width.
    pub hidden: usize,
    /// MLP width.
    pub intermediate: usize,
    /// Attention heads.
    pub heads: usize,
    /// Layers.
    pub layers: usize,
    /// MLP activation.
    pub act: Activation,
    /// LayerNorm epsilon.
    pub eps: f64,
}

impl EncoderConfig {
    /// Fresh weights: PyTorch's default `nn.Linear` initialisation (Kaiming-uniform), LayerNorms at
    /// one and zero.
    #[must_use]
    pub fn init(&self, device: &Device) -> Encoder {
        let layers = (0..self.layers)
            .map(|_| EncoderLayer {
                self_attn: Attention {
                    q_proj: LinearConfig::new(self.hidden, self.hidden).init(device),
                    k_proj: LinearConfig::new(self.hidden, self.hidden).init(device),
                    v_proj: LinearConfig::new(self.hidden, self.hidden).init(device),
                    out_proj: LinearConfig::new(self.hidden, self.hidden).init(device),
                    heads: self.heads,
                },
                layer_norm1: layer_norm(self.hidden, self.eps, device),
                mlp: Mlp {
                    fc1: LinearConfig::new(self.hidden, self.intermediate).init(device),
                    fc2: LinearConfig::new(self.intermediate, self.hidden).init(device),
                    act: self.act,
                },
                layer_norm2: layer_norm(self.hidden, self.eps, device),
            })
            .collect();
        Encoder {
            layers,
            prefix: String::new(),
        }
    }

    /// Loads `{prefix}.layers.N.*` in transformers' names.
    ///
    /// # Errors
    /// A missing or mis-shaped tensor, named with its file.
    pub fn load(&self, w: &Weights<'_>, prefix: &str) -> Result<Encoder> {
        let h = self.hidden;
        let layers = (0..self.layers)
            .map(|i| {
                let p = format!("{prefix}.layers.{i}");
                Ok(EncoderLayer {
                    self_attn: Attention {
                        q_proj: w.linear(&format!("{p}.self_attn.q_proj"), h, h, true)?,
                        k_proj: w.linear(&format!("{p}.self_attn.k_proj"), h, h, true)?,
                        v_proj: w.linear(&format!("{p}.self_attn.v_proj"), h, h, true)?,
                        out_proj: w.linear(&format!("{p}.self_attn.out_proj"), h, h, true)?,
                        heads: self.heads,
                    },
                    layer_norm1: w.layer_norm(&format!("{p}.layer_norm1"), h, self.eps)?,
                    mlp: Mlp {
                        fc1: w.linear(&format!("{p}.mlp.fc1"), h, self.intermediate, true)?,
                        fc2: w.linear(&format!("{p}.mlp.fc2"), self.intermediate, h, true)?,
                        act: self.act,
                    },
                    layer_norm2: w.layer_norm(&format!("{p}.layer_norm2"), h, self.eps)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Encoder {
            layers,
            prefix: prefix.to_string(),
        })
    }
}

/// A LayerNorm of width `d` with weight one and bias zero.
pub(crate) fn layer_norm(d: usize, eps: f64, device: &Device) -> LayerNorm {
    LayerNormConfig::new(d).with_epsilon(eps).init(device)
}

/// Multi-head self-attention with biased q/k/v/out projections.
#[derive(Module, Debug)]
pub struct Attention {
    /// Query projection.
    pub q_proj: Linear,
    /// Key projection.
    pub k_proj: Linear,
    /// Value projection.
    pub v_proj: Linear,
    /// Output projection.
    pub out_proj: Linear,
    /// Number of heads.
    #[module(skip)]
    pub heads: usize,
}

impl Attention {
    /// Scaled dot-product attention, scale `head_dim^-0.5`.
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, hidden]`
    /// - `mask`: additive, broadcastable to `[batch, heads, seq, seq]` (`[batch, 1, seq, seq]`)
    /// - output: `[batch, seq, hidden]`
    pub fn forward(&self, x: Tensor<3>, mask: Option<&Tensor<4>>) -> Tensor<3> {
        self.forward_with(x, mask, &NoHook, "")
    }

    /// [`Self::forward`] with `hook` on the projections; `prefix` is the module name
    /// (`...layers.N.self_attn`).
    ///
    /// # Shapes
    /// As [`Self::forward`].
    pub fn forward_with(
        &self,
        x: Tensor<3>,
        mask: Option<&Tensor<4>>,
        hook: &dyn LinearHook,
        prefix: &str,
    ) -> Tensor<3> {
        let [b, s, h] = x.dims();
        let d = h / self.heads;
        let split = |t: Tensor<3>| t.reshape([b, s, self.heads, d]).swap_dims(1, 2);
        let key = |n: &str| format!("{prefix}.{n}");
        let q = split(
            hooked(&self.q_proj, x.clone(), &key("q_proj"), hook).mul_scalar((d as f64).powf(-0.5)),
        );
        let k = split(hooked(&self.k_proj, x.clone(), &key("k_proj"), hook));
        let v = split(hooked(&self.v_proj, x, &key("v_proj"), hook));
        let mut scores = q.matmul(k.swap_dims(2, 3));
        if let Some(m) = mask {
            scores = scores.add(m.clone());
        }
        let out = softmax(scores, 3)
            .matmul(v)
            .swap_dims(1, 2)
            .reshape([b, s, h]);
        hooked(&self.out_proj, out, &key("out_proj"), hook)
    }
}

/// `fc2(act(fc1(x)))`.
#[derive(Module, Debug)]
pub struct Mlp {
    /// Up projection.
    pub fc1: Linear,
    /// Down projection.
    pub fc2: Linear,
    /// The activation.
    #[module(skip)]
    pub act: Activation,
}

impl Mlp {
    /// # Shapes
    /// - `x`: `[batch, seq, hidden]` -> same
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.forward_with(x, &NoHook, "")
    }

    /// [`Self::forward`] with `hook` on `fc1` and `fc2`; `prefix` is the module name
    /// (`...layers.N.mlp`).
    pub fn forward_with(&self, x: Tensor<3>, hook: &dyn LinearHook, prefix: &str) -> Tensor<3> {
        let y = hooked(&self.fc1, x, &format!("{prefix}.fc1"), hook);
        hooked(&self.fc2, self.act.apply(y), &format!("{prefix}.fc2"), hook)
    }
}

/// One pre-LayerNorm transformer layer.
#[derive(Module, Debug)]
pub struct EncoderLayer {
    /// Self-attention.
    pub self_attn: Attention,
    /// Norm before attention.
    pub layer_norm1: LayerNorm,
    /// The MLP.
    pub mlp: Mlp,
    /// Norm before the MLP.
    pub layer_norm2: LayerNorm,
}

impl EncoderLayer {
    /// # Shapes
    /// - `x`: `[batch, seq, hidden]` -> same
    pub fn forward(&self, x: Tensor<3>, mask: Option<&Tensor<4>>) -> Tensor<3> {
        self.forward_with(x, mask, &NoHook, "")
    }

    /// [`Self::forward`] with `hook` on every linear map; `prefix` is the layer's module name.
    pub fn forward_with(
        &self,
        x: Tensor<3>,
        mask: Option<&Tensor<4>>,
        hook: &dyn LinearHook,
        prefix: &str,
    ) -> Tensor<3> {
        let a = self.self_attn.forward_with(
            self.layer_norm1.forward(x.clone()),
            mask,
            hook,
            &format!("{prefix}.self_attn"),
        );
        let x = x + a;
        let m = self.mlp.forward_with(
            self.layer_norm2.forward(x.clone()),
            hook,
            &format!("{prefix}.mlp"),
        );
        x + m
    }
}

/// A stack of [`EncoderLayer`]s.
#[derive(Module, Debug)]
pub struct Encoder {
    /// The layers, bottom first.
    pub layers: Vec<EncoderLayer>,
    /// The module name of the encoder in the checkpoint (`vision_model.encoder`), which names
    /// its linear maps for a [`LinearHook`].
    #[module(skip)]
    pub prefix: String,
}

impl Encoder {
    /// Runs every layer.
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, hidden]` -> same
    pub fn forward(&self, x: Tensor<3>, mask: Option<&Tensor<4>>) -> Tensor<3> {
        self.forward_hooked(x, mask, &NoHook)
    }

    /// [`Self::forward`] with `hook` on every linear map.
    pub fn forward_hooked(
        &self,
        mut x: Tensor<3>,
        mask: Option<&Tensor<4>>,
        hook: &dyn LinearHook,
    ) -> Tensor<3> {
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward_with(x, mask, hook, &format!("{}.layers.{i}", self.prefix));
        }
        x
    }

    /// The linear maps of the encoder as PEFT names them, with their shapes.
    #[must_use]
    pub fn linear_modules(&self) -> Vec<kiln_lora::LinearModule> {
        let mut out = Vec::new();
        for (i, l) in self.layers.iter().enumerate() {
            let p = format!("{}.layers.{i}", self.prefix);
            let a = &l.self_attn;
            for (name, lin) in [
                ("self_attn.q_proj", &a.q_proj),
                ("self_attn.k_proj", &a.k_proj),
                ("self_attn.v_proj", &a.v_proj),
                ("self_attn.out_proj", &a.out_proj),
                ("mlp.fc1", &l.mlp.fc1),
                ("mlp.fc2", &l.mlp.fc2),
            ] {
                let [n_in, n_out] = lin.weight.val().dims();
                out.push(kiln_lora::LinearModule {
                    key: format!("{p}.{name}"),
                    in_features: n_in,
                    out_features: n_out,
                    is_output: false,
                });
            }
        }
        out
    }

    /// Runs every layer and returns transformers' `hidden_states`: the input followed by each
    /// layer's output (`layers + 1` tensors).
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, hidden]`; each output the same
    pub fn forward_all(&self, mut x: Tensor<3>, mask: Option<&Tensor<4>>) -> Vec<Tensor<3>> {
        let mut states = Vec::with_capacity(self.layers.len() + 1);
        states.push(x.clone());
        for layer in &self.layers {
            x = layer.forward(x, mask);
            states.push(x.clone());
        }
        states
    }
}

/// A tensor parameter from row-major values.
pub(crate) fn param<const D: usize>(
    values: Vec<f32>,
    shape: [usize; D],
    device: &Device,
) -> Param<Tensor<D>> {
    Param::from_tensor(Tensor::from_data(TensorData::new(values, shape), device))
}
