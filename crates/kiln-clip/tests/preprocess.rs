//! kiln-clip preprocessing against transformers' PIL-based CLIPImageProcessor.
//!
//! Fixtures: tools/make_clip_preprocess_fixtures.py. The scikit-image photos come from
//! scripts/fetch-assets.sh ($KILN_CACHE/assets/skimage); nothing is skipped when they are missing.

use std::path::{Path, PathBuf};

use kiln_clip::preprocess::{
    PreprocessConfig, Resample, RgbImage, load_image, preprocess, resize, resize_and_crop,
    value_table,
};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clip_preprocess")
}

fn skimage_dir() -> PathBuf {
    let cache = std::env::var_os("KILN_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/kiln")
        });
    cache.join("assets/skimage")
}

fn read_png(path: &Path) -> RgbImage {
    let img = image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgb8();
    let (w, h) = (img.width() as usize, img.height() as usize);
    RgbImage::new(w, h, img.into_raw()).expect("rgb")
}

fn meta() -> Value {
    let text = std::fs::read_to_string(fixtures().join("meta.json")).expect("meta.json");
    serde_json::from_str(&text).expect("meta.json parses")
}

fn case_config(case: &Value) -> PreprocessConfig {
    let mut v = serde_json::to_value(PreprocessConfig::default()).expect("to json");
    if let (Some(obj), Some(extra)) = (v.as_object_mut(), case["config"].as_object()) {
        for (k, x) in extra {
            obj.insert(k.clone(), x.clone());
        }
    }
    serde_json::from_value(v).expect("case config")
}

/// (number of differing bytes, max abs diff)
fn diff_u8(a: &RgbImage, b: &RgbImage) -> (usize, u8) {
    assert_eq!((a.width(), a.height()), (b.width(), b.height()), "shape");
    let mut n = 0;
    let mut m = 0;
    for (x, y) in a.as_raw().iter().zip(b.as_raw()) {
        let d = x.abs_diff(*y);
        if d != 0 {
            n += 1;
            m = m.max(d);
        }
    }
    (n, m)
}

#[test]
fn value_table_is_bit_exact() {
    let meta = meta();
    let lut = meta["lut"].as_array().expect("lut");
    let ours = value_table(&PreprocessConfig::default());
    for c in 0..3 {
        let row = lut[c].as_array().expect("lut row");
        for v in 0..256 {
            let want = row[v].as_f64().expect("f64") as f32;
            assert_eq!(
                ours[c][v].to_bits(),
                want.to_bits(),
                "channel {c} level {v}"
            );
        }
    }
}

#[test]
fn every_fixture_matches_transformers() {
    let meta = meta();
    let lut = meta["lut"].as_array().expect("lut");
    let mut failures = Vec::new();
    for case in meta["cases"].as_array().expect("cases") {
        let name = case["name"].as_str().expect("name");
        let file = case["file"].as_str().expect("file");
        let path = match case["source"].as_str() {
            Some("skimage") => skimage_dir().join(file),
            _ => fixtures().join("inputs").join(file),
        };
        assert!(
            path.is_file(),
            "{} missing: run scripts/fetch-assets.sh",
            path.display()
        );
        let cfg = case_config(case);
        let img = load_image(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        if let Some(hw) = case.get("resized_hw").and_then(Value::as_array) {
            let (h, w) = (
                hw[0].as_u64().expect("h") as usize,
                hw[1].as_u64().expect("w") as usize,
            );
            let want = read_png(&fixtures().join(format!("{name}.resized.png")));
            let got = resize(&img, w, h, Resample::Bicubic).expect("resize");
            let (n, m) = diff_u8(&got, &want);
            eprintln!("{name}: resized {w}x{h}: {n} bytes differ, max abs diff {m}");
            if n != 0 {
                failures.push(format!("{name} resize: {n} bytes differ (max {m})"));
            }
        }
        let want = read_png(&fixtures().join(format!("{name}.crop.png")));
        let got = resize_and_crop(&img, &cfg).expect("resize_and_crop");
        let (n, m) = diff_u8(&got, &want);
        // The float32 tensor of transformers is lut[c][crop] bit for bit (asserted by the script).
        let tensor = preprocess(&img, &cfg).expect("preprocess");
        let plane = want.width() * want.height();
        assert_eq!(tensor.len(), 3 * plane, "{name}: tensor length");
        let mut max_err = 0f32;
        for (i, p) in want.as_raw().chunks_exact(3).enumerate() {
            for c in 0..3 {
                let r = lut[c][p[c] as usize].as_f64().expect("lut") as f32;
                max_err = max_err.max((tensor[c * plane + i] - r).abs());
            }
        }
        eprintln!(
            "{name}: crop {}x{}: {n} bytes differ (max abs diff {m}); tensor max abs err {max_err:e}",
            want.width(),
            want.height()
        );
        if case["pil_decoded"].as_bool().unwrap_or(false) {
            // Small JPEG inputs keep PIL's decoded pixels: the decode itself must equal them
            // (kiln-jpeg is libjpeg-turbo's decoder, as in Pillow), EXIF orientation not applied.
            let pil = read_png(&fixtures().join(format!("{name}.pil_decoded.png")));
            let (n2, m2) = diff_u8(&img, &pil);
            eprintln!("{name}: decoded pixels against PIL's: {n2} bytes differ (max {m2})");
            if n2 != 0 {
                failures.push(format!(
                    "{name} decode: {n2} bytes differ from PIL's (max {m2})"
                ));
            }
        }
        // Every case, JPEG included, is bit-exact.
        if n != 0 || max_err > 1e-6 {
            failures.push(format!(
                "{name}: {n} bytes differ (max {m}), tensor err {max_err:e}"
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

fn tmp_file(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-clip-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("write tmp");
    p
}

fn assert_error_names_file(path: &Path) {
    match load_image(path) {
        Ok(img) => panic!("{} decoded as {img:?}", path.display()),
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.contains(&path.display().to_string()),
                "error does not name the file: {msg}"
            );
            eprintln!("{msg}");
        }
    }
}

#[test]
fn bad_files_are_errors_naming_the_file() {
    let png = std::fs::read(fixtures().join("inputs/gradient_noise_500x333.png")).expect("png");
    // Corrupt: a PNG signature followed by garbage.
    let mut corrupt = png[..8].to_vec();
    corrupt.extend(std::iter::repeat_n(0x5a, 200));
    assert_error_names_file(&tmp_file("corrupt.png", &corrupt));
    // Truncated: the first half of a real PNG.
    assert_error_names_file(&tmp_file("truncated.png", &png[..png.len() / 2]));
    // Damaged image data: a flipped byte in the middle of the compressed stream.
    let mut flipped = png.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0xff;
    assert_error_names_file(&tmp_file("flipped.png", &flipped));
    // Not an image.
    assert_error_names_file(&tmp_file(
        "notes.png",
        b"these are not the pixels you are looking for\n",
    ));
    // Missing.
    assert_error_names_file(&std::env::temp_dir().join("kiln-clip-no-such-file.png"));
}

#[test]
fn config_file_errors_name_the_file_or_field() {
    let p = tmp_file("preprocessor_config.json", br#"{"resample": 7}"#);
    let e = PreprocessConfig::from_file(&p)
        .expect_err("resample 7")
        .to_string();
    assert!(e.contains("resample"), "{e}");
    let p = tmp_file("bad_config.json", b"{not json");
    let e = PreprocessConfig::from_file(&p)
        .expect_err("bad json")
        .to_string();
    assert!(e.contains(&p.display().to_string()), "{e}");
    let p = tmp_file(
        "openai_config.json",
        br#"{"crop_size": 224, "do_center_crop": true, "do_normalize": true, "do_resize": true,
        "feature_extractor_type": "CLIPFeatureExtractor", "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3, "size": 224}"#,
    );
    let cfg = PreprocessConfig::from_file(&p).expect("openai config");
    assert_eq!(value_table(&cfg), value_table(&PreprocessConfig::default()));
    assert_eq!(cfg.output_hw(480, 640), (224, 224));
}

/// Found by the `preprocessor_config` fuzz target (fuzz/regressions/preprocessor_config): a
/// `size` of 10862 made a 7x5 image resize to 10862x15207 (seconds of resampling and half a
/// gigabyte); sizes are now bounded, and so is the resized image of an extreme aspect ratio.
#[test]
fn huge_sizes_and_extreme_aspect_ratios_are_refused() {
    let p = tmp_file(
        "huge_size.json",
        br#"{"crop_sizeescale_fact": 0.00392156865198, "size": {"shortest_edge": 10862}}"#,
    );
    let e = PreprocessConfig::from_file(&p)
        .expect_err("huge size")
        .to_string();
    assert!(e.contains("size") && e.contains("4096"), "{e}");
    let p = tmp_file("huge_crop.json", br#"{"crop_size": 5000}"#);
    let e = PreprocessConfig::from_file(&p)
        .expect_err("huge crop")
        .to_string();
    assert!(e.contains("crop_size"), "{e}");
    // 1 x 100000 with shortest_edge 224 would be 224 x 22,400,000 before the crop.
    let img = RgbImage::new(100_000, 1, vec![128; 300_000]).unwrap();
    let e = kiln_clip::preprocess(&img, &PreprocessConfig::default())
        .expect_err("extreme aspect")
        .to_string();
    assert!(e.contains("100000x1"), "{e}");
}

#[test]
fn resampler_matches_pillow_bit_exactly() {
    let meta = meta();
    let dir = fixtures().join("resize");
    let src = read_png(&dir.join("src_37x23.png"));
    let cases = meta["resize_cases"].as_array().expect("resize_cases");
    assert!(cases.len() >= 20);
    for case in cases {
        let filter = match case["filter"].as_u64() {
            Some(2) => Resample::Bilinear,
            Some(3) => Resample::Bicubic,
            other => panic!("filter {other:?}"),
        };
        let w = case["width"].as_u64().expect("width") as usize;
        let h = case["height"].as_u64().expect("height") as usize;
        let file = case["file"].as_str().expect("file");
        let want = read_png(&dir.join(file));
        let got = resize(&src, w, h, filter).expect("resize");
        let (n, m) = diff_u8(&got, &want);
        assert_eq!((n, m), (0, 0), "{file}: {n} bytes differ, max {m}");
    }
}
