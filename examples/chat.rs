//! Ask a model one question through its chat template and stream the answer.
//!
//! `cargo run --release --example chat -- MODEL "question"` where MODEL is an HF directory or a GGUF file.

use std::io::Write;

use anyhow::{Context, Result};
use kiln::core::{
    CancelToken, ChatMessage, GenerationRequest, SamplingParams, StreamEvent, TextGenerator,
};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let model_path = args.next().context("usage: chat MODEL [QUESTION]")?;
    let question = args
        .next()
        .unwrap_or_else(|| "What is the capital of France?".to_string());
    let model =
        kiln::llama::LlamaGenerator::load(&model_path, &kiln::llama::LoadOptions::default())?;
    let request = GenerationRequest::chat(vec![ChatMessage::user(question)])
        .with_sampling(SamplingParams::greedy())
        .with_max_tokens(128);
    let out = model.generate_stream(&request, &CancelToken::new(), &mut |ev| {
        let StreamEvent::Token { text, .. } = ev;
        print!("{text}");
        let _ = std::io::stdout().flush();
    })?;
    println!(
        "\n[{} tokens, {:.1} tok/s]",
        out.usage.completion_tokens, out.timings.decode_tokens_per_second
    );
    Ok(())
}
