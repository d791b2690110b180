//! # kiln-lora
//!
//! LoRA adapters (Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", 2021) and
//! QLoRA (Dettmers et al., 2023), compatible with Hugging Face PEFT: the same
//! `adapter_config.json` and `adapter_model.safetensors`, the same rules for which modules an
//! adapter targets (`target_modules` as names or a regex, `layers_to_transform`, `rank_pattern`,
//! `alpha_pattern`, rsLoRA), the same initialisation. Options Kiln does not implement are refused.
//!
//! The crate knows no model: a model crate lists its linear modules ([`LinearModule`]) and applies
//! [`LoraWeights`] where its projections are computed (kiln-llama does so on both engines).
//!
//! ```no_run
//! let adapter = kiln_lora::LoraAdapter::load("my-adapter")?;
//! for (module, w) in &adapter.modules {
//!     println!("{module}: rank {} scaling {}", w.r, w.scaling);
//! }
//! # Ok::<(), kiln_lora::Error>(())
//! ```

mod adapter;
pub mod config;
mod error;
mod federated;
mod io;
pub mod train;

pub use adapter::{
    CONFIG_FILE, CONFIG_METADATA, LinearModule, LoraAdapter, LoraWeights, WEIGHTS_FILE,
};
pub use config::{LoraConfig, ModuleLora, TargetModules};
pub use error::{Error, Result};
pub use federated::average;
pub use io::write_atomic;
