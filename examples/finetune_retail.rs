//! QLoRA on the retail customer-service data: SmolLM2-135M-Instruct (its Q4_1 GGUF base, kept at
//! its block values) learns the fictional Fernhollow Outfitters' policies and products, and the
//! held-out questions (other phrasings of the trained facts) are answered before and after.
//!
//! `cargo run --release --features lora,eval --example finetune_retail -- [OUT_DIR] [TRAIN_LIMIT]`
//!
//! Prints the before/after table of docs/FINETUNING.md: held-out loss and perplexity, answer
//! accuracy (the canonical answer, e.g. "45 days", appears in the reply), token F1, ROUGE-L.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use kiln::core::{
    AdapterChoice, ChatMessage, GenerationRequest, Role, SamplingParams, TextGenerator,
};
use kiln::eval::{Report, Sample};
use kiln::llama::train::{DataFormat, TrainConfig, Trainer, load_examples};
use kiln::llama::{EngineKind, LlamaGenerator, LoadOptions};
use kiln::lora::{LoraConfig, TargetModules};
use serde_json::Value;

const HELD_OUT_ANSWERS: usize = 100;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Greedy answers to the held-out questions, scored against the references.
fn answer_report(
    model: &LlamaGenerator,
    adapters: &[AdapterChoice],
    data: &Path,
) -> Result<Report> {
    let text = std::fs::read_to_string(data)?;
    let mut samples = Vec::new();
    for line in text.lines().take(HELD_OUT_ANSWERS) {
        let v: Value = serde_json::from_str(line)?;
        let mut messages: Vec<ChatMessage> = serde_json::from_value(v["messages"].clone())?;
        let reference = messages.pop().context("empty conversation")?;
        anyhow::ensure!(
            reference.role == Role::Assistant,
            "last message is not the answer"
        );
        let mut req = GenerationRequest::chat(messages)
            .with_sampling(SamplingParams::greedy())
            .with_max_tokens(48);
        req.adapters = adapters.to_vec();
        let out = model.generate(&req)?;
        samples.push(Sample {
            prediction: out.text.trim().to_string(),
            references: vec![reference.text_content()],
            answer: v["answer"].as_str().map(str::to_string),
            logprobs: Vec::new(),
        });
    }
    Ok(Report::compute(&samples, false)?)
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let out = PathBuf::from(args.next().unwrap_or_else(|| "target/retail-qlora".into()));
    let limit: Option<usize> = args.next().map(|s| s.parse()).transpose()?;
    let gguf = kiln::llama::assets::asset(kiln::llama::assets::SMOLLM2_GGUF)
        .context("run scripts/fetch-assets.sh first")?;
    let train_path = root().join("datasets/retail/qa_train.jsonl");
    let heldout_path = root().join("datasets/retail/qa_heldout.jsonl");

    // Training runs on burn's autodiff; the base is the GGUF's Q4_1 values (QLoRA on a block-
    // quantized base). Answers are generated on Kiln's CPU kernels over the same Q4_1 blocks.
    let device = kiln::backend::device("cpu")?.autodiff();
    let trainable = LlamaGenerator::open_qlora(&gguf, &device)?;
    let mut train = load_examples(&train_path, DataFormat::Chat, &trainable, 256)?;
    if let Some(n) = limit {
        train.truncate(n);
    }
    let heldout = load_examples(&heldout_path, DataFormat::Chat, &trainable, 256)?;
    let config = TrainConfig {
        lora: LoraConfig {
            r: 16,
            lora_alpha: 32.0,
            lora_dropout: 0.05,
            target_modules: Some(TargetModules::Pattern("all-linear".into())),
            ..LoraConfig::default()
        },
        epochs: 1,
        lr: 1e-3,
        batch_size: 8,
        warmup_steps: 10,
        eval_every: 40,
        save_every: 40,
        seed: 7,
        ..TrainConfig::default()
    };
    println!(
        "QLoRA on {} training conversations, {} held out; r 16, alpha 32, all linear layers",
        train.len(),
        heldout.len()
    );
    let report = Trainer::new(&trainable, config)?.run(&train, Some(&heldout), &out)?;
    drop(trainable);

    let cpu = LoadOptions {
        engine: EngineKind::Cpu,
        ..LoadOptions::default()
    };
    let model = LlamaGenerator::load(&gguf, &cpu)?;
    model.load_adapter("retail", &out)?;
    let before = answer_report(&model, &[], &heldout_path)?;
    let tuned = [AdapterChoice {
        name: "retail".into(),
        weight: 1.0,
    }];
    let after = answer_report(&model, &tuned, &heldout_path)?;

    let (l0, l1) = (
        report.initial_eval_loss.unwrap_or(f64::NAN),
        report.final_eval_loss.unwrap_or(f64::NAN),
    );
    println!("\n| held-out measure | SmolLM2-135M-Instruct | + QLoRA adapter |");
    println!("|---|---|---|");
    println!(
        "| loss (assistant tokens, {} conversations) | {l0:.3} | {l1:.3} |",
        heldout.len()
    );
    println!("| perplexity | {:.2} | {:.2} |", l0.exp(), l1.exp());
    let acc = |r: &Report| r.answer_accuracy.unwrap_or(f64::NAN) * 100.0;
    println!(
        "| answer accuracy (first {HELD_OUT_ANSWERS}) | {:.1}% | {:.1}% |",
        acc(&before),
        acc(&after)
    );
    println!(
        "| token F1 | {:.3} | {:.3} |",
        before.token_f1, after.token_f1
    );
    println!("| ROUGE-L | {:.3} | {:.3} |", before.rouge_l, after.rouge_l);
    println!(
        "| BLEU (corpus) | {:.2} | {:.2} |",
        before.corpus_bleu, after.corpus_bleu
    );
    println!(
        "\n{} optimizer steps, {:.0} training tokens/s; adapter, loss.csv and loss.png in {}",
        report.steps,
        report.tokens_per_second,
        out.display()
    );
    Ok(())
}
