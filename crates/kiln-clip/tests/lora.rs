//! PEFT LoRA adapters on CLIP (fixture: tools/make_clip_lora_fixtures.py, q_proj / v_proj / fc1 of
//! both towers and visual_projection): applied on the fly and merged into the weights, Kiln gives
//! PEFT's embeddings and logits within 1e-4.

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use kiln_backend::safetensors::SafetensorsFiles;
use kiln_clip::lora::LoraHook;
use kiln_clip::model::l2_normalize;
use kiln_clip::{ClipConfig, TokenBatch};
use kiln_lora::LoraAdapter;
use kiln_lora::train::StepFactors;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clip_models")
}

fn close(what: &str, got: Tensor<2>, want: &[f32]) {
    let got = got
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap();
    let worst = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert_eq!(got.len(), want.len(), "{what}");
    assert!(worst <= 1e-4, "{what}: max abs diff {worst}");
}

#[test]
fn peft_adapter_matches_peft_on_the_fly_and_merged() {
    let device = Device::flex();
    let base = fixtures().join("quick_gelu_p4");
    let lora_dir = fixtures().join("quick_gelu_p4_lora");
    let config = ClipConfig::from_file(base.join("config.json")).unwrap();
    let files = SafetensorsFiles::open_file(base.join("model.safetensors")).unwrap();
    let mut model = config.load(&files, &device).unwrap();
    let adapter = LoraAdapter::load(lora_dir.join("adapter")).unwrap();
    assert_eq!(adapter.modules.len(), 16);

    let inputs = SafetensorsFiles::open_file(base.join("expected.safetensors")).unwrap();
    let ps = inputs.shape("pixel_values").unwrap();
    let pixels = Tensor::<4>::from_data(
        TensorData::new(
            inputs.f32("pixel_values", &ps).unwrap(),
            [ps[0], ps[1], ps[2], ps[3]],
        ),
        &device,
    );
    let is = inputs.shape("input_ids").unwrap();
    let ids = inputs
        .i64("input_ids", &is)
        .unwrap()
        .iter()
        .map(|&v| v as u32)
        .collect();
    let mask = inputs
        .i64("attention_mask", &is)
        .unwrap()
        .iter()
        .map(|&v| v != 0)
        .collect();
    let tokens = TokenBatch::new(ids, mask, is[0], is[1]).unwrap();
    let want = SafetensorsFiles::open_file(lora_dir.join("expected.safetensors")).unwrap();
    let (b, t, p) = (ps[0], is[0], config.projection_dim);

    // On the fly: the factors as a hook on the linear maps.
    let factors = StepFactors::frozen(&adapter, &device);
    let hook = LoraHook(&factors);
    let img = model.image_features_with(pixels.clone(), &hook).unwrap();
    let txt = model.text_features_with(&tokens, &hook).unwrap();
    close(
        "hooked image_embeds",
        l2_normalize(img.clone()),
        &want.f32("image_embeds", &[b, p]).unwrap(),
    );
    close(
        "hooked text_embeds",
        l2_normalize(txt.clone()),
        &want.f32("text_embeds", &[t, p]).unwrap(),
    );
    close(
        "hooked logits",
        model.logits(img, txt),
        &want.f32("logits_per_image", &[b, t]).unwrap(),
    );

    // Merged into the weights.
    model.merge_lora(&adapter, 1.0).unwrap();
    let img = model.image_features(pixels).unwrap();
    let txt = model.text_features(&tokens).unwrap();
    close(
        "merged logits",
        model.logits(img, txt),
        &want.f32("logits_per_image", &[b, t]).unwrap(),
    );
}
