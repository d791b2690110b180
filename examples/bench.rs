//! llama-bench's tests on Kiln: `pp<N>` (one N-token prompt as one batch) and `tg<N>` (N tokens
//! generated one at a time from an empty context), one warm-up then `--reps` timed runs, printed as
//! JSON with mean and standard deviation in tokens per second.
//!
//! `cargo run --release --example bench -- MODEL [--pp 512,64] [--tg 128] [--reps 3] [--device cpu]
//! [--engine auto|burn|cpu] [--activations exact|int8]`
//! Threads: `RAYON_NUM_THREADS` (burn's CPU backend runs on rayon's global pool).

use std::time::Instant;

use anyhow::{Context, Result, bail};

fn stats(v: &[f64]) -> (f64, f64) {
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (v.len().max(2) - 1) as f64;
    (mean, var.sqrt())
}

fn list(s: &str) -> Result<Vec<usize>> {
    s.split(',')
        .filter(|x| !x.is_empty())
        .map(|x| x.parse().context("a number list like 512,64"))
        .collect()
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let model_path = args.next().context(
        "usage: bench MODEL [--pp 512,64] [--tg 128] [--reps 3] [--device cpu] [--engine auto]",
    )?;
    let (mut pp, mut tg, mut reps) = (vec![512, 64], vec![128], 3usize);
    let (mut device, mut engine) = ("cpu".to_string(), "auto".to_string());
    let mut activations = kiln::llama::Activations::Exact;
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--pp" => pp = list(&value)?,
            "--tg" => tg = list(&value)?,
            "--reps" => reps = value.parse()?,
            "--device" => device = value,
            "--engine" => engine = value,
            "--activations" => activations = value.parse().map_err(anyhow::Error::msg)?,
            other => bail!("unknown flag {other}"),
        }
    }
    let options = kiln::llama::LoadOptions {
        device: device.parse()?,
        engine: engine.parse()?,
        activations,
        ..Default::default()
    };
    let model = kiln::llama::LlamaGenerator::load(&model_path, &options)?;
    let vocab = model.config().vocab_size as u32;
    let ids: Vec<u32> = (0..4096u32)
        .map(|i| 100 + (i * 7919) % (vocab - 200))
        .collect();
    let mut results = Vec::new();
    for &n in &pp {
        let mut runs = Vec::new();
        for rep in 0..=reps {
            let mut cache = model.new_cache();
            let t = Instant::now();
            let _logits = model.forward_last(&ids[..n], &mut cache)?;
            if rep > 0 {
                runs.push(n as f64 / t.elapsed().as_secs_f64());
            }
        }
        let (mean, sd) = stats(&runs);
        results.push(serde_json::json!({"test": format!("pp{n}"), "tokens_per_second": mean, "stddev": sd, "samples": runs}));
    }
    for &n in &tg {
        let mut runs = Vec::new();
        for rep in 0..=reps {
            let mut cache = model.new_cache();
            let mut next = ids[0];
            let t = Instant::now();
            for _ in 0..n {
                let row = model.forward_last(&[next], &mut cache)?;
                next = kiln::llama::sampling::argmax(&row);
            }
            if rep > 0 {
                runs.push(n as f64 / t.elapsed().as_secs_f64());
            }
        }
        let (mean, sd) = stats(&runs);
        results.push(serde_json::json!({"test": format!("tg{n}"), "tokens_per_second": mean, "stddev": sd, "samples": runs}));
    }
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all".into());
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({
            "model": model_path,
            "engine": engine,
            "activations": format!("{activations:?}").to_lowercase(),
            "weight_bytes_per_token": model.cpu_model().map(|m| m.weight_bytes_per_token()),
            "threads": threads,
            "results": results
        }))?
    );
    Ok(())
}
