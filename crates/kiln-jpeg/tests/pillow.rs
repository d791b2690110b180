//! Every fixture made by `tools/make_jpeg_fixtures.py` decodes to Pillow's pixels exactly, and what
//! Pillow refuses is refused.
//!
//! Tolerance: none. The reference is `np.asarray(PIL.Image.open(path).convert("RGB"))` (Pillow
//! 13.0.0 with libjpeg-turbo 3.2.0, recorded in meta.json); every byte of every valid file must be
//! equal. Files with corrupt entropy-coded data (`damaged_*` that Pillow still decodes) must decode
//! with warnings, to the same size, but the concealment of the damage is not compared: libjpeg
//! versions fill and resynchronise damaged segments differently.

use std::path::PathBuf;

use kiln_jpeg::{JpegError, decode};
use serde_json::Value;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn read_png_rgb(name: &str) -> (usize, usize, Vec<u8>) {
    let img = image::open(fixtures().join(format!("{name}.png")))
        .unwrap_or_else(|e| panic!("{name}.png: {e}"))
        .into_rgb8();
    (img.width() as usize, img.height() as usize, img.into_raw())
}

#[test]
fn every_fixture_matches_pillow() {
    let meta: Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("meta.json")).unwrap()).unwrap();
    let cases = meta["cases"].as_array().unwrap();
    assert!(cases.len() >= 30, "{} cases", cases.len());
    let mut failures = Vec::new();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let data = std::fs::read(fixtures().join(format!("{name}.jpg"))).unwrap();
        match case["pillow"].as_str().unwrap() {
            "decoded" => {
                let jpeg = match decode(&data) {
                    Ok(j) => j,
                    Err(e) => {
                        failures.push(format!("{name}: Pillow decodes it, kiln-jpeg says {e}"));
                        continue;
                    }
                };
                let (w, h, want) = read_png_rgb(name);
                assert_eq!((jpeg.width(), jpeg.height()), (w, h), "{name}");
                if name.starts_with("damaged_") {
                    assert!(jpeg.warnings() > 0, "{name}: decoded without a warning");
                    continue;
                }
                let got = jpeg.to_rgb();
                let differing = got.iter().zip(&want).filter(|(a, b)| a != b).count();
                let max = got
                    .iter()
                    .zip(&want)
                    .map(|(&a, &b)| a.abs_diff(b))
                    .max()
                    .unwrap_or(0);
                if differing > 0 {
                    failures.push(format!(
                        "{name}: {differing} of {} samples differ from Pillow's (max {max})",
                        got.len()
                    ));
                }
            }
            "refused" => match decode(&data) {
                Ok(_) => failures.push(format!(
                    "{name}: Pillow refuses it ({}), kiln-jpeg decoded it",
                    case["error"]
                )),
                Err(e) => assert!(
                    matches!(e, JpegError::Truncated(_) | JpegError::Corrupt(_)),
                    "{name}: {e:?}"
                ),
            },
            other => panic!("{name}: verdict {other}"),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
