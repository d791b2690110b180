//! The burn engine on a GPU backend gives the CPU's greedy tokens and logits.
//!
//! Compiled with the `wgpu` or `cuda` feature; the device comes from `KILN_GPU_DEVICE` (default
//! `wgpu`: the system's default adapter, which on a machine without a GPU is Mesa's software
//! Vulkan, llvmpipe). `scripts/gpu-check.sh` runs it; `.ci/run` runs it on llvmpipe.
//!
//! Tolerance: 1e-3 max absolute difference of f32 logits against the CPU (flex) backend on the
//! tiny random fixtures (GPU reductions sum in another order; llvmpipe's fused multiply-adds
//! differ from flex's), and greedy tokens identical to transformers' reference.

#![cfg(any(feature = "wgpu", feature = "cuda"))]

use std::path::PathBuf;

use kiln_core::{GenerationRequest, Prompt, SamplingParams, TextGenerator};
use kiln_llama::LlamaGenerator;
use serde_json::Value;

const FIXTURES: [&str; 3] = ["gqa", "llama3_rope", "tied_mha"];

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/llama")
        .join(name)
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn gpu_spec() -> String {
    std::env::var("KILN_GPU_DEVICE").unwrap_or_else(|_| "wgpu".into())
}

fn logits(model: &LlamaGenerator, ids: &[u32]) -> Vec<f32> {
    let m = model.model().unwrap();
    let mut cache = m.new_cache();
    m.forward(m.ids_tensor(ids, 1), &mut cache)
        .unwrap()
        .into_data()
        .try_into_vec::<f32>()
        .unwrap()
}

#[test]
fn gpu_matches_cpu_logits_and_greedy_tokens() {
    let gpu = kiln_backend::device(&gpu_spec()).unwrap_or_else(|e| panic!("{}: {e}", gpu_spec()));
    let cpu = kiln_backend::device("cpu").unwrap();
    for name in FIXTURES {
        let r: Value = serde_json::from_str(
            &std::fs::read_to_string(fixture(name).join("reference.json")).unwrap(),
        )
        .unwrap();
        let on_gpu = LlamaGenerator::open(fixture(name), &gpu).unwrap();
        let on_cpu = LlamaGenerator::open(fixture(name), &cpu).unwrap();
        let prompt = ids(&r["input_ids"][0]);
        let (a, b) = (logits(&on_gpu, &prompt), logits(&on_cpu, &prompt));
        let max = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        eprintln!(
            "{name} on {}: max |logit diff| vs cpu = {max:e}",
            gpu_spec()
        );
        assert!(max <= 1e-3, "{name}: max |logit diff| {max}");
        let want = ids(&r["greedy_ids"]);
        let req = GenerationRequest::new(Prompt::Tokens(prompt.clone()))
            .with_sampling(SamplingParams::greedy())
            .with_max_tokens(want.len() - prompt.len())
            .with_stop(kiln_core::StopConditions {
                ignore_eos: true,
                ..Default::default()
            });
        let out = on_gpu.generate(&req).unwrap();
        let mut got = prompt.clone();
        got.extend(&out.token_ids);
        assert_eq!(got, want, "{name}: greedy ids on {}", gpu_spec());
    }
}
