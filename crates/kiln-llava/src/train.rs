//! LLaVA's training stages. Stage 1: the projector learns to map frozen vision features into a
//! frozen language model's embedding space from image-caption pairs. Stage 2 (with
//! [`ProjectorTrainConfig::lora`]): a kiln-lora adapter on the language model trains along with the
//! projector (LLaVA fine-tunes the language model there; LoRA is the memory-light form). The loss is
//! the language model's cross-entropy on the answer tokens only; gradients flow back through the
//! decoder into the projector (burn's AdamW) and the LoRA factors (kiln-lora's AdamW). Vision
//! features are computed once, before training, since the tower is frozen.

use std::path::Path;
use std::time::Instant;

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use kiln_llama::kiln_lora::LoraAdapter;
use kiln_llama::kiln_lora::train::{
    AdamW as LoraAdamW, AdamWConfig as LoraAdamWConfig, StepFactors,
};
use kiln_llama::lora::linear_modules;
use kiln_llama::{KvCache, LinearAdapter, Llama, NoAdapter, Site};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::model::{Projector, splice};
use crate::{Error, Result};
use kiln_clip::train::learning_rate;

/// One training pair: frozen vision features, the text before the answer, and the answer.
#[derive(Debug, Clone)]
pub struct CaptionExample {
    /// Vision features `[tokens_per_image, vision width]`, row-major.
    pub features: Vec<f32>,
    /// Token ids after the image (the question or lead-in).
    pub prompt: Vec<u32>,
    /// Token ids of the answer (labelled), usually ending with the end-of-turn token.
    pub answer: Vec<u32>,
}

/// Settings of a projector run.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectorTrainConfig {
    /// Passes over the data.
    pub epochs: usize,
    /// Examples per step.
    pub batch_size: usize,
    /// Peak learning rate (linear warmup, then cosine decay).
    pub lr: f64,
    /// Warmup steps.
    pub warmup_steps: usize,
    /// Stop after this many steps.
    pub max_steps: Option<usize>,
    /// Shuffling seed.
    pub seed: u64,
    /// Show a progress bar.
    pub progress: bool,
    /// Stage 2: also train a LoRA adapter on the language model (PEFT's target rules).
    pub lora: Option<kiln_llama::kiln_lora::LoraConfig>,
}

impl Default for ProjectorTrainConfig {
    fn default() -> Self {
        Self {
            epochs: 1,
            batch_size: 8,
            lr: 1e-3,
            warmup_steps: 10,
            max_steps: None,
            seed: 0,
            progress: true,
            lora: None,
        }
    }
}

/// Routes the decoder's linear maps to tracked LoRA factors by PEFT module key.
struct Factors<'a>(&'a StepFactors);

impl LinearAdapter for Factors<'_> {
    fn adapt(&self, site: Site, x: &Tensor<3>, y: Tensor<3>) -> Tensor<3> {
        self.0.apply(&site.key(), x, y)
    }
}

/// What a run did.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectorReport {
    /// Steps taken.
    pub steps: usize,
    /// Mean answer-token loss of each step.
    pub losses: Vec<f32>,
    /// Wall time, seconds.
    pub seconds: f64,
    /// The stage-2 adapter on the language model, when one was trained.
    pub adapter: Option<LoraAdapter>,
}

/// The token rows of a batch: image placeholders, prompt, answer, right-padded; labels at the
/// answer positions. Returns `(ids, labels (-1 = none), seq)`.
fn rows(
    batch: &[&CaptionExample],
    per_image: usize,
    image_token: u32,
    pad: u32,
) -> (Vec<u32>, Vec<i64>, usize) {
    let seq = batch
        .iter()
        .map(|e| per_image + e.prompt.len() + e.answer.len())
        .max()
        .unwrap_or(0);
    let mut ids = Vec::with_capacity(batch.len() * seq);
    let mut labels = Vec::with_capacity(batch.len() * seq);
    for e in batch {
        let start = ids.len();
        ids.extend(std::iter::repeat_n(image_token, per_image));
        ids.extend_from_slice(&e.prompt);
        labels.extend(std::iter::repeat_n(-1i64, per_image + e.prompt.len()));
        ids.extend_from_slice(&e.answer);
        labels.extend(e.answer.iter().map(|&t| i64::from(t)));
        let used = ids.len() - start;
        ids.extend(std::iter::repeat_n(pad, seq - used));
        labels.extend(std::iter::repeat_n(-1i64, seq - used));
    }
    (ids, labels, seq)
}

/// The decoder's final hidden states for rows whose image features are `projected`.
fn hidden(
    language: &Llama,
    projected: Tensor<3>,
    ids: &[u32],
    batch: usize,
    image_token: u32,
    adapter: &dyn LinearAdapter,
) -> Result<Tensor<3>> {
    let tokens = language.ids_tensor(ids, batch);
    let x = splice(language.embed(tokens), projected, ids, image_token);
    let seq = ids.len() / batch;
    let mut cache = KvCache::new(language.config.num_hidden_layers, seq);
    Ok(language.hidden_states_from_embeds(x, &mut cache, adapter)?)
}

/// Mean cross-entropy over the labelled positions (position `i - 1` predicts token `i`).
fn answer_loss(
    language: &Llama,
    h: Tensor<3>,
    labels: &[i64],
    adapter: &dyn LinearAdapter,
) -> Result<Tensor<1>> {
    let [b, t, d] = h.dims();
    let device = h.device();
    let mut rows = Vec::new();
    let mut targets = Vec::new();
    for r in 0..b {
        for i in 1..t {
            let l = labels[r * t + i];
            if l >= 0 {
                rows.push((r * t + i - 1) as i64);
                targets.push(l);
            }
        }
    }
    let n = rows.len();
    if n == 0 {
        return Err(Error::Input("a batch without answer tokens".into()));
    }
    let rows = Tensor::<1, Int>::from_data(TensorData::new(rows, [n]), &device);
    let picked = h.reshape([b * t, d]).select(0, rows).reshape([1, n, d]);
    let logits = language.logits(picked, adapter);
    let targets = Tensor::<3, Int>::from_data(TensorData::new(targets, [1, n, 1]), &device);
    Ok(log_softmax(logits, 2)
        .gather(2, targets)
        .sum()
        .neg()
        .div_scalar(n as f32))
}

/// Trains `projector` (on an autodiff device, as is `language`, whose weights stay constant) on
/// `examples`; writes `loss.csv` and `loss.png` to `out` when given.
///
/// # Errors
/// Examples whose feature sizes disagree with the projector, or a diverging loss.
pub fn train_projector(
    mut projector: Projector,
    language: &Llama,
    image_token: u32,
    examples: &[CaptionExample],
    config: &ProjectorTrainConfig,
    out: Option<&Path>,
) -> Result<(Projector, ProjectorReport)> {
    let device = language.device().clone();
    let [vin, _] = projector.linear_1.weight.val().dims();
    let per_image = examples
        .first()
        .map_or(0, |e| e.features.len() / vin.max(1));
    if per_image == 0 || examples.iter().any(|e| e.features.len() != per_image * vin) {
        return Err(Error::Input(format!(
            "every example needs [tokens, {vin}] vision features of one token count"
        )));
    }
    let pad = language.config.eos_token_ids.first().copied().unwrap_or(0);
    let batch = config.batch_size.clamp(1, examples.len().max(1));
    let per_epoch = examples.len() / batch;
    let total = config.max_steps.map_or(per_epoch * config.epochs, |m| {
        m.min(per_epoch * config.epochs)
    });
    let mut optim = AdamWConfig::new().with_weight_decay(0.0).init();
    let mut lora = match &config.lora {
        Some(cfg) => {
            let adapter = LoraAdapter::init(
                "llava",
                cfg.clone(),
                &linear_modules(&language.config),
                config.seed,
            )
            .map_err(|e| Error::Input(format!("LoRA: {e}")))?;
            let opt = LoraAdamW::new(
                LoraAdamWConfig {
                    weight_decay: 0.0,
                    ..LoraAdamWConfig::default()
                },
                &adapter.factor_sizes(),
            );
            Some((adapter, opt))
        }
        None => None,
    };
    let bar = if config.progress {
        let b = indicatif::ProgressBar::new(total as u64);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} steps, {msg} [{elapsed} < {eta}]",
        ) {
            b.set_style(style);
        }
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut rng = StdRng::seed_from_u64(config.seed);
    let mut order: Vec<usize> = (0..examples.len()).collect();
    let mut losses = Vec::with_capacity(total);
    let started = Instant::now();
    'epochs: for _ in 0..config.epochs {
        order.shuffle(&mut rng);
        for chunk in order.chunks_exact(batch) {
            let step = losses.len();
            if step >= total {
                break 'epochs;
            }
            let items: Vec<&CaptionExample> = chunk.iter().map(|&i| &examples[i]).collect();
            let (ids, labels, _) = rows(&items, per_image, image_token, pad);
            let feats: Vec<f32> = items
                .iter()
                .flat_map(|e| e.features.iter().copied())
                .collect();
            let feats =
                Tensor::<3>::from_data(TensorData::new(feats, [batch, per_image, vin]), &device);
            let factors = lora.as_ref().map(|(adapter, _)| {
                let dropout = config.lora.as_ref().map_or(0.0, |c| c.lora_dropout as f32);
                StepFactors::new(adapter, &device, dropout, config.seed ^ (step as u64 + 1))
            });
            let adapter: Box<dyn LinearAdapter> = match &factors {
                Some(f) => Box::new(Factors(f)),
                None => Box::new(NoAdapter),
            };
            let h = hidden(
                language,
                projector.forward(feats),
                &ids,
                batch,
                image_token,
                adapter.as_ref(),
            )?;
            let loss = answer_loss(language, h, &labels, adapter.as_ref())?;
            let value = loss
                .clone()
                .into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .map_err(|e| Error::Input(format!("reading the loss: {e:?}")))?[0];
            if !value.is_finite() {
                return Err(Error::Input(format!(
                    "the loss became {value} at step {}",
                    step + 1
                )));
            }
            let lr = learning_rate(config.lr, step, config.warmup_steps, total);
            let grads = loss.backward();
            if let (Some((adapter, opt)), Some(f)) = (lora.as_mut(), factors.as_ref()) {
                let g = f
                    .gradients(&grads)
                    .map_err(|e| Error::Input(format!("LoRA gradients: {e}")))?;
                opt.step_adapter(lr, adapter, g);
            }
            let grads = GradientsParams::from_grads(grads, &projector);
            projector = optim.step(lr, projector, grads);
            losses.push(value);
            bar.set_message(format!("loss {value:.4}"));
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    if let Some(out) = out {
        kiln_core::plot::write_loss_files(out, &losses).map_err(|source| Error::Io {
            path: out.display().to_string(),
            source,
        })?;
    }
    Ok((
        projector,
        ProjectorReport {
            steps: losses.len(),
            losses,
            seconds: started.elapsed().as_secs_f64(),
            adapter: lora.map(|(a, _)| a),
        },
    ))
}

/// For each example (its `answer` ignored), which of `candidates` the model puts first at the
/// position after the prompt, compared by the candidates' first tokens (which must differ).
/// `projector` may be the training module; it is used without gradients.
///
/// # Errors
/// Candidates whose first tokens collide, or forward errors.
pub fn choose_first_token(
    projector: &Projector,
    language: &Llama,
    lora: Option<&LoraAdapter>,
    image_token: u32,
    examples: &[CaptionExample],
    candidates: &[Vec<u32>],
    batch: usize,
) -> Result<Vec<usize>> {
    let frozen = lora.map(|a| StepFactors::frozen(a, language.device()));
    let adapter: Box<dyn LinearAdapter> = match &frozen {
        Some(f) => Box::new(Factors(f)),
        None => Box::new(NoAdapter),
    };
    let firsts: Vec<u32> = candidates
        .iter()
        .map(|c| {
            c.first()
                .copied()
                .ok_or_else(|| Error::Input("an empty candidate".into()))
        })
        .collect::<Result<_>>()?;
    let mut sorted = firsts.clone();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.len() != firsts.len() {
        return Err(Error::Input("candidates share a first token".into()));
    }
    let device = language.device().clone();
    let plain = projector.valid();
    let [vin, _] = plain.linear_1.weight.val().dims();
    let mut out = Vec::with_capacity(examples.len());
    for chunk in examples.chunks(batch.max(1)) {
        let per_image = chunk[0].features.len() / vin;
        let stripped: Vec<CaptionExample> = chunk
            .iter()
            .map(|e| CaptionExample {
                answer: Vec::new(),
                ..e.clone()
            })
            .collect();
        let refs: Vec<&CaptionExample> = stripped.iter().collect();
        let pad = language.config.eos_token_ids.first().copied().unwrap_or(0);
        let (ids, _, seq) = rows(&refs, per_image, image_token, pad);
        let b = chunk.len();
        let feats: Vec<f32> = chunk
            .iter()
            .flat_map(|e| e.features.iter().copied())
            .collect();
        let inner = plain.linear_1.weight.val().device();
        let projected = plain.forward(Tensor::<3>::from_data(
            TensorData::new(feats, [b, per_image, vin]),
            &inner,
        ));
        let projected = Tensor::<3>::from_data(projected.into_data(), &device);
        let h = hidden(language, projected, &ids, b, image_token, adapter.as_ref())?;
        let d = h.dims()[2];
        let logits = language.logits(h, adapter.as_ref());
        let v = logits.dims()[2];
        let values = logits
            .reshape([b * seq, v])
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| Error::Input(format!("reading logits: {e:?}")))?;
        let _ = d;
        for (r, e) in stripped.iter().enumerate() {
            let last = r * seq + per_image + e.prompt.len() - 1;
            let row = &values[last * v..(last + 1) * v];
            let best = firsts
                .iter()
                .enumerate()
                .max_by(|a, b| row[*a.1 as usize].total_cmp(&row[*b.1 as usize]))
                .map_or(0, |(i, _)| i);
            out.push(best);
        }
    }
    Ok(out)
}

/// Greedy continuation of each example's prompt, up to `max_new` tokens or an end token.
///
/// # Errors
/// Forward errors.
pub fn greedy_answers(
    projector: &Projector,
    language: &Llama,
    lora: Option<&LoraAdapter>,
    image_token: u32,
    examples: &[CaptionExample],
    max_new: usize,
) -> Result<Vec<Vec<u32>>> {
    let frozen = lora.map(|a| StepFactors::frozen(a, language.device()));
    let adapter: Box<dyn LinearAdapter> = match &frozen {
        Some(f) => Box::new(Factors(f)),
        None => Box::new(NoAdapter),
    };
    let device: Device = language.device().clone();
    let plain = projector.valid();
    let [vin, _] = plain.linear_1.weight.val().dims();
    let inner = plain.linear_1.weight.val().device();
    let stop = &language.config.eos_token_ids;
    let mut out = Vec::with_capacity(examples.len());
    for e in examples {
        let per_image = e.features.len() / vin;
        let mut ids: Vec<u32> = std::iter::repeat_n(image_token, per_image).collect();
        ids.extend_from_slice(&e.prompt);
        let projected = plain.forward(Tensor::<3>::from_data(
            TensorData::new(e.features.clone(), [1, per_image, vin]),
            &inner,
        ));
        let projected = Tensor::<3>::from_data(projected.into_data(), &device);
        let mut cache = KvCache::new(language.config.num_hidden_layers, ids.len() + max_new);
        let x = splice(
            language.embed(language.ids_tensor(&ids, 1)),
            projected,
            &ids,
            image_token,
        );
        let mut h = language.hidden_states_from_embeds(x, &mut cache, adapter.as_ref())?;
        let mut answer = Vec::new();
        for _ in 0..max_new {
            let [_, t, d] = h.dims();
            let logits = language.logits(h.slice([0..1, t - 1..t, 0..d]), adapter.as_ref());
            let next = logits
                .argmax(2)
                .into_data()
                .convert::<i64>()
                .try_into_vec::<i64>()
                .map_err(|e| Error::Input(format!("reading a token: {e:?}")))?[0]
                as u32;
            if stop.contains(&next) {
                break;
            }
            answer.push(next);
            let x = language.embed(language.ids_tensor(&[next], 1));
            h = language.hidden_states_from_embeds(x, &mut cache, adapter.as_ref())?;
        }
        out.push(answer);
    }
    Ok(out)
}
