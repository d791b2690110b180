//! The training loop of the dense methods (`full`, `partial`): the same data order, micro-batches,
//! loss (with optional distillation), clipping, AdamW, schedule, evaluation, progress bar and loss
//! curve as LoRA training; the trainable tensors and AdamW's moments are checkpointed as
//! safetensors (`out/checkpoints/step-N/params.safetensors`) with an atomic `latest` pointer, and
//! the result is `out/params.safetensors` (trained tensors under their Hugging Face names and
//! orientation), which `merge::export_hf` turns into a full model directory.

use std::collections::HashMap;
use std::path::Path;

use kiln_backend::safetensors::SafetensorsFiles;
use kiln_lora::train::{AdamW, clip_grad_norm, learning_rate};
use kiln_lora::write_atomic;
use safetensors::Dtype;
use safetensors::tensor::TensorView;
use serde::{Deserialize, Serialize};

use super::trainer::{StepBatches, add_into, progress_bar, scalar, write_curve};
use super::{Batch, DenseParams, Example, LogEntry, TrainConfig, TrainReport, Trainer};
use super::{loss_sum_with, teacher_logits};
use crate::lora::NoAdapter;
use crate::{Error, Result};

/// The file of trained tensors a dense run leaves in its output directory.
pub const PARAMS_FILE: &str = "params.safetensors";

#[derive(Serialize, Deserialize)]
struct DenseState {
    step: usize,
    adam_step: u64,
    log: Vec<LogEntry>,
    initial_eval_loss: Option<f64>,
    config: TrainConfig,
}

/// Serialises named f32 tensors as safetensors bytes.
fn serialize(tensors: &[(String, Vec<usize>, &[f32])]) -> Result<Vec<u8>> {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|((n, s, _), b)| {
            TensorView::new(Dtype::F32, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| Error::Invalid(format!("tensor `{n}`: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize(views, Some(meta)).map_err(|e| Error::Invalid(e.to_string()))
}

/// Reads the trained tensors of a dense run (`params.safetensors`): name -> (shape, values), in
/// Hugging Face orientation.
///
/// # Errors
/// A missing or malformed file, named in the error.
pub fn read_params(path: &Path) -> Result<crate::merge::Overrides> {
    let files = SafetensorsFiles::open_file(path)?;
    files
        .names()
        .into_iter()
        .filter(|n| !n.starts_with("adam."))
        .map(|n| {
            let shape = files.shape(n)?;
            let v = files.f32(n, &shape)?;
            Ok((n.to_string(), (shape, v)))
        })
        .collect()
}

impl Trainer<'_> {
    fn dense_eval(&self, params: &DenseParams, data: &[Example]) -> Result<f64> {
        let llama = self.llama()?;
        let step = params.apply(llama, llama.device(), false);
        let (mut sum, mut count) = (0f64, 0usize);
        for chunk in data.chunks(self.config.batch_size) {
            let refs: Vec<&Example> = chunk.iter().collect();
            let batch = Batch::pad(&refs, self.pad_id());
            let (l, n) = loss_sum_with(&step.model, &NoAdapter, &batch, None)?;
            sum += f64::from(scalar(l)?);
            count += n;
        }
        Ok(sum / count.max(1) as f64)
    }

    fn write_dense_checkpoint(
        out: &Path,
        params: &DenseParams,
        optim: &AdamW,
        state: &DenseState,
    ) -> Result<()> {
        let root = out.join("checkpoints");
        let name = format!("step-{}", state.step);
        let dir = root.join(&name);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let (m, v) = optim.moments();
        let mut tensors: Vec<(String, Vec<usize>, &[f32])> = Vec::new();
        for (i, n) in params.names.iter().enumerate() {
            tensors.push((n.clone(), params.shapes[i].clone(), &params.values[i]));
            tensors.push((format!("adam.m.{n}"), params.shapes[i].clone(), &m[i]));
            tensors.push((format!("adam.v.{n}"), params.shapes[i].clone(), &v[i]));
        }
        write_atomic(&dir.join(PARAMS_FILE), &serialize(&tensors)?)?;
        let json = serde_json::to_vec(state).map_err(|e| Error::Invalid(e.to_string()))?;
        write_atomic(&dir.join("trainer_state.json"), &json)?;
        let previous = std::fs::read_to_string(root.join("latest")).ok();
        write_atomic(&root.join("latest"), name.as_bytes())?;
        if let Some(p) = previous.filter(|p| p.trim() != name) {
            let _ = std::fs::remove_dir_all(root.join(p.trim()));
        }
        Ok(())
    }

    fn read_dense_checkpoint(
        &self,
        out: &Path,
        params: &mut DenseParams,
    ) -> Result<Option<(AdamW, DenseState)>> {
        let Ok(name) = std::fs::read_to_string(out.join("checkpoints").join("latest")) else {
            return Ok(None);
        };
        let dir = out.join("checkpoints").join(name.trim());
        let path = dir.join("trainer_state.json");
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let state: DenseState = serde_json::from_slice(&bytes).map_err(|e| Error::Config {
            path: path.display().to_string(),
            message: format!("malformed trainer state: {e}"),
        })?;
        let c = &self.config;
        if state.config.method != c.method
            || state.config.seed != c.seed
            || state.config.batch_size != c.batch_size
            || state.config.grad_accum != c.grad_accum
        {
            return Err(Error::Invalid(format!(
                "{}: the checkpoint was made with another method, seed or batch shape",
                out.display()
            )));
        }
        let files = SafetensorsFiles::open_file(dir.join(PARAMS_FILE))?;
        let (mut m, mut v) = (Vec::new(), Vec::new());
        for (i, n) in params.names.iter().enumerate() {
            let shape = params.shapes[i].clone();
            params.values[i] = files.f32(n, &shape)?;
            m.push(files.f32(&format!("adam.m.{n}"), &shape)?);
            v.push(files.f32(&format!("adam.v.{n}"), &shape)?);
        }
        let optim = AdamW::from_moments(c.adamw, state.adam_step, m, v)?;
        Ok(Some((optim, state)))
    }

    /// [`Trainer::run`] for the `full` and `partial` methods.
    pub(super) fn run_dense(
        &self,
        train: &[Example],
        eval: Option<&[Example]>,
        out: &Path,
    ) -> Result<TrainReport> {
        let c = &self.config;
        if c.dp.is_some() {
            return Err(Error::Invalid(
                "DP-SGD is implemented for LoRA training only (per-example gradients of every \
                 weight would not fit); use --method lora"
                    .into(),
            ));
        }
        if c.distill.is_some() != self.teacher.is_some() {
            return Err(Error::Invalid(
                "distillation needs both the `distill` settings and a teacher".into(),
            ));
        }
        let llama = self.llama()?;
        let device = llama.device().clone();
        std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
        let mut params = DenseParams::select(llama, c.method)?;
        let steps_per_epoch = StepBatches::new(train, c, 0).steps_per_epoch();
        let total = c
            .max_steps
            .unwrap_or(usize::MAX)
            .min(steps_per_epoch * c.epochs);
        let (mut optim, mut state, resumed) = match self.read_dense_checkpoint(out, &mut params)? {
            Some((optim, state)) => {
                let step = state.step;
                (optim, state, Some(step))
            }
            None => {
                let sizes: Vec<usize> = params.values.iter().map(Vec::len).collect();
                let initial_eval_loss = match eval {
                    Some(e) => Some(self.dense_eval(&params, e)?),
                    None => None,
                };
                let state = DenseState {
                    step: 0,
                    adam_step: 0,
                    log: Vec::new(),
                    initial_eval_loss,
                    config: c.clone(),
                };
                (AdamW::new(c.adamw, &sizes), state, None)
            }
        };
        let bar = progress_bar(c.progress, total, state.step);
        let (mut train_secs, mut tokens) = (0f64, 0usize);
        let mut batches = StepBatches::new(train, c, self.pad_id());
        while state.step < total {
            let step = state.step;
            let started = std::time::Instant::now();
            let micros = batches.for_step(step);
            let count: usize = micros.iter().map(Batch::label_tokens).sum();
            let mut grads: Vec<Vec<f32>> =
                params.values.iter().map(|v| vec![0f32; v.len()]).collect();
            let mut loss_total = 0f64;
            for batch in &micros {
                let tracked = params.apply(llama, &device, true);
                let teacher = match (self.teacher, c.distill) {
                    (Some(t), Some(d)) => {
                        Some((teacher_logits(t, batch, llama.config.vocab_size)?, d))
                    }
                    _ => None,
                };
                let (l, _) = loss_sum_with(
                    &tracked.model,
                    &NoAdapter,
                    batch,
                    teacher.as_ref().map(|(t, d)| (t.as_slice(), *d)),
                )?;
                let l = l.div_scalar(count.max(1) as f32);
                loss_total += f64::from(scalar(l.clone())?);
                let g = tracked.gradients(&l.backward(), &params)?;
                add_into(&mut grads, &g);
                tokens += batch.batch * batch.seq;
            }
            if let Some(max) = c.max_grad_norm {
                let mut views: Vec<&mut [f32]> = grads.iter_mut().map(Vec::as_mut_slice).collect();
                clip_grad_norm(&mut views, max);
            }
            let lr = learning_rate(c.lr, step, c.warmup_steps, total, c.schedule);
            {
                let mut views: Vec<&mut [f32]> =
                    params.values.iter_mut().map(Vec::as_mut_slice).collect();
                let g: Vec<&[f32]> = grads.iter().map(Vec::as_slice).collect();
                optim.step(lr, &mut views, &g);
            }
            state.step += 1;
            state.adam_step = optim.step;
            train_secs += started.elapsed().as_secs_f64();
            let last = state.step == total;
            let eval_loss = match eval {
                Some(e) if last || (c.eval_every > 0 && state.step % c.eval_every == 0) => {
                    Some(self.dense_eval(&params, e)?)
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
                Self::write_dense_checkpoint(out, &params, &optim, &state)?;
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
                    dp_epsilon: None,
                });
            }
        }
        if let Some(b) = bar {
            b.finish();
        }
        let hf = params.hf_tensors();
        let named: Vec<(String, Vec<usize>, &[f32])> = hf
            .iter()
            .map(|(n, s, v)| (n.clone(), s.clone(), v.as_slice()))
            .collect();
        write_atomic(&out.join(PARAMS_FILE), &serialize(&named)?)?;
        write_curve(out, &state.log)?;
        Ok(TrainReport {
            steps: state.step,
            initial_eval_loss: state.initial_eval_loss,
            final_eval_loss: state.log.iter().rev().find_map(|e| e.eval_loss),
            tokens_per_second: tokens as f64 / train_secs.max(1e-9),
            log: state.log,
            resumed_from: resumed,
            dp_epsilon: None,
        })
    }
}
