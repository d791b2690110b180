//! Perplexity from per-token log-probabilities.

use serde::{Deserialize, Serialize};

use crate::error::{EvalError, Result};

/// Perplexity `exp(-mean(logprobs))` of natural-log token probabilities.
///
/// `-inf` (a token the model gave zero probability) yields `inf`; NaN and `+inf` are errors, and so
/// is an empty slice.
///
/// ```
/// let p = kiln_eval::perplexity(&[(0.5f64).ln(), (0.25f64).ln()]).unwrap();
/// assert!((p - 8f64.sqrt()).abs() < 1e-12);
/// ```
pub fn perplexity(logprobs: &[f64]) -> Result<f64> {
    let mut acc = PerplexityAccumulator::default();
    acc.add(logprobs)?;
    acc.perplexity()
}

/// Token-weighted perplexity over many sequences: add each sequence's log-probs, then read the
/// corpus perplexity `exp(total NLL / total tokens)`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PerplexityAccumulator {
    /// Sum of negative log-probabilities so far.
    pub nll: f64,
    /// Number of tokens so far.
    pub tokens: u64,
}

impl PerplexityAccumulator {
    /// Adds one sequence's natural-log token probabilities (all or nothing: on error nothing is added).
    pub fn add<T: Copy + Into<f64>>(&mut self, logprobs: &[T]) -> Result<()> {
        let mut nll = 0.0;
        for (index, &lp) in logprobs.iter().enumerate() {
            let value: f64 = lp.into();
            if value.is_nan() || value == f64::INFINITY {
                return Err(EvalError::InvalidLogprob { index, value });
            }
            nll -= value;
        }
        self.nll += nll;
        self.tokens += logprobs.len() as u64;
        Ok(())
    }

    /// Mean negative log-likelihood per token (nats).
    pub fn mean_nll(&self) -> Result<f64> {
        if self.tokens == 0 {
            return Err(EvalError::NoTokens);
        }
        Ok(self.nll / self.tokens as f64)
    }

    /// `exp(mean NLL)`.
    pub fn perplexity(&self) -> Result<f64> {
        Ok(self.mean_nll()?.exp())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_and_weighting() {
        assert_eq!(perplexity(&[]), Err(EvalError::NoTokens));
        assert!(matches!(
            perplexity(&[0.0, f64::NAN]),
            Err(EvalError::InvalidLogprob { index: 1, .. })
        ));
        assert_eq!(perplexity(&[f64::NEG_INFINITY]), Ok(f64::INFINITY));
        let mut acc = PerplexityAccumulator::default();
        acc.add(&[-1.0f32]).unwrap();
        acc.add(&[-2.0f32, -3.0]).unwrap();
        assert!((acc.perplexity().unwrap() - 2f64.exp()).abs() < 1e-12);
    }
}
