//! Image decoding to 8-bit RGB as transformers' CLIP processor sees `PIL.Image.open(path)`.
//!
//! JPEG files are decoded by kiln-jpeg (libjpeg-turbo's decoder, the one Pillow uses, so the
//! samples are Pillow's to the byte); PNG and the other formats by the `image` crate, whose PNG
//! decoding is lossless and therefore equal to Pillow's. The conversion rules (alpha onto white,
//! 16-bit samples, palettes) are Pillow's and transformers' `convert_to_rgb`.

use std::path::Path;

use crate::error::{ClipError, Result};
use crate::preprocess::RgbImage;

/// Loads an image file as transformers' CLIP processor sees `PIL.Image.open(path)`.
///
/// - 8-bit RGB: as is; grayscale: replicated to three channels; palette: expanded.
/// - Alpha (RGBA, grayscale + alpha, or a PNG `tRNS` transparency): composited onto opaque white with
///   Pillow's `alpha_composite` integer arithmetic, as transformers' `convert_to_rgb` does.
/// - 16-bit grayscale: each value clipped to 255 (Pillow's `I;16` to `RGB` conversion).
/// - 16-bit RGB(A) / grayscale + alpha: the high byte of each sample (Pillow reads these PNGs with
///   8 bits per sample).
/// - JPEG: decoded by kiln-jpeg with libjpeg-turbo's arithmetic, so the pixels equal Pillow's
///   (grayscale replicated; CMYK read as Adobe-inverted and converted with Pillow's formula).
/// - EXIF orientation: ignored, as in transformers' processor.
///
/// Errors name the file: unreadable, corrupt, truncated, not an image, or a floating-point format.
pub fn load_image(path: impl AsRef<Path>) -> Result<RgbImage> {
    let path = path.as_ref();
    decode_at(&read(path)?, path)
}

/// The bytes of an image file; errors name it.
fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| ClipError::ImageIo {
        path: path.to_path_buf(),
        source,
    })
}

/// Decodes an encoded image (PNG, JPEG, ...) held in memory with the rules of [`load_image`];
/// `name` stands for the file in errors.
pub fn decode_image(bytes: &[u8], name: &str) -> Result<RgbImage> {
    decode_at(bytes, Path::new(name))
}

/// Loads an image file as `transformers.image_utils.load_image(path)` returns it, which is what
/// transformers' pipelines (`pipeline("zero-shot-image-classification")`, ...) feed the processor:
/// the EXIF orientation applied as `PIL.ImageOps.exif_transpose` does (the orientation tag of the
/// EXIF block in JPEG `APP1` or PNG `eXIf`, else an XMP `tiff:Orientation`), then
/// `convert("RGB")`, which **drops** an alpha channel instead of compositing it.
///
/// # Errors
/// As [`load_image`].
pub fn load_image_upright(path: impl AsRef<Path>) -> Result<RgbImage> {
    let path = path.as_ref();
    decode_upright_at(&read(path)?, path)
}

/// [`load_image_upright`] for bytes in memory; `name` stands for the file in errors.
///
/// # Errors
/// As [`decode_image`].
pub fn decode_image_upright(bytes: &[u8], name: &str) -> Result<RgbImage> {
    decode_upright_at(bytes, Path::new(name))
}

fn decode_upright_at(bytes: &[u8], path: &Path) -> Result<RgbImage> {
    let img = decode_with(bytes, path, Alpha::Drop)?;
    Ok(match crate::orientation::read(bytes) {
        Some(o) => crate::orientation::apply(&img, o),
        None => img,
    })
}

fn decode_at(bytes: &[u8], path: &Path) -> Result<RgbImage> {
    decode_with(bytes, path, Alpha::CompositeOnWhite)
}

/// JPEG bytes go to kiln-jpeg (libjpeg-turbo's decoder, Pillow's pixels); everything else to the
/// `image` crate.
fn decode_with(bytes: &[u8], path: &Path, alpha: Alpha) -> Result<RgbImage> {
    if kiln_jpeg::is_jpeg(bytes) {
        let jpeg = kiln_jpeg::decode(bytes).map_err(|source| ClipError::JpegDecode {
            path: path.to_path_buf(),
            source,
        })?;
        let (width, height) = (jpeg.width(), jpeg.height());
        return RgbImage::new(width, height, jpeg.to_rgb()).map_err(|e| {
            ClipError::UnsupportedImage {
                path: path.to_path_buf(),
                reason: e.to_string(),
            }
        });
    }
    let reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|source| ClipError::ImageIo {
            path: path.to_path_buf(),
            source,
        })?;
    let img = reader.decode().map_err(|source| ClipError::ImageDecode {
        path: path.to_path_buf(),
        source,
    })?;
    to_rgb(img, alpha).map_err(|reason| ClipError::UnsupportedImage {
        path: path.to_path_buf(),
        reason,
    })
}

/// Converts a decoded image to RGB with the rules of [`load_image`].
pub fn dynamic_to_rgb(img: image::DynamicImage) -> std::result::Result<RgbImage, String> {
    to_rgb(img, Alpha::CompositeOnWhite)
}

/// What RGB conversion does with an alpha channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Alpha {
    /// transformers' `convert_to_rgb`: composite onto opaque white.
    CompositeOnWhite,
    /// Pillow's `convert("RGB")`: drop it.
    Drop,
}

fn to_rgb(img: image::DynamicImage, alpha: Alpha) -> std::result::Result<RgbImage, String> {
    let blend = |c: u8, a: u8| match alpha {
        Alpha::CompositeOnWhite => composite_white(c, a),
        Alpha::Drop => c,
    };
    use image::DynamicImage as D;
    let (w, h) = (img.width() as usize, img.height() as usize);
    let n = w * h;
    let mut out = Vec::with_capacity(n * 3);
    match img {
        D::ImageRgb8(b) => out = b.into_raw(),
        D::ImageLuma8(b) => {
            for &l in b.as_raw() {
                out.extend_from_slice(&[l, l, l]);
            }
        }
        D::ImageLumaA8(b) => {
            for p in b.as_raw().chunks_exact(2) {
                let l = blend(p[0], p[1]);
                out.extend_from_slice(&[l, l, l]);
            }
        }
        D::ImageRgba8(b) => {
            for p in b.as_raw().chunks_exact(4) {
                for &c in &p[..3] {
                    out.push(blend(c, p[3]));
                }
            }
        }
        D::ImageLuma16(b) => {
            for &v in b.as_raw() {
                let l = v.min(255) as u8;
                out.extend_from_slice(&[l, l, l]);
            }
        }
        D::ImageLumaA16(b) => {
            for p in b.as_raw().chunks_exact(2) {
                let l = blend((p[0] >> 8) as u8, (p[1] >> 8) as u8);
                out.extend_from_slice(&[l, l, l]);
            }
        }
        D::ImageRgb16(b) => out.extend(b.as_raw().iter().map(|&v| (v >> 8) as u8)),
        D::ImageRgba16(b) => {
            for p in b.as_raw().chunks_exact(4) {
                let a = (p[3] >> 8) as u8;
                for &c in &p[..3] {
                    out.push(blend((c >> 8) as u8, a));
                }
            }
        }
        other => {
            return Err(format!(
                "pixel format {:?} is not supported (8- or 16-bit integer images only)",
                other.color()
            ));
        }
    }
    RgbImage::new(w, h, out).map_err(|e| e.to_string())
}

/// One channel of `PIL.Image.alpha_composite(white, src)`: Pillow's `AlphaComposite.c` with an opaque
/// white destination (7-bit fixed point, division by 255 by shifts).
fn composite_white(c: u8, a: u8) -> u8 {
    const PRECISION_BITS: u32 = 7;
    if a == 0 {
        return 255;
    }
    let (c, a) = (u32::from(c), u32::from(a));
    let blend = 255 * (255 - a);
    let outa255 = a * 255 + blend;
    let coef1 = a * 255 * 255 * (1 << PRECISION_BITS) / outa255;
    let coef2 = 255 * (1 << PRECISION_BITS) - coef1;
    let tmp = c * coef1 + 255 * coef2 + (0x80 << PRECISION_BITS);
    let div255 = ((tmp >> 8) + tmp) >> 8;
    (div255 >> PRECISION_BITS) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composite_extremes() {
        assert_eq!(composite_white(10, 255), 10);
        assert_eq!(composite_white(10, 0), 255);
    }

    #[test]
    fn jpeg_bytes_take_the_libjpeg_path_and_name_the_input() {
        let err = decode_image(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 2], "upload.jpg").unwrap_err();
        assert!(matches!(err, ClipError::JpegDecode { .. }), "{err:?}");
        assert!(err.to_string().contains("upload.jpg"), "{err}");
    }
}
