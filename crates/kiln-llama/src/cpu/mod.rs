//! A CPU engine for the Llama family that runs on Kiln's own kernels instead of burn: weights stay in
//! their stored format (Q4_0, Q4_1, Q8_0, F16, BF16 or F32 blocks, exactly the bytes of the GGUF or
//! safetensors file), matrix products run on the quantized blocks with activations quantized to 8 bits
//! (`kiln_backend::kernels`), and RMSNorm, RoPE, attention over the cache and SwiGLU are plain loops.
//!
//! The arithmetic is the same as [`crate::Llama`]'s (rotate-half RoPE, f32 accumulation); the only
//! difference is the 8-bit rounding of activations entering quantized matrices, as llama.cpp does.

#[cfg(target_arch = "x86_64")]
mod avx512;
mod forward;
mod matmul;

pub use forward::{BatchWork, CpuCache, CpuLlama};
