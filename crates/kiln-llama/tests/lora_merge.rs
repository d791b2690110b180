//! `merge_to_hf` writes an HF directory whose logits equal the unmerged adapter's (f32, within
//! 1e-4), untying a tied lm_head when the adapter targets it; GGUF bases are dequantized first.

use std::path::PathBuf;

use kiln_core::AdapterChoice;
use kiln_llama::kiln_lora::{LoraAdapter, LoraConfig, config::InitLoraWeights};
use kiln_llama::lora::linear_modules;
use kiln_llama::{EngineKind, LlamaGenerator, LoadOptions, MergeDtype, merge_to_hf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn cpu() -> LoadOptions {
    LoadOptions {
        engine: EngineKind::Cpu,
        ..LoadOptions::default()
    }
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}

fn check(base: PathBuf, adapter: LoraAdapter, ids: &[u32], tol: f32) -> kiln_llama::MergeReport {
    let out = tempfile::tempdir().unwrap();
    let report = merge_to_hf(
        &base,
        &[(adapter.clone(), 1.0)],
        out.path(),
        MergeDtype::F32,
    )
    .unwrap();
    let model = LlamaGenerator::load(&base, &cpu()).unwrap();
    let name = adapter.name.clone();
    model.add_adapter(adapter).unwrap();
    let mix = model.mix(&[AdapterChoice { name, weight: 1.0 }]).unwrap();
    let want = model.forward_all_with(ids, &mix).unwrap();
    let merged = LlamaGenerator::load(out.path(), &cpu()).unwrap();
    let got = merged.forward_all(ids).unwrap();
    let d = max_diff(&got, &want);
    assert!(d <= tol, "{}: merged vs unmerged {d}", base.display());
    assert!(max_diff(&model.forward_all(ids).unwrap(), &want) > 1e-3);
    report
}

#[test]
fn merged_hf_directories_match_the_unmerged_adapter() {
    let ids: Vec<u32> = vec![1, 17, 45, 99, 200, 5, 300, 42];
    let a = LoraAdapter::load(root().join("lora/qv_basic")).unwrap();
    let r = check(root().join("llama/gqa"), a, &ids, 1e-4);
    assert_eq!(r.merged_modules, 4);
    assert!(!r.untied);
    let a = LoraAdapter::load(root().join("lora/regex_lm_head")).unwrap();
    let r = check(root().join("llama/tied_mha"), a, &ids, 1e-4);
    assert!(r.untied, "a LoRA on a tied lm_head unties it");
}

#[test]
fn a_gguf_base_is_dequantized_and_merged() {
    let gguf = kiln_llama::assets::asset(kiln_llama::assets::SMOLLM2_GGUF).unwrap();
    let model = LlamaGenerator::load(&gguf, &cpu()).unwrap();
    let config = LoraConfig {
        r: 4,
        lora_alpha: 8.0,
        init_lora_weights: InitLoraWeights::Bool(false),
        ..LoraConfig::default()
    };
    let adapter = LoraAdapter::init("rand", config, &linear_modules(model.config()), 3).unwrap();
    let ids = model
        .tokenizer()
        .inner()
        .encode("The capital of France is", true)
        .unwrap();
    let ids = ids.get_ids().to_vec();
    // The CPU engine multiplies Q4_1 blocks with f32 activations; the merged model holds the same
    // values dequantized, so only summation order differs.
    check(gguf, adapter, &ids, 2e-3);
}
