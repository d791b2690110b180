//! GGUF: reading llama.cpp's model files, dequantizing their tensors, and building a Hugging Face
//! `tokenizers::Tokenizer` from their `tokenizer.ggml.*` metadata.
//!
//! - [`GgufFile`] memory-maps and validates a file (v2/v3), exposing metadata ([`GgufValue`]) and
//!   tensors ([`GgufTensorInfo`], [`GgmlType`]).
//! - [`dequantize_into`] converts ggml data to `f32`, bit-exact with ggml's reference kernels.
//! - [`tokenizer_from_gguf`] reproduces llama.cpp's SentencePiece (`"llama"`) and byte-level BPE
//!   (`"gpt2"`) tokenizers.
//! - [`GgufWriter`] writes GGUF files (tests and fixtures), quantizing with [`quantize()`].
//!
//! Tensor layout: GGUF lists dimensions `ne[0]` (contiguous) first; [`GgufTensorInfo::shape`]
//! reverses them into PyTorch order, so a linear layer's weight is `[out_features, in_features]`
//! exactly as in the Hugging Face checkpoint. For Llama, llama.cpp's converter permutes the rows of
//! `attn_q.weight` and `attn_k.weight` (see the crate's loader for how that is undone).

pub mod dequant;
pub mod quantize;
pub mod reader;
pub mod tokenizer;
mod tokenizer_pre;
pub mod types;
pub mod value;
pub mod writer;

pub use dequant::dequantize_into;
pub use quantize::quantize;
pub use reader::{GgufFile, GgufTensorInfo};
pub use tokenizer::{GgufTokenizerInfo, tokenizer_from_gguf};
pub use types::GgmlType;
pub use value::GgufValue;
pub use writer::GgufWriter;
