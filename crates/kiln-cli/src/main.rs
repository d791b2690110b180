//! `kiln`: generate, score and chat with Llama-family models from the command line.
//!
//! `--model` takes a Hugging Face directory or a `.gguf` file; `--device` takes `cpu`, `wgpu`,
//! `vulkan` or `cuda:N`.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use kiln_core::AdapterChoice;
use kiln_core::{
    CancelToken, ChatMessage, GenerationRequest, Prompt, SamplingParams, StopConditions,
    StreamEvent, TextGenerator, Tokenizer,
};
use kiln_llama::LlamaGenerator;

mod clip;
mod prompting;
mod retail;
mod serve;
mod tune;

#[derive(Parser)]
#[command(
    name = "kiln",
    version,
    about = "Kiln: run Llama-family models (HF safetensors directories or GGUF files)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate a continuation of a prompt (or an answer with --chat).
    Generate(GenerateArgs),
    /// Per-token log-probabilities and perplexity of a text or id sequence.
    Score(ScoreArgs),
    /// An interactive chat in the terminal.
    Chat(ChatArgs),
    /// Fine-tune a LoRA / QLoRA adapter on JSONL data.
    Finetune(tune::FinetuneArgs),
    /// Merge adapters into the base model and write a Hugging Face directory.
    Merge(tune::MergeArgs),
    /// Evaluate a model (and adapters) on held-out chat data: perplexity, exact match, answer
    /// accuracy, token F1, BLEU, ROUGE-L.
    Eval(tune::EvalArgs),
    /// Manage adapters.
    #[command(subcommand)]
    Adapters(tune::AdaptersCommand),
    /// Print a conversation rendered through a model's chat template.
    Template(prompting::TemplateArgs),
    /// Evaluate a prompting strategy on a JSONL dataset (accuracy, steps, tokens).
    EvalPrompts(prompting::EvalPromptsArgs),
    /// CLIP: zero-shot classification, embeddings, contrastive training.
    #[command(subcommand)]
    Clip(clip::ClipCommand),
    /// Serve models over an OpenAI-compatible HTTP API (docs/SERVING.md).
    Serve(serve::ServeArgs),
    /// The retail customer-service assistant: demo, serve (web chat), eval (docs/RETAIL.md).
    #[command(subcommand)]
    Retail(retail::RetailCommand),
}

/// The model to load and the adapters to apply.
#[derive(Args)]
pub struct ModelArgs {
    /// A Hugging Face model directory or a .gguf file.
    #[arg(long, short)]
    model: PathBuf,
    /// Device: cpu, wgpu, vulkan, cuda, cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Engine: auto (Kiln's quantized CPU kernels on the CPU, burn on GPUs), burn, or cpu.
    #[arg(long, default_value = "auto")]
    engine: String,
    /// CPU engine arithmetic on block-quantized weights: exact (f32 activations, transformers'
    /// numbers) or int8 (llama.cpp's arithmetic: 8-bit activations for decode steps and an f16 KV
    /// cache; faster, less exact).
    #[arg(long, default_value = "exact")]
    activations: kiln_llama::Activations,
    /// Quantize the projections of an f32/f16/bf16 checkpoint to NF4 at load (bitsandbytes'
    /// format; 4-bit weights on the CPU kernels).
    #[arg(long)]
    nf4: bool,
    /// A PEFT LoRA adapter directory to apply, optionally `DIR@WEIGHT` (repeatable).
    #[arg(long)]
    adapter: Vec<String>,
}

#[derive(Args)]
struct SamplingArgs {
    /// Tokens to generate at most.
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.7)]
    temperature: f32,
    /// Top-k filter (0 disables).
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    /// Top-p (nucleus) filter.
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    /// Min-p filter.
    #[arg(long, default_value_t = 0.0)]
    min_p: f32,
    /// Repetition penalty (1 disables).
    #[arg(long, default_value_t = 1.0)]
    repetition_penalty: f32,
    /// Random seed for reproducible sampling.
    #[arg(long)]
    seed: Option<u64>,
    /// Stop when this string is generated (repeatable).
    #[arg(long)]
    stop: Vec<String>,
    /// Keep generating past end-of-sequence tokens.
    #[arg(long)]
    ignore_eos: bool,
}

impl SamplingArgs {
    fn sampling(&self) -> SamplingParams {
        SamplingParams {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repetition_penalty: self.repetition_penalty,
            seed: self.seed,
            ..SamplingParams::default()
        }
    }
    fn stop(&self) -> StopConditions {
        StopConditions {
            stop_strings: self.stop.clone(),
            stop_token_ids: Vec::new(),
            ignore_eos: self.ignore_eos,
        }
    }
}

#[derive(Args)]
struct GenerateArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The prompt.
    #[arg(long, short)]
    prompt: String,
    /// Apply the model's chat template to the prompt as a user message.
    #[arg(long)]
    chat: bool,
    /// A system message (with --chat).
    #[arg(long)]
    system: Option<String>,
    /// An image shown to a vision-language (LLaVA) model before the prompt (repeatable; implies
    /// --chat).
    #[arg(long)]
    image: Vec<PathBuf>,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// Print one JSON object (text, ids, finish reason, usage, timings) instead of streaming text.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ScoreArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Text to score (tokenized with the model's tokenizer, BOS added as the tokenizer does).
    #[arg(long, conflicts_with = "ids", required_unless_present = "ids")]
    text: Option<String>,
    /// Comma-separated token ids to score.
    #[arg(long, value_delimiter = ',')]
    ids: Option<Vec<u32>>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ChatArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// A system message.
    #[arg(long)]
    system: Option<String>,
    #[command(flatten)]
    sampling: SamplingArgs,
}

/// Loads the model and its adapters; returns the adapter choices requests carry.
fn load(args: &ModelArgs) -> Result<(LlamaGenerator, Vec<AdapterChoice>)> {
    let options = kiln_llama::LoadOptions {
        device: args.device.parse().context("selecting the device")?,
        engine: args.engine.parse()?,
        nf4: args.nf4,
        activations: args.activations,
    };
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    spinner.set_message(format!("loading {}", args.model.display()));
    spinner.enable_steady_tick(Duration::from_millis(120));
    let model = LlamaGenerator::load(&args.model, &options);
    spinner.finish_and_clear();
    let model = model.with_context(|| format!("loading model {}", args.model.display()))?;
    let choices = tune::attach_adapters(&model, &args.adapter)?;
    Ok((model, choices))
}

/// Whether `path` is a LLaVA directory (`config.json` with `model_type` `llava`).
fn is_llava(path: &std::path::Path) -> bool {
    std::fs::read_to_string(path.join("config.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .is_some_and(|v| v["model_type"] == "llava")
}

/// Loads a Llama model (with its adapters) or a LLaVA directory, as a text generator.
fn load_any(args: &ModelArgs) -> Result<(Box<dyn TextGenerator>, Vec<AdapterChoice>)> {
    if !is_llava(&args.model) {
        let (m, a) = load(args)?;
        return Ok((Box::new(m), a));
    }
    if !args.adapter.is_empty() {
        bail!("--adapter is not supported for LLaVA models yet");
    }
    let device = args
        .device
        .parse::<kiln_backend::DeviceSpec>()
        .context("selecting the device")?
        .device()?;
    let g = kiln_llava::LlavaGenerator::open(&args.model, &device)
        .with_context(|| format!("loading LLaVA from {}", args.model.display()))?;
    Ok((Box::new(g), Vec::new()))
}

fn generate(args: &GenerateArgs) -> Result<()> {
    let (model, adapters) = load_any(&args.model)?;
    let prompt = if args.chat || !args.image.is_empty() {
        let mut messages = Vec::new();
        if let Some(s) = &args.system {
            messages.push(ChatMessage::system(s.clone()));
        }
        let mut user = ChatMessage::user(args.prompt.clone());
        // Images first, then the question, as LLaVA's examples put them.
        let images = args.image.iter().map(|p| kiln_core::ContentPart::Image {
            source: kiln_core::ImageSource::Path {
                path: p.display().to_string(),
            },
        });
        user.content = images.chain(user.content).collect();
        messages.push(user);
        Prompt::Chat(messages)
    } else {
        if args.system.is_some() {
            bail!("--system needs --chat");
        }
        Prompt::Text(args.prompt.clone())
    };
    let mut request = GenerationRequest::new(prompt)
        .with_sampling(args.sampling.sampling())
        .with_stop(args.sampling.stop())
        .with_max_tokens(args.sampling.max_tokens);
    request.adapters = adapters;
    let cancel = CancelToken::new();
    if args.json {
        let out = model.generate_stream(&request, &cancel, &mut |_| {})?;
        let json = serde_json::json!({
            "model": model.model_name(),
            "text": out.text,
            "token_ids": out.token_ids,
            "prompt_ids": out.prompt_ids,
            "finish_reason": out.finish_reason.as_str(),
            "usage": out.usage,
            "timings": out.timings,
        });
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        let stdout = std::io::stdout();
        let mut lock = stdout.lock();
        let out = model.generate_stream(&request, &cancel, &mut |ev| {
            let StreamEvent::Token { text, .. } = ev;
            let _ = lock.write_all(text.as_bytes());
            let _ = lock.flush();
        })?;
        drop(lock);
        println!();
        eprintln!(
            "[{} prompt tokens, {} generated, finish: {}, prefill {:.1} tok/s, decode {:.1} tok/s]",
            out.usage.prompt_tokens,
            out.usage.completion_tokens,
            out.finish_reason.as_str(),
            out.timings.prefill_tokens_per_second,
            out.timings.decode_tokens_per_second
        );
    }
    Ok(())
}

fn score(args: &ScoreArgs) -> Result<()> {
    let (model, adapters) = load(&args.model)?;
    let ids = match (&args.text, &args.ids) {
        (Some(t), _) => model.tokenizer().encode(t, true)?,
        (None, Some(ids)) => ids.clone(),
        (None, None) => bail!("give --text or --ids"),
    };
    let logprobs = model.score_ids_with(&ids, &model.mix(&adapters)?)?;
    let ppl = kiln_llama::perplexity(&logprobs);
    if args.json {
        println!(
            "{}",
            serde_json::json!({ "ids": ids, "logprobs": logprobs, "perplexity": ppl })
        );
    } else {
        for (i, lp) in logprobs.iter().enumerate() {
            let id = ids[i + 1];
            let tok = model.tokenizer().decode(&[id], false).unwrap_or_default();
            println!("{:>6} {:>10.4}  {:?}", id, lp, tok);
        }
        println!("perplexity: {ppl:.4} over {} tokens", logprobs.len());
    }
    Ok(())
}

fn chat(args: &ChatArgs) -> Result<()> {
    let (model, adapters) = load_any(&args.model)?;
    let mut images: Vec<kiln_core::ContentPart> = Vec::new();
    let mut history: Vec<ChatMessage> = Vec::new();
    if let Some(s) = &args.system {
        history.push(ChatMessage::system(s.clone()));
    }
    eprintln!(
        "kiln chat with {} ({} tokens of context). Empty line or Ctrl-D ends; /reset clears; \
         /image PATH shows an image with the next message (vision-language models).",
        model.model_name(),
        model.context_length()
    );
    let stdin = std::io::stdin();
    let mut line = String::new();
    loop {
        eprint!("> ");
        line.clear();
        if stdin.lock().read_line(&mut line)? == 0 {
            break;
        }
        let input = line.trim();
        if input.is_empty() {
            break;
        }
        if input == "/reset" {
            history.retain(|m| m.role == kiln_core::Role::System);
            images.clear();
            continue;
        }
        if let Some(path) = input.strip_prefix("/image ") {
            images.push(kiln_core::ContentPart::Image {
                source: kiln_core::ImageSource::Path {
                    path: path.trim().to_string(),
                },
            });
            eprintln!("[image attached to your next message]");
            continue;
        }
        let mut user = ChatMessage::user(input);
        user.content = images.drain(..).chain(user.content).collect();
        history.push(user);
        let mut request = GenerationRequest::chat(history.clone())
            .with_sampling(args.sampling.sampling())
            .with_stop(args.sampling.stop())
            .with_max_tokens(args.sampling.max_tokens);
        request.adapters = adapters.clone();
        let stdout = std::io::stdout();
        let mut lock = stdout.lock();
        let result = model.generate_stream(&request, &CancelToken::new(), &mut |ev| {
            let StreamEvent::Token { text, .. } = ev;
            let _ = lock.write_all(text.as_bytes());
            let _ = lock.flush();
        });
        drop(lock);
        println!();
        match result {
            Ok(out) => history.push(ChatMessage::assistant(out.text)),
            Err(kiln_core::Error::ContextLength { .. }) => {
                eprintln!("[the conversation no longer fits the context; /reset to start over]");
                history.pop();
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Generate(a) => generate(a),
        Command::Score(a) => score(a),
        Command::Chat(a) => chat(a),
        Command::Finetune(a) => tune::finetune(a),
        Command::Merge(a) => tune::merge(a),
        Command::Eval(a) => tune::eval(a),
        Command::Adapters(tune::AdaptersCommand::Average(a)) => tune::average(a),
        Command::Template(a) => prompting::template(a),
        Command::EvalPrompts(a) => prompting::eval_prompts(a),
        Command::Clip(c) => clip::run(c),
        Command::Serve(a) => serve::serve(a),
        Command::Retail(c) => retail::run(c),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
