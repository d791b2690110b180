//! Contrastive training of CLIP: the symmetric InfoNCE loss over a batch of image-caption pairs
//! with the learnable temperature (`logit_scale`, clamped at `ln 100` as CLIP does), AdamW with
//! linear warmup and cosine decay, a progress bar, and `loss.csv` / `loss.png`.
//!
//! A batch may hold several pairs that describe the same thing: identical captions, or pairs put in
//! one [`Pair::group`] (e.g. a class label, when captions are phrased several ways). Those captions
//! are all correct for each of their images, so the target of an image spreads evenly over them
//! (and the same for texts). With distinct captions and no groups this is exactly CLIP's loss.

use std::path::Path;
use std::time::Instant;

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Tensor, TensorData};
use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::clip::{pixel_values, tokens};
use crate::lora::LoraHook;
use crate::model::ClipModel;
use crate::preprocess::RgbImage;
use crate::{Clip, ClipError, Result};
use kiln_lora::LoraAdapter;
use kiln_lora::train::{AdamW as LoraAdamW, AdamWConfig as LoraAdamWConfig, StepFactors};

/// One training pair.
#[derive(Debug, Clone)]
pub struct Pair {
    /// The image.
    pub image: RgbImage,
    /// Its caption.
    pub caption: String,
    /// Pairs with the same group are positives for each other (a class label, say); `None` for
    /// pairs that match only their own caption (and identical captions).
    pub group: Option<u64>,
}

/// Settings of a contrastive run.
#[derive(Debug, Clone, PartialEq)]
pub struct ContrastiveConfig {
    /// Passes over the data.
    pub epochs: usize,
    /// Pairs per step.
    pub batch_size: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// AdamW's decoupled weight decay.
    pub weight_decay: f64,
    /// Steps of linear warmup before the cosine decay.
    pub warmup_steps: usize,
    /// Stop after this many steps (the schedule still spans all epochs).
    pub max_steps: Option<usize>,
    /// Seed of the shuffling (weights are initialised by the caller).
    pub seed: u64,
    /// Show a progress bar.
    pub progress: bool,
    /// Train a LoRA adapter (kiln-lora, PEFT's format and target rules: e.g. `q_proj`, `v_proj`
    /// of both towers) instead of every weight; the towers and the temperature stay frozen.
    pub lora: Option<kiln_lora::LoraConfig>,
}

impl Default for ContrastiveConfig {
    fn default() -> Self {
        Self {
            epochs: 1,
            batch_size: 128,
            lr: 1e-3,
            weight_decay: 0.05,
            warmup_steps: 50,
            max_steps: None,
            seed: 0,
            progress: true,
            lora: None,
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, PartialEq)]
pub struct ContrastiveReport {
    /// Steps taken.
    pub steps: usize,
    /// Loss of each step.
    pub losses: Vec<f32>,
    /// Wall time, seconds.
    pub seconds: f64,
    /// Pairs per second.
    pub pairs_per_second: f64,
    /// The trained adapter, for a LoRA run (also merged into the returned model, and saved in
    /// PEFT's format to `out/adapter/` when `out` is given).
    pub adapter: Option<kiln_lora::LoraAdapter>,
}

/// Learning rate at `step` (0-based): linear warmup, then cosine decay to zero at `total`.
#[must_use]
pub fn learning_rate(peak: f64, step: usize, warmup: usize, total: usize) -> f64 {
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let span = total.saturating_sub(warmup).max(1) as f64;
    let t = ((step - warmup) as f64 / span).min(1.0);
    peak * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
}

/// The target matrix of a batch: row `i` spreads `1` evenly over the pairs that match pair `i`
/// (same caption, or same group).
fn targets(captions: &[&str], groups: &[Option<u64>]) -> Vec<f32> {
    let n = captions.len();
    let mut t = vec![0f32; n * n];
    let matches = |i: usize, j: usize| {
        captions[i] == captions[j] || matches!((groups[i], groups[j]), (Some(a), Some(b)) if a == b)
    };
    for i in 0..n {
        let same: Vec<usize> = (0..n).filter(|&j| matches(i, j)).collect();
        for &j in &same {
            t[i * n + j] = 1.0 / same.len() as f32;
        }
    }
    t
}

/// The symmetric contrastive loss of a batch.
///
/// # Shapes
/// - `logits`: `[n, n]` (`logits_per_image`), `targets`: `[n, n]` -> `[1]`
#[must_use]
pub fn contrastive_loss(logits: Tensor<2>, targets: Tensor<2>) -> Tensor<1> {
    let n = logits.dims()[0] as f64;
    let per_image = log_softmax(logits.clone(), 1)
        .mul(targets.clone())
        .sum()
        .neg();
    let per_text = log_softmax(logits.transpose(), 1)
        .mul(targets.transpose())
        .sum()
        .neg();
    (per_image + per_text).div_scalar(2.0 * n)
}

/// Trains `clip` on `pairs`, writing `loss.csv` and `loss.png` into `out` when given.
///
/// The model is moved to `device`'s autodiff twin for the run and returned on `device`.
///
/// # Errors
/// Fewer pairs than one batch of 2, a preprocessing failure, or an I/O error on `out`.
pub fn train_contrastive(
    clip: Clip,
    pairs: &[Pair],
    config: &ContrastiveConfig,
    out: Option<&Path>,
) -> Result<(Clip, ContrastiveReport)> {
    let batch = config.batch_size.min(pairs.len());
    if batch < 2 {
        return Err(ClipError::Train(format!(
            "contrastive training needs batches of at least 2 pairs; got {} pairs, batch size {}",
            pairs.len(),
            config.batch_size
        )));
    }
    let steps_per_epoch = pairs.len() / batch;
    let total = steps_per_epoch * config.epochs;
    let steps = config.max_steps.map_or(total, |m| m.min(total));
    let (model, cfg, tokenizer, pp, name) = clip.into_parts();
    let device = model.device();
    let ad = device.clone().autodiff();
    let mut model: ClipModel = model.fork(&ad).train();
    let mut lora = match &config.lora {
        Some(cfg) => {
            model = model.no_grad();
            let adapter =
                LoraAdapter::init("clip", cfg.clone(), &model.linear_modules(), config.seed)
                    .map_err(|e| ClipError::Train(format!("LoRA: {e}")))?;
            let optim = LoraAdamW::new(
                LoraAdamWConfig {
                    weight_decay: config.weight_decay,
                    ..LoraAdamWConfig::default()
                },
                &adapter.factor_sizes(),
            );
            Some((adapter, optim))
        }
        None => None,
    };
    let mut optim = AdamWConfig::new()
        .with_weight_decay(config.weight_decay as f32)
        .with_epsilon(1e-8)
        .init();
    let max_scale = 100f32.ln();
    let bar = if config.progress {
        let b = ProgressBar::new(steps as u64);
        b.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} steps, {msg} [{elapsed} < {eta}]")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    } else {
        ProgressBar::hidden()
    };
    let mut rng = StdRng::seed_from_u64(config.seed);
    let mut order: Vec<usize> = (0..pairs.len()).collect();
    let mut losses = Vec::with_capacity(steps);
    let started = Instant::now();
    let (side, context) = (
        cfg.vision_config.image_size,
        cfg.text_config.max_position_embeddings,
    );
    let mut step = 0;
    'epochs: for _ in 0..config.epochs {
        order.shuffle(&mut rng);
        for chunk in order.chunks_exact(batch) {
            if step >= steps {
                break 'epochs;
            }
            let images: Vec<RgbImage> = chunk.iter().map(|&i| pairs[i].image.clone()).collect();
            let captions: Vec<&str> = chunk.iter().map(|&i| pairs[i].caption.as_str()).collect();
            let groups: Vec<Option<u64>> = chunk.iter().map(|&i| pairs[i].group).collect();
            let pixels = pixel_values(&images, &pp, side, &ad)?;
            let tokens = tokens(&tokenizer, &captions, context)?;
            let factors = lora.as_ref().map(|(adapter, _)| {
                let dropout = config.lora.as_ref().map_or(0.0, |c| c.lora_dropout as f32);
                StepFactors::new(adapter, &ad, dropout, config.seed ^ (step as u64 + 1))
            });
            let (img, txt) = match &factors {
                Some(f) => (
                    model.image_features_with(pixels, &LoraHook(f))?,
                    model.text_features_with(&tokens, &LoraHook(f))?,
                ),
                None => (model.image_features(pixels)?, model.text_features(&tokens)?),
            };
            let logits = model.logits(img, txt);
            let t = Tensor::<2>::from_data(
                TensorData::new(targets(&captions, &groups), [batch, batch]),
                &ad,
            );
            let loss = contrastive_loss(logits, t);
            let value: f32 = loss
                .clone()
                .into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .map_err(|e| ClipError::Train(format!("reading the loss: {e:?}")))?[0];
            if !value.is_finite() {
                return Err(ClipError::Train(format!(
                    "loss became {value} at step {}; lower the learning rate",
                    step + 1
                )));
            }
            let lr = learning_rate(config.lr, step, config.warmup_steps, steps);
            match (&mut lora, &factors) {
                (Some((adapter, lopt)), Some(f)) => {
                    let g = f
                        .gradients(&loss.backward())
                        .map_err(|e| ClipError::Train(format!("LoRA gradients: {e}")))?;
                    lopt.step_adapter(lr, adapter, g);
                }
                _ => {
                    let grads = GradientsParams::from_grads(loss.backward(), &model);
                    model = optim.step(lr, model, grads);
                    model.logit_scale = model.logit_scale.map(|s| s.clamp_max(max_scale).detach());
                }
            }
            losses.push(value);
            step += 1;
            bar.set_message(format!("loss {value:.4}"));
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    let mut model = model.valid().to_device(&device);
    if let Some(out) = out {
        kiln_core::plot::write_loss_files(out, &losses).map_err(|e| ClipError::io(out, e))?;
    }
    let adapter = match lora {
        Some((adapter, _)) => {
            model.merge_lora(&adapter, 1.0)?;
            if let Some(out) = out {
                adapter
                    .save(out.join("adapter"))
                    .map_err(|e| ClipError::Train(format!("saving the adapter: {e}")))?;
            }
            Some(adapter)
        }
        None => None,
    };
    let report = ContrastiveReport {
        steps: losses.len(),
        pairs_per_second: (losses.len() * batch) as f64 / seconds.max(1e-9),
        losses,
        seconds,
        adapter,
    };
    Ok((Clip::new(model, cfg, tokenizer, pp, name)?, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warms_up_then_decays_to_zero() {
        assert!((learning_rate(1.0, 0, 4, 10) - 0.25).abs() < 1e-12);
        assert!((learning_rate(1.0, 3, 4, 10) - 1.0).abs() < 1e-12);
        assert!((learning_rate(1.0, 4, 4, 10) - 1.0).abs() < 1e-12);
        assert!(learning_rate(1.0, 10, 4, 10).abs() < 1e-12);
    }

    #[test]
    fn duplicate_captions_share_the_target() {
        let t = targets(&["a", "b", "a"], &[None; 3]);
        assert_eq!(t, vec![0.5, 0.0, 0.5, 0.0, 1.0, 0.0, 0.5, 0.0, 0.5]);
        let t = targets(&["a", "b", "c"], &[Some(1), None, Some(1)]);
        assert_eq!(t, vec![0.5, 0.0, 0.5, 0.0, 1.0, 0.0, 0.5, 0.0, 0.5]);
    }

    #[test]
    fn loss_matches_cross_entropy_for_distinct_captions() {
        let d = burn::tensor::Device::flex();
        let logits =
            Tensor::<2>::from_data(TensorData::new(vec![2.0f32, 0.0, 1.0, 3.0], [2, 2]), &d);
        let t = Tensor::<2>::from_data(
            TensorData::new(targets(&["x", "y"], &[None, None]), [2, 2]),
            &d,
        );
        let got: f32 = contrastive_loss(logits, t).into_scalar();
        // Rows: -log softmax([2,0])[0], -log softmax([1,3])[1]; columns: [2,1] -> 0, [0,3] -> 1.
        let ce = |a: f32, b: f32| (a.exp() + b.exp()).ln() - a;
        let want = (ce(2.0, 0.0) + ce(3.0, 1.0) + ce(2.0, 1.0) + ce(3.0, 0.0)) / 4.0;
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    }
}
