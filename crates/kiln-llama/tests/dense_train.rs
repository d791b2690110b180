//! Dense fine-tuning (`full` and `partial`): one step's loss and the gradient of every tensor
//! equal transformers' (fixtures from `tools/make_dense_ft_fixtures.py`, tied and untied
//! embeddings); partial training touches only the top layers; a stopped run resumes to exactly
//! the tensors of an uninterrupted one; the result exports as an HF directory that loads back.

use std::path::PathBuf;

use kiln_backend::safetensors::SafetensorsFiles;
use kiln_llama::LlamaGenerator;
use kiln_llama::lora::NoAdapter;
use kiln_llama::train::{
    Batch, DataFormat, DenseParams, Method, PARAMS_FILE, TrainConfig, Trainer, load_examples,
    loss_sum_with, read_params,
};
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn autodiff_model(base: &str) -> LlamaGenerator {
    let device = kiln_backend::device("cpu").unwrap().autodiff();
    LlamaGenerator::open(root().join("llama").join(base), &device).unwrap()
}

fn rows<T: Copy>(v: &Value, f: impl Fn(&Value) -> T) -> Vec<T> {
    v.as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(&f).collect::<Vec<_>>())
        .collect()
}

/// Tolerances: the loss within 1e-5; every gradient element within 1e-5 absolute plus 1e-3 of the
/// largest element of its tensor (f32 summation order differs from PyTorch's).
fn one_full_step_matches(base: &str) {
    let dir = root().join("dense_ft").join(base);
    let r: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
            .unwrap();
    let model = autodiff_model(base);
    let llama = model.model().unwrap();
    let params = DenseParams::select(llama, Method::Full).unwrap();
    let ids: Vec<u32> = rows(&r["input_ids"], |x| x.as_u64().unwrap() as u32);
    let labels: Vec<i64> = rows(&r["labels"], |x| x.as_i64().unwrap());
    let b = r["input_ids"].as_array().unwrap().len();
    let batch = Batch {
        seq: ids.len() / b,
        ids,
        labels,
        batch: b,
    };
    let step = params.apply(llama, llama.device(), true);
    let (sum, n) = loss_sum_with(&step.model, &NoAdapter, &batch, None).unwrap();
    let loss = sum.div_scalar(n as f32);
    let value = loss.clone().into_data().try_into_vec::<f32>().unwrap()[0];
    let want = r["loss"].as_f64().unwrap() as f32;
    assert!(
        (value - want).abs() < 1e-5,
        "{base}: loss {value} vs {want}"
    );
    let grads = step.gradients(&loss.backward(), &params).unwrap();
    // The gradients in Hugging Face orientation, through the same transposition as the values.
    let as_hf = params.with_values(grads).unwrap().hf_tensors();
    let reference = SafetensorsFiles::open_file(dir.join("grads.safetensors")).unwrap();
    assert_eq!(as_hf.len(), reference.names().len(), "{base}: tensor count");
    for (name, shape, got) in &as_hf {
        let want = reference.f32(name, shape).unwrap();
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(scale > 0.0, "{base}: {name}: zero reference gradient");
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (g - w).abs() <= 1e-5 + 1e-3 * scale,
                "{base}: {name}: {g} vs {w} (scale {scale})"
            );
        }
    }
}

#[test]
fn one_full_step_matches_transformers_with_tied_embeddings() {
    one_full_step_matches("tied_mha");
}

#[test]
fn one_full_step_matches_transformers_gqa() {
    one_full_step_matches("gqa");
}

fn chat_data(dir: &std::path::Path) -> PathBuf {
    let mut lines = String::new();
    for (q, a) in [
        ("When does the mill open?", "The mill opens at dawn."),
        ("What does the baker sell?", "Bread, cakes and rolls."),
        ("Where is the bakery?", "In the town square."),
        ("What do farmers bring?", "They bring grain."),
    ] {
        lines.push_str(
            &serde_json::json!({"messages": [
                {"role": "user", "content": q},
                {"role": "assistant", "content": a}
            ]})
            .to_string(),
        );
        lines.push('\n');
    }
    let path = dir.join("train.jsonl");
    std::fs::write(&path, lines).unwrap();
    path
}

#[test]
fn partial_training_touches_only_the_top_layer_and_exports_a_model() {
    let base = root().join("llama/gqa");
    let model = autodiff_model("gqa");
    let tmp = tempfile::tempdir().unwrap();
    let examples = load_examples(&chat_data(tmp.path()), DataFormat::Auto, &model, 64).unwrap();
    let config = TrainConfig {
        method: Method::Partial { top_layers: 1 },
        lr: 3e-3,
        batch_size: 2,
        epochs: 4,
        max_steps: Some(6),
        warmup_steps: 1,
        progress: false,
        ..TrainConfig::default()
    };
    let out = tmp.path().join("partial");
    let report = Trainer::new(&model, config)
        .unwrap()
        .run(&examples, Some(&examples), &out)
        .unwrap();
    let (before, after) = (
        report.initial_eval_loss.unwrap(),
        report.final_eval_loss.unwrap(),
    );
    assert!(after < before - 0.1, "eval loss {before} -> {after}");
    let trained = read_params(&out.join(PARAMS_FILE)).unwrap();
    let last = model.config().num_hidden_layers - 1;
    assert!(
        trained
            .keys()
            .all(|k| k.starts_with(&format!("model.layers.{last}.")) || k == "model.norm.weight"),
        "{:?}",
        trained.keys().collect::<Vec<_>>()
    );
    assert_eq!(
        trained.len(),
        1 + 9,
        "top layer (2 norms + 7 projections) and the final norm"
    );

    let exported = tmp.path().join("exported");
    kiln_llama::export_hf(&base, &[], &trained, &exported, kiln_llama::MergeDtype::F32).unwrap();
    let original = SafetensorsFiles::open_file(base.join("model.safetensors")).unwrap();
    let written = SafetensorsFiles::open_file(exported.join("model.safetensors")).unwrap();
    for name in original.names() {
        let shape = original.shape(name).unwrap();
        let (a, b) = (
            original.f32(name, &shape).unwrap(),
            written.f32(name, &shape).unwrap(),
        );
        if trained.contains_key(name) {
            assert_ne!(a, b, "{name} was trained but is unchanged");
            assert_eq!(
                &b, &trained[name].1,
                "{name}: the export holds the trained values"
            );
        } else {
            assert_eq!(a, b, "{name} was frozen but changed");
        }
    }
    // The exported directory is a model Kiln (and transformers) loads.
    let reloaded = LlamaGenerator::open(&exported, &kiln_backend::device("cpu").unwrap()).unwrap();
    assert_eq!(
        reloaded.config().num_hidden_layers,
        model.config().num_hidden_layers
    );
}

#[test]
fn full_training_resumes_exactly() {
    let model = autodiff_model("tied_mha");
    let tmp = tempfile::tempdir().unwrap();
    let examples = load_examples(&chat_data(tmp.path()), DataFormat::Auto, &model, 64).unwrap();
    let config = TrainConfig {
        method: Method::Full,
        lr: 1e-3,
        batch_size: 2,
        epochs: 3,
        max_steps: Some(5),
        progress: false,
        save_every: 2,
        ..TrainConfig::default()
    };
    let whole = tmp.path().join("whole");
    let trainer = Trainer::new(&model, config.clone()).unwrap();
    let r = trainer.run(&examples, None, &whole).unwrap();
    assert_eq!(r.steps, 5);
    let split = tmp.path().join("split");
    let stopped = Trainer::new(
        &model,
        TrainConfig {
            stop_after: Some(3),
            ..config
        },
    )
    .unwrap();
    assert_eq!(stopped.run(&examples, None, &split).unwrap().steps, 3);
    assert!(
        !split.join(PARAMS_FILE).exists(),
        "a stopped run is not final"
    );
    let resumed = trainer.run(&examples, None, &split).unwrap();
    assert_eq!(resumed.resumed_from, Some(3));
    let a = read_params(&whole.join(PARAMS_FILE)).unwrap();
    let b = read_params(&split.join(PARAMS_FILE)).unwrap();
    assert_eq!(a.len(), b.len());
    for (k, v) in &a {
        assert_eq!(
            v, &b[k],
            "{k}: resumed run differs from the uninterrupted one"
        );
    }
    // Dense training refuses DP-SGD with a clear error.
    let dp = TrainConfig {
        method: Method::Full,
        dp: Some(kiln_llama::train::DpConfig {
            noise_multiplier: 1.0,
            max_grad_norm: 1.0,
            delta: 1e-5,
        }),
        progress: false,
        ..TrainConfig::default()
    };
    let e = Trainer::new(&model, dp)
        .unwrap()
        .run(&examples, None, &tmp.path().join("dp"))
        .unwrap_err();
    assert!(e.to_string().contains("DP-SGD"), "{e}");
}
