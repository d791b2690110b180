//! ROUGE-L, ROUGE-Lsum and ROUGE-N exactly as Google's `rouge-score` 0.1.2 computes them.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::porter::porter_stem;

/// Precision, recall and F1 of one ROUGE variant, each in `[0, 1]` (rouge-score's `Score`).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct RougeScore {
    /// Matched units over prediction units.
    pub precision: f64,
    /// Matched units over reference units.
    pub recall: f64,
    /// Harmonic mean of precision and recall.
    pub fmeasure: f64,
}

impl RougeScore {
    fn new(precision: f64, recall: f64) -> Self {
        let fmeasure = if precision + recall > 0.0 {
            2.0 * precision * recall / (precision + recall)
        } else {
            0.0
        };
        Self {
            precision,
            recall,
            fmeasure,
        }
    }
}

/// rouge-score's `RougeScorer` with its default tokenizer.
///
/// Tokenization: lowercase, replace every run of characters outside `[a-z0-9]` by a space, split,
/// and (with the stemmer) apply NLTK's Porter stemmer to tokens longer than three characters.
///
/// Argument order: kiln-eval always takes `(prediction, reference)`; rouge-score's
/// `score(target, prediction)` takes the reference first.
///
/// ```
/// use kiln_eval::RougeScorer;
/// let s = RougeScorer::new(false).rouge_l("the cat sat", "the cat was sitting");
/// assert!((s.fmeasure - 4.0 / 7.0).abs() < 1e-12);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RougeScorer {
    /// Apply the Porter stemmer (rouge-score's `use_stemmer`).
    pub use_stemmer: bool,
}

impl RougeScorer {
    /// A scorer; `use_stemmer` as in rouge-score.
    pub fn new(use_stemmer: bool) -> Self {
        Self { use_stemmer }
    }

    /// rouge-score's `tokenize.tokenize(text, stemmer)`.
    pub fn tokenize(&self, text: &str) -> Vec<String> {
        let lower = text.to_lowercase();
        lower
            .split(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit()))
            .filter(|t| !t.is_empty())
            .map(|t| {
                if self.use_stemmer && t.len() > 3 {
                    porter_stem(t)
                } else {
                    t.to_string()
                }
            })
            .filter(|t| !t.is_empty())
            .collect()
    }

    /// ROUGE-L: longest common subsequence over the whole texts (newlines are ordinary separators).
    pub fn rouge_l(&self, prediction: &str, reference: &str) -> RougeScore {
        let target = self.tokenize(reference);
        let pred = self.tokenize(prediction);
        if target.is_empty() || pred.is_empty() {
            return RougeScore::default();
        }
        let lcs = lcs_table(&target, &pred)[target.len()][pred.len()];
        RougeScore::new(
            lcs as f64 / pred.len() as f64,
            lcs as f64 / target.len() as f64,
        )
    }

    /// ROUGE-Lsum: summary-level union LCS, sentences being the non-empty `\n`-separated lines
    /// (rouge-score's default `split_summaries=False`).
    pub fn rouge_lsum(&self, prediction: &str, reference: &str) -> RougeScore {
        let sents = |t: &str| -> Vec<Vec<String>> {
            t.split('\n')
                .filter(|s| !s.is_empty())
                .map(|s| self.tokenize(s))
                .collect()
        };
        summary_level_lcs(&sents(reference), &sents(prediction))
    }

    /// ROUGE-N (n ≥ 1): clipped n-gram overlap. `n = 0` scores zero.
    pub fn rouge_n(&self, n: usize, prediction: &str, reference: &str) -> RougeScore {
        if n == 0 {
            return RougeScore::default();
        }
        let target = self.tokenize(reference);
        let pred = self.tokenize(prediction);
        let count = |toks: &[String]| {
            let mut m: HashMap<Vec<String>, usize> = HashMap::new();
            for w in toks.windows(n) {
                *m.entry(w.to_vec()).or_insert(0) += 1;
            }
            m
        };
        let (t, p) = (count(&target), count(&pred));
        let inter: usize = t
            .iter()
            .map(|(g, &c)| c.min(p.get(g).copied().unwrap_or(0)))
            .sum();
        let tc: usize = t.values().sum();
        let pc: usize = p.values().sum();
        RougeScore::new(
            inter as f64 / pc.max(1) as f64,
            inter as f64 / tc.max(1) as f64,
        )
    }

    /// ROUGE-L and ROUGE-Lsum against several references: for each variant, the score of the
    /// reference with the highest F-measure (the first on ties), as rouge-score's `score_multi`.
    /// Returns zeros for no references.
    pub fn score_multi<S: AsRef<str>>(
        &self,
        prediction: &str,
        references: &[S],
    ) -> (RougeScore, RougeScore) {
        let best = |f: &dyn Fn(&str) -> RougeScore| {
            let mut best: Option<RougeScore> = None;
            for r in references {
                let s = f(r.as_ref());
                if best.is_none_or(|b| s.fmeasure > b.fmeasure) {
                    best = Some(s);
                }
            }
            best.unwrap_or_default()
        };
        (
            best(&|r| self.rouge_l(prediction, r)),
            best(&|r| self.rouge_lsum(prediction, r)),
        )
    }
}

fn lcs_table(r: &[String], c: &[String]) -> Vec<Vec<usize>> {
    let mut t = vec![vec![0usize; c.len() + 1]; r.len() + 1];
    for i in 1..=r.len() {
        for j in 1..=c.len() {
            t[i][j] = if r[i - 1] == c[j - 1] {
                t[i - 1][j - 1] + 1
            } else {
                t[i - 1][j].max(t[i][j - 1])
            };
        }
    }
    t
}

/// `lcs_ind`: indices into `r` of one LCS, read back as rouge-score's `_backtrack_norec` does.
fn lcs_indices(r: &[String], c: &[String]) -> Vec<usize> {
    let t = lcs_table(r, c);
    let (mut i, mut j) = (r.len(), c.len());
    let mut out = Vec::new();
    while i > 0 && j > 0 {
        if r[i - 1] == c[j - 1] {
            out.push(i - 1);
            i -= 1;
            j -= 1;
        } else if t[i][j - 1] > t[i - 1][j] {
            j -= 1;
        } else {
            i -= 1;
        }
    }
    out.reverse();
    out
}

fn summary_level_lcs(ref_sents: &[Vec<String>], can_sents: &[Vec<String>]) -> RougeScore {
    if ref_sents.is_empty() || can_sents.is_empty() {
        return RougeScore::default();
    }
    let m: usize = ref_sents.iter().map(Vec::len).sum();
    let n: usize = can_sents.iter().map(Vec::len).sum();
    if m == 0 || n == 0 {
        return RougeScore::default();
    }
    let mut cnt_r: HashMap<&str, usize> = HashMap::new();
    let mut cnt_c: HashMap<&str, usize> = HashMap::new();
    for t in ref_sents.iter().flatten() {
        *cnt_r.entry(t).or_insert(0) += 1;
    }
    for t in can_sents.iter().flatten() {
        *cnt_c.entry(t).or_insert(0) += 1;
    }
    let mut hits = 0usize;
    for r in ref_sents {
        let union: BTreeSet<usize> = can_sents.iter().flat_map(|c| lcs_indices(r, c)).collect();
        for i in union {
            let t = r[i].as_str();
            if let (Some(cc), Some(rc)) = (cnt_c.get_mut(t), cnt_r.get_mut(t))
                && *cc > 0
                && *rc > 0
            {
                hits += 1;
                *cc -= 1;
                *rc -= 1;
            }
        }
    }
    RougeScore::new(hits as f64 / n as f64, hits as f64 / m as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer() {
        let s = RougeScorer::new(false);
        assert_eq!(
            s.tokenize("Hello, WORLD! café 3.5"),
            ["hello", "world", "caf", "3", "5"]
        );
        assert!(s.tokenize("  !! ").is_empty());
    }

    #[test]
    fn empty_scores_zero() {
        let s = RougeScorer::new(false);
        assert_eq!(s.rouge_l("", "a b"), RougeScore::default());
        assert_eq!(s.rouge_lsum("a", ""), RougeScore::default());
    }
}
