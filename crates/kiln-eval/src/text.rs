//! Python string semantics the reference implementations rely on, and the SQuAD answer metrics.

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;

/// Python's `str.isspace()`: Rust's `char::is_whitespace` plus the information separators
/// U+001C..=U+001F, which Python counts as whitespace (bidi classes B and S).
pub(crate) fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.split()` without arguments.
pub(crate) fn py_split(s: &str) -> impl Iterator<Item = &str> {
    s.split(is_py_space).filter(|t| !t.is_empty())
}

/// Python's `' '.join(s.split())`.
pub(crate) fn py_collapse_whitespace(s: &str) -> String {
    py_split(s).collect::<Vec<_>>().join(" ")
}

/// `string.punctuation`: the 32 ASCII punctuation characters.
pub(crate) fn is_ascii_punct(c: char) -> bool {
    c.is_ascii_punctuation()
}

static ARTICLES: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b(a|an|the)\b").expect("constant regex"));

/// SQuAD's `normalize_answer`: lowercase, drop ASCII punctuation (`string.punctuation`), replace the
/// articles "a", "an", "the" by a space, and collapse whitespace.
///
/// ```
/// assert_eq!(kiln_eval::normalize_answer("The  30-day Window!"), "30day window");
/// ```
pub fn normalize_answer(text: &str) -> String {
    let lower = text.to_lowercase();
    let no_punct: String = lower.chars().filter(|&c| !is_ascii_punct(c)).collect();
    let no_articles = ARTICLES.replace_all(&no_punct, " ");
    py_collapse_whitespace(&no_articles)
}

/// Exact match of a prediction against one reference: byte equality, or equality after
/// [`normalize_answer`] when `normalize` is true (SQuAD's `exact_match_score`).
pub fn exact_match(prediction: &str, reference: &str, normalize: bool) -> bool {
    if normalize {
        normalize_answer(prediction) == normalize_answer(reference)
    } else {
        prediction == reference
    }
}

/// [`exact_match`] against several references: true when any matches (false for none).
pub fn exact_match_multi<S: AsRef<str>>(
    prediction: &str,
    references: &[S],
    normalize: bool,
) -> bool {
    references
        .iter()
        .any(|r| exact_match(prediction, r.as_ref(), normalize))
}

/// SQuAD token F1 between a prediction and one reference, in `[0, 1]`.
///
/// Both strings are normalized with [`normalize_answer`] and split on whitespace; the score is the
/// harmonic mean of the bag-of-tokens precision and recall. As in the official SQuAD 2.0 script,
/// when either side has no tokens the score is 1.0 if both are empty and 0.0 otherwise.
pub fn token_f1(prediction: &str, reference: &str) -> f64 {
    let pred_norm = normalize_answer(prediction);
    let ref_norm = normalize_answer(reference);
    let pred: Vec<&str> = py_split(&pred_norm).collect();
    let gold: Vec<&str> = py_split(&ref_norm).collect();
    if pred.is_empty() || gold.is_empty() {
        return if pred == gold { 1.0 } else { 0.0 };
    }
    let mut gold_counts: HashMap<&str, usize> = HashMap::new();
    for t in &gold {
        *gold_counts.entry(t).or_default() += 1;
    }
    let mut same = 0usize;
    for t in &pred {
        if let Some(c) = gold_counts.get_mut(t)
            && *c > 0
        {
            *c -= 1;
            same += 1;
        }
    }
    if same == 0 {
        return 0.0;
    }
    let precision = same as f64 / pred.len() as f64;
    let recall = same as f64 / gold.len() as f64;
    (2.0 * precision * recall) / (precision + recall)
}

/// [`token_f1`] against several references: the maximum (0.0 for none), as SQuAD does.
pub fn token_f1_multi<S: AsRef<str>>(prediction: &str, references: &[S]) -> f64 {
    references
        .iter()
        .map(|r| token_f1(prediction, r.as_ref()))
        .fold(0.0, f64::max)
}

/// Whether the normalized reference answer occurs in the normalized prediction (as whole tokens).
///
/// Useful for short canonical answers ("30 days") inside a longer generated reply. An answer that
/// normalizes to nothing is never contained.
///
/// ```
/// assert!(kiln_eval::contains_answer("You have 30 days to return it.", "30 days"));
/// assert!(!kiln_eval::contains_answer("You have 130 days.", "30 days"));
/// ```
pub fn contains_answer(prediction: &str, answer: &str) -> bool {
    let answer = normalize_answer(answer);
    if answer.is_empty() {
        return false;
    }
    let prediction = normalize_answer(prediction);
    format!(" {prediction} ").contains(&format!(" {answer} "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_whitespace() {
        assert_eq!(
            py_collapse_whitespace("\u{1c}a\u{a0} b\u{3000}c\u{200b}"),
            "a b c\u{200b}"
        );
    }

    #[test]
    fn squad() {
        assert_eq!(normalize_answer("An apple, the pear"), "apple pear");
        assert!(exact_match("The Cat.", "cat", true));
        assert!(!exact_match("The Cat.", "cat", false));
        assert_eq!(token_f1("", ""), 1.0);
        assert_eq!(token_f1("the", "a"), 1.0);
        assert_eq!(token_f1("x", ""), 0.0);
        let f = token_f1("red blue blue", "blue red green");
        assert!((f - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(token_f1_multi::<&str>("x", &[]), 0.0);
    }
}
