//! PEFT adapters made by `tools/make_lora_fixtures.py` (random non-zero A and B on the tiny
//! random Llama fixtures: q/v, rsLoRA on all linear layers, rank_pattern + alpha_pattern +
//! layers_to_transform, a regex target including the tied lm_head) give transformers + peft's
//! logits on both engines.
//!
//! Tolerance: 1e-4 max absolute difference of f32 logits (the bar).

use std::path::PathBuf;

use kiln_core::{AdapterChoice, GenerationRequest, Prompt, SamplingParams, TextGenerator};
use kiln_llama::kiln_lora::LoraAdapter;
use kiln_llama::{EngineKind, LlamaGenerator, LoadOptions};
use serde_json::Value;

const TOLERANCE: f32 = 1e-4;
const ADAPTERS: [&str; 4] = [
    "qv_basic",
    "rslora_all_linear",
    "patterns_layer1",
    "regex_lm_head",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn json(path: PathBuf) -> Value {
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn engines(base: &str) -> Vec<(&'static str, LlamaGenerator)> {
    let dir = root().join("llama").join(base);
    let cpu = LlamaGenerator::load(
        &dir,
        &LoadOptions {
            engine: EngineKind::Cpu,
            ..LoadOptions::default()
        },
    )
    .unwrap();
    let burn = LlamaGenerator::open(&dir, &kiln_backend::device("cpu").unwrap()).unwrap();
    vec![("cpu", cpu), ("burn", burn)]
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}

fn flat(v: &Value) -> Vec<f32> {
    let mut out = Vec::new();
    fn rec(v: &Value, out: &mut Vec<f32>) {
        match v {
            Value::Array(a) => a.iter().for_each(|x| rec(x, out)),
            x => out.push(x.as_f64().unwrap() as f32),
        }
    }
    rec(v, &mut out);
    out
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn peft_adapters_match_transformers_on_both_engines() {
    for name in ADAPTERS {
        let dir = root().join("lora").join(name);
        let r = json(dir.join("reference.json"));
        let base = r["base"].as_str().unwrap();
        for (engine, model) in engines(base) {
            model.load_adapter(name, &dir).unwrap();
            let mix = model
                .mix(&[AdapterChoice {
                    name: name.into(),
                    weight: 1.0,
                }])
                .unwrap();
            let v = model.config().vocab_size;
            for (b, seq) in r["input_ids"].as_array().unwrap().iter().enumerate() {
                let ids = ids(seq);
                let want = flat(&r["logits"][b]);
                let got = model.forward_all_with(&ids, &mix).unwrap();
                let d = max_diff(&got, &want);
                assert!(d <= TOLERANCE, "{name} on {engine}: max |diff| {d}");
                // Without the adapter the output differs: the adapter is not a no-op.
                let base_logits = model.forward_all(&ids).unwrap();
                assert!(
                    max_diff(&base_logits, &want) > 1e-2,
                    "{name}: adapter had no effect"
                );
                // Incremental decoding with the adapter gives the same last row.
                let mut cache = model.new_cache();
                let half = ids.len() / 2;
                model
                    .forward_last_with(&ids[..half], &mut cache, &mix)
                    .unwrap();
                let last = model
                    .forward_last_with(&ids[half..], &mut cache, &mix)
                    .unwrap();
                let row = &want[(ids.len() - 1) * v..];
                let d = max_diff(&last, row);
                assert!(d <= TOLERANCE, "{name} on {engine} (cached): {d}");
            }
        }
    }
}

#[test]
fn adapters_are_chosen_per_request_on_one_base() {
    let (_, model) = engines("gqa").remove(0);
    for name in ["qv_basic", "rslora_all_linear"] {
        model
            .load_adapter(name, root().join("lora").join(name))
            .unwrap();
    }
    assert_eq!(model.adapter_names(), vec!["qv_basic", "rslora_all_linear"]);
    let r = json(root().join("lora/qv_basic/reference.json"));
    let prompt = ids(&r["input_ids"][0]);
    let run = |adapter: Option<&str>| {
        let mut req = GenerationRequest::new(Prompt::Tokens(prompt.clone()))
            .with_sampling(SamplingParams::greedy())
            .with_max_tokens(6);
        req.stop.ignore_eos = true;
        if let Some(a) = adapter {
            req = req.with_adapter(a, 1.0);
        }
        model.generate(&req).unwrap().token_ids
    };
    let (base, a, b) = (
        run(None),
        run(Some("qv_basic")),
        run(Some("rslora_all_linear")),
    );
    // The first greedy token follows the reference logits of each adapter.
    let v = model.config().vocab_size;
    let argmax = |row: &[f32]| {
        row.iter()
            .enumerate()
            .max_by(|x, y| x.1.total_cmp(y.1))
            .unwrap()
            .0 as u32
    };
    let want_a = flat(&r["logits"][0]);
    assert_eq!(a[0], argmax(&want_a[(prompt.len() - 1) * v..]));
    let rb = json(root().join("lora/rslora_all_linear/reference.json"));
    let want_b = flat(&rb["logits"][0]);
    assert_eq!(b[0], argmax(&want_b[(prompt.len() - 1) * v..]));
    assert!(base != a || base != b, "adapters changed nothing");
    // Weights scale the update: weight 0 is the base model.
    let mut req = GenerationRequest::new(Prompt::Tokens(prompt.clone()))
        .with_sampling(SamplingParams::greedy())
        .with_max_tokens(6)
        .with_adapter("qv_basic", 0.0);
    req.stop.ignore_eos = true;
    assert_eq!(model.generate(&req).unwrap().token_ids, base);
    // Unknown adapters are an error naming them.
    let e = model
        .generate(&GenerationRequest::text("hi").with_adapter("nope", 1.0))
        .unwrap_err()
        .to_string();
    assert!(e.contains("nope"), "{e}");
    assert!(model.remove_adapter("qv_basic"));
    assert_eq!(model.adapter_names(), vec!["rslora_all_linear"]);
}

#[test]
fn mismatched_adapters_are_refused() {
    // An adapter for a model with other shapes: the module is named.
    let (_, model) = engines("gqa").remove(0);
    let mut a = LoraAdapter::load(root().join("lora/qv_basic")).unwrap();
    let w = a.modules.remove("model.layers.0.self_attn.q_proj").unwrap();
    a.modules
        .insert("model.layers.7.self_attn.q_proj".into(), w.clone());
    let e = model.add_adapter(a.clone()).unwrap_err().to_string();
    assert!(e.contains("model.layers.7.self_attn.q_proj"), "{e}");
    a.modules.remove("model.layers.7.self_attn.q_proj");
    let mut bad = w;
    bad.in_features = 32;
    a.modules
        .insert("model.layers.0.self_attn.q_proj".into(), bad);
    let e = model.add_adapter(a).unwrap_err().to_string();
    assert!(e.contains("q_proj") && e.contains("64"), "{e}");
}

/// QLoRA's base: every decoder projection rounded to NF4 as bitsandbytes stores it, the adapter
/// on top. burn (`open_qlora`, dequantized values) and the CPU engine (`nf4: true`, multiplying
/// on the NF4 blocks) both give the reference computed from bitsandbytes' dequantized weights.
#[test]
fn qlora_base_matches_bitsandbytes_nf4() {
    let r = json(root().join("lora/qlora_qv_reference.json"));
    let dir = root().join("llama/gqa");
    let burn = LlamaGenerator::open_qlora(&dir, &kiln_backend::device("cpu").unwrap()).unwrap();
    let cpu = LlamaGenerator::load(
        &dir,
        &LoadOptions {
            engine: EngineKind::Cpu,
            nf4: true,
            ..LoadOptions::default()
        },
    )
    .unwrap();
    let plain = LlamaGenerator::load(
        &dir,
        &LoadOptions {
            engine: EngineKind::Cpu,
            ..LoadOptions::default()
        },
    )
    .unwrap();
    for (engine, model) in [("burn", &burn), ("cpu", &cpu), ("f32", &plain)] {
        model
            .load_adapter("qv", root().join("lora/qv_basic"))
            .unwrap();
        let mix = model
            .mix(&[AdapterChoice {
                name: "qv".into(),
                weight: 1.0,
            }])
            .unwrap();
        for (b, seq) in r["input_ids"].as_array().unwrap().iter().enumerate() {
            let got = model.forward_all_with(&ids(seq), &mix).unwrap();
            let d = max_diff(&got, &flat(&r["logits"][b]));
            if engine == "f32" {
                assert!(d > 1e-3, "NF4 rounding should change the logits ({d})");
            } else {
                assert!(d <= TOLERANCE, "qlora on {engine}: max |diff| {d}");
            }
        }
    }
}

/// An adapter trained by `kiln finetune` (committed by `tools/verify_kiln_adapters.py`, which
/// also checked that transformers loads `kiln merge` output with PEFT's logits) gives, in Kiln,
/// the logits PEFT computes with it.
#[test]
fn kiln_trained_adapters_match_peft() {
    let dir = root().join("lora/kiln_trained");
    let r = json(dir.join("peft_reference.json"));
    assert!(r["merged_vs_peft_max_diff"].as_f64().unwrap() <= 1e-4);
    for (engine, model) in engines("gqa") {
        model.load_adapter("kiln", dir.join("adapter")).unwrap();
        let mix = model
            .mix(&[AdapterChoice {
                name: "kiln".into(),
                weight: 1.0,
            }])
            .unwrap();
        for (b, seq) in r["input_ids"].as_array().unwrap().iter().enumerate() {
            let got = model.forward_all_with(&ids(seq), &mix).unwrap();
            let d = max_diff(&got, &flat(&r["logits"][b]));
            assert!(d <= TOLERANCE, "kiln-trained adapter on {engine}: {d}");
        }
    }
}
