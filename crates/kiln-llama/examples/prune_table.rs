//! The pruning table of docs/PERFORMANCE.md: prunes a Llama GGUF several ways
//! (`kiln_llama::prune`), then measures each variant's file size, perplexity on the second half of
//! a text (at most TOKENS tokens; the first half calibrates the structured pruning), prefill and
//! decode speed on the CPU engine (exact arithmetic, rayon's threads). Prints a Markdown table.
//!
//!     cargo run --release -p kiln-llama --example prune_table -- MODEL.gguf TEXT OUT_DIR [TOKENS=1024]

use std::path::{Path, PathBuf};
use std::time::Instant;

use kiln_core::Tokenizer;
use kiln_llama::prune::{PruneConfig, prune_gguf};
use kiln_llama::{EngineKind, LlamaGenerator, LoadOptions, perplexity};

fn measure(path: &Path, ids: &[u32]) -> Result<(f64, f64, f64), Box<dyn std::error::Error>> {
    let model = LlamaGenerator::load(
        path,
        &LoadOptions {
            engine: EngineKind::Cpu,
            ..LoadOptions::default()
        },
    )?;
    let ppl = perplexity(&model.score_ids(ids)?);
    let cpu = model.cpu_model().ok_or("not on the CPU engine")?;
    let best = |f: &mut dyn FnMut() -> Result<usize, Box<dyn std::error::Error>>| {
        let mut rate = 0f64;
        for _ in 0..3 {
            let t = Instant::now();
            let n = f()?;
            rate = rate.max(n as f64 / t.elapsed().as_secs_f64());
        }
        Ok::<f64, Box<dyn std::error::Error>>(rate)
    };
    let prompt: Vec<u32> = ids.iter().copied().cycle().take(256).collect();
    let pp = best(&mut || {
        let mut cache = cpu.new_cache();
        cpu.forward(&prompt, &mut cache, false)?;
        Ok(prompt.len())
    })?;
    let tg = best(&mut || {
        let mut cache = cpu.new_cache();
        let mut id = prompt[0];
        for _ in 0..64 {
            let logits = cpu.forward(&[id], &mut cache, false)?;
            id = logits
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map_or(0, |(i, _)| i as u32);
        }
        Ok(64)
    })?;
    Ok((ppl, pp, tg))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: prune_table MODEL.gguf TEXT OUT_DIR [TOKENS]";
    let model = PathBuf::from(args.next().ok_or(usage)?);
    let text = std::fs::read_to_string(args.next().ok_or(usage)?)?;
    let out = PathBuf::from(args.next().ok_or(usage)?);
    let tokens: usize = args.next().map_or(Ok(1024), |a| a.parse())?;
    std::fs::create_dir_all(&out)?;
    // Calibration: the first half of the text (perplexity is measured on the second half).
    let all_ids = LlamaGenerator::load(&model, &LoadOptions::default())?
        .tokenizer()
        .encode(&text, false)?;
    let half = all_ids.len() / 2;
    let calibration = all_ids[..half.min(tokens)].to_vec();
    let held_out = all_ids[half..].to_vec();
    let mlp = |kept| PruneConfig {
        mlp_channels_kept: Some(kept),
        calibration: calibration.clone(),
        ..Default::default()
    };
    let magnitude = |sparsity| PruneConfig {
        magnitude_sparsity: sparsity,
        ..Default::default()
    };
    let variants: Vec<(&str, PruneConfig)> = vec![
        ("magnitude 10 %", magnitude(0.1)),
        ("magnitude 20 %", magnitude(0.2)),
        ("magnitude 40 %", magnitude(0.4)),
        ("MLP channels 1536 -> 1472", mlp(1472)),
        ("MLP channels 1536 -> 1344", mlp(1344)),
        ("MLP channels 1536 -> 1152", mlp(1152)),
        (
            "heads 9 -> 6 per layer",
            PruneConfig {
                heads_removed_per_group: 1,
                calibration: calibration.clone(),
                ..Default::default()
            },
        ),
    ];
    let held_out = &held_out[..held_out.len().min(tokens)];
    let (ppl, pp, tg) = measure(&model, held_out)?;
    let size = std::fs::metadata(&model)?.len() as f64 / 1e6;
    println!("| variant | file MB | perplexity | pp256 tok/s | tg64 tok/s |");
    println!("|---|---:|---:|---:|---:|");
    println!("| unpruned | {size:.1} | {ppl:.2} | {pp:.0} | {tg:.0} |");
    for (i, (name, config)) in variants.iter().enumerate() {
        let path = out.join(format!("variant-{i}.gguf"));
        let report = prune_gguf(&model, &path, config)?;
        let (ppl, pp, tg) = measure(&path, held_out)?;
        println!(
            "| {name} | {:.1} | {ppl:.2} | {pp:.0} | {tg:.0} |",
            report.bytes.1 as f64 / 1e6
        );
    }
    Ok(())
}
