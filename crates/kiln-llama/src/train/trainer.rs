//! The LoRA training loop: seeded shuffling, micro-batches with gradient accumulation (the loss
//! of an optimizer step is the mean over all its label tokens, as transformers' Trainer computes
//! it with `num_items_in_batch`), global-norm clipping, AdamW, warm-up and decay, evaluation loss
//! and perplexity every N steps, atomic checkpoints with resume, a progress bar, and a loss curve
//! (`loss.csv` and `loss.png`) next to the adapter.

use std::path::{Path, PathBuf};

use kiln_core::TextGenerator;
use kiln_lora::train::privacy::{RdpAccountant, add_noise, clip_per_example};
use kiln_lora::train::{AdamW, AdamWConfig, Schedule, StepFactors, clip_grad_norm, learning_rate};
use kiln_lora::{LoraAdapter, LoraConfig, write_atomic};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use super::{Batch, Distill, Example, loss_sum, loss_sum_distilled, teacher_logits};
use crate::generate::LlamaGenerator;
use crate::lora::linear_modules;
use crate::{Error, Result};

/// Settings of a training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// The adapter to train (rank, alpha, targets, dropout, ...).
    pub lora: LoraConfig,
    /// Passes over the data.
    pub epochs: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Sequences per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimizer step.
    pub grad_accum: usize,
    /// Linear warm-up steps.
    pub warmup_steps: usize,
    /// Decay after warm-up.
    pub schedule: Schedule,
    /// AdamW settings.
    pub adamw: AdamWConfig,
    /// Clip the global gradient norm to this; `None` disables.
    pub max_grad_norm: Option<f64>,
    /// Seed of initialisation, shuffling and dropout.
    pub seed: u64,
    /// Sequences are cut to this many tokens.
    pub max_len: usize,
    /// Evaluate every this many steps (0: only at the end).
    pub eval_every: usize,
    /// Checkpoint every this many steps (0: only at the end).
    pub save_every: usize,
    /// Stop after this many optimizer steps (`None`: run every epoch).
    pub max_steps: Option<usize>,
    /// What is trained: a LoRA adapter (default), every tensor, or the top layers.
    #[serde(default)]
    pub method: super::Method,
    /// Distil from a teacher given to [`Trainer::with_teacher`].
    pub distill: Option<Distill>,
    /// Differentially private training (DP-SGD); replaces the global clipping.
    pub dp: Option<DpConfig>,
    /// Stop this invocation after this many steps in total, leaving a checkpoint to resume
    /// from (a time-boxed run; the schedule still spans the whole run).
    pub stop_after: Option<usize>,
    /// Show a progress bar on stderr.
    pub progress: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            lora: LoraConfig {
                r: 8,
                lora_alpha: 16.0,
                ..LoraConfig::default()
            },
            epochs: 1,
            lr: 2e-4,
            batch_size: 4,
            grad_accum: 1,
            warmup_steps: 0,
            schedule: Schedule::Cosine,
            adamw: AdamWConfig::default(),
            max_grad_norm: Some(1.0),
            seed: 42,
            max_len: 512,
            eval_every: 0,
            save_every: 0,
            max_steps: None,
            method: super::Method::Lora,
            distill: None,
            dp: None,
            stop_after: None,
            progress: true,
        }
    }
}

/// DP-SGD (Abadi et al., 2016): per-example gradients clipped to `max_grad_norm`, Gaussian
/// noise of standard deviation `noise_multiplier · max_grad_norm` added to their sum. The privacy
/// spent is reported with Opacus' RDP accountant at `delta`, for sampling rate
/// `examples per step / training examples` (batches are drawn by shuffling, the usual
/// approximation of the Poisson sampling the analysis assumes).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DpConfig {
    /// Noise standard deviation relative to the clipping bound (σ).
    pub noise_multiplier: f64,
    /// Per-example gradient norm bound (C).
    pub max_grad_norm: f64,
    /// The δ of the reported (ε, δ) guarantee.
    pub delta: f64,
}

/// One line of the loss curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Optimizer step (1-based).
    pub step: usize,
    /// Learning rate used.
    pub lr: f64,
    /// Mean training loss of the step.
    pub loss: f64,
    /// Evaluation loss, when evaluated at this step.
    pub eval_loss: Option<f64>,
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    /// Optimizer steps taken in total (including before a resume).
    pub steps: usize,
    /// The loss curve.
    pub log: Vec<LogEntry>,
    /// Evaluation loss before training, when evaluation data was given.
    pub initial_eval_loss: Option<f64>,
    /// Final evaluation loss.
    pub final_eval_loss: Option<f64>,
    /// Training tokens per second (label and context tokens of this run's steps).
    pub tokens_per_second: f64,
    /// Whether the run resumed from a checkpoint.
    pub resumed_from: Option<usize>,
    /// With DP-SGD: the ε spent (at the configured δ) after all steps so far.
    pub dp_epsilon: Option<f64>,
}

#[derive(Serialize, Deserialize)]
struct State {
    step: usize,
    optimizer: AdamW,
    log: Vec<LogEntry>,
    initial_eval_loss: Option<f64>,
    config: TrainConfig,
}

/// The burn model of a generator (training cannot run on Kiln's CPU engine).
fn burn_model(model: &LlamaGenerator) -> Result<&crate::Llama> {
    model
        .model()
        .ok_or_else(|| Error::Invalid("training needs the burn engine".into()))
}

/// A micro-batch's loss and its gradients (`[dA, dB]` per module).
type LossGrads = (f64, Vec<Vec<f32>>);

/// Trains a LoRA adapter on a model opened on an autodiff device.
pub struct Trainer<'a> {
    pub(super) model: &'a LlamaGenerator,
    pub(super) config: TrainConfig,
    pub(super) teacher: Option<&'a LlamaGenerator>,
    /// Copies of the model on other devices (data parallelism).
    pub(super) replicas: Vec<&'a LlamaGenerator>,
}

impl std::fmt::Debug for Trainer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer")
            .field("config", &self.config)
            .finish()
    }
}

impl<'a> Trainer<'a> {
    /// A trainer for `model`, which must run on burn with an autodiff device
    /// (`LlamaGenerator::open(path, &device.autodiff())`).
    ///
    /// # Errors
    /// A model on Kiln's CPU engine, or invalid settings.
    pub fn new(model: &'a LlamaGenerator, config: TrainConfig) -> Result<Self> {
        if model.model().is_none() {
            return Err(Error::Invalid(
                "training needs the burn engine on an autodiff device".into(),
            ));
        }
        if config.batch_size == 0 || config.grad_accum == 0 || config.epochs == 0 {
            return Err(Error::Invalid(
                "batch size, gradient accumulation and epochs must be at least 1".into(),
            ));
        }
        if !(config.lr.is_finite() && config.lr > 0.0) {
            return Err(Error::Invalid(format!(
                "learning rate {} must be > 0",
                config.lr
            )));
        }
        config.lora.validate("<train config>")?;
        if let Some(d) = config.distill
            && !((0.0..=1.0).contains(&d.alpha) && d.temperature > 0.0)
        {
            return Err(Error::Invalid(format!(
                "distillation needs alpha in [0, 1] and a positive temperature (got {} and {})",
                d.alpha, d.temperature
            )));
        }
        if let Some(dp) = config.dp
            && !(dp.noise_multiplier >= 0.0
                && dp.max_grad_norm > 0.0
                && dp.delta > 0.0
                && dp.delta < 1.0)
        {
            return Err(Error::Invalid(format!(
                "DP-SGD needs noise >= 0, a positive clipping norm and delta in (0, 1) (got {}, {}, {})",
                dp.noise_multiplier, dp.max_grad_norm, dp.delta
            )));
        }
        Ok(Self {
            model,
            config,
            teacher: None,
            replicas: Vec::new(),
        })
    }

    /// Data parallelism over several devices: `replicas` are the same model opened on other
    /// (autodiff) devices. Each optimizer step's micro-batches (`grad_accum` of them) are spread
    /// over the model and its replicas, computed at once, and their gradients summed on the host
    /// in micro-batch order, so the run gives the adapter of a one-device run with the same
    /// settings, bit for bit. LoRA and QLoRA only, without DP-SGD (whose per-example gradients
    /// run on the first device).
    ///
    /// # Errors
    /// A replica on Kiln's CPU engine, or of another model shape.
    pub fn with_replicas(mut self, replicas: &'a [LlamaGenerator]) -> Result<Self> {
        for (i, r) in replicas.iter().enumerate() {
            if r.model().is_none() {
                return Err(Error::Invalid(format!(
                    "replica {i}: training needs the burn engine on an autodiff device"
                )));
            }
            let (a, b) = (r.config(), self.model.config());
            if (a.vocab_size, a.hidden_size, a.num_hidden_layers)
                != (b.vocab_size, b.hidden_size, b.num_hidden_layers)
            {
                return Err(Error::Invalid(format!(
                    "replica {i} is not the same model (vocabulary, width or depth differ)"
                )));
            }
        }
        if !replicas.is_empty() && self.config.method != super::Method::Lora {
            return Err(Error::Invalid(
                "several devices train LoRA and QLoRA adapters only (not full or partial)".into(),
            ));
        }
        self.replicas = replicas.iter().collect();
        Ok(self)
    }

    /// Sets the teacher for knowledge distillation (any engine; it must share the student's
    /// vocabulary). Requires `config.distill`.
    ///
    /// # Errors
    /// A teacher whose vocabulary differs from the student's.
    pub fn with_teacher(mut self, teacher: &'a LlamaGenerator) -> Result<Self> {
        let (a, b) = (teacher.config().vocab_size, self.model.config().vocab_size);
        if a != b {
            return Err(Error::Invalid(format!(
                "the teacher's vocabulary ({a}) differs from the student's ({b})"
            )));
        }
        self.teacher = Some(teacher);
        Ok(self)
    }

    /// Mean loss over `data` (no gradients kept).
    ///
    /// # Errors
    /// Forward errors.
    pub fn evaluate(&self, adapter: &LoraAdapter, data: &[Example]) -> Result<f64> {
        let llama = self.llama()?;
        let factors = StepFactors::frozen(adapter, llama.device());
        let (mut sum, mut count) = (0f64, 0usize);
        for chunk in data.chunks(self.config.batch_size) {
            let refs: Vec<&Example> = chunk.iter().collect();
            let batch = Batch::pad(&refs, self.pad_id());
            let (l, n) = loss_sum(llama, &factors, &batch)?;
            sum += f64::from(scalar(l)?);
            count += n;
        }
        Ok(sum / count.max(1) as f64)
    }

    /// The loss of `batch` divided by `divisor` and its gradients with respect to every factor,
    /// in the adapter's module order (`[dA, dB]` per module).
    fn batch_grads(
        &self,
        adapter: &LoraAdapter,
        batch: &Batch,
        seed: u64,
        divisor: usize,
    ) -> Result<(f64, Vec<Vec<f32>>)> {
        self.batch_grads_on(self.model, adapter, batch, seed, divisor)
    }

    /// [`Self::batch_grads`] on `model` (the trained model or one of its replicas).
    fn batch_grads_on(
        &self,
        model: &LlamaGenerator,
        adapter: &LoraAdapter,
        batch: &Batch,
        seed: u64,
        divisor: usize,
    ) -> Result<(f64, Vec<Vec<f32>>)> {
        let llama = burn_model(model)?;
        let c = &self.config;
        let factors = StepFactors::new(adapter, llama.device(), c.lora.lora_dropout as f32, seed);
        let (l, _) = match (self.teacher, c.distill) {
            (Some(teacher), Some(d)) => {
                let tl = teacher_logits(teacher, batch, llama.config.vocab_size)?;
                loss_sum_distilled(llama, &factors, batch, Some((&tl, d)))?
            }
            _ => loss_sum(llama, &factors, batch)?,
        };
        let l = l.div_scalar(divisor.max(1) as f32);
        let loss = f64::from(scalar(l.clone())?);
        let got = factors.gradients(&l.backward())?;
        let grads = got.into_values().flat_map(|(a, b)| [a, b]).collect();
        Ok((loss, grads))
    }

    /// The loss and gradients of every micro-batch of a step, in order, computed on the model
    /// and its replicas at once (one thread per device).
    fn micro_grads(
        &self,
        adapter: &LoraAdapter,
        micros: &[Batch],
        divisor: usize,
        seed_of: impl Fn(usize) -> u64 + Sync,
    ) -> Result<Vec<LossGrads>> {
        let workers: Vec<&LlamaGenerator> = std::iter::once(self.model)
            .chain(self.replicas.iter().copied())
            .collect();
        if workers.len() == 1 || micros.len() == 1 {
            return micros
                .iter()
                .enumerate()
                .map(|(k, b)| self.batch_grads(adapter, b, seed_of(k), divisor))
                .collect();
        }
        let n_workers = workers.len();
        let mut done =
            std::thread::scope(|s| -> Result<Vec<(usize, Result<LossGrads>)>> {
                let handles: Vec<_> = workers
                    .iter()
                    .enumerate()
                    .map(|(w, &model)| {
                        let seed_of = &seed_of;
                        s.spawn(move || {
                            (w..micros.len())
                                .step_by(n_workers)
                                .map(|k| {
                                    let got = self.batch_grads_on(
                                        model,
                                        adapter,
                                        &micros[k],
                                        seed_of(k),
                                        divisor,
                                    );
                                    (k, got)
                                })
                                .collect::<Vec<_>>()
                        })
                    })
                    .collect();
                let mut all = Vec::with_capacity(micros.len());
                for h in handles {
                    all.extend(h.join().map_err(|_| {
                        Error::Invalid("a training device's thread panicked".into())
                    })?);
                }
                Ok(all)
            })?;
        done.sort_by_key(|(k, _)| *k);
        done.into_iter().map(|(_, got)| got).collect()
    }

    /// The ε spent after `steps` DP-SGD steps over `n` training examples.
    fn epsilon(&self, steps: usize, n: usize) -> Result<Option<f64>> {
        let Some(dp) = self.config.dp else {
            return Ok(None);
        };
        let per_step = self.config.batch_size * self.config.grad_accum;
        let q = (per_step as f64 / n.max(1) as f64).min(1.0);
        let mut acc = RdpAccountant::new();
        acc.steps(dp.noise_multiplier, q, steps)?;
        Ok(Some(acc.epsilon(dp.delta)?.0))
    }

    pub(super) fn llama(&self) -> Result<&crate::Llama> {
        burn_model(self.model)
    }

    pub(super) fn pad_id(&self) -> u32 {
        self.model
            .special_tokens()
            .eos_token_ids
            .first()
            .copied()
            .unwrap_or(0)
    }

    /// Trains on `train`, evaluating on `eval`, writing the adapter, checkpoints and the loss
    /// curve under `out`. A run whose `out` holds a checkpoint resumes from it.
    ///
    /// # Errors
    /// Forward/backward errors, I/O errors, or a checkpoint from other settings.
    pub fn run(
        &self,
        train: &[Example],
        eval: Option<&[Example]>,
        out: &Path,
    ) -> Result<TrainReport> {
        if self.config.method != super::Method::Lora {
            return self.run_dense(train, eval, out);
        }
        let c = &self.config;
        let llama = self.llama()?;
        if c.distill.is_some() != self.teacher.is_some() {
            return Err(Error::Invalid(
                "distillation needs both the `distill` settings and a teacher".into(),
            ));
        }
        std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
        let modules = linear_modules(&llama.config);
        let steps_per_epoch = StepBatches::new(train, c, 0).steps_per_epoch();
        let total = c
            .max_steps
            .unwrap_or(usize::MAX)
            .min(steps_per_epoch * c.epochs);
        let (mut adapter, mut state, resumed) = match read_checkpoint(out)? {
            Some((adapter, state)) => {
                if state.config.lora != c.lora
                    || state.config.seed != c.seed
                    || state.config.batch_size != c.batch_size
                    || state.config.grad_accum != c.grad_accum
                {
                    return Err(Error::Invalid(format!(
                        "{}: the checkpoint was made with other LoRA settings, seed or batch shape",
                        out.display()
                    )));
                }
                let step = state.step;
                (adapter, state, Some(step))
            }
            None => {
                let mut adapter = LoraAdapter::init("adapter", c.lora.clone(), &modules, c.seed)?;
                adapter.config.base_model_name_or_path = Some(self.model.model_name().into());
                let sizes = adapter.factor_sizes();
                let initial_eval_loss = match eval {
                    Some(e) => Some(self.evaluate(&adapter, e)?),
                    None => None,
                };
                let state = State {
                    step: 0,
                    optimizer: AdamW::new(c.adamw, &sizes),
                    log: Vec::new(),
                    initial_eval_loss,
                    config: c.clone(),
                };
                (adapter, state, None)
            }
        };
        let bar = progress_bar(c.progress, total, state.step);
        // Time spent in training steps (forward, backward, update), not in evaluation or saving.
        let mut train_secs = 0f64;
        let mut tokens = 0usize;
        // The order of micro-batches is a pure function of the seed, so a resumed run continues
        // exactly where the killed one stopped.
        let mut batches = StepBatches::new(train, c, self.pad_id());
        while state.step < total {
            let step = state.step;
            let step_start = std::time::Instant::now();
            let micros = batches.for_step(step);
            let count: usize = micros.iter().map(Batch::label_tokens).sum();
            let mut grads = zeros_like(&adapter);
            let mut loss_total = 0f64;
            if let Some(dp) = c.dp {
                // DP-SGD: every example's gradient separately, clipped to the norm bound, summed,
                // Gaussian noise added, divided by the number of examples.
                let examples: Vec<Batch> = micros.iter().flat_map(|b| b.split()).collect();
                for (k, one) in examples.iter().enumerate() {
                    let seed = c.seed ^ ((step * 1_000_003 + k) as u64).wrapping_mul(0x5851_F42D);
                    let n = one.label_tokens();
                    let (loss, mut g) = self.batch_grads(&adapter, one, seed, n)?;
                    clip_per_example(&mut g, dp.max_grad_norm)?;
                    add_into(&mut grads, &g);
                    loss_total += loss / examples.len() as f64;
                    tokens += one.batch * one.seq;
                }
                let mut rng =
                    StdRng::seed_from_u64(c.seed ^ (step as u64).wrapping_mul(0xA24B_AED4));
                add_noise(&mut grads, dp.noise_multiplier, dp.max_grad_norm, &mut rng)?;
                let scale = 1.0 / examples.len().max(1) as f32;
                grads.iter_mut().flatten().for_each(|v| *v *= scale);
            } else {
                let seed_of = |k: usize| {
                    c.seed ^ ((step * c.grad_accum + k) as u64).wrapping_mul(0x5851_F42D)
                };
                // Micro-batch k runs on worker k mod the number of workers (the model and its
                // replicas); the sums below keep micro-batch order whatever the workers.
                let per_micro = self.micro_grads(&adapter, &micros, count, seed_of)?;
                for ((loss, g), batch) in per_micro.into_iter().zip(&micros) {
                    add_into(&mut grads, &g);
                    loss_total += loss;
                    tokens += batch.batch * batch.seq;
                }
                if let Some(max) = c.max_grad_norm {
                    let mut views: Vec<&mut [f32]> =
                        grads.iter_mut().map(Vec::as_mut_slice).collect();
                    clip_grad_norm(&mut views, max);
                }
            }
            let lr = learning_rate(c.lr, step, c.warmup_steps, total, c.schedule);
            {
                let mut params = adapter.factors_mut();
                let views: Vec<&[f32]> = grads.iter().map(Vec::as_slice).collect();
                state.optimizer.step(lr, &mut params, &views);
            }
            state.step += 1;
            train_secs += step_start.elapsed().as_secs_f64();
            let last = state.step == total;
            let eval_loss = match eval {
                Some(e) if last || (c.eval_every > 0 && state.step % c.eval_every == 0) => {
                    Some(self.evaluate(&adapter, e)?)
                }
                _ => None,
            };
            state.log.push(LogEntry {
                step: state.step,
                lr,
                loss: loss_total,
                eval_loss,
            });
            if let Some(b) = &bar {
                b.set_position(state.step as u64);
                let tps = tokens as f64 / train_secs.max(1e-9);
                b.set_message(format!("loss {loss_total:.4} · {tps:.0} tok/s"));
            }
            let stop = c.stop_after.is_some_and(|n| state.step >= n) && !last;
            if last || stop || (c.save_every > 0 && state.step % c.save_every == 0) {
                write_checkpoint(out, &adapter, &state)?;
                write_curve(out, &state.log)?;
            }
            if stop {
                if let Some(b) = &bar {
                    b.abandon();
                }
                return Ok(TrainReport {
                    steps: state.step,
                    initial_eval_loss: state.initial_eval_loss,
                    final_eval_loss: None,
                    tokens_per_second: tokens as f64 / train_secs.max(1e-9),
                    log: state.log,
                    resumed_from: resumed,
                    dp_epsilon: self.epsilon(state.step, train.len())?,
                });
            }
        }
        if let Some(b) = bar {
            b.finish();
        }
        adapter.save(out)?;
        write_curve(out, &state.log)?;
        let final_eval_loss = state.log.iter().rev().find_map(|e| e.eval_loss);
        Ok(TrainReport {
            steps: state.step,
            initial_eval_loss: state.initial_eval_loss,
            final_eval_loss,
            tokens_per_second: tokens as f64 / train_secs.max(1e-9),
            log: state.log,
            resumed_from: resumed,
            dp_epsilon: self.epsilon(state.step, train.len())?,
        })
    }
}

/// The micro-batches of every optimizer step: the examples shuffled once per epoch by a pure
/// function of the seed, so a resumed run continues exactly where a killed one stopped.
pub(super) struct StepBatches<'t> {
    train: &'t [Example],
    seed: u64,
    batch_size: usize,
    grad_accum: usize,
    pad: u32,
    shuffled: Option<(usize, Vec<usize>)>,
}

impl<'t> StepBatches<'t> {
    pub(super) fn new(train: &'t [Example], c: &TrainConfig, pad: u32) -> Self {
        Self {
            train,
            seed: c.seed,
            batch_size: c.batch_size,
            grad_accum: c.grad_accum,
            pad,
            shuffled: None,
        }
    }

    /// Micro-batches per epoch.
    pub(super) fn micro_per_epoch(&self) -> usize {
        self.train.len().div_ceil(self.batch_size)
    }

    /// Optimizer steps per epoch.
    pub(super) fn steps_per_epoch(&self) -> usize {
        self.micro_per_epoch().div_ceil(self.grad_accum)
    }

    /// The micro-batches of optimizer step `step` (0-based).
    pub(super) fn for_step(&mut self, step: usize) -> Vec<Batch> {
        let epoch = step / self.steps_per_epoch();
        if self.shuffled.as_ref().is_none_or(|(e, _)| *e != epoch) {
            let mut idx: Vec<usize> = (0..self.train.len()).collect();
            idx.shuffle(&mut StdRng::seed_from_u64(
                self.seed ^ ((epoch as u64 + 1) * 0x9E37_79B9),
            ));
            self.shuffled = Some((epoch, idx));
        }
        let idx = self
            .shuffled
            .as_ref()
            .map_or(&[][..], |(_, i)| i.as_slice());
        let first = (step % self.steps_per_epoch()) * self.grad_accum;
        (first..(first + self.grad_accum).min(self.micro_per_epoch()))
            .map(|m| {
                let chunk: Vec<&Example> = idx
                    [m * self.batch_size..((m + 1) * self.batch_size).min(self.train.len())]
                    .iter()
                    .map(|&i| &self.train[i])
                    .collect();
                Batch::pad(&chunk, self.pad)
            })
            .collect()
    }
}

pub(super) fn zeros_like(adapter: &LoraAdapter) -> Vec<Vec<f32>> {
    adapter
        .modules
        .values()
        .flat_map(|w| [vec![0f32; w.a.len()], vec![0f32; w.b.len()]])
        .collect()
}

pub(super) fn add_into(sum: &mut [Vec<f32>], g: &[Vec<f32>]) {
    for (s, g) in sum.iter_mut().zip(g) {
        s.iter_mut().zip(g).for_each(|(s, v)| *s += v);
    }
}

pub(super) fn scalar(t: burn::tensor::Tensor<1>) -> Result<f32> {
    t.into_data()
        .try_into_vec::<f32>()
        .ok()
        .and_then(|v| v.first().copied())
        .ok_or_else(|| Error::Invalid("reading the loss".into()))
}

pub(super) fn progress_bar(on: bool, total: usize, at: usize) -> Option<indicatif::ProgressBar> {
    if !on {
        return None;
    }
    let bar = indicatif::ProgressBar::new(total as u64);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} training [{bar:30}] {pos}/{len} steps · {msg} · eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_position(at as u64);
    Some(bar)
}

/// `out/checkpoints/step-N/` holds the adapter and the trainer state; `out/checkpoints/latest`
/// names the newest complete one and is replaced atomically after it is fully written, so a kill
/// at any moment leaves a complete checkpoint to resume from.
fn write_checkpoint(out: &Path, adapter: &LoraAdapter, state: &State) -> Result<()> {
    let root = out.join("checkpoints");
    let name = format!("step-{}", state.step);
    let dir = root.join(&name);
    adapter.save(&dir)?;
    let json = serde_json::to_vec(state).map_err(|e| Error::Invalid(e.to_string()))?;
    write_atomic(&dir.join("trainer_state.json"), &json)?;
    let previous = std::fs::read_to_string(root.join("latest")).ok();
    write_atomic(&root.join("latest"), name.as_bytes())?;
    if let Some(p) = previous.filter(|p| p.trim() != name) {
        let _ = std::fs::remove_dir_all(root.join(p.trim()));
    }
    Ok(())
}

fn read_checkpoint(out: &Path) -> Result<Option<(LoraAdapter, State)>> {
    let latest = out.join("checkpoints").join("latest");
    let Ok(name) = std::fs::read_to_string(&latest) else {
        return Ok(None);
    };
    let dir: PathBuf = out.join("checkpoints").join(name.trim());
    let adapter = LoraAdapter::load(&dir)?;
    let path = dir.join("trainer_state.json");
    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    let state: State = serde_json::from_slice(&bytes).map_err(|e| Error::Config {
        path: path.display().to_string(),
        message: format!("malformed trainer state: {e}"),
    })?;
    Ok(Some((adapter, state)))
}

/// `loss.csv` and a `loss.png` line plot (training loss in blue, evaluation loss in red).
pub(super) fn write_curve(out: &Path, log: &[LogEntry]) -> Result<()> {
    let mut csv = String::from("step,lr,loss,eval_loss\n");
    for e in log {
        let ev = e.eval_loss.map_or(String::new(), |v| format!("{v:.6}"));
        csv.push_str(&format!("{},{:.3e},{:.6},{ev}\n", e.step, e.lr, e.loss));
    }
    write_atomic(&out.join("loss.csv"), csv.as_bytes())?;
    let points: Vec<kiln_core::plot::LossPoint> = log
        .iter()
        .map(|e| kiln_core::plot::LossPoint {
            step: e.step,
            loss: e.loss,
            eval_loss: e.eval_loss,
        })
        .collect();
    let png = kiln_core::plot::loss_png(&points);
    write_atomic(&out.join("loss.png"), &png)?;
    Ok(())
}
