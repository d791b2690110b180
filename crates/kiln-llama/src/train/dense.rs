//! Dense fine-tuning: the base model's own tensors are trained, all of them (`full`) or those of
//! the top N decoder layers and the final norm (`partial`), rather than adapter factors.
//!
//! Each step uploads the trainable tensors as tracked leaves into a copy of the model (the frozen
//! tensors are shared, not copied), runs the same loss as LoRA training, reads the gradients
//! back, and updates host copies with the same AdamW. With tied embeddings (SmolLM2, Llama 3.2),
//! the output layer is the transposed embedding leaf, so both uses add to its gradient, as in
//! PyTorch.

use burn::tensor::{Device, Gradients, Tensor, TensorData};

use crate::lora::{Proj, Site};
use crate::model::{Linear, LinearWeight};
use crate::{Error, Llama, Result};

/// What a training run updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Method {
    /// A LoRA adapter (QLoRA when the model was opened with an NF4 or block-quantized base).
    #[default]
    Lora,
    /// Every tensor of the model.
    Full,
    /// The top `top_layers` decoder layers and the final norm; embeddings and the output layer
    /// stay frozen.
    Partial {
        /// How many of the last decoder layers are trained.
        top_layers: usize,
    },
}

/// Where a trainable tensor lives in the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Embed,
    InputNorm(usize),
    PostNorm(usize),
    FinalNorm,
    Weight(Site),
    Bias(Site),
}

/// The trainable tensors of a dense run: Hugging Face names and shapes, host values in the
/// model's orientation (linear weights `[in, out]`).
#[derive(Debug, Clone, PartialEq)]
pub struct DenseParams {
    slots: Vec<Slot>,
    /// Hugging Face names (`model.layers.3.mlp.up_proj.weight`).
    pub names: Vec<String>,
    /// Shapes in the model's orientation.
    pub shapes: Vec<Vec<usize>>,
    /// Current values.
    pub values: Vec<Vec<f32>>,
}

fn read<const D: usize>(t: &Tensor<D>) -> Result<Vec<f32>> {
    t.clone()
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| Error::Invalid(format!("reading a weight: {e:?}")))
}

fn linear_of(m: &Llama, site: Site) -> &Linear {
    match site {
        Site::LmHead => &m.lm_head,
        Site::Layer(l, p) => {
            let layer = &m.layers[l];
            match p {
                Proj::Q => &layer.self_attn.q_proj,
                Proj::K => &layer.self_attn.k_proj,
                Proj::V => &layer.self_attn.v_proj,
                Proj::O => &layer.self_attn.o_proj,
                Proj::Gate => &layer.mlp.gate_proj,
                Proj::Up => &layer.mlp.up_proj,
                Proj::Down => &layer.mlp.down_proj,
            }
        }
    }
}

fn linear_of_mut(m: &mut Llama, site: Site) -> &mut Linear {
    match site {
        Site::LmHead => &mut m.lm_head,
        Site::Layer(l, p) => {
            let layer = &mut m.layers[l];
            match p {
                Proj::Q => &mut layer.self_attn.q_proj,
                Proj::K => &mut layer.self_attn.k_proj,
                Proj::V => &mut layer.self_attn.v_proj,
                Proj::O => &mut layer.self_attn.o_proj,
                Proj::Gate => &mut layer.mlp.gate_proj,
                Proj::Up => &mut layer.mlp.up_proj,
                Proj::Down => &mut layer.mlp.down_proj,
            }
        }
    }
}

/// A tracked leaf of rank 1 or 2.
#[derive(Debug, Clone)]
enum Leaf {
    D1(Tensor<1>),
    D2(Tensor<2>),
}

/// The trainable tensors uploaded as tracked leaves, and the model copy that uses them.
#[derive(Debug)]
pub struct DenseStep {
    leaves: Vec<Leaf>,
    /// The model with the trainable tensors replaced by the leaves.
    pub model: Llama,
}

impl DenseStep {
    /// The gradient of every trainable tensor after `backward`, in [`DenseParams`] order (zeros
    /// for a tensor the loss does not reach).
    ///
    /// # Errors
    /// A gradient that cannot be read back.
    pub fn gradients(&self, grads: &Gradients, params: &DenseParams) -> Result<Vec<Vec<f32>>> {
        self.leaves
            .iter()
            .zip(&params.values)
            .map(|(leaf, v)| {
                let g = match leaf {
                    Leaf::D1(t) => t.grad(grads).map(|g| read(&g)),
                    Leaf::D2(t) => t.grad(grads).map(|g| read(&g)),
                };
                g.unwrap_or_else(|| Ok(vec![0.0; v.len()]))
            })
            .collect()
    }
}

impl DenseParams {
    /// Selects the trainable tensors of `model` for `method` and reads their values.
    ///
    /// # Errors
    /// [`Method::Lora`], a `top_layers` of 0 or above the layer count, or a weight that cannot be
    /// read back.
    pub fn select(model: &Llama, method: Method) -> Result<Self> {
        let c = &model.config;
        let n = c.num_hidden_layers;
        let (layers, embed) = match method {
            Method::Lora => {
                return Err(Error::Invalid(
                    "dense parameters are for the `full` and `partial` methods".into(),
                ));
            }
            Method::Full => (0..n, true),
            Method::Partial { top_layers } => {
                if top_layers == 0 || top_layers > n {
                    return Err(Error::Invalid(format!(
                        "partial training of {top_layers} layers: the model has {n} (1..={n})"
                    )));
                }
                (n - top_layers..n, false)
            }
        };
        let mut slots = Vec::new();
        if embed {
            slots.push(Slot::Embed);
        }
        for l in layers {
            slots.push(Slot::InputNorm(l));
            for proj in [Proj::Q, Proj::K, Proj::V, Proj::O] {
                slots.push(Slot::Weight(Site::Layer(l, proj)));
                if linear_of(model, Site::Layer(l, proj)).bias.is_some() {
                    slots.push(Slot::Bias(Site::Layer(l, proj)));
                }
            }
            slots.push(Slot::PostNorm(l));
            for proj in [Proj::Gate, Proj::Up, Proj::Down] {
                slots.push(Slot::Weight(Site::Layer(l, proj)));
                if linear_of(model, Site::Layer(l, proj)).bias.is_some() {
                    slots.push(Slot::Bias(Site::Layer(l, proj)));
                }
            }
        }
        slots.push(Slot::FinalNorm);
        if embed && !c.tie_word_embeddings {
            slots.push(Slot::Weight(Site::LmHead));
        }
        let mut names = Vec::with_capacity(slots.len());
        let mut shapes = Vec::with_capacity(slots.len());
        let mut values = Vec::with_capacity(slots.len());
        for &slot in &slots {
            let (name, shape, v) = match slot {
                Slot::Embed => (
                    "model.embed_tokens.weight".to_string(),
                    model.embed_tokens.dims().to_vec(),
                    read(&model.embed_tokens)?,
                ),
                Slot::InputNorm(l) => {
                    let w = &model.layers[l].input_layernorm.weight;
                    (
                        format!("model.layers.{l}.input_layernorm.weight"),
                        w.dims().to_vec(),
                        read(w)?,
                    )
                }
                Slot::PostNorm(l) => {
                    let w = &model.layers[l].post_attention_layernorm.weight;
                    (
                        format!("model.layers.{l}.post_attention_layernorm.weight"),
                        w.dims().to_vec(),
                        read(w)?,
                    )
                }
                Slot::FinalNorm => (
                    "model.norm.weight".to_string(),
                    model.norm.weight.dims().to_vec(),
                    read(&model.norm.weight)?,
                ),
                Slot::Weight(site) => {
                    let w = linear_of(model, site).dense_weight(model.device());
                    (
                        format!("{}.weight", site.key()),
                        w.dims().to_vec(),
                        read(&w)?,
                    )
                }
                Slot::Bias(site) => {
                    let b = linear_of(model, site)
                        .bias
                        .as_ref()
                        .ok_or_else(|| Error::Invalid(format!("{} has no bias", site.key())))?;
                    (format!("{}.bias", site.key()), b.dims().to_vec(), read(b)?)
                }
            };
            names.push(name);
            shapes.push(shape);
            values.push(v);
        }
        Ok(Self {
            slots,
            names,
            shapes,
            values,
        })
    }

    /// The same tensors holding other values (e.g. their gradients, to write them with
    /// [`Self::hf_tensors`]).
    ///
    /// # Errors
    /// Values whose count or lengths differ from the tensors'.
    pub fn with_values(&self, values: Vec<Vec<f32>>) -> Result<Self> {
        if values.len() != self.values.len()
            || values
                .iter()
                .zip(&self.values)
                .any(|(a, b)| a.len() != b.len())
        {
            return Err(Error::Invalid(
                "replacement values do not match the trainable tensors".into(),
            ));
        }
        Ok(Self {
            values,
            ..self.clone()
        })
    }

    /// Number of trainable values.
    #[must_use]
    pub fn count(&self) -> usize {
        self.values.iter().map(Vec::len).sum()
    }

    /// Uploads the values as tracked leaves (`track`) or constants into a copy of `base`.
    #[must_use]
    pub fn apply(&self, base: &Llama, device: &Device, track: bool) -> DenseStep {
        let mut model = base.clone();
        let mut leaves = Vec::with_capacity(self.slots.len());
        for ((slot, shape), v) in self.slots.iter().zip(&self.shapes).zip(&self.values) {
            if shape.len() == 2 {
                let t = Tensor::<2>::from_data(
                    TensorData::new(v.clone(), [shape[0], shape[1]]),
                    device,
                )
                .set_require_grad(track);
                match *slot {
                    Slot::Embed => {
                        if model.config.tie_word_embeddings {
                            model.lm_head.weight = LinearWeight::Dense(t.clone().transpose());
                        }
                        model.embed_tokens = t.clone();
                    }
                    Slot::Weight(site) => {
                        linear_of_mut(&mut model, site).weight = LinearWeight::Dense(t.clone());
                    }
                    _ => {}
                }
                leaves.push(Leaf::D2(t));
            } else {
                let t = Tensor::<1>::from_data(TensorData::new(v.clone(), [shape[0]]), device)
                    .set_require_grad(track);
                match *slot {
                    Slot::InputNorm(l) => model.layers[l].input_layernorm.weight = t.clone(),
                    Slot::PostNorm(l) => {
                        model.layers[l].post_attention_layernorm.weight = t.clone()
                    }
                    Slot::FinalNorm => model.norm.weight = t.clone(),
                    Slot::Bias(site) => linear_of_mut(&mut model, site).bias = Some(t.clone()),
                    _ => {}
                }
                leaves.push(Leaf::D1(t));
            }
        }
        DenseStep { leaves, model }
    }

    /// The tensors in Hugging Face orientation (linear weights `[out, in]`), keyed by name, for
    /// writing a checkpoint.
    #[must_use]
    pub fn hf_tensors(&self) -> Vec<(String, Vec<usize>, Vec<f32>)> {
        self.slots
            .iter()
            .zip(&self.names)
            .zip(self.shapes.iter().zip(&self.values))
            .map(|((slot, name), (shape, v))| match slot {
                Slot::Weight(_) => {
                    let (rows, cols) = (shape[0], shape[1]);
                    let mut t = vec![0f32; v.len()];
                    for r in 0..rows {
                        for c in 0..cols {
                            t[c * rows + r] = v[r * cols + c];
                        }
                    }
                    (name.clone(), vec![cols, rows], t)
                }
                _ => (name.clone(), shape.clone(), v.clone()),
            })
            .collect()
    }
}
