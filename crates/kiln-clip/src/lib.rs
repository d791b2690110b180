//! # kiln-clip
//!
//! CLIP for Kiln. This first part is the image side of the input pipeline:
//!
//! - [`preprocess::load_image`]: decode a file through the `image` crate and convert it to RGB the way
//!   `PIL.Image.open(path)` followed by transformers' `convert_to_rgb` does (transparency composited onto
//!   white with Pillow's integer arithmetic, 16-bit grayscale clipped to 255, no EXIF transpose).
//! - [`preprocess::preprocess`]: the PIL-based `CLIPImageProcessor` (`use_fast=False`, in transformers 5.x
//!   `CLIPImageProcessorPil`): Pillow's fixed-point bicubic (or bilinear) resize of the shortest edge,
//!   center crop with zero padding, rescale and normalize, returning a CHW `f32` tensor.
//!
//! The text side:
//!
//! - [`tokenizer::ClipTokenizer`]: CLIP's byte-level BPE tokenizer, identical to transformers'
//!   `CLIPTokenizer` (BOS 49406, EOS 49407, 77-token context with truncation and padding).
//!
//! The crate does not depend on a tensor library.

pub mod preprocess;
pub mod tokenizer;

pub use preprocess::{
    ClipError, PreprocessConfig, Resample, RgbImage, Size, load_image, preprocess,
};
pub use tokenizer::{ClipTokenizer, Padding};
