//! The adapter's factors as tracked burn tensors for one training step, applied inside a model's
//! forward pass, and their gradients read back after `backward`.

use std::collections::BTreeMap;

use burn::tensor::{Device, Gradients, Tensor, TensorData};
use rand::Rng;

use crate::{Error, LoraAdapter, Result};

/// Gradients by module key: `(dA [r, in], dB [out, r])`.
pub type FactorGrads = BTreeMap<String, (Vec<f32>, Vec<f32>)>;

struct Entry {
    /// `A`, `[r, in]`, tracked.
    a: Tensor<2>,
    /// `B`, `[out, r]`, tracked.
    b: Tensor<2>,
    scaling: f32,
}

/// Tracked factors for one forward/backward pass.
pub struct StepFactors {
    entries: BTreeMap<String, Entry>,
    dropout: f32,
    masks: std::cell::RefCell<rand::rngs::StdRng>,
}

impl std::fmt::Debug for StepFactors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepFactors")
            .field("modules", &self.entries.len())
            .field("dropout", &self.dropout)
            .finish()
    }
}

impl StepFactors {
    /// Uploads `adapter`'s factors to `device` (an autodiff device) as leaves that require
    /// gradients. `dropout` (PEFT's `lora_dropout`) is applied to each adapted module's input with
    /// masks drawn from `rng_seed`, so a step is reproducible.
    #[must_use]
    pub fn new(adapter: &LoraAdapter, device: &Device, dropout: f32, rng_seed: u64) -> Self {
        Self::build(adapter, device, dropout, rng_seed, true)
    }

    /// The factors as constants (no gradients, no dropout): for evaluation on an autodiff
    /// device without recording a graph.
    #[must_use]
    pub fn frozen(adapter: &LoraAdapter, device: &Device) -> Self {
        Self::build(adapter, device, 0.0, 0, false)
    }

    fn build(
        adapter: &LoraAdapter,
        device: &Device,
        dropout: f32,
        rng_seed: u64,
        track: bool,
    ) -> Self {
        let entries = adapter
            .modules
            .iter()
            .map(|(k, w)| {
                let a = Tensor::<2>::from_data(
                    TensorData::new(w.a.clone(), [w.r, w.in_features]),
                    device,
                )
                .set_require_grad(track);
                let b = Tensor::<2>::from_data(
                    TensorData::new(w.b.clone(), [w.out_features, w.r]),
                    device,
                )
                .set_require_grad(track);
                (
                    k.clone(),
                    Entry {
                        a,
                        b,
                        scaling: w.scaling,
                    },
                )
            })
            .collect();
        Self {
            entries,
            dropout,
            masks: std::cell::RefCell::new(rand::SeedableRng::seed_from_u64(rng_seed)),
        }
    }

    /// `y + scaling · (dropout(x) Aᵀ) Bᵀ` when the adapter adapts `key`, else `y`.
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, in]`, `y`: `[batch, seq, out]` -> `[batch, seq, out]`
    #[must_use]
    pub fn apply(&self, key: &str, x: &Tensor<3>, y: Tensor<3>) -> Tensor<3> {
        let Some(e) = self.entries.get(key) else {
            return y;
        };
        let [b, s, n_in] = x.dims();
        let mut x2 = x.clone().reshape([b * s, n_in]);
        if self.dropout > 0.0 {
            let keep = 1.0 - self.dropout;
            let mut rng = self.masks.borrow_mut();
            let mask: Vec<f32> = (0..b * s * n_in)
                .map(|_| {
                    if rng.random::<f32>() < keep {
                        1.0 / keep
                    } else {
                        0.0
                    }
                })
                .collect();
            let mask = Tensor::<2>::from_data(TensorData::new(mask, [b * s, n_in]), &x.device());
            x2 = x2.mul(mask);
        }
        let h = x2.matmul(e.a.clone().transpose());
        let d = h.matmul(e.b.clone().transpose()).mul_scalar(e.scaling);
        let n_out = d.dims()[1];
        y.add(d.reshape([b, s, n_out]))
    }

    /// The gradients of every factor after `backward`: module key -> `(dA [r, in], dB [out, r])`
    /// (zeros for a factor the loss did not reach).
    ///
    /// # Errors
    /// A gradient that cannot be read back.
    pub fn gradients(&self, grads: &Gradients) -> Result<FactorGrads> {
        let read = |t: &Tensor<2>| -> Result<Vec<f32>> {
            match t.grad(grads) {
                Some(g) => g
                    .into_data()
                    .try_into_vec::<f32>()
                    .map_err(|e| Error::Invalid(format!("reading a gradient: {e:?}"))),
                None => Ok(vec![0.0; t.dims().iter().product()]),
            }
        };
        self.entries
            .iter()
            .map(|(k, e)| Ok((k.clone(), (read(&e.a)?, read(&e.b)?))))
            .collect()
    }
}
