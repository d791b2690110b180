//! Parity with transformers' `CLIPModel` on tiny random checkpoints made by
//! `tools/make_clip_model_fixtures.py` (quick_gelu and gelu, patch sizes 4/8/16, projection widths
//! 16/24/48, eos and legacy argmax pooling). Tolerance: 1e-4 absolute on every compared value.

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use kiln_backend::safetensors::SafetensorsFiles;
use kiln_clip::{ClipConfig, TokenBatch};

const TOL: f32 = 1e-4;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/clip_models")
        .join(name)
}

fn assert_close(what: &str, got: &Tensor<2>, want: &[f32]) {
    let got: Vec<f32> = got
        .to_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap();
    assert_eq!(got.len(), want.len(), "{what}: length");
    let worst = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst <= TOL, "{what}: max abs diff {worst} > {TOL}");
}

fn check(name: &str) {
    let dir = fixture(name);
    let device = Device::flex();
    let config = ClipConfig::from_file(dir.join("config.json")).unwrap();
    let files = SafetensorsFiles::open_file(dir.join("model.safetensors")).unwrap();
    let model = config.load(&files, &device).unwrap();
    let exp = SafetensorsFiles::open_file(dir.join("expected.safetensors")).unwrap();
    let shape = |n: &str| exp.shape(n).unwrap();

    let ps = shape("pixel_values");
    let pixels = Tensor::<4>::from_data(
        TensorData::new(
            exp.f32("pixel_values", &ps).unwrap(),
            [ps[0], ps[1], ps[2], ps[3]],
        ),
        &device,
    );
    let is = shape("input_ids");
    let ids: Vec<u32> = exp
        .i64("input_ids", &is)
        .unwrap()
        .iter()
        .map(|&v| v as u32)
        .collect();
    let mask: Vec<bool> = exp
        .i64("attention_mask", &is)
        .unwrap()
        .iter()
        .map(|&v| v != 0)
        .collect();
    let tokens = TokenBatch::new(ids, mask, is[0], is[1]).unwrap();

    let (last, pooled) = model.vision_model.forward(pixels.clone());
    let [b, s, h] = last.dims();
    assert_close(
        &format!("{name} vision last_hidden_state"),
        &last.reshape([b * s, h]),
        &exp.f32("vision_last_hidden_state", &[b, s, h]).unwrap(),
    );
    let states = model.vision_model.hidden_states(pixels.clone());
    let minus2 = states[states.len() - 2].clone().reshape([b * s, h]);
    assert_close(
        &format!("{name} vision hidden_states[-2]"),
        &minus2,
        &exp.f32("vision_hidden_state_minus2", &[b, s, h]).unwrap(),
    );
    let _ = pooled;

    let (tlast, _) = model.text_model.forward(&tokens).unwrap();
    let [tb, tl, th] = tlast.dims();
    assert_close(
        &format!("{name} text last_hidden_state"),
        &tlast.reshape([tb * tl, th]),
        &exp.f32("text_last_hidden_state", &[tb, tl, th]).unwrap(),
    );

    let img = model.image_features(pixels).unwrap();
    let txt = model.text_features(&tokens).unwrap();
    let p = img.dims()[1];
    assert_close(
        &format!("{name} image_embeds"),
        &kiln_clip::model::l2_normalize(img.clone()),
        &exp.f32("image_embeds", &[b, p]).unwrap(),
    );
    assert_close(
        &format!("{name} text_embeds"),
        &kiln_clip::model::l2_normalize(txt.clone()),
        &exp.f32("text_embeds", &[tb, p]).unwrap(),
    );
    assert_close(
        &format!("{name} vision pooled+projection"),
        &img,
        &exp.f32("vision_pooled", &[b, p]).unwrap(),
    );
    assert_close(
        &format!("{name} text pooled+projection"),
        &txt,
        &exp.f32("text_pooled", &[tb, p]).unwrap(),
    );
    assert_close(
        &format!("{name} logits_per_image"),
        &model.logits(img, txt),
        &exp.f32("logits_per_image", &[b, tb]).unwrap(),
    );
}

#[test]
fn quick_gelu_patch4_matches_transformers() {
    check("quick_gelu_p4");
}

#[test]
fn gelu_patch8_legacy_argmax_pooling_matches_transformers() {
    check("gelu_p8_legacy_eos");
}

#[test]
fn quick_gelu_patch16_wide_projection_matches_transformers() {
    check("quick_gelu_p16_wide_proj");
}
