//! EXIF orientation, read and applied as `PIL.ImageOps.exif_transpose` does.
//!
//! Pillow takes the orientation tag (0x0112) from the image's EXIF block (JPEG: the first `APP1`
//! segment that starts with `Exif\0\0`; PNG: the `eXIf` chunk) and, when that has none, from an XMP
//! packet's `tiff:Orientation` (JPEG `APP1` `http://ns.adobe.com/xap/1.0/`, PNG `iTXt`
//! `XML:com.adobe.xmp`). Values 2 to 8 transpose the pixels; anything else leaves them.

use crate::preprocess::RgbImage;

/// The orientation value of an encoded JPEG or PNG image, as Pillow reads it; `None` when the file
/// has none (or is neither format).
#[must_use]
pub fn read(bytes: &[u8]) -> Option<u16> {
    let (exif, xmp) = if bytes.starts_with(&[0xFF, 0xD8]) {
        jpeg_segments(bytes)
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        png_chunks(bytes)
    } else {
        return None;
    };
    exif.and_then(tiff_orientation)
        .or_else(|| xmp.and_then(xmp_orientation))
}

/// The EXIF (TIFF) block and the XMP packet of a JPEG file, scanning markers up to the first scan.
fn jpeg_segments(bytes: &[u8]) -> (Option<&[u8]>, Option<&[u8]>) {
    let (mut exif, mut xmp) = (None, None);
    let mut i = 2;
    while i + 4 <= bytes.len() {
        if bytes[i] != 0xFF {
            break;
        }
        let marker = bytes[i + 1];
        if marker == 0xFF {
            i += 1; // fill byte
            continue;
        }
        if marker == 0xDA || marker == 0xD9 {
            break; // start of scan, end of image: no metadata after this point
        }
        if (0xD0..=0xD7).contains(&marker) || marker == 0x01 {
            i += 2;
            continue;
        }
        let len = usize::from(u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]));
        if len < 2 || i + 2 + len > bytes.len() {
            break;
        }
        let body = &bytes[i + 4..i + 2 + len];
        if marker == 0xE1 {
            if let Some(tiff) = body.strip_prefix(b"Exif\0\0") {
                exif.get_or_insert(tiff);
            } else if let Some(packet) = body.strip_prefix(b"http://ns.adobe.com/xap/1.0/\0") {
                xmp.get_or_insert(packet);
            }
        }
        i += 2 + len;
    }
    (exif, xmp)
}

/// The `eXIf` chunk and the XMP `iTXt` text of a PNG file.
fn png_chunks(bytes: &[u8]) -> (Option<&[u8]>, Option<&[u8]>) {
    let (mut exif, mut xmp) = (None, None);
    let mut i = 8;
    while i + 8 <= bytes.len() {
        let len = u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]) as usize;
        let kind = &bytes[i + 4..i + 8];
        let Some(end) = (i + 8).checked_add(len).filter(|&e| e + 4 <= bytes.len()) else {
            break;
        };
        let data = &bytes[i + 8..end];
        match kind {
            b"eXIf" => {
                // Pillow accepts an eXIf chunk with or without a leading `Exif\0\0`.
                exif.get_or_insert(data.strip_prefix(b"Exif\0\0").unwrap_or(data));
            }
            b"iTXt" => {
                if let Some(rest) = data.strip_prefix(b"XML:com.adobe.xmp\0") {
                    // compression flag, method, language tag\0, translated keyword\0, text
                    if rest.len() >= 2 && rest[0] == 0 {
                        let mut fields = rest[2..].splitn(3, |&b| b == 0);
                        let (_, _, text) = (fields.next(), fields.next(), fields.next());
                        if let Some(text) = text {
                            xmp.get_or_insert(text);
                        }
                    }
                }
            }
            b"IEND" => break,
            _ => {}
        }
        i = end + 4;
    }
    (exif, xmp)
}

/// Tag 0x0112 of IFD0 of a TIFF-structured EXIF block.
fn tiff_orientation(tiff: &[u8]) -> Option<u16> {
    let big = match tiff.get(..4)? {
        b"II*\0" => false,
        b"MM\0*" => true,
        _ => return None,
    };
    let u16_at = |i: usize| -> Option<u16> {
        let b = tiff.get(i..i + 2)?;
        Some(if big {
            u16::from_be_bytes([b[0], b[1]])
        } else {
            u16::from_le_bytes([b[0], b[1]])
        })
    };
    let u32_at = |i: usize| -> Option<u32> {
        let b = tiff.get(i..i + 4)?;
        let b = [b[0], b[1], b[2], b[3]];
        Some(if big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    };
    let ifd = u32_at(4)? as usize;
    let count = usize::from(u16_at(ifd)?);
    for e in 0..count {
        let entry = ifd + 2 + 12 * e;
        if u16_at(entry)? != 0x0112 {
            continue;
        }
        let (kind, n) = (u16_at(entry + 2)?, u32_at(entry + 4)?);
        if n == 0 {
            return None;
        }
        return match kind {
            1 | 7 => tiff.get(entry + 8).map(|&b| u16::from(b)), // BYTE, UNDEFINED
            3 | 8 => u16_at(entry + 8),                          // SHORT, SSHORT
            4 | 9 => u32_at(entry + 8).and_then(|v| u16::try_from(v).ok()), // LONG, SLONG
            _ => None,
        };
    }
    None
}

/// Pillow's `tiff:Orientation(="|>)([0-9])` search in an XMP packet.
fn xmp_orientation(xmp: &[u8]) -> Option<u16> {
    const KEY: &[u8] = b"tiff:Orientation";
    let mut from = 0;
    while let Some(pos) = xmp[from..].windows(KEY.len()).position(|w| w == KEY) {
        let at = from + pos + KEY.len();
        let digit = match xmp.get(at..) {
            Some([b'=', b'"', d, ..]) | Some([b'>', d, ..]) => Some(*d),
            _ => None,
        };
        if let Some(d) = digit.filter(u8::is_ascii_digit) {
            return Some(u16::from(d - b'0'));
        }
        from = at;
    }
    None
}

/// The image transposed for an orientation value, as `exif_transpose` does (2: mirror,
/// 3: rotate 180°, 4: flip, 5: transpose, 6: rotate 90° clockwise, 7: transverse, 8: rotate 90°
/// counter-clockwise); other values return a copy.
#[must_use]
pub fn apply(img: &RgbImage, orientation: u16) -> RgbImage {
    let (w, h) = (img.width(), img.height());
    if !(2..=8).contains(&orientation) || w == 0 || h == 0 {
        return img.clone();
    }
    let swaps = orientation >= 5;
    let (ow, oh) = if swaps { (h, w) } else { (w, h) };
    let src = img.as_raw();
    let mut out = Vec::with_capacity(ow * oh * 3);
    for y in 0..oh {
        for x in 0..ow {
            // The source pixel of output (x, y).
            let (sx, sy) = match orientation {
                2 => (w - 1 - x, y),
                3 => (w - 1 - x, h - 1 - y),
                4 => (x, h - 1 - y),
                5 => (y, x),
                6 => (y, h - 1 - x),
                7 => (w - 1 - y, h - 1 - x),
                _ => (w - 1 - y, x),
            };
            let i = (sy * w + sx) * 3;
            out.extend_from_slice(&src[i..i + 3]);
        }
    }
    RgbImage::new(ow, oh, out).unwrap_or_else(|_| img.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiff(big: bool, kind: u16, value: u32) -> Vec<u8> {
        let mut t = Vec::new();
        let u16b = |v: u16| {
            if big {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let u32b = |v: u32| {
            if big {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        t.extend(if big { *b"MM\0*" } else { *b"II*\0" });
        t.extend(u32b(8));
        t.extend(u16b(2));
        // An unrelated tag first, then the orientation.
        t.extend(u16b(0x010F));
        t.extend(u16b(2));
        t.extend(u32b(4));
        t.extend(*b"abc\0");
        t.extend(u16b(0x0112));
        t.extend(u16b(kind));
        t.extend(u32b(1));
        if kind == 3 {
            t.extend(u16b(value as u16));
            t.extend([0, 0]);
        } else {
            t.extend(u32b(value));
        }
        t.extend([0; 4]);
        t
    }

    #[test]
    fn orientation_tags_in_both_byte_orders_and_types() {
        assert_eq!(tiff_orientation(&tiff(false, 3, 6)), Some(6));
        assert_eq!(tiff_orientation(&tiff(true, 3, 8)), Some(8));
        assert_eq!(tiff_orientation(&tiff(true, 4, 3)), Some(3));
        assert_eq!(tiff_orientation(b"II*\0\xff\xff\xff\xff"), None);
        assert_eq!(tiff_orientation(b"junk"), None);
    }

    #[test]
    fn xmp_orientation_in_both_spellings() {
        assert_eq!(xmp_orientation(br#"<x tiff:Orientation="6"/>"#), Some(6));
        assert_eq!(
            xmp_orientation(b"<tiff:Orientation>3</tiff:Orientation>"),
            Some(3)
        );
        assert_eq!(
            xmp_orientation(b"tiff:Orientation tiff:Orientation=x"),
            None
        );
    }

    #[test]
    fn transposes_move_pixels_like_pillow() {
        // 3x2: pixel value = index.
        let img = RgbImage::new(3, 2, (0..6u8).flat_map(|i| [i, i, i]).collect()).unwrap();
        let firsts = |o| {
            let t = apply(&img, o);
            (
                t.width(),
                t.height(),
                t.as_raw().iter().step_by(3).copied().collect::<Vec<_>>(),
            )
        };
        assert_eq!(firsts(1), (3, 2, vec![0, 1, 2, 3, 4, 5]));
        assert_eq!(firsts(2), (3, 2, vec![2, 1, 0, 5, 4, 3]));
        assert_eq!(firsts(3), (3, 2, vec![5, 4, 3, 2, 1, 0]));
        assert_eq!(firsts(4), (3, 2, vec![3, 4, 5, 0, 1, 2]));
        assert_eq!(firsts(5), (2, 3, vec![0, 3, 1, 4, 2, 5]));
        assert_eq!(firsts(6), (2, 3, vec![3, 0, 4, 1, 5, 2]));
        assert_eq!(firsts(7), (2, 3, vec![5, 2, 4, 1, 3, 0]));
        assert_eq!(firsts(8), (2, 3, vec![2, 5, 1, 4, 0, 3]));
    }
}
