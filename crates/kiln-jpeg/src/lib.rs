//! JPEG decoding with libjpeg-turbo's arithmetic, so that decoded pixels equal Pillow's.
//!
//! Pillow decodes JPEG files with libjpeg-turbo: the accurate integer IDCT (`JDCT_ISLOW`), "fancy"
//! (triangular) chroma upsampling, and YCbCr to RGB conversion through 16-bit fixed-point tables.
//! Pure-Rust decoders (zune-jpeg, jpeg-decoder) differ from it by one or two levels in a few
//! percent of the samples, which is enough to move a CLIP embedding. This crate drives the libjpeg
//! decompressor vendored by `mozjpeg-sys` (libjpeg-turbo's decoder, built from source with `cc`,
//! no network and no assembler needed) through a small C shim with `setjmp` error recovery:
//! corrupt, truncated or unsupported data is an [`JpegError`], never a panic or an abort.
//!
//! What Pillow's `Image.open(path).convert("RGB")` gives for a JPEG is [`Jpeg::to_rgb`] of
//! [`decode`]:
//! - 1 component: grayscale, replicated to RGB;
//! - 3 components: YCbCr (or RGB when the file says so) converted to RGB by libjpeg;
//! - 4 components: CMYK (YCCK converted by libjpeg), read with Adobe's inverted polarity as
//!   Pillow's `CMYK;I` raw mode does, then Pillow's CMYK to RGB conversion.
//!
//! Baseline, extended (8-bit) and progressive files decode, with Huffman or arithmetic coding.
//! Lossless and 12-bit JPEG files are refused with [`JpegError::Unsupported`].
//!
//! ```no_run
//! let bytes = std::fs::read("photo.jpg")?;
//! let jpeg = kiln_jpeg::decode(&bytes)?;
//! let rgb: Vec<u8> = jpeg.to_rgb();
//! assert_eq!(rgb.len(), jpeg.width() * jpeg.height() * 3);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

mod ffi;

use std::ffi::{c_ulong, c_ulonglong};

// Links the libjpeg static library that the shim calls.
use mozjpeg_sys as _;

/// Pillow's decompression-bomb limit: images of more pixels raise `DecompressionBombError`
/// (twice `Image.MAX_IMAGE_PIXELS`).
pub const PILLOW_MAX_PIXELS: u64 = 2 * 89_478_485;

/// Errors of JPEG decoding. The messages are libjpeg's where it gave one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JpegError {
    /// The data does not start with a JPEG start-of-image marker.
    #[error("not a JPEG file (no start-of-image marker)")]
    NotJpeg,
    /// libjpeg found the data invalid.
    #[error("corrupt JPEG data: {0}")]
    Corrupt(String),
    /// The data ends before the image does.
    #[error("truncated JPEG data: {0}")]
    Truncated(String),
    /// The image has more pixels than the decoder was allowed.
    #[error("JPEG image of {width}x{height} pixels exceeds the limit of {limit} pixels")]
    TooLarge {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
        /// The limit it exceeded.
        limit: u64,
    },
    /// A valid JPEG this decoder does not handle (lossless, 12-bit, 2 components, ...).
    #[error("unsupported JPEG: {0}")]
    Unsupported(String),
}

/// A `Result` with [`JpegError`].
pub type Result<T, E = JpegError> = std::result::Result<T, E>;

/// The color space the file's components are coded in (libjpeg's `jpeg_color_space`, which it
/// infers from the JFIF and Adobe markers and the component ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ColorSpace {
    /// One luminance component.
    Grayscale,
    /// Red, green, blue.
    Rgb,
    /// Luminance and two chroma components.
    YCbCr,
    /// Cyan, magenta, yellow, black (stored inverted by Adobe applications).
    Cmyk,
    /// YCbCr plus black.
    Ycck,
    /// Anything else libjpeg reports.
    Other,
}

impl ColorSpace {
    fn from_libjpeg(code: i32) -> Self {
        // J_COLOR_SPACE in jpeglib.h.
        match code {
            1 => Self::Grayscale,
            2 => Self::Rgb,
            3 => Self::YCbCr,
            4 => Self::Cmyk,
            5 => Self::Ycck,
            _ => Self::Other,
        }
    }
}

/// What the header of a JPEG file says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JpegInfo {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Number of color components (1, 3 or 4 for images this crate decodes).
    pub components: u8,
    /// The coded color space.
    pub color_space: ColorSpace,
    /// Progressive (multi-scan) coding.
    pub progressive: bool,
    /// Arithmetic rather than Huffman entropy coding.
    pub arithmetic: bool,
}

/// The sample layout of a decoded image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Layout {
    /// One byte per pixel.
    Gray,
    /// Three bytes per pixel: red, green, blue.
    Rgb,
    /// Four bytes per pixel, as stored in the file (Adobe files store them inverted).
    Cmyk,
}

impl Layout {
    /// Bytes per pixel.
    #[must_use]
    pub fn channels(self) -> usize {
        match self {
            Self::Gray => 1,
            Self::Rgb => 3,
            Self::Cmyk => 4,
        }
    }
}

/// A decoded JPEG image, rows top to bottom, samples interleaved.
#[derive(Clone, PartialEq, Eq)]
pub struct Jpeg {
    info: JpegInfo,
    layout: Layout,
    pixels: Vec<u8>,
    warnings: u32,
}

impl std::fmt::Debug for Jpeg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jpeg")
            .field("info", &self.info)
            .field("layout", &self.layout)
            .field("warnings", &self.warnings)
            .finish_non_exhaustive()
    }
}

impl Jpeg {
    /// Width in pixels.
    #[must_use]
    pub fn width(&self) -> usize {
        self.info.width as usize
    }

    /// Height in pixels.
    #[must_use]
    pub fn height(&self) -> usize {
        self.info.height as usize
    }

    /// What the header says.
    #[must_use]
    pub fn info(&self) -> &JpegInfo {
        &self.info
    }

    /// The sample layout of [`Jpeg::pixels`].
    #[must_use]
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The samples, `width * height * layout.channels()` bytes.
    #[must_use]
    pub fn pixels(&self) -> &[u8] {
        &self.pixels
    }

    /// The samples, by value.
    #[must_use]
    pub fn into_pixels(self) -> Vec<u8> {
        self.pixels
    }

    /// How many recoverable problems libjpeg reported (corrupt segments it skipped or filled);
    /// Pillow ignores these too.
    #[must_use]
    pub fn warnings(&self) -> u32 {
        self.warnings
    }

    /// The image as Pillow's `convert("RGB")` gives it: gray replicated; CMYK read with Adobe's
    /// inverted polarity (Pillow's `CMYK;I`) and converted with Pillow's integer formula.
    #[must_use]
    pub fn to_rgb(&self) -> Vec<u8> {
        match self.layout {
            Layout::Rgb => self.pixels.clone(),
            Layout::Gray => self.pixels.iter().flat_map(|&l| [l, l, l]).collect(),
            Layout::Cmyk => {
                let mut out = Vec::with_capacity(self.pixels.len() / 4 * 3);
                for p in self.pixels.chunks_exact(4) {
                    out.extend_from_slice(&pillow_inverted_cmyk_to_rgb([p[0], p[1], p[2], p[3]]));
                }
                out
            }
        }
    }
}

/// One pixel of Pillow's `CMYK;I` unpacking (255 - v) followed by its `cmyk2rgb`:
/// `clip(nk - nk * c / 255)` with `nk = 255 - k` and Pillow's rounded division by 255.
#[must_use]
pub fn pillow_inverted_cmyk_to_rgb(stored: [u8; 4]) -> [u8; 3] {
    let [c, m, y, k] = stored.map(|v| 255 - i32::from(v));
    let nk = 255 - k;
    let channel = |v: i32| {
        let t = v * nk + 128;
        let muldiv = ((t >> 8) + t) >> 8;
        (nk - muldiv).clamp(0, 255) as u8
    };
    [channel(c), channel(m), channel(y)]
}

/// Whether `bytes` start like a JPEG file (the SOI marker followed by another marker).
#[must_use]
pub fn is_jpeg(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0xFF, 0xD8, 0xFF])
}

/// Reads the header only.
///
/// # Errors
/// [`JpegError::NotJpeg`], or what libjpeg says of a corrupt or truncated header.
pub fn read_info(bytes: &[u8]) -> Result<JpegInfo> {
    let (info, _) = run(bytes, None, 0)?;
    Ok(info)
}

/// Decodes with Pillow's decompression-bomb limit ([`PILLOW_MAX_PIXELS`]).
///
/// # Errors
/// See [`Decoder::decode`].
pub fn decode(bytes: &[u8]) -> Result<Jpeg> {
    Decoder::new().decode(bytes)
}

/// A JPEG decoder with a pixel limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct Decoder {
    max_pixels: u64,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    /// A decoder with Pillow's limit, [`PILLOW_MAX_PIXELS`].
    pub fn new() -> Self {
        Self {
            max_pixels: PILLOW_MAX_PIXELS,
        }
    }

    /// Refuses images of more than `max_pixels` pixels (checked from the header, before any
    /// sample memory is allocated).
    pub fn max_pixels(mut self, max_pixels: u64) -> Self {
        self.max_pixels = max_pixels.max(1);
        self
    }

    /// Decodes a whole JPEG file held in memory.
    ///
    /// # Errors
    /// [`JpegError::NotJpeg`] without a start-of-image marker, [`JpegError::TooLarge`] over the
    /// pixel limit, [`JpegError::Truncated`] when the data ends before the last row,
    /// [`JpegError::Unsupported`] for lossless, 12-bit or 2-component files, and
    /// [`JpegError::Corrupt`] with libjpeg's message for everything else it refuses.
    pub fn decode(&self, bytes: &[u8]) -> Result<Jpeg> {
        let info = read_info(bytes)?;
        let pixels = u64::from(info.width) * u64::from(info.height);
        if pixels > self.max_pixels {
            return Err(JpegError::TooLarge {
                width: info.width,
                height: info.height,
                limit: self.max_pixels,
            });
        }
        let layout = match info.components {
            1 => Layout::Gray,
            3 => Layout::Rgb,
            4 => Layout::Cmyk,
            n => {
                return Err(JpegError::Unsupported(format!(
                    "{n} color components (1, 3 or 4 decode)"
                )));
            }
        };
        // Within the limit above, so the product fits in memory-sized integers.
        let len = pixels as usize * layout.channels();
        let mut out = vec![0u8; len];
        let (info, warnings) = run(bytes, Some(&mut out), self.max_pixels)?;
        Ok(Jpeg {
            info,
            layout,
            pixels: out,
            warnings,
        })
    }
}

/// Calls the shim: the header only with `out == None`, else a full decode into `out`.
fn run(bytes: &[u8], out: Option<&mut [u8]>, max_pixels: u64) -> Result<(JpegInfo, u32)> {
    if !is_jpeg(bytes) {
        return Err(JpegError::NotJpeg);
    }
    let len = c_ulong::try_from(bytes.len())
        .map_err(|_| JpegError::Unsupported(format!("{} bytes of data", bytes.len())))?;
    let (out_ptr, out_len) = match out {
        Some(buf) => (buf.as_mut_ptr(), buf.len()),
        None => (std::ptr::null_mut(), 0),
    };
    let mut raw = ffi::Info::new();
    // SAFETY: `bytes` is valid for `len` reads and `out_ptr` (when not null) for `out_len` writes
    // for the duration of the call; the shim writes at most `out_len` bytes (it checks the image
    // size against `out_len` before decoding) and fills `raw`, which lives on this stack frame.
    // libjpeg's fatal errors return through `setjmp` inside the C function and never unwind here.
    let status = unsafe {
        ffi::kiln_jpeg_decode(
            bytes.as_ptr(),
            len,
            out_ptr,
            out_len,
            max_pixels as c_ulonglong,
            &mut raw,
        )
    };
    let info = JpegInfo {
        width: raw.width,
        height: raw.height,
        components: u8::try_from(raw.components).unwrap_or(u8::MAX),
        color_space: ColorSpace::from_libjpeg(raw.color_space),
        progressive: raw.progressive != 0,
        arithmetic: raw.arithmetic != 0,
    };
    match status {
        ffi::OK => Ok((info, u32::try_from(raw.warnings).unwrap_or(0))),
        ffi::TRUNCATED => Err(JpegError::Truncated(
            raw.message("the data ends before the image does"),
        )),
        ffi::UNSUPPORTED => Err(JpegError::Unsupported(raw.message("unsupported image"))),
        ffi::BAD_BUFFER => Err(JpegError::Unsupported(raw.message("output size mismatch"))),
        ffi::ERROR => {
            let message = raw.message("libjpeg error");
            if is_unsupported_message(&message) {
                Err(JpegError::Unsupported(message))
            } else {
                Err(JpegError::Corrupt(message))
            }
        }
        other => Err(JpegError::Corrupt(format!(
            "unknown decoder status {other}"
        ))),
    }
}

/// libjpeg messages that describe valid files of a kind this build does not decode.
fn is_unsupported_message(message: &str) -> bool {
    message.starts_with("Unsupported JPEG data precision")
        || message.starts_with("Unsupported JPEG process")
        || message.contains("not supported")
}

#[cfg(test)]
mod tests;
