//! Model configuration: a serde mirror of Hugging Face's `config.json`, and the resolved
//! [`LlamaConfig`] the model runs with (also built from GGUF metadata).

use std::path::Path;

use serde::Deserialize;

use crate::{Error, Result};

/// RoPE frequency scaling.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    /// Plain RoPE.
    None,
    /// Llama 3.1 / 3.2 scaling (`rope_type: "llama3"`).
    Llama3 {
        /// Overall factor.
        factor: f32,
        /// Low-frequency factor.
        low_freq_factor: f32,
        /// High-frequency factor.
        high_freq_factor: f32,
        /// The context length the model was pre-trained with.
        original_max_position_embeddings: usize,
    },
    /// Linear position interpolation (`rope_type: "linear"`): positions divided by `factor`.
    Linear {
        /// The factor.
        factor: f32,
    },
    /// Per-frequency divisors given explicitly (GGUF's `rope_freqs.weight`).
    Factors(Vec<f32>),
}

/// The resolved configuration of a Llama-family model.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    /// Vocabulary size (rows of the embedding).
    pub vocab_size: usize,
    /// Model width.
    pub hidden_size: usize,
    /// Width of the MLP.
    pub intermediate_size: usize,
    /// Number of decoder layers.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention when fewer than query heads).
    pub num_key_value_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f32,
    /// RoPE base.
    pub rope_theta: f32,
    /// RoPE scaling.
    pub rope_scaling: RopeScaling,
    /// Context window.
    pub max_position_embeddings: usize,
    /// Whether the output projection shares the embedding matrix.
    pub tie_word_embeddings: bool,
    /// Bias on the q/k/v/o projections.
    pub attention_bias: bool,
    /// Bias on the MLP projections.
    pub mlp_bias: bool,
    /// Beginning-of-sequence id.
    pub bos_token_id: Option<u32>,
    /// End-of-sequence ids (Llama 3 has several).
    pub eos_token_ids: Vec<u32>,
}

impl LlamaConfig {
    /// Query heads per key/value head.
    #[must_use]
    pub fn group_size(&self) -> usize {
        self.num_attention_heads / self.num_key_value_heads.max(1)
    }

    /// Checks the dimensions are consistent.
    ///
    /// # Errors
    /// [`Error::Config`] naming the field.
    pub fn validate(&self, path: &str) -> Result<()> {
        let err = |message: String| {
            Err(Error::Config {
                path: path.to_string(),
                message,
            })
        };
        for (name, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_key_value_heads),
            ("head_dim", self.head_dim),
            ("max_position_embeddings", self.max_position_embeddings),
        ] {
            if v == 0 {
                return err(format!("`{name}` must be positive"));
            }
        }
        if !self
            .num_attention_heads
            .is_multiple_of(self.num_key_value_heads)
        {
            return err(format!(
                "`num_attention_heads` ({}) must be a multiple of `num_key_value_heads` ({})",
                self.num_attention_heads, self.num_key_value_heads
            ));
        }
        if !self.head_dim.is_multiple_of(2) {
            return err(format!(
                "`head_dim` ({}) must be even for RoPE",
                self.head_dim
            ));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 0.0) {
            return err(format!(
                "`rope_theta` must be positive, got {}",
                self.rope_theta
            ));
        }
        if let RopeScaling::Factors(f) = &self.rope_scaling
            && f.len() != self.head_dim / 2
        {
            return err(format!(
                "rope frequency factors have {} entries, expected head_dim/2 = {}",
                f.len(),
                self.head_dim / 2
            ));
        }
        Ok(())
    }

    /// Loads and resolves a Hugging Face `config.json`.
    ///
    /// # Errors
    /// [`Error::Io`], [`Error::Config`] for malformed JSON or missing fields,
    /// [`Error::UnsupportedArchitecture`] for a `model_type` other than `llama`.
    pub fn from_hf_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let hf: HfLlamaConfig = serde_json::from_str(&text).map_err(|e| Error::Config {
            path: path.display().to_string(),
            message: format!("malformed config: {e}"),
        })?;
        hf.resolve(&path.display().to_string())
    }

    /// Resolves a Hugging Face Llama config given as JSON (e.g. the `text_config` inside a LLaVA
    /// `config.json`); `path` names its file in errors.
    ///
    /// # Errors
    /// [`Error::Config`] for malformed or missing fields, [`Error::UnsupportedArchitecture`].
    pub fn from_hf_value(value: serde_json::Value, path: &str) -> Result<Self> {
        let hf: HfLlamaConfig = serde_json::from_value(value).map_err(|e| Error::Config {
            path: path.to_string(),
            message: format!("malformed config: {e}"),
        })?;
        hf.resolve(path)
    }
}

/// `eos_token_id` may be one id or a list.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// A single id.
    One(u32),
    /// Several ids.
    Many(Vec<u32>),
}

/// The `rope_scaling` / `rope_parameters` object.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct HfRopeParameters {
    /// `rope_type` (new name) or `type` (old name).
    #[serde(alias = "type")]
    pub rope_type: Option<String>,
    /// RoPE base (transformers 5 puts it here).
    pub rope_theta: Option<f32>,
    /// Scaling factor.
    pub factor: Option<f32>,
    /// Llama 3 low-frequency factor.
    pub low_freq_factor: Option<f32>,
    /// Llama 3 high-frequency factor.
    pub high_freq_factor: Option<f32>,
    /// Llama 3 pre-training context.
    pub original_max_position_embeddings: Option<usize>,
}

/// A serde mirror of a Llama `config.json`, in both the transformers 4 layout (`rope_theta`,
/// `rope_scaling`) and the transformers 5 layout (`rope_parameters`).
#[derive(Debug, Clone, Deserialize)]
pub struct HfLlamaConfig {
    /// `model_type`, `llama` for this crate.
    pub model_type: Option<String>,
    /// `architectures`.
    #[serde(default)]
    pub architectures: Vec<String>,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Model width.
    pub hidden_size: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Layers.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads; defaults to the query heads.
    pub num_key_value_heads: Option<usize>,
    /// Head width; defaults to `hidden_size / num_attention_heads`.
    pub head_dim: Option<usize>,
    /// RMSNorm epsilon.
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f32,
    /// RoPE base (transformers 4 layout).
    pub rope_theta: Option<f32>,
    /// RoPE scaling (transformers 4 layout).
    pub rope_scaling: Option<HfRopeParameters>,
    /// RoPE parameters (transformers 5 layout).
    pub rope_parameters: Option<HfRopeParameters>,
    /// Context window.
    #[serde(default = "default_ctx")]
    pub max_position_embeddings: usize,
    /// Tied embeddings.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Attention bias.
    #[serde(default)]
    pub attention_bias: bool,
    /// MLP bias.
    #[serde(default)]
    pub mlp_bias: bool,
    /// Activation; only `silu` is supported.
    pub hidden_act: Option<String>,
    /// BOS id.
    pub bos_token_id: Option<u32>,
    /// EOS id(s).
    pub eos_token_id: Option<OneOrMany>,
}

fn default_eps() -> f32 {
    1e-6
}
fn default_ctx() -> usize {
    2048
}

impl HfLlamaConfig {
    /// Resolves defaults and RoPE settings.
    ///
    /// # Errors
    /// [`Error::UnsupportedArchitecture`] or [`Error::Config`].
    pub fn resolve(&self, path: &str) -> Result<LlamaConfig> {
        let model_type = self.model_type.as_deref().unwrap_or("llama");
        if model_type != "llama" {
            return Err(Error::UnsupportedArchitecture {
                path: path.to_string(),
                architecture: model_type.to_string(),
                supported: "llama".to_string(),
            });
        }
        if let Some(act) = self.hidden_act.as_deref()
            && act != "silu"
        {
            return Err(Error::Config {
                path: path.to_string(),
                message: format!("`hidden_act` = {act:?} is not supported (only \"silu\")"),
            });
        }
        if self.num_attention_heads == 0 {
            return Err(Error::Config {
                path: path.to_string(),
                message: "`num_attention_heads` must be positive".into(),
            });
        }
        let rope = self
            .rope_parameters
            .clone()
            .or_else(|| self.rope_scaling.clone())
            .unwrap_or_default();
        let rope_theta = self.rope_theta.or(rope.rope_theta).unwrap_or(10_000.0);
        let rope_scaling = match rope.rope_type.as_deref() {
            None | Some("default") => RopeScaling::None,
            Some("llama3") => {
                let need = |name: &str, v: Option<f32>| {
                    v.ok_or_else(|| Error::Config {
                        path: path.to_string(),
                        message: format!("llama3 rope scaling lacks `{name}`"),
                    })
                };
                RopeScaling::Llama3 {
                    factor: need("factor", rope.factor)?,
                    low_freq_factor: need("low_freq_factor", rope.low_freq_factor)?,
                    high_freq_factor: need("high_freq_factor", rope.high_freq_factor)?,
                    original_max_position_embeddings: rope
                        .original_max_position_embeddings
                        .ok_or_else(|| Error::Config {
                            path: path.to_string(),
                            message: "llama3 rope scaling lacks `original_max_position_embeddings`"
                                .into(),
                        })?,
                }
            }
            Some("linear") => RopeScaling::Linear {
                factor: rope.factor.ok_or_else(|| Error::Config {
                    path: path.to_string(),
                    message: "linear rope scaling lacks `factor`".into(),
                })?,
            },
            Some(other) => {
                return Err(Error::Config {
                    path: path.to_string(),
                    message: format!(
                        "rope scaling type {other:?} is not supported (default, linear, llama3)"
                    ),
                });
            }
        };
        let cfg = LlamaConfig {
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_hidden_layers: self.num_hidden_layers,
            num_attention_heads: self.num_attention_heads,
            num_key_value_heads: self.num_key_value_heads.unwrap_or(self.num_attention_heads),
            head_dim: self
                .head_dim
                .unwrap_or(self.hidden_size / self.num_attention_heads),
            rms_norm_eps: self.rms_norm_eps,
            rope_theta,
            rope_scaling,
            max_position_embeddings: self.max_position_embeddings,
            tie_word_embeddings: self.tie_word_embeddings,
            attention_bias: self.attention_bias,
            mlp_bias: self.mlp_bias,
            bos_token_id: self.bos_token_id,
            eos_token_ids: match &self.eos_token_id {
                None => Vec::new(),
                Some(OneOrMany::One(id)) => vec![*id],
                Some(OneOrMany::Many(ids)) => ids.clone(),
            },
        };
        cfg.validate(path)?;
        Ok(cfg)
    }
}

/// The inverse frequencies of RoPE, `head_dim / 2` of them, with scaling applied.
#[must_use]
pub fn rope_inv_freq(cfg: &LlamaConfig) -> Vec<f32> {
    let half = cfg.head_dim / 2;
    let base: Vec<f32> = (0..half)
        .map(|i| {
            let exponent = (2 * i) as f64 / cfg.head_dim as f64;
            (1.0 / (cfg.rope_theta as f64).powf(exponent)) as f32
        })
        .collect();
    match &cfg.rope_scaling {
        RopeScaling::None => base,
        RopeScaling::Linear { factor } => base.iter().map(|f| f / factor).collect(),
        RopeScaling::Factors(div) => base.iter().zip(div).map(|(f, d)| f / d).collect(),
        RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        } => {
            // transformers' `_compute_llama3_parameters`.
            let old_ctx = *original_max_position_embeddings as f32;
            let low_freq_wavelen = old_ctx / low_freq_factor;
            let high_freq_wavelen = old_ctx / high_freq_factor;
            base.iter()
                .map(|&f| {
                    let wavelen = 2.0 * std::f32::consts::PI / f;
                    if wavelen > low_freq_wavelen {
                        f / factor
                    } else if wavelen < high_freq_wavelen {
                        f
                    } else {
                        let smooth = (old_ctx / wavelen - low_freq_factor)
                            / (high_freq_factor - low_freq_factor);
                        (1.0 - smooth) * f / factor + smooth * f
                    }
                })
                .collect()
        }
    }
}
