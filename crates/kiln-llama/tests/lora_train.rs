//! LoRA training on burn's autodiff: one step's loss and adapter gradients equal PEFT's (fixture
//! from `tools/make_lora_fixtures.py`), and the trainer lowers the loss, writes its curve, and
//! resumes from a checkpoint to exactly the adapter an uninterrupted run produces.

use std::path::PathBuf;

use kiln_backend::kernels::WeightFormat;
use kiln_llama::LlamaGenerator;
use kiln_llama::kiln_lora::LoraAdapter;
use kiln_llama::kiln_lora::train::StepFactors;
use kiln_llama::model::LinearWeight;
use kiln_llama::train::{Batch, DataFormat, TrainConfig, Trainer, load_examples, loss_sum};
use safetensors::SafeTensors;
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

/// One step of the `train_step` fixture on `model`: the loss and every adapter gradient against
/// the reference files. Tolerances: the loss within 1e-5 absolute; every gradient element within
/// 1e-5 absolute plus 1e-3 of the largest element of its tensor (f32 summation order differs from
/// PyTorch's).
fn check_step(model: &LlamaGenerator, reference: &str, grads_file: &str) {
    let dir = root().join("lora/train_step");
    let r: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
            .unwrap();
    let want_loss: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(reference)).unwrap()).unwrap();
    let llama = model.model().unwrap();
    let adapter = LoraAdapter::load(dir.join("adapter")).unwrap();
    let ids: Vec<u32> = rows(&r["input_ids"], |x| x.as_u64().unwrap() as u32);
    let labels: Vec<i64> = rows(&r["labels"], |x| x.as_i64().unwrap());
    let b = r["input_ids"].as_array().unwrap().len();
    let batch = Batch {
        seq: ids.len() / b,
        ids,
        labels,
        batch: b,
    };
    let factors = StepFactors::new(&adapter, llama.device(), 0.0, 0);
    let (sum, n) = loss_sum(llama, &factors, &batch).unwrap();
    let loss = sum.div_scalar(n as f32);
    let value = loss.clone().into_data().try_into_vec::<f32>().unwrap()[0];
    let want = want_loss["loss"].as_f64().unwrap() as f32;
    assert!((value - want).abs() < 1e-5, "loss {value} vs PEFT {want}");
    let grads = factors.gradients(&loss.backward()).unwrap();
    let bytes = std::fs::read(dir.join(grads_file)).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(grads.len() * 2, st.len());
    for (module, (da, db)) in &grads {
        for (tag, got) in [("lora_A", da), ("lora_B", db)] {
            let name = format!("base_model.model.{module}.{tag}.weight");
            let view = st.tensor(&name).unwrap();
            let want: Vec<f32> = view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
            assert!(scale > 0.0, "{name}: PEFT gradient is zero");
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    (g - w).abs() <= 1e-5 + 1e-3 * scale,
                    "{name}: {g} vs PEFT {w} (scale {scale})"
                );
            }
        }
    }
}

#[test]
fn one_training_step_matches_peft() {
    check_step(
        &autodiff_model("gqa"),
        "reference.json",
        "grads.safetensors",
    );
}

/// QLoRA: the base opened with `open_qlora` keeps every decoder projection frozen as NF4 blocks
/// (burn's graph never holds them as tensors; the products run on the blocks), and one step equals
/// PEFT's on the base bitsandbytes rounds to NF4, with the tolerances of `check_step`.
#[test]
fn one_qlora_training_step_matches_peft_on_the_nf4_base() {
    let device = kiln_backend::device("cpu").unwrap().autodiff();
    let model = LlamaGenerator::open_qlora(root().join("llama/gqa"), &device).unwrap();
    let llama = model.model().unwrap();
    for layer in &llama.layers {
        for linear in [
            &layer.self_attn.q_proj,
            &layer.self_attn.k_proj,
            &layer.self_attn.v_proj,
            &layer.self_attn.o_proj,
            &layer.mlp.gate_proj,
            &layer.mlp.up_proj,
            &layer.mlp.down_proj,
        ] {
            match &linear.weight {
                // NF4 blocks of 64 must not straddle rows to be multiplied row by row; the
                // fixture's down_proj (176 inputs) is held as its NF4-rounded values in F32.
                LinearWeight::Frozen(w) if w.in_features() % 64 == 0 => {
                    assert_eq!(w.matrix().format(), WeightFormat::Nf4);
                }
                LinearWeight::Frozen(w) => assert_eq!(w.matrix().format(), WeightFormat::F32),
                LinearWeight::Dense(_) => panic!("a QLoRA projection is dense"),
            }
        }
    }
    check_step(&model, "qlora_reference.json", "qlora_grads.safetensors");
}

fn chat_data(dir: &std::path::Path) -> PathBuf {
    let mut lines = String::new();
    for (q, a) in [
        ("When does the mill open?", "The mill opens at dawn."),
        ("What does the baker sell?", "Bread, cakes and rolls."),
        ("Where is the bakery?", "In the town square."),
        ("What do farmers bring?", "They bring grain."),
        ("What do they take home?", "Sacks of flour."),
        ("What smells of cinnamon?", "The bakery does."),
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
fn trainer_lowers_the_loss_and_resumes_exactly() {
    let model = autodiff_model("gqa");
    let tmp = tempfile::tempdir().unwrap();
    let data = chat_data(tmp.path());
    let examples = load_examples(&data, DataFormat::Auto, &model, 64).unwrap();
    assert_eq!(examples.len(), 6);
    // Only assistant tokens are labelled.
    let e = &examples[0];
    let labelled = e.labels.iter().filter(|&&l| l >= 0).count();
    assert!(
        labelled > 0 && labelled < e.ids.len() / 2,
        "{labelled} of {}",
        e.ids.len()
    );
    let config = TrainConfig {
        lr: 5e-3,
        batch_size: 2,
        grad_accum: 1,
        epochs: 3,
        warmup_steps: 1,
        max_steps: Some(8),
        progress: false,
        save_every: 2,
        ..TrainConfig::default()
    };
    let trainer = Trainer::new(&model, config.clone()).unwrap();
    let full = tmp.path().join("full");
    let report = trainer.run(&examples, Some(&examples), &full).unwrap();
    assert_eq!(report.steps, 8);
    let (before, after) = (
        report.initial_eval_loss.unwrap(),
        report.final_eval_loss.unwrap(),
    );
    assert!(after < before - 0.1, "eval loss {before} -> {after}");
    for f in [
        "adapter_config.json",
        "adapter_model.safetensors",
        "loss.csv",
        "loss.png",
    ] {
        assert!(full.join(f).exists(), "{f} missing");
    }
    let png = std::fs::read(full.join("loss.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");

    // A run stopped after 4 steps (as a kill would stop it), then started again, resumes from
    // its step-4 checkpoint and ends with exactly the adapter of the uninterrupted run.
    let split = tmp.path().join("split");
    let stopped = Trainer::new(
        &model,
        TrainConfig {
            stop_after: Some(4),
            ..config.clone()
        },
    )
    .unwrap();
    let r = stopped.run(&examples, None, &split).unwrap();
    assert_eq!(r.steps, 4);
    assert!(
        !split.join("adapter_model.safetensors").exists(),
        "a stopped run is not final"
    );
    let resumed = trainer.run(&examples, None, &split).unwrap();
    assert_eq!(resumed.resumed_from, Some(4));
    assert_eq!(resumed.steps, 8);
    let a = LoraAdapter::load(&full).unwrap();
    let b = LoraAdapter::load(&split).unwrap();
    assert_eq!(
        a.modules, b.modules,
        "resumed run differs from the uninterrupted one"
    );
}

/// The distillation loss equals `(1 − α)·CE + α·T²·KL(p_teacher ‖ p_student)` computed on the
/// host in f64 from the two models' logits (student: the base + an adapter on the CPU engine;
/// teacher: the base), within 1e-4 relative; a student equal to its teacher has zero KL.
#[test]
fn distillation_loss_matches_a_host_computation() {
    use kiln_core::AdapterChoice;
    use kiln_llama::train::{Distill, loss_sum_distilled, teacher_logits};
    use kiln_llama::{EngineKind, LoadOptions};
    let model = autodiff_model("gqa");
    let llama = model.model().unwrap();
    let dir = root().join("lora/train_step");
    let r: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
            .unwrap();
    let ids: Vec<u32> = rows(&r["input_ids"], |x| x.as_u64().unwrap() as u32);
    let labels: Vec<i64> = rows(&r["labels"], |x| x.as_i64().unwrap());
    let batch = Batch {
        seq: ids.len() / 2,
        ids,
        labels,
        batch: 2,
    };
    let cpu = LoadOptions {
        engine: EngineKind::Cpu,
        ..LoadOptions::default()
    };
    let teacher = LlamaGenerator::load(root().join("llama/gqa"), &cpu).unwrap();
    let v = llama.config.vocab_size;
    let tl = teacher_logits(&teacher, &batch, v).unwrap();
    let adapter = LoraAdapter::load(dir.join("adapter")).unwrap();
    let factors = StepFactors::new(&adapter, llama.device(), 0.0, 0);
    let d = Distill {
        alpha: 0.7,
        temperature: 2.0,
    };
    let (sum, n) = loss_sum_distilled(llama, &factors, &batch, Some((&tl, d))).unwrap();
    let got = f64::from(sum.into_data().try_into_vec::<f32>().unwrap()[0]);

    teacher.load_adapter("s", dir.join("adapter")).unwrap();
    let mix = teacher
        .mix(&[AdapterChoice {
            name: "s".into(),
            weight: 1.0,
        }])
        .unwrap();
    let (mut ce, mut kl, mut k) = (0f64, 0f64, 0usize);
    let t = batch.seq;
    let lsm = |row: &[f32], temp: f64| -> Vec<f64> {
        let m = row
            .iter()
            .fold(f64::NEG_INFINITY, |a, &x| a.max(f64::from(x) / temp));
        let z: f64 = row.iter().map(|&x| (f64::from(x) / temp - m).exp()).sum();
        row.iter()
            .map(|&x| f64::from(x) / temp - m - z.ln())
            .collect()
    };
    for b in 0..2 {
        let s = teacher
            .forward_all_with(&batch.ids[b * t..(b + 1) * t], &mix)
            .unwrap();
        for i in 1..t {
            let l = batch.labels[b * t + i];
            if l < 0 {
                continue;
            }
            let srow = &s[(i - 1) * v..i * v];
            let trow = &tl[k * v..(k + 1) * v];
            ce -= lsm(srow, 1.0)[l as usize];
            let (ps, pt) = (lsm(srow, 2.0), lsm(trow, 2.0));
            kl += pt
                .iter()
                .zip(&ps)
                .map(|(a, b)| a.exp() * (a - b))
                .sum::<f64>();
            k += 1;
        }
    }
    assert_eq!(k, n);
    let want = 0.3 * ce + 0.7 * 4.0 * kl;
    assert!((got - want).abs() <= 1e-4 * want.abs(), "{got} vs {want}");
    assert!(
        kl > 1e-3,
        "the adapter should move the student away from the teacher"
    );
    // A student identical to its teacher: zero-B adapter, KL 0, loss = (1 − α)·CE.
    let mut zero = adapter.clone();
    zero.modules
        .values_mut()
        .for_each(|w| w.b.iter_mut().for_each(|x| *x = 0.0));
    let f0 = StepFactors::new(&zero, llama.device(), 0.0, 0);
    let (kd, _) = loss_sum_distilled(llama, &f0, &batch, Some((&tl, d))).unwrap();
    let (plain, _) = loss_sum(llama, &f0, &batch).unwrap();
    let (kd, plain) = (
        kd.into_data().try_into_vec::<f32>().unwrap()[0],
        plain.into_data().try_into_vec::<f32>().unwrap()[0],
    );
    assert!((kd - 0.3 * plain).abs() < 1e-3, "{kd} vs {}", 0.3 * plain);
}

/// DP-SGD: per-example clipping and noise change the update (σ = 0 is deterministic, σ > 0
/// differs from it), and the reported ε is Opacus' RDP accounting for the run's sampling rate.
#[test]
fn dp_sgd_reports_the_privacy_spent() {
    use kiln_llama::kiln_lora::train::privacy::RdpAccountant;
    use kiln_llama::train::DpConfig;
    let model = autodiff_model("gqa");
    let tmp = tempfile::tempdir().unwrap();
    let data = chat_data(tmp.path());
    let examples = load_examples(&data, DataFormat::Auto, &model, 64).unwrap();
    let run = |noise: f64, dir: &str| {
        let config = TrainConfig {
            lr: 5e-3,
            batch_size: 2,
            max_steps: Some(3),
            progress: false,
            dp: Some(DpConfig {
                noise_multiplier: noise,
                max_grad_norm: 0.5,
                delta: 1e-5,
            }),
            ..TrainConfig::default()
        };
        let out = tmp.path().join(dir);
        let report = Trainer::new(&model, config)
            .unwrap()
            .run(&examples, None, &out)
            .unwrap();
        (report, LoraAdapter::load(&out).unwrap())
    };
    let (r0, a0) = run(0.0, "quiet");
    let (r0b, a0b) = run(0.0, "quiet2");
    assert_eq!(a0.modules, a0b.modules, "σ = 0 is deterministic");
    assert_eq!(r0.dp_epsilon, r0b.dp_epsilon);
    assert!(r0.dp_epsilon.unwrap().is_infinite(), "no noise, no privacy");
    let (r1, a1) = run(1.1, "noisy");
    assert_ne!(a0.modules, a1.modules, "noise changed nothing");
    let mut acc = RdpAccountant::new();
    acc.steps(1.1, 2.0 / 6.0, 3).unwrap();
    let want = acc.epsilon(1e-5).unwrap().0;
    let got = r1.dp_epsilon.unwrap();
    assert!(
        got.is_finite() && (got - want).abs() < 1e-12,
        "{got} vs {want}"
    );
}

/// Data parallelism: the same run with its micro-batches spread over the model and two replicas
/// (three copies on the CPU device here; on a GPU machine, one per device) ends with exactly the
/// adapter of the one-device run, bit for bit, and refuses what it cannot do.
#[test]
fn replicas_on_other_devices_train_the_same_adapter() {
    let model = autodiff_model("gqa");
    let replicas = [autodiff_model("gqa"), autodiff_model("gqa")];
    let tmp = tempfile::tempdir().unwrap();
    let data = chat_data(tmp.path());
    let examples = load_examples(&data, DataFormat::Auto, &model, 64).unwrap();
    let config = TrainConfig {
        lr: 5e-3,
        batch_size: 1,
        grad_accum: 4,
        epochs: 2,
        max_steps: Some(3),
        progress: false,
        ..TrainConfig::default()
    };
    let one = tmp.path().join("one");
    let r1 = Trainer::new(&model, config.clone())
        .unwrap()
        .run(&examples, None, &one)
        .unwrap();
    let three = tmp.path().join("three");
    let r3 = Trainer::new(&model, config.clone())
        .unwrap()
        .with_replicas(&replicas)
        .unwrap()
        .run(&examples, None, &three)
        .unwrap();
    assert_eq!(r1.steps, 3);
    assert_eq!(
        r1.log.iter().map(|e| e.loss).collect::<Vec<_>>(),
        r3.log.iter().map(|e| e.loss).collect::<Vec<_>>()
    );
    let (a, b) = (
        LoraAdapter::load(&one).unwrap(),
        LoraAdapter::load(&three).unwrap(),
    );
    assert_eq!(
        a.modules, b.modules,
        "data parallel differs from one device"
    );
    // Dense methods are refused with replicas.
    let dense = TrainConfig {
        method: kiln_llama::train::Method::Full,
        ..config
    };
    let e = Trainer::new(&model, dense)
        .unwrap()
        .with_replicas(&replicas)
        .unwrap_err();
    assert!(e.to_string().contains("LoRA"), "{e}");
}
