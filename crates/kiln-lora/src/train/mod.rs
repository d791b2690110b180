//! Training LoRA adapters: tracked factors for burn's autodiff, AdamW with PyTorch's semantics,
//! schedules, clipping, and the loss on assistant tokens.

mod factors;
pub mod optim;

pub use factors::{FactorGrads, StepFactors};
pub use optim::{AdamW, AdamWConfig, Schedule, clip_grad_norm, learning_rate};
