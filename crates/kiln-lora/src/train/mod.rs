//! Training LoRA adapters: tracked factors for burn's autodiff, AdamW with PyTorch's semantics,
//! schedules, clipping, the loss on assistant tokens, and differential-privacy accounting (DP-SGD).

mod factors;
pub mod optim;
pub mod privacy;

pub use factors::{FactorGrads, StepFactors};
pub use optim::{AdamW, AdamWConfig, Schedule, clip_grad_norm, learning_rate};
