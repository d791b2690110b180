//! # Kiln
//!
//! Reusable Rust libraries that take LLaMA-family models into production. This facade re-exports the
//! workspace crates behind Cargo features, so a user takes only the pieces they need:
//!
//! | module            | crate          | feature          |
//! |-------------------|----------------|------------------|
//! | [`core`]          | kiln-core      | always (no burn) |
//! | `backend`         | kiln-backend   | `llama`          |
//! | `llama`           | kiln-llama     | `llama` (default)|
//! | `prompt`          | kiln-prompt    | `prompt` (no burn)|
//! | `lora`            | kiln-lora      | `lora`           |
//! | `eval`            | kiln-eval      | `eval` (no burn) |
//! | `clip`            | kiln-clip      | `clip`           |
//!
//! GPU backends: `wgpu` (Vulkan, Metal, DX12, or Mesa's software Vulkan) and `cuda`.
//! The serving crate joins the facade under the feature `serve` as it lands.
//!
//! ```no_run
//! # #[cfg(feature = "llama")] {
//! use std::sync::Arc;
//! use kiln::core::{ChatMessage, GenerationRequest, SamplingParams, TextGenerator};
//!
//! let options = kiln::llama::LoadOptions::default(); // cpu device, auto engine
//! let model: Arc<dyn TextGenerator> =
//!     Arc::new(kiln::llama::LlamaGenerator::load("SmolLM2-135M-Instruct.Q4_1.gguf", &options)?);
//! let answer = model.generate(
//!     &GenerationRequest::chat(vec![ChatMessage::user("What is the capital of France?")])
//!         .with_sampling(SamplingParams::greedy()),
//! )?;
//! println!("{}", answer.text);
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub use kiln_core as core;

#[cfg(feature = "llama")]
pub use kiln_backend as backend;

#[cfg(feature = "llama")]
pub use kiln_llama as llama;

#[cfg(feature = "prompt")]
pub use kiln_prompt as prompt;

#[cfg(feature = "lora")]
pub use kiln_lora as lora;

#[cfg(feature = "eval")]
pub use kiln_eval as eval;

#[cfg(feature = "clip")]
pub use kiln_clip as clip;
