//! Decode throughput of continuous batching on the CPU engine: N sequences decoded together
//! (`BatchGenerator`) against one, excluding prefill, alternating `ROUNDS` (default 3) times; prints
//! one JSON line with the medians.
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
    // One and N alternate, ROUNDS times, so that both see the same machine: on a shared VM the
    // speed drifts by 10-20 % within a minute. The ratio reported is the median of the rounds'.
    let rounds: usize = std::env::var("ROUNDS").map_or(Ok(3), |v| v.parse())?;
    let (mut ones, mut manys, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds.max(1) {
        let one = decode_rate(1)?;
        let many = decode_rate(n)?;
        ones.push(one);
        manys.push(many);
        ratios.push(many / one);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let fmt = |v: &[f64]| {
        v.iter()
            .map(|r| format!("{r:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let all = fmt(&ratios);
    println!(
        "{{\"sequences\": {n}, \"tokens\": {tokens}, \"rounds\": {}, \"one_tokens_per_s\": {:.1}, \"batch_tokens_per_s\": {:.1}, \"ratio\": {:.2}, \"ratios\": [{all}]}}",
        ratios.len(),
        median(&mut ones),
        median(&mut manys),
        median(&mut ratios),
    );
    Ok(())
}
