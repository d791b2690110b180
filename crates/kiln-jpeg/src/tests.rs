use super::*;

/// A 1x1 baseline JPEG made by Pillow (quality 90).
fn tiny() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/pil_pixel.jpg"
    ))
    .expect("fixture pil_pixel.jpg")
}

#[test]
fn header_is_read_without_decoding() {
    let info = read_info(&tiny()).unwrap();
    assert_eq!((info.width, info.height, info.components), (1, 1, 3));
    assert_eq!(info.color_space, ColorSpace::YCbCr);
    assert!(!info.progressive && !info.arithmetic);
}

#[test]
fn non_jpeg_data_is_refused_before_libjpeg_sees_it() {
    assert_eq!(decode(b"").unwrap_err(), JpegError::NotJpeg);
    assert_eq!(
        decode(b"\x89PNG\r\n\x1a\n").unwrap_err(),
        JpegError::NotJpeg
    );
    assert_eq!(read_info(&[0xFF, 0xD8]).unwrap_err(), JpegError::NotJpeg);
}

#[test]
fn garbage_after_the_marker_is_a_corrupt_error_not_a_crash() {
    let mut data = vec![0xFF, 0xD8, 0xFF];
    data.extend((0..500u32).map(|i| (i * 37 % 251) as u8));
    match decode(&data).unwrap_err() {
        JpegError::Corrupt(m) | JpegError::Truncated(m) | JpegError::Unsupported(m) => {
            assert!(!m.is_empty());
        }
        other => panic!("unexpected error {other:?}"),
    }
}

#[test]
fn pixel_limit_is_checked_from_the_header() {
    let data = tiny();
    // A limit of 0 means 1: the 1x1 image still decodes.
    assert_eq!(
        Decoder::new()
            .max_pixels(0)
            .decode(&data)
            .unwrap()
            .pixels()
            .len(),
        3
    );
    let strip = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/pil_strip_420.jpg"
    ))
    .unwrap();
    assert_eq!(
        Decoder::new().max_pixels(482).decode(&strip).unwrap_err(),
        JpegError::TooLarge {
            width: 161,
            height: 3,
            limit: 482
        }
    );
    assert!(Decoder::new().max_pixels(483).decode(&strip).is_ok());
    // A header claiming 60000x60000 pixels is refused before anything is allocated.
    let mut big = data.clone();
    let sof = big.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    big[sof + 5..sof + 9].copy_from_slice(&[0xEA, 0x60, 0xEA, 0x60]);
    let err = decode(&big).unwrap_err();
    assert_eq!(
        err,
        JpegError::TooLarge {
            width: 60000,
            height: 60000,
            limit: PILLOW_MAX_PIXELS
        }
    );
}

#[test]
fn lossless_and_twelve_bit_files_are_unsupported() {
    let data = tiny();
    let sof = data.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    let mut lossless = data.clone();
    lossless[sof + 1] = 0xC3;
    assert!(
        matches!(decode(&lossless).unwrap_err(), JpegError::Unsupported(m) if m.contains("0xc3"))
    );
    let mut twelve = data.clone();
    twelve[sof + 4] = 12;
    twelve[sof + 1] = 0xC1;
    assert!(
        matches!(decode(&twelve).unwrap_err(), JpegError::Unsupported(m) if m.contains("precision"))
    );
}

#[test]
fn pillow_cmyk_formula_on_corners() {
    // Stored Adobe CMYK is inverted: 255 means no ink.
    assert_eq!(
        pillow_inverted_cmyk_to_rgb([255, 255, 255, 255]),
        [255, 255, 255]
    );
    assert_eq!(pillow_inverted_cmyk_to_rgb([0, 0, 0, 0]), [0, 0, 0]);
    assert_eq!(pillow_inverted_cmyk_to_rgb([255, 255, 255, 0]), [0, 0, 0]);
    assert_eq!(
        pillow_inverted_cmyk_to_rgb([0, 128, 255, 255]),
        [0, 128, 255]
    );
    // Pillow: Image.frombytes("CMYK", (1, 1), bytes(255 - v for v in (10, 200, 77, 90))).convert("RGB").
    assert_eq!(pillow_inverted_cmyk_to_rgb([10, 200, 77, 90]), [4, 71, 27]);
}
