//! The facade as a downstream user sees it: a model behind `Arc<dyn TextGenerator>`, shared across
//! threads, streaming text that concatenates to the final output, and cancellation between tokens.

use std::path::PathBuf;
use std::sync::Arc;

use kiln::core::{
    CancelToken, FinishReason, GenerationRequest, Prompt, SamplingParams, StopConditions,
    StreamEvent, TextGenerator,
};

fn model() -> Arc<dyn TextGenerator> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llama/gqa");
    let device = kiln::backend::device("cpu").unwrap();
    Arc::new(kiln::llama::LlamaGenerator::open(dir, &device).unwrap())
}

fn request(max_tokens: usize) -> GenerationRequest {
    GenerationRequest::new(Prompt::Text("the bread".into()))
        .with_sampling(SamplingParams {
            temperature: 0.8,
            seed: Some(3),
            top_k: 40,
            ..SamplingParams::default()
        })
        .with_stop(StopConditions {
            ignore_eos: true,
            ..StopConditions::default()
        })
        .with_max_tokens(max_tokens)
        .with_logprobs(3)
}

#[test]
fn streamed_text_concatenates_to_the_output() {
    let m = model();
    let mut streamed = String::new();
    let mut ids = Vec::new();
    let out = m
        .generate_stream(&request(12), &CancelToken::new(), &mut |ev| {
            let StreamEvent::Token { id, text, .. } = ev;
            streamed.push_str(text);
            ids.push(id);
        })
        .unwrap();
    assert_eq!(streamed, out.text);
    assert_eq!(out.token_ids.len(), 12);
    assert_eq!(out.finish_reason, FinishReason::Length);
    assert_eq!(out.usage.total_tokens, out.usage.prompt_tokens + 12);
    let lps = out.logprobs.as_ref().unwrap();
    assert_eq!(lps.len(), 12);
    for lp in lps {
        assert_eq!(lp.top.len(), 3);
        assert!(lp.logprob <= 0.0 && lp.logprob >= lp.top[2].2 - 1e3);
        assert!(lp.top[0].2 >= lp.top[1].2 && lp.top[1].2 >= lp.top[2].2);
    }
    // Same seed, same output; another seed, (almost surely) another one.
    assert_eq!(m.generate(&request(12)).unwrap().token_ids, out.token_ids);
}

#[test]
fn cancellation_stops_between_tokens() {
    let m = model();
    let cancel = CancelToken::new();
    let c2 = cancel.clone();
    let mut n = 0;
    let out = m
        .generate_stream(&request(50), &cancel, &mut |_| {
            n += 1;
            if n == 3 {
                c2.cancel();
            }
        })
        .unwrap();
    assert_eq!(out.finish_reason, FinishReason::Cancelled);
    assert_eq!(out.token_ids.len(), 3);
}

#[test]
fn one_model_serves_several_threads() {
    let m = model();
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let m = Arc::clone(&m);
            std::thread::spawn(move || m.generate(&request(6)).unwrap().token_ids)
        })
        .collect();
    let outs: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(outs.windows(2).all(|w| w[0] == w[1]), "{outs:?}");
}
