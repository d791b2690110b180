//! `kiln finetune` / `merge` / `eval` / `adapters average` end to end on a tiny fixture model,
//! including a training process killed with SIGKILL that resumes from its last checkpoint and
//! ends with exactly the adapter of an uninterrupted run.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn kiln(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .output()
        .expect("run kiln")
}

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/llama/gqa")
}

fn data(dir: &Path) -> PathBuf {
    let mut text = String::new();
    for i in 0..16 {
        let row = serde_json::json!({"messages": [
            {"role": "user", "content": format!("What is item {i}?")},
            {"role": "assistant", "content": format!("Item {i} is a lantern.")}
        ], "answer": "lantern"});
        text.push_str(&row.to_string());
        text.push('\n');
    }
    let p = dir.join("data.jsonl");
    std::fs::write(&p, text).unwrap();
    p
}

fn finetune_args<'a>(data: &'a str, out: &'a str, steps: &'a str) -> Vec<&'a str> {
    let model = Box::leak(fixture().to_string_lossy().into_owned().into_boxed_str());
    vec![
        "finetune",
        "--model",
        model,
        "--data",
        data,
        "--output",
        out,
        "--r",
        "4",
        "--alpha",
        "8",
        "--lr",
        "5e-3",
        "--batch-size",
        "2",
        "--epochs",
        "40",
        "--max-steps",
        steps,
        "--save-every",
        "1",
        "--dropout",
        "0.1",
        "--json",
    ]
}

fn ok(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "kiln failed: {stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn latest_step(out: &Path) -> usize {
    std::fs::read_to_string(out.join("checkpoints/latest"))
        .ok()
        .and_then(|s| s.trim().strip_prefix("step-")?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_killed_training_run_resumes_to_the_same_adapter() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data(tmp.path());
    let data = data.to_str().unwrap();
    let full = tmp.path().join("full");
    let report: serde_json::Value = serde_json::from_str(&ok(&kiln(&finetune_args(
        data,
        full.to_str().unwrap(),
        "160",
    ))))
    .unwrap();
    assert_eq!(report["steps"], 160);

    let killed = tmp.path().join("killed");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(finetune_args(data, killed.to_str().unwrap(), "160"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while latest_step(&killed) < 3 {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no checkpoint appeared"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let at = latest_step(&killed);
    assert!(at < 160, "the run was not interrupted");
    // The checkpoint the pointer names is complete and loadable.
    let ckpt = killed.join(format!("checkpoints/step-{at}"));
    assert!(ckpt.join("adapter_model.safetensors").exists());
    assert!(ckpt.join("trainer_state.json").exists());

    let report: serde_json::Value = serde_json::from_str(&ok(&kiln(&finetune_args(
        data,
        killed.to_str().unwrap(),
        "160",
    ))))
    .unwrap();
    assert!(report["resumed_from"].as_u64().unwrap() >= at as u64);
    assert_eq!(report["steps"], 160);
    let a = std::fs::read(full.join("adapter_model.safetensors")).unwrap();
    let b = std::fs::read(killed.join("adapter_model.safetensors")).unwrap();
    assert!(a == b, "the resumed run ended with a different adapter");
    assert!(full.join("loss.png").exists() && full.join("loss.csv").exists());
}

#[test]
fn merge_eval_and_average_run_on_a_trained_adapter() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data(tmp.path());
    let d = data.to_str().unwrap();
    let a = tmp.path().join("a");
    ok(&kiln(&finetune_args(d, a.to_str().unwrap(), "6")));
    let merged = tmp.path().join("merged");
    let model = fixture();
    let out = ok(&kiln(&[
        "merge",
        "--model",
        model.to_str().unwrap(),
        "--adapter",
        a.to_str().unwrap(),
        "--output",
        merged.to_str().unwrap(),
    ]));
    assert!(out.contains("merged"), "{out}");
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        assert!(merged.join(f).exists(), "{f}");
    }
    // The merged model scores the text as the base with the adapter does.
    let score = |args: &[&str]| -> f64 {
        let v: serde_json::Value = serde_json::from_str(&ok(&kiln(args))).unwrap();
        v["perplexity"].as_f64().unwrap()
    };
    let text = "Item 3 is a lantern.";
    let with_adapter = score(&[
        "score",
        "--model",
        model.to_str().unwrap(),
        "--adapter",
        a.to_str().unwrap(),
        "--text",
        text,
        "--json",
    ]);
    let merged_ppl = score(&[
        "score",
        "--model",
        merged.to_str().unwrap(),
        "--text",
        text,
        "--json",
    ]);
    let base = score(&[
        "score",
        "--model",
        model.to_str().unwrap(),
        "--text",
        text,
        "--json",
    ]);
    assert!(
        (with_adapter - merged_ppl).abs() < 1e-3 * with_adapter,
        "{with_adapter} vs {merged_ppl}"
    );
    assert!(
        (with_adapter - base).abs() > 1e-3,
        "the adapter changed nothing"
    );

    let report: serde_json::Value = serde_json::from_str(&ok(&kiln(&[
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--adapter",
        a.to_str().unwrap(),
        "--data",
        d,
        "--max-tokens",
        "8",
        "--json",
    ])))
    .unwrap();
    assert_eq!(report["count"], 16);
    assert!(report["perplexity"].as_f64().unwrap() > 1.0);

    let avg = tmp.path().join("avg");
    let out = ok(&kiln(&[
        "adapters",
        "average",
        a.to_str().unwrap(),
        a.to_str().unwrap(),
        "--weights",
        "1,3",
        "--output",
        avg.to_str().unwrap(),
    ]));
    assert!(out.contains("averaged 2 adapters"), "{out}");
    // The average of an adapter with itself is that adapter.
    let same = score(&[
        "score",
        "--model",
        model.to_str().unwrap(),
        "--adapter",
        avg.to_str().unwrap(),
        "--text",
        text,
        "--json",
    ]);
    assert!((same - with_adapter).abs() < 1e-4 * with_adapter);
}

#[test]
fn distillation_from_a_teacher_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data(tmp.path());
    let out = tmp.path().join("kd");
    let model = fixture();
    let mut args = finetune_args(data.to_str().unwrap(), out.to_str().unwrap(), "4");
    args.extend([
        "--teacher",
        model.to_str().unwrap(),
        "--distill-alpha",
        "0.5",
    ]);
    let report: serde_json::Value = serde_json::from_str(&ok(&kiln(&args))).unwrap();
    assert_eq!(report["steps"], 4);
    assert!(out.join("adapter_model.safetensors").exists());
}

#[test]
fn bad_finetune_input_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}\nnot json\n",
    )
    .unwrap();
    let out = kiln(&finetune_args(
        bad.to_str().unwrap(),
        tmp.path().join("o").to_str().unwrap(),
        "2",
    ));
    assert_eq!(out.status.code(), Some(1));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("bad.jsonl:1") && e.contains("assistant"), "{e}");
    let out = kiln(&[
        "merge",
        "--model",
        fixture().to_str().unwrap(),
        "--adapter",
        "/nonexistent/adapter",
        "--output",
        tmp.path().join("m").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("/nonexistent/adapter"), "{e}");
}

/// `--device cpu,cpu`: the micro-batches of each step spread over two copies of the model give
/// the adapter of one device, byte for byte (dropout on, so the per-micro-batch seeds matter).
#[test]
fn two_devices_train_the_adapter_of_one() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data(tmp.path());
    let data = data.to_str().unwrap();
    let mut outputs = Vec::new();
    for devices in ["cpu", "cpu,cpu"] {
        let out = tmp.path().join(devices.replace(',', "-"));
        let mut args = finetune_args(data, out.to_str().unwrap(), "4");
        args.extend(["--grad-accum", "2", "--device", devices]);
        ok(&kiln(&args));
        outputs.push(std::fs::read(out.join("adapter_model.safetensors")).unwrap());
    }
    assert_eq!(outputs[0], outputs[1], "two devices changed the adapter");
    let bad = kiln(&[
        "finetune",
        "--model",
        fixture().to_str().unwrap(),
        "--data",
        data,
        "--output",
        tmp.path().join("bad").to_str().unwrap(),
        "--method",
        "full",
        "--device",
        "cpu,cpu",
    ]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("LoRA"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}
