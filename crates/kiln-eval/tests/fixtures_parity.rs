//! kiln-eval against the reference packages: `tests/fixtures/metrics.json`, written by
//! `tools/make_eval_fixtures.py` (sacrebleu 2.6.0, rouge-score 0.1.2, nltk 3.10.4, the SQuAD 2.0
//! evaluation script). Every float must agree to 1e-9 (absolute); token lists exactly.

use kiln_eval::{
    Bleu, BleuConfig, BleuScore, BleuTokenizer, Chrf, ChrfConfig, RougeScore, RougeScorer,
    Smoothing, exact_match_multi, normalize_answer, porter_stem, token_f1_multi,
};
use serde_json::Value;

const TOL: f64 = 1e-9;

fn fixture() -> Value {
    // KILN_EVAL_FIXTURE points the test at another file of the same shape (for example a large
    // randomized one written with `make_eval_fixtures.py --random N --out FILE`).
    let path = std::env::var("KILN_EVAL_FIXTURE").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/metrics.json").to_string()
    });
    let text = std::fs::read_to_string(&path).expect("read metrics.json");
    serde_json::from_str(&text).expect("parse metrics.json")
}

fn f(v: &Value) -> f64 {
    v.as_f64().expect("a number")
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|s| s.as_str().expect("a string").to_string())
        .collect()
}

fn close(what: &str, got: f64, want: f64, failures: &mut Vec<String>) {
    if (got - want).abs() > TOL {
        failures.push(format!("{what}: got {got:?}, want {want:?}"));
    }
}

fn check_bleu(what: &str, got: &BleuScore, want: &Value, failures: &mut Vec<String>) {
    close(
        &format!("{what} score"),
        got.score,
        f(&want["score"]),
        failures,
    );
    close(&format!("{what} bp"), got.bp, f(&want["bp"]), failures);
    let ints = |v: &Value| -> Vec<u64> {
        v.as_array()
            .expect("array")
            .iter()
            .map(|x| x.as_u64().expect("int"))
            .collect()
    };
    if got.counts != ints(&want["counts"])
        || got.totals != ints(&want["totals"])
        || got.sys_len != want["sys_len"].as_u64().expect("int")
        || got.ref_len != want["ref_len"].as_u64().expect("int")
    {
        failures.push(format!("{what} stats: got {got:?}, want {want}"));
    }
    for (i, p) in want["precisions"]
        .as_array()
        .expect("array")
        .iter()
        .enumerate()
    {
        close(
            &format!("{what} precision {i}"),
            got.precisions[i],
            f(p),
            failures,
        );
    }
}

fn check_rouge(what: &str, got: RougeScore, want: &Value, failures: &mut Vec<String>) {
    close(
        &format!("{what} P"),
        got.precision,
        f(&want["precision"]),
        failures,
    );
    close(
        &format!("{what} R"),
        got.recall,
        f(&want["recall"]),
        failures,
    );
    close(
        &format!("{what} F"),
        got.fmeasure,
        f(&want["fmeasure"]),
        failures,
    );
}

fn best<S: AsRef<str>>(refs: &[S], score: impl Fn(&str) -> RougeScore) -> RougeScore {
    let mut best: Option<RougeScore> = None;
    for r in refs {
        let s = score(r.as_ref());
        if best.is_none_or(|b| s.fmeasure > b.fmeasure) {
            best = Some(s);
        }
    }
    best.unwrap_or_default()
}

#[test]
fn per_case_metrics_match_reference_packages() {
    let fx = fixture();
    let cases = fx["cases"].as_array().expect("cases");
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let sentence = Bleu::new(BleuConfig::sentence());
    let intl = Bleu::new(BleuConfig::sentence().with_tokenizer(BleuTokenizer::Intl));
    let variants = [
        (
            "floor",
            Bleu::new(BleuConfig::sentence().with_smoothing(Smoothing::Floor(0.1))),
        ),
        (
            "add-k",
            Bleu::new(BleuConfig::sentence().with_smoothing(Smoothing::AddK(1.0))),
        ),
        (
            "none",
            Bleu::new(BleuConfig::sentence().with_smoothing(Smoothing::None)),
        ),
        ("exp_no_effective_order", Bleu::new(BleuConfig::corpus())),
        (
            "lowercase",
            Bleu::new(BleuConfig::sentence().with_lowercase(true)),
        ),
    ];
    let chrf = Chrf::default();
    let chrf_pp = Chrf::new(ChrfConfig::chrf_plus_plus());
    let mut failures = Vec::new();
    for case in cases {
        let name = case["name"].as_str().expect("name");
        let hyp = case["hypothesis"].as_str().expect("hypothesis");
        let refs = strs(&case["references"]);
        let all: Vec<&str> = std::iter::once(hyp)
            .chain(refs.iter().map(String::as_str))
            .collect();

        for (tok, key) in [
            (BleuTokenizer::Tok13a, "tokens_13a"),
            (BleuTokenizer::Intl, "tokens_intl"),
        ] {
            let got: Vec<String> = all
                .iter()
                .map(|s| tok.tokenize(s.trim_end_matches(char::is_whitespace)))
                .collect();
            if got != strs(&case[key]) {
                failures.push(format!("{name} {key}: got {got:?}, want {}", case[key]));
            }
        }
        let got = sentence.sentence_score(hyp, &refs).expect("sentence_bleu");
        check_bleu(
            &format!("{name} sentence_bleu"),
            &got,
            &case["sentence_bleu"],
            &mut failures,
        );
        let got = intl.sentence_score(hyp, &refs).expect("intl");
        check_bleu(
            &format!("{name} sentence_bleu_intl"),
            &got,
            &case["sentence_bleu_intl"],
            &mut failures,
        );
        for (key, metric) in &variants {
            let got = metric.sentence_score(hyp, &refs).expect("variant").score;
            close(
                &format!("{name} sentence_bleu {key}"),
                got,
                f(&case["sentence_bleu_variants"][key]),
                &mut failures,
            );
        }
        close(
            &format!("{name} chrF"),
            chrf.sentence_score(hyp, &refs).expect("chrf").score,
            f(&case["sentence_chrf"]),
            &mut failures,
        );
        close(
            &format!("{name} chrF++"),
            chrf_pp.sentence_score(hyp, &refs).expect("chrf++").score,
            f(&case["sentence_chrf_pp"]),
            &mut failures,
        );

        for (stem, tag) in [(false, ""), (true, "_stem")] {
            let scorer = RougeScorer::new(stem);
            let toks: Vec<Vec<String>> = all.iter().map(|s| scorer.tokenize(s)).collect();
            let want: Vec<Vec<String>> = case[&format!("rouge_tokens{tag}")]
                .as_array()
                .expect("array")
                .iter()
                .map(strs)
                .collect();
            if toks != want {
                failures.push(format!(
                    "{name} rouge tokens{tag}: got {toks:?}, want {want:?}"
                ));
            }
            let (rl, rlsum) = scorer.score_multi(hyp, &refs);
            check_rouge(
                &format!("{name} rougeL{tag}"),
                rl,
                &case[&format!("rougeL{tag}")],
                &mut failures,
            );
            check_rouge(
                &format!("{name} rougeLsum{tag}"),
                rlsum,
                &case[&format!("rougeLsum{tag}")],
                &mut failures,
            );
            for n in [1, 2] {
                let got = best(&refs, |r| scorer.rouge_n(n, hyp, r));
                check_rouge(
                    &format!("{name} rouge{n}{tag}"),
                    got,
                    &case[&format!("rouge{n}{tag}")],
                    &mut failures,
                );
            }
        }

        let norm: Vec<String> = all.iter().map(|s| normalize_answer(s)).collect();
        if norm != strs(&case["squad_normalized"]) {
            failures.push(format!("{name} squad normalize: got {norm:?}"));
        }
        if exact_match_multi(hyp, &refs, false) != case["exact_match"].as_bool().expect("bool")
            || exact_match_multi(hyp, &refs, true)
                != case["exact_match_normalized"].as_bool().expect("bool")
        {
            failures.push(format!("{name} exact match"));
        }
        close(
            &format!("{name} token_f1"),
            token_f1_multi(hyp, &refs),
            f(&case["token_f1"]),
            &mut failures,
        );
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn corpus_metrics_match_sacrebleu() {
    let fx = fixture();
    let cases = fx["cases"].as_array().expect("cases");
    let hyps: Vec<&str> = cases
        .iter()
        .map(|c| c["hypothesis"].as_str().expect("hyp"))
        .collect();
    let refs: Vec<Vec<String>> = cases.iter().map(|c| strs(&c["references"])).collect();
    let corpus = &fx["corpus"];
    let single: Vec<usize> = corpus["single_ref_indices"]
        .as_array()
        .expect("indices")
        .iter()
        .map(|i| i.as_u64().expect("index") as usize)
        .collect();
    let s_hyps: Vec<&str> = single.iter().map(|&i| hyps[i]).collect();
    let s_refs: Vec<Vec<String>> = single.iter().map(|&i| refs[i].clone()).collect();
    let c = BleuConfig::corpus;
    let runs = [
        ("all", c(), &hyps[..], &refs[..]),
        (
            "all_lowercase",
            c().with_lowercase(true),
            &hyps[..],
            &refs[..],
        ),
        (
            "all_intl",
            c().with_tokenizer(BleuTokenizer::Intl),
            &hyps[..],
            &refs[..],
        ),
        (
            "all_none_tok",
            c().with_tokenizer(BleuTokenizer::None),
            &hyps[..],
            &refs[..],
        ),
        (
            "all_floor",
            c().with_smoothing(Smoothing::Floor(0.1)),
            &hyps[..],
            &refs[..],
        ),
        (
            "all_none_smooth",
            c().with_smoothing(Smoothing::None),
            &hyps[..],
            &refs[..],
        ),
        (
            "all_effective",
            BleuConfig {
                effective_order: true,
                ..c()
            },
            &hyps[..],
            &refs[..],
        ),
        ("single_ref", c(), &s_hyps[..], &s_refs[..]),
        ("first5", c(), &hyps[..5], &refs[..5]),
    ];
    let mut failures = Vec::new();
    for (key, config, h, r) in runs {
        let got = Bleu::new(config).corpus_score(h, r).expect("corpus bleu");
        check_bleu(key, &got, &corpus[key], &mut failures);
    }
    let chrf = kiln_eval::corpus_chrf(&hyps, &refs).expect("chrf").score;
    close("chrf_all", chrf, f(&corpus["chrf_all"]), &mut failures);
    let pp = Chrf::new(ChrfConfig::chrf_plus_plus())
        .corpus_score(&hyps, &refs)
        .expect("chrf++")
        .score;
    close("chrf_pp_all", pp, f(&corpus["chrf_pp_all"]), &mut failures);
    let single_chrf = kiln_eval::corpus_chrf(&s_hyps, &s_refs)
        .expect("chrf")
        .score;
    close(
        "chrf_single_ref",
        single_chrf,
        f(&corpus["chrf_single_ref"]),
        &mut failures,
    );
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn porter_stemmer_matches_nltk() {
    let fx = fixture();
    let mut failures = Vec::new();
    for (word, want) in fx["porter"].as_object().expect("porter") {
        let got = porter_stem(word);
        if got != want.as_str().expect("stem") {
            failures.push(format!("{word}: got {got}, want {want}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
