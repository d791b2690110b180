//! The green-list watermark of Kirchenbauer et al., "A Watermark for Large Language Models"
//! (ICML 2023, <https://arxiv.org/abs/2301.10226>), as a kiln-core [`LogitsProcessor`], and its
//! detector.
//!
//! At each step the previous token and a secret key seed a pseudo-random split of the vocabulary:
//! each token is "green" with probability `gamma` (here decided per token by a keyed hash, which
//! gives the same distribution as the paper's seeded permutation) and green tokens get `delta`
//! added to their logits. Detection counts green tokens among `T` scored tokens and returns the
//! one-proportion z-score `(g - gamma T) / sqrt(T gamma (1 - gamma))`; unwatermarked text scores
//! about 0. The first generated token has no previous generated token and is neither biased nor
//! scored, so generation and detection agree.

use std::sync::Arc;

use kiln_core::{LogitsProcessor, LogitsProcessorFactory, TokenVocabulary};

use crate::config::WatermarkConfig;

/// SplitMix64's finalizer: a fast, well-mixed 64-bit hash.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Whether `token` is green after `previous` under `key` and `gamma`.
#[must_use]
pub fn is_green(key: u64, gamma: f64, previous: u32, token: u32) -> bool {
    let seed = mix(key ^ mix(u64::from(previous).wrapping_add(0x9e37_79b9_7f4a_7c15)));
    let h = mix(seed ^ u64::from(token));
    // The top 53 bits as a uniform number in [0, 1).
    ((h >> 11) as f64) / ((1u64 << 53) as f64) < gamma
}

/// Biases green tokens while sampling.
#[derive(Debug, Clone, Copy)]
pub struct WatermarkProcessor {
    config: WatermarkConfig,
}

impl WatermarkProcessor {
    /// A processor with these parameters.
    #[must_use]
    pub fn new(config: WatermarkConfig) -> Self {
        Self { config }
    }
}

impl LogitsProcessor for WatermarkProcessor {
    fn process(&mut self, generated: &[u32], logits: &mut [f32]) -> kiln_core::Result<()> {
        let Some(&previous) = generated.last() else {
            return Ok(());
        };
        for (id, l) in logits.iter_mut().enumerate() {
            if l.is_finite() && is_green(self.config.key, self.config.gamma, previous, id as u32) {
                *l += self.config.delta;
            }
        }
        Ok(())
    }
}

/// Makes a watermark processor per request, chained after the request's own constraint (JSON
/// schema) when it has one: the constraint masks first, then green tokens are biased.
#[derive(Debug)]
pub struct WatermarkFactory {
    /// The watermark parameters.
    pub config: WatermarkConfig,
    /// The request's constraint, if any.
    pub inner: Option<Arc<dyn LogitsProcessorFactory>>,
}

struct Chain {
    first: Option<Box<dyn LogitsProcessor>>,
    watermark: WatermarkProcessor,
}

impl LogitsProcessor for Chain {
    fn process(&mut self, generated: &[u32], logits: &mut [f32]) -> kiln_core::Result<()> {
        if let Some(first) = &mut self.first {
            first.process(generated, logits)?;
        }
        self.watermark.process(generated, logits)
    }

    fn is_complete(&mut self, generated: &[u32]) -> bool {
        self.first
            .as_mut()
            .is_some_and(|f| f.is_complete(generated))
    }
}

impl LogitsProcessorFactory for WatermarkFactory {
    fn create(&self, vocab: &Arc<TokenVocabulary>) -> kiln_core::Result<Box<dyn LogitsProcessor>> {
        let first = self.inner.as_ref().map(|f| f.create(vocab)).transpose()?;
        Ok(Box::new(Chain {
            first,
            watermark: WatermarkProcessor::new(self.config),
        }))
    }
}

/// The outcome of detection.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Detection {
    /// Tokens scored (all but the first).
    pub scored_tokens: usize,
    /// Green tokens among them.
    pub green_tokens: usize,
    /// The z-score; 0 when fewer than 2 tokens.
    pub z_score: f64,
    /// Whether `z_score` is above the configured threshold.
    pub watermarked: bool,
}

/// Scores token ids for the watermark.
#[must_use]
pub fn detect(config: &WatermarkConfig, ids: &[u32]) -> Detection {
    let scored = ids.len().saturating_sub(1);
    let green = ids
        .windows(2)
        .filter(|w| is_green(config.key, config.gamma, w[0], w[1]))
        .count();
    let z = if scored == 0 {
        0.0
    } else {
        let t = scored as f64;
        (green as f64 - config.gamma * t) / (t * config.gamma * (1.0 - config.gamma)).sqrt()
    };
    Detection {
        scored_tokens: scored,
        green_tokens: green,
        z_score: z,
        watermarked: z > config.z_threshold,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A toy "model": uniform logits over 1000 tokens, argmax after the watermark bias with a
    /// pseudo-random tie-break, so watermarked output is all green and other output is not.
    #[test]
    fn watermarked_text_scores_high_and_plain_text_low() {
        let config = WatermarkConfig::default();
        let mut p = WatermarkProcessor::new(config);
        let mut ids = vec![7u32];
        for step in 0..200u64 {
            let mut logits: Vec<f32> = (0..1000u64)
                .map(|i| (mix(i ^ (step << 20)) % 1000) as f32 / 1000.0)
                .collect();
            p.process(&ids, &mut logits).unwrap();
            let best = logits
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(i, _)| i as u32)
                .unwrap();
            ids.push(best);
        }
        let d = detect(&config, &ids);
        assert!(d.watermarked && d.z_score > 10.0, "{d:?}");
        let plain: Vec<u32> = (0..200u64).map(|i| (mix(i) % 1000) as u32).collect();
        let d = detect(&config, &plain);
        assert!(d.z_score.abs() < 4.0, "{d:?}");
        // About gamma of the vocabulary is green.
        let green = (0..10_000).filter(|t| is_green(1, 0.25, 3, *t)).count();
        assert!((2200..2800).contains(&green), "{green}");
    }
}
