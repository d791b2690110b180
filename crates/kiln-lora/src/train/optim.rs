//! AdamW, learning-rate schedules and gradient clipping on host vectors, with PyTorch's exact
//! semantics (`torch.optim.AdamW`, `get_cosine_schedule_with_warmup` /
//! `get_linear_schedule_with_warmup` of transformers, `clip_grad_norm_`), so a Kiln run and a
//! PEFT run with the same settings take the same steps. Adapter parameters are small, so the
//! update runs on the host between burn's backward passes.

use serde::{Deserialize, Serialize};

/// AdamW hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    /// β₁.
    pub beta1: f64,
    /// β₂.
    pub beta2: f64,
    /// ε added to the denominator.
    pub eps: f64,
    /// Decoupled weight decay (PyTorch's default 0.01).
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }
}

/// AdamW state for a list of parameter vectors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdamW {
    /// Hyper-parameters.
    pub config: AdamWConfig,
    /// Steps taken.
    pub step: u64,
    m: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
}

impl AdamW {
    /// State for parameters of the given sizes.
    #[must_use]
    pub fn new(config: AdamWConfig, sizes: &[usize]) -> Self {
        Self {
            config,
            step: 0,
            m: sizes.iter().map(|&n| vec![0.0; n]).collect(),
            v: sizes.iter().map(|&n| vec![0.0; n]).collect(),
        }
    }

    /// One step on every factor of `adapter` with the gradients of one backward pass (as
    /// [`StepFactors::gradients`](crate::train::StepFactors::gradients) returns them).
    ///
    /// # Panics
    /// When the state was made for other factor sizes (a programming error).
    pub fn step_adapter(
        &mut self,
        lr: f64,
        adapter: &mut crate::LoraAdapter,
        grads: crate::train::FactorGrads,
    ) {
        let grads: Vec<Vec<f32>> = grads.into_values().flat_map(|(a, b)| [a, b]).collect();
        let views: Vec<&[f32]> = grads.iter().map(Vec::as_slice).collect();
        self.step(lr, &mut adapter.factors_mut(), &views);
    }

    /// The first and second moment estimates, one vector per parameter (for checkpoints that
    /// store them outside JSON).
    #[must_use]
    pub fn moments(&self) -> (&[Vec<f32>], &[Vec<f32>]) {
        (&self.m, &self.v)
    }

    /// Restores a state from its step count and moments.
    ///
    /// # Errors
    /// Moment vectors of different counts or lengths.
    pub fn from_moments(
        config: AdamWConfig,
        step: u64,
        m: Vec<Vec<f32>>,
        v: Vec<Vec<f32>>,
    ) -> crate::Result<Self> {
        if m.len() != v.len() || m.iter().zip(&v).any(|(a, b)| a.len() != b.len()) {
            return Err(crate::Error::Invalid(
                "AdamW moments: first and second moments differ in shape".into(),
            ));
        }
        Ok(Self { config, step, m, v })
    }

    /// One update of every parameter with learning rate `lr`:
    /// `p ← p − lr·wd·p`, then the bias-corrected Adam step (PyTorch's order).
    ///
    /// # Panics
    /// When `params` and `grads` do not match the sizes the state was made for (a programming
    /// error, not an input error).
    pub fn step(&mut self, lr: f64, params: &mut [&mut [f32]], grads: &[&[f32]]) {
        assert_eq!(params.len(), self.m.len(), "AdamW: parameter count changed");
        self.step += 1;
        let c = self.config;
        let t = self.step as i32;
        let bc1 = 1.0 - c.beta1.powi(t);
        let bc2 = 1.0 - c.beta2.powi(t);
        let step_size = lr / bc1;
        let bc2_sqrt = bc2.sqrt();
        for (i, p) in params.iter_mut().enumerate() {
            let (m, v, g) = (&mut self.m[i], &mut self.v[i], grads[i]);
            assert_eq!(p.len(), g.len(), "AdamW: gradient size");
            for j in 0..p.len() {
                let gj = f64::from(g[j]);
                let mut pj = f64::from(p[j]);
                pj *= 1.0 - lr * c.weight_decay;
                let mj = c.beta1 * f64::from(m[j]) + (1.0 - c.beta1) * gj;
                let vj = c.beta2 * f64::from(v[j]) + (1.0 - c.beta2) * gj * gj;
                m[j] = mj as f32;
                v[j] = vj as f32;
                let denom = vj.sqrt() / bc2_sqrt + c.eps;
                pj -= step_size * mj / denom;
                p[j] = pj as f32;
            }
        }
    }
}

/// How the learning rate decays after warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// Half a cosine from the peak to 0 (transformers' `cosine`).
    #[default]
    Cosine,
    /// Straight line from the peak to 0 (transformers' `linear`).
    Linear,
    /// Constant after warm-up.
    Constant,
}

impl std::str::FromStr for Schedule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cosine" => Ok(Self::Cosine),
            "linear" => Ok(Self::Linear),
            "constant" => Ok(Self::Constant),
            other => Err(format!(
                "unknown schedule `{other}` (cosine, linear or constant)"
            )),
        }
    }
}

/// The learning rate at optimizer step `step` (0-based) of `total`, after `warmup` linear
/// warm-up steps, as transformers' schedulers compute it.
#[must_use]
pub fn learning_rate(peak: f64, step: usize, warmup: usize, total: usize, s: Schedule) -> f64 {
    if step < warmup {
        return peak * step as f64 / warmup.max(1) as f64;
    }
    let progress = (step - warmup) as f64 / (total.saturating_sub(warmup)).max(1) as f64;
    match s {
        Schedule::Constant => peak,
        Schedule::Linear => peak * (1.0 - progress).max(0.0),
        Schedule::Cosine => peak * (0.5 * (1.0 + (std::f64::consts::PI * progress).cos())).max(0.0),
    }
}

/// Scales `grads` so that their global L2 norm is at most `max_norm` (PyTorch's
/// `clip_grad_norm_`, with its `1e-6` guard); returns the norm before clipping.
pub fn clip_grad_norm(grads: &mut [&mut [f32]], max_norm: f64) -> f64 {
    let total = grads
        .iter()
        .flat_map(|g| g.iter())
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt();
    let coef = max_norm / (total + 1e-6);
    if coef < 1.0 {
        for g in grads.iter_mut() {
            g.iter_mut()
                .for_each(|x| *x = (f64::from(*x) * coef) as f32);
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adamw_matches_pytorch() {
        // torch.optim.AdamW([p], lr=0.1, weight_decay=0.01) with p = [1, -2], two steps with
        // grads [0.5, -1] then [0.25, 2]: p = [0.899, -1.898] then [0.804883, -1.932712] (PyTorch 2.15).
        let mut p = vec![1.0f32, -2.0];
        let mut opt = AdamW::new(AdamWConfig::default(), &[2]);
        opt.step(0.1, &mut [&mut p], &[&[0.5, -1.0]]);
        let after1 = [0.899_f32, -1.898];
        for (a, b) in p.iter().zip(after1) {
            assert!((a - b).abs() < 1e-5, "{p:?}");
        }
        opt.step(0.1, &mut [&mut p], &[&[0.25, 2.0]]);
        assert!((p[0] - 0.804_883).abs() < 1e-5, "{p:?}");
        assert!((p[1] + 1.932_712).abs() < 1e-5, "{p:?}");
    }

    #[test]
    fn schedules() {
        assert_eq!(learning_rate(1.0, 0, 10, 100, Schedule::Cosine), 0.0);
        assert!((learning_rate(1.0, 5, 10, 100, Schedule::Cosine) - 0.5).abs() < 1e-12);
        assert!((learning_rate(1.0, 10, 10, 100, Schedule::Cosine) - 1.0).abs() < 1e-12);
        assert!((learning_rate(1.0, 55, 10, 100, Schedule::Cosine) - 0.5).abs() < 1e-12);
        assert!((learning_rate(1.0, 55, 10, 100, Schedule::Linear) - 0.5).abs() < 1e-12);
        assert!(learning_rate(1.0, 100, 10, 100, Schedule::Cosine).abs() < 1e-12);
    }

    #[test]
    fn clipping() {
        let mut a = vec![3.0f32, 0.0];
        let mut b = vec![4.0f32];
        let n = clip_grad_norm(&mut [&mut a, &mut b], 1.0);
        assert!((n - 5.0).abs() < 1e-9);
        assert!((a[0] - 0.6).abs() < 1e-5 && (b[0] - 0.8).abs() < 1e-5);
    }
}
