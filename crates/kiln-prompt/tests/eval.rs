//! The evaluation harness with a scripted model.

mod common;

use common::Scripted;
use kiln_prompt::eval::{Dataset, EvalOptions, Strategy, evaluate};

const INTENTS: &str = r#"{"task": {"name": "intent", "kind": "classification", "instruction": "Classify the message.", "labels": ["order_status", "store_hours"]}}
{"input": "Where is my parcel?", "answer": "order_status", "split": "fewshot"}
{"input": "Has my order shipped?", "answer": "order_status"}
{"input": "When do you open?", "answer": "store_hours"}
"#;

const MATH: &str = r#"{"input": "35 heads and 94 legs: how many rabbits?", "answer": 12}
{"input": "2 + 2?", "answer": 4}
"#;

#[test]
fn zero_and_few_shot_score_labels() {
    let d = Dataset::parse(INTENTS, "intents").expect("parse");
    let model = Scripted::new(["order status", "order_status"]);
    let r = evaluate(
        &model,
        &d,
        Strategy::ZeroShot,
        &EvalOptions::default(),
        &mut |_, _| {},
    )
    .expect("eval");
    assert_eq!((r.cases, r.correct, r.mean_steps), (2, 1, 1.0));
    assert!(model.prompts()[0].contains("Intents: order_status, store_hours."));
    let model = Scripted::new(["order_status", "store_hours"]);
    let r = evaluate(
        &model,
        &d,
        Strategy::FewShot,
        &EvalOptions::default(),
        &mut |_, _| {},
    )
    .expect("eval");
    assert_eq!(r.accuracy, 1.0);
    assert!(model.prompts()[0].contains("Message: Where is my parcel?\nIntent: order_status"));
}

#[test]
fn self_consistency_votes_and_react_uses_the_calculator() {
    let d = Dataset::parse(MATH, "math").expect("parse");
    let opts = EvalOptions {
        samples: 3,
        limit: Some(1),
        ..EvalOptions::default()
    };
    let model = Scripted::new([
        "The answer is 12.",
        "The answer is 23.",
        "so 12 rabbits. The answer is 12",
    ]);
    let r = evaluate(&model, &d, Strategy::SelfConsistency, &opts, &mut |_, _| {}).expect("eval");
    assert_eq!((r.correct, r.mean_steps), (1, 3.0));
    assert_eq!(r.results[0].predicted.as_deref(), Some("12"));
    let model = Scripted::new([
        "I compute.\nAction: calculator\nAction Input: {\"expression\": \"(94 - 2*35) / 2\"}",
        "I now know.\nFinal Answer: 12",
    ]);
    let r = evaluate(&model, &d, Strategy::React, &opts, &mut |_, _| {}).expect("eval");
    assert_eq!((r.correct, r.mean_steps), (1, 2.0));
    assert!(model.prompts()[1].contains("Observation: 12"));
}
