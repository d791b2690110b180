//! Fine-tuning commands: `kiln finetune`, `kiln merge`, `kiln eval`, `kiln adapters average`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use kiln_core::{
    AdapterChoice, ChatMessage, GenerationRequest, Role, SamplingParams, TextGenerator,
};
use kiln_eval::{Report, Sample};
use kiln_llama::kiln_lora::train::{AdamWConfig, Schedule};
use kiln_llama::kiln_lora::{LoraAdapter, LoraConfig, TargetModules};
use kiln_llama::train::{DataFormat, Method, TrainConfig, Trainer, load_examples};
use kiln_llama::{LlamaGenerator, MergeDtype, merge_to_hf};
use serde_json::Value;

/// `kiln finetune`.
#[derive(Args)]
pub struct FinetuneArgs {
    /// The base model: a Hugging Face directory or a .gguf file.
    #[arg(long, short)]
    pub model: PathBuf,
    /// Training data: JSONL in chat (`messages`), Alpaca (`instruction`/`input`/`output`) or
    /// text (`text`) form, or a .txt file with one example per line.
    #[arg(long)]
    pub data: PathBuf,
    /// Where the adapter, checkpoints, loss.csv and loss.png go.
    #[arg(long, short)]
    pub output: PathBuf,
    /// lora; qlora (the base rounded to NF4 as bitsandbytes does, or a GGUF base in its stored
    /// block format); full (every tensor); partial (the top --top-layers decoder layers and the
    /// final norm). full and partial write a complete HF model directory to --output.
    #[arg(long, default_value = "lora")]
    pub method: String,
    /// Decoder layers trained by --method partial (counted from the top).
    #[arg(long)]
    pub top_layers: Option<usize>,
    /// LoRA rank.
    #[arg(long, default_value_t = 8)]
    pub r: usize,
    /// LoRA alpha.
    #[arg(long, default_value_t = 16.0)]
    pub alpha: f64,
    /// LoRA dropout.
    #[arg(long, default_value_t = 0.05)]
    pub dropout: f64,
    /// Scale by alpha / sqrt(r) (rsLoRA).
    #[arg(long)]
    pub rslora: bool,
    /// Comma-separated module names, or `all-linear`.
    #[arg(long, default_value = "q_proj,v_proj")]
    pub target_modules: String,
    /// Passes over the data.
    #[arg(long, default_value_t = 1)]
    pub epochs: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 2e-4)]
    pub lr: f64,
    /// Sequences per micro-batch.
    #[arg(long, default_value_t = 4)]
    pub batch_size: usize,
    /// Micro-batches per optimizer step.
    #[arg(long, default_value_t = 1)]
    pub grad_accum: usize,
    /// Linear warm-up steps.
    #[arg(long, default_value_t = 0)]
    pub warmup: usize,
    /// cosine, linear or constant.
    #[arg(long, default_value = "cosine")]
    pub schedule: String,
    /// AdamW weight decay.
    #[arg(long, default_value_t = 0.01)]
    pub weight_decay: f64,
    /// Clip the global gradient norm (0 disables).
    #[arg(long, default_value_t = 1.0)]
    pub max_grad_norm: f64,
    /// Seed of initialisation, shuffling and dropout.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Sequences are cut to this many tokens.
    #[arg(long, default_value_t = 512)]
    pub max_len: usize,
    /// Held-out data for evaluation loss and perplexity.
    #[arg(long)]
    pub eval: Option<PathBuf>,
    /// Evaluate every N steps.
    #[arg(long, default_value_t = 0)]
    pub eval_every: usize,
    /// Checkpoint every N steps.
    #[arg(long, default_value_t = 0)]
    pub save_every: usize,
    /// Stop after N optimizer steps.
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Device (cpu, wgpu, vulkan, cuda:N); several, comma-separated (`cuda:0,cuda:1`), train
    /// LoRA/QLoRA data-parallel: each optimizer step's micro-batches (--grad-accum) are spread over
    /// the devices, with the same result as one device.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Knowledge distillation from this teacher model (same vocabulary; runs on the CPU kernels).
    #[arg(long)]
    pub teacher: Option<PathBuf>,
    /// Weight of the teacher's KL term (with --teacher).
    #[arg(long, default_value_t = 0.5)]
    pub distill_alpha: f64,
    /// Softmax temperature of distillation (with --teacher).
    #[arg(long, default_value_t = 2.0)]
    pub distill_temperature: f64,
    /// Differentially private training (DP-SGD) with this noise multiplier σ.
    #[arg(long)]
    pub dp_noise: Option<f64>,
    /// DP-SGD per-example gradient norm bound C (with --dp-noise).
    #[arg(long, default_value_t = 1.0)]
    pub dp_clip: f64,
    /// The δ of the reported (ε, δ) privacy guarantee (with --dp-noise).
    #[arg(long, default_value_t = 1e-5)]
    pub dp_delta: f64,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `kiln merge`.
#[derive(Args)]
pub struct MergeArgs {
    /// The base model: a Hugging Face directory or a .gguf file.
    #[arg(long, short)]
    pub model: PathBuf,
    /// A PEFT adapter directory, optionally `DIR@WEIGHT` (repeatable).
    #[arg(long, required = true)]
    pub adapter: Vec<String>,
    /// The output Hugging Face directory.
    #[arg(long, short)]
    pub output: PathBuf,
    /// f32, f16 or bf16.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
}

/// `kiln eval`.
#[derive(Args)]
pub struct EvalArgs {
    /// The model and its adapters.
    #[command(flatten)]
    pub model: crate::ModelArgs,
    /// JSONL in chat form; the last assistant message is the reference, an `answer` field the
    /// short canonical answer.
    #[arg(long)]
    pub data: PathBuf,
    /// Evaluate only the first N examples.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Tokens to generate per answer.
    #[arg(long, default_value_t = 64)]
    pub max_tokens: usize,
    /// Print the report as JSON (with per-sample scores and predictions).
    #[arg(long)]
    pub json: bool,
}

/// `kiln adapters ...`.
#[derive(Subcommand)]
pub enum AdaptersCommand {
    /// Federated averaging: the weighted mean of adapters trained at separate sites from the
    /// same initialisation, factor by factor (FedAvg over A and B).
    Average(AverageArgs),
}

/// `kiln adapters average`.
#[derive(Args)]
pub struct AverageArgs {
    /// Adapter directories (same config and modules).
    #[arg(required = true, num_args = 2..)]
    pub adapters: Vec<PathBuf>,
    /// Comma-separated weights (default equal; normalised to sum to 1), e.g. site sizes.
    #[arg(long, value_delimiter = ',')]
    pub weights: Option<Vec<f64>>,
    /// The output adapter directory.
    #[arg(long, short)]
    pub output: PathBuf,
}

/// Parses `DIR` or `DIR@WEIGHT`.
pub fn parse_adapter(spec: &str) -> Result<(PathBuf, f32)> {
    if let Some((dir, w)) = spec.rsplit_once('@')
        && let Ok(w) = w.parse::<f32>()
    {
        return Ok((PathBuf::from(dir), w));
    }
    Ok((PathBuf::from(spec), 1.0))
}

/// Loads `specs` into `model` and returns the choices a request needs.
pub fn attach_adapters(model: &LlamaGenerator, specs: &[String]) -> Result<Vec<AdapterChoice>> {
    let mut out = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let (dir, weight) = parse_adapter(spec)?;
        let name = format!("adapter{i}");
        model
            .load_adapter(&name, &dir)
            .with_context(|| format!("loading adapter {}", dir.display()))?;
        out.push(AdapterChoice { name, weight });
    }
    Ok(out)
}

fn lora_config(a: &FinetuneArgs) -> LoraConfig {
    let targets = if a.target_modules.eq_ignore_ascii_case("all-linear") {
        TargetModules::Pattern("all-linear".into())
    } else {
        TargetModules::List(
            a.target_modules
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
        )
    };
    LoraConfig {
        r: a.r,
        lora_alpha: a.alpha,
        lora_dropout: a.dropout,
        use_rslora: a.rslora,
        target_modules: Some(targets),
        ..LoraConfig::default()
    }
}

/// `kiln finetune`.
pub fn finetune(a: &FinetuneArgs) -> Result<()> {
    let mut models = Vec::new();
    for name in a.device.split(',').map(str::trim) {
        let spec: kiln_backend::DeviceSpec = name
            .parse()
            .with_context(|| format!("selecting the device `{name}`"))?;
        let device = spec.device()?.autodiff();
        let model = match a.method.as_str() {
            "lora" => LlamaGenerator::open(&a.model, &device),
            "qlora" => LlamaGenerator::open_qlora(&a.model, &device),
            "full" | "partial" => LlamaGenerator::open(&a.model, &device),
            other => bail!("unknown --method `{other}` (lora, qlora, full or partial)"),
        }
        .with_context(|| format!("loading model {} on {name}", a.model.display()))?;
        models.push(model);
    }
    let (model, replicas) = models.split_first().context("--device names no device")?;
    let train = load_examples(&a.data, DataFormat::Auto, model, a.max_len)?;
    let eval = match &a.eval {
        Some(p) => Some(load_examples(p, DataFormat::Auto, model, a.max_len)?),
        None => None,
    };
    let schedule: Schedule = a.schedule.parse().map_err(anyhow::Error::msg)?;
    let method = match a.method.as_str() {
        "full" => Method::Full,
        "partial" => Method::Partial {
            top_layers: a
                .top_layers
                .context("--method partial needs --top-layers N")?,
        },
        _ => Method::Lora,
    };
    let config = TrainConfig {
        method,
        lora: lora_config(a),
        epochs: a.epochs,
        lr: a.lr,
        batch_size: a.batch_size,
        grad_accum: a.grad_accum,
        warmup_steps: a.warmup,
        schedule,
        adamw: AdamWConfig {
            weight_decay: a.weight_decay,
            ..AdamWConfig::default()
        },
        max_grad_norm: (a.max_grad_norm > 0.0).then_some(a.max_grad_norm),
        seed: a.seed,
        max_len: a.max_len,
        eval_every: a.eval_every,
        save_every: a.save_every,
        max_steps: a.max_steps,
        distill: a.teacher.as_ref().map(|_| kiln_llama::train::Distill {
            alpha: a.distill_alpha,
            temperature: a.distill_temperature,
        }),
        dp: a.dp_noise.map(|noise| kiln_llama::train::DpConfig {
            noise_multiplier: noise,
            max_grad_norm: a.dp_clip,
            delta: a.dp_delta,
        }),
        stop_after: None,
        progress: !a.json,
    };
    eprintln!(
        "fine-tuning {} ({}) on {} examples{}",
        model.model_name(),
        a.method,
        train.len(),
        eval.as_ref()
            .map_or(String::new(), |e| format!(", evaluating on {}", e.len()))
    );
    let teacher = match &a.teacher {
        Some(p) => Some(
            LlamaGenerator::load(p, &kiln_llama::LoadOptions::default())
                .with_context(|| format!("loading teacher {}", p.display()))?,
        ),
        None => None,
    };
    let mut trainer = Trainer::new(model, config)?.with_replicas(replicas)?;
    if let Some(t) = &teacher {
        trainer = trainer.with_teacher(t)?;
    }
    let report = trainer.run(&train, eval.as_deref(), &a.output)?;
    let finished = report.steps > 0 && a.output.join(kiln_llama::train::PARAMS_FILE).is_file();
    if method != Method::Lora && finished {
        // A dense run leaves its trained tensors; the output becomes a full model directory.
        let overrides =
            kiln_llama::train::read_params(&a.output.join(kiln_llama::train::PARAMS_FILE))?;
        kiln_llama::export_hf(&a.model, &[], &overrides, &a.output, MergeDtype::F32)
            .context("writing the fine-tuned model")?;
    }
    if let Some(eps) = report.dp_epsilon {
        eprintln!(
            "DP-SGD privacy spent: epsilon {eps:.3} at delta {}",
            a.dp_delta
        );
    }
    if let Some(step) = report.resumed_from {
        eprintln!("resumed from the checkpoint of step {step}");
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let ppl = |l: Option<f64>| l.map_or("-".into(), |l| format!("{:.3}", l.exp()));
        println!(
            "{} steps, {:.0} tokens/s; eval loss {} -> {} (perplexity {} -> {}); output in {}",
            report.steps,
            report.tokens_per_second,
            report
                .initial_eval_loss
                .map_or("-".into(), |l| format!("{l:.4}")),
            report
                .final_eval_loss
                .map_or("-".into(), |l| format!("{l:.4}")),
            ppl(report.initial_eval_loss),
            ppl(report.final_eval_loss),
            a.output.display()
        );
        if method != Method::Lora {
            println!(
                "the fine-tuned model (HF safetensors directory) is in {}",
                a.output.display()
            );
        }
    }
    Ok(())
}

/// `kiln merge`.
pub fn merge(a: &MergeArgs) -> Result<()> {
    let dtype: MergeDtype = a.dtype.parse()?;
    let mut adapters = Vec::new();
    for spec in &a.adapter {
        let (dir, w) = parse_adapter(spec)?;
        let adapter = LoraAdapter::load(&dir)
            .with_context(|| format!("loading adapter {}", dir.display()))?;
        adapters.push((adapter, w));
    }
    let r = merge_to_hf(&a.model, &adapters, &a.output, dtype)?;
    println!(
        "merged {} modules into {} tensors{} -> {}",
        r.merged_modules,
        r.tensors,
        if r.untied { " (lm_head untied)" } else { "" },
        a.output.display()
    );
    Ok(())
}

/// An evaluation row: the prompt messages, the reference answer, the short canonical answer.
type EvalRow = (Vec<ChatMessage>, String, Option<String>);

fn eval_rows(path: &Path) -> Result<Vec<EvalRow>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut rows = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let at = || format!("{}:{}", path.display(), n + 1);
        let v: Value = serde_json::from_str(line).with_context(at)?;
        let mut messages: Vec<ChatMessage> =
            serde_json::from_value(v.get("messages").cloned().unwrap_or(Value::Null))
                .with_context(|| format!("{}: `messages`", at()))?;
        match messages.last() {
            Some(m) if m.role == Role::Assistant => {}
            _ => bail!(
                "{}: the last message must be the assistant's reference",
                at()
            ),
        }
        let reference = messages.pop().map(|m| m.text_content()).unwrap_or_default();
        let answer = v.get("answer").and_then(Value::as_str).map(str::to_string);
        rows.push((messages, reference, answer));
    }
    Ok(rows)
}

/// `kiln eval`.
pub fn eval(a: &EvalArgs) -> Result<()> {
    let (model, choices) = crate::load(&a.model)?;
    let model = &model;
    let mix = model.mix(&choices)?;
    let mut rows = eval_rows(&a.data)?;
    if let Some(n) = a.limit {
        rows.truncate(n);
    }
    let bar = indicatif::ProgressBar::new(rows.len() as u64);
    let mut samples = Vec::with_capacity(rows.len());
    let mut predictions = Vec::with_capacity(rows.len());
    for (messages, reference, answer) in &rows {
        let mut req = GenerationRequest::chat(messages.clone())
            .with_sampling(SamplingParams::greedy())
            .with_max_tokens(a.max_tokens);
        req.adapters = choices.clone();
        let out = model.generate(&req)?;
        // Perplexity of the reference answer given the prompt.
        let prompt = model.encode_prompt(&kiln_core::Prompt::Chat(messages.clone()))?;
        let mut full = messages.clone();
        full.push(ChatMessage::assistant(reference.clone()));
        let text = model.apply_chat_template(&full, false)?;
        let ids = model
            .tokenizer()
            .inner()
            .encode(text.as_str(), false)
            .map_err(anyhow::Error::msg)?
            .get_ids()
            .to_vec();
        let lps = model.score_ids_with(&ids, &mix)?;
        let from = prompt.len().saturating_sub(1).min(lps.len());
        samples.push(Sample {
            prediction: out.text.trim().to_string(),
            references: vec![reference.clone()],
            answer: answer.clone(),
            logprobs: lps[from..].iter().map(|&l| f64::from(l)).collect(),
        });
        predictions.push(out.text.trim().to_string());
        bar.inc(1);
    }
    bar.finish_and_clear();
    let report = Report::compute(&samples, false)?;
    if a.json {
        let mut v = serde_json::to_value(&report)?;
        v["predictions"] = serde_json::json!(predictions);
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("examples:           {}", report.count);
        println!("perplexity:         {}", fmt(report.perplexity, 3));
        println!("exact match:        {:.3}", report.exact_match_normalized);
        println!("answer accuracy:    {}", fmt(report.answer_accuracy, 3));
        println!("token F1:           {:.3}", report.token_f1);
        println!("BLEU (corpus):      {:.2}", report.corpus_bleu);
        println!("ROUGE-L:            {:.3}", report.rouge_l);
    }
    Ok(())
}

fn fmt(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".into(), |v| format!("{v:.digits$}"))
}

/// `kiln adapters average`.
pub fn average(a: &AverageArgs) -> Result<()> {
    let adapters = a
        .adapters
        .iter()
        .map(|d| LoraAdapter::load(d).with_context(|| format!("loading adapter {}", d.display())))
        .collect::<Result<Vec<_>>>()?;
    let weights = match &a.weights {
        Some(w) if w.len() != adapters.len() => bail!(
            "--weights has {} values for {} adapters",
            w.len(),
            adapters.len()
        ),
        Some(w) => w.clone(),
        None => vec![1.0; adapters.len()],
    };
    let avg = kiln_llama::kiln_lora::average(&adapters, &weights)?;
    avg.save(&a.output)?;
    println!(
        "averaged {} adapters ({} modules) -> {}",
        adapters.len(),
        avg.modules.len(),
        a.output.display()
    );
    Ok(())
}
