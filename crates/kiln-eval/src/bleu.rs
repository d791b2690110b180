//! BLEU exactly as sacreBLEU 2.x computes it (`corpus_bleu`, `sentence_bleu`, `BLEU.compute_bleu`).

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::error::{EvalError, Result};
use crate::text::{is_py_space, py_collapse_whitespace};

/// The tokenizer applied to hypotheses and references before n-gram counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub enum BleuTokenizer {
    /// sacreBLEU's `none`: split on whitespace only.
    #[serde(rename = "none")]
    None,
    /// sacreBLEU's default `13a` (mteval-v13a): separates ASCII punctuation and symbols, periods and
    /// commas unless next to a digit, and dashes after a digit; unescapes `&quot; &amp; &lt; &gt;`.
    #[default]
    #[serde(rename = "13a")]
    Tok13a,
    /// sacreBLEU's `intl` (mteval-v14 international): separates Unicode punctuation not between
    /// digits and every Unicode symbol.
    #[serde(rename = "intl")]
    Intl,
}

impl BleuTokenizer {
    /// The name sacreBLEU's signature uses (`none`, `13a`, `intl`).
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Tok13a => "13a",
            Self::Intl => "intl",
        }
    }

    /// Tokenizes one line; tokens are separated by single spaces.
    ///
    /// ```
    /// use kiln_eval::BleuTokenizer;
    /// assert_eq!(BleuTokenizer::Tok13a.tokenize("Hello, world. It costs $3.50!"),
    ///            "Hello , world . It costs $ 3.50 !");
    /// ```
    pub fn tokenize(self, line: &str) -> String {
        match self {
            Self::None => line.to_string(),
            Self::Tok13a => tokenize_13a(line),
            Self::Intl => tokenize_intl(line),
        }
    }
}

fn re(pattern: &str) -> Regex {
    Regex::new(pattern).expect("constant regex")
}

/// `TokenizerRegexp`'s rules, in order (Python `re` semantics: ASCII ranges, non-overlapping).
static RE_13A: LazyLock<[(Regex, &'static str); 4]> = LazyLock::new(|| {
    [
        (re(r"([\{-~\[-` -&\(-\+:-@/])"), " ${1} "),
        (re(r"([^0-9])([\.,])"), "${1} ${2} "),
        (re(r"([\.,])([^0-9])"), " ${1} ${2}"),
        (re(r"([0-9])(-)"), "${1} ${2} "),
    ]
});

static RE_INTL: LazyLock<[(Regex, &'static str); 3]> = LazyLock::new(|| {
    [
        (re(r"(\P{N})(\p{P})"), "${1} ${2} "),
        (re(r"(\p{P})(\P{N})"), " ${1} ${2}"),
        (re(r"(\p{S})"), " ${1} "),
    ]
});

fn tokenize_13a(line: &str) -> String {
    let mut line = line
        .replace("<skipped>", "")
        .replace("-\n", "")
        .replace('\n', " ");
    if line.contains('&') {
        line = line
            .replace("&quot;", "\"")
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">");
    }
    let mut line = format!(" {line} ");
    for (re, rep) in RE_13A.iter() {
        line = re.replace_all(&line, *rep).into_owned();
    }
    py_collapse_whitespace(&line)
}

fn tokenize_intl(line: &str) -> String {
    let mut line = line.to_string();
    for (re, rep) in RE_INTL.iter() {
        line = re.replace_all(&line, *rep).into_owned();
    }
    py_collapse_whitespace(&line)
}

/// How BLEU treats n-gram orders without matches (Chen & Cherry 2014).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Smoothing {
    /// No smoothing: a zero precision makes the score (practically) zero.
    None,
    /// Method 1: a zero match count becomes this value (sacreBLEU default 0.1).
    Floor(f64),
    /// Method 2: add this value to the counts of orders above 1 (sacreBLEU default 1).
    AddK(f64),
    /// Method 3, NIST / mteval-v13a: the k-th zero-precision order gets `1 / (2^k * total)`.
    #[default]
    Exp,
}

/// BLEU settings, mirroring sacreBLEU's `BLEU(...)` arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BleuConfig {
    /// Tokenizer (default `13a`).
    pub tokenizer: BleuTokenizer,
    /// Lowercase hypotheses and references first (default false).
    pub lowercase: bool,
    /// Smoothing (default `exp`).
    pub smoothing: Smoothing,
    /// Highest n-gram order (default 4).
    pub max_ngram_order: usize,
    /// Average only over orders that have at least one hypothesis n-gram (sacreBLEU's
    /// `effective_order`; false for `corpus_bleu`, true for `sentence_bleu`).
    pub effective_order: bool,
}

impl BleuConfig {
    /// The defaults of sacreBLEU's `corpus_bleu`: 13a, cased, `exp` smoothing, order 4, no effective order.
    pub fn corpus() -> Self {
        Self {
            tokenizer: BleuTokenizer::Tok13a,
            lowercase: false,
            smoothing: Smoothing::Exp,
            max_ngram_order: 4,
            effective_order: false,
        }
    }

    /// The defaults of sacreBLEU's `sentence_bleu`: as [`corpus`](Self::corpus) but with effective order.
    pub fn sentence() -> Self {
        Self {
            effective_order: true,
            ..Self::corpus()
        }
    }

    /// Replaces the tokenizer.
    pub fn with_tokenizer(mut self, tokenizer: BleuTokenizer) -> Self {
        self.tokenizer = tokenizer;
        self
    }

    /// Sets lowercasing.
    pub fn with_lowercase(mut self, lowercase: bool) -> Self {
        self.lowercase = lowercase;
        self
    }

    /// Replaces the smoothing method.
    pub fn with_smoothing(mut self, smoothing: Smoothing) -> Self {
        self.smoothing = smoothing;
        self
    }

    fn preprocess(&self, segment: &str) -> String {
        let lowered;
        let s = if self.lowercase {
            lowered = segment.to_lowercase();
            lowered.as_str()
        } else {
            segment
        };
        self.tokenizer.tokenize(s.trim_end_matches(is_py_space))
    }
}

impl Default for BleuConfig {
    fn default() -> Self {
        Self::corpus()
    }
}

/// A BLEU score and its sufficient statistics (sacreBLEU's `BLEUScore`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BleuScore {
    /// BLEU in `[0, 100]`.
    pub score: f64,
    /// Clipped n-gram matches per order (1-based order at index order - 1).
    pub counts: Vec<u64>,
    /// Hypothesis n-grams per order.
    pub totals: Vec<u64>,
    /// Smoothed precisions per order, in percent.
    pub precisions: Vec<f64>,
    /// Brevity penalty.
    pub bp: f64,
    /// Hypothesis length in tokens.
    pub sys_len: u64,
    /// Effective reference length in tokens (closest reference length, shorter on ties).
    pub ref_len: u64,
}

/// Sufficient statistics of one segment: `[sys_len, ref_len, counts.., totals..]`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SegmentStats {
    sys_len: u64,
    ref_len: u64,
    counts: Vec<u64>,
    totals: Vec<u64>,
}

type NgramCounts<'a> = HashMap<&'a [&'a str], u64>;

fn ngrams<'a>(tokens: &'a [&'a str], max_order: usize) -> NgramCounts<'a> {
    let mut counts = HashMap::new();
    for n in 1..=max_order {
        for w in tokens.windows(n) {
            *counts.entry(w).or_insert(0) += 1;
        }
    }
    counts
}

/// A configured BLEU metric.
///
/// ```
/// use kiln_eval::{Bleu, BleuConfig};
/// let bleu = Bleu::new(BleuConfig::corpus());
/// let s = bleu.corpus_score(&["the cat sat on the mat"], &[["the cat sat on the mat"]]).unwrap();
/// assert!((s.score - 100.0).abs() < 1e-9); // sacreBLEU also reports 100.00000000000004
/// ```
#[derive(Debug, Clone, Default)]
pub struct Bleu {
    config: BleuConfig,
}

impl Bleu {
    /// A metric with these settings.
    pub fn new(config: BleuConfig) -> Self {
        Self { config }
    }

    /// The settings.
    pub fn config(&self) -> &BleuConfig {
        &self.config
    }

    /// sacreBLEU's signature string, e.g. `nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0`
    /// without the `nrefs` and `version` fields.
    pub fn signature(&self) -> String {
        let smooth = match self.config.smoothing {
            Smoothing::None => "none".to_string(),
            Smoothing::Exp => "exp".to_string(),
            Smoothing::Floor(v) => format!("floor[{v:.2}]"),
            Smoothing::AddK(v) => format!("add-k[{v:.2}]"),
        };
        format!(
            "case:{}|eff:{}|tok:{}|smooth:{}",
            if self.config.lowercase { "lc" } else { "mixed" },
            if self.config.effective_order {
                "yes"
            } else {
                "no"
            },
            self.config.tokenizer.name(),
            smooth
        )
    }

    fn check(&self) -> Result<()> {
        if self.config.max_ngram_order == 0 {
            return Err(EvalError::InvalidParameter {
                name: "max_ngram_order",
                message: "must be at least 1".into(),
            });
        }
        Ok(())
    }

    fn segment_stats<S: AsRef<str>>(&self, hypothesis: &str, references: &[S]) -> SegmentStats {
        let order = self.config.max_ngram_order;
        let ref_lines: Vec<String> = references
            .iter()
            .map(|r| self.config.preprocess(r.as_ref()))
            .collect();
        let ref_tokens: Vec<Vec<&str>> = ref_lines
            .iter()
            .map(|l| crate::text::py_split(l).collect())
            .collect();
        let mut ref_ngrams: NgramCounts = HashMap::new();
        for toks in &ref_tokens {
            for (g, c) in ngrams(toks, order) {
                let e = ref_ngrams.entry(g).or_insert(0);
                *e = (*e).max(c);
            }
        }
        let hyp_line = self.config.preprocess(hypothesis);
        let hyp_tokens: Vec<&str> = crate::text::py_split(&hyp_line).collect();
        let hyp_len = hyp_tokens.len() as u64;

        // Closest reference length; the shorter one on ties.
        let mut ref_len: Option<u64> = None;
        for toks in &ref_tokens {
            let len = toks.len() as u64;
            ref_len = Some(match ref_len {
                None => len,
                Some(best) => {
                    let (d, bd) = (len.abs_diff(hyp_len), best.abs_diff(hyp_len));
                    if d < bd || (d == bd && len < best) {
                        len
                    } else {
                        best
                    }
                }
            });
        }

        let mut counts = vec![0u64; order];
        let mut totals = vec![0u64; order];
        for (g, c) in ngrams(&hyp_tokens, order) {
            let n = g.len() - 1;
            totals[n] += c;
            if let Some(&rc) = ref_ngrams.get(g) {
                counts[n] += c.min(rc);
            }
        }
        SegmentStats {
            sys_len: hyp_len,
            ref_len: ref_len.unwrap_or(0),
            counts,
            totals,
        }
    }

    /// Corpus BLEU. `references[i]` holds the references of `hypotheses[i]` (any number ≥ 1 per
    /// hypothesis; sacreBLEU's `refs` argument is the transpose of this, one stream per reference,
    /// with `None` where a segment has fewer references).
    pub fn corpus_score<H, R, S>(&self, hypotheses: &[H], references: &[R]) -> Result<BleuScore>
    where
        H: AsRef<str>,
        R: AsRef<[S]>,
        S: AsRef<str>,
    {
        self.check()?;
        if hypotheses.is_empty() {
            return Err(EvalError::EmptyCorpus);
        }
        if hypotheses.len() != references.len() {
            return Err(EvalError::LengthMismatch {
                hypotheses: hypotheses.len(),
                references: references.len(),
            });
        }
        let order = self.config.max_ngram_order;
        let mut total = SegmentStats {
            sys_len: 0,
            ref_len: 0,
            counts: vec![0; order],
            totals: vec![0; order],
        };
        for (index, (h, r)) in hypotheses.iter().zip(references).enumerate() {
            let refs = r.as_ref();
            if refs.is_empty() {
                return Err(EvalError::NoReferences { index });
            }
            let s = self.segment_stats(h.as_ref(), refs);
            total.sys_len += s.sys_len;
            total.ref_len += s.ref_len;
            for n in 0..order {
                total.counts[n] += s.counts[n];
                total.totals[n] += s.totals[n];
            }
        }
        Ok(compute_bleu(&total, &self.config))
    }

    /// BLEU of one hypothesis against its references.
    pub fn sentence_score<S: AsRef<str>>(
        &self,
        hypothesis: &str,
        references: &[S],
    ) -> Result<BleuScore> {
        self.corpus_score(&[hypothesis], &[references])
    }
}

/// `BLEU.compute_bleu`, operation for operation so results are bit-identical.
fn compute_bleu(stats: &SegmentStats, config: &BleuConfig) -> BleuScore {
    let order = config.max_ngram_order;
    let (sys_len, ref_len) = (stats.sys_len, stats.ref_len);
    let mut bp = 1.0f64;
    if sys_len < ref_len {
        bp = if sys_len > 0 {
            (1.0 - ref_len as f64 / sys_len as f64).exp()
        } else {
            0.0
        };
    }
    let mut precisions = vec![0.0f64; order];
    let result = |score: f64, precisions: Vec<f64>| BleuScore {
        score,
        counts: stats.counts.clone(),
        totals: stats.totals.clone(),
        precisions,
        bp,
        sys_len,
        ref_len,
    };
    if stats.counts.iter().all(|&c| c == 0) {
        return result(0.0, precisions);
    }
    let mut correct: Vec<f64> = stats.counts.iter().map(|&c| c as f64).collect();
    let mut total: Vec<f64> = stats.totals.iter().map(|&c| c as f64).collect();
    let mut smooth_mteval = 1.0f64;
    let mut eff_order = order;
    for n in 1..=order {
        if let Smoothing::AddK(k) = config.smoothing
            && n > 1
        {
            correct[n - 1] += k;
            total[n - 1] += k;
        }
        if total[n - 1] == 0.0 {
            break;
        }
        if config.effective_order {
            eff_order = n;
        }
        if correct[n - 1] == 0.0 {
            match config.smoothing {
                Smoothing::Exp => {
                    smooth_mteval *= 2.0;
                    precisions[n - 1] = 100.0 / (smooth_mteval * total[n - 1]);
                }
                Smoothing::Floor(v) => precisions[n - 1] = 100.0 * v / total[n - 1],
                _ => {}
            }
        } else {
            precisions[n - 1] = 100.0 * correct[n - 1] / total[n - 1];
        }
    }
    let log_sum = precisions[..eff_order]
        .iter()
        .fold(0.0f64, |acc, &p| acc + my_log(p));
    let score = bp * (log_sum / eff_order as f64).exp();
    result(score, precisions)
}

/// sacreBLEU's `my_log`: `log`, with 0 mapped to -9999999999.
fn my_log(x: f64) -> f64 {
    if x == 0.0 { -9_999_999_999.0 } else { x.ln() }
}

/// sacreBLEU's `corpus_bleu(hypotheses, refs)` with its defaults ([`BleuConfig::corpus`]).
/// `references[i]` are the references of `hypotheses[i]`.
pub fn corpus_bleu<H, R, S>(hypotheses: &[H], references: &[R]) -> Result<BleuScore>
where
    H: AsRef<str>,
    R: AsRef<[S]>,
    S: AsRef<str>,
{
    Bleu::new(BleuConfig::corpus()).corpus_score(hypotheses, references)
}

/// sacreBLEU's `sentence_bleu(hypothesis, references)` with its defaults ([`BleuConfig::sentence`]).
pub fn sentence_bleu<S: AsRef<str>>(hypothesis: &str, references: &[S]) -> Result<BleuScore> {
    Bleu::new(BleuConfig::sentence()).sentence_score(hypothesis, references)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizers() {
        assert_eq!(
            BleuTokenizer::Tok13a.tokenize("a-b 1-2 3,000.5 end."),
            "a-b 1 - 2 3,000.5 end ."
        );
        assert_eq!(
            BleuTokenizer::Tok13a.tokenize("&quot;x&quot; &amp; y"),
            "\" x \" & y"
        );
        assert_eq!(
            BleuTokenizer::Intl.tokenize("«Hola», 1,5€."),
            "« Hola » , 1,5 € ."
        );
    }

    #[test]
    fn errors() {
        let none: [[&str; 0]; 1] = [[]];
        assert_eq!(
            corpus_bleu(&["a"], &none),
            Err(EvalError::NoReferences { index: 0 })
        );
        let empty: [&str; 0] = [];
        let empty_refs: [[&str; 1]; 0] = [];
        assert_eq!(
            corpus_bleu(&empty, &empty_refs),
            Err(EvalError::EmptyCorpus)
        );
        assert!(matches!(
            corpus_bleu(&["a", "b"], &[["a"]]),
            Err(EvalError::LengthMismatch { .. })
        ));
    }
}
