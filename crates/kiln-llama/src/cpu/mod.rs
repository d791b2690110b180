//! A CPU engine for the Llama family that runs on Kiln's own kernels instead of burn: weights stay in
//! their stored format (Q4_0, Q4_1, Q8_0, NF4, F16, BF16 or F32 blocks, exactly the bytes of the GGUF
//! or safetensors file), matrix products run on the quantized blocks, and RMSNorm, RoPE, attention
//! over the cache and SwiGLU are loops over preallocated buffers.
//!
//! By default ([`Activations::Exact`]) the arithmetic is [`crate::Llama`]'s and transformers': f32
//! activations times dequantized weights, equal up to summation order. [`Activations::Int8`] is
//! llama.cpp's faster arithmetic for decode steps: activations quantized to 8 bits per 32-block and
//! integer dot products (`kiln_backend::kernels`).

/// How the CPU engine multiplies activations with block-quantized weights (Q4_0, Q4_1, Q8_0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Activations {
    /// f32 activations times the dequantized weights in registers: each product equals the
    /// dequantize-then-multiply reference (transformers on the same file) up to summation order.
    #[default]
    Exact,
    /// Decode steps (fewer than 16 rows) quantize each activation vector to 8 bits per 32-element
    /// block and use integer dot products (AVX-512 VNNI, AVX2), and the key/value cache holds f16,
    /// as llama.cpp does: faster (attention reads half the bytes), and different from the exact
    /// result by the activation and cache rounding (on SmolLM2 the logits move by up to about 1,
    /// which can change a greedy answer). Prefill keeps the exact GEMM path. On CPUs with AVX-512
    /// VNNI the block matrices also get a repacked copy (`QuantMatrix::pack`, their size again)
    /// that single-sequence decode streams faster than the GGUF layout.
    Int8,
}

impl std::str::FromStr for Activations {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "exact" | "f32" => Ok(Self::Exact),
            "int8" | "q8" => Ok(Self::Int8),
            other => Err(format!("unknown activations `{other}` (exact or int8)")),
        }
    }
}

mod attention;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod forward;
pub(crate) mod matmul;
mod pass;
mod team;

pub use forward::{BatchWork, CpuCache, CpuLlama, Probe};
