//! LoRA adapters on a Llama model: the model's linear modules under PEFT's names, an adapter
//! checked against them and laid out per layer and projection for both engines, and the
//! [`LinearAdapter`] hook through which the burn model adds adapter updates (used for inference
//! and for training).

use std::sync::Arc;

use burn::tensor::{Device, Tensor, TensorData};
use kiln_lora::{LinearModule, LoraAdapter, LoraWeights};

use crate::Result;
use crate::config::LlamaConfig;

/// A projection inside a decoder layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proj {
    /// `self_attn.q_proj`.
    Q,
    /// `self_attn.k_proj`.
    K,
    /// `self_attn.v_proj`.
    V,
    /// `self_attn.o_proj`.
    O,
    /// `mlp.gate_proj`.
    Gate,
    /// `mlp.up_proj`.
    Up,
    /// `mlp.down_proj`.
    Down,
}

impl Proj {
    /// Every projection, in the order of [`Proj::index`].
    pub const ALL: [Proj; 7] = [
        Proj::Q,
        Proj::K,
        Proj::V,
        Proj::O,
        Proj::Gate,
        Proj::Up,
        Proj::Down,
    ];

    /// The position in [`Proj::ALL`].
    #[must_use]
    pub fn index(self) -> usize {
        self as usize
    }

    /// The module path inside a layer, as Hugging Face names it.
    #[must_use]
    pub fn path(self) -> &'static str {
        match self {
            Proj::Q => "self_attn.q_proj",
            Proj::K => "self_attn.k_proj",
            Proj::V => "self_attn.v_proj",
            Proj::O => "self_attn.o_proj",
            Proj::Gate => "mlp.gate_proj",
            Proj::Up => "mlp.up_proj",
            Proj::Down => "mlp.down_proj",
        }
    }

    /// `(in, out)` features under `config`.
    #[must_use]
    pub fn shape(self, c: &LlamaConfig) -> (usize, usize) {
        let (d, ff) = (c.hidden_size, c.intermediate_size);
        let (q, kv) = (
            c.num_attention_heads * c.head_dim,
            c.num_key_value_heads * c.head_dim,
        );
        match self {
            Proj::Q => (d, q),
            Proj::K | Proj::V => (d, kv),
            Proj::O => (q, d),
            Proj::Gate | Proj::Up => (d, ff),
            Proj::Down => (ff, d),
        }
    }
}

/// Where a linear map sits in the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Site {
    /// A projection of decoder layer `.0`.
    Layer(usize, Proj),
    /// The output projection.
    LmHead,
}

impl Site {
    /// The module key PEFT uses (`model.layers.3.mlp.up_proj`, `lm_head`).
    #[must_use]
    pub fn key(self) -> String {
        match self {
            Site::Layer(l, p) => format!("model.layers.{l}.{}", p.path()),
            Site::LmHead => "lm_head".into(),
        }
    }
}

/// The linear modules of a Llama model as PEFT sees them (`LlamaForCausalLM.named_modules()`).
#[must_use]
pub fn linear_modules(c: &LlamaConfig) -> Vec<LinearModule> {
    let mut out = Vec::with_capacity(c.num_hidden_layers * 7 + 1);
    for l in 0..c.num_hidden_layers {
        for p in Proj::ALL {
            let (i, o) = p.shape(c);
            out.push(LinearModule {
                key: Site::Layer(l, p).key(),
                in_features: i,
                out_features: o,
                is_output: false,
            });
        }
    }
    out.push(LinearModule {
        key: "lm_head".into(),
        in_features: c.hidden_size,
        out_features: c.vocab_size,
        is_output: true,
    });
    out
}

/// Adds adapter updates to the outputs of the burn model's linear maps.
pub trait LinearAdapter {
    /// `y` is the base output of the map at `site` for input `x`; returns `y` plus the update.
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, in]`, `y`: `[batch, seq, out]` -> `[batch, seq, out]`
    fn adapt(&self, site: Site, x: &Tensor<3>, y: Tensor<3>) -> Tensor<3>;
}

/// No adapter: the base model.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoAdapter;

impl LinearAdapter for NoAdapter {
    fn adapt(&self, _site: Site, _x: &Tensor<3>, y: Tensor<3>) -> Tensor<3> {
        y
    }
}

/// An adapter checked against one model and laid out by layer and projection.
#[derive(Debug, Clone)]
pub struct LlamaAdapter {
    /// The adapter as loaded.
    pub adapter: Arc<LoraAdapter>,
    layers: Vec<[Option<LoraWeights>; 7]>,
    lm_head: Option<LoraWeights>,
    /// `(Aᵀ [in, r], scaling · Bᵀ [r, out])` on the burn device, when the model runs on burn.
    tensors: Option<BurnFactors>,
}

type Pair = Option<(Tensor<2>, Tensor<2>)>;

#[derive(Debug, Clone)]
struct BurnFactors {
    layers: Vec<[Pair; 7]>,
    lm_head: Pair,
}

impl LlamaAdapter {
    /// Checks `adapter` against the model and prepares it; with `device`, also uploads its
    /// factors for the burn engine.
    ///
    /// # Errors
    /// [`Error::Lora`](crate::Error::Lora) naming the first module that does not exist or does
    /// not fit.
    pub fn new(
        adapter: Arc<LoraAdapter>,
        c: &LlamaConfig,
        device: Option<&Device>,
    ) -> Result<Self> {
        adapter.check_against(&linear_modules(c))?;
        let layers: Vec<[Option<LoraWeights>; 7]> = (0..c.num_hidden_layers)
            .map(|l| {
                std::array::from_fn(|i| {
                    let key = Site::Layer(l, Proj::ALL[i]).key();
                    adapter.modules.get(&key).cloned()
                })
            })
            .collect();
        let lm_head = adapter.modules.get("lm_head").cloned();
        let tensors = device.map(|d| {
            let up = |w: &Option<LoraWeights>| w.as_ref().map(|w| burn_pair(w, d));
            BurnFactors {
                layers: layers
                    .iter()
                    .map(|ws| std::array::from_fn(|i| up(&ws[i])))
                    .collect(),
                lm_head: up(&lm_head),
            }
        });
        Ok(Self {
            adapter,
            layers,
            lm_head,
            tensors,
        })
    }

    /// The adapter's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.adapter.name
    }

    /// The factors at `site`, if the adapter adapts it.
    #[must_use]
    pub fn weights(&self, site: Site) -> Option<&LoraWeights> {
        match site {
            Site::Layer(l, p) => self.layers.get(l)?[p.index()].as_ref(),
            Site::LmHead => self.lm_head.as_ref(),
        }
    }
}

fn burn_pair(w: &LoraWeights, device: &Device) -> (Tensor<2>, Tensor<2>) {
    let (r, n_in, n_out) = (w.r, w.in_features, w.out_features);
    let mut at = vec![0f32; n_in * r];
    for k in 0..r {
        for i in 0..n_in {
            at[i * r + k] = w.a[k * n_in + i];
        }
    }
    let mut bt = vec![0f32; r * n_out];
    for o in 0..n_out {
        for k in 0..r {
            bt[k * n_out + o] = w.b[o * r + k] * w.scaling;
        }
    }
    (
        Tensor::from_data(TensorData::new(at, [n_in, r]), device),
        Tensor::from_data(TensorData::new(bt, [r, n_out]), device),
    )
}

/// Adapters active for one call, each with its weight.
#[derive(Debug, Clone, Default)]
pub struct AdapterMix(pub Vec<(Arc<LlamaAdapter>, f32)>);

impl AdapterMix {
    /// No adapter.
    #[must_use]
    pub fn none() -> Self {
        Self(Vec::new())
    }

    /// Whether no adapter is active.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Adds the updates of every active adapter at `site` to `y` (`[t, out]`) for input `x`
    /// (`[t, in]`), on the CPU.
    pub fn add_cpu(&self, site: Site, x: &[f32], t: usize, y: &mut [f32], tmp: &mut Vec<f32>) {
        for (a, weight) in &self.0 {
            if let Some(w) = a.weights(site) {
                w.add_to(x, t, y, *weight, tmp);
            }
        }
    }
}

impl LinearAdapter for AdapterMix {
    fn adapt(&self, site: Site, x: &Tensor<3>, mut y: Tensor<3>) -> Tensor<3> {
        for (a, weight) in &self.0 {
            let Some(t) = &a.tensors else { continue };
            let pair = match site {
                Site::Layer(l, p) => t.layers.get(l).and_then(|ps| ps[p.index()].as_ref()),
                Site::LmHead => t.lm_head.as_ref(),
            };
            if let Some((at, bt)) = pair {
                let [b, s, n_in] = x.dims();
                let h = x.clone().reshape([b * s, n_in]).matmul(at.clone());
                let d = h.matmul(bt.clone()).mul_scalar(*weight);
                let n_out = d.dims()[1];
                y = y.add(d.reshape([b, s, n_out]));
            }
        }
        y
    }
}
