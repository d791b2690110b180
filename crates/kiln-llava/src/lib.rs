//! # kiln-llava
//!
//! LLaVA (Liu et al., "Visual Instruction Tuning", 2023; transformers'
//! `LlavaForConditionalGeneration`) composed from Kiln's own pieces: kiln-clip's CLIP vision tower
//! gives patch features from one or more of its layers, a two-layer projector maps them into the
//! language model's embedding space, and they replace the image placeholder tokens in kiln-llama's
//! decoder input.
//!
//! - [`LlavaConfig`]: `config.json` (`vision_config`, `text_config`, `image_token_index`,
//!   `vision_feature_layer` as one layer or a list, `vision_feature_select_strategy`,
//!   `projector_hidden_act`, `multimodal_projector_bias`).
//! - [`LlavaModel`]: loaded from a Hugging Face LLaVA safetensors directory in either key layout
//!   (`vision_tower.vision_model.*` / `language_model.model.*` as the llava-hf checkpoints, or the
//!   layouts transformers 5 writes).

pub mod config;
pub mod error;
pub mod generate;
pub mod model;
pub mod train;

pub use config::{FeatureSelect, LlavaConfig};
pub use error::{Error, Result};
pub use generate::LlavaGenerator;
pub use model::{LlavaModel, Projector};
