//! An aggregate evaluation report over (prediction, references) samples.

use serde::{Deserialize, Serialize};

use crate::bleu::{Bleu, BleuConfig};
use crate::chrf::corpus_chrf;
use crate::error::{EvalError, Result};
use crate::perplexity::PerplexityAccumulator;
use crate::rouge::RougeScorer;
use crate::text::{contains_answer, exact_match_multi, token_f1_multi};

/// One evaluated example.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Sample {
    /// The model's output.
    pub prediction: String,
    /// One or more acceptable references (for example the full reference answer).
    pub references: Vec<String>,
    /// A short canonical answer ("30 days") that a correct prediction contains; optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    /// Natural-log probabilities of the reference tokens under the model, for perplexity; optional.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logprobs: Vec<f64>,
}

impl Sample {
    /// A sample with one reference.
    pub fn new(prediction: impl Into<String>, reference: impl Into<String>) -> Self {
        Self {
            prediction: prediction.into(),
            references: vec![reference.into()],
            ..Self::default()
        }
    }

    /// Sets the canonical short answer.
    pub fn with_answer(mut self, answer: impl Into<String>) -> Self {
        self.answer = Some(answer.into());
        self
    }

    /// Sets the reference log-probabilities.
    pub fn with_logprobs(mut self, logprobs: Vec<f64>) -> Self {
        self.logprobs = logprobs;
        self
    }
}

/// Per-sample scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleScores {
    /// Byte-exact match with any reference.
    pub exact_match: bool,
    /// Match after SQuAD normalization with any reference.
    pub exact_match_normalized: bool,
    /// Best SQuAD token F1, `[0, 1]`.
    pub token_f1: f64,
    /// sacreBLEU `sentence_bleu`, `[0, 100]`.
    pub sentence_bleu: f64,
    /// Best ROUGE-L F-measure, `[0, 1]`.
    pub rouge_l: f64,
    /// Best ROUGE-Lsum F-measure, `[0, 1]`.
    pub rouge_lsum: f64,
    /// Whether the prediction contains the canonical answer (None without one).
    pub contains_answer: Option<bool>,
}

/// Mean scores over a set of samples. Scales follow the reference tools: BLEU and chrF in
/// `[0, 100]`, everything else in `[0, 1]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Number of samples.
    pub count: usize,
    /// Fraction of byte-exact matches.
    pub exact_match: f64,
    /// Fraction of matches after SQuAD normalization.
    pub exact_match_normalized: f64,
    /// Mean SQuAD token F1.
    pub token_f1: f64,
    /// sacreBLEU `corpus_bleu` over all samples (13a, exp smoothing).
    pub corpus_bleu: f64,
    /// Mean sacreBLEU `sentence_bleu`.
    pub sentence_bleu: f64,
    /// sacreBLEU `corpus_chrf` (chrF2).
    pub chrf: f64,
    /// Mean ROUGE-L F-measure.
    pub rouge_l: f64,
    /// Mean ROUGE-Lsum F-measure.
    pub rouge_lsum: f64,
    /// Fraction of samples with an answer whose prediction contains it (None if no sample has one).
    pub answer_accuracy: Option<f64>,
    /// Token-weighted perplexity over the samples that carry log-probabilities (None if none do).
    pub perplexity: Option<f64>,
    /// Whether ROUGE used the Porter stemmer.
    pub rouge_stemmer: bool,
    /// Per-sample scores, in input order.
    pub samples: Vec<SampleScores>,
}

impl Report {
    /// Scores every sample and aggregates. Errors on an empty set, a sample without references, or
    /// invalid log-probabilities.
    pub fn compute(samples: &[Sample], rouge_stemmer: bool) -> Result<Self> {
        if samples.is_empty() {
            return Err(EvalError::EmptyCorpus);
        }
        let rouge = RougeScorer::new(rouge_stemmer);
        let sentence = Bleu::new(BleuConfig::sentence());
        let mut per = Vec::with_capacity(samples.len());
        let mut ppl = PerplexityAccumulator::default();
        for (index, s) in samples.iter().enumerate() {
            if s.references.is_empty() {
                return Err(EvalError::NoReferences { index });
            }
            let (rl, rlsum) = rouge.score_multi(&s.prediction, &s.references);
            if !s.logprobs.is_empty() {
                ppl.add(&s.logprobs)?;
            }
            per.push(SampleScores {
                exact_match: exact_match_multi(&s.prediction, &s.references, false),
                exact_match_normalized: exact_match_multi(&s.prediction, &s.references, true),
                token_f1: token_f1_multi(&s.prediction, &s.references),
                sentence_bleu: sentence.sentence_score(&s.prediction, &s.references)?.score,
                rouge_l: rl.fmeasure,
                rouge_lsum: rlsum.fmeasure,
                contains_answer: s
                    .answer
                    .as_deref()
                    .map(|a| contains_answer(&s.prediction, a)),
            });
        }
        let hyps: Vec<&str> = samples.iter().map(|s| s.prediction.as_str()).collect();
        let refs: Vec<&[String]> = samples.iter().map(|s| s.references.as_slice()).collect();
        let n = samples.len() as f64;
        let mean = |f: &dyn Fn(&SampleScores) -> f64| per.iter().map(f).sum::<f64>() / n;
        let answered: Vec<bool> = per.iter().filter_map(|p| p.contains_answer).collect();
        Ok(Self {
            count: samples.len(),
            exact_match: mean(&|p| f64::from(u8::from(p.exact_match))),
            exact_match_normalized: mean(&|p| f64::from(u8::from(p.exact_match_normalized))),
            token_f1: mean(&|p| p.token_f1),
            corpus_bleu: Bleu::new(BleuConfig::corpus())
                .corpus_score(&hyps, &refs)?
                .score,
            sentence_bleu: mean(&|p| p.sentence_bleu),
            chrf: corpus_chrf(&hyps, &refs)?.score,
            rouge_l: mean(&|p| p.rouge_l),
            rouge_lsum: mean(&|p| p.rouge_lsum),
            answer_accuracy: (!answered.is_empty())
                .then(|| answered.iter().filter(|&&b| b).count() as f64 / answered.len() as f64),
            perplexity: (ppl.tokens > 0).then(|| ppl.perplexity()).transpose()?,
            rouge_stemmer,
            samples: per,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_roundtrip() {
        let samples = vec![
            Sample::new("You have 30 days.", "You have 30 days to return items.")
                .with_answer("30 days")
                .with_logprobs(vec![-1.0, -2.0]),
            Sample::new("Free over $50.", "Free over $50.").with_answer("$50"),
        ];
        let r = Report::compute(&samples, false).unwrap();
        assert_eq!(r.count, 2);
        assert_eq!(r.exact_match, 0.5);
        assert_eq!(r.answer_accuracy, Some(1.0));
        assert!((r.perplexity.unwrap() - 1.5f64.exp()).abs() < 1e-12);
        let json = serde_json::to_string(&r).unwrap();
        let back: Report = serde_json::from_str(&json).unwrap();
        assert_eq!(back.count, 2);
        assert_eq!(Report::compute(&[], false), Err(EvalError::EmptyCorpus));
    }
}
