//! Chain-of-thought on the chicken-and-rabbit problem (35 heads, 94 legs: 23 chickens, 12 rabbits),
//! greedy and with self-consistency (a majority vote over sampled chains).
//!
//! `cargo run --release --features prompt --example cot_chicken_rabbit -- [MODEL]`

use anyhow::{Context, Result};
use kiln::core::SamplingParams;
use kiln::prompt::techniques::{AnswerFormat, ChainOfThought, GenerateOptions, SelfConsistency};

const QUESTION: &str = "A farm has chickens and rabbits. There are 35 heads and 94 legs in total. \
    How many rabbits are there?";

fn main() -> Result<()> {
    let path = match std::env::args().nth(1) {
        Some(p) => p.into(),
        None => kiln::llama::assets::asset(kiln::llama::assets::SMOLLM2_GGUF)?,
    };
    let model = kiln::llama::LlamaGenerator::load(&path, &kiln::llama::LoadOptions::default())
        .with_context(|| format!("loading {}", path.display()))?;
    // The answer is the number after "answer is" (chains that give none do not vote).
    let cot = ChainOfThought::new().format(AnswerFormat::Regex(regex::Regex::new(
        r"(?i)answer is\D{0,24}?(-?\d+)",
    )?));
    let options = GenerateOptions::new().max_tokens(256);
    println!("Prompt:\n{}\n", cot.prompt(QUESTION));
    let greedy = cot.run(&model, QUESTION, &options)?;
    println!("Greedy chain of thought:\n{}\n", greedy.completion.text);
    println!("Extracted answer: {:?} (correct: 12)\n", greedy.answer);

    let sampling = SamplingParams {
        temperature: 0.7,
        ..SamplingParams::default()
    };
    let vote = SelfConsistency::new(5).cot(cot.clone()).base_seed(1).run(
        &model,
        QUESTION,
        &options.clone().sampling(sampling),
    )?;
    for (i, chain) in vote.chains.iter().enumerate() {
        println!("chain {i}: answer {:?}", chain.answer);
    }
    println!("Self-consistency votes: {:?}", vote.counts);
    println!("Majority answer: {:?} (correct: 12)", vote.answer);
    println!(
        "[{} tokens generated in all]",
        vote.usage.completion_tokens + greedy.completion.usage.completion_tokens
    );
    Ok(())
}
