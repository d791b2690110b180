//! Training LoRA adapters on a Llama model with burn's autodiff: the causal-LM loss on labelled
//! tokens, batches, data sets in chat / Alpaca / plain-text JSONL, and the training loop.

mod data;
mod dense;
mod dense_run;
mod trainer;

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};
use kiln_lora::train::StepFactors;

use crate::lora::{LinearAdapter, Site};
use crate::model::Llama;
use crate::{Error, Result};

pub use data::{DataFormat, Example, load_examples};
pub use dense::{DenseParams, DenseStep, Method};
pub use dense_run::{PARAMS_FILE, read_params};
pub use trainer::{DpConfig, LogEntry, TrainConfig, TrainReport, Trainer};

/// Labels that take no part in the loss (PyTorch's `ignore_index`).
pub const IGNORE: i64 = -100;

/// A right-padded batch: `ids` and `labels` are `[batch, seq]` row-major; `labels[i]` is the
/// token expected at position `i` (the loss shifts by one as transformers does), [`IGNORE`] on
/// prompt and padding positions.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Token ids.
    pub ids: Vec<u32>,
    /// Labels.
    pub labels: Vec<i64>,
    /// Rows.
    pub batch: usize,
    /// Columns.
    pub seq: usize,
}

impl Batch {
    /// Pads `examples` on the right with `pad` (labels [`IGNORE`]).
    #[must_use]
    pub fn pad(examples: &[&Example], pad: u32) -> Self {
        let seq = examples.iter().map(|e| e.ids.len()).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(examples.len() * seq);
        let mut labels = Vec::with_capacity(examples.len() * seq);
        for e in examples {
            ids.extend(&e.ids);
            labels.extend(&e.labels);
            for _ in e.ids.len()..seq {
                ids.push(pad);
                labels.push(IGNORE);
            }
        }
        Self {
            ids,
            labels,
            batch: examples.len(),
            seq,
        }
    }

    /// One batch per row, each cut after its last label (later positions cannot change the loss).
    #[must_use]
    pub fn split(&self) -> Vec<Batch> {
        (0..self.batch)
            .map(|r| {
                let ids = &self.ids[r * self.seq..(r + 1) * self.seq];
                let labels = &self.labels[r * self.seq..(r + 1) * self.seq];
                let end = labels
                    .iter()
                    .rposition(|&l| l != IGNORE)
                    .map_or(self.seq, |i| i + 1)
                    .max(2);
                Batch {
                    ids: ids[..end].to_vec(),
                    labels: labels[..end].to_vec(),
                    batch: 1,
                    seq: end,
                }
            })
            .collect()
    }

    /// Tokens that count in the loss.
    #[must_use]
    pub fn label_tokens(&self) -> usize {
        (0..self.batch)
            .flat_map(|b| (1..self.seq).map(move |i| b * self.seq + i))
            .filter(|&i| self.labels[i] != IGNORE)
            .count()
    }
}

/// Routes the model's linear maps to the tracked factors by PEFT module key.
struct Tracked<'a>(&'a StepFactors);

impl LinearAdapter for Tracked<'_> {
    fn adapt(&self, site: Site, x: &Tensor<3>, y: Tensor<3>) -> Tensor<3> {
        self.0.apply(&site.key(), x, y)
    }
}

/// The summed cross-entropy over the batch's label tokens (after the causal shift) and their
/// count; the mean loss is `sum / count`. `model` lives on an autodiff device, and `factors` on
/// the same device.
///
/// # Shapes
/// - returns a `[1]` tensor
///
/// # Errors
/// A batch longer than the context, or with no label token.
pub fn loss_sum(model: &Llama, factors: &StepFactors, batch: &Batch) -> Result<(Tensor<1>, usize)> {
    loss_sum_distilled(model, factors, batch, None)
}

/// Knowledge distillation (Hinton et al., 2015): the loss mixes cross-entropy on the labels with
/// the KL divergence from a teacher's softened distribution,
/// `(1 − alpha) · CE + alpha · T² · KL(softmax(teacher / T) ‖ softmax(student / T))`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Distill {
    /// Weight of the teacher term, in `[0, 1]`.
    pub alpha: f64,
    /// Softmax temperature `T > 0`.
    pub temperature: f64,
}

/// Teacher logits at the label positions of `batch`, in the order [`loss_sum_distilled`] uses
/// (row by row, position by position): `[count, vocab]`.
///
/// # Errors
/// A teacher whose vocabulary differs from the student's, or forward errors.
pub fn teacher_logits(
    teacher: &crate::LlamaGenerator,
    batch: &Batch,
    vocab: usize,
) -> Result<Vec<f32>> {
    if teacher.config().vocab_size != vocab {
        return Err(Error::Invalid(format!(
            "the teacher's vocabulary ({}) differs from the student's ({vocab})",
            teacher.config().vocab_size
        )));
    }
    let t = batch.seq;
    let mut out = Vec::new();
    for row in 0..batch.batch {
        let ids = &batch.ids[row * t..(row + 1) * t];
        let logits = teacher.forward_all(ids)?;
        for i in 1..t {
            if batch.labels[row * t + i] != IGNORE {
                out.extend_from_slice(&logits[(i - 1) * vocab..i * vocab]);
            }
        }
    }
    Ok(out)
}

/// [`loss_sum`] with an optional distillation term: `teacher` holds the teacher's logits at the
/// label positions ([`teacher_logits`]).
///
/// # Errors
/// As [`loss_sum`], and teacher logits of the wrong size.
pub fn loss_sum_distilled(
    model: &Llama,
    factors: &StepFactors,
    batch: &Batch,
    teacher: Option<(&[f32], Distill)>,
) -> Result<(Tensor<1>, usize)> {
    loss_sum_with(model, &Tracked(factors), batch, teacher)
}

/// [`loss_sum_distilled`] with any adapter on the linear maps (`NoAdapter` for dense training,
/// where the model's own tensors are the tracked leaves).
///
/// # Errors
/// A batch without label tokens or with fewer than two positions, or teacher logits of the wrong
/// size.
pub fn loss_sum_with(
    model: &Llama,
    adapter: &dyn LinearAdapter,
    batch: &Batch,
    teacher: Option<(&[f32], Distill)>,
) -> Result<(Tensor<1>, usize)> {
    let (b, t) = (batch.batch, batch.seq);
    if t < 2 {
        return Err(Error::Invalid(
            "a training sequence needs at least two tokens".into(),
        ));
    }
    let count = batch.label_tokens();
    if count == 0 {
        return Err(Error::Invalid("the batch has no label tokens".into()));
    }
    let device = model.device().clone();
    let ids = model.ids_tensor(&batch.ids, b);
    let mut cache = crate::KvCache::new(model.config.num_hidden_layers, t);
    let hidden = model.hidden_states_with(ids, &mut cache, adapter)?;
    // Only positions whose next token is a label go through the output layer (the vocabulary
    // projection dominates a small model's cost, and prompts are most of a chat's tokens).
    let mut rows = Vec::with_capacity(count);
    let mut targets = Vec::with_capacity(count);
    for row in 0..b {
        for i in 1..t {
            let l = batch.labels[row * t + i];
            if l != IGNORE {
                rows.push((row * t + i - 1) as i64);
                targets.push(l);
            }
        }
    }
    let d = model.config.hidden_size;
    let rows = Tensor::<1, Int>::from_data(TensorData::new(rows, [count]), &device);
    let picked_hidden = hidden
        .reshape([b * t, d])
        .select(0, rows)
        .reshape([1, count, d]);
    let logits = model
        .lm_head
        .forward_at(picked_hidden, Site::LmHead, adapter);
    let v = model.config.vocab_size;
    let targets = Tensor::<3, Int>::from_data(TensorData::new(targets, [1, count, 1]), &device);
    let ce = log_softmax(logits.clone(), 2)
        .gather(2, targets)
        .sum()
        .neg();
    let Some((teacher, d)) = teacher else {
        return Ok((ce, count));
    };
    if teacher.len() != count * v {
        return Err(Error::Invalid(format!(
            "teacher logits hold {} values, expected {count} x {v}",
            teacher.len()
        )));
    }
    let temp = d.temperature as f32;
    let tl = Tensor::<3>::from_data(TensorData::new(teacher.to_vec(), [1, count, v]), &device);
    let log_pt = log_softmax(tl.div_scalar(temp), 2);
    let log_ps = log_softmax(logits.div_scalar(temp), 2);
    let kl = log_pt.clone().exp().mul(log_pt.sub(log_ps)).sum();
    let loss = ce
        .mul_scalar((1.0 - d.alpha) as f32)
        .add(kl.mul_scalar((d.alpha as f32) * temp * temp));
    Ok((loss, count))
}
