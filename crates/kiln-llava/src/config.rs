//! LLaVA configuration: a serde mirror of transformers' `LlavaConfig`.

use std::path::Path;

use kiln_clip::{Activation, VisionConfig};
use kiln_llama::LlamaConfig;
use serde::Deserialize;

use crate::{Error, Result};

/// Which vision tokens become image features (`vision_feature_select_strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeatureSelect {
    /// Drop the class token (`"default"`).
    Default,
    /// Keep every token (`"full"`).
    Full,
}

/// A resolved LLaVA configuration.
#[derive(Debug, Clone)]
pub struct LlavaConfig {
    /// The CLIP vision tower.
    pub vision: VisionConfig,
    /// The language model.
    pub text: LlamaConfig,
    /// The placeholder token id that image features replace.
    pub image_token_id: u32,
    /// Vision layers whose outputs are concatenated, as indices into transformers'
    /// `hidden_states` (negative counts from the end: -1 is the last layer).
    pub feature_layers: Vec<i64>,
    /// Which tokens are kept.
    pub select: FeatureSelect,
    /// The projector's activation.
    pub projector_act: Activation,
    /// Whether the projector's linear layers have biases.
    pub projector_bias: bool,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(i64),
    Many(Vec<i64>),
}

#[derive(Deserialize)]
struct Raw {
    model_type: Option<String>,
    vision_config: Option<serde_json::Value>,
    text_config: Option<serde_json::Value>,
    image_token_index: Option<u32>,
    image_token_id: Option<u32>,
    vision_feature_layer: Option<OneOrMany>,
    vision_feature_select_strategy: Option<String>,
    projector_hidden_act: Option<String>,
    multimodal_projector_bias: Option<bool>,
}

impl LlavaConfig {
    /// Reads `config.json`.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Config`] naming the file and field.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_json(&text, &path.display().to_string())
    }

    /// Parses a LLaVA `config.json`; `path` names the file in errors.
    ///
    /// # Errors
    /// [`Error::Config`] naming the field.
    pub fn from_json(text: &str, path: &str) -> Result<Self> {
        let err = |message: String| Error::Config {
            path: path.to_string(),
            message,
        };
        let raw: Raw =
            serde_json::from_str(text).map_err(|e| err(format!("malformed config: {e}")))?;
        if let Some(mt) = &raw.model_type
            && mt != "llava"
        {
            return Err(err(format!(
                "`model_type` is {mt:?}; kiln-llava loads `llava`"
            )));
        }
        let vision = raw
            .vision_config
            .ok_or_else(|| err("missing `vision_config`".into()))?;
        if let Some(mt) = vision.get("model_type").and_then(|m| m.as_str())
            && mt != "clip_vision_model"
        {
            return Err(err(format!(
                "`vision_config.model_type` is {mt:?}; kiln-llava supports CLIP vision towers"
            )));
        }
        let vision = VisionConfig::from_value(vision, path)?;
        let text = raw
            .text_config
            .ok_or_else(|| err("missing `text_config`".into()))?;
        if let Some(mt) = text.get("model_type").and_then(|m| m.as_str())
            && mt != "llama"
        {
            return Err(err(format!(
                "`text_config.model_type` is {mt:?}; kiln-llava supports Llama language models"
            )));
        }
        let text = LlamaConfig::from_hf_value(text, path)?;
        let image_token_id = raw
            .image_token_id
            .or(raw.image_token_index)
            .unwrap_or(32000);
        let feature_layers = match raw.vision_feature_layer {
            None => vec![-2],
            Some(OneOrMany::One(l)) => vec![l],
            Some(OneOrMany::Many(v)) if !v.is_empty() => v,
            Some(OneOrMany::Many(_)) => {
                return Err(err("`vision_feature_layer` is an empty list".into()));
            }
        };
        let states = vision.num_hidden_layers as i64 + 1;
        if let Some(bad) = feature_layers.iter().find(|&&l| l >= states || l < -states) {
            return Err(err(format!(
                "`vision_feature_layer` {bad} is outside the {states} hidden states of the vision tower"
            )));
        }
        let select = match raw.vision_feature_select_strategy.as_deref() {
            None | Some("default") => FeatureSelect::Default,
            Some("full") => FeatureSelect::Full,
            Some(other) => {
                return Err(err(format!(
                    "`vision_feature_select_strategy` {other:?} is not \"default\" or \"full\""
                )));
            }
        };
        let act = raw.projector_hidden_act.unwrap_or_else(|| "gelu".into());
        let projector_act: Activation =
            serde_json::from_value(serde_json::Value::String(act.clone()))
                .map_err(|_| err(format!("`projector_hidden_act` {act:?} is not supported")))?;
        if image_token_id as usize >= text.vocab_size {
            return Err(err(format!(
                "`image_token_index` {image_token_id} is outside the vocabulary of {}",
                text.vocab_size
            )));
        }
        Ok(Self {
            vision,
            text,
            image_token_id,
            feature_layers,
            select,
            projector_act,
            projector_bias: raw.multimodal_projector_bias.unwrap_or(true),
        })
    }

    /// Image features per image: the patches, plus the class token with [`FeatureSelect::Full`].
    #[must_use]
    pub fn tokens_per_image(&self) -> usize {
        self.vision.num_patches() + usize::from(self.select == FeatureSelect::Full)
    }
}
