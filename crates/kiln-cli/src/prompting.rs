//! The prompt-engineering commands: `kiln template` renders a conversation through a model's chat
//! template; `kiln eval-prompts` runs a prompting strategy over a JSONL dataset.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use kiln_core::TextGenerator;
use kiln_prompt::eval::{Dataset, EvalOptions, Strategy, evaluate};
use kiln_prompt::{ChatTemplate, RenderInput};
use serde_json::Value;

use crate::{ModelArgs, load};

#[derive(Args)]
pub(crate) struct TemplateArgs {
    /// A Hugging Face model directory or a .gguf file (only its chat template and tokens are read).
    #[arg(long, short)]
    model: PathBuf,
    /// A JSON file with the messages: an array of {"role", "content", ...} objects as transformers
    /// takes them (or an object with a "messages" array).
    #[arg(long)]
    messages: PathBuf,
    /// Append the header of the assistant's next turn.
    #[arg(long)]
    add_generation_prompt: bool,
    /// A JSON file with an array of tool definitions ({"type": "function", "function": {...}}).
    #[arg(long)]
    tools: Option<PathBuf>,
}

#[derive(Args)]
pub(crate) struct EvalPromptsArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The JSONL dataset (see kiln_prompt::eval for the format).
    #[arg(long)]
    data: PathBuf,
    /// zero-shot, few-shot, cot, self-consistency (or sc), react.
    #[arg(long)]
    strategy: String,
    /// Score only the first N cases.
    #[arg(long)]
    limit: Option<usize>,
    /// Chains sampled by self-consistency.
    #[arg(long, default_value_t = 3)]
    samples: usize,
    /// Temperature of self-consistency's chains.
    #[arg(long, default_value_t = 0.7)]
    temperature: f32,
    /// Seed of self-consistency's first chain.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Token budget of zero-shot and few-shot answers.
    #[arg(long, default_value_t = 24)]
    answer_tokens: usize,
    /// Token budget of each chain of thought and ReAct step.
    #[arg(long, default_value_t = 160)]
    reasoning_tokens: usize,
    /// ReAct's step limit.
    #[arg(long, default_value_t = 3)]
    react_steps: usize,
    /// Print the report (every case included) as JSON.
    #[arg(long)]
    json: bool,
}

fn read_json(path: &Path, what: &str) -> Result<Value> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the {what} file {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not valid JSON", path.display()))
}

/// The chat template and BOS/EOS texts of a model directory or GGUF file.
fn model_template(path: &Path) -> Result<(String, Option<String>, Option<String>)> {
    if path.is_dir() {
        let hf = kiln_llama::load::HfDirectory::open(path)
            .with_context(|| format!("reading model directory {}", path.display()))?;
        let s = hf.special;
        let t = s
            .chat_template
            .with_context(|| format!("{} ships no chat template", path.display()))?;
        return Ok((t, s.bos_token, s.eos_token));
    }
    if !path.exists() {
        bail!("{}: no such file or directory", path.display());
    }
    let file = kiln_llama::gguf::GgufFile::open(path)
        .with_context(|| format!("reading {}", path.display()))?;
    let (_, info) = kiln_llama::gguf::tokenizer_from_gguf(&file)
        .with_context(|| format!("reading the tokenizer of {}", path.display()))?;
    let t = info
        .chat_template
        .with_context(|| format!("{} ships no chat template", path.display()))?;
    Ok((t, info.bos_token, info.eos_token))
}

pub(crate) fn template(args: &TemplateArgs) -> Result<()> {
    let messages = match read_json(&args.messages, "messages")? {
        Value::Array(m) => m,
        Value::Object(mut o) => match o.remove("messages") {
            Some(Value::Array(m)) => m,
            _ => bail!(
                "{}: expected an array of messages or {{\"messages\": [...]}}",
                args.messages.display()
            ),
        },
        _ => bail!("{}: expected an array of messages", args.messages.display()),
    };
    if let Some(bad) = messages
        .iter()
        .position(|m| m.get("role").and_then(Value::as_str).is_none())
    {
        bail!(
            "{}: message {bad} has no \"role\" string",
            args.messages.display()
        );
    }
    let mut input = RenderInput::new(messages).add_generation_prompt(args.add_generation_prompt);
    if let Some(path) = &args.tools {
        match read_json(path, "tools")? {
            Value::Array(tools) => input = input.tools(tools),
            _ => bail!("{}: expected an array of tool definitions", path.display()),
        }
    }
    let (source, bos, eos) = model_template(&args.model)?;
    if let Some(b) = bos {
        input = input.bos_token(b);
    }
    if let Some(e) = eos {
        input = input.eos_token(e);
    }
    let rendered = ChatTemplate::new(source)?.render(&input)?;
    print!("{rendered}");
    Ok(())
}

pub(crate) fn eval_prompts(args: &EvalPromptsArgs) -> Result<()> {
    let strategy: Strategy = args.strategy.parse()?;
    let dataset = Dataset::load(&args.data)?;
    let (model, adapters) = load(&args.model)?;
    let model = kiln_core::WithAdapters {
        inner: model,
        adapters,
    };
    let options = EvalOptions {
        answer_tokens: args.answer_tokens,
        reasoning_tokens: args.reasoning_tokens,
        samples: args.samples,
        temperature: args.temperature,
        seed: args.seed,
        react_steps: args.react_steps,
        limit: args.limit,
    };
    let report = evaluate(&model, &dataset, strategy, &options, &mut |i, r| {
        eprintln!(
            "[{:>3}] {} expected {:<16} got {:<16} ({} steps, {} tokens)",
            i + 1,
            if r.correct { "ok  " } else { "miss" },
            r.expected,
            r.predicted.as_deref().unwrap_or("-"),
            r.steps,
            r.tokens
        );
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{} | {} | {} | accuracy {:.1}% ({}/{}) | mean steps {:.2} | mean tokens {:.1} | {:.0} s",
            model.model_name(),
            report.task,
            strategy.as_str(),
            100.0 * report.accuracy,
            report.correct,
            report.cases,
            report.mean_steps,
            report.mean_tokens,
            report.seconds
        );
    }
    Ok(())
}
