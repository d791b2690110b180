//! Loading errors, saving in transformers' layout, and a short contrastive run.
//!
//! Saving is checked against the checkpoints transformers itself wrote
//! (tools/make_clip_model_fixtures.py): every tensor Kiln writes has transformers' name, shape and
//! exact values, so `CLIPModel.from_pretrained` reads the same model back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use kiln_backend::safetensors::SafetensorsFiles;
use kiln_clip::clip::default_preprocess;
use kiln_clip::train::{ContrastiveConfig, Pair, train_contrastive};
use kiln_clip::{Clip, ClipConfig, ClipError, ClipTokenizer, RgbImage};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/clip_models")
        .join(name)
}

fn all_tensors(path: &Path) -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let f = SafetensorsFiles::open_file(path).unwrap();
    f.names()
        .into_iter()
        .map(|n| {
            let s = f.shape(n).unwrap();
            (n.to_string(), (s.clone(), f.f32(n, &s).unwrap()))
        })
        .collect()
}

#[test]
fn saved_tensors_are_transformers_own() {
    let device = Device::flex();
    for name in [
        "quick_gelu_p4",
        "gelu_p8_legacy_eos",
        "quick_gelu_p16_wide_proj",
    ] {
        let dir = fixture(name);
        let config = ClipConfig::from_file(dir.join("config.json")).unwrap();
        let files = SafetensorsFiles::open_file(dir.join("model.safetensors")).unwrap();
        let model = config.load(&files, &device).unwrap();
        let out = tempfile::tempdir().unwrap();
        model.save_hf(&config, out.path()).unwrap();
        let want = all_tensors(&dir.join("model.safetensors"));
        let got = all_tensors(&out.path().join("model.safetensors"));
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "{name}: tensor names"
        );
        for (k, (shape, values)) in &want {
            let (gs, gv) = &got[k];
            assert_eq!(gs, shape, "{name}: {k} shape");
            assert!(
                gv.iter()
                    .zip(values)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{name}: {k} values differ"
            );
        }
        let again = ClipConfig::from_file(out.path().join("config.json")).unwrap();
        assert_eq!(again, config, "{name}: config round trip");
        let raw: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.path().join("config.json")).unwrap())
                .unwrap();
        assert_eq!(raw["architectures"][0], "CLIPModel");
        assert_eq!(raw["model_type"], "clip");
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn bad_checkpoints_are_errors_that_name_the_file_and_tensor() {
    let device = Device::flex();
    let dir = fixture("quick_gelu_p4");
    let config = ClipConfig::from_file(dir.join("config.json")).unwrap();

    // A config whose width disagrees with the weights: the mis-shaped tensor is named.
    let mut wide = config.clone();
    wide.vision_config.intermediate_size = 80;
    let files = SafetensorsFiles::open_file(dir.join("model.safetensors")).unwrap();
    let e = wide.load(&files, &device).unwrap_err().to_string();
    assert!(
        e.contains("vision_model.encoder.layers.0.mlp.fc1.weight") && e.contains("[80, 32]"),
        "{e}"
    );
    assert!(e.contains("model.safetensors"), "{e}");

    // More layers than the checkpoint has: the missing tensor is named.
    let mut deep = config.clone();
    deep.text_config.num_hidden_layers = 3;
    let e = deep.load(&files, &device).unwrap_err().to_string();
    assert!(
        e.contains("missing tensor") && e.contains("text_model.encoder.layers.2"),
        "{e}"
    );

    // A truncated safetensors file.
    let tmp = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let cut = tmp.path().join("model.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = SafetensorsFiles::open_file(&cut).unwrap_err().to_string();
    assert!(
        e.contains("model.safetensors") && e.contains("invalid safetensors"),
        "{e}"
    );

    // A directory without a tokenizer.
    let bare = tmp.path().join("bare");
    copy_dir(&dir, &bare);
    std::fs::remove_file(bare.join("expected.safetensors")).unwrap();
    let e = Clip::open(&bare, &device).unwrap_err();
    assert!(
        matches!(e, ClipError::Config { .. }) && e.to_string().contains("tokenizer"),
        "{e}"
    );

    // Pixels of the wrong size.
    let model = config.load(&files, &device).unwrap();
    let px = burn::tensor::Tensor::<4>::zeros([1, 3, 20, 20], &device);
    let e = model.image_features(px).unwrap_err().to_string();
    assert!(e.contains("[batch >= 1, 3, 16, 16]"), "{e}");
}

/// The training tests seed the flex device's global generator; running them one at a time keeps
/// each one's initialisation reproducible.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn gz_path() -> PathBuf {
    let cache = std::env::var_os("KILN_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/kiln")
        });
    cache.join("assets/clip/bpe_simple_vocab_16e6.txt.gz")
}

/// A flat-coloured 16x16 image.
fn swatch(rgb: [u8; 3]) -> RgbImage {
    RgbImage::new(
        16,
        16,
        rgb.iter().copied().cycle().take(16 * 16 * 3).collect(),
    )
    .unwrap()
}

#[test]
fn contrastive_training_learns_colours_and_the_saved_model_reopens() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let device = Device::flex();
    device.seed(7);
    let tokenizer = ClipTokenizer::from_bpe_gz(gz_path())
        .unwrap_or_else(|e| panic!("{e} (run scripts/fetch-assets.sh)"));
    let config = ClipConfig::from_json(
        r#"{"projection_dim": 16,
            "text_config": {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                            "num_attention_heads": 2, "max_position_embeddings": 12},
            "vision_config": {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                              "num_attention_heads": 2, "image_size": 16, "patch_size": 8}}"#,
        "inline",
    )
    .unwrap();
    let model = config.init(&device);
    let clip = Clip::new(model, config, tokenizer, default_preprocess(16), "colours").unwrap();
    let colours = [
        ("red", [220u8, 20, 20]),
        ("green", [20, 200, 30]),
        ("blue", [30, 40, 220]),
        ("yellow", [230, 220, 30]),
    ];
    let pairs: Vec<Pair> = colours
        .iter()
        .cycle()
        .take(64)
        .enumerate()
        .map(|(i, (name, rgb))| {
            let j = (i as u8 % 7) * 3;
            Pair {
                image: swatch([
                    rgb[0].saturating_sub(j),
                    rgb[1].saturating_sub(j),
                    rgb[2].saturating_sub(j),
                ]),
                caption: format!("a {name} square"),
                group: None,
            }
        })
        .collect();
    let cfg = ContrastiveConfig {
        epochs: 40,
        batch_size: 16,
        lr: 3e-3,
        warmup_steps: 10,
        progress: false,
        ..ContrastiveConfig::default()
    };
    let out = tempfile::tempdir().unwrap();
    let (clip, report) = train_contrastive(clip, &pairs, &cfg, Some(out.path())).unwrap();
    assert_eq!(report.steps, 160);
    let first: f32 = report.losses[..10].iter().sum::<f32>() / 10.0;
    let last: f32 = report.losses[150..].iter().sum::<f32>() / 10.0;
    // Each batch of 16 holds 4 copies of each caption, so the lowest reachable loss is ln 4.
    let floor = 4f32.ln();
    assert!(
        first > last + 0.5 && last < floor + 0.15,
        "loss {first} -> {last}, floor {floor}"
    );
    assert!(out.path().join("loss.png").is_file() && out.path().join("loss.csv").is_file());

    let labels: Vec<&str> = colours.iter().map(|(n, _)| *n).collect();
    for (name, rgb) in &colours {
        let top = &clip
            .zero_shot(&swatch(*rgb), &labels, "a {} square")
            .unwrap()[0];
        assert_eq!(top.label, *name, "zero-shot on a {name} swatch");
    }

    // Saved and reopened, the model gives the same embeddings.
    clip.save(out.path()).unwrap();
    let reopened = Clip::open(out.path(), &device).unwrap();
    let a = clip.embed_texts(&["a red square"]).unwrap();
    let b = reopened.embed_texts(&["a red square"]).unwrap();
    let ia = clip.embed_images(&[swatch([220, 20, 20])]).unwrap();
    let ib = reopened.embed_images(&[swatch([220, 20, 20])]).unwrap();
    for (x, y) in a[0].iter().zip(&b[0]).chain(ia[0].iter().zip(&ib[0])) {
        assert!((x - y).abs() < 1e-6);
    }
}

#[test]
fn lora_contrastive_training_lowers_the_loss_and_saves_a_peft_adapter() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let device = Device::flex();
    device.seed(3);
    let tokenizer = ClipTokenizer::from_bpe_gz(gz_path())
        .unwrap_or_else(|e| panic!("{e} (run scripts/fetch-assets.sh)"));
    let config = ClipConfig::from_json(
        r#"{"projection_dim": 16,
            "text_config": {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                            "num_attention_heads": 2, "max_position_embeddings": 12},
            "vision_config": {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                              "num_attention_heads": 2, "image_size": 16, "patch_size": 8}}"#,
        "inline",
    )
    .unwrap();
    let base = config.init(&device);
    let clip = Clip::new(
        base.clone(),
        config,
        tokenizer,
        default_preprocess(16),
        "lora",
    )
    .unwrap();
    let colours = [
        ("red", [220u8, 20, 20]),
        ("green", [20, 200, 30]),
        ("blue", [30, 40, 220]),
    ];
    let pairs: Vec<Pair> = colours
        .iter()
        .cycle()
        .take(48)
        .map(|(name, rgb)| Pair {
            image: swatch(*rgb),
            caption: format!("a {name} square"),
            group: None,
        })
        .collect();
    let lora: kiln_lora::LoraConfig = serde_json::from_value(serde_json::json!({
        "peft_type": "LORA", "r": 4, "lora_alpha": 8,
        "target_modules": ["q_proj", "v_proj", "fc1", "visual_projection", "text_projection"]
    }))
    .unwrap();
    let cfg = ContrastiveConfig {
        epochs: 30,
        batch_size: 12,
        lr: 1e-2,
        warmup_steps: 5,
        progress: false,
        lora: Some(lora),
        ..ContrastiveConfig::default()
    };
    let out = tempfile::tempdir().unwrap();
    let (trained, report) = train_contrastive(clip, &pairs, &cfg, Some(out.path())).unwrap();
    let n = report.losses.len();
    let first: f32 = report.losses[..10].iter().sum::<f32>() / 10.0;
    let last: f32 = report.losses[n - 10..].iter().sum::<f32>() / 10.0;
    assert!(last < first - 0.3, "loss {first} -> {last}");
    // The PEFT adapter on disk, applied to the untouched base, gives the merged model's output.
    let adapter = kiln_lora::LoraAdapter::load(out.path().join("adapter")).unwrap();
    assert_eq!(
        adapter.modules.len(),
        8,
        "q, v, fc1 of each tower's layer and the two projections"
    );
    let mut merged = base;
    merged.merge_lora(&adapter, 1.0).unwrap();
    let px = trained.pixel_values(&[swatch([220, 20, 20])]).unwrap();
    let a = trained.model().image_features(px.clone()).unwrap();
    let b = merged.image_features(px).unwrap();
    let (a, b) = (
        a.into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap(),
        b.into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap(),
    );
    assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-5));
}
