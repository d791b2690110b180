//! Continuous batching (`BatchGenerator`): sequences decoded together in one batch, joining at
//! different steps and on different adapters, give exactly what each generates alone.

use std::path::PathBuf;

use kiln_core::{BatchGenerator, GenerationRequest, SamplingParams, TextGenerator};
use kiln_llama::{EngineKind, LlamaGenerator, LoadOptions};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn model(engine: EngineKind) -> LlamaGenerator {
    let m = LlamaGenerator::load(
        root().join("llama/gqa"),
        &LoadOptions {
            engine,
            ..LoadOptions::default()
        },
    )
    .unwrap();
    for name in ["qv_basic", "rslora_all_linear"] {
        m.load_adapter(name, root().join("lora").join(name))
            .unwrap();
    }
    m
}

fn requests() -> Vec<GenerationRequest> {
    let r = |text: &str, adapter: Option<&str>, n: usize| {
        let mut q = GenerationRequest::text(text)
            .with_sampling(SamplingParams::greedy())
            .with_max_tokens(n);
        q.stop.ignore_eos = true;
        if let Some(a) = adapter {
            q = q.with_adapter(a, 1.0);
        }
        q
    };
    vec![
        r("hello world", None, 12),
        r("hello world", Some("qv_basic"), 9),
        r("a different prompt", Some("rslora_all_linear"), 14),
        r("three", None, 5),
    ]
}

fn check(engine: EngineKind) {
    let m = model(engine);
    let reqs = requests();
    let alone: Vec<Vec<u32>> = reqs
        .iter()
        .map(|r| m.generate(r).unwrap().token_ids)
        .collect();
    // The adapters matter, so the comparison below says something.
    assert_ne!(
        alone[0][..9],
        alone[1][..],
        "the adapter changes the output"
    );

    let mut batch = m.start_batch(3).unwrap();
    let mut ids = Vec::new();
    let mut streamed: std::collections::HashMap<u64, usize> = Default::default();
    let mut done = std::collections::HashMap::new();
    // Three join at once; the fourth waits for a free slot and joins mid-run.
    for r in &reqs[..3] {
        ids.push(batch.join(r).unwrap());
    }
    assert!(
        batch.join(&reqs[3]).is_err(),
        "a full batch refuses a fourth sequence"
    );
    let mut steps = 0;
    while !batch.is_empty() {
        for (id, out) in batch
            .step(&mut |id, _| *streamed.entry(id).or_default() += 1)
            .unwrap()
        {
            done.insert(id, out.unwrap().token_ids);
        }
        steps += 1;
        if ids.len() == 3 && batch.len() < 3 {
            ids.push(batch.join(&reqs[3]).unwrap());
        }
    }
    assert!(steps >= 14);
    for (k, id) in ids.iter().enumerate() {
        assert_eq!(
            done[id], alone[k],
            "{engine:?}: sequence {k} differs from its own generation"
        );
        assert!(streamed[id] >= alone[k].len());
    }
}

#[test]
fn batched_sequences_with_mixed_adapters_match_solo_generation_cpu() {
    check(EngineKind::Cpu);
}

#[test]
fn batched_sequences_with_mixed_adapters_match_solo_generation_burn() {
    check(EngineKind::Burn);
}

#[test]
fn a_sequence_that_leaves_frees_its_slot() {
    let m = model(EngineKind::Cpu);
    let mut batch = m.start_batch(1).unwrap();
    let id = batch.join(&requests()[0]).unwrap();
    batch.step(&mut |_, _| {}).unwrap();
    let out = batch.leave(id).unwrap();
    assert_eq!(out.finish_reason, kiln_core::FinishReason::Cancelled);
    assert!(batch.is_empty());
    assert!(batch.join(&requests()[1]).is_ok());
}

#[test]
fn the_prefix_cache_reuses_a_shared_system_prompt_with_the_same_output() {
    let system = "You are a helpful assistant for the Fernhollow Outfitters store. Answer briefly and politely, \
                  and never invent order numbers or prices that you were not given.";
    let ask = |q: &str| {
        let mut r = GenerationRequest::text(format!("{system} Question: {q} Answer:"))
            .with_sampling(SamplingParams::greedy())
            .with_max_tokens(8);
        r.stop.ignore_eos = true;
        r
    };
    for engine in [EngineKind::Cpu, EngineKind::Burn] {
        let cold = model(engine);
        let first = cold.generate(&ask("When do you open?")).unwrap().token_ids;
        let before = cold.prefix_cache_stats();
        let second = cold.generate(&ask("Do you sell boots?")).unwrap().token_ids;
        let after = cold.prefix_cache_stats();
        assert_eq!(
            after.hits,
            before.hits + 1,
            "{engine:?}: the second prompt reuses the first's prefix"
        );
        assert!(after.reused_tokens - before.reused_tokens >= 16);
        // A fresh model (empty cache) gives the same tokens.
        let fresh = model(engine);
        assert_eq!(
            fresh
                .generate(&ask("Do you sell boots?"))
                .unwrap()
                .token_ids,
            second,
            "{engine:?}"
        );
        assert_eq!(
            fresh.generate(&ask("When do you open?")).unwrap().token_ids,
            first,
            "{engine:?}"
        );
    }
}
