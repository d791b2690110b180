//! Decode throughput of continuous batching on the CPU engine: N sequences decoded together
//! (`BatchGenerator`) against one, excluding prefill. Prints one JSON line.
//!
//!     cargo run --release -p kiln-llama --example bench_batch -- MODEL.gguf [N=8] [TOKENS=64] [exact|int8]

use std::time::Instant;

use kiln_core::{BatchGenerator, GenerationRequest, SamplingParams};
use kiln_llama::{LlamaGenerator, LoadOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or("usage: bench_batch MODEL [N] [TOKENS] [exact|int8]")?;
    let n: usize = args.next().map_or(Ok(8), |a| a.parse())?;
    let tokens: usize = args.next().map_or(Ok(64), |a| a.parse())?;
    let activations = match args.next() {
        Some(a) => a.parse::<kiln_llama::Activations>()?,
        None => kiln_llama::Activations::Exact,
    };
    let model = LlamaGenerator::load(
        &path,
        &LoadOptions {
            activations,
            ..LoadOptions::default()
        },
    )?;
    let request = |i: usize| {
        let mut r = GenerationRequest::text(format!("Story number {i}: once upon a time"))
            .with_sampling(SamplingParams::greedy())
            .with_max_tokens(tokens);
        r.stop.ignore_eos = true;
        r
    };
    let decode_rate = |k: usize| -> Result<f64, Box<dyn std::error::Error>> {
        let mut batch = model.start_batch(k)?;
        for i in 0..k {
            batch.join(&request(i))?;
        }
        // The first step samples from the prefill logits; time the steps after it.
        batch.step(&mut |_, _| {})?;
        let t = Instant::now();
        let mut steps = 0usize;
        while !batch.is_empty() {
            batch.step(&mut |_, _| {})?;
            steps += 1;
        }
        Ok((steps * k) as f64 / t.elapsed().as_secs_f64())
    };
    let one = decode_rate(1)?;
    let many = decode_rate(n)?;
    println!(
        "{{\"sequences\": {n}, \"tokens\": {tokens}, \"one_tokens_per_s\": {one:.1}, \"batch_tokens_per_s\": {many:.1}, \"ratio\": {:.2}}}",
        many / one
    );
    Ok(())
}
