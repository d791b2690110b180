//! The error type of kiln-eval.

/// Errors raised by the metrics when their input cannot be scored.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    /// A corpus metric was given no hypotheses.
    #[error("no hypotheses to score")]
    EmptyCorpus,
    /// Hypotheses and reference sets differ in number.
    #[error("{hypotheses} hypotheses but {references} reference sets")]
    LengthMismatch {
        /// Number of hypotheses.
        hypotheses: usize,
        /// Number of reference sets.
        references: usize,
    },
    /// A hypothesis has an empty list of references.
    #[error("hypothesis {index} has no references")]
    NoReferences {
        /// Index of the hypothesis in the corpus.
        index: usize,
    },
    /// Perplexity was asked for zero tokens.
    #[error("no log-probabilities to compute a perplexity from")]
    NoTokens,
    /// A log-probability is NaN or +infinity.
    #[error("log-probability {index} is {value}, not a finite value or -inf")]
    InvalidLogprob {
        /// Position of the offending value.
        index: usize,
        /// The value itself.
        value: f64,
    },
    /// A metric parameter is out of range.
    #[error("invalid parameter `{name}`: {message}")]
    InvalidParameter {
        /// The parameter name.
        name: &'static str,
        /// Why it was refused.
        message: String,
    },
}

/// `Result` with [`EvalError`].
pub type Result<T> = std::result::Result<T, EvalError>;
