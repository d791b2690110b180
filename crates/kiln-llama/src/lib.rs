//! # kiln-llama
//!
//! The Llama family (Llama 2, 3, 3.1, 3.2, SmolLM2, TinyLlama, ...) on burn: RMSNorm, RoPE with
//! `rope_theta` and Llama 3 scaling, grouped-query attention, SwiGLU, tied or untied embeddings and a
//! KV cache kept outside the model.
//!
//! Checkpoints load from Hugging Face directories (safetensors, f32/f16/bf16, sharded or not) and from
//! GGUF files (F32, F16, BF16, Q4_0, Q4_1, Q8_0, K-quants; tokenizer, chat template and special tokens
//! from the metadata). [`LlamaGenerator`] implements kiln-core's [`kiln_core::TextGenerator`].
//!
//! ```no_run
//! use kiln_core::{ChatMessage, GenerationRequest, SamplingParams, TextGenerator};
//! // The default options: the CPU, with Kiln's kernels on the stored quantized weights.
//! let options = kiln_llama::LoadOptions::default();
//! let model = kiln_llama::LlamaGenerator::load("SmolLM2-135M-Instruct.Q4_1.gguf", &options)?;
//! let out = model.generate(
//!     &GenerationRequest::chat(vec![ChatMessage::user("What is the capital of France?")])
//!         .with_sampling(SamplingParams::greedy())
//!         .with_max_tokens(32),
//! )?;
//! println!("{}", out.text);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod assets;
mod batch;
mod cache;
pub mod config;
pub mod cpu;
mod engine;
mod error;
pub mod frozen;
mod generate;
pub mod gguf;
pub mod load;
pub mod lora;
pub mod merge;
pub mod model;
mod prefix;
pub mod prune;
pub mod sampling;
mod sequence;
mod special;
mod stop;
pub mod train;

pub use batch::LlamaBatch;
pub use cache::KvCache;
pub use config::{LlamaConfig, RopeScaling};
pub use cpu::Activations;
pub use engine::{EngineKind, LoadOptions, ModelCache};
pub use error::{Error, Result};
pub use generate::{LlamaGenerator, perplexity};
pub use kiln_lora;
pub use kiln_prompt::ChatTemplate;
pub use lora::{AdapterMix, LinearAdapter, LlamaAdapter, NoAdapter, Proj, Site};
pub use merge::{MergeDtype, MergeReport, Overrides, export_hf, merge_to_hf};
pub use model::Llama;
pub use prefix::PrefixCacheStats;
pub use special::SpecialTokens;
pub use stop::StopMatcher;
