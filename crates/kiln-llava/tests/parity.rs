//! Parity with transformers' `LlavaForConditionalGeneration` on tiny random checkpoints made by
//! `tools/make_llava_fixtures.py`: logits of prompts with images within 1e-4 absolute, for the
//! default strategy (class token dropped, layer -2, projector with bias, one image) and the full
//! strategy (class token kept, layers [-3, -1] concatenated, no projector bias, two images).

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use kiln_backend::safetensors::SafetensorsFiles;
use kiln_llava::LlavaModel;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/llava")
        .join(name)
}

fn check(name: &str) {
    let dir = fixture(name);
    let device = Device::flex();
    let model = LlavaModel::open(&dir, &device).unwrap();
    let exp = SafetensorsFiles::open_file(dir.join("expected.safetensors")).unwrap();
    let ps = exp.shape("pixel_values").unwrap();
    let pixels = Tensor::<4>::from_data(
        TensorData::new(
            exp.f32("pixel_values", &ps).unwrap(),
            [ps[0], ps[1], ps[2], ps[3]],
        ),
        &device,
    );
    let is = exp.shape("input_ids").unwrap();
    let ids: Vec<u32> = exp
        .i64("input_ids", &is)
        .unwrap()
        .iter()
        .map(|&v| v as u32)
        .collect();
    let mut cache = model.new_cache(is[1]);
    let logits = model
        .forward(&ids, is[0], Some(pixels.clone()), &mut cache)
        .unwrap();
    let ls = exp.shape("logits").unwrap();
    assert_eq!(logits.dims().to_vec(), ls, "{name}: logits shape");
    let want = exp.f32("logits", &ls).unwrap();
    let got = logits
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap();
    let worst = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst <= 1e-4, "{name}: max abs logit diff {worst}");

    // A prompt whose placeholder count does not match the images is a clear error.
    let short: Vec<u32> = ids[..ids.len() / is[0] - 2].to_vec();
    let mut cache = model.new_cache(short.len());
    let one = pixels.clone().slice([0..1, 0..ps[1], 0..ps[2], 0..ps[3]]);
    let per = model.config.tokens_per_image();
    let mut bad = vec![1u32, model.config.image_token_id];
    bad.extend(
        short
            .iter()
            .filter(|&&t| t != model.config.image_token_id)
            .take(3),
    );
    let e = model
        .forward(&bad, 1, Some(one), &mut cache)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("1 image tokens") && e.contains(&format!("{per} tokens")),
        "{e}"
    );
}

#[test]
fn default_strategy_layer_minus2_matches_transformers() {
    check("default_minus2");
}

#[test]
fn hub_key_layout_loads_the_same_model() {
    check("default_minus2_hub_layout");
}

#[test]
fn full_strategy_multilayer_two_images_matches_transformers() {
    check("full_multilayer");
}

#[test]
fn config_errors_name_the_field() {
    let e = kiln_llava::LlavaConfig::from_json(
        r#"{"model_type":"llava","vision_config":{"model_type":"siglip_vision_model"},"text_config":{}}"#,
        "c.json",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("c.json") && e.contains("siglip_vision_model"),
        "{e}"
    );
    let text = std::fs::read_to_string(fixture("default_minus2").join("config.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["vision_feature_layer"] = serde_json::json!(-9);
    let e = kiln_llava::LlavaConfig::from_json(&v.to_string(), "c.json")
        .unwrap_err()
        .to_string();
    assert!(e.contains("vision_feature_layer"), "{e}");
    v["vision_feature_layer"] = serde_json::json!(-2);
    v["vision_feature_select_strategy"] = serde_json::json!("cls");
    let e = kiln_llava::LlavaConfig::from_json(&v.to_string(), "c.json")
        .unwrap_err()
        .to_string();
    assert!(e.contains("vision_feature_select_strategy"), "{e}");
}
