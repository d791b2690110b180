//! `load_image_upright` equals `transformers.image_utils.load_image(path)` (EXIF/XMP orientation
//! applied as `PIL.ImageOps.exif_transpose`, alpha dropped by `convert("RGB")`) byte for byte, on
//! the cases of `tools/make_exif_fixtures.py`; `load_image` (what the processor sees of
//! `PIL.Image.open`) leaves the pixels as stored.

use std::path::PathBuf;

use kiln_clip::{decode_image_upright, load_image, load_image_upright};
use serde_json::Value;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/exif")
}

#[test]
fn every_orientation_matches_transformers_load_image() {
    let meta: Value =
        serde_json::from_slice(&std::fs::read(dir().join("meta.json")).unwrap()).unwrap();
    let cases = meta["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 15);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let path = dir().join(case["file"].as_str().unwrap());
        let want = image::open(dir().join(format!("{name}.expected.png")))
            .unwrap()
            .into_rgb8();
        let got = load_image_upright(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            (got.width(), got.height()),
            (want.width() as usize, want.height() as usize),
            "{name}: size"
        );
        assert!(
            got.as_raw() == want.as_raw().as_slice(),
            "{name}: pixels differ"
        );
        let bytes = std::fs::read(&path).unwrap();
        let from_bytes = decode_image_upright(&bytes, name).unwrap();
        assert!(from_bytes == got, "{name}: bytes and path disagree");
        // The processor's view: stored orientation.
        let stored = load_image(&path).unwrap();
        assert_eq!(
            (stored.width(), stored.height()),
            (13, 7),
            "{name}: stored size"
        );
    }
}
