//! Projector training (LLaVA stage 1) on the tiny fixture: the answer loss falls, and the model
//! then picks each example's answer by its first token.

use std::path::Path;

use burn::tensor::Device;
use kiln_llava::train::{
    CaptionExample, ProjectorTrainConfig, choose_first_token, train_projector,
};
use kiln_llava::{LlavaModel, Projector};

#[test]
fn projector_training_lowers_the_loss_and_learns_the_answers() {
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/llava/default_minus2");
    let ad = Device::flex().autodiff();
    ad.seed(1);
    let model = LlavaModel::open(&dir, &ad).unwrap();
    let vin = model.config.vision.hidden_size;
    let per = model.config.tokens_per_image();
    let d = model.config.text.hidden_size;
    // Two kinds of "image" (features near +1 or near -1) with answers 40 and 50.
    let examples: Vec<CaptionExample> = (0..16)
        .map(|i| {
            let sign = if i % 2 == 0 { 1.0 } else { -1.0 };
            CaptionExample {
                features: (0..per * vin)
                    .map(|k| sign * (1.0 + 0.1 * ((k * 7 + i) % 5) as f32))
                    .collect(),
                prompt: vec![11, 12],
                answer: vec![if i % 2 == 0 { 40 } else { 50 }],
            }
        })
        .collect();
    let projector = Projector::init(vin, d, model.config.projector_act, true, &ad);
    let cfg = ProjectorTrainConfig {
        epochs: 40,
        batch_size: 4,
        lr: 2e-2,
        warmup_steps: 2,
        progress: false,
        ..ProjectorTrainConfig::default()
    };
    let out = tempfile::tempdir().unwrap();
    let (projector, report) = train_projector(
        projector,
        &model.language,
        model.config.image_token_id,
        &examples,
        &cfg,
        Some(out.path()),
    )
    .unwrap();
    let n = report.losses.len();
    let first = report.losses[..5].iter().sum::<f32>() / 5.0;
    let last = report.losses[n - 5..].iter().sum::<f32>() / 5.0;
    // The random tiny decoder's output layer cannot make very peaked logits (its final norm bounds
    // them), so the loss cannot approach 0; it must fall clearly, and the answers must be right.
    assert!(last < first - 0.5, "loss {first} -> {last}");
    assert!(out.path().join("loss.png").is_file());
    let picks = choose_first_token(
        &projector,
        &model.language,
        None,
        model.config.image_token_id,
        &examples,
        &[vec![40], vec![50]],
        8,
    )
    .unwrap();
    let right = picks
        .iter()
        .enumerate()
        .filter(|(i, p)| **p == i % 2)
        .count();
    assert_eq!(right, examples.len(), "{picks:?}");
}

#[test]
fn stage_two_trains_a_lora_adapter_on_the_language_model_too() {
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/llava/default_minus2");
    let ad = Device::flex().autodiff();
    ad.seed(2);
    let model = LlavaModel::open(&dir, &ad).unwrap();
    let vin = model.config.vision.hidden_size;
    let per = model.config.tokens_per_image();
    let d = model.config.text.hidden_size;
    let examples: Vec<CaptionExample> = (0..8)
        .map(|i| {
            let sign = if i % 2 == 0 { 1.0 } else { -1.0 };
            CaptionExample {
                features: (0..per * vin)
                    .map(|k| sign * (1.0 + 0.1 * ((k + i) % 3) as f32))
                    .collect(),
                prompt: vec![11, 12],
                answer: vec![if i % 2 == 0 { 40 } else { 50 }],
            }
        })
        .collect();
    let lora: kiln_llama::kiln_lora::LoraConfig = serde_json::from_value(serde_json::json!({
        "peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj", "lm_head"]
    }))
    .unwrap();
    let cfg = ProjectorTrainConfig {
        epochs: 20,
        batch_size: 4,
        lr: 2e-2,
        warmup_steps: 2,
        progress: false,
        lora: Some(lora),
        ..ProjectorTrainConfig::default()
    };
    let projector = Projector::init(vin, d, model.config.projector_act, true, &ad);
    let (projector, report) = train_projector(
        projector,
        &model.language,
        model.config.image_token_id,
        &examples,
        &cfg,
        None,
    )
    .unwrap();
    let adapter = report.adapter.expect("a stage-2 adapter");
    assert_eq!(
        adapter.modules.len(),
        2 * 2 + 1,
        "q and v of two layers, and lm_head"
    );
    assert!(
        adapter
            .modules
            .values()
            .any(|w| w.b.iter().any(|v| *v != 0.0)),
        "B starts at zero and must have been trained"
    );
    let n = report.losses.len();
    let first = report.losses[..5].iter().sum::<f32>() / 5.0;
    let last = report.losses[n - 5..].iter().sum::<f32>() / 5.0;
    assert!(last < first - 0.5, "loss {first} -> {last}");
    let picks = choose_first_token(
        &projector,
        &model.language,
        Some(&adapter),
        model.config.image_token_id,
        &examples,
        &[vec![40], vec![50]],
        8,
    )
    .unwrap();
    assert!(
        picks.iter().enumerate().all(|(i, p)| *p == i % 2),
        "{picks:?}"
    );
}
