//! LLaVA stage 1 on Fashion-MNIST: a projector learns to map the frozen vision tower of the CLIP
//! trained by `scripts/clip-fashion.sh` into frozen SmolLM2-135M-Instruct, from captions
//! "What is shown in this picture? It is a {class}"; then SmolLM2 names the clothing in held-out
//! test images. Reports the accuracy before and after training (docs/MULTIMODAL.md).
//!
//!     cargo run --release -p kiln-llava --example fashion_projector -- \
//!         [clip=DIR] [llm=GGUF] [fashion=DIR] [train=2000] [test=500] [steps=250] [batch=8] [lr=2e-3]
//!         [lora=R] [out=DIR]
//!
//! `lora=R` runs stage 2 instead: a rank-R LoRA adapter on SmolLM2's q/v projections trains along with
//! the projector (saved to OUT/adapter in PEFT's format).

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use kiln_clip::Clip;
use kiln_clip::fashion_mnist::{self, CLASSES, Sample, Split};
use kiln_core::Tokenizer;
use kiln_llama::LlamaGenerator;
use kiln_llava::Projector;
use kiln_llava::train::{
    CaptionExample, ProjectorTrainConfig, choose_first_token, greedy_answers, train_projector,
};

const PROMPT: &str = "What is shown in this picture? It is a";

fn main() -> Result<()> {
    let args: HashMap<String, String> = std::env::args()
        .skip(1)
        .filter_map(|a| {
            a.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    let cache = std::env::var_os("KILN_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/kiln")
        });
    let get = |k: &str, d: PathBuf| args.get(k).map_or(d, PathBuf::from);
    let num = |k: &str, d: usize| args.get(k).and_then(|v| v.parse().ok()).unwrap_or(d);
    let clip_dir = get("clip", cache.join("runs/clip-fashion"));
    let llm = get("llm", cache.join("assets/SmolLM2-135M-Instruct.Q4_1.gguf"));
    let fashion = get("fashion", cache.join("assets/fashion-mnist"));
    let out = get("out", cache.join("runs/llava-fashion"));
    let (n_train, n_test, steps, batch) = (
        num("train", 2000),
        num("test", 500),
        num("steps", 250),
        num("batch", 8),
    );
    let lr: f64 = args.get("lr").and_then(|v| v.parse().ok()).unwrap_or(2e-3);

    let flex = Device::flex();
    flex.seed(0);
    let clip = Clip::open(&clip_dir, &flex)
        .with_context(|| format!("{} (run scripts/clip-fashion.sh first)", clip_dir.display()))?;
    let ad = flex.clone().autodiff();
    let generator =
        LlamaGenerator::open(&llm, &ad).context("loading SmolLM2 on burn's autodiff device")?;
    let language = generator.model().context("the burn engine")?;
    let tok = generator.tokenizer();
    let image_token = tok.token_to_id("<filename>").unwrap_or(4);
    let eos = *language
        .config
        .eos_token_ids
        .first()
        .context("an end token")?;
    let prompt = tok.encode(PROMPT, false)?;
    let answers: Vec<Vec<u32>> = CLASSES
        .iter()
        .map(|c| tok.encode(&format!(" {c}"), false))
        .collect::<std::result::Result<_, _>>()?;
    if prompt.contains(&image_token) || answers.iter().any(|a| a.contains(&image_token)) {
        bail!("the image placeholder token occurs in the text");
    }

    // Frozen vision features: layer -2 of the CLIP vision tower, class token dropped (LLaVA's default).
    let features = |samples: &[Sample]| -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(samples.len());
        for chunk in samples.chunks(128) {
            let images: Vec<_> = chunk.iter().map(|s| s.image.clone()).collect();
            let states = clip
                .model()
                .vision_model
                .hidden_states(clip.pixel_values(&images)?);
            let x = states[states.len() - 2].clone();
            let [b, t, h] = x.dims();
            let v = x
                .slice([0..b, 1..t, 0..h])
                .into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            out.extend(v.chunks((t - 1) * h).map(<[f32]>::to_vec));
        }
        Ok(out)
    };
    let train: Vec<Sample> = fashion_mnist::load(&fashion, Split::Train)?
        .into_iter()
        .take(n_train)
        .collect();
    let test: Vec<Sample> = fashion_mnist::load(&fashion, Split::Test)?
        .into_iter()
        .take(n_test)
        .collect();
    let make = |samples: &[Sample], feats: Vec<Vec<f32>>| -> Vec<CaptionExample> {
        samples
            .iter()
            .zip(feats)
            .map(|(s, f)| CaptionExample {
                features: f,
                prompt: prompt.clone(),
                answer: answers[s.label].iter().copied().chain([eos]).collect(),
            })
            .collect()
    };
    let train_ex = make(&train, features(&train)?);
    let test_ex = make(&test, features(&test)?);
    let vin = clip.config().vision_config.hidden_size;
    let projector = Projector::init(
        vin,
        language.config.hidden_size,
        kiln_clip::Activation::Gelu,
        true,
        &ad,
    );

    let accuracy = |p: &Projector| -> Result<f64> {
        let picks = choose_first_token(p, language, None, image_token, &test_ex, &answers, 32)?;
        Ok(picks
            .iter()
            .zip(&test)
            .filter(|(p, s)| **p == s.label)
            .count() as f64
            / test.len() as f64)
    };
    let before = accuracy(&projector)?;
    eprintln!(
        "first-token accuracy before training: {:.2}%",
        100.0 * before
    );
    let cfg = ProjectorTrainConfig {
        epochs: 100,
        batch_size: batch,
        lr,
        warmup_steps: 20,
        max_steps: Some(steps),
        seed: 0,
        progress: true,
        lora: match args.get("lora").and_then(|r| r.parse::<usize>().ok()) {
            Some(r) => Some(serde_json::from_value(serde_json::json!({
                "peft_type": "LORA", "r": r, "lora_alpha": 2 * r, "target_modules": ["q_proj", "v_proj"]
            }))?),
            None => None,
        },
    };
    let (projector, report) = train_projector(
        projector,
        language,
        image_token,
        &train_ex,
        &cfg,
        Some(&out),
    )?;
    let adapter = report.adapter.clone();
    if let Some(a) = &adapter {
        a.save(out.join("adapter"))?;
    }
    let picks = choose_first_token(
        &projector,
        language,
        adapter.as_ref(),
        image_token,
        &test_ex,
        &answers,
        32,
    )?;
    let after = picks
        .iter()
        .zip(&test)
        .filter(|(p, s)| **p == s.label)
        .count() as f64
        / test.len() as f64;
    let free_n = test_ex.len().min(100);
    let greedy = greedy_answers(
        &projector,
        language,
        adapter.as_ref(),
        image_token,
        &test_ex[..free_n],
        4,
    )?;
    let mut named = 0;
    let mut shown = Vec::new();
    for (ids, s) in greedy.iter().zip(&test) {
        let text = tok.decode(ids, true)?.trim().to_lowercase();
        if text.starts_with(CLASSES[s.label]) {
            named += 1;
        }
        if shown.len() < 8 {
            shown.push(serde_json::json!({"label": CLASSES[s.label], "generated": text}));
        }
    }
    let report = serde_json::json!({
        "train_examples": train_ex.len(),
        "test_images": test.len(),
        "steps": report.steps,
        "batch": batch,
        "lr": lr,
        "stage": if adapter.is_some() { "2 (projector + LoRA r on q/v)" } else { "1 (projector)" },
        "seconds": report.seconds,
        "first_loss": report.losses.first(),
        "last_loss": report.losses.last(),
        "first_token_accuracy_before": before,
        "first_token_accuracy_after": after,
        "greedy_named_accuracy": named as f64 / free_n as f64,
        "greedy_images": free_n,
        "examples": shown,
    });
    let text = serde_json::to_string_pretty(&report)?;
    kiln_core::fs::write_atomic(&out.join("report.json"), text.as_bytes())?;
    println!("{text}");
    Ok(())
}
