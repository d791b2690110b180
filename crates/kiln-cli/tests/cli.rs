//! The `kiln` binary end to end: answers on a fixture model, scores, and turns every kind of bad
//! model file into a clear error (naming the file and the problem), a non-zero exit and no panic.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kiln_llama::gguf::{GgmlType, GgufValue, GgufWriter};

fn kiln(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .output()
        .expect("run kiln")
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/llama")
        .join(name)
}

/// Runs `kiln generate` on `model` and checks it fails cleanly with a message holding every needle.
fn assert_fails(model: &Path, needles: &[&str]) {
    let out = kiln(&[
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--prompt",
        "hi",
        "--max-tokens",
        "2",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "expected failure for {}: {stderr}",
        model.display()
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "exit code for {}: {stderr}",
        model.display()
    );
    assert!(
        !stderr.contains("panicked"),
        "panic for {}: {stderr}",
        model.display()
    );
    for n in needles {
        assert!(
            stderr.contains(n),
            "stderr for {} lacks {n:?}: {stderr}",
            model.display()
        );
    }
}

/// A tiny llama GGUF: complete metadata and tokenizer; tensors chosen by the caller.
fn tiny_gguf(arch: &str, hidden: u32, tensors: &[(&str, Vec<usize>, GgmlType)]) -> GgufWriter {
    let mut w = GgufWriter::new();
    let tokens = ["<s>", "</s>", "a", "b", "c", "d", "e", "f"];
    w.metadata("general.architecture", arch)
        .metadata(format!("{arch}.context_length"), 64u32)
        .metadata(format!("{arch}.embedding_length"), hidden)
        .metadata(format!("{arch}.block_count"), 1u32)
        .metadata(format!("{arch}.feed_forward_length"), 64u32)
        .metadata(format!("{arch}.attention.head_count"), 2u32)
        .metadata(format!("{arch}.attention.head_count_kv"), 2u32)
        .metadata(format!("{arch}.attention.layer_norm_rms_epsilon"), 1e-5f32)
        .metadata("tokenizer.ggml.model", "gpt2")
        .metadata(
            "tokenizer.ggml.tokens",
            GgufValue::Array(tokens.iter().map(|&t| GgufValue::from(t)).collect()),
        )
        .metadata("tokenizer.ggml.merges", GgufValue::Array(Vec::new()))
        .metadata(
            "tokenizer.ggml.token_type",
            GgufValue::Array(
                tokens
                    .iter()
                    .enumerate()
                    .map(|(i, _)| GgufValue::I32(if i < 2 { 3 } else { 1 }))
                    .collect(),
            ),
        )
        .metadata("tokenizer.ggml.bos_token_id", 0u32)
        .metadata("tokenizer.ggml.eos_token_id", 1u32);
    for (name, shape, ty) in tensors {
        let n: usize = shape.iter().product();
        if ty.can_dequantize() {
            w.tensor_f32(name, shape, &vec![0.01; n], *ty).unwrap();
        } else {
            let bytes = vec![0u8; ty.bytes_for(n).unwrap()];
            w.tensor_raw(name, shape, *ty, bytes).unwrap();
        }
    }
    w
}

#[test]
fn generate_and_score_on_a_fixture() {
    let model = fixture("gqa");
    let out = kiln(&[
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--prompt",
        "the bread",
        "--temperature",
        "0",
        "--max-tokens",
        "5",
        "--ignore-eos",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["token_ids"].as_array().unwrap().len(), 5);
    assert_eq!(v["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 5);
    assert!(v["timings"]["decode_tokens_per_second"].as_f64().unwrap() > 0.0);
    assert!(v["timings"]["prefill_tokens_per_second"].as_f64().unwrap() > 0.0);

    // score: logprobs[i] = log p(ids[i+1] | ids[..=i]), checked against the transformers logits.
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(model.join("reference.json")).unwrap())
            .unwrap();
    let ids: Vec<u64> = r["input_ids"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect();
    let ids_arg = ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    let out = kiln(&[
        "score",
        "--model",
        model.to_str().unwrap(),
        "--ids",
        &ids_arg,
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let lps: Vec<f64> = s["logprobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert_eq!(lps.len(), ids.len() - 1);
    for (i, lp) in lps.iter().enumerate() {
        let row: Vec<f64> = r["logits"][0][i]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let lse = max + row.iter().map(|l| (l - max).exp()).sum::<f64>().ln();
        let want = row[ids[i + 1] as usize] - lse;
        assert!((lp - want).abs() < 1e-4, "position {i}: {lp} vs {want}");
    }
    let ppl = s["perplexity"].as_f64().unwrap();
    let mean = lps.iter().sum::<f64>() / lps.len() as f64;
    assert!((ppl - (-mean).exp()).abs() < 1e-6 * ppl);
}

#[test]
fn chat_needs_a_template_and_uses_it() {
    let model = fixture("gqa");
    let out = kiln(&[
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--chat",
        "--system",
        "be brief",
        "--prompt",
        "hi",
        "--temperature",
        "0",
        "--max-tokens",
        "3",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // <s><|im_start|>system ... : the rendered template starts with BOS (1) then <|im_start|> (3).
    assert_eq!(v["prompt_ids"][0], 1);
    assert_eq!(v["prompt_ids"][1], 3);
}

#[test]
fn gguf_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);

    std::fs::write(
        p("magic.gguf"),
        b"GGUX\x03\0\0\0rest of a file that is not gguf",
    )
    .unwrap();
    assert_fails(&p("magic.gguf"), &["magic.gguf", "magic"]);

    let full = tiny_gguf(
        "llama",
        32,
        &[("token_embd.weight", vec![8, 32], GgmlType::F32)],
    )
    .to_bytes()
    .unwrap();
    std::fs::write(p("truncated.gguf"), &full[..full.len() - 100]).unwrap();
    assert_fails(
        &p("truncated.gguf"),
        &["truncated.gguf", "token_embd.weight"],
    );
    std::fs::write(p("header-cut.gguf"), &full[..40]).unwrap();
    assert_fails(&p("header-cut.gguf"), &["header-cut.gguf", "invalid GGUF"]);

    tiny_gguf("mamba", 32, &[]).write(p("arch.gguf")).unwrap();
    assert_fails(
        &p("arch.gguf"),
        &["arch.gguf", "unsupported architecture `mamba`"],
    );

    tiny_gguf("llama", 32, &[])
        .write(p("missing.gguf"))
        .unwrap();
    assert_fails(
        &p("missing.gguf"),
        &["missing.gguf", "missing tensor `token_embd.weight`"],
    );

    tiny_gguf(
        "llama",
        32,
        &[("token_embd.weight", vec![8, 64], GgmlType::F32)],
    )
    .write(p("shape.gguf"))
    .unwrap();
    assert_fails(
        &p("shape.gguf"),
        &["shape.gguf", "token_embd.weight", "[8, 64]", "[8, 32]"],
    );

    tiny_gguf(
        "llama",
        256,
        &[("token_embd.weight", vec![8, 256], GgmlType::IQ2_XXS)],
    )
    .write(p("dtype.gguf"))
    .unwrap();
    assert_fails(
        &p("dtype.gguf"),
        &["dtype.gguf", "token_embd.weight", "IQ2_XXS"],
    );
}

fn copy_fixture(name: &str, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(fixture(name)).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn edit_config(dir: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(&path, serde_json::to_string(&v).unwrap()).unwrap();
}

#[test]
fn hf_directory_errors_are_clear() {
    let tmp = tempfile::tempdir().unwrap();

    let d = tmp.path().join("corrupt");
    copy_fixture("gqa", &d);
    let st = d.join("model.safetensors");
    let mut bytes = std::fs::read(&st).unwrap();
    bytes[8..16].copy_from_slice(b"{garbage");
    std::fs::write(&st, bytes).unwrap();
    assert_fails(&d, &["model.safetensors", "invalid safetensors"]);

    let d = tmp.path().join("huge-header");
    copy_fixture("gqa", &d);
    let st = d.join("model.safetensors");
    let mut bytes = std::fs::read(&st).unwrap();
    bytes[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    std::fs::write(&st, bytes).unwrap();
    assert_fails(&d, &["model.safetensors", "invalid safetensors"]);

    let d = tmp.path().join("missing");
    copy_fixture("gqa", &d);
    edit_config(&d, |c| c["num_hidden_layers"] = 3.into());
    assert_fails(
        &d,
        &["missing tensor `model.layers.2.input_layernorm.weight`"],
    );

    let d = tmp.path().join("shape");
    copy_fixture("gqa", &d);
    edit_config(&d, |c| c["intermediate_size"] = 100.into());
    assert_fails(
        &d,
        &[
            "model.safetensors",
            "model.layers.0.mlp.gate_proj.weight",
            "[176, 64]",
            "[100, 64]",
        ],
    );

    let d = tmp.path().join("arch");
    copy_fixture("gqa", &d);
    edit_config(&d, |c| c["model_type"] = "mamba".into());
    assert_fails(&d, &["config.json", "unsupported architecture `mamba`"]);

    let d = tmp.path().join("badjson");
    copy_fixture("gqa", &d);
    std::fs::write(d.join("config.json"), "{ not json").unwrap();
    assert_fails(&d, &["config.json", "malformed config"]);

    let d = tmp.path().join("shard");
    copy_fixture("sharded_f16", &d);
    std::fs::remove_file(d.join("model-00002-of-00003.safetensors")).unwrap();
    assert_fails(&d, &["model-00002-of-00003.safetensors"]);

    let f = tmp.path().join("notes.txt");
    std::fs::write(&f, "hello").unwrap();
    assert_fails(&f, &["notes.txt", "not a model"]);
    assert_fails(&tmp.path().join("nowhere"), &["nowhere"]);
}

#[test]
fn usage_errors_are_clear() {
    let model = fixture("gqa");
    let m = model.to_str().unwrap();
    let out = kiln(&[
        "generate", "--model", m, "--prompt", "x", "--device", "cuda:0",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    if !cfg!(feature = "cuda") {
        assert!(err.contains("`cuda` Cargo feature"), "{err}");
    }
    let out = kiln(&[
        "generate",
        "--model",
        m,
        "--prompt",
        "x",
        "--max-tokens",
        "100000",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("context length exceeded"),
        "{err}"
    );
    let out = kiln(&["generate", "--model", m, "--prompt", "x", "--top-p", "0"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("top_p"), "{err}");
    let out = kiln(&["score", "--model", m, "--ids", "1,99999"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("99999"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
