//! CLIP image preprocessing, identical to transformers' PIL-based `CLIPImageProcessor`.
//!
//! The reference is `CLIPImageProcessor(use_fast=False)` (transformers 5.x: `CLIPImageProcessorPil`)
//! applied to `PIL.Image.open(path)`:
//!
//! 1. RGB conversion ([`load_image`]): transformers' `convert_to_rgb` composites any image with an alpha
//!    band or a `transparency` entry onto opaque white with `PIL.Image.alpha_composite`, and otherwise
//!    calls `convert("RGB")`. 16-bit grayscale PNGs open as mode `I;16` and convert by clipping each
//!    value to 255. The EXIF orientation is **not** applied (transformers only transposes in its own
//!    `load_image`, which the processor does not call on PIL images).
//! 2. Resize ([`resize`]): the short side becomes `shortest_edge`, the long side
//!    `int(shortest_edge * long / short)` (truncated), with Pillow's separable fixed-point filter on
//!    uint8 (22-bit coefficients, clip to 0..=255 after each pass, Pillow's pass order).
//! 3. Center crop ([`center_crop`]): offsets `(h - crop_h) // 2`, zero padding when the image is smaller.
//! 4. Rescale: `f32(u8 as f64 * rescale_factor)`, as numpy upcasts to float64 and casts back.
//! 5. Normalize: `(x - mean) / std` in `f32`, with `mean` and `std` rounded to `f32` first.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// OpenAI CLIP's per-channel mean (transformers' `OPENAI_CLIP_MEAN`).
pub const OPENAI_CLIP_MEAN: [f64; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// OpenAI CLIP's per-channel standard deviation (transformers' `OPENAI_CLIP_STD`).
pub const OPENAI_CLIP_STD: [f64; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];

pub use crate::decode::{decode_image, dynamic_to_rgb, load_image};
pub use crate::error::{ClipError, Result};

/// An 8-bit RGB image, row-major, 3 bytes per pixel (the array transformers gets from
/// `np.array(image.convert("RGB"))`).
#[derive(Clone, PartialEq, Eq)]
pub struct RgbImage {
    width: usize,
    height: usize,
    data: Vec<u8>,
}

impl fmt::Debug for RgbImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RgbImage")
            .field("width", &self.width)
            .field("height", &self.height)
            .finish_non_exhaustive()
    }
}

impl RgbImage {
    /// Wraps an interleaved RGB buffer of `width * height * 3` bytes.
    pub fn new(width: usize, height: usize, data: Vec<u8>) -> Result<Self> {
        let expected = width
            .checked_mul(height)
            .and_then(|n| n.checked_mul(3))
            .ok_or_else(|| ClipError::InvalidImage {
                reason: format!("{width}x{height} overflows"),
            })?;
        if data.len() != expected {
            return Err(ClipError::InvalidImage {
                reason: format!(
                    "{width}x{height} RGB needs {expected} bytes, got {}",
                    data.len()
                ),
            });
        }
        Ok(Self {
            width,
            height,
            data,
        })
    }

    /// Width in pixels.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> usize {
        self.height
    }

    /// The interleaved RGB bytes, row-major.
    pub fn as_raw(&self) -> &[u8] {
        &self.data
    }

    /// The buffer.
    pub fn into_raw(self) -> Vec<u8> {
        self.data
    }

    /// The pixel at column `x`, row `y`, or `None` outside the image.
    pub fn pixel(&self, x: usize, y: usize) -> Option<[u8; 3]> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let i = (y * self.width + x) * 3;
        Some([self.data[i], self.data[i + 1], self.data[i + 2]])
    }
}

/// The resize target, as `size` (or `crop_size`) in `preprocessor_config.json`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Size {
    /// A bare integer (older configs): a shortest edge for `size`, a square for `crop_size`.
    Edge(usize),
    /// Scale so the shorter side has this length, keeping the aspect ratio (long side truncated).
    ShortestEdge {
        /// The length of the shorter side after resizing.
        shortest_edge: usize,
    },
    /// An exact output size.
    HeightWidth {
        /// Output height.
        height: usize,
        /// Output width.
        width: usize,
    },
}

/// Pillow's resampling filters that this module implements (`resample` in the config: PIL's enum value).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Resample {
    /// `PIL.Image.BILINEAR` (2): triangle filter, support 1.
    Bilinear,
    /// `PIL.Image.BICUBIC` (3): cubic convolution with a = -0.5, support 2.
    Bicubic,
}

impl Resample {
    /// From PIL's integer code; `None` for filters not implemented here.
    pub fn from_pil(code: u32) -> Option<Self> {
        match code {
            2 => Some(Self::Bilinear),
            3 => Some(Self::Bicubic),
            _ => None,
        }
    }

    /// PIL's integer code.
    pub fn pil_code(self) -> u32 {
        match self {
            Self::Bilinear => 2,
            Self::Bicubic => 3,
        }
    }

    fn support(self) -> f64 {
        match self {
            Self::Bilinear => 1.0,
            Self::Bicubic => 2.0,
        }
    }

    fn filter(self, x: f64) -> f64 {
        let x = x.abs();
        match self {
            Self::Bilinear => {
                if x < 1.0 {
                    1.0 - x
                } else {
                    0.0
                }
            }
            Self::Bicubic => {
                const A: f64 = -0.5;
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
        }
    }
}

/// `preprocessor_config.json` of a CLIP checkpoint. Missing fields take the
/// `openai/clip-vit-base-patch32` values ([`PreprocessConfig::default`]); unknown fields are ignored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PreprocessConfig {
    /// Resize before cropping.
    pub do_resize: bool,
    /// The resize target (`{"shortest_edge": 224}`).
    pub size: Size,
    /// PIL's resampling code (3 = bicubic, 2 = bilinear).
    pub resample: u32,
    /// Center-crop after resizing.
    pub do_center_crop: bool,
    /// The crop size; must be `{"height", "width"}` (a `shortest_edge` value `n` means `n` x `n`).
    pub crop_size: Size,
    /// Multiply by `rescale_factor`.
    pub do_rescale: bool,
    /// The rescale factor (1/255).
    pub rescale_factor: f64,
    /// Subtract `image_mean` and divide by `image_std`.
    pub do_normalize: bool,
    /// Per-channel mean.
    pub image_mean: Vec<f64>,
    /// Per-channel standard deviation.
    pub image_std: Vec<f64>,
    /// Convert to RGB. [`load_image`] always converts (the model takes 3 channels); the field is kept
    /// for round-tripping the config.
    pub do_convert_rgb: bool,
}

impl Default for PreprocessConfig {
    fn default() -> Self {
        Self {
            do_resize: true,
            size: Size::ShortestEdge { shortest_edge: 224 },
            resample: 3,
            do_center_crop: true,
            crop_size: Size::HeightWidth {
                height: 224,
                width: 224,
            },
            do_rescale: true,
            rescale_factor: 1.0 / 255.0,
            do_normalize: true,
            image_mean: OPENAI_CLIP_MEAN.to_vec(),
            image_std: OPENAI_CLIP_STD.to_vec(),
            do_convert_rgb: true,
        }
    }
}

impl PreprocessConfig {
    /// Reads `preprocessor_config.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ClipError::ConfigIo {
            path: path.to_path_buf(),
            source,
        })?;
        let cfg: Self = serde_json::from_str(&text).map_err(|source| ClipError::ConfigParse {
            path: path.to_path_buf(),
            source,
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks the values the preprocessing uses.
    pub fn validate(&self) -> Result<()> {
        if self.do_resize {
            if Resample::from_pil(self.resample).is_none() {
                return Err(ClipError::InvalidConfig {
                    field: "resample",
                    reason: format!(
                        "PIL filter {} is not implemented (2 = bilinear, 3 = bicubic)",
                        self.resample
                    ),
                });
            }
            match self.size {
                Size::ShortestEdge { shortest_edge: 0 } | Size::Edge(0) => {
                    return Err(invalid("size", "shortest_edge must be positive"));
                }
                Size::HeightWidth { height, width } if height == 0 || width == 0 => {
                    return Err(invalid("size", "height and width must be positive"));
                }
                _ => {}
            }
            let edge = match self.size {
                Size::HeightWidth { height, width } => height.max(width),
                Size::ShortestEdge { shortest_edge: n } | Size::Edge(n) => n,
            };
            if edge > MAX_EDGE {
                return Err(invalid(
                    "size",
                    &format!("edges must be at most {MAX_EDGE}"),
                ));
            }
        }
        if self.do_center_crop {
            let (h, w) = self.crop_hw();
            if h == 0 || w == 0 {
                return Err(invalid("crop_size", "height and width must be positive"));
            }
            if h.max(w) > MAX_EDGE {
                return Err(invalid(
                    "crop_size",
                    &format!("edges must be at most {MAX_EDGE}"),
                ));
            }
        }
        if self.do_normalize {
            if self.image_mean.len() != 3 {
                return Err(invalid("image_mean", "needs 3 values (RGB)"));
            }
            if self.image_std.len() != 3 {
                return Err(invalid("image_std", "needs 3 values (RGB)"));
            }
            if self.image_std.iter().any(|&s| s == 0.0 || !s.is_finite()) {
                return Err(invalid("image_std", "values must be finite and non-zero"));
            }
        }
        if self.do_rescale && !self.rescale_factor.is_finite() {
            return Err(invalid("rescale_factor", "must be finite"));
        }
        Ok(())
    }

    fn crop_hw(&self) -> (usize, usize) {
        match self.crop_size {
            Size::HeightWidth { height, width } => (height, width),
            Size::ShortestEdge { shortest_edge: n } | Size::Edge(n) => (n, n),
        }
    }

    /// The `(height, width)` of [`preprocess`]'s output for an input of `height` x `width`.
    pub fn output_hw(&self, height: usize, width: usize) -> (usize, usize) {
        if self.do_center_crop {
            return self.crop_hw();
        }
        if self.do_resize {
            return resize_output_hw(height, width, self.size);
        }
        (height, width)
    }
}

fn invalid(field: &'static str, reason: &str) -> ClipError {
    ClipError::InvalidConfig {
        field,
        reason: reason.to_string(),
    }
}

/// transformers' `get_resize_output_image_size(..., default_to_square=False)`: the output
/// `(height, width)`.
pub fn resize_output_hw(height: usize, width: usize, size: Size) -> (usize, usize) {
    match size {
        Size::HeightWidth { height, width } => (height, width),
        Size::ShortestEdge { shortest_edge: n } | Size::Edge(n) => {
            let (short, long) = if width <= height {
                (width, height)
            } else {
                (height, width)
            };
            if short == 0 {
                return (height, width);
            }
            // Python: int(n * long / short), true division in float64 then truncation.
            let new_long = ((n * long) as f64 / short as f64) as usize;
            if width <= height {
                (new_long, n)
            } else {
                (n, new_long)
            }
        }
    }
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Pillow's `precompute_coeffs` followed by `normalize_coeffs_8bpc`: per output pixel, the first input
/// index, the number of taps, and the fixed-point weights (`ksize` per output pixel).
struct Coeffs {
    bounds: Vec<(usize, usize)>,
    ksize: usize,
    kk: Vec<i32>,
}

fn precompute_coeffs(in_size: usize, out_size: usize, filter: Resample) -> Coeffs {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut kk = vec![0i32; out_size * ksize];
    let mut k = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // C's (int) truncates toward zero, as `as i64` does.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let xmax = xmax.saturating_sub(xmin);
        let mut ww = 0.0;
        for (x, kx) in k.iter_mut().enumerate().take(xmax) {
            let w = filter.filter((x as f64 + xmin as f64 - center + 0.5) * ss);
            *kx = w;
            ww += w;
        }
        let row = &mut kk[xx * ksize..(xx + 1) * ksize];
        for (x, kx) in k.iter().enumerate().take(xmax) {
            let v = if ww != 0.0 { kx / ww } else { *kx };
            let scaled = v * f64::from(1u32 << PRECISION_BITS);
            row[x] = if v < 0.0 {
                (-0.5 + scaled) as i32
            } else {
                (0.5 + scaled) as i32
            };
        }
        bounds.push((xmin, xmax));
    }
    Coeffs { bounds, ksize, kk }
}

#[inline]
fn clip8(v: i32) -> u8 {
    if v >= (1i32 << PRECISION_BITS << 8) {
        255
    } else if v <= 0 {
        0
    } else {
        (v >> PRECISION_BITS) as u8
    }
}

/// Pillow's `Image.resize((width, height), filter)` on an 8-bit RGB image: the separable fixed-point
/// resampler of `libImaging/Resample.c` (Pillow 13), each pass rounded and clipped to uint8, in
/// Pillow's pass order (vertical first only when the height shrinks by more than twice the width's
/// shrink).
pub fn resize(img: &RgbImage, width: usize, height: usize, filter: Resample) -> Result<RgbImage> {
    if width == 0 || height == 0 || img.width == 0 || img.height == 0 {
        return Err(ClipError::InvalidImage {
            reason: format!(
                "cannot resize {}x{} to {width}x{height}",
                img.width, img.height
            ),
        });
    }
    // Pillow (libImaging/Resample.c, ImagingResampleInner) runs the vertical pass first when the height
    // shrinks by more than twice as many pixels as the width does; otherwise horizontal first. The
    // order changes the uint8 rounding between the passes, so it is replicated.
    let (in_w, in_h) = (img.width as i64, img.height as i64);
    let (dw, dh) = (in_w - width as i64, in_h - height as i64);
    let horizontal_first = !(dh > 0 && dh > dw * 2);
    let mut cur = img.clone();
    if horizontal_first {
        if width != cur.width {
            cur = resample_horizontal(&cur, width, filter);
        }
        if height != cur.height {
            cur = resample_vertical(&cur, height, filter);
        }
    } else {
        if height != cur.height {
            cur = resample_vertical(&cur, height, filter);
        }
        if width != cur.width {
            cur = resample_horizontal(&cur, width, filter);
        }
    }
    Ok(cur)
}

fn resample_horizontal(img: &RgbImage, out_w: usize, filter: Resample) -> RgbImage {
    let c = precompute_coeffs(img.width, out_w, filter);
    let mut out = vec![0u8; out_w * img.height * 3];
    let half = 1i32 << (PRECISION_BITS - 1);
    for y in 0..img.height {
        let row = &img.data[y * img.width * 3..(y + 1) * img.width * 3];
        let orow = &mut out[y * out_w * 3..(y + 1) * out_w * 3];
        for (xx, &(xmin, xmax)) in c.bounds.iter().enumerate() {
            let k = &c.kk[xx * c.ksize..xx * c.ksize + xmax];
            let mut ss = [half; 3];
            for (x, &kx) in k.iter().enumerate() {
                let p = &row[(xmin + x) * 3..(xmin + x) * 3 + 3];
                for ch in 0..3 {
                    ss[ch] += i32::from(p[ch]) * kx;
                }
            }
            for ch in 0..3 {
                orow[xx * 3 + ch] = clip8(ss[ch]);
            }
        }
    }
    RgbImage {
        width: out_w,
        height: img.height,
        data: out,
    }
}

fn resample_vertical(img: &RgbImage, out_h: usize, filter: Resample) -> RgbImage {
    let c = precompute_coeffs(img.height, out_h, filter);
    let stride = img.width * 3;
    let mut out = vec![0u8; stride * out_h];
    let half = 1i32 << (PRECISION_BITS - 1);
    let mut acc = vec![0i32; stride];
    for (yy, &(ymin, ymax)) in c.bounds.iter().enumerate() {
        let k = &c.kk[yy * c.ksize..yy * c.ksize + ymax];
        acc.iter_mut().for_each(|a| *a = half);
        for (y, &ky) in k.iter().enumerate() {
            let row = &img.data[(ymin + y) * stride..(ymin + y + 1) * stride];
            for (a, &p) in acc.iter_mut().zip(row) {
                *a += i32::from(p) * ky;
            }
        }
        for (o, &a) in out[yy * stride..(yy + 1) * stride].iter_mut().zip(&acc) {
            *o = clip8(a);
        }
    }
    RgbImage {
        width: img.width,
        height: out_h,
        data: out,
    }
}

/// transformers' `center_crop`: top/left offsets `(h - crop_h) // 2` (floor division), and when the
/// image is smaller than the crop, zero padding with the image placed at `ceil((new - old) / 2)`.
pub fn center_crop(img: &RgbImage, crop_h: usize, crop_w: usize) -> RgbImage {
    let (h, w) = (img.height as i64, img.width as i64);
    let (ch, cw) = (crop_h as i64, crop_w as i64);
    let top = (h - ch).div_euclid(2);
    let left = (w - cw).div_euclid(2);
    // Padded canvas of max(crop, orig) with the image at (top_pad, left_pad).
    let new_h = ch.max(h);
    let new_w = cw.max(w);
    let top_pad = (new_h - h + 1) / 2;
    let left_pad = (new_w - w + 1) / 2;
    let (top, left) = if top >= 0 && left >= 0 && top + ch <= h && left + cw <= w {
        (top, left)
    } else {
        (top + top_pad, left + left_pad)
    };
    // The crop window in canvas coordinates, clamped to the canvas as numpy slicing does.
    let (y0, y1) = (top.max(0), (top + ch).min(new_h));
    let (x0, x1) = (left.max(0), (left + cw).min(new_w));
    let (out_h, out_w) = ((y1 - y0).max(0) as usize, (x1 - x0).max(0) as usize);
    // The image sits at (top_pad, left_pad) on the canvas; both are 0 when no padding is needed.
    let (oy, ox) = (top_pad, left_pad);
    let mut out = vec![0u8; out_h * out_w * 3];
    for y in 0..out_h {
        let sy = y0 + y as i64 - oy;
        if sy < 0 || sy >= h {
            continue;
        }
        for x in 0..out_w {
            let sx = x0 + x as i64 - ox;
            if sx < 0 || sx >= w {
                continue;
            }
            let si = (sy as usize * img.width + sx as usize) * 3;
            let di = (y * out_w + x) * 3;
            out[di..di + 3].copy_from_slice(&img.data[si..si + 3]);
        }
    }
    RgbImage {
        width: out_w,
        height: out_h,
        data: out,
    }
}

/// The largest intermediate resized image accepted (pixels, 4096 x 4096): an extreme aspect ratio
/// (e.g. 1 x 100000) or a huge `size` would otherwise ask for gigabytes and seconds of resampling
/// before the crop (found by the `preprocessor_config` fuzz target).
pub const MAX_RESIZED_PIXELS: usize = 1 << 24;

/// The largest `size` or `crop_size` edge a preprocessor config may ask for.
pub const MAX_EDGE: usize = 4096;

/// The uint8 image after resize and center crop: what the processor holds before rescaling.
pub fn resize_and_crop(img: &RgbImage, cfg: &PreprocessConfig) -> Result<RgbImage> {
    cfg.validate()?;
    let mut cur = if cfg.do_resize {
        let (h, w) = resize_output_hw(img.height, img.width, cfg.size);
        if h.saturating_mul(w) > MAX_RESIZED_PIXELS {
            return Err(ClipError::InvalidImage {
                reason: format!(
                    "{}x{} would resize to {w}x{h}, over {MAX_RESIZED_PIXELS} pixels",
                    img.width, img.height
                ),
            });
        }
        let filter = Resample::from_pil(cfg.resample)
            .ok_or_else(|| invalid("resample", "filter not implemented"))?;
        if (h, w) == (img.height, img.width) {
            img.clone()
        } else {
            resize(img, w, h, filter)?
        }
    } else {
        img.clone()
    };
    if cfg.do_center_crop {
        let (ch, cw) = cfg.crop_hw();
        cur = center_crop(&cur, ch, cw);
    }
    Ok(cur)
}

/// The per-channel `f32` value of each uint8 level after rescale and normalize, computed as numpy does
/// (`f32(v as f64 * rescale_factor)`, then `(x - f32(mean)) / f32(std)` in `f32`).
pub fn value_table(cfg: &PreprocessConfig) -> [[f32; 256]; 3] {
    let mut t = [[0f32; 256]; 3];
    for (c, row) in t.iter_mut().enumerate() {
        for (v, out) in row.iter_mut().enumerate() {
            let mut x = if cfg.do_rescale {
                (v as f64 * cfg.rescale_factor) as f32
            } else {
                v as f32
            };
            if cfg.do_normalize {
                let mean = cfg.image_mean.get(c).copied().unwrap_or(0.0) as f32;
                let std = cfg.image_std.get(c).copied().unwrap_or(1.0) as f32;
                x = (x - mean) / std;
            }
            *out = x;
        }
    }
    t
}

/// Preprocesses an RGB image to a CHW `f32` tensor `[3, H, W]` (flattened), identical to
/// transformers' PIL-based `CLIPImageProcessor` `pixel_values[0]`.
pub fn preprocess(img: &RgbImage, cfg: &PreprocessConfig) -> Result<Vec<f32>> {
    let cropped = resize_and_crop(img, cfg)?;
    let table = value_table(cfg);
    let plane = cropped.width * cropped.height;
    let mut out = vec![0f32; 3 * plane];
    for (i, p) in cropped.data.chunks_exact(3).enumerate() {
        for c in 0..3 {
            out[c * plane + i] = table[c][p[c] as usize];
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_size_rule() {
        let s = Size::ShortestEdge { shortest_edge: 224 };
        assert_eq!(resize_output_hw(333, 500, s), (224, 336));
        assert_eq!(resize_output_hw(500, 333, s), (336, 224));
        assert_eq!(resize_output_hw(50, 1000, s), (224, 4480));
        assert_eq!(resize_output_hw(300, 451, s), (224, 336));
    }

    #[test]
    fn crop_pads_small_images() {
        let img = RgbImage::new(2, 1, vec![1, 2, 3, 4, 5, 6]).expect("buffer");
        let c = center_crop(&img, 3, 4);
        assert_eq!((c.width(), c.height()), (4, 3));
        assert_eq!(c.pixel(1, 1), Some([1, 2, 3]));
        assert_eq!(c.pixel(2, 1), Some([4, 5, 6]));
        assert_eq!(c.pixel(0, 0), Some([0, 0, 0]));
    }

    #[test]
    fn config_defaults_and_parse() {
        let cfg: PreprocessConfig = serde_json::from_str(
            r#"{"crop_size": 224, "size": {"shortest_edge": 224}, "do_center_crop": true,
                "image_processor_type": "CLIPImageProcessor"}"#,
        )
        .expect("config");
        assert_eq!(cfg.crop_hw(), (224, 224));
        assert_eq!(cfg.resample, 3);
    }
}
