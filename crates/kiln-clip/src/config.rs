//! CLIP configuration: a serde mirror of Hugging Face's `config.json` (`CLIPConfig` with its
//! `text_config` and `vision_config`, or a bare `CLIPVisionConfig` / `CLIPTextConfig`), with the
//! defaults transformers applies to absent fields, and checks that name the field at fault.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{ClipError, Result};

/// The MLP activation (`hidden_act`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// `x * sigmoid(1.702 x)`, the original CLIP's.
    QuickGelu,
    /// The exact (erf) GELU.
    Gelu,
    /// The tanh approximation of GELU (`gelu_new`, `gelu_pytorch_tanh`).
    #[serde(alias = "gelu_new", alias = "gelu_pytorch_tanh", alias = "gelu_fast")]
    GeluTanh,
    /// `max(x, 0)`.
    Relu,
}

impl Activation {
    /// The name transformers uses in `hidden_act`.
    #[must_use]
    pub fn hf_name(self) -> &'static str {
        match self {
            Activation::QuickGelu => "quick_gelu",
            Activation::Gelu => "gelu",
            Activation::GeluTanh => "gelu_pytorch_tanh",
            Activation::Relu => "relu",
        }
    }
}

fn quick_gelu() -> Activation {
    Activation::QuickGelu
}
fn eps() -> f64 {
    1e-5
}
fn projection() -> usize {
    512
}

/// The text tower (`CLIPTextConfig`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextConfig {
    /// Vocabulary size.
    #[serde(default = "TextConfig::d_vocab")]
    pub vocab_size: usize,
    /// Width of the transformer.
    #[serde(default = "TextConfig::d_hidden")]
    pub hidden_size: usize,
    /// Width of the MLP.
    #[serde(default = "TextConfig::d_inter")]
    pub intermediate_size: usize,
    /// Output width of `text_projection` (the top-level `projection_dim` wins in a `CLIPConfig`).
    #[serde(default = "projection")]
    pub projection_dim: usize,
    /// Number of layers.
    #[serde(default = "TextConfig::d_layers")]
    pub num_hidden_layers: usize,
    /// Attention heads.
    #[serde(default = "TextConfig::d_heads")]
    pub num_attention_heads: usize,
    /// Context length (77 for CLIP).
    #[serde(default = "TextConfig::d_positions")]
    pub max_position_embeddings: usize,
    /// MLP activation.
    #[serde(default = "quick_gelu")]
    pub hidden_act: Activation,
    /// LayerNorm epsilon.
    #[serde(default = "eps")]
    pub layer_norm_eps: f64,
    /// Padding token.
    #[serde(default = "TextConfig::d_pad")]
    pub pad_token_id: Option<i64>,
    /// Start-of-text token.
    #[serde(default = "TextConfig::d_bos")]
    pub bos_token_id: Option<i64>,
    /// End-of-text token; the text is pooled at its first occurrence, or, when it is 2 (configs
    /// written before transformers 4.31), at the largest token id, as transformers does.
    #[serde(default = "TextConfig::d_eos")]
    pub eos_token_id: Option<i64>,
}

impl TextConfig {
    fn d_vocab() -> usize {
        49408
    }
    fn d_hidden() -> usize {
        512
    }
    fn d_inter() -> usize {
        2048
    }
    fn d_layers() -> usize {
        12
    }
    fn d_heads() -> usize {
        8
    }
    fn d_positions() -> usize {
        77
    }
    #[allow(clippy::unnecessary_wraps)]
    fn d_pad() -> Option<i64> {
        Some(1)
    }
    #[allow(clippy::unnecessary_wraps)]
    fn d_bos() -> Option<i64> {
        Some(49406)
    }
    #[allow(clippy::unnecessary_wraps)]
    fn d_eos() -> Option<i64> {
        Some(49407)
    }

    /// Whether the text is pooled at the largest id (legacy configs with `eos_token_id == 2`).
    #[must_use]
    pub fn pools_at_argmax(&self) -> bool {
        self.eos_token_id == Some(2) || self.eos_token_id.is_none()
    }

    fn validate(&self, at: &str) -> std::result::Result<(), String> {
        positive(at, "hidden_size", self.hidden_size)?;
        positive(at, "num_attention_heads", self.num_attention_heads)?;
        positive(at, "vocab_size", self.vocab_size)?;
        positive(at, "max_position_embeddings", self.max_position_embeddings)?;
        positive(at, "intermediate_size", self.intermediate_size)?;
        divides(at, self.hidden_size, self.num_attention_heads)?;
        if let Some(eos) = self.eos_token_id
            && !self.pools_at_argmax()
            && (eos < 0 || eos as usize >= self.vocab_size)
        {
            return Err(format!(
                "`{at}.eos_token_id` = {eos} is outside the vocabulary of {}",
                self.vocab_size
            ));
        }
        Ok(())
    }
}

/// The vision tower (`CLIPVisionConfig`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VisionConfig {
    /// Width of the transformer.
    #[serde(default = "VisionConfig::d_hidden")]
    pub hidden_size: usize,
    /// Width of the MLP.
    #[serde(default = "VisionConfig::d_inter")]
    pub intermediate_size: usize,
    /// Output width of `visual_projection` (the top-level `projection_dim` wins in a `CLIPConfig`).
    #[serde(default = "projection")]
    pub projection_dim: usize,
    /// Number of layers.
    #[serde(default = "VisionConfig::d_layers")]
    pub num_hidden_layers: usize,
    /// Attention heads.
    #[serde(default = "VisionConfig::d_heads")]
    pub num_attention_heads: usize,
    /// Input channels.
    #[serde(default = "VisionConfig::d_channels")]
    pub num_channels: usize,
    /// Side of the square input image.
    #[serde(default = "VisionConfig::d_image")]
    pub image_size: usize,
    /// Side of a square patch.
    #[serde(default = "VisionConfig::d_patch")]
    pub patch_size: usize,
    /// MLP activation.
    #[serde(default = "quick_gelu")]
    pub hidden_act: Activation,
    /// LayerNorm epsilon.
    #[serde(default = "eps")]
    pub layer_norm_eps: f64,
}

impl VisionConfig {
    fn d_hidden() -> usize {
        768
    }
    fn d_inter() -> usize {
        3072
    }
    fn d_layers() -> usize {
        12
    }
    fn d_heads() -> usize {
        12
    }
    fn d_channels() -> usize {
        3
    }
    fn d_image() -> usize {
        224
    }
    fn d_patch() -> usize {
        32
    }

    /// Patches per side.
    #[must_use]
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }

    /// Patches per image (without the class token).
    #[must_use]
    pub fn num_patches(&self) -> usize {
        self.grid() * self.grid()
    }

    fn validate(&self, at: &str) -> std::result::Result<(), String> {
        positive(at, "hidden_size", self.hidden_size)?;
        positive(at, "num_attention_heads", self.num_attention_heads)?;
        positive(at, "patch_size", self.patch_size)?;
        positive(at, "image_size", self.image_size)?;
        positive(at, "num_channels", self.num_channels)?;
        positive(at, "intermediate_size", self.intermediate_size)?;
        divides(at, self.hidden_size, self.num_attention_heads)?;
        if !self.image_size.is_multiple_of(self.patch_size) {
            return Err(format!(
                "`{at}.image_size` = {} is not a multiple of `{at}.patch_size` = {}",
                self.image_size, self.patch_size
            ));
        }
        Ok(())
    }
}

fn positive(at: &str, field: &str, v: usize) -> std::result::Result<(), String> {
    if v == 0 {
        Err(format!("`{at}.{field}` must be positive"))
    } else {
        Ok(())
    }
}

fn divides(at: &str, hidden: usize, heads: usize) -> std::result::Result<(), String> {
    if !hidden.is_multiple_of(heads) {
        Err(format!(
            "`{at}.hidden_size` = {hidden} is not divisible by `{at}.num_attention_heads` = {heads}"
        ))
    } else {
        Ok(())
    }
}

/// A full CLIP model (`CLIPConfig`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClipConfig {
    /// The text tower.
    pub text_config: TextConfig,
    /// The vision tower.
    pub vision_config: VisionConfig,
    /// Width of the shared embedding space.
    #[serde(default = "projection")]
    pub projection_dim: usize,
    /// Initial value of `logit_scale` (log of the inverse temperature).
    #[serde(default = "ClipConfig::d_scale")]
    pub logit_scale_init_value: f32,
}

/// The raw file: configs of transformers < 4.26 may carry `text_config_dict` / `vision_config_dict`.
#[derive(Deserialize)]
struct RawClipConfig {
    model_type: Option<String>,
    text_config: Option<serde_json::Value>,
    vision_config: Option<serde_json::Value>,
    text_config_dict: Option<serde_json::Value>,
    vision_config_dict: Option<serde_json::Value>,
    projection_dim: Option<usize>,
    logit_scale_init_value: Option<f32>,
}

impl ClipConfig {
    fn d_scale() -> f32 {
        2.6592
    }

    /// Parses a `config.json` of `model_type` `clip`; `path` names the file in errors.
    ///
    /// # Errors
    /// [`ClipError::Config`] naming the file and field.
    pub fn from_json(text: &str, path: &str) -> Result<Self> {
        let err = |message: String| ClipError::Config {
            path: path.to_string(),
            message,
        };
        let raw: RawClipConfig =
            serde_json::from_str(text).map_err(|e| err(format!("malformed config: {e}")))?;
        if let Some(mt) = &raw.model_type
            && mt != "clip"
        {
            return Err(err(format!(
                "`model_type` is {mt:?}; kiln-clip loads `clip` checkpoints"
            )));
        }
        let section = |main: Option<serde_json::Value>, legacy: Option<serde_json::Value>| {
            main.filter(|v| !v.is_null())
                .or(legacy.filter(|v| !v.is_null()))
                .unwrap_or_else(|| serde_json::json!({}))
        };
        let text_config: TextConfig =
            serde_json::from_value(section(raw.text_config, raw.text_config_dict))
                .map_err(|e| err(format!("`text_config`: {e}")))?;
        let vision_config: VisionConfig =
            serde_json::from_value(section(raw.vision_config, raw.vision_config_dict))
                .map_err(|e| err(format!("`vision_config`: {e}")))?;
        let config = ClipConfig {
            text_config,
            vision_config,
            projection_dim: raw.projection_dim.unwrap_or_else(projection),
            logit_scale_init_value: raw.logit_scale_init_value.unwrap_or_else(Self::d_scale),
        };
        config.validate().map_err(err)?;
        Ok(config)
    }

    /// Reads `config.json`.
    ///
    /// # Errors
    /// [`ClipError::Io`] or [`ClipError::Config`] naming the file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| ClipError::io(path, e))?;
        Self::from_json(&text, &path.display().to_string())
    }

    /// Checks the sizes; the message names the field.
    ///
    /// # Errors
    /// A description of the first inconsistency.
    pub fn validate(&self) -> std::result::Result<(), String> {
        self.text_config.validate("text_config")?;
        self.vision_config.validate("vision_config")?;
        positive("", "projection_dim", self.projection_dim)
            .map_err(|_| "`projection_dim` must be positive".to_string())
    }

    /// The `config.json` transformers writes for this model (with `architectures` and
    /// `model_type`), for checkpoints Kiln saves.
    #[must_use]
    pub fn to_hf_json(&self) -> serde_json::Value {
        let mut text = serde_json::to_value(&self.text_config).unwrap_or_default();
        let mut vision = serde_json::to_value(&self.vision_config).unwrap_or_default();
        text["model_type"] = "clip_text_model".into();
        text["hidden_act"] = self.text_config.hidden_act.hf_name().into();
        text["projection_dim"] = self.projection_dim.into();
        vision["model_type"] = "clip_vision_model".into();
        vision["hidden_act"] = self.vision_config.hidden_act.hf_name().into();
        vision["projection_dim"] = self.projection_dim.into();
        serde_json::json!({
            "architectures": ["CLIPModel"],
            "model_type": "clip",
            "projection_dim": self.projection_dim,
            "logit_scale_init_value": self.logit_scale_init_value,
            "text_config": text,
            "vision_config": vision,
        })
    }
}

impl VisionConfig {
    /// Parses a bare `CLIPVisionConfig` (as LLaVA's `vision_config` embeds it).
    ///
    /// # Errors
    /// [`ClipError::Config`] naming `path` and the field.
    pub fn from_value(value: serde_json::Value, path: &str) -> Result<Self> {
        let err = |message: String| ClipError::Config {
            path: path.to_string(),
            message,
        };
        let config: VisionConfig =
            serde_json::from_value(value).map_err(|e| err(format!("`vision_config`: {e}")))?;
        config.validate("vision_config").map_err(err)?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_vit_b_32() {
        let c = ClipConfig::from_json(r#"{"model_type":"clip"}"#, "c.json").unwrap();
        assert_eq!(c.vision_config.patch_size, 32);
        assert_eq!(c.vision_config.num_patches(), 49);
        assert_eq!(c.text_config.max_position_embeddings, 77);
        assert_eq!(c.projection_dim, 512);
        assert!(!c.text_config.pools_at_argmax());
    }

    #[test]
    fn legacy_dict_sections_and_errors_name_the_field() {
        let c = ClipConfig::from_json(
            r#"{"text_config":null,"text_config_dict":{"hidden_size":64,"num_attention_heads":4,"eos_token_id":2}}"#,
            "c.json",
        )
        .unwrap();
        assert_eq!(c.text_config.hidden_size, 64);
        assert!(c.text_config.pools_at_argmax());
        let e = ClipConfig::from_json(
            r#"{"vision_config":{"image_size":30,"patch_size":8}}"#,
            "c.json",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("c.json") && e.contains("vision_config.image_size"),
            "{e}"
        );
        let e = ClipConfig::from_json(r#"{"text_config":{"hidden_act":"swish"}}"#, "c.json")
            .unwrap_err()
            .to_string();
        assert!(e.contains("text_config") && e.contains("swish"), "{e}");
        let e = ClipConfig::from_json(r#"{"model_type":"siglip"}"#, "c.json")
            .unwrap_err()
            .to_string();
        assert!(e.contains("siglip"), "{e}");
    }
}
