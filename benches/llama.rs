//! Prefill and decode speed of SmolLM2-135M-Instruct (Q4_1 GGUF, fetched by
//! `scripts/fetch-assets.sh`) on the CPU. `cargo bench --bench llama`.
//!
//! For each engine (`cpu`: Kiln's kernels on the stored Q4_1 blocks; `burn`: flex on f32 weights):
//! - `prefill/64` and `prefill/256`: one forward pass over a prompt of that many tokens.
//! - `decode/at_128`: one token with 128 positions in the KV cache.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kiln::llama::{EngineKind, LlamaGenerator, LoadOptions};

fn asset() -> PathBuf {
    kiln::llama::assets::asset(kiln::llama::assets::SMOLLM2_GGUF).unwrap_or_else(|e| panic!("{e}"))
}

fn bench(c: &mut Criterion) {
    let ids: Vec<u32> = (0..256u32).map(|i| 100 + (i * 37) % 20_000).collect();
    for engine in [EngineKind::Cpu, EngineKind::Burn] {
        let options = LoadOptions {
            engine,
            ..LoadOptions::default()
        };
        let model = LlamaGenerator::load(asset(), &options).expect("load SmolLM2");
        bench_engine(c, &format!("{engine:?}").to_lowercase(), &model, &ids);
    }
}

fn bench_engine(c: &mut Criterion, engine: &str, model: &LlamaGenerator, ids: &[u32]) {
    let mut g = c.benchmark_group(format!("{engine}/prefill"));
    g.sample_size(10);
    for n in [64usize, 256] {
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(n.to_string(), |b| {
            b.iter(|| {
                let mut cache = model.new_cache();
                black_box(model.forward_last(&ids[..n], &mut cache).expect("forward"));
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group(format!("{engine}/decode"));
    g.sample_size(20);
    g.throughput(Throughput::Elements(1));
    let mut cache = model.new_cache();
    model
        .forward_last(&ids[..128], &mut cache)
        .expect("prefill");
    g.bench_function("at_128", |b| {
        b.iter(|| {
            black_box(model.forward_last(&[42], &mut cache).expect("decode"));
            cache.truncate(128);
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
