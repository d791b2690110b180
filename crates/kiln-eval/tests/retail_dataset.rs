//! Checks the checked-in Fernhollow Outfitters dataset (`datasets/retail/`, written by
//! `tools/make_retail_qa.py`): the canonical answers are contained in the assistant answers, the
//! held-out questions are new phrasings of trained facts, and the chat, Alpaca and text forms agree.

use std::collections::{HashMap, HashSet};

use kiln_eval::{Report, Sample, contains_answer, normalize_answer};
use serde_json::Value;

fn dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/retail")
}

fn jsonl(name: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(dir().join(name)).expect("read dataset file");
    text.lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

struct Pair {
    system: String,
    question: String,
    answer_text: String,
    answer: String,
    fact: String,
    topic: String,
}

fn chat(name: &str) -> Vec<Pair> {
    jsonl(name)
        .into_iter()
        .map(|v| {
            let m = v["messages"].as_array().expect("messages");
            assert_eq!(m.len(), 3);
            for (msg, role) in m.iter().zip(["system", "user", "assistant"]) {
                assert_eq!(msg["role"], role);
            }
            let s = |x: &Value| x.as_str().expect("string").to_string();
            Pair {
                system: s(&m[0]["content"]),
                question: s(&m[1]["content"]),
                answer_text: s(&m[2]["content"]),
                answer: s(&v["answer"]),
                fact: s(&v["fact_id"]),
                topic: s(&v["topic"]),
            }
        })
        .collect()
}

#[test]
fn splits_are_consistent() {
    let train = chat("qa_train.jsonl");
    let held = chat("qa_heldout.jsonl");
    assert!(train.len() + held.len() >= 300);
    let frac = held.len() as f64 / (train.len() + held.len()) as f64;
    assert!((0.12..0.2).contains(&frac), "held-out fraction {frac}");

    let mut answer_of: HashMap<&str, (&str, &str)> = HashMap::new();
    let mut questions = HashSet::new();
    for p in train.iter().chain(&held) {
        assert!(
            p.answer_text.contains(&p.answer),
            "{}: {:?}",
            p.fact,
            p.answer
        );
        assert!(contains_answer(&p.answer_text, &p.answer), "{}", p.fact);
        assert!(!p.topic.is_empty() && p.system == train[0].system);
        let prev = answer_of.insert(&p.fact, (&p.answer, &p.answer_text));
        assert!(prev.is_none_or(|a| a == (p.answer.as_str(), p.answer_text.as_str())));
        assert!(
            questions.insert(normalize_answer(&p.question)),
            "duplicate question {:?}",
            p.question
        );
    }
    let trained: HashSet<&str> = train.iter().map(|p| p.fact.as_str()).collect();
    for p in &held {
        assert!(
            trained.contains(p.fact.as_str()),
            "{} never trained",
            p.fact
        );
    }

    // Alpaca files mirror the chat files line by line.
    for (a, c) in [
        ("alpaca_train.jsonl", &train),
        ("alpaca_heldout.jsonl", &held),
    ] {
        let rows = jsonl(a);
        assert_eq!(rows.len(), c.len());
        for (r, p) in rows.iter().zip(c.iter()) {
            assert_eq!(r["instruction"], p.question.as_str());
            assert_eq!(r["input"], "");
            assert_eq!(r["output"], p.answer_text.as_str());
            assert_eq!(r["fact_id"], p.fact.as_str());
        }
    }
    // One FAQ line per fact, each holding that fact's answer.
    let faq = std::fs::read_to_string(dir().join("faq.txt")).expect("faq.txt");
    let lines: Vec<&str> = faq.lines().collect();
    assert_eq!(lines.len(), answer_of.len());
    for (_, text) in answer_of.values() {
        assert!(lines.iter().any(|l| l.ends_with(&format!("A: {text}"))));
    }
}

#[test]
fn reference_answers_score_perfectly() {
    let held = chat("qa_heldout.jsonl");
    let samples: Vec<Sample> = held
        .iter()
        .map(|p| Sample::new(p.answer_text.clone(), p.answer_text.clone()).with_answer(&p.answer))
        .collect();
    let r = Report::compute(&samples, false).expect("report");
    assert_eq!(r.answer_accuracy, Some(1.0));
    assert_eq!(r.exact_match, 1.0);
    assert!((r.corpus_bleu - 100.0).abs() < 1e-9);
    assert!((r.rouge_l - 1.0).abs() < 1e-12);
}
