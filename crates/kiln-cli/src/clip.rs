//! `kiln clip`: zero-shot classification, embeddings, and contrastive training with kiln-clip.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use kiln_backend::DeviceSpec;
use kiln_clip::clip::default_preprocess;
use kiln_clip::fashion_mnist::{self, CLASSES, Split};
use kiln_clip::train::{ContrastiveConfig, Pair, train_contrastive};
use kiln_clip::{Clip, ClipConfig, ClipTokenizer, load_image, load_image_upright};

/// `kiln clip ...`
#[derive(Subcommand)]
pub enum ClipCommand {
    /// Zero-shot classification of images against text labels.
    Classify(ClassifyArgs),
    /// Embeddings of images and texts (L2-normalised).
    Embed(EmbedArgs),
    /// Contrastive training (from scratch with --init-config, or from --model).
    Train(TrainArgs),
    /// Zero-shot accuracy on the Fashion-MNIST test set.
    Eval(EvalArgs),
}

#[derive(Args)]
pub struct ClassifyArgs {
    /// A Hugging Face CLIP directory.
    #[arg(long)]
    model: PathBuf,
    /// Image files (repeatable).
    #[arg(long, required = true)]
    image: Vec<PathBuf>,
    /// Comma-separated labels.
    #[arg(long)]
    labels: String,
    /// Prompt template; `{}` is replaced by each label.
    #[arg(long, default_value = "{}")]
    template: String,
    /// A PEFT LoRA adapter directory merged into the model.
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Read images as transformers' `load_image` and pipelines do: EXIF orientation applied, alpha
    /// dropped (default: as the processor sees `PIL.Image.open(path)`).
    #[arg(long)]
    upright: bool,
    /// Device: cpu, wgpu, vulkan, cuda:N.
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
}

#[derive(Args)]
pub struct EmbedArgs {
    /// A Hugging Face CLIP directory.
    #[arg(long)]
    model: PathBuf,
    /// Image files (repeatable).
    #[arg(long)]
    image: Vec<PathBuf>,
    /// Texts (repeatable).
    #[arg(long)]
    text: Vec<String>,
    /// A PEFT LoRA adapter directory merged into the model.
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Read images as transformers' `load_image` and pipelines do: EXIF orientation applied, alpha
    /// dropped (default: as the processor sees `PIL.Image.open(path)`).
    #[arg(long)]
    upright: bool,
    /// Device: cpu, wgpu, vulkan, cuda:N.
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
}

#[derive(Args)]
pub struct TrainArgs {
    /// Start from this CLIP directory.
    #[arg(long, conflicts_with = "init_config")]
    model: Option<PathBuf>,
    /// Start from fresh weights with this HF `config.json`.
    #[arg(long)]
    init_config: Option<PathBuf>,
    /// Tokenizer for fresh weights: `bpe_simple_vocab_16e6.txt.gz`, a `tokenizer.json`, or a
    /// directory with `vocab.json` + `merges.txt`.
    #[arg(long)]
    vocab: Option<PathBuf>,
    /// Train on the Fashion-MNIST training split in this directory (captions from the class names).
    #[arg(long, conflicts_with = "data")]
    fashion_mnist: Option<PathBuf>,
    /// Train on a JSONL file of `{"image": PATH, "caption": TEXT}` (paths relative to the file; an
    /// optional integer `group` makes pairs of one group positives for each other).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Where the trained model, `loss.csv`, `loss.png` and `report.json` go.
    #[arg(long)]
    out: PathBuf,
    /// Passes over the data.
    #[arg(long, default_value_t = 1)]
    epochs: usize,
    /// Pairs per step.
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Warmup steps.
    #[arg(long, default_value_t = 50)]
    warmup: usize,
    /// Weight decay.
    #[arg(long, default_value_t = 0.05)]
    weight_decay: f64,
    /// Stop after this many steps.
    #[arg(long)]
    max_steps: Option<usize>,
    /// Seed of the initialisation and shuffling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Device: cpu, wgpu, vulkan, cuda:N.
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
    /// Train a LoRA adapter of this rank instead of every weight (saved to OUT/adapter in PEFT's
    /// format; OUT also gets the merged model).
    #[arg(long)]
    lora_r: Option<usize>,
    /// LoRA alpha.
    #[arg(long, default_value_t = 16.0)]
    lora_alpha: f64,
    /// LoRA target modules (PEFT's rules: names or `all-linear`).
    #[arg(long, default_value = "q_proj,v_proj")]
    lora_targets: String,
}

#[derive(Args)]
pub struct EvalArgs {
    /// A Hugging Face CLIP directory.
    #[arg(long)]
    model: PathBuf,
    /// The Fashion-MNIST directory (the four `.gz` files).
    #[arg(long)]
    fashion_mnist: PathBuf,
    /// Prompt template.
    #[arg(long, default_value = "a photo of a {}.")]
    template: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Device: cpu, wgpu, vulkan, cuda:N.
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
}

/// Runs a `kiln clip` command.
pub fn run(cmd: &ClipCommand) -> Result<()> {
    match cmd {
        ClipCommand::Classify(a) => classify(a),
        ClipCommand::Embed(a) => embed(a),
        ClipCommand::Train(a) => train(a),
        ClipCommand::Eval(a) => eval(a),
    }
}

fn open(model: &Path, device: &DeviceSpec, adapter: Option<&Path>) -> Result<Clip> {
    let device = device.device()?;
    let clip = Clip::open(model, &device)
        .with_context(|| format!("loading CLIP from {}", model.display()))?;
    let Some(dir) = adapter else {
        return Ok(clip);
    };
    let lora = kiln_lora::LoraAdapter::load(dir)
        .with_context(|| format!("loading the adapter {}", dir.display()))?;
    let (mut model, config, tokenizer, pp, name) = clip.into_parts();
    model.merge_lora(&lora, 1.0)?;
    Ok(Clip::new(model, config, tokenizer, pp, name)?)
}

fn classify(a: &ClassifyArgs) -> Result<()> {
    let clip = open(&a.model, &a.device, a.adapter.as_deref())?;
    let labels: Vec<&str> = a
        .labels
        .split(',')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if labels.is_empty() {
        bail!("--labels is empty");
    }
    let images = a
        .image
        .iter()
        .map(|p| read_image(p, a.upright))
        .collect::<Result<Vec<_>>>()?;
    let results = clip.zero_shot_batch(&images, &labels, &a.template)?;
    if a.json {
        let out: Vec<_> = a
            .image
            .iter()
            .zip(&results)
            .map(|(p, r)| serde_json::json!({"image": p.display().to_string(), "labels": r}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for (p, r) in a.image.iter().zip(&results) {
            println!("{}", p.display());
            for s in r {
                println!("  {:>6.2}%  {}", 100.0 * s.probability, s.label);
            }
        }
    }
    Ok(())
}

/// An image as the processor sees `PIL.Image.open(path)`, or upright as transformers' `load_image`.
fn read_image(path: &std::path::Path, upright: bool) -> Result<kiln_clip::RgbImage> {
    Ok(if upright {
        load_image_upright(path)?
    } else {
        load_image(path)?
    })
}

fn embed(a: &EmbedArgs) -> Result<()> {
    if a.image.is_empty() && a.text.is_empty() {
        bail!("give at least one --image or --text");
    }
    let clip = open(&a.model, &a.device, a.adapter.as_deref())?;
    let mut rows: Vec<(String, String, Vec<f32>)> = Vec::new();
    if !a.image.is_empty() {
        let images = a
            .image
            .iter()
            .map(|p| read_image(p, a.upright))
            .collect::<Result<Vec<_>>>()?;
        for (p, e) in a.image.iter().zip(clip.embed_images(&images)?) {
            rows.push(("image".into(), p.display().to_string(), e));
        }
    }
    if !a.text.is_empty() {
        for (t, e) in a.text.iter().zip(clip.embed_texts(&a.text)?) {
            rows.push(("text".into(), t.clone(), e));
        }
    }
    if a.json {
        let out: Vec<_> = rows
            .iter()
            .map(|(k, s, e)| serde_json::json!({"kind": k, "input": s, "embedding": e}))
            .collect();
        println!("{}", serde_json::to_string(&out)?);
    } else {
        for (k, s, e) in &rows {
            let head: Vec<String> = e.iter().take(6).map(|v| format!("{v:+.4}")).collect();
            println!("{k} {s:?}: [{} ...] ({} dims)", head.join(", "), e.len());
        }
    }
    Ok(())
}

fn tokenizer_from(path: &Path) -> Result<ClipTokenizer> {
    let tok = if path.is_dir() {
        ClipTokenizer::from_vocab_merges(path.join("vocab.json"), path.join("merges.txt"))?
    } else if path.extension().is_some_and(|e| e == "json") {
        ClipTokenizer::from_tokenizer_json(path)?
    } else {
        ClipTokenizer::from_bpe_gz(path)?
    };
    Ok(tok)
}

/// Captions of a Fashion-MNIST class: several phrasings, so the text tower sees variety.
const TEMPLATES: [&str; 4] = [
    "a photo of a {}.",
    "a picture of a {}.",
    "a black and white photo of a {}.",
    "a {}.",
];

fn read_jsonl(path: &Path) -> Result<Vec<Pair>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut pairs = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let v: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not JSON", path.display(), i + 1))?;
        let (Some(img), Some(cap)) = (v["image"].as_str(), v["caption"].as_str()) else {
            bail!(
                "{}:{}: needs string fields `image` and `caption`",
                path.display(),
                i + 1
            );
        };
        pairs.push(Pair {
            image: load_image(dir.join(img))?,
            caption: cap.to_string(),
            group: v["group"].as_u64(),
        });
    }
    Ok(pairs)
}

fn lora_config(r: usize, alpha: f64, targets: &str) -> Result<kiln_lora::LoraConfig> {
    let targets: Vec<String> = targets
        .split(',')
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect();
    let target = if targets.len() == 1 && targets[0] == "all-linear" {
        serde_json::Value::from("all-linear")
    } else {
        serde_json::Value::from(targets)
    };
    let cfg: kiln_lora::LoraConfig = serde_json::from_value(serde_json::json!({
        "peft_type": "LORA", "r": r, "lora_alpha": alpha, "target_modules": target
    }))?;
    cfg.validate("--lora-*")?;
    Ok(cfg)
}

fn train(a: &TrainArgs) -> Result<()> {
    let device = a.device.device()?;
    let clip = match (&a.model, &a.init_config) {
        (Some(m), _) => Clip::open(m, &device)?,
        (None, Some(cfg)) => {
            let config = ClipConfig::from_file(cfg)?;
            let Some(vocab) = &a.vocab else {
                bail!(
                    "--init-config needs --vocab (bpe_simple_vocab_16e6.txt.gz, tokenizer.json or a vocab.json + merges.txt directory)"
                );
            };
            let tokenizer = tokenizer_from(vocab)?;
            if tokenizer.vocab_size() > config.text_config.vocab_size {
                bail!(
                    "the tokenizer has {} tokens but `text_config.vocab_size` is {}",
                    tokenizer.vocab_size(),
                    config.text_config.vocab_size
                );
            }
            device.seed(a.seed);
            let model = config.init(&device);
            let pp = default_preprocess(config.vision_config.image_size);
            Clip::new(model, config, tokenizer, pp, "clip")?
        }
        (None, None) => bail!("give --model DIR or --init-config config.json"),
    };
    let pairs = match (&a.fashion_mnist, &a.data) {
        (Some(dir), _) => fashion_mnist::load(dir, Split::Train)?
            .into_iter()
            .enumerate()
            .map(|(i, s)| Pair {
                image: s.image,
                caption: TEMPLATES[i % TEMPLATES.len()].replace("{}", CLASSES[s.label]),
                group: Some(s.label as u64),
            })
            .collect(),
        (None, Some(f)) => read_jsonl(f)?,
        (None, None) => bail!("give --fashion-mnist DIR or --data pairs.jsonl"),
    };
    eprintln!("training on {} pairs", pairs.len());
    let config = ContrastiveConfig {
        epochs: a.epochs,
        batch_size: a.batch_size,
        lr: a.lr,
        weight_decay: a.weight_decay,
        warmup_steps: a.warmup,
        max_steps: a.max_steps,
        seed: a.seed,
        progress: true,
        lora: match a.lora_r {
            Some(r) => Some(lora_config(r, a.lora_alpha, &a.lora_targets)?),
            None => None,
        },
    };
    let (clip, report) = train_contrastive(clip, &pairs, &config, Some(&a.out))?;
    clip.save(&a.out)?;
    let mut summary = serde_json::json!({
        "pairs": pairs.len(),
        "steps": report.steps,
        "seconds": report.seconds,
        "pairs_per_second": report.pairs_per_second,
        "first_loss": report.losses.first(),
        "last_loss": report.losses.last(),
    });
    if let Some(dir) = &a.fashion_mnist {
        let test = fashion_mnist::load(dir, Split::Test)?;
        let (acc, per_class) = fashion_mnist::zero_shot_accuracy(&clip, &test, TEMPLATES[0])?;
        summary["zero_shot_test_accuracy"] = acc.into();
        summary["template"] = TEMPLATES[0].into();
        summary["per_class"] = CLASSES
            .iter()
            .zip(per_class)
            .map(|(c, v)| (c.to_string(), serde_json::Value::from(v)))
            .collect::<serde_json::Map<_, _>>()
            .into();
    }
    let text = serde_json::to_string_pretty(&summary)?;
    kiln_core::fs::write_atomic(&a.out.join("report.json"), text.as_bytes())?;
    println!("{text}");
    Ok(())
}

fn eval(a: &EvalArgs) -> Result<()> {
    let clip = open(&a.model, &a.device, None)?;
    let test = fashion_mnist::load(&a.fashion_mnist, Split::Test)?;
    let started = std::time::Instant::now();
    let (acc, per_class) = fashion_mnist::zero_shot_accuracy(&clip, &test, &a.template)?;
    let secs = started.elapsed().as_secs_f64();
    if a.json {
        let v = serde_json::json!({"accuracy": acc, "images": test.len(), "seconds": secs,
            "per_class": CLASSES.iter().zip(per_class).map(|(c, v)| (c.to_string(), serde_json::Value::from(v))).collect::<serde_json::Map<_, _>>()});
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "zero-shot accuracy on {} test images: {:.2}% ({secs:.1} s)",
            test.len(),
            100.0 * acc
        );
        for (c, v) in CLASSES.iter().zip(per_class) {
            println!("  {c:<12} {:.2}%", 100.0 * v);
        }
    }
    Ok(())
}
