//! chrF / chrF++ exactly as sacreBLEU 2.x computes it (`corpus_chrf`, `sentence_chrf`).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::error::{EvalError, Result};
use crate::text::{is_ascii_punct, py_split};

/// chrF settings, mirroring sacreBLEU's `CHRF(...)` arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChrfConfig {
    /// Character n-gram order (default 6).
    pub char_order: usize,
    /// Word n-gram order (default 0; 2 gives chrF++).
    pub word_order: usize,
    /// Recall weight β (default 2).
    pub beta: u32,
    /// Lowercase first (default false).
    pub lowercase: bool,
    /// Keep whitespace inside character n-grams (default false).
    pub whitespace: bool,
    /// Epsilon smoothing as chrF++.py / NLTK / Moses instead of the effective-order average
    /// (default false).
    pub eps_smoothing: bool,
}

impl Default for ChrfConfig {
    fn default() -> Self {
        Self {
            char_order: 6,
            word_order: 0,
            beta: 2,
            lowercase: false,
            whitespace: false,
            eps_smoothing: false,
        }
    }
}

impl ChrfConfig {
    /// chrF++: the defaults with word order 2.
    pub fn chrf_plus_plus() -> Self {
        Self {
            word_order: 2,
            ..Self::default()
        }
    }
}

/// A chrF score in `[0, 100]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChrfScore {
    /// The score.
    pub score: f64,
    /// Character order used.
    pub char_order: usize,
    /// Word order used.
    pub word_order: usize,
    /// β used.
    pub beta: u32,
}

/// A configured chrF metric.
#[derive(Debug, Clone, Default)]
pub struct Chrf {
    config: ChrfConfig,
}

fn count<'a>(items: impl Iterator<Item = &'a str>) -> HashMap<&'a str, u64> {
    let mut m = HashMap::new();
    for i in items {
        *m.entry(i).or_insert(0) += 1;
    }
    m
}

/// Character n-gram counters for n = 1..=max (as `extract_all_char_ngrams`).
fn char_ngrams(line: &str, max_order: usize) -> Vec<HashMap<&str, u64>> {
    // Byte offsets of every char plus the end, so n-grams are `&line[b[i]..b[i + n]]`.
    let bounds: Vec<usize> = line
        .char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(line.len()))
        .collect();
    let chars = bounds.len() - 1;
    (1..=max_order)
        .map(|n| count((0..(chars + 1).saturating_sub(n)).map(|i| &line[bounds[i]..bounds[i + n]])))
        .collect()
}

/// `CHRF._remove_punctuation`: split off one leading or trailing ASCII punctuation mark per word.
fn remove_punctuation(sent: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for w in py_split(sent) {
        let mut chars = w.chars();
        let first = chars.next();
        let last = w.chars().next_back();
        if w.chars().nth(1).is_none() {
            out.push(w);
        } else if let Some(l) = last.filter(|&c| is_ascii_punct(c)) {
            let cut = w.len() - l.len_utf8();
            out.push(&w[..cut]);
            out.push(&w[cut..]);
        } else if let Some(f) = first.filter(|&c| is_ascii_punct(c)) {
            let cut = f.len_utf8();
            out.push(&w[..cut]);
            out.push(&w[cut..]);
        } else {
            out.push(w);
        }
    }
    out
}

fn word_ngrams(words: &[&str], n: usize) -> HashMap<String, u64> {
    let mut m = HashMap::new();
    for w in words.windows(n) {
        *m.entry(w.join(" ")).or_insert(0) += 1;
    }
    m
}

fn match_stats<K: std::hash::Hash + Eq>(hyp: &HashMap<K, u64>, refs: &HashMap<K, u64>) -> [u64; 3] {
    let mut matched = 0;
    let mut hyp_count = 0;
    for (g, &c) in hyp {
        hyp_count += c;
        if let Some(&r) = refs.get(g) {
            matched += c.min(r);
        }
    }
    [
        if refs.is_empty() { 0 } else { hyp_count },
        refs.values().sum(),
        matched,
    ]
}

struct Ngrams<'a> {
    chars: Vec<HashMap<&'a str, u64>>,
    words: Vec<HashMap<String, u64>>,
}

impl Chrf {
    /// A metric with these settings.
    pub fn new(config: ChrfConfig) -> Self {
        Self { config }
    }

    /// The settings.
    pub fn config(&self) -> &ChrfConfig {
        &self.config
    }

    fn extract<'a>(&self, line: &'a str, squeezed: &'a str) -> Ngrams<'a> {
        let src = if self.config.whitespace {
            line
        } else {
            squeezed
        };
        let chars = char_ngrams(src, self.config.char_order);
        let words = if self.config.word_order > 0 {
            let w = remove_punctuation(line);
            (1..=self.config.word_order)
                .map(|n| word_ngrams(&w, n))
                .collect()
        } else {
            Vec::new()
        };
        Ngrams { chars, words }
    }

    /// `CHRF._compute_f_score` over flattened `[hyp, ref, match]` triples.
    fn f_score(&self, stats: &[u64]) -> f64 {
        let eps = 1e-16;
        let mut score = 0.0;
        let mut effective_order = 0u32;
        let factor = f64::from(self.config.beta.pow(2));
        let (mut avg_prec, mut avg_rec) = (0.0f64, 0.0f64);
        let order = self.config.char_order + self.config.word_order;
        for i in 0..order {
            let (n_hyp, n_ref, n_match) = (stats[3 * i], stats[3 * i + 1], stats[3 * i + 2]);
            let prec = if n_hyp > 0 {
                n_match as f64 / n_hyp as f64
            } else {
                eps
            };
            let rec = if n_ref > 0 {
                n_match as f64 / n_ref as f64
            } else {
                eps
            };
            let denom = factor * prec + rec;
            score += if denom > 0.0 {
                (1.0 + factor) * prec * rec / denom
            } else {
                eps
            };
            if n_hyp > 0 && n_ref > 0 {
                avg_prec += prec;
                avg_rec += rec;
                effective_order += 1;
            }
        }
        if self.config.eps_smoothing {
            return 100.0 * score / order as f64;
        }
        if effective_order == 0 {
            avg_prec = 0.0;
            avg_rec = 0.0;
        } else {
            avg_prec /= f64::from(effective_order);
            avg_rec /= f64::from(effective_order);
        }
        if avg_prec + avg_rec != 0.0 {
            let mut score = (1.0 + factor) * avg_prec * avg_rec;
            score /= (factor * avg_prec) + avg_rec;
            100.0 * score
        } else {
            0.0
        }
    }

    fn segment_stats<S: AsRef<str>>(&self, hypothesis: &str, references: &[S]) -> Vec<u64> {
        let prep = |s: &str| {
            if self.config.lowercase {
                s.to_lowercase()
            } else {
                s.to_string()
            }
        };
        let squeeze = |s: &str| py_split(s).collect::<String>();
        let hyp = prep(hypothesis);
        let hyp_sq = squeeze(&hyp);
        let h = self.extract(&hyp, &hyp_sq);
        let mut best: Vec<u64> = Vec::new();
        let mut best_f = -1.0;
        for r in references {
            let r = prep(r.as_ref());
            let r_sq = squeeze(&r);
            let rn = self.extract(&r, &r_sq);
            let mut stats = Vec::with_capacity(3 * (h.chars.len() + h.words.len()));
            for (hc, rc) in h.chars.iter().zip(&rn.chars) {
                stats.extend(match_stats(hc, rc));
            }
            for (hw, rw) in h.words.iter().zip(&rn.words) {
                stats.extend(match_stats(hw, rw));
            }
            let f = self.f_score(&stats);
            if f > best_f {
                best_f = f;
                best = stats;
            }
        }
        best
    }

    /// Corpus chrF; `references[i]` holds the references of `hypotheses[i]` (the best-scoring one is
    /// used per segment).
    pub fn corpus_score<H, R, S>(&self, hypotheses: &[H], references: &[R]) -> Result<ChrfScore>
    where
        H: AsRef<str>,
        R: AsRef<[S]>,
        S: AsRef<str>,
    {
        if self.config.char_order + self.config.word_order == 0 {
            return Err(EvalError::InvalidParameter {
                name: "char_order",
                message: "char_order + word_order must be at least 1".into(),
            });
        }
        if hypotheses.is_empty() {
            return Err(EvalError::EmptyCorpus);
        }
        if hypotheses.len() != references.len() {
            return Err(EvalError::LengthMismatch {
                hypotheses: hypotheses.len(),
                references: references.len(),
            });
        }
        let mut total = vec![0u64; 3 * (self.config.char_order + self.config.word_order)];
        for (index, (h, r)) in hypotheses.iter().zip(references).enumerate() {
            let refs = r.as_ref();
            if refs.is_empty() {
                return Err(EvalError::NoReferences { index });
            }
            for (t, s) in total.iter_mut().zip(self.segment_stats(h.as_ref(), refs)) {
                *t += s;
            }
        }
        Ok(ChrfScore {
            score: self.f_score(&total),
            char_order: self.config.char_order,
            word_order: self.config.word_order,
            beta: self.config.beta,
        })
    }

    /// chrF of one hypothesis against its references.
    pub fn sentence_score<S: AsRef<str>>(
        &self,
        hypothesis: &str,
        references: &[S],
    ) -> Result<ChrfScore> {
        self.corpus_score(&[hypothesis], &[references])
    }
}

/// sacreBLEU's `corpus_chrf(hypotheses, refs)` with its defaults (chrF2, character order 6).
pub fn corpus_chrf<H, R, S>(hypotheses: &[H], references: &[R]) -> Result<ChrfScore>
where
    H: AsRef<str>,
    R: AsRef<[S]>,
    S: AsRef<str>,
{
    Chrf::default().corpus_score(hypotheses, references)
}

/// sacreBLEU's `sentence_chrf(hypothesis, references)` with its defaults.
pub fn sentence_chrf<S: AsRef<str>>(hypothesis: &str, references: &[S]) -> Result<ChrfScore> {
    Chrf::default().sentence_score(hypothesis, references)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn punctuation_split() {
        assert_eq!(
            remove_punctuation("hi, (there) ! é."),
            ["hi", ",", "(there", ")", "!", "é", "."]
        );
    }

    #[test]
    fn identical_is_100() {
        let s = sentence_chrf("Hello there", &["Hello there"]).unwrap();
        assert!((s.score - 100.0).abs() < 1e-12);
    }
}
