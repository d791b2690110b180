//! Parity with Hugging Face transformers on tiny random Llama checkpoints made by
//! `tools/make_llama_fixtures.py` (grouped-query attention, MQA with Llama 3 rope scaling, tied and
//! untied embeddings, explicit head_dim, bf16, sharded f16).
//!
//! Tolerance: 1e-4 max absolute difference of f32 logits (the bar). transformers computes in
//! f32 from the same (rounded) weights; remaining differences are summation order.

use std::path::PathBuf;

use kiln_core::{ChatMessage, GenerationRequest, Prompt, SamplingParams, TextGenerator, Tokenizer};
use kiln_llama::LlamaGenerator;
use serde_json::Value;

const TOLERANCE: f32 = 1e-4;
const FIXTURES: [&str; 6] = [
    "gqa",
    "llama3_rope",
    "tied_mha",
    "bf16",
    "sharded_f16",
    "head_dim",
];

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/llama")
        .join(name)
}

fn reference(name: &str) -> Value {
    let text = std::fs::read_to_string(fixture(name).join("reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn open(name: &str) -> LlamaGenerator {
    let device = kiln_backend::device("cpu").unwrap();
    LlamaGenerator::open(fixture(name), &device).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn logits_match_transformers() {
    for name in FIXTURES {
        let model = open(name);
        let r = reference(name);
        for (b, seq) in r["input_ids"].as_array().unwrap().iter().enumerate() {
            let ids = ids(seq);
            let mut cache = model.model().unwrap().new_cache();
            let logits = model
                .model()
                .unwrap()
                .forward(model.model().unwrap().ids_tensor(&ids, 1), &mut cache)
                .unwrap();
            let got: Vec<f32> = logits.into_data().try_into_vec::<f32>().unwrap();
            let want: Vec<f32> = r["logits"][b]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|row| {
                    row.as_array()
                        .unwrap()
                        .iter()
                        .map(|x| x.as_f64().unwrap() as f32)
                })
                .collect();
            assert_eq!(got.len(), want.len(), "{name}: logits size");
            let max = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(
                max <= TOLERANCE,
                "{name} seq {b}: max |diff| {max} > {TOLERANCE}"
            );
        }
    }
}

#[test]
fn incremental_decoding_matches_full_forward() {
    // The KV cache path (one token at a time) must give the same logits as the full prefill.
    for name in ["gqa", "llama3_rope"] {
        let model = open(name);
        let r = reference(name);
        let ids = ids(&r["input_ids"][0]);
        let v = model.model().unwrap().config.vocab_size;
        let mut cache = model.model().unwrap().new_cache();
        for (t, &id) in ids.iter().enumerate() {
            let last = model
                .model()
                .unwrap()
                .forward_last(model.model().unwrap().ids_tensor(&[id], 1), &mut cache)
                .unwrap();
            let got: Vec<f32> = last.into_data().try_into_vec::<f32>().unwrap();
            let want: Vec<f32> = r["logits"][0][t]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect();
            assert_eq!(got.len(), v);
            let max = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(max <= TOLERANCE, "{name} step {t}: max |diff| {max}");
        }
    }
}

#[test]
fn greedy_generation_matches_transformers() {
    for name in FIXTURES {
        let model = open(name);
        let r = reference(name);
        let prompt = ids(&r["input_ids"][0]);
        let want = ids(&r["greedy_ids"]);
        let req = GenerationRequest::new(Prompt::Tokens(prompt.clone()))
            .with_sampling(SamplingParams::greedy())
            .with_max_tokens(want.len() - prompt.len())
            .with_stop(kiln_core::StopConditions {
                ignore_eos: true,
                ..Default::default()
            });
        let out = model.generate(&req).unwrap();
        let mut got = prompt.clone();
        got.extend(&out.token_ids);
        assert_eq!(got, want, "{name}: greedy ids");
    }
}

#[test]
fn chat_template_and_tokenizer_match_transformers() {
    let model = open("gqa");
    let r = reference("gqa");
    let ex = &r["chat_example"];
    let messages: Vec<ChatMessage> = ex["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let role = match m["role"].as_str().unwrap() {
                "system" => kiln_core::Role::System,
                "assistant" => kiln_core::Role::Assistant,
                _ => kiln_core::Role::User,
            };
            ChatMessage::text(role, m["content"].as_str().unwrap())
        })
        .collect();
    let rendered = model.apply_chat_template(&messages, true).unwrap();
    assert_eq!(rendered, ex["rendered"].as_str().unwrap());
    let prompt_ids = model.encode_prompt(&Prompt::Chat(messages)).unwrap();
    assert_eq!(prompt_ids, ids(&ex["ids"]));
    let tok = &r["tokenizer_example"];
    let text = tok["text"].as_str().unwrap();
    assert_eq!(
        model.tokenizer().encode(text, true).unwrap(),
        ids(&tok["ids_with_bos"])
    );
    assert_eq!(
        model.tokenizer().encode(text, false).unwrap(),
        ids(&tok["ids_no_special"])
    );
}

#[test]
fn cpu_engine_logits_match_transformers() {
    // Kiln's CPU kernels on the stored f32 / f16 / bf16 weights: no activation quantization is involved
    // for these formats, so the same 1e-4 bar holds.
    for name in FIXTURES {
        let options = kiln_llama::LoadOptions {
            engine: kiln_llama::EngineKind::Cpu,
            ..Default::default()
        };
        let model =
            LlamaGenerator::load(fixture(name), &options).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(model.cpu_model().is_some());
        let r = reference(name);
        for (b, seq) in r["input_ids"].as_array().unwrap().iter().enumerate() {
            let ids = ids(seq);
            let got = model.forward_all(&ids).unwrap();
            let want: Vec<f32> = r["logits"][b]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|row| {
                    row.as_array()
                        .unwrap()
                        .iter()
                        .map(|x| x.as_f64().unwrap() as f32)
                })
                .collect();
            let max = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(
                max <= TOLERANCE,
                "{name} seq {b}: cpu engine max |diff| {max} > {TOLERANCE}"
            );
            // Token by token through the cache gives the same last logits.
            let mut cache = model.new_cache();
            let v = model.config().vocab_size;
            let mut last = Vec::new();
            for &id in &ids {
                last = model.forward_last(&[id], &mut cache).unwrap();
            }
            let tail = &want[(ids.len() - 1) * v..];
            let max = last
                .iter()
                .zip(tail)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(
                max <= TOLERANCE,
                "{name}: incremental cpu engine max |diff| {max}"
            );
        }
    }
}
