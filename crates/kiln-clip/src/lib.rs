//! # kiln-clip
//!
//! CLIP for Kiln: a vision and a text encoder that load Hugging Face `CLIPModel` checkpoints and
//! match transformers, the input pipeline that feeds them, and contrastive training.
//!
//! - [`config::ClipConfig`]: `config.json` (text and vision towers), with transformers' defaults.
//! - [`model::ClipModel`]: the two towers on burn (CPU through flex, GPUs through wgpu or CUDA),
//!   loaded from safetensors or initialised fresh.
//! - [`preprocess::load_image`] and [`preprocess::preprocess`]: the PIL-based `CLIPImageProcessor`
//!   (`use_fast=False`), bit-exact on PNG input.
//! - [`tokenizer::ClipTokenizer`]: CLIP's byte-level BPE tokenizer, identical to transformers'
//!   `CLIPTokenizer` (BOS 49406, EOS 49407, 77-token context with truncation and padding).
//!
//! ```no_run
//! # fn main() -> kiln_clip::Result<()> {
//! let device = kiln_backend::DeviceSpec::Cpu.device().expect("cpu");
//! let clip = kiln_clip::Clip::open("models/clip-vit-base-patch32", &device)?;
//! let image = kiln_clip::load_image("cat.png")?;
//! let ranked = clip.zero_shot(&image, &["cat", "dog"], "a photo of a {}")?;
//! println!("{} ({:.3})", ranked[0].label, ranked[0].probability);
//! # Ok(())
//! # }
//! ```

pub mod clip;
pub mod config;
pub mod decode;
pub mod error;
pub mod fashion_mnist;
pub mod load;
pub mod lora;
pub mod model;
pub mod orientation;
pub mod preprocess;
pub mod save;
pub mod tokenizer;
pub mod train;

pub use clip::{Clip, LabelScore};
pub use config::{Activation, ClipConfig, TextConfig, VisionConfig};
pub use decode::{decode_image_upright, load_image_upright};
pub use error::{ClipError, Result};
pub use model::{ClipModel, TokenBatch};
pub use preprocess::{PreprocessConfig, Resample, RgbImage, Size, load_image, preprocess};
pub use tokenizer::{ClipTokenizer, Padding};
