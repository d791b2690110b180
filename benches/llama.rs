//! Prefill and decode speed of SmolLM2-135M-Instruct (Q4_1 GGUF, fetched by
//! `scripts/fetch-assets.sh`) on the CPU. `cargo bench --bench llama`.
//!
//! - `prefill/64` and `prefill/256`: one forward pass over a prompt of that many tokens.
//! - `decode/at_128`: one token with 128 positions in the KV cache.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kiln::llama::LlamaGenerator;

fn asset() -> PathBuf {
    let cache = std::env::var_os("KILN_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/kiln")
        });
    let p = cache.join("assets/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        p.exists(),
        "{} is missing: run scripts/fetch-assets.sh first",
        p.display()
    );
    p
}

fn bench(c: &mut Criterion) {
    let device = kiln::backend::device("cpu").expect("cpu device");
    let model = LlamaGenerator::open(asset(), &device).expect("load SmolLM2");
    let llama = model.model();
    let ids: Vec<u32> = (0..256u32).map(|i| 100 + (i * 37) % 20_000).collect();

    let mut g = c.benchmark_group("prefill");
    g.sample_size(10);
    for n in [64usize, 256] {
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(n.to_string(), |b| {
            b.iter(|| {
                let mut cache = llama.new_cache();
                black_box(
                    llama
                        .forward_last(llama.ids_tensor(&ids[..n], 1), &mut cache)
                        .expect("forward"),
                )
                .into_data();
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("decode");
    g.sample_size(20);
    g.throughput(Throughput::Elements(1));
    let mut cache = llama.new_cache();
    llama
        .forward_last(llama.ids_tensor(&ids[..128], 1), &mut cache)
        .expect("prefill");
    g.bench_function("at_128", |b| {
        b.iter(|| {
            let out = llama
                .forward_last(llama.ids_tensor(&[42], 1), &mut cache)
                .expect("decode");
            black_box(out.into_data());
            cache.truncate(128);
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
