//! Loading versioned prompts from a directory and selecting them by task.

use kiln_prompt::{Error, PromptRegistry};
use serde_json::json;

fn write(dir: &std::path::Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write prompt file");
}

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-prompt-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[test]
fn loads_a_directory_and_selects_by_task_and_version() {
    let dir = temp_dir("ok");
    write(
        &dir,
        "intent.json",
        r#"[
          {"name": "intent", "version": 1, "task": "classification",
           "template": "Intent of: {text}"},
          {"name": "intent", "version": 3, "task": "classification", "description": "with labels",
           "template": "Labels: {labels}\nMessage: {text}\nIntent:",
           "variables": [{"name": "labels", "type": "list", "default": ["refund", "shipping"]}]}
        ]"#,
    );
    write(
        &dir,
        "qa.json",
        r#"{"name": "qa", "version": 2, "task": "qa", "syntax": "jinja",
            "template": "{% for e in examples %}Q: {{ e.q }}\nA: {{ e.a }}\n\n{% endfor %}Q: {{ question }}\nA:",
            "variables": [{"name": "examples", "type": "list", "default": []},
                          {"name": "question", "type": "string"}]}"#,
    );
    write(&dir, "notes.txt", "not a prompt");
    let reg = PromptRegistry::load_dir(&dir).expect("load");
    assert_eq!(reg.len(), 3);
    assert_eq!(reg.tasks(), ["classification", "qa"]);

    let latest = reg.for_task("classification", None).expect("latest");
    assert_eq!((latest.name.as_str(), latest.version), ("intent", 3));
    assert_eq!(
        latest
            .template
            .render(&json!({"text": "where is my parcel?"}))
            .expect("render"),
        "Labels: refund\nshipping\nMessage: where is my parcel?\nIntent:"
    );
    let v1 = reg.for_task("classification", Some(1)).expect("v1");
    assert_eq!(
        v1.template.render(&json!({"text": "hi"})).expect("render"),
        "Intent of: hi"
    );
    assert!(matches!(
        reg.for_task("classification", Some(2)),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        reg.for_task("summarize", None),
        Err(Error::NotFound { .. })
    ));

    let qa = reg.get("qa", None).expect("qa");
    let out = qa
        .template
        .render(&json!({"question": "2+2?", "examples": [{"q": "1+1?", "a": "2"}]}))
        .expect("qa");
    assert_eq!(out, "Q: 1+1?\nA: 2\n\nQ: 2+2?\nA:");
    let err = qa
        .template
        .render(&json!({"question": "x", "extra": 1}))
        .unwrap_err();
    assert!(
        matches!(err, Error::UnknownVariable { ref variable, .. } if variable == "extra"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn malformed_files_are_errors_naming_the_file() {
    let dir = temp_dir("bad");
    write(
        &dir,
        "a.json",
        r#"{"name": "x", "version": 1, "task": "t", "template": "{oops"}"#,
    );
    let err = PromptRegistry::load_dir(&dir).unwrap_err().to_string();
    assert!(err.contains("a.json") && err.contains("unclosed"), "{err}");

    write(
        &dir,
        "a.json",
        r#"{"name": "x", "version": 1, "task": "t", "template": "{a}", "variables": [{"name": "b"}]}"#,
    );
    let err = PromptRegistry::load_dir(&dir).unwrap_err().to_string();
    assert!(
        err.contains("a.json") && err.contains("unknown variable `b`"),
        "{err}"
    );

    write(
        &dir,
        "a.json",
        r#"{"name": "x", "version": 1, "task": "t", "template": "{a}", "colour": 1}"#,
    );
    let err = PromptRegistry::load_dir(&dir).unwrap_err().to_string();
    assert!(err.contains("a.json") && err.contains("colour"), "{err}");

    write(
        &dir,
        "a.json",
        r#"{"name": "x", "version": 1, "task": "t", "template": "{a}"}"#,
    );
    write(
        &dir,
        "b.json",
        r#"{"name": "x", "version": 1, "task": "t", "template": "{b}"}"#,
    );
    assert!(matches!(
        PromptRegistry::load_dir(&dir),
        Err(Error::Duplicate { version: 1, .. })
    ));
    assert!(matches!(
        PromptRegistry::load_dir(dir.join("missing")),
        Err(Error::Io { .. })
    ));
    let _ = std::fs::remove_dir_all(&dir);
}
