//! `kiln template` and `kiln eval-prompts`: a rendered prompt on a fixture model, and clear errors
//! (non-zero exit, the file named, no panic) for bad input.

use std::path::PathBuf;
use std::process::{Command, Output};

fn kiln(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .output()
        .expect("run kiln")
}

fn fixture_model() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/llama/gqa")
        .display()
        .to_string()
}

/// Checks a clean failure whose stderr holds every needle.
fn assert_fails(out: &Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for n in needles {
        assert!(stderr.contains(n), "`{n}` not in: {stderr}");
    }
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let p = dir.path().join(name);
    std::fs::write(&p, text).expect("write");
    p.display().to_string()
}

#[test]
fn template_renders_the_models_chat_template() {
    let dir = tempfile::tempdir().expect("tempdir");
    let messages = write(&dir, "m.json", r#"[{"role": "user", "content": "Hi"}]"#);
    let model = fixture_model();
    let out = kiln(&[
        "template",
        "--model",
        &model,
        "--messages",
        &messages,
        "--add-generation-prompt",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "<s><|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
}

#[test]
fn template_refuses_bad_messages() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = fixture_model();
    let missing = dir.path().join("nope.json").display().to_string();
    assert_fails(
        &kiln(&["template", "--model", &model, "--messages", &missing]),
        &["nope.json", "messages"],
    );
    let malformed = write(&dir, "bad.json", r#"[{"role": "user", "content": "Hi"}"#);
    assert_fails(
        &kiln(&["template", "--model", &model, "--messages", &malformed]),
        &["bad.json", "not valid JSON"],
    );
    let no_role = write(&dir, "norole.json", r#"[{"content": "Hi"}]"#);
    assert_fails(
        &kiln(&["template", "--model", &model, "--messages", &no_role]),
        &["norole.json", "role"],
    );
    let scalar = write(&dir, "scalar.json", "42");
    assert_fails(
        &kiln(&["template", "--model", &model, "--messages", &scalar]),
        &["array of messages"],
    );
    let ok = write(&dir, "ok.json", r#"[{"role": "user", "content": "Hi"}]"#);
    let tools = write(&dir, "tools.json", r#"{"name": "f"}"#);
    assert_fails(
        &kiln(&[
            "template",
            "--model",
            &model,
            "--messages",
            &ok,
            "--tools",
            &tools,
        ]),
        &["tools.json", "array of tool definitions"],
    );
    let no_model = dir.path().join("missing.gguf").display().to_string();
    assert_fails(
        &kiln(&["template", "--model", &no_model, "--messages", &ok]),
        &["missing.gguf"],
    );
}

#[test]
fn eval_prompts_refuses_bad_input() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = fixture_model();
    let missing = dir.path().join("none.jsonl").display().to_string();
    assert_fails(
        &kiln(&[
            "eval-prompts",
            "--model",
            &model,
            "--data",
            &missing,
            "--strategy",
            "cot",
        ]),
        &["none.jsonl"],
    );
    let data = write(
        &dir,
        "d.jsonl",
        "{\"input\": \"2+2?\", \"answer\": 4}\n{\"input\": \"x\"}\n",
    );
    assert_fails(
        &kiln(&[
            "eval-prompts",
            "--model",
            &model,
            "--data",
            &data,
            "--strategy",
            "cot",
        ]),
        &["d.jsonl:2", "answer"],
    );
    assert_fails(
        &kiln(&[
            "eval-prompts",
            "--model",
            &model,
            "--data",
            &data,
            "--strategy",
            "telepathy",
        ]),
        &["unknown strategy `telepathy`"],
    );
}
