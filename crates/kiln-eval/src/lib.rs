//! # kiln-eval
//!
//! Burn-free metrics for evaluating text generation: fine-tunes (`kiln eval`) and prompting
//! strategies. Every score reproduces a reference implementation; the fixture test
//! (`tests/fixtures/metrics.json`, written by `tools/make_eval_fixtures.py`) checks them against
//! the Python packages to 1e-9.
//!
//! - [`exact_match`], [`token_f1`], [`normalize_answer`], [`contains_answer`]: the SQuAD answer
//!   metrics (official SQuAD 2.0 evaluation script).
//! - [`corpus_bleu`], [`sentence_bleu`], [`Bleu`] with [`BleuConfig`]: sacreBLEU 2.x BLEU with its
//!   `13a` (default), `intl` and `none` tokenizers, `exp`/`floor`/`add-k`/`none` smoothing,
//!   effective order, several references per segment. Scores in `[0, 100]`.
//! - [`corpus_chrf`], [`sentence_chrf`], [`Chrf`] with [`ChrfConfig`]: sacreBLEU chrF / chrF++.
//! - [`RougeScorer`]: rouge-score 0.1.2 ROUGE-L, ROUGE-Lsum, ROUGE-N with its default tokenizer,
//!   with or without NLTK's Porter stemmer ([`porter_stem`]).
//! - [`perplexity`], [`PerplexityAccumulator`]: perplexity from natural-log token probabilities.
//! - [`Report`] over [`Sample`]s: the means of all of the above, serializable with serde.
//!
//! Argument order is always `(prediction, reference(s))`. Corpus functions take `references[i]` = the
//! references of hypothesis `i` (sacreBLEU's `refs` is the transpose, one stream per reference, padded
//! with `None`); a segment may have any number ≥ 1 of references.
//!
//! ## Known differences from the Python tools
//!
//! - Lowercasing uses Rust's `str::to_lowercase` (full Unicode mappings, final sigma), which agrees with
//!   Python's `str.lower` except where the two Unicode versions differ. Whitespace splitting follows
//!   Python's `str.split()` (Rust's whitespace plus U+001C..U+001F).
//! - The `intl` tokenizer's `\p{P}`, `\p{S}`, `\p{N}` come from the `regex` crate's Unicode tables,
//!   not the Python `regex` module's; characters assigned in only one of the two Unicode versions may
//!   tokenize differently.
//! - With `Smoothing::AddK`, [`BleuScore::counts`] and `totals` are the raw counts (sacreBLEU reports
//!   the counts with k added); the score is the same.
//! - sacreBLEU's warnings (tokenized periods, `effective_order`) are not reproduced; [`porter_stem`]
//!   leaves non-ASCII words unstemmed (rouge-score never passes it any).
//!
//! ```
//! use kiln_eval::{corpus_bleu, sentence_bleu, token_f1, RougeScorer};
//! let bleu = corpus_bleu(&["The cat sat on the mat."], &[["The cat sat on a mat."]]).unwrap();
//! assert!((bleu.score - 48.892302243490086).abs() < 1e-9); // sacrebleu.corpus_bleu
//! assert!(sentence_bleu("hello", &["hello"]).unwrap().score > 99.999);
//! assert_eq!(token_f1("the 30 days", "30 days"), 1.0);
//! let rl = RougeScorer::new(true).rouge_l("cats running", "the cat runs");
//! assert!(rl.fmeasure > 0.7);
//! ```

#![warn(missing_docs)]

mod bleu;
mod chrf;
mod error;
mod perplexity;
mod porter;
mod report;
mod rouge;
mod text;

pub use bleu::{Bleu, BleuConfig, BleuScore, BleuTokenizer, Smoothing, corpus_bleu, sentence_bleu};
pub use chrf::{Chrf, ChrfConfig, ChrfScore, corpus_chrf, sentence_chrf};
pub use error::{EvalError, Result};
pub use perplexity::{PerplexityAccumulator, perplexity};
pub use porter::porter_stem;
pub use report::{Report, Sample, SampleScores};
pub use rouge::{RougeScore, RougeScorer};
pub use text::{
    contains_answer, exact_match, exact_match_multi, normalize_answer, token_f1, token_f1_multi,
};
